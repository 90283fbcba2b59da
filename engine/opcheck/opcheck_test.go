package opcheck

import (
	"errors"
	"math"
	"strings"
	"testing"

	"whet/engine"
)

// fake is a tensor with a shape and dtype and no storage.
type fake struct {
	shape []int
	dt    engine.DType
}

func (f fake) Shape() []int        { return f.shape }
func (f fake) DType() engine.DType { return f.dt }
func (f fake) Len() int {
	n := 1
	for _, d := range f.shape {
		n *= d
	}
	return n
}

func TestRulesAndMessages(t *testing.T) {
	x := fake{[]int{4, 6}, engine.BF16}
	ids := fake{[]int{5}, engine.I32}
	good := engine.AttnParams{NHeads: 4, NKVHeads: 2, HeadDim: 8, Scale: 0.35}
	q, kv := fake{[]int{10, 32}, engine.BF16}, fake{[]int{10, 16}, engine.BF16}
	for _, c := range []struct {
		name string
		run  func(c *Checker)
		want string // "" for no error
	}{
		{"float ok", func(c *Checker) { c.Float("x", x) }, ""},
		{"float rejects i32", func(c *Checker) { c.Float("ids", ids) }, "cpu: Op: ids [5] is i32, want a float tensor (f32 or bf16)"},
		{"dtype", func(c *Checker) { c.DType("m", x, engine.F32) }, "cpu: Op: m [4 6] is bf16, want f32"},
		{"matrix", func(c *Checker) { c.Matrix("x", x, 4, 7) }, "cpu: Op: x has shape [4 6] (4x6), want 4x7"},
		{"length", func(c *Checker) { c.Length("ids", ids, 4) }, "cpu: Op: ids has shape [5] (5 elements), want 4 elements"},
		{"same length", func(c *Checker) { c.SameLen("a", x, "b", ids) }, "cpu: Op: a [4 6] (24 elements) and b [5] (5 elements) differ in length"},
		{"first error wins", func(c *Checker) { c.Length("ids", ids, 4); c.Matrix("x", x, 1, 1) }, "want 4 elements"},
		{"heads", func(c *Checker) { p := good; p.NKVHeads = 3; c.AttnParams(p, 0) }, "all must be positive and NHeads a multiple of NKVHeads"},
		{"head dim limit", func(c *Checker) { c.AttnParams(good, 4) }, "HeadDim 8 is above the 4 the attention kernels support"},
		{"window", func(c *Checker) { p := good; p.Window = -1; c.AttnParams(p, 0) }, "Window -1 is negative"},
		{"scale", func(c *Checker) { p := good; p.Scale = float32(math.Inf(1)); c.AttnParams(p, 0) }, "is not finite"},
		{"layout ok", func(c *Checker) {
			c.Attention(q, kv, kv, engine.SeqLayout{Starts: []int32{0, 4, 10}, MaxLen: 6}, good, 0)
		}, ""},
		{"layout end", func(c *Checker) {
			c.Attention(q, kv, kv, engine.SeqLayout{Starts: []int32{0, 4, 9}, MaxLen: 6}, good, 0)
		}, "must begin at 0 and end at T = 10"},
		{"layout decreasing", func(c *Checker) {
			c.Attention(q, kv, kv, engine.SeqLayout{Starts: []int32{0, 6, 4, 10}, MaxLen: 6}, good, 0)
		}, "decreases at index 2"},
		{"layout max length", func(c *Checker) {
			c.Attention(q, kv, kv, engine.SeqLayout{Starts: []int32{0, 4, 10}, MaxLen: 5}, good, 0)
		}, "seqs.MaxLen 5 is below the longest sequence (6 tokens)"},
		{"kv shape", func(c *Checker) {
			c.Attention(q, fake{[]int{10, 8}, engine.BF16}, kv, engine.SeqLayout{Starts: []int32{0, 10}, MaxLen: 10}, good, 0)
		}, "k has shape [10 8] (10x8), want 10x16"},
		{"decode ok", func(c *Checker) {
			c.AttentionKV(fake{[]int{2, 32}, engine.BF16}, fake{[]int{2, 32}, engine.BF16}, kv, kv, 8, good, 0)
		}, ""},
		{"decode offset", func(c *Checker) {
			c.AttentionKV(fake{[]int{2, 32}, engine.BF16}, fake{[]int{2, 32}, engine.BF16}, kv, kv, 7, good, 0)
		}, "qOffset 7 + 2 queries must equal the 10 cached keys"},
		{"layernorm ok", func(c *Checker) {
			c.LayerNorm(x, fake{[]int{4}, engine.F32}, fake{[]int{4}, engine.F32}, x, fake{[]int{6}, engine.BF16}, fake{[]int{6}, engine.BF16}, 1e-6)
		}, ""},
		{"layernorm bias", func(c *Checker) {
			c.LayerNorm(x, fake{[]int{4}, engine.F32}, fake{[]int{4}, engine.F32}, x, fake{[]int{6}, engine.BF16}, fake{[]int{7}, engine.BF16}, 1e-6)
		}, "bias has shape [7] (7 elements), want 6 elements"},
		{"layernorm eps", func(c *Checker) {
			c.LayerNorm(x, fake{[]int{4}, engine.F32}, fake{[]int{4}, engine.F32}, x, fake{[]int{6}, engine.BF16}, fake{[]int{6}, engine.BF16}, -1)
		}, "eps -1 must not be negative"},
	} {
		t.Run(c.name, func(t *testing.T) {
			ch := &Checker{Backend: "cpu", Op: "Op"}
			c.run(ch)
			switch {
			case c.want == "" && ch.Err != nil:
				t.Errorf("unexpected error %v", ch.Err)
			case c.want != "" && (ch.Err == nil || !strings.Contains(ch.Err.Error(), c.want)):
				t.Errorf("error %v, want one containing %q", ch.Err, c.want)
			}
		})
	}
	ch := &Checker{Backend: "cuda", Op: "Attention"}
	ch.AttnParams(engine.AttnParams{NHeads: 1, NKVHeads: 1, HeadDim: 512, Scale: 1}, 256)
	if !errors.Is(ch.Err, engine.ErrNotImplemented) {
		t.Errorf("head dim above the limit: %v does not wrap engine.ErrNotImplemented", ch.Err)
	}
}

