package cpu

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"whet/engine"
)

// The forward tests compare each op with a second, deliberately naive
// float64 formulation written from the op's definition (not from the
// implementation's loop structure), so that the finite-difference tests,
// which only prove the backward consistent with the forward, rest on a
// forward that is itself right.

func closeTo(t *testing.T, name string, got []float32, want []float64, tol float64) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d values, want %d", name, len(got), len(want))
	}
	for i, w := range want {
		if d := math.Abs(float64(got[i]) - w); d > tol*(1+math.Abs(w)) || math.IsNaN(float64(got[i])) {
			t.Fatalf("%s[%d] = %g, want %g (diff %g)", name, i, got[i], w, d)
		}
	}
}

func TestMatMulMatchesNaive(t *testing.T) {
	b := New()
	rng := rand.New(rand.NewPCG(21, 22))
	for _, dims := range [][3]int{{1, 1, 1}, {3, 7, 5}, {70, 33, 65}, {130, 129, 131}} {
		M, K, N := dims[0], dims[1], dims[2]
		for _, tr := range [][2]bool{{false, false}, {false, true}, {true, false}, {true, true}} {
			for _, ab := range [][2]float32{{1, 0}, {0.5, 1}, {-2, 0.25}} {
				alpha, beta := ab[0], ab[1]
				a, bm, c := randn(rng, M*K, 1), randn(rng, K*N, 1), randn(rng, M*N, 1)
				at := func(i, k int) float64 { // op(a)[i,k]
					if tr[0] {
						return float64(a[k*M+i])
					}
					return float64(a[i*K+k])
				}
				bt := func(k, j int) float64 { // op(b)[k,j]
					if tr[1] {
						return float64(bm[j*K+k])
					}
					return float64(bm[k*N+j])
				}
				want := make([]float64, M*N)
				for i := 0; i < M; i++ {
					for j := 0; j < N; j++ {
						var s float64
						for k := 0; k < K; k++ {
							s += at(i, k) * bt(k, j)
						}
						want[i*N+j] = float64(alpha)*s + float64(beta)*float64(c[i*N+j])
					}
				}
				aShape, bShape := []int{M, K}, []int{K, N}
				if tr[0] {
					aShape = []int{K, M}
				}
				if tr[1] {
					bShape = []int{N, K}
				}
				if beta == 0 {
					c[0] = float32(math.NaN()) // beta 0 must not read c
				}
				cT := tensorOf(t, b, c, M, N)
				must(t, b.MatMul(cT, tensorOf(t, b, a, aShape...), tensorOf(t, b, bm, bShape...), tr[0], tr[1], alpha, beta))
				closeTo(t, fmt.Sprintf("%dx%dx%d trans=%v alpha=%g beta=%g", M, K, N, tr, alpha, beta), values(t, b, cT), want, 1e-5*math.Sqrt(float64(K)))
			}
		}
	}
}

// naiveAttention evaluates attention from its definition: a full T×T mask
// from the sequence, causal and window rules, softmax of the masked scores.
func naiveAttention(q, k, v []float32, starts []int32, p engine.AttnParams) (out, lse []float64) {
	T := int(starts[len(starts)-1])
	H, KVH, D := p.NHeads, p.NKVHeads, p.HeadDim
	seqOf := func(i int) int {
		for s := 0; s+1 < len(starts); s++ {
			if i >= int(starts[s]) && i < int(starts[s+1]) {
				return s
			}
		}
		return -1
	}
	visible := func(i, j int) bool {
		return seqOf(i) == seqOf(j) && j <= i && (p.Window == 0 || i-j < p.Window)
	}
	out = make([]float64, T*H*D)
	lse = make([]float64, H*T)
	for h := 0; h < H; h++ {
		g := h * KVH / H
		for i := 0; i < T; i++ {
			var z float64
			w := make([]float64, T)
			for j := 0; j < T; j++ {
				if !visible(i, j) {
					continue
				}
				var s float64
				for d := 0; d < D; d++ {
					s += float64(q[i*H*D+h*D+d]) * float64(k[j*KVH*D+g*D+d])
				}
				w[j] = math.Exp(s * float64(p.Scale))
				z += w[j]
			}
			lse[h*T+i] = math.Log(z)
			for j := 0; j < T; j++ {
				for d := 0; d < D; d++ {
					out[i*H*D+h*D+d] += w[j] / z * float64(v[j*KVH*D+g*D+d])
				}
			}
		}
	}
	return out, lse
}

