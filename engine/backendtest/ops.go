package backendtest

import (
	"fmt"
	"math"

	"whet/engine"
)

// suite lists the ops in the order Run tests them.
var suite = []struct {
	name string
	run  func(h *harness)
}{
	{"Memory", testMemory},
	{"MatMul", testMatMul},
	{"AddScaled", testAddScaled},
	{"Scale", testScale},
	{"AddBias", testAddBias},
	{"BiasBackward", testBiasBackward},
	{"SumSquares", testSumSquares},
	{"FillAll", testFillAll},
	{"ScaleAll", testScaleAll},
	{"Embedding", testEmbedding},
	{"EmbeddingBackward", testEmbeddingBackward},
	{"RMSNorm", testRMSNorm},
	{"RMSNormBackward", testRMSNormBackward},
	{"QKNorm", testQKNorm},
	{"RoPE", testRoPE},
	{"Attention", testAttention},
	{"AttentionBackward", testAttentionBackward},
	{"AttentionKV", testAttentionKV},
	{"SwiGLU", testSwiGLU},
	{"SwiGLUBackward", testSwiGLUBackward},
	{"GeGLU", testGeGLU},
	{"GeGLUBackward", testGeGLUBackward},
	{"SoftCap", testSoftCap},
	{"SoftCapBackward", testSoftCapBackward},
	{"RoPEPartial", testRoPEPartial},
	{"LayerNorm", testLayerNorm},
	{"LayerNormBackward", testLayerNormBackward},
	{"GELUTanh", testGELUTanh},
	{"GELUTanhBackward", testGELUTanhBackward},
	{"AttentionGroups", testAttentionGroups},
	{"AttentionGroupsBackward", testAttentionGroupsBackward},
	{"GELU", testGELU},
	{"GELUBackward", testGELUBackward},
	{"BiasAttention", testBiasAttention},
	{"BiasAttentionBackward", testBiasAttentionBackward},
	{"SoftmaxCrossEntropy", testSoftmaxCrossEntropy},
	{"SoftmaxCrossEntropyInto", testSoftmaxCrossEntropyInto},
	{"SoftmaxCrossEntropyCapped", testSoftmaxCrossEntropyCapped},
	{"Dropout", testDropout},
	{"AdamW", testAdamW},
	{"AdamWAll", testAdamWAll},
	{"AdamWBF16Master", testAdamWBF16Master},
	{"AdamWAllBF16Master", testAdamWAllBF16Master},
	{"Views", testViews},
}

// dtypes is the activation dtype and F32, once each: ops whose output may
// be either (a bf16 activation or an fp32 gradient) are tried with both.
func (h *harness) dtypes() []engine.DType {
	if h.act == engine.F32 {
		return []engine.DType{engine.F32}
	}
	return []engine.DType{h.act, engine.F32}
}

func testMemory(h *harness) {
	special := []float32{0, float32(math.Copysign(0, -1)), 1, -1, 1 + 1.0/256, 1 + 3.0/256, 1 + 1.0/512,
		3.14159265, -2.7182818, 1e-20, 6.5e4, -3e38, float32(math.Inf(1)), 1.00390625, 0.1, 1000.5}
	h.sub("f32_roundtrip", func(h *harness) {
		h.compareExact("f32", h.input(engine.F32, special, len(special)))
	})
	h.sub("bf16_upload_rounds_to_nearest_even", func(h *harness) {
		x := h.input(engine.BF16, special, len(special))
		want, err := h.ref.Alloc(engine.BF16, len(special))
		h.oracle("Alloc", err)
		defer h.ref.Free(want)
		h.oracle("Upload", h.ref.Upload(want, special))
		h.compareValues("bf16", h.held(x.dut), h.refValues(want), Tol{})
	})
	h.sub("i32_roundtrip", func(h *harness) {
		ids := []int32{0, 1, -100, 2147483647, -2147483648, 151645}
		x := h.ints(ids)
		got := h.held(x.dut)
		for i, v := range ids {
			if got[i] != float32(v) {
				h.t.Errorf("i32[%d] downloads as %g, want %d", i, got[i], v)
			}
		}
	})
	for _, dt := range h.dtypes() {
		h.sub("fill_"+dt.String(), func(h *harness) {
			x := h.output(dt, 7, 5)
			h.check("Fill", h.dut.Fill(x.dut, -1.7))
			h.oracle("Fill", h.ref.Fill(x.ref, -1.7))
			want, err := h.ref.Alloc(dt, 1)
			h.oracle("Alloc", err)
			defer h.ref.Free(want)
			h.oracle("Fill", h.ref.Fill(want, -1.7))
			v := h.refValues(want)[0]
			for i, g := range h.held(x.dut) {
				if g != v {
					h.t.Fatalf("after Fill(-1.7) element %d is %g, want %g", i, g, v)
				}
			}
		})
	}
	// 96 values take the GPU's 16-byte path, 100 its element path.
	for _, n := range []int{100, 96} {
		h.sub(fmt.Sprintf("copy_casts_%d", n), func(h *harness) {
			src := h.randn(engine.F32, 3, n)
			dst := h.output(h.act, n/4, 4)
			h.check("Copy", h.dut.Copy(dst.dut, src.dut))
			// The oracle rounds like the backend must: copy into a tensor of
			// the same dtype on the CPU side.
			want, err := h.ref.Alloc(h.act, n/4, 4)
			h.oracle("Alloc", err)
			defer h.ref.Free(want)
			h.oracle("Copy", h.ref.Copy(want, src.ref))
			h.compareValues("f32 -> "+h.act.String(), h.held(dst.dut), h.refValues(want), Tol{})
			back := h.output(engine.F32, n)
			h.check("Copy", h.dut.Copy(back.dut, dst.dut))
			h.compareValues(h.act.String()+" -> f32", h.held(back.dut), h.refValues(want), Tol{})
		})
	}
	h.sub("view_writes_through", func(h *harness) {
		base := h.randn(h.act, 1, 6, 8)
		v := h.view(base, 11, 3, 7)
		h.check("Fill on a view", h.dut.Fill(v.dut, 2))
		h.oracle("Fill", h.ref.Fill(v.ref, 2))
		h.compareExact("base", base)
		if got := v.dut.Shape(); len(got) != 2 || got[0] != 3 || got[1] != 7 || v.dut.Len() != 21 {
			h.t.Errorf("view shape %v, Len %d; want [3 7], 21", got, v.dut.Len())
		}
	})
}

func testMatMul(h *harness) {
	for _, dims := range [][3]int{{17, 33, 9}, {64, 128, 48}} {
		M, K, N := dims[0], dims[1], dims[2]
		for _, tr := range [][2]bool{{false, false}, {false, true}, {true, false}, {true, true}} {
			for _, cdt := range h.dtypes() {
				name := fmt.Sprintf("%dx%dx%d_%s%s_c_%s", M, K, N, transName(tr[0]), transName(tr[1]), cdt)
				h.sub(name, func(h *harness) {
					aShape, bShape := []int{M, K}, []int{K, N}
					if tr[0] {
						aShape = []int{K, M}
					}
					if tr[1] {
						bShape = []int{N, K}
					}
					a, b := h.randn(h.act, 1, aShape...), h.randn(h.act, 1, bShape...)
					for _, ab := range [][2]float32{{1, 0}, {0.75, 0.5}, {-1, 1}} {
						c := h.output(cdt, M, N)
						h.check("MatMul", h.dut.MatMul(c.dut, a.dut, b.dut, tr[0], tr[1], ab[0], ab[1]))
						h.oracle("MatMul", h.ref.MatMul(c.ref, a.ref, b.ref, tr[0], tr[1], ab[0], ab[1]))
						h.compare(fmt.Sprintf("c (alpha %g, beta %g)", ab[0], ab[1]), c)
					}
				})
			}
		}
	}
}