func posInf() float64 { var z float64; return 1 / z }

func TestLayerNormGradsSkipsAbsent(t *testing.T) {
	x, w := &fake{[]int{4, 6}, engine.BF16}, &fake{[]int{6}, engine.BF16}
	stat := &fake{[]int{4}, engine.F32}
	ch := &Checker{Backend: "cpu", Op: "LayerNormBackward"}
	if rows, dim, ok := LayerNormGrads(ch, nil, nil, nil, x, x, w, stat, stat); !ok || rows != 4 || dim != 6 {
		t.Fatalf("all gradients absent: rows %d dim %d ok %v err %v", rows, dim, ok, ch.Err)
	}
	LayerNormGrads(ch, x, w, &fake{[]int{5}, engine.F32}, x, x, w, stat, stat)
	if ch.Err == nil || !strings.Contains(ch.Err.Error(), "dBias has shape [5] (5 elements), want 6 elements") {
		t.Errorf("short dBias: error %v", ch.Err)
	}
}

func TestDisjointReportsFirstOverlap(t *testing.T) {
	a, b, c := &fake{[]int{2}, engine.F32}, &fake{[]int{3}, engine.F32}, &fake{[]int{4}, engine.F32}
	same := func(x, y *fake) bool { return x == y }
	ch := &Checker{Backend: "cuda", Op: "Op"}
	if !Disjoint(ch, same, []string{"out"}, []*fake{a}, []string{"x", "y"}, []*fake{b, c}) {
		t.Fatalf("distinct tensors: %v", ch.Err)
	}
	Disjoint(ch, same, []string{"o1", "o2"}, []*fake{a, b}, []string{"x"}, []*fake{c})
	if ch.Err != nil {
		t.Fatalf("distinct outputs: %v", ch.Err)
	}
	Disjoint(ch, same, []string{"o1", "o2"}, []*fake{a, a}, []string{"x", "y"}, []*fake{b, b})
	if want := "cuda: Op: output o1 [2] overlaps input o2 [2]"; ch.Err == nil || ch.Err.Error() != want {
		t.Errorf("two outputs in one place: error %v, want %q", ch.Err, want)
	}
	ch = &Checker{Backend: "cpu", Op: "Op"}
	Disjoint(ch, same, []string{"out"}, []*fake{a}, []string{"x", "y"}, []*fake{b, a})
	if want := "cpu: Op: output out [2] overlaps input y [2]"; ch.Err == nil || ch.Err.Error() != want {
		t.Errorf("output on an input: error %v, want %q", ch.Err, want)
	}
}

func TestRMSNormShapes(t *testing.T) {
	x, w := &fake{[]int{4, 6}, engine.BF16}, &fake{[]int{6}, engine.BF16}
	stat := &fake{[]int{4}, engine.F32}
	ch := &Checker{Backend: "cpu", Op: "RMSNorm"}
	if rows, dim, ok := ch.RMSNorm(x, stat, x, w); !ok || rows != 4 || dim != 6 {
		t.Fatalf("good shapes: rows %d dim %d ok %v err %v", rows, dim, ok, ch.Err)
	}
	ch.RMSNorm(x, &fake{[]int{5}, engine.F32}, x, w)
	if ch.Err == nil || !strings.Contains(ch.Err.Error(), "cpu: RMSNorm: rstd has shape [5] (5 elements), want 4 elements") {
		t.Errorf("short rstd: error %v", ch.Err)
	}
	ch = &Checker{Backend: "cuda", Op: "RMSNormBackward"}
	if _, _, ok := RMSNormGrads(ch, x, nil, x, x, w, stat); !ok {
		t.Fatalf("frozen weight: %v", ch.Err)
	}
	RMSNormGrads(ch, x, &fake{[]int{7}, engine.F32}, x, x, w, stat)
	if ch.Err == nil || !strings.Contains(ch.Err.Error(), "dWeight has shape [7] (7 elements), want 6 elements") {
		t.Errorf("long dWeight: error %v", ch.Err)
	}
}