func TestAttentionMatchesNaive(t *testing.T) {
	for _, tc := range []struct {
		name   string
		starts []int32
		h, kvh int
		window int
	}{
		{"gqa_packed", []int32{0, 5, 13, 20}, 4, 2, 0},
		{"gqa_packed_window4", []int32{0, 5, 13, 20}, 4, 2, 4},
		{"mha_one_seq", []int32{0, 17}, 3, 3, 0},
		{"mqa_window_longer_than_seq", []int32{0, 3, 3, 11}, 4, 1, 50},
		{"window1_sees_only_itself", []int32{0, 6}, 2, 1, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := New()
			rng := rand.New(rand.NewPCG(23, 24))
			const D = 16
			T := int(tc.starts[len(tc.starts)-1])
			p := engine.AttnParams{NHeads: tc.h, NKVHeads: tc.kvh, HeadDim: D, Scale: 0.25, Window: tc.window}
			q, k, v := randn(rng, T*tc.h*D, 1), randn(rng, T*tc.kvh*D, 1), randn(rng, T*tc.kvh*D, 1)
			out, lse := zeros(t, b, T, tc.h*D), zeros(t, b, tc.h, T)
			must(t, b.Attention(out, lse, tensorOf(t, b, q, T, tc.h*D), tensorOf(t, b, k, T, tc.kvh*D),
				tensorOf(t, b, v, T, tc.kvh*D), engine.SeqLayout{Starts: tc.starts, MaxLen: T}, p))
			wantOut, wantLse := naiveAttention(q, k, v, tc.starts, p)
			closeTo(t, "out", values(t, b, out), wantOut, 1e-5)
			closeTo(t, "lse", values(t, b, lse), wantLse, 1e-5)
		})
	}
}

func TestRMSNormMatchesDefinition(t *testing.T) {
	b := New()
	rng := rand.New(rand.NewPCG(25, 26))
	const rows, dim, eps = 5, 24, 1e-6
	x, w := randn(rng, rows*dim, 3), randn(rng, dim, 1)
	out, rstd := zeros(t, b, rows, dim), zeros(t, b, rows)
	must(t, b.RMSNorm(out, rstd, tensorOf(t, b, x, rows, dim), tensorOf(t, b, w, dim), eps))
	want, wantR := make([]float64, rows*dim), make([]float64, rows)
	for r := 0; r < rows; r++ {
		var ms float64
		for j := 0; j < dim; j++ {
			ms += float64(x[r*dim+j]) * float64(x[r*dim+j]) / dim
		}
		wantR[r] = 1 / math.Sqrt(ms+eps)
		for j := 0; j < dim; j++ {
			want[r*dim+j] = float64(x[r*dim+j]) * wantR[r] * float64(w[j])
		}
	}
	closeTo(t, "out", values(t, b, out), want, 1e-6)
	closeTo(t, "rstd", values(t, b, rstd), wantR, 1e-6)
}

// TestRoPEMatchesRotateHalf checks RoPE against Hugging Face's formula
// x*cos_full + rotate_half(x)*sin_full, with cos_full = cat(cos, cos) and
// rotate_half(x) = cat(-x2, x1), and that inverse undoes it.
func TestRoPEMatchesRotateHalf(t *testing.T) {
	b := New()
	rng := rand.New(rand.NewPCG(27, 28))
	const T, heads, headDim, maxPos = 5, 2, 8, 32
	positions := []int32{0, 7, 31, 1, 2}
	cos, sin := ropeTables(maxPos, headDim, 500000)
	x := randn(rng, T*heads*headDim, 1)
	xT := tensorOf(t, b, x, T, heads*headDim)
	posT := intsOf(t, b, positions)
	cosT, sinT := tensorOf(t, b, cos, maxPos, headDim/2), tensorOf(t, b, sin, maxPos, headDim/2)
	must(t, b.RoPE(xT, posT, cosT, sinT, heads, headDim, false))
	const half = headDim / 2
	want := make([]float64, len(x))
	for tk := 0; tk < T; tk++ {
		for h := 0; h < heads; h++ {
			base := (tk*heads + h) * headDim
			for d := 0; d < headDim; d++ {
				c := float64(cos[int(positions[tk])*half+d%half])
				s := float64(sin[int(positions[tk])*half+d%half])
				var rot float64
				if d < half {
					rot = -float64(x[base+d+half])
				} else {
					rot = float64(x[base+d-half])
				}
				want[base+d] = float64(x[base+d])*c + rot*s
			}
		}
	}
	closeTo(t, "rotated", values(t, b, xT), want, 1e-6)
	must(t, b.RoPE(xT, posT, cosT, sinT, heads, headDim, true))
	back := make([]float64, len(x))
	for i, v := range x {
		back[i] = float64(v)
	}
	closeTo(t, "rotated back", values(t, b, xT), back, 1e-6)
}