func transName(t bool) string {
	if t {
		return "T"
	}
	return "N"
}

func testAddScaled(h *harness) {
	for _, dt := range h.dtypes() {
		h.sub("dst_"+dt.String(), func(h *harness) {
			dst, src := h.output(dt, 37, 21), h.randn(h.act, 1, 37*21)
			h.check("AddScaled", h.dut.AddScaled(dst.dut, src.dut, -0.3))
			h.oracle("AddScaled", h.ref.AddScaled(dst.ref, src.ref, -0.3))
			h.compare("dst", dst)
		})
	}
}

func testScale(h *harness) {
	for _, dt := range h.dtypes() {
		h.sub(dt.String(), func(h *harness) {
			x := h.output(dt, 1000)
			h.check("Scale", h.dut.Scale(x.dut, 1.7))
			h.oracle("Scale", h.ref.Scale(x.ref, 1.7))
			h.compare("t", x)
		})
	}
}

func testAddBias(h *harness) {
	out, bias := h.output(h.act, 13, 24), h.randn(h.act, 1, 24)
	h.check("AddBias", h.dut.AddBias(out.dut, bias.dut))
	h.oracle("AddBias", h.ref.AddBias(out.ref, bias.ref))
	h.compare("out", out)
}

func testBiasBackward(h *harness) {
	dBias, dOut := h.output(engine.F32, 24), h.randn(h.act, 1, 3, 13, 24)
	h.check("BiasBackward", h.dut.BiasBackward(dBias.dut, dOut.dut))
	h.oracle("BiasBackward", h.ref.BiasBackward(dBias.ref, dOut.ref))
	h.compare("dBias (accumulated)", dBias)
}

func testSumSquares(h *harness) {
	for _, dt := range h.dtypes() {
		h.sub(dt.String(), func(h *harness) {
			x := h.randn(dt, 3, 7, 333)
			got, err := h.dut.SumSquares(x.dut)
			h.check("SumSquares", err)
			want, err := h.ref.SumSquares(x.ref)
			h.oracle("SumSquares", err)
			h.compareScalar("sum of squares", got, want)
		})
	}
	h.sub("all_of_several", func(h *harness) {
		all := optional[engine.SumSquaresOfAll](h, "engine.SumSquaresOfAll (optional)")
		var duts []engine.Tensor
		var want float64
		// 70001: more than two of the CUDA backend's 32768-element launch
		// chunks, with a tail that is not a multiple of 8; the view starts
		// 3 elements in (no 16-byte loads).
		for i, n := range []int{333, 1, 4096, 0, 17, 70001} {
			x := h.randn(h.dtypes()[i%len(h.dtypes())], 2, 1, n)
			duts = append(duts, x.dut)
			w, err := h.ref.SumSquares(x.ref)
			h.oracle("SumSquares", err)
			want += w
		}
		v := h.view(h.randn(h.act, 2, 1, 1003), 3, 1000)
		duts = append(duts, v.dut)
		w, err := h.ref.SumSquares(v.ref)
		h.oracle("SumSquares", err)
		want += w
		got, err := all.SumSquaresAll(duts)
		h.check("SumSquaresAll", err)
		h.compareScalar("sum of squares of all", got, want)
		if got, err := all.SumSquaresAll(nil); err != nil || got != 0 {
			h.t.Errorf("SumSquaresAll of no tensors = %g, %v; want 0, nil", got, err)
		}
	})
}

// testScaleAll covers the optional engine.ScaleOfAll: every tensor (one
// larger than a launch chunk), of each float dtype, scaled as Scale would.
func testScaleAll(h *harness) {
	all := optional[engine.ScaleOfAll](h, "engine.ScaleOfAll (optional)")
	ts, duts := h.severalTensors(2)
	h.check("ScaleAll", all.ScaleAll(duts, -0.37))
	for i, x := range ts {
		h.oracle("Scale", h.ref.Scale(x.ref, -0.37))
		h.compare(fmt.Sprintf("tensor %d", i), x)
	}
	if err := all.ScaleAll(nil, 2); err != nil {
		h.t.Errorf("ScaleAll of no tensors: %v", err)
	}
}

// severalTensors draws one tensor of each of 333, 1, 70000 (larger than
// a launch chunk) and 17 elements, the dtypes in turn, with standard
// deviation scale; duts are the backend under test's sides.
func (h *harness) severalTensors(scale float32) (ts []pair, duts []engine.Tensor) {
	for i, n := range []int{333, 1, 70000, 17} {
		x := h.randn(h.dtypes()[i%len(h.dtypes())], scale, n)
		ts = append(ts, x)
		duts = append(duts, x.dut)
	}
	return ts, duts
}

// testFillAll covers the optional engine.FillOfAll: every element of every
// tensor (one larger than a launch chunk), of each dtype, takes the value.
func testFillAll(h *harness) {
	all := optional[engine.FillOfAll](h, "engine.FillOfAll (optional)")
	ts, duts := h.severalTensors(1)
	h.check("FillAll", all.FillAll(duts, -1.5))
	for i, x := range ts {
		for j, v := range h.held(x.dut) {
			if v != -1.5 {
				h.t.Fatalf("tensor %d element %d is %g after FillAll(-1.5)", i, j, v)
			}
		}
	}
	if err := all.FillAll(nil, 0); err != nil {
		h.t.Errorf("FillAll of no tensors: %v", err)
	}
}

// embeddingIDs repeat some rows so that the backward must accumulate.
var embeddingIDs = []int32{3, 0, 49, 3, 17, 17, 17, 8, 3, 22, 0, 41, 5, 49, 30, 2, 3, 11, 17}

func testEmbedding(h *harness) {
	table := h.randn(h.act, 1, 50, 24)
	ids := h.ints(embeddingIDs)
	out := h.output(h.act, len(embeddingIDs), 24)
	h.check("Embedding", h.dut.Embedding(out.dut, table.dut, ids.dut))
	h.oracle("Embedding", h.ref.Embedding(out.ref, table.ref, ids.ref))
	h.compare("out", out)
}

func testEmbeddingBackward(h *harness) {
	dTable := h.output(engine.F32, 50, 24)
	dOut := h.randn(h.act, 1, len(embeddingIDs), 24)
	ids := h.ints(embeddingIDs)
	h.check("EmbeddingBackward", h.dut.EmbeddingBackward(dTable.dut, dOut.dut, ids.dut))
	h.oracle("EmbeddingBackward", h.ref.EmbeddingBackward(dTable.ref, dOut.ref, ids.ref))
	h.compare("dTable (accumulated)", dTable)
}

// normWeight is an RMSNorm weight near 1, as trained models have.
func (h *harness) normWeight(dim int) pair {
	w := make([]float32, dim)
	for i := range w {
		w[i] = 1 + 0.2*float32(h.rng.NormFloat64())
	}
	return h.input(h.act, w, dim)
}

