package backendtest

import (
	"math"

	"whet/engine"
)

// Llama 3.2 Vision's ops (engine.MllamaOps: exact GELU and attention
// under an additive bias; its LayerNorm is siglip_ops.go's). A backend
// without them skips these tests, and engine.NewMllamaModel refuses it by
// name.

func testGELU(h *harness) {
	ge := optional[engine.MllamaOps](h, "engine.MllamaOps (Llama 3.2 Vision)")
	testActivation(h, "GELU", ge.GELU, h.ref.GELU)
	// In place, as the vision MLP runs it.
	h.sub("in_place", func(h *harness) {
		x := h.randn(h.act, 3, 5, 40)
		h.check("GELU", ge.GELU(x.dut, x.dut))
		h.oracle("GELU", h.ref.GELU(x.ref, x.ref))
		h.compare("x (overwritten)", x)
	})
}

func testGELUBackward(h *harness) {
	ge := optional[engine.MllamaOps](h, "engine.MllamaOps (Llama 3.2 Vision)")
	testActivationBackward(h, "GELUBackward", ge.GELUBackward, h.ref.GELUBackward)
	h.sub("dx_is_dOut", func(h *harness) {
		x, dOut := h.randn(h.act, 3, 5, 40), h.randn(h.act, 1, 5, 40)
		h.check("GELUBackward", ge.GELUBackward(dOut.dut, dOut.dut, x.dut))
		h.oracle("GELUBackward", h.ref.GELUBackward(dOut.ref, dOut.ref, x.ref))
		h.compare("dOut (overwritten by dx)", dOut)
	})
}

// biasCase is one BiasAttention geometry; bias builds the [T, S] bias
// (nil for none).
type biasCase struct {
	name          string
	T, S, h, kvh  int
	headDim       int
	bias          func(T, S int) []float32
	wantMaskedRow bool // some row sees no key (out 0, lse -inf)
}

// tileMask is the vision tower's bias: N = tiles*padded rows; rows of an
// off tile and the padding rows of every tile (beyond real) are masked,
// and a masked row does not see masked rows.
func tileMask(tiles, padded, real, on int) func(T, S int) []float32 {
	return func(T, S int) []float32 {
		masked := make([]bool, T)
		for t := 0; t < tiles; t++ {
			for j := 0; j < padded; j++ {
				masked[t*padded+j] = t >= on || j >= real
			}
		}
		b := make([]float32, T*S)
		for r := 0; r < T; r++ {
			for c := 0; c < S; c++ {
				if masked[r] && masked[c] {
					b[r*S+c] = float32(math.Inf(-1))
				}
			}
		}
		return b
	}
}

// crossMask is the text side's bias: token t sees the image-token runs
// [a, b) its row lists; rows listed with none see nothing; a small random
// part is added to the seen scores (the bias is additive, not only a mask).
func crossMask(rows map[int][][2]int) func(T, S int) []float32 {
	return func(T, S int) []float32 {
		b := make([]float32, T*S)
		for t := 0; t < T; t++ {
			runs, listed := rows[t]
			if !listed {
				for s := 0; s < S; s++ {
					b[t*S+s] = 0.25 * float32(math.Sin(float64(3*t+7*s)))
				}
				continue
			}
			for s := 0; s < S; s++ {
				b[t*S+s] = float32(math.Inf(-1))
			}
			for _, r := range runs {
				for s := r[0]; s < r[1]; s++ {
					b[t*S+s] = 0
				}
			}
		}
		return b
	}
}

var biasCases = []biasCase{
	// The vision tower: 4 tiles of 5 patches padded to 8, 3 tiles on (MHA, the tiny model's head dim 8).
	{"tower_mha4_d8_tiles", 32, 32, 4, 4, 8, tileMask(4, 8, 5, 3), false},
	// The released tower's head dim 80, more rows than one 256-key chunk.
	{"tower_mha2_d80_300rows", 320, 320, 2, 2, 80, tileMask(2, 160, 150, 2), false},
	// Cross-attention: GQA, rows seeing one image, both, or none.
	{"cross_gqa4x2_d32", 9, 40, 4, 2, 32, crossMask(map[int][][2]int{0: nil, 1: nil, 3: {{0, 20}}, 4: {{0, 20}}, 6: {{0, 40}}, 8: {{20, 40}}}), true},
	{"cross_gqa8x2_d128_long", 17, 300, 8, 2, 128, crossMask(map[int][][2]int{2: {{0, 150}}, 5: {{150, 300}}, 16: nil}), true},
	// Several 64-row query blocks and key tiles for the tensor-core forward (engine/cuda
	// WHET_VISION_ATTN_TC): the tower at head dim 80 with 3 of 4 tiles on, cross-attention at 128.
	{"tower_mha2_d80_4tiles", 4 * 72, 4 * 72, 2, 2, 80, tileMask(4, 72, 65, 3), false},
	{"cross_gqa4x1_d128_blocks", 150, 230, 4, 1, 128, crossMask(map[int][][2]int{0: nil, 70: {{0, 100}}, 71: {{100, 230}}, 149: {{5, 6}}}), true},
	// No bias at all.
	{"nobias_mqa2x1_d64", 7, 270, 2, 1, 64, nil, false},
}