func TestSoftmaxCrossEntropyValues(t *testing.T) {
	b := New()
	const n, vocab = 4, 6
	logits := []float32{
		1, 2, 3, 4, 5, 6,
		1000, 999, 0, -1000, 998, 1000, // large: the naive exp overflows
		0, 0, 0, 0, 0, 0,
		9, 9, 9, 9, 9, 9, // ignored
	}
	labels := []int32{5, 1, 2, IgnoreLabel}
	lT := tensorOf(t, b, logits, n, vocab)
	losses := tensorOf(t, b, []float32{7, 7, 7, 7}, n) // overwritten
	must(t, b.SoftmaxCrossEntropy(lT, intsOf(t, b, labels), losses, 0.5))
	wantLoss := make([]float64, n)
	wantGrad := make([]float64, n*vocab)
	for r := 0; r < n; r++ {
		if labels[r] == IgnoreLabel {
			continue
		}
		row := logits[r*vocab : (r+1)*vocab]
		m := float64(row[0])
		for _, v := range row {
			m = math.Max(m, float64(v))
		}
		var z float64
		for _, v := range row {
			z += math.Exp(float64(v) - m)
		}
		wantLoss[r] = -(float64(row[labels[r]]) - m - math.Log(z))
		for j, v := range row {
			wantGrad[r*vocab+j] = 0.5 * math.Exp(float64(v)-m) / z
		}
		wantGrad[r*vocab+int(labels[r])] -= 0.5
	}
	closeTo(t, "losses", values(t, b, losses), wantLoss, 1e-6)
	closeTo(t, "gradient", values(t, b, lT), wantGrad, 1e-6)
	if got := values(t, b, losses)[2]; math.Abs(float64(got)-math.Log(vocab)) > 1e-6 {
		t.Errorf("uniform logits: loss %g, want log(%d) = %g", got, vocab, math.Log(vocab))
	}
}

// TestAdamWMatchesTorchFormula runs three steps against torch.optim.AdamW's
// update written out in float64.
func TestAdamWMatchesTorchFormula(t *testing.T) {
	b := New()
	rng := rand.New(rand.NewPCG(29, 30))
	const n = 50
	hp := engine.AdamWParams{LR: 1e-2, Beta1: 0.9, Beta2: 0.999, Eps: 1e-8, WeightDecay: 0.1}
	param := randn(rng, n, 1)
	pT, mT, vT := tensorOf(t, b, param, n), zeros(t, b, n), zeros(t, b, n)
	ref, m, v := make([]float64, n), make([]float64, n), make([]float64, n)
	for i, x := range param {
		ref[i] = float64(x)
	}
	lr, b1, b2, eps, wd := float64(hp.LR), float64(hp.Beta1), float64(hp.Beta2), float64(hp.Eps), float64(hp.WeightDecay)
	for step := 1; step <= 3; step++ {
		grad := randn(rng, n, 0.1)
		hp.Step = step
		must(t, b.AdamW(pT, tensorOf(t, b, grad, n), mT, vT, hp))
		for i, g32 := range grad {
			g := float64(g32)
			ref[i] *= 1 - lr*wd
			m[i] = b1*m[i] + (1-b1)*g
			v[i] = b2*v[i] + (1-b2)*g*g
			bc1, bc2 := 1-math.Pow(b1, float64(step)), 1-math.Pow(b2, float64(step))
			ref[i] -= lr / bc1 * m[i] / (math.Sqrt(v[i])/math.Sqrt(bc2) + eps)
		}
		closeTo(t, fmt.Sprintf("param after step %d", step), values(t, b, pT), ref, 1e-6)
		closeTo(t, fmt.Sprintf("m after step %d", step), values(t, b, mT), m, 1e-6)
		closeTo(t, fmt.Sprintf("v after step %d", step), values(t, b, vT), v, 1e-6)
	}
	// The first step of Adam moves every weight by about lr (sign of g).
	hp.Step = 1
	one := tensorOf(t, b, []float32{1}, 1)
	must(t, b.AdamW(one, tensorOf(t, b, []float32{-3}, 1), zeros(t, b, 1), zeros(t, b, 1), hp))
	if got, want := values(t, b, one)[0], float32(1*(1-0.01*0.1)+0.01); math.Abs(float64(got-want)) > 1e-6 {
		t.Errorf("first step: %g, want %g", got, want)
	}
}

