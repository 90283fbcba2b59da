package backendtest

import (
	"fmt"
	"math"

	"whet/engine"
)

// Gemma 3's vision ops (engine/siglip_ops.go: LayerNormer, GELUTanhAct,
// GroupAttention); a backend without one skips its tests, and Gemma 3's
// vision tower and image tokens refuse it by name.

func testLayerNorm(h *harness) {
	ln := optional[engine.LayerNormer](h, "engine.LayerNormer (the SigLIP tower)")
	for _, dim := range []int{64, 1152, 61} {
		h.sub(fmt.Sprintf("dim%d", dim), func(h *harness) {
			x := h.layerNormInput(11, dim)
			w, b := h.normWeight(dim), h.randn(h.act, 0.3, dim)
			out, mean, rstd := h.output(h.act, 11, dim), h.output(engine.F32, 11), h.output(engine.F32, 11)
			h.check("LayerNorm", ln.LayerNorm(out.dut, mean.dut, rstd.dut, x.dut, w.dut, b.dut, 1e-6))
			h.oracle("LayerNorm", h.ref.LayerNorm(out.ref, mean.ref, rstd.ref, x.ref, w.ref, b.ref, 1e-6))
			h.compare("out", out)
			h.compare("mean", mean)
			h.compare("rstd", rstd)
		})
	}
}

// layerNormInput is x with a row mean away from 0, so the centring shows.
func (h *harness) layerNormInput(rows, dim int) pair {
	v := make([]float32, rows*dim)
	for i := range v {
		v[i] = 0.8 + 2*float32(h.rng.NormFloat64())
	}
	return h.input(h.act, v, rows, dim)
}

func testLayerNormBackward(h *harness) {
	ln := optional[engine.LayerNormer](h, "engine.LayerNormer (the SigLIP tower)")
	const rows = 11
	for _, c := range []struct {
		name          string
		dim           int
		dx, dw, dbias bool
	}{{"all_dim64", 64, true, true, true}, {"all_dim61", 61, true, true, true}, {"frozen", 72, true, false, false},
		{"params_only", 40, false, true, true}, {"bias_only", 40, true, false, true}} {
		h.sub(c.name, func(h *harness) {
			x := h.layerNormInput(rows, c.dim)
			w, b := h.normWeight(c.dim), h.randn(h.act, 0.3, c.dim)
			// Both sides read the oracle's saved mean and rstd.
			out, err := h.ref.Alloc(engine.F32, rows, c.dim)
			h.oracle("Alloc", err)
			defer h.ref.Free(out)
			m, err := h.ref.Alloc(engine.F32, rows)
			h.oracle("Alloc", err)
			defer h.ref.Free(m)
			r, err := h.ref.Alloc(engine.F32, rows)
			h.oracle("Alloc", err)
			defer h.ref.Free(r)
			h.oracle("LayerNorm", h.ref.LayerNorm(out, m, r, x.ref, w.ref, b.ref, 1e-6))
			mean, rstd := h.input(engine.F32, h.refValues(m), rows), h.input(engine.F32, h.refValues(r), rows)
			dOut := h.randn(h.act, 1, rows, c.dim)
			var dx, dw, db pair
			var dxd, dwd, dbd, dxr, dwr, dbr engine.Tensor
			if c.dx {
				dx = h.output(h.act, rows, c.dim)
				dxd, dxr = dx.dut, dx.ref
			}
			if c.dw {
				dw = h.output(engine.F32, c.dim)
				dwd, dwr = dw.dut, dw.ref
			}
			if c.dbias {
				db = h.output(engine.F32, c.dim)
				dbd, dbr = db.dut, db.ref
			}
			h.check("LayerNormBackward", ln.LayerNormBackward(dxd, dwd, dbd, dOut.dut, x.dut, w.dut, mean.dut, rstd.dut))
			h.oracle("LayerNormBackward", h.ref.LayerNormBackward(dxr, dwr, dbr, dOut.ref, x.ref, w.ref, mean.ref, rstd.ref))
			if c.dx {
				h.compare("dx (accumulated)", dx)
			}
			if c.dw {
				h.compare("dWeight (accumulated)", dw)
			}
			if c.dbias {
				h.compare("dBias (accumulated)", db)
			}
		})
	}
}