func testRMSNorm(h *harness) {
	for _, dim := range []int{64, 200, 61} { // 61: no 16-byte path
		h.sub(fmt.Sprintf("dim%d", dim), func(h *harness) {
			x, w := h.randn(h.act, 2, 11, dim), h.normWeight(dim)
			out, rstd := h.output(h.act, 11, dim), h.output(engine.F32, 11)
			h.check("RMSNorm", h.dut.RMSNorm(out.dut, rstd.dut, x.dut, w.dut, 1e-5))
			h.oracle("RMSNorm", h.ref.RMSNorm(out.ref, rstd.ref, x.ref, w.ref, 1e-5))
			h.compare("out", out)
			h.compare("rstd", rstd)
		})
	}
}

func testRMSNormBackward(h *harness) {
	// 11 rows at dims 64 and 61 (no 16-byte path); 777×200 leaves partial
	// column tiles and row chunks in the CUDA backend's two-stage weight
	// gradient; 8192×2048 is Llama-3.2-1B's 4×2048 batch (dWeight f32),
	// 2048×2048 the same rows with dWeight in the activations' dtype.
	for _, c := range []struct {
		frozen    bool
		rows, dim int
		dwAct     bool
	}{{false, 11, 64, false}, {true, 11, 64, false}, {false, 11, 61, false}, {false, 777, 200, false},
		{false, 8192, 2048, false}, {false, 2048, 2048, true}} {
		frozen, rows, dim := c.frozen, c.rows, c.dim
		name := fmt.Sprintf("dWeight_dim%d", dim)
		if rows != 11 {
			name = fmt.Sprintf("dWeight_%dx%d", rows, dim)
		}
		if c.dwAct {
			name += "_dWeight_act_dtype"
		}
		if frozen {
			name = "frozen_weight_nil_dWeight"
		}
		h.sub(name, func(h *harness) {
			x, w := h.randn(h.act, 2, rows, dim), h.normWeight(dim)
			// Both sides read the oracle's saved rstd, so the backward is
			// compared alone.
			out, err := h.ref.Alloc(engine.F32, rows, dim)
			h.oracle("Alloc", err)
			defer h.ref.Free(out)
			rstdRef, err := h.ref.Alloc(engine.F32, rows)
			h.oracle("Alloc", err)
			defer h.ref.Free(rstdRef)
			h.oracle("RMSNorm", h.ref.RMSNorm(out, rstdRef, x.ref, w.ref, 1e-5))
			rstd := h.input(engine.F32, h.refValues(rstdRef), rows)
			dOut := h.randn(h.act, 1, rows, dim)
			dx := h.output(h.act, rows, dim)
			if frozen {
				h.check("RMSNormBackward", h.dut.RMSNormBackward(dx.dut, nil, dOut.dut, x.dut, w.dut, rstd.dut))
				h.oracle("RMSNormBackward", h.ref.RMSNormBackward(dx.ref, nil, dOut.ref, x.ref, w.ref, rstd.ref))
				h.compare("dx (accumulated)", dx)
				return
			}
			dwDT := engine.F32
			if c.dwAct {
				dwDT = h.act
			}
			dw := h.output(dwDT, dim)
			h.check("RMSNormBackward", h.dut.RMSNormBackward(dx.dut, dw.dut, dOut.dut, x.dut, w.dut, rstd.dut))
			h.oracle("RMSNormBackward", h.ref.RMSNormBackward(dx.ref, dw.ref, dOut.ref, x.ref, w.ref, rstd.ref))
			h.compare("dx (accumulated)", dx)
			h.compare("dWeight (accumulated)", dw)
		})
	}
}

// testQKNorm is the per-head RMSNorm of Qwen3 and Gemma 3 (q_norm, k_norm)
// as the decoder runs it: q [T, heads*headDim] viewed as [T*heads,
// headDim], one weight of headDim shared by every head, forward then
// backward with the weight's gradient summed over tokens and heads.
func testQKNorm(h *harness) {
	const tokens = 9
	for _, c := range []struct{ heads, headDim int }{{4, 128}, {2, 256}, {3, 6}} {
		h.sub(fmt.Sprintf("heads%d_headDim%d", c.heads, c.headDim), func(h *harness) {
			rows := tokens * c.heads
			q := h.randn(h.act, 2, tokens, c.heads*c.headDim)
			w := h.normWeight(c.headDim)
			out := h.output(h.act, tokens, c.heads*c.headDim)
			rstd := h.output(engine.F32, rows)
			x, o := h.view(q, 0, rows, c.headDim), h.view(out, 0, rows, c.headDim)
			h.check("RMSNorm", h.dut.RMSNorm(o.dut, rstd.dut, x.dut, w.dut, 1e-6))
			h.oracle("RMSNorm", h.ref.RMSNorm(o.ref, rstd.ref, x.ref, w.ref, 1e-6))
			h.compare("out", out)
			h.compare("rstd", rstd)
			// The backward reads the oracle's rstd on both sides.
			saved := h.input(engine.F32, h.refValues(rstd.ref), rows)
			dOut := h.randn(h.act, 1, tokens, c.heads*c.headDim)
			dq := h.output(h.act, tokens, c.heads*c.headDim)
			dw := h.output(engine.F32, c.headDim)
			dO, dx := h.view(dOut, 0, rows, c.headDim), h.view(dq, 0, rows, c.headDim)
			h.check("RMSNormBackward", h.dut.RMSNormBackward(dx.dut, dw.dut, dO.dut, x.dut, w.dut, saved.dut))
			h.oracle("RMSNormBackward", h.ref.RMSNormBackward(dx.ref, dw.ref, dO.ref, x.ref, w.ref, saved.ref))
			h.compare("dq (accumulated)", dq)
			h.compare("dWeight (accumulated)", dw)
		})
	}
}

// ropeTables are Hugging Face's default tables: angle = p * theta^(-2i/d).
func (h *harness) ropeTables(maxPos, headDim int) (cos, sin pair) {
	half := headDim / 2
	c, s := make([]float32, maxPos*half), make([]float32, maxPos*half)
	for p := 0; p < maxPos; p++ {
		for i := 0; i < half; i++ {
			a := float64(p) * math.Pow(10000, -2*float64(i)/float64(headDim))
			c[p*half+i], s[p*half+i] = float32(math.Cos(a)), float32(math.Sin(a))
		}
	}
	return h.input(engine.F32, c, maxPos, half), h.input(engine.F32, s, maxPos, half)
}

// packedPositions restarts at 0 for each packed sequence.
func packedPositions(starts []int32) []int32 {
	pos := make([]int32, starts[len(starts)-1])
	for s := 0; s+1 < len(starts); s++ {
		for i := starts[s]; i < starts[s+1]; i++ {
			pos[i] = i - starts[s]
		}
	}
	return pos
}