func TestDropoutMask(t *testing.T) {
	b := New()
	const n = 100000
	x := make([]float32, n)
	for i := range x {
		x[i] = 1
	}
	xT, out := tensorOf(t, b, x, n), zeros(t, b, n)
	for _, p := range []float32{0.1, 0.5} {
		must(t, b.Dropout(out, xT, p, 42))
		got := values(t, b, out)
		kept := 0
		for i, v := range got {
			switch v {
			case 0:
			case 1 / (1 - p):
				kept++
			default:
				t.Fatalf("p=%g: out[%d] = %g, want 0 or %g", p, i, v, 1/(1-p))
			}
		}
		want := float64(n) * float64(1-p)
		if sigma := math.Sqrt(float64(n) * float64(p*(1-p))); math.Abs(float64(kept)-want) > 5*sigma {
			t.Errorf("p=%g: kept %d of %d, want about %.0f", p, kept, n, want)
		}
		again := zeros(t, b, n)
		must(t, b.Dropout(again, xT, p, 42))
		other := zeros(t, b, n)
		must(t, b.Dropout(other, xT, p, 43))
		same, diff := 0, 0
		for i, v := range values(t, b, again) {
			if v == got[i] {
				same++
			}
		}
		for i, v := range values(t, b, other) {
			if v != got[i] {
				diff++
			}
		}
		if same != n {
			t.Errorf("p=%g: the same seed changed %d elements", p, n-same)
		}
		if diff < n/10 {
			t.Errorf("p=%g: another seed changed only %d elements", p, diff)
		}
	}
	must(t, b.Dropout(out, xT, 0, 7))
	for i, v := range values(t, b, out) {
		if v != 1 {
			t.Fatalf("p=0: out[%d] = %g, want a copy", i, v)
		}
	}
	must(t, b.Dropout(out, xT, 1, 7))
	if s, _ := b.SumSquares(out); s != 0 {
		t.Errorf("p=1: sum of squares %g, want all zero", s)
	}
	if err := b.Dropout(out, xT, 1.5, 7); err == nil {
		t.Error("p=1.5 accepted")
	}
}

func TestMemoryReporter(t *testing.T) {
	b := New()
	x, _ := b.Alloc(engine.F32, 10, 10) // 400 bytes
	y, _ := b.Alloc(engine.BF16, 100)   // 200 device bytes
	z, _ := b.Alloc(engine.I32, 5)      // 20
	if got := b.InUseBytes(); got != 620 {
		t.Errorf("in use %d, want 620", got)
	}
	v, err := b.View(x, 10, 5, 2)
	must(t, err)
	b.Free(v) // a view owns nothing
	if got := b.InUseBytes(); got != 620 {
		t.Errorf("after freeing a view: in use %d, want 620", got)
	}
	b.Free(x)
	b.Free(x) // twice is harmless
	if got := b.InUseBytes(); got != 220 {
		t.Errorf("after Free: in use %d, want 220", got)
	}
	b.Free(y)
	b.Free(z)
	if b.InUseBytes() != 0 || b.PeakBytes() != 620 {
		t.Errorf("in use %d, peak %d; want 0 and 620", b.InUseBytes(), b.PeakBytes())
	}
	if err := b.Fill(x, 1); err == nil || !strings.Contains(err.Error(), "freed") {
		t.Errorf("using a freed tensor: %v", err)
	}
}