func testGELUTanh(h *harness) {
	ge := optional[engine.GELUTanhAct](h, "engine.GELUTanhAct (the SigLIP MLP)")
	testActivation(h, "GELUTanh", ge.GELUTanh, h.ref.GELUTanh)
}

func testGELUTanhBackward(h *harness) {
	ge := optional[engine.GELUTanhAct](h, "engine.GELUTanhAct (the SigLIP MLP)")
	testActivationBackward(h, "GELUTanhBackward", ge.GELUTanhBackward, h.ref.GELUTanhBackward)
}

// groupCase is one attention geometry with image groups.
type groupCase struct {
	name    string
	starts  []int32
	groups  func(T int) []int32
	h, kvh  int
	headDim int
	window  int
	softCap float32
}

// runs marks tokens [a, b) of each run with its own group, the rest -1.
func runs(rs ...[2]int) func(T int) []int32 {
	return func(T int) []int32 {
		g := make([]int32, T)
		for i := range g {
			g[i] = -1
		}
		for k, r := range rs {
			for i := r[0]; i < r[1]; i++ {
				g[i] = int32(k)
			}
		}
		return g
	}
}

var groupCases = []groupCase{
	// The language model: image runs inside packed sequences, GQA, windows shorter than a run.
	{"lm_gqa4x2_d16_runs", []int32{0, 14, 32}, runs([2]int{4, 8}, [2]int{17, 21}, [2]int{23, 27}), 4, 2, 16, 0, 0},
	{"lm_gqa4x1_d256_window3_runs", []int32{0, 14, 32}, runs([2]int{4, 8}, [2]int{17, 21}, [2]int{23, 27}), 4, 1, 256, 3, 0},
	{"lm_mqa8x1_d64_long_run_window40", []int32{0, 300, 420}, runs([2]int{10, 266}, [2]int{310, 400}), 8, 1, 64, 40, 0},
	{"lm_gqa4x2_d32_runs_softcap", []int32{0, 14, 32}, runs([2]int{4, 8}, [2]int{17, 21}), 4, 2, 32, 0, 1.5},
	// The SigLIP tower: each image one group, attending both ways (the released head dim 72).
	{"tower_mha4_d72_3images", []int32{0, 64, 128, 192}, runs([2]int{0, 64}, [2]int{64, 128}, [2]int{128, 192}), 4, 4, 72, 0, 0},
	{"tower_mha2_d16_300patches", []int32{0, 300}, runs([2]int{0, 300}), 2, 2, 16, 0, 0},
	// Cases for the tensor-core forwards (engine/cuda WHET_VISION_ATTN_TC): several 64-row
	// blocks, a run ending inside a block, a group split in two runs (groups need not be
	// contiguous), a window cutting into a run, head dims 72, 80 and 256.
	{"tower_mha2_d72_2images_uneven", []int32{0, 150, 350}, runs([2]int{0, 150}, [2]int{150, 350}), 2, 2, 72, 0, 0},
	{"lm_gqa4x2_d80_split_group", []int32{0, 230}, func(T int) []int32 {
		g := runs([2]int{20, 100}, [2]int{130, 200})(T)
		for i := 150; i < 170; i++ {
			g[i] = 0 // group 0 again, after group 1 began
		}
		return g
	}, 4, 2, 80, 0, 0},
	{"lm_gqa4x2_d256_runs_window50", []int32{0, 100, 260}, runs([2]int{10, 90}, [2]int{130, 230}), 4, 2, 256, 50, 0},
}