func testRoPE(h *harness) {
	for _, headDim := range []int{16, 64, 12} { // 12: no 16-byte path
		for _, inverse := range []bool{false, true} {
			h.sub(fmt.Sprintf("headDim%d_inverse=%v", headDim, inverse), func(h *harness) {
				const heads, maxPos = 4, 4096
				pos := packedPositions([]int32{0, 5, 13, 20})
				pos[19] = maxPos - 1 // a large angle
				cos, sin := h.ropeTables(maxPos, headDim)
				x := h.randn(h.act, 1, len(pos), heads*headDim)
				p := h.ints(pos)
				h.check("RoPE", h.dut.RoPE(x.dut, p.dut, cos.dut, sin.dut, heads, headDim, inverse))
				h.oracle("RoPE", h.ref.RoPE(x.ref, p.ref, cos.ref, sin.ref, heads, headDim, inverse))
				h.compare("x (in place)", x)
			})
		}
	}
}

// attnCase is one attention geometry of the suite.
type attnCase struct {
	name     string
	starts   []int32
	h, kvh   int
	headDim  int
	window   int
	qkvScale float32
	softCap  float32 // Gemma 2's attention soft-cap; 0: none
}

var attnCases = []attnCase{
	{"gqa4x2_d16_packed", []int32{0, 5, 13, 20}, 4, 2, 16, 0, 1, 0},
	{"gqa4x2_d16_packed_window4", []int32{0, 5, 13, 20}, 4, 2, 16, 4, 1, 0},
	{"mha2_d16_one_token_seqs", []int32{0, 1, 2, 7}, 2, 2, 16, 0, 1, 0},
	{"gqa8x2_d64_packed_long", []int32{0, 70, 71, 160}, 8, 2, 64, 0, 1, 0},
	{"gqa8x2_d64_window32", []int32{0, 70, 71, 160}, 8, 2, 64, 32, 1, 0},
	{"mqa4x1_d128_peaked", []int32{0, 96, 130}, 4, 1, 128, 0, 2.5, 0},
	// Several 64-row tiles per sequence: tiles with and without masking.
	{"gqa8x2_d64_many_tiles", []int32{0, 300, 301, 557}, 8, 2, 64, 0, 1, 0},
	{"gqa4x2_d128_many_tiles_window100", []int32{0, 260, 400}, 4, 2, 128, 100, 1, 0},
	{"gqa6x2_d96_many_tiles", []int32{0, 200}, 6, 2, 96, 0, 1, 0},
	// Soft-capped scores (Gemma 2): caps near the scores' size bend them.
	{"gqa4x2_d16_packed_softcap", []int32{0, 5, 13, 20}, 4, 2, 16, 0, 2, 1.5},
	{"gqa8x2_d64_window32_softcap", []int32{0, 70, 71, 160}, 8, 2, 64, 32, 2, 3},
	// A window longer than every sequence masks nothing beyond causality.
	{"gqa4x2_d16_packed_window64_longer_than_seqs", []int32{0, 5, 13, 20}, 4, 2, 16, 64, 1, 0},
	{"gqa8x2_d64_many_tiles_window500_longer_than_seqs", []int32{0, 300, 301, 557}, 8, 2, 64, 500, 1, 0},
	// Windows and caps across many 64-row tiles, on the tensor-core path
	// (bf16) and the float32 one.
	{"gqa8x2_d64_many_tiles_window80_softcap", []int32{0, 300, 301, 557}, 8, 2, 64, 80, 2, 5},
	{"gqa4x2_d128_many_tiles_window100_softcap", []int32{0, 260, 400}, 4, 2, 128, 100, 2, 4},
	// Gemma's head dim 256 (on engine/cuda, unless WHET_ATTN_TC256=0, its own
	// tensor-core tiles: 32-key forward tiles, 16-row backward tiles, dK and
	// dV in two launches): window and cap, and many tiles of every kernel
	// with GQA and packing.
	{"gqa4x1_d256_window24_softcap", []int32{0, 40, 90}, 4, 1, 256, 24, 1.5, 2},
	{"gqa4x2_d256_window200_longer", []int32{0, 40, 90}, 4, 2, 256, 200, 1, 0},
	{"gqa4x1_d256_many_tiles_window100_softcap", []int32{0, 260, 400}, 4, 1, 256, 100, 2, 4},
	{"gqa8x2_d256_many_tiles_packed", []int32{0, 200, 201, 330}, 8, 2, 256, 0, 1, 0},
}

func (c attnCase) layout() (engine.SeqLayout, engine.AttnParams, int) {
	T := int(c.starts[len(c.starts)-1])
	maxLen := 0
	for i := 0; i+1 < len(c.starts); i++ {
		maxLen = max(maxLen, int(c.starts[i+1]-c.starts[i]))
	}
	p := engine.AttnParams{NHeads: c.h, NKVHeads: c.kvh, HeadDim: c.headDim,
		Scale: float32(1 / math.Sqrt(float64(c.headDim))), Window: c.window, SoftCap: c.softCap}
	return engine.SeqLayout{Starts: c.starts, MaxLen: maxLen}, p, T
}

// seqs gives the layout with its Dev tensor filled on the backend under
// test (the oracle reads Starts).
func (h *harness) seqs(c attnCase) (dut, ref engine.SeqLayout) {
	h.t.Helper()
	l, _, _ := c.layout()
	dev := h.ints(c.starts)
	dut, ref = l, l
	dut.Dev, ref.Dev = dev.dut, dev.ref
	return dut, ref
}

func testAttention(h *harness) {
	for _, c := range attnCases {
		h.sub(c.name, func(h *harness) {
			_, p, T := c.layout()
			sd, sr := h.seqs(c)
			q := h.randn(h.act, c.qkvScale, T, c.h*c.headDim)
			k := h.randn(h.act, c.qkvScale, T, c.kvh*c.headDim)
			v := h.randn(h.act, 1, T, c.kvh*c.headDim)
			out, lse := h.output(h.act, T, c.h*c.headDim), h.output(engine.F32, c.h, T)
			h.check("Attention", h.dut.Attention(out.dut, lse.dut, q.dut, k.dut, v.dut, sd, p))
			h.oracle("Attention", h.ref.Attention(out.ref, lse.ref, q.ref, k.ref, v.ref, sr, p))
			h.compare("out", out)
			h.compare("lse", lse)
		})
	}
}

func testAttentionBackward(h *harness) {
	for _, c := range attnCases {
		h.sub(c.name, func(h *harness) {
			_, p, T := c.layout()
			sd, sr := h.seqs(c)
			q := h.randn(h.act, c.qkvScale, T, c.h*c.headDim)
			k := h.randn(h.act, c.qkvScale, T, c.kvh*c.headDim)
			v := h.randn(h.act, 1, T, c.kvh*c.headDim)
			// Both sides get the oracle's forward results (out rounded to
			// the activation dtype, lse in f32), so only the backward is
			// compared.
			outRef, err := h.ref.Alloc(engine.F32, T, c.h*c.headDim)
			h.oracle("Alloc", err)
			defer h.ref.Free(outRef)
			lseRef, err := h.ref.Alloc(engine.F32, c.h, T)
			h.oracle("Alloc", err)
			defer h.ref.Free(lseRef)
			h.oracle("Attention", h.ref.Attention(outRef, lseRef, q.ref, k.ref, v.ref, sr, p))
			out := h.input(h.act, h.refValues(outRef), T, c.h*c.headDim)
			lse := h.input(engine.F32, h.refValues(lseRef), c.h, T)
			dOut := h.randn(h.act, 1, T, c.h*c.headDim)
			dq := h.output(h.act, T, c.h*c.headDim)
			dk, dv := h.output(h.act, T, c.kvh*c.headDim), h.output(h.act, T, c.kvh*c.headDim)
			h.check("AttentionBackward", h.dut.AttentionBackward(dq.dut, dk.dut, dv.dut, dOut.dut, q.dut, k.dut, v.dut, out.dut, lse.dut, sd, p))
			h.oracle("AttentionBackward", h.ref.AttentionBackward(dq.ref, dk.ref, dv.ref, dOut.ref, q.ref, k.ref, v.ref, out.ref, lse.ref, sr, p))
			h.compare("dq (overwritten)", dq)
			h.compare("dk (overwritten)", dk)
			h.compare("dv (overwritten)", dv)
		})
	}
}