func (h *harness) biasInputs(c biasCase) (q, k, v, bias pair, p engine.AttnParams) {
	q = h.randn(h.act, 1, c.T, c.h*c.headDim)
	k = h.randn(h.act, 1, c.S, c.kvh*c.headDim)
	v = h.randn(h.act, 1, c.S, c.kvh*c.headDim)
	if c.bias != nil {
		bias = h.input(engine.F32, c.bias(c.T, c.S), c.T, c.S)
	}
	p = engine.AttnParams{NHeads: c.h, NKVHeads: c.kvh, HeadDim: c.headDim, Scale: float32(1 / math.Sqrt(float64(c.headDim)))}
	return
}

func testBiasAttention(h *harness) {
	ops := optional[engine.MllamaOps](h, "engine.MllamaOps (Llama 3.2 Vision)")
	for _, c := range biasCases {
		h.sub(c.name, func(h *harness) {
			q, k, v, bias, p := h.biasInputs(c)
			out, lse := h.output(h.act, c.T, c.h*c.headDim), h.output(engine.F32, c.h, c.T)
			h.check("BiasAttention", ops.BiasAttention(out.dut, lse.dut, q.dut, k.dut, v.dut, bias.dut, p))
			h.oracle("BiasAttention", h.ref.BiasAttention(out.ref, lse.ref, q.ref, k.ref, v.ref, bias.ref, p))
			h.compare("out", out)
			h.compare("lse", lse)
			if masked := slicesContainsInf(h.refValues(lse.ref)); masked != c.wantMaskedRow {
				h.t.Fatalf("case %s: the oracle's lse has a masked row: %v, the case says %v", c.name, masked, c.wantMaskedRow)
			}
		})
	}
}

func slicesContainsInf(v []float32) bool {
	for _, x := range v {
		if math.IsInf(float64(x), -1) {
			return true
		}
	}
	return false
}

func testBiasAttentionBackward(h *harness) {
	ops := optional[engine.MllamaOps](h, "engine.MllamaOps (Llama 3.2 Vision)")
	for _, c := range biasCases {
		h.sub(c.name, func(h *harness) {
			q, k, v, bias, p := h.biasInputs(c)
			// Both sides get the oracle's forward results.
			outRef, err := h.ref.Alloc(engine.F32, c.T, c.h*c.headDim)
			h.oracle("Alloc", err)
			defer h.ref.Free(outRef)
			lseRef, err := h.ref.Alloc(engine.F32, c.h, c.T)
			h.oracle("Alloc", err)
			defer h.ref.Free(lseRef)
			h.oracle("BiasAttention", h.ref.BiasAttention(outRef, lseRef, q.ref, k.ref, v.ref, bias.ref, p))
			out := h.input(h.act, h.refValues(outRef), c.T, c.h*c.headDim)
			lse := h.input(engine.F32, h.refValues(lseRef), c.h, c.T)
			dOut := h.randn(h.act, 1, c.T, c.h*c.headDim)
			dq := h.output(h.act, c.T, c.h*c.headDim)
			dk, dv := h.output(h.act, c.S, c.kvh*c.headDim), h.output(h.act, c.S, c.kvh*c.headDim)
			h.check("BiasAttentionBackward", ops.BiasAttentionBackward(dq.dut, dk.dut, dv.dut, dOut.dut, q.dut, k.dut, v.dut, out.dut, lse.dut, bias.dut, p))
			h.oracle("BiasAttentionBackward", h.ref.BiasAttentionBackward(dq.ref, dk.ref, dv.ref, dOut.ref, q.ref, k.ref, v.ref, out.ref, lse.ref, bias.ref, p))
			h.compare("dq (overwritten)", dq)
			h.compare("dk (overwritten)", dk)
			h.compare("dv (overwritten)", dv)
		})
	}
}