func TestMatMulShapes(t *testing.T) {
	a, b := fake{[]int{3, 5}, engine.F32}, fake{[]int{4, 5}, engine.BF16}
	ch := &Checker{Backend: "cpu", Op: "MatMul"}
	if m, k, n, ok := ch.MatMul(fake{[]int{3, 4}, engine.F32}, a, b, false, true); !ok || m != 3 || k != 5 || n != 4 {
		t.Fatalf("a@b^T: m %d k %d n %d ok %v err %v", m, k, n, ok, ch.Err)
	}
	ch.MatMul(fake{[]int{3, 4}, engine.F32}, a, b, false, false)
	if want := "cpu: MatMul: inner dimensions differ: op(a) is 3x5 (a [3 5], transA=false), op(b) is 4x5 (b [4 5], transB=false)"; ch.Err == nil || ch.Err.Error() != want {
		t.Errorf("a@b: error %v, want %q", ch.Err, want)
	}
	ch = &Checker{Backend: "cuda", Op: "MatMul"}
	ch.MatMul(fake{[]int{4, 4}, engine.F32}, a, a, true, false)
	if want := "cuda: MatMul: c has shape [4 4] (4x4), want 5x5"; ch.Err == nil || ch.Err.Error() != want {
		t.Errorf("a^T@a into a 4x4 c: error %v, want %q", ch.Err, want)
	}
}

func TestShapeLen(t *testing.T) {
	for _, c := range []struct {
		shape []int
		limit int
		want  int
		err   string
	}{
		{[]int{3, 4}, 12, 12, ""},
		{[]int{}, 1, 1, ""},
		{[]int{0, 5}, 1, 0, ""},
		{[]int{3, -1}, 100, 0, "negative dimension in shape [3 -1]"},
		{[]int{3, 5}, 14, 0, "shape [3 5] is too large"},
	} {
		n, err := ShapeLen(c.shape, c.limit)
		switch {
		case c.err == "" && (err != nil || n != c.want):
			t.Errorf("ShapeLen(%v, %d) = %d, %v; want %d", c.shape, c.limit, n, err, c.want)
		case c.err != "" && (err == nil || err.Error() != c.err):
			t.Errorf("ShapeLen(%v, %d): error %v, want %q", c.shape, c.limit, err, c.err)
		}
	}
}

func TestRoPEShapes(t *testing.T) {
	x, pos := fake{[]int{5, 3 * 8}, engine.BF16}, fake{[]int{5}, engine.I32}
	tab := fake{[]int{100, 3}, engine.F32}
	ch := &Checker{Backend: "cpu", Op: "RoPEPartial"}
	if rows, maxPos, ok := ch.RoPE(x, pos, tab, tab, 3, 8, 6); !ok || rows != 5 || maxPos != 100 {
		t.Fatalf("6 of 8 dims rotated: rows %d maxPos %d ok %v err %v", rows, maxPos, ok, ch.Err)
	}
	ch.RoPE(x, pos, tab, tab, 3, 8, 10)
	if ch.Err == nil || !strings.Contains(ch.Err.Error(), "the rotary dimensions 10 in (0, headDim]") {
		t.Errorf("rot above headDim: error %v", ch.Err)
	}
	ch = &Checker{Backend: "cuda", Op: "RoPE"}
	ch.RoPE(x, pos, tab, tab, 3, 8, 8)
	if want := "cuda: RoPE: cos has shape [100 3] (100x3), want 100x4"; ch.Err == nil || ch.Err.Error() != want {
		t.Errorf("tables for 6 dims, 8 rotated: error %v, want %q", ch.Err, want)
	}
}

func TestCrossEntropyShapesAndLabels(t *testing.T) {
	logits := fake{[]int{4, 9}, engine.BF16}
	ch := &Checker{Backend: "cuda", Op: "SoftmaxCrossEntropy"}
	if n, vocab, ok := ch.CrossEntropy(logits, fake{[]int{4}, engine.I32}, fake{[]int{4}, engine.F32}); !ok || n != 4 || vocab != 9 {
		t.Fatalf("good shapes: n %d vocab %d ok %v err %v", n, vocab, ok, ch.Err)
	}
	err := ch.BadLabel(2, 9, 9, logits, -100)
	if want := "cuda: SoftmaxCrossEntropy: labels[2] = 9 is outside the vocabulary of 9 (logits [4 9]); use -100 to ignore a token"; err == nil || err.Error() != want || ch.Err != err {
		t.Errorf("bad label: error %v (recorded %v), want %q", err, ch.Err, want)
	}
	ch = &Checker{Backend: "cpu", Op: "SoftmaxCrossEntropy"}
	ch.CrossEntropy(logits, fake{[]int{4}, engine.I32}, fake{[]int{3}, engine.F32})
	if ch.Err == nil || !strings.Contains(ch.Err.Error(), "losses has shape [3] (3 elements), want 4 elements") {
		t.Errorf("short losses: error %v", ch.Err)
	}
}