// testAttentionKV covers the optional engine.KVAttention: decode-time
// attention of Tq new tokens over a cache whose first qOffset+Tq rows are
// filled, read through views of a larger cache as generation does.
func testAttentionKV(h *harness) {
	kva := optional[engine.KVAttention](h, "engine.KVAttention (optional)")
	const cacheRows = 40
	for _, c := range []struct {
		name                     string
		heads, kvHeads, headDim  int
		qOffset, queries, window int
		softCap                  float32
	}{
		{"prefill_gqa4x2_d16", 4, 2, 16, 0, 20, 0, 0},
		{"decode_one_token_gqa4x2_d16", 4, 2, 16, 19, 1, 0, 0},
		{"decode_chunk_window4", 4, 2, 16, 12, 5, 4, 0},
		{"decode_mqa8x1_d64", 8, 1, 64, 30, 1, 0, 0},
		{"decode_gqa4x2_d128_window8", 4, 2, 128, 25, 2, 8, 0},
		{"decode_chunk_window4_softcap", 4, 2, 16, 12, 5, 4, 0.5},
		{"decode_chunk_window64_longer_than_cache", 4, 2, 16, 12, 5, 64, 0},
		{"decode_gqa8x2_d64_window8_softcap", 8, 2, 64, 30, 3, 8, 1},
		{"prefill_gqa4x1_d256_window6_softcap", 4, 1, 256, 0, 17, 6, 0.8},
		{"decode_gqa4x1_d256_window6_softcap", 4, 1, 256, 33, 1, 6, 0.8},
		{"prefill_gqa4x2_d256_two_key_tiles", 4, 2, 256, 0, 40, 0, 0},
		{"decode_chunk_gqa4x1_d256_window24_softcap", 4, 1, 256, 8, 32, 24, 0.6},
	} {
		h.sub(c.name, func(h *harness) {
			p := engine.AttnParams{NHeads: c.heads, NKVHeads: c.kvHeads, HeadDim: c.headDim,
				Scale: float32(1 / math.Sqrt(float64(c.headDim))), Window: c.window, SoftCap: c.softCap}
			kvd, rows := c.kvHeads*c.headDim, c.qOffset+c.queries
			kCache, vCache := h.randn(h.act, 1, cacheRows, kvd), h.randn(h.act, 1, cacheRows, kvd)
			k, v := h.view(kCache, 0, rows, kvd), h.view(vCache, 0, rows, kvd)
			q := h.randn(h.act, 1, c.queries, c.heads*c.headDim)
			out := h.output(h.act, c.queries, c.heads*c.headDim)
			h.check("AttentionKV", kva.AttentionKV(out.dut, q.dut, k.dut, v.dut, c.qOffset, p))
			h.oracle("AttentionKV", h.ref.AttentionKV(out.ref, q.ref, k.ref, v.ref, c.qOffset, p))
			h.compare("out (overwritten)", out)
		})
	}
}

// swigluCols: 301 columns take the GPU's element path, 64 its 16-byte path.
var swigluCols = []int{301, 64}

func testSwiGLU(h *harness) {
	testGated(h, "SwiGLU", h.dut.SwiGLU, h.ref.SwiGLU)
}

func testSwiGLUBackward(h *harness) {
	testGatedBackward(h, "SwiGLUBackward", h.dut.SwiGLUBackward, h.ref.SwiGLUBackward)
}

// testGeGLU and the ops after it cover the optional family ops
// (engine.GELUTanhGLU, engine.SoftCapper, engine.PartialRoPE); a backend
// without one skips it, and the model refuses the families that need it.
func testGeGLU(h *harness) {
	ge := optional[engine.GELUTanhGLU](h, "engine.GELUTanhGLU (Gemma's MLP)")
	testGated(h, "GeGLU", ge.GeGLU, h.ref.GeGLU)
}

func testGeGLUBackward(h *harness) {
	ge := optional[engine.GELUTanhGLU](h, "engine.GELUTanhGLU (Gemma's MLP)")
	testGatedBackward(h, "GeGLUBackward", ge.GeGLUBackward, h.ref.GeGLUBackward)
}

func testSoftCap(h *harness) {
	sc := optional[engine.SoftCapper](h, "engine.SoftCapper (Gemma 2's final logits)")
	for _, dt := range h.dtypes() {
		h.sub(dt.String(), func(h *harness) {
			x := h.randn(dt, 40, 7, 301) // logits of tens, capped at 30
			h.check("SoftCap", sc.SoftCap(x.dut, 30))
			h.oracle("SoftCap", h.ref.SoftCap(x.ref, 30))
			h.compare("x (in place)", x)
		})
	}
}

func testSoftCapBackward(h *harness) {
	sc := optional[engine.SoftCapper](h, "engine.SoftCapper (Gemma 2's final logits)")
	for _, dt := range h.dtypes() {
		h.sub(dt.String(), func(h *harness) {
			y := h.randn(engine.F32, 10, 7, 301)
			h.oracle("SoftCap", h.ref.SoftCap(y.ref, 30))
			capped := h.input(engine.F32, h.refValues(y.ref), 7, 301)
			dx := h.randn(dt, 1, 7, 301)
			h.check("SoftCapBackward", sc.SoftCapBackward(dx.dut, capped.dut, 30))
			h.oracle("SoftCapBackward", h.ref.SoftCapBackward(dx.ref, capped.ref, 30))
			h.compare("dx (in place)", dx)
		})
	}
}

func testRoPEPartial(h *harness) {
	pr := optional[engine.PartialRoPE](h, "engine.PartialRoPE (Phi-4-mini's partial rotary)")
	for _, c := range []struct{ headDim, rot int }{{16, 12}, {128, 96}, {80, 48}, {64, 64}} {
		for _, inverse := range []bool{false, true} {
			h.sub(fmt.Sprintf("headDim%d_rot%d_inverse=%v", c.headDim, c.rot, inverse), func(h *harness) {
				const heads, maxPos = 4, 4096
				pos := packedPositions([]int32{0, 5, 13, 20})
				pos[19] = maxPos - 1
				cos, sin := h.ropeTables(maxPos, c.rot)
				x := h.randn(h.act, 1, len(pos), heads*c.headDim)
				p := h.ints(pos)
				h.check("RoPEPartial", pr.RoPEPartial(x.dut, p.dut, cos.dut, sin.dut, heads, c.headDim, inverse))
				h.oracle("RoPEPartial", h.ref.RoPEPartial(x.ref, p.ref, cos.ref, sin.ref, heads, c.headDim, inverse))
				h.compare("x (in place)", x)
			})
		}
	}
}