func TestViewSharesMemory(t *testing.T) {
	b := New()
	base := tensorOf(t, b, []float32{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11}, 3, 4)
	v, err := b.View(base, 4, 2, 2)
	must(t, err)
	if got := values(t, b, v); fmt.Sprint(got) != "[4 5 6 7]" {
		t.Errorf("view reads %v, want [4 5 6 7]", got)
	}
	must(t, b.Scale(v, 10))
	if got := values(t, b, base); fmt.Sprint(got) != "[0 1 2 3 40 50 60 70 8 9 10 11]" {
		t.Errorf("base after scaling the view: %v", got)
	}
	if _, err := b.View(base, 9, 4); err == nil {
		t.Error("a view past the end was accepted")
	}
	// Overlapping output and input are refused where the op reads after writing.
	w, _ := b.View(base, 0, 2, 2)
	if err := b.MatMul(v, w, w, false, false, 1, 0); err != nil {
		t.Errorf("disjoint views refused: %v", err)
	}
	w2, _ := b.View(base, 6, 2, 2)
	if err := b.MatMul(v, w2, w, false, false, 1, 0); err == nil || !strings.Contains(err.Error(), "overlaps") {
		t.Errorf("overlapping views: %v", err)
	}
}

func TestBF16Rounding(t *testing.T) {
	b := New()
	for _, c := range []struct{ in, want float32 }{
		{1, 1},
		{1 + 1.0/256, 1},          // halfway between 1 and 1+2^-7: ties to even, down
		{1 + 1.0/512, 1},          // below halfway
		{1 + 3.0/256, 1 + 1.0/64}, // halfway, odd: up
		{-2.5, -2.5},
		{float32(math.Inf(1)), float32(math.Inf(1))},
		{3.4e38, float32(math.Inf(1))}, // above the largest bf16
	} {
		if got := RoundBF16(c.in); got != c.want {
			t.Errorf("RoundBF16(%g) = %g, want %g", c.in, got, c.want)
		}
	}
	if !math.IsNaN(float64(RoundBF16(float32(math.NaN())))) {
		t.Error("NaN did not stay NaN")
	}
	h, _ := b.Alloc(engine.BF16, 2)
	must(t, b.Upload(h, []float32{1 + 1.0/512, 3}))
	if got := values(t, b, h); got[0] != 1 || got[1] != 3 {
		t.Errorf("bf16 upload holds %v", got)
	}
	f := tensorOf(t, b, []float32{1.001, 2.002}, 2)
	must(t, b.Copy(h, f))
	if got := values(t, b, h); got[0] != RoundBF16(1.001) || got[1] != RoundBF16(2.002) {
		t.Errorf("bf16 copy holds %v", got)
	}
	must(t, b.AddScaled(h, f, 0.001)) // op outputs are rounded too
	if got := values(t, b, h); got[0] != RoundBF16(got[0]) {
		t.Errorf("op output %v not rounded to bf16", got)
	}
}

func TestErrorsNameOpAndShapes(t *testing.T) {
	b := New()
	a := zeros(t, b, 3, 4)
	c := zeros(t, b, 3, 5)
	ids := intsOf(t, b, []int32{0, 9})
	q := zeros(t, b, 6, 8)
	for _, tc := range []struct {
		err  error
		want []string
	}{
		{b.MatMul(c, a, a, false, false, 1, 0), []string{"MatMul", "[3 4]"}},
		{b.AddScaled(a, c, 1), []string{"AddScaled", "[3 4]", "[3 5]"}},
		{b.Embedding(zeros(t, b, 2, 4), a, ids), []string{"Embedding", "ids[1] = 9", "3 rows"}},
		{b.SoftmaxCrossEntropy(a, intsOf(t, b, []int32{0, 4, 1}), zeros(t, b, 3), 1), []string{"SoftmaxCrossEntropy", "labels[1] = 4"}},
		{b.Attention(zeros(t, b, 6, 8), zeros(t, b, 12), q, zeros(t, b, 6, 4), zeros(t, b, 6, 4),
			engine.SeqLayout{Starts: []int32{0, 4, 5}, MaxLen: 4}, engine.AttnParams{NHeads: 2, NKVHeads: 1, HeadDim: 4, Scale: 1}),
			[]string{"Attention", "Starts", "T = 6"}},
		{b.Attention(zeros(t, b, 6, 8), zeros(t, b, 12), q, zeros(t, b, 6, 4), zeros(t, b, 6, 4),
			engine.SeqLayout{Starts: []int32{0, 6}, MaxLen: 4}, engine.AttnParams{NHeads: 2, NKVHeads: 1, HeadDim: 4, Scale: 1}),
			[]string{"Attention", "MaxLen 4"}},
		{b.RMSNorm(a, zeros(t, b, 3), a, zeros(t, b, 5), 1e-5), []string{"RMSNorm", "weight", "[5]"}},
		{b.RoPE(a, intsOf(t, b, []int32{0, 1, 2}), zeros(t, b, 2, 1), zeros(t, b, 2, 1), 2, 2, false), []string{"RoPE", "positions[2] = 2"}},
		{b.AdamW(a, a, zeros(t, b, 3, 4), zeros(t, b, 3, 4), engine.AdamWParams{}), []string{"AdamW", "Step 0"}},
		{b.Embedding(a, ids, ids), []string{"Embedding", "table", "i32"}},
	} {
		if tc.err == nil {
			t.Errorf("no error, want one mentioning %q", tc.want)
			continue
		}
		for _, w := range tc.want {
			if !strings.Contains(tc.err.Error(), w) {
				t.Errorf("error %q does not mention %q", tc.err, w)
			}
		}
	}
	if err := b.Upload(a, make([]float32, 5)); err == nil {
		t.Error("Upload of the wrong length accepted")
	}
	var foreign engine.Tensor = fakeTensor{}
	if err := b.Scale(foreign, 2); err == nil || errors.Is(err, engine.ErrNotImplemented) {
		t.Errorf("foreign tensor: %v", err)
	}
}