func (h *harness) groupLayout(c groupCase) (T int, groups pair, sd, sr engine.SeqLayout, p engine.AttnParams) {
	T = int(c.starts[len(c.starts)-1])
	maxLen := 0
	for i := 0; i+1 < len(c.starts); i++ {
		maxLen = max(maxLen, int(c.starts[i+1]-c.starts[i]))
	}
	dev := h.ints(c.starts)
	sd = engine.SeqLayout{Starts: c.starts, MaxLen: maxLen, Dev: dev.dut}
	sr = engine.SeqLayout{Starts: c.starts, MaxLen: maxLen, Dev: dev.ref}
	p = engine.AttnParams{NHeads: c.h, NKVHeads: c.kvh, HeadDim: c.headDim,
		Scale: float32(1 / math.Sqrt(float64(c.headDim))), Window: c.window, SoftCap: c.softCap}
	return T, h.ints(c.groups(T)), sd, sr, p
}

func testAttentionGroups(h *harness) {
	ga := optional[engine.GroupAttention](h, "engine.GroupAttention (Gemma 3's image tokens and SigLIP)")
	for _, c := range groupCases {
		h.sub(c.name, func(h *harness) {
			T, g, sd, sr, p := h.groupLayout(c)
			q := h.randn(h.act, 1, T, c.h*c.headDim)
			k := h.randn(h.act, 1, T, c.kvh*c.headDim)
			v := h.randn(h.act, 1, T, c.kvh*c.headDim)
			out, lse := h.output(h.act, T, c.h*c.headDim), h.output(engine.F32, c.h, T)
			h.check("AttentionGroups", ga.AttentionGroups(out.dut, lse.dut, q.dut, k.dut, v.dut, g.dut, sd, p))
			h.oracle("AttentionGroups", h.ref.AttentionGroups(out.ref, lse.ref, q.ref, k.ref, v.ref, g.ref, sr, p))
			h.compare("out", out)
			h.compare("lse", lse)
		})
	}
}

func testAttentionGroupsBackward(h *harness) {
	ga := optional[engine.GroupAttention](h, "engine.GroupAttention (Gemma 3's image tokens and SigLIP)")
	for _, c := range groupCases {
		h.sub(c.name, func(h *harness) {
			T, g, sd, sr, p := h.groupLayout(c)
			q := h.randn(h.act, 1, T, c.h*c.headDim)
			k := h.randn(h.act, 1, T, c.kvh*c.headDim)
			v := h.randn(h.act, 1, T, c.kvh*c.headDim)
			// Both sides get the oracle's forward results.
			outRef, err := h.ref.Alloc(engine.F32, T, c.h*c.headDim)
			h.oracle("Alloc", err)
			defer h.ref.Free(outRef)
			lseRef, err := h.ref.Alloc(engine.F32, c.h, T)
			h.oracle("Alloc", err)
			defer h.ref.Free(lseRef)
			h.oracle("AttentionGroups", h.ref.AttentionGroups(outRef, lseRef, q.ref, k.ref, v.ref, g.ref, sr, p))
			out := h.input(h.act, h.refValues(outRef), T, c.h*c.headDim)
			lse := h.input(engine.F32, h.refValues(lseRef), c.h, T)
			dOut := h.randn(h.act, 1, T, c.h*c.headDim)
			dq := h.output(h.act, T, c.h*c.headDim)
			dk, dv := h.output(h.act, T, c.kvh*c.headDim), h.output(h.act, T, c.kvh*c.headDim)
			h.check("AttentionGroupsBackward", ga.AttentionGroupsBackward(dq.dut, dk.dut, dv.dut, dOut.dut, q.dut, k.dut, v.dut, out.dut, lse.dut, g.dut, sd, p))
			h.oracle("AttentionGroupsBackward", h.ref.AttentionGroupsBackward(dq.ref, dk.ref, dv.ref, dOut.ref, q.ref, k.ref, v.ref, out.ref, lse.ref, g.ref, sr, p))
			h.compare("dq (overwritten)", dq)
			h.compare("dk (overwritten)", dk)
			h.compare("dv (overwritten)", dv)
		})
	}
}