// crossEntropyCase makes logits (one row large enough to overflow exp()
// unless the max is subtracted) and labels (every fifth ignored, the last
// at the top of the vocabulary) for the cross-entropy tests.
func crossEntropyCase(h *harness, n, vocab int) (logits []float32, labels []int32, scale float32) {
	logits = make([]float32, n*vocab)
	for i := range logits {
		logits[i] = 3 * float32(h.rng.NormFloat64())
	}
	for j := 0; j < vocab; j++ {
		logits[4*vocab+j] *= 40
	}
	labels = make([]int32, n)
	valid := 0
	for i := range labels {
		if i%5 == 2 {
			labels[i] = -100
			continue
		}
		labels[i] = int32(h.rng.IntN(vocab))
		valid++
	}
	labels[n-1] = int32(vocab - 1)
	return logits, labels, 1 / float32(valid+1)
}

func testSoftmaxCrossEntropy(h *harness) {
	const n = 37
	// 1000 columns take the GPU's 16-byte path, 1003 its element path.
	for _, vocab := range []int{1000, 1003} {
		for _, dt := range h.dtypes() {
			h.sub(fmt.Sprintf("logits_%s_vocab%d", dt, vocab), func(h *harness) {
				logits, labels, scale := crossEntropyCase(h, n, vocab)
				lg := h.input(dt, logits, n, vocab)
				lb := h.ints(labels)
				losses := h.output(engine.F32, n)
				h.check("SoftmaxCrossEntropy", h.dut.SoftmaxCrossEntropy(lg.dut, lb.dut, losses.dut, scale))
				h.oracle("SoftmaxCrossEntropy", h.ref.SoftmaxCrossEntropy(lg.ref, lb.ref, losses.ref, scale))
				h.compare("losses (overwritten)", losses)
				h.compare("logits gradient", lg)
				got := h.held(losses.dut)
				for i, l := range labels {
					if l == -100 && got[i] != 0 {
						h.t.Errorf("ignored row %d has loss %g, want 0", i, got[i])
					}
				}
			})
		}
	}
}

// testSoftmaxCrossEntropyInto covers the optional engine.CrossEntropyInto:
// float32 logits stay as they were, the gradient lands in grad (of the
// activation dtype), and both equal the oracle's in-place results.
func testSoftmaxCrossEntropyInto(h *harness) {
	ce := optional[engine.CrossEntropyInto](h, "engine.CrossEntropyInto (optional)")
	const n = 37
	for _, vocab := range []int{1000, 1003} {
		h.sub(fmt.Sprintf("grad_%s_vocab%d", h.act, vocab), func(h *harness) {
			logits, labels, scale := crossEntropyCase(h, n, vocab)
			lg := h.input(engine.F32, logits, n, vocab)
			lb := h.ints(labels)
			losses := h.output(engine.F32, n)
			grad := h.output(h.act, n, vocab)
			h.check("SoftmaxCrossEntropyInto", ce.SoftmaxCrossEntropyInto(grad.dut, lg.dut, lb.dut, losses.dut, scale))
			h.oracle("SoftmaxCrossEntropy", h.ref.SoftmaxCrossEntropy(lg.ref, lb.ref, losses.ref, scale))
			h.compare("losses (overwritten)", losses)
			h.compareValues("grad (overwritten)", h.held(grad.dut), h.refValues(lg.ref), h.tol)
			h.compareValues("logits (unchanged)", h.held(lg.dut), logits, Tol{})
		})
	}
}

// testSoftmaxCrossEntropyCapped covers the optional
// engine.CappedCrossEntropy (Gemma 2's final soft-cap fused into the
// loss) against the oracle's three separate ops: SoftCap in place, the
// in-place SoftmaxCrossEntropy of the capped logits, and SoftCapBackward
// at the capped values. In place (grad = logits, either dtype) and into
// a separate gradient of the activation dtype from float32 logits, which
// must stay as they were.
func testSoftmaxCrossEntropyCapped(h *harness) {
	ce := optional[engine.CappedCrossEntropy](h, "engine.CappedCrossEntropy (Gemma 2's final logits)")
	const n, capValue = 37, 30
	oracle := func(h *harness, lg, lb, losses pair, scale float32) {
		h.oracle("SoftCap", h.ref.SoftCap(lg.ref, capValue))
		capped := h.input(engine.F32, h.refValues(lg.ref), n, engine.Cols(lg.ref))
		h.oracle("SoftmaxCrossEntropy", h.ref.SoftmaxCrossEntropy(lg.ref, lb.ref, losses.ref, scale))
		h.oracle("SoftCapBackward", h.ref.SoftCapBackward(lg.ref, capped.ref, capValue))
	}
	for _, vocab := range []int{1000, 1003} {
		// In place on float32 logits only: the engine's logits are float32,
		// and bf16 ones would be rounded once more after the oracle's cap.
		h.sub(fmt.Sprintf("in_place_f32_vocab%d", vocab), func(h *harness) {
			logits, labels, scale := crossEntropyCase(h, n, vocab)
			lg := h.input(engine.F32, logits, n, vocab)
			lb := h.ints(labels)
			losses := h.output(engine.F32, n)
			h.check("SoftmaxCrossEntropyCapped", ce.SoftmaxCrossEntropyCapped(lg.dut, lg.dut, lb.dut, losses.dut, scale, capValue))
			oracle(h, lg, lb, losses, scale)
			h.compare("losses (overwritten)", losses)
			h.compare("logits gradient (in place)", lg)
		})
		h.sub(fmt.Sprintf("grad_%s_vocab%d", h.act, vocab), func(h *harness) {
			logits, labels, scale := crossEntropyCase(h, n, vocab)
			lg := h.input(engine.F32, logits, n, vocab)
			lb := h.ints(labels)
			losses := h.output(engine.F32, n)
			grad := h.output(h.act, n, vocab)
			h.check("SoftmaxCrossEntropyCapped", ce.SoftmaxCrossEntropyCapped(grad.dut, lg.dut, lb.dut, losses.dut, scale, capValue))
			oracle(h, lg, lb, losses, scale)
			h.compare("losses (overwritten)", losses)
			h.compareValues("grad (overwritten)", h.held(grad.dut), h.refValues(lg.ref), h.tol)
			h.compareValues("logits (unchanged)", h.held(lg.dut), logits, Tol{})
			got := h.held(losses.dut)
			for i, l := range labels {
				if l == -100 && got[i] != 0 {
					h.t.Errorf("ignored row %d has loss %g, want 0", i, got[i])
				}
			}
		})
	}
}

func testDropout(h *harness) {
	for _, p := range []float32{0, 0.1, 0.5} {
		h.sub(fmt.Sprintf("p%g", p), func(h *harness) {
			const seed = 0x1234_5678_9abc
			x := h.randn(h.act, 1, 33, 129)
			out := h.output(h.act, 33, 129)
			h.check("Dropout", h.dut.Dropout(out.dut, x.dut, p, seed))
			h.oracle("Dropout", h.ref.Dropout(out.ref, x.ref, p, seed))
			got, want := h.held(out.dut), h.refValues(out.ref)
			for i := range want {
				if (got[i] == 0) != (want[i] == 0) {
					h.t.Fatalf("element %d: kept=%v, oracle kept=%v: the mask must be the same function of (seed, index)",
						i, got[i] != 0, want[i] != 0)
				}
			}
			h.compare("out", out)
		})
	}
}