type fakeTensor struct{}

func (fakeTensor) Shape() []int        { return []int{1} }
func (fakeTensor) DType() engine.DType { return engine.F32 }
func (fakeTensor) Len() int            { return 1 }

func TestParallelForCoversEachIndexOnce(t *testing.T) {
	for _, n := range []int{0, 1, 7, 1000, 100003} {
		for _, grain := range []int{1, 64, 1 << 20} {
			hits := make([]int32, n)
			parallelFor(n, grain, func(lo, hi int) {
				for i := lo; i < hi; i++ {
					hits[i]++ // each index belongs to one chunk, so no race
				}
			})
			for i, h := range hits {
				if h != 1 {
					t.Fatalf("n=%d grain=%d: index %d visited %d times", n, grain, i, h)
				}
			}
		}
	}
}

// TestAttentionKVMatchesAttention checks cached decode-time attention
// against the full causal attention of the same single sequence: the rows
// from qOffset on must agree.
func TestAttentionKVMatchesAttention(t *testing.T) {
	const T, H, KVH, D = 11, 4, 2, 16
	for _, window := range []int{0, 3} {
		for _, qOffset := range []int{0, 7, 10} {
			t.Run(fmt.Sprintf("window%d_offset%d", window, qOffset), func(t *testing.T) {
				b := New()
				rng := rand.New(rand.NewPCG(31, uint64(qOffset)))
				p := engine.AttnParams{NHeads: H, NKVHeads: KVH, HeadDim: D, Scale: 0.25, Window: window}
				q, k, v := randn(rng, T*H*D, 1), randn(rng, T*KVH*D, 1), randn(rng, T*KVH*D, 1)
				full, lse := zeros(t, b, T, H*D), zeros(t, b, H, T)
				kT, vT := tensorOf(t, b, k, T, KVH*D), tensorOf(t, b, v, T, KVH*D)
				must(t, b.Attention(full, lse, tensorOf(t, b, q, T, H*D), kT, vT, engine.SeqLayout{Starts: []int32{0, T}, MaxLen: T}, p))
				Tq := T - qOffset
				out := tensorOf(t, b, randn(rng, Tq*H*D, 1), Tq, H*D)
				must(t, b.AttentionKV(out, tensorOf(t, b, q[qOffset*H*D:], Tq, H*D), kT, vT, qOffset, p))
				want := make([]float64, Tq*H*D)
				for i, x := range values(t, b, full)[qOffset*H*D:] {
					want[i] = float64(x)
				}
				closeTo(t, "out", values(t, b, out), want, 1e-6)
			})
		}
	}
	b := New()
	if err := b.AttentionKV(zeros(t, b, 2, 8), zeros(t, b, 2, 8), zeros(t, b, 5, 8), zeros(t, b, 5, 8), 2,
		engine.AttnParams{NHeads: 1, NKVHeads: 1, HeadDim: 8, Scale: 1}); err == nil || !strings.Contains(err.Error(), "qOffset 2") {
		t.Errorf("qOffset + queries != keys: %v", err)
	}
}