func testAdamW(h *harness) {
	for _, sc := range []float32{0, 0.37} {
		for _, gdt := range h.dtypes() {
			testAdamWCase(h, gdt, sc)
		}
	}
}

// testAdamWCase is AdamW with grad of dtype gdt and GradScale sc (0: none;
// otherwise clipping's coefficient, folded into the step).
func testAdamWCase(h *harness, gdt engine.DType, sc float32) {
	name := "grad_" + gdt.String()
	if sc != 0 {
		name += "_scaled"
	}
	{
		h.sub(name, func(h *harness) {
			const n = 4099
			param := h.randn(engine.F32, 0.1, n)
			grad := h.randn(gdt, 0.01, n)
			m := h.randn(engine.F32, 0.01, n)
			vv := make([]float32, n)
			for i := range vv {
				g := 0.01 * h.rng.NormFloat64()
				vv[i] = float32(g * g)
			}
			v := h.input(engine.F32, vv, n)
			before := h.held(param.dut)
			hp := engine.AdamWParams{LR: 1e-2, Beta1: 0.9, Beta2: 0.999, Eps: 1e-8, WeightDecay: 0.1, Step: 5, GradScale: sc}
			h.check("AdamW", h.dut.AdamW(param.dut, grad.dut, m.dut, v.dut, hp))
			h.oracle("AdamW", h.ref.AdamW(param.ref, grad.ref, m.ref, v.ref, hp))
			// Compare the update, not the parameter: the step is small
			// against the weight, so a wrong step would hide in the sum.
			got, want := h.held(param.dut), h.refValues(param.ref)
			for i := range got {
				got[i] -= before[i]
				want[i] -= before[i]
			}
			h.compareValues("param update", got, want, h.tol)
			h.compare("m", m)
			h.compare("v", v)
		})
	}
}

// testAdamWBF16Master is AdamW on a bf16 master weight with stochastic
// rounding (train.master_weights: bf16): the moments within tolerance,
// and the weights equal to the oracle's but for the rare element whose
// f32 result lands on the other side of its rounding threshold (the
// random bits are the same function of (key, step, index) everywhere, so
// a different generator would part about half of them), those one bf16
// step apart.
func testAdamWBF16Master(h *harness) {
	for _, pdt := range []engine.DType{engine.BF16, engine.F32} {
		h.sub("param_"+pdt.String(), func(h *harness) {
			const n = 70001
			param := h.randn(engine.BF16, 0.1, n) // bf16 values, also in an F32 tensor
			if pdt == engine.F32 {
				param = h.input(engine.F32, h.held(param.dut), n)
			}
			grad := h.randn(h.act, 0.01, n)
			m := h.randn(engine.F32, 0.01, n)
			vv := make([]float32, n)
			for i := range vv {
				g := 0.01 * h.rng.NormFloat64()
				vv[i] = float32(g * g)
			}
			v := h.input(engine.F32, vv, n)
			for step := 4; step <= 5; step++ {
				hp := engine.AdamWParams{LR: 1e-3, Beta1: 0.9, Beta2: 0.999, Eps: 1e-8, WeightDecay: 0.1, Step: step,
					GradScale: 0.61, RoundSeed: 0x5eed1}
				h.check("AdamW", h.dut.AdamW(param.dut, grad.dut, m.dut, v.dut, hp))
				h.oracle("AdamW", h.ref.AdamW(param.ref, grad.ref, m.ref, v.ref, hp))
			}
			h.compareRounded("param", h.held(param.dut), h.refValues(param.ref))
			h.compare("m", m)
			h.compare("v", v)
		})
	}
}

// compareRounded checks stochastically rounded bf16 values: each a bf16
// value, equal to the oracle's or one bf16 step away, at most 1 in 1000
// of them apart.
func (h *harness) compareRounded(name string, got, want []float32) {
	h.t.Helper()
	apart := 0
	for i := range want {
		g, w := got[i], want[i]
		if g != engine.RoundBF16Stochastic(g, 0) {
			h.t.Fatalf("%s[%d] = %g is not a bf16 value", name, i, g)
		}
		if g == w {
			continue
		}
		apart++
		lo, hi := math.Float32bits(w)&^0xffff-0x10000, math.Float32bits(w)&^0xffff+0x10000
		if u := math.Float32bits(g); u != lo && u != hi {
			h.t.Errorf("%s[%d] = %g, oracle %g: more than one bf16 step apart", name, i, g, w)
			return
		}
	}
	if apart > len(want)/1000 {
		h.t.Errorf("%s: %d of %d values rounded otherwise than the oracle (bound %d): not the same random bits?", name, apart, len(want), len(want)/1000)
		return
	}
	h.t.Logf("%s: %d of %d values one bf16 step from the oracle's", name, apart, len(want))
}

// testAdamWAll covers the optional engine.MultiAdamW: tensors of several
// sizes (one larger than a launch chunk), with and without a compute copy
// to refresh, against the oracle's AdamW and Copy tensor by tensor.
func testAdamWAll(h *harness) {
	multi := optional[engine.MultiAdamW](h, "engine.MultiAdamW (optional)")
	hp := engine.AdamWParams{LR: 1e-2, Beta1: 0.9, Beta2: 0.999, Eps: 1e-8, WeightDecay: 0.05, Step: 3}
	type state struct{ param, grad, m, v, out pair }
	var states []state
	var sets []engine.AdamWSet
	var before [][]float32
	for i, n := range []int{4099, 17, 70001, 1} {
		gdt := h.dtypes()[i%len(h.dtypes())]
		st := state{param: h.randn(engine.F32, 0.1, n), grad: h.randn(gdt, 0.01, n), m: h.randn(engine.F32, 0.01, n)}
		vv := make([]float32, n)
		for j := range vv {
			g := 0.01 * h.rng.NormFloat64()
			vv[j] = float32(g * g)
		}
		st.v = h.input(engine.F32, vv, n)
		set := engine.AdamWSet{Param: st.param.dut, Grad: st.grad.dut, M: st.m.dut, V: st.v.dut}
		if i%2 == 0 {
			st.out = h.output(h.act, n)
			set.Out = st.out.dut
		}
		states = append(states, st)
		sets = append(sets, set)
		before = append(before, h.held(st.param.dut))
	}
	h.check("AdamWAll", multi.AdamWAll(sets, hp))
	for i, st := range states {
		h.oracle("AdamW", h.ref.AdamW(st.param.ref, st.grad.ref, st.m.ref, st.v.ref, hp))
		got, want := h.held(st.param.dut), h.refValues(st.param.ref)
		for j := range got {
			got[j] -= before[i][j]
			want[j] -= before[i][j]
		}
		h.compareValues(fmt.Sprintf("tensor %d param update", i), got, want, h.tol)
		h.compare(fmt.Sprintf("tensor %d m", i), st.m)
		h.compare(fmt.Sprintf("tensor %d v", i), st.v)
		if st.out.dut != nil {
			// The copy must be the backend's own updated param, rounded.
			h.oracle("Copy", h.ref.Copy(st.out.ref, st.param.ref))
			h.compare(fmt.Sprintf("tensor %d compute copy", i), st.out)
		}
	}
	if err := multi.AdamWAll(nil, hp); err != nil {
		h.t.Errorf("AdamWAll of no tensors: %v", err)
	}
}

// testAdamWAllBF16Master is engine.MultiAdamW over bf16 masters (one
// larger than a launch chunk, so the rounding's counter must carry the
// chunk's offset) beside an f32 master with a compute copy, against the
// oracle's AdamW tensor by tensor.
func testAdamWAllBF16Master(h *harness) {
	multi := optional[engine.MultiAdamW](h, "engine.MultiAdamW (optional)")
	hp := engine.AdamWParams{LR: 1e-3, Beta1: 0.9, Beta2: 0.999, Eps: 1e-8, WeightDecay: 0.05, Step: 7, GradScale: 0.5}
	type state struct {
		param, grad, m, v, out pair
		key                    uint64
	}
	var states []state
	var sets []engine.AdamWSet
	for i, n := range []int{70001, 4099, 33, 1 << 16} {
		st := state{grad: h.randn(h.act, 0.01, n), m: h.randn(engine.F32, 0.01, n)}
		vv := make([]float32, n)
		for j := range vv {
			g := 0.01 * h.rng.NormFloat64()
			vv[j] = float32(g * g)
		}
		st.v = h.input(engine.F32, vv, n)
		set := engine.AdamWSet{Grad: st.grad.dut, M: st.m.dut, V: st.v.dut}
		if i == 1 { // an f32 master with its compute copy
			st.param = h.randn(engine.F32, 0.1, n)
			st.out = h.output(h.act, n)
			set.Out = st.out.dut
		} else {
			st.param = h.randn(h.act, 0.1, n)
			st.key = uint64(1000 + 2*i + 1)
			set.RoundSeed = st.key
		}
		set.Param = st.param.dut
		states = append(states, st)
		sets = append(sets, set)
	}
	h.check("AdamWAll", multi.AdamWAll(sets, hp))
	for i, st := range states {
		p := hp
		p.RoundSeed = st.key
		h.oracle("AdamW", h.ref.AdamW(st.param.ref, st.grad.ref, st.m.ref, st.v.ref, p))
		if st.key != 0 {
			h.compareRounded(fmt.Sprintf("tensor %d bf16 master", i), h.held(st.param.dut), h.refValues(st.param.ref))
		} else {
			h.compare(fmt.Sprintf("tensor %d param", i), st.param)
			h.oracle("Copy", h.ref.Copy(st.out.ref, st.param.ref))
			h.compare(fmt.Sprintf("tensor %d compute copy", i), st.out)
		}
		h.compare(fmt.Sprintf("tensor %d m", i), st.m)
		h.compare(fmt.Sprintf("tensor %d v", i), st.v)
	}
	copyOut := h.output(h.act, states[0].param.dut.Len())
	bad := []engine.AdamWSet{{Param: states[0].param.dut, Grad: states[0].grad.dut, M: states[0].m.dut, V: states[0].v.dut,
		Out: copyOut.dut, RoundSeed: 3}}
	if err := multi.AdamWAll(bad, hp); err == nil {
		h.t.Error("AdamWAll took a bf16 master (RoundSeed set) with a compute copy to refresh")
	}
}

// testViews runs ops on views at non-zero offsets inside larger buffers and
// compares the whole buffers: results must land in the window and nowhere
// else.
func testViews(h *harness) {
	h.sub("MatMul", func(h *harness) {
		abuf, bbuf, cbuf := h.randn(h.act, 1, 3+9*16), h.randn(h.act, 1, 16*5+40), h.output(h.act, 7+9*5+11)
		a, b, c := h.view(abuf, 3, 9, 16), h.view(bbuf, 40, 16, 5), h.view(cbuf, 7, 9, 5)
		h.check("MatMul", h.dut.MatMul(c.dut, a.dut, b.dut, false, false, 1, 1))
		h.oracle("MatMul", h.ref.MatMul(c.ref, a.ref, b.ref, false, false, 1, 1))
		h.compare("buffer around c", cbuf)
	})
	h.sub("RMSNorm", func(h *harness) {
		xbuf, obuf, rbuf := h.randn(h.act, 1, 12, 32), h.output(h.act, 12, 32), h.output(engine.F32, 10)
		w := h.normWeight(32)
		x, out, rstd := h.view(xbuf, 3*32, 5, 32), h.view(obuf, 2*32+1, 5, 32), h.view(rbuf, 1, 5)
		h.check("RMSNorm", h.dut.RMSNorm(out.dut, rstd.dut, x.dut, w.dut, 1e-6))
		h.oracle("RMSNorm", h.ref.RMSNorm(out.ref, rstd.ref, x.ref, w.ref, 1e-6))
		h.compare("buffer around out", obuf)
		h.compare("buffer around rstd", rbuf)
	})
	h.sub("Embedding", func(h *harness) {
		table, obuf := h.randn(h.act, 1, 50, 24), h.output(h.act, 30, 24)
		ids := h.ints(embeddingIDs)
		out := h.view(obuf, 5*24, len(embeddingIDs), 24)
		h.check("Embedding", h.dut.Embedding(out.dut, table.dut, ids.dut))
		h.oracle("Embedding", h.ref.Embedding(out.ref, table.ref, ids.ref))
		h.compare("buffer around out", obuf)
	})
	h.sub("AddScaled", func(h *harness) {
		dbuf, src := h.output(engine.F32, 100), h.randn(h.act, 1, 31)
		dst := h.view(dbuf, 17, 31)
		h.check("AddScaled", h.dut.AddScaled(dst.dut, src.dut, 2))
		h.oracle("AddScaled", h.ref.AddScaled(dst.ref, src.ref, 2))
		h.compare("buffer around dst", dbuf)
	})
	h.sub("RoPE_and_Attention_on_one_qkv_buffer", func(h *harness) {
		h.tol = h.tols.forOp("Attention")
		c := attnCases[0]
		_, p, T := c.layout()
		sd, sr := h.seqs(c)
		qn, kvn := T*c.h*c.headDim, T*c.kvh*c.headDim
		qkv := h.randn(h.act, 1, qn+2*kvn)
		q, k, v := h.view(qkv, 0, T, c.h*c.headDim), h.view(qkv, qn, T, c.kvh*c.headDim), h.view(qkv, qn+kvn, T, c.kvh*c.headDim)
		cos, sin := h.ropeTables(64, c.headDim)
		pos := h.ints(packedPositions(c.starts))
		for _, x := range []struct {
			t     pair
			heads int
		}{{q, c.h}, {k, c.kvh}} {
			h.check("RoPE", h.dut.RoPE(x.t.dut, pos.dut, cos.dut, sin.dut, x.heads, c.headDim, false))
			h.oracle("RoPE", h.ref.RoPE(x.t.ref, pos.ref, cos.ref, sin.ref, x.heads, c.headDim, false))
		}
		h.compare("qkv after RoPE on q and k", qkv)
		obuf, lbuf := h.output(h.act, qn+64), h.output(engine.F32, c.h*T+3)
		out, lse := h.view(obuf, 64, T, c.h*c.headDim), h.view(lbuf, 3, c.h, T)
		h.check("Attention", h.dut.Attention(out.dut, lse.dut, q.dut, k.dut, v.dut, sd, p))
		h.oracle("Attention", h.ref.Attention(out.ref, lse.ref, q.ref, k.ref, v.ref, sr, p))
		h.compare("buffer around out", obuf)
		h.compare("buffer around lse", lbuf)
	})
}
