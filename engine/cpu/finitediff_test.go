package cpu

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"whet/engine"
)

// Each test builds the scalar loss L = sum(out*R) for a random R, computes
// the op's analytic gradient of L, and compares it with central differences
// of L through the forward op. Accumulating backwards start from non-zero
// buffers and the test subtracts the prefill, so an overwrite shows.

func TestFiniteDiffEmbedding(t *testing.T) {
	b := New()
	rng := rand.New(rand.NewPCG(1, 2))
	const vocab, dim = 7, 5
	ids := []int32{3, 0, 3, 6, 3, 1} // repeats must accumulate
	table := randn(rng, vocab*dim, 1)
	r := randn(rng, len(ids)*dim, 1)
	idT := intsOf(t, b, ids)
	tabT := zeros(t, b, vocab, dim)
	out := zeros(t, b, len(ids), dim)
	loss := func() float64 {
		must(t, b.Upload(tabT, table))
		must(t, b.Embedding(out, tabT, idT))
		return weightedSum(values(t, b, out), r)
	}
	num := numericGrad(table, loss)
	prefill := randn(rng, vocab*dim, 1)
	dTable := tensorOf(t, b, prefill, vocab, dim)
	must(t, b.EmbeddingBackward(dTable, tensorOf(t, b, r, len(ids), dim), idT))
	checkGrad(t, "dTable", minus(values(t, b, dTable), prefill), num)
}

func TestFiniteDiffRMSNorm(t *testing.T) {
	b := New()
	rng := rand.New(rand.NewPCG(3, 4))
	const rows, dim = 4, 12
	const eps = 1e-5
	x := randn(rng, rows*dim, 1)
	w := randn(rng, dim, 1)
	r := randn(rng, rows*dim, 1)
	xT, wT := zeros(t, b, rows, dim), zeros(t, b, dim)
	out, rstd := zeros(t, b, rows, dim), zeros(t, b, rows)
	loss := func() float64 {
		must(t, b.Upload(xT, x))
		must(t, b.Upload(wT, w))
		must(t, b.RMSNorm(out, rstd, xT, wT, eps))
		return weightedSum(values(t, b, out), r)
	}
	numX := numericGrad(x, loss)
	numW := numericGrad(w, loss)
	loss() // leave rstd and the inputs at the unperturbed point

	dxPrefill := randn(rng, rows*dim, 1)
	dwPrefill := randn(rng, dim, 1)
	dx := tensorOf(t, b, dxPrefill, rows, dim)
	dw := tensorOf(t, b, dwPrefill, dim)
	rT := tensorOf(t, b, r, rows, dim)
	must(t, b.RMSNormBackward(dx, dw, rT, xT, wT, rstd))
	checkGrad(t, "dx", minus(values(t, b, dx), dxPrefill), numX)
	checkGrad(t, "dWeight", minus(values(t, b, dw), dwPrefill), numW)

	// A frozen weight: dWeight nil, dx still accumulates.
	dx2 := tensorOf(t, b, dxPrefill, rows, dim)
	must(t, b.RMSNormBackward(dx2, nil, rT, xT, wT, rstd))
	checkGrad(t, "dx (dWeight nil)", minus(values(t, b, dx2), dxPrefill), numX)
	var typedNil *Tensor
	dx3 := tensorOf(t, b, dxPrefill, rows, dim)
	must(t, b.RMSNormBackward(dx3, typedNil, rT, xT, wT, rstd))
	checkGrad(t, "dx (dWeight typed nil)", minus(values(t, b, dx3), dxPrefill), numX)
}

func TestFiniteDiffRoPE(t *testing.T) {
	b := New()
	checkRoPEFiniteDiff(t, b, rand.New(rand.NewPCG(5, 6)), 8, 1, b.RoPE)
}

// checkRoPEFiniteDiff checks a rotation (RoPE, RoPEPartial) of 6 packed
// tokens (positions restart), 3 heads of 8 dimensions, the first rot of
// them rotated by tables scaled by factor, against central differences;
// its backward is the inverse rotation. Dimensions past rot must pass
// through unchanged.
func checkRoPEFiniteDiff(t *testing.T, b *Backend, rng *rand.Rand, rot int, factor float32,
	rope func(x, positions, cos, sin engine.Tensor, nHeads, headDim int, inverse bool) error) {
	t.Helper()
	const T, heads, headDim, maxPos = 6, 3, 8, 16
	positions := []int32{0, 1, 2, 0, 1, 9} // packed: positions restart
	cos, sin := ropeTables(maxPos, rot, 10000)
	for i := range cos {
		cos[i] *= factor
		sin[i] *= factor
	}
	x := randn(rng, T*heads*headDim, 1)
	r := randn(rng, T*heads*headDim, 1)
	posT := intsOf(t, b, positions)
	cosT, sinT := tensorOf(t, b, cos, maxPos, rot/2), tensorOf(t, b, sin, maxPos, rot/2)
	xT := zeros(t, b, T, heads*headDim)
	loss := func() float64 {
		must(t, b.Upload(xT, x))
		must(t, rope(xT, posT, cosT, sinT, heads, headDim, false))
		return weightedSum(values(t, b, xT), r)
	}
	num := numericGrad(x, loss)
	loss()
	got := values(t, b, xT)
	for tok := 0; tok < T; tok++ {
		for h := 0; h < heads; h++ {
			for d := rot; d < headDim; d++ {
				i := (tok*heads+h)*headDim + d
				if got[i] != x[i] {
					t.Fatalf("dimension %d of head %d changed: %v -> %v", d, h, x[i], got[i])
				}
			}
		}
	}
	g := tensorOf(t, b, r, T, heads*headDim)
	must(t, rope(g, posT, cosT, sinT, heads, headDim, true))
	checkGrad(t, "dx", values(t, b, g), num)
}

func TestFiniteDiffAttention(t *testing.T) {
	for _, tc := range []struct {
		name    string
		starts  []int32
		h, kvh  int
		window  int
		softCap float32
	}{
		{"gqa_packed", []int32{0, 5, 13, 20}, 4, 2, 0, 0},
		{"gqa_packed_window3", []int32{0, 5, 13, 20}, 4, 2, 3, 0},
		{"mha_single", []int32{0, 9}, 2, 2, 0, 0},
		{"mqa_window2", []int32{0, 4, 9}, 3, 1, 2, 0},
		// A cap near the scores' size, so the tanh bends them.
		{"gqa_packed_softcap", []int32{0, 5, 13, 20}, 4, 2, 0, 0.8},
		{"gqa_window3_softcap", []int32{0, 5, 13, 20}, 4, 2, 3, 1.5},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := New()
			rng := rand.New(rand.NewPCG(7, uint64(len(tc.name))))
			const D = 8
			T := int(tc.starts[len(tc.starts)-1])
			maxLen := 0
			for i := 0; i+1 < len(tc.starts); i++ {
				maxLen = max(maxLen, int(tc.starts[i+1]-tc.starts[i]))
			}
			seqs := engine.SeqLayout{Starts: tc.starts, MaxLen: maxLen}
			p := engine.AttnParams{NHeads: tc.h, NKVHeads: tc.kvh, HeadDim: D, Scale: 0.35, Window: tc.window, SoftCap: tc.softCap}
			q := randn(rng, T*tc.h*D, 1)
			k := randn(rng, T*tc.kvh*D, 1)
			v := randn(rng, T*tc.kvh*D, 1)
			r := randn(rng, T*tc.h*D, 1)
			qT, kT, vT := zeros(t, b, T, tc.h*D), zeros(t, b, T, tc.kvh*D), zeros(t, b, T, tc.kvh*D)
			out, lse := zeros(t, b, T, tc.h*D), zeros(t, b, tc.h, T)
			loss := func() float64 {
				must(t, b.Upload(qT, q))
				must(t, b.Upload(kT, k))
				must(t, b.Upload(vT, v))
				must(t, b.Attention(out, lse, qT, kT, vT, seqs, p))
				return weightedSum(values(t, b, out), r)
			}
			numQ := numericGrad(q, loss)
			numK := numericGrad(k, loss)
			numV := numericGrad(v, loss)
			loss()
			// Outputs start as garbage: the backward must overwrite them.
			dq := tensorOf(t, b, randn(rng, len(q), 1), T, tc.h*D)
			dk := tensorOf(t, b, randn(rng, len(k), 1), T, tc.kvh*D)
			dv := tensorOf(t, b, randn(rng, len(v), 1), T, tc.kvh*D)
			must(t, b.AttentionBackward(dq, dk, dv, tensorOf(t, b, r, T, tc.h*D), qT, kT, vT, out, lse, seqs, p))
			checkGrad(t, "dq", values(t, b, dq), numQ)
			checkGrad(t, "dk", values(t, b, dk), numK)
			checkGrad(t, "dv", values(t, b, dv), numV)
		})
	}
}

func TestFiniteDiffSwiGLU(t *testing.T) {
	b := New()
	checkGatedFiniteDiff(t, b, rand.New(rand.NewPCG(9, 10)), b.SwiGLU, b.SwiGLUBackward)
}

// checkGatedFiniteDiff checks a gated activation out = act(gate)*up and
// its backward (SwiGLU, GeGLU) on 40 values, gates drawn twice as wide as
// the rest so the activation's curve is crossed; the backward's outputs
// start as garbage and must be overwritten.
func checkGatedFiniteDiff(t *testing.T, b *Backend, rng *rand.Rand,
	forward func(out, gate, up engine.Tensor) error, backward func(dGate, dUp, dOut, gate, up engine.Tensor) error) {
	t.Helper()
	const n = 40
	gate := randn(rng, n, 2)
	up := randn(rng, n, 1)
	r := randn(rng, n, 1)
	gT, uT, out := zeros(t, b, n), zeros(t, b, n), zeros(t, b, n)
	loss := func() float64 {
		must(t, b.Upload(gT, gate))
		must(t, b.Upload(uT, up))
		must(t, forward(out, gT, uT))
		return weightedSum(values(t, b, out), r)
	}
	numG := numericGrad(gate, loss)
	numU := numericGrad(up, loss)
	loss()
	dg := tensorOf(t, b, randn(rng, n, 1), n)
	du := tensorOf(t, b, randn(rng, n, 1), n)
	must(t, backward(dg, du, tensorOf(t, b, r, n), gT, uT))
	checkGrad(t, "dGate", values(t, b, dg), numG)
	checkGrad(t, "dUp", values(t, b, du), numU)
}

// checkActivationFiniteDiff checks an activation out = act(x) and its
// backward (GELU, GELU-tanh) on 40 values drawn twice as wide as the
// weights R, so the curve is crossed; the backward's dx starts as garbage
// and must be overwritten. It returns x and act(x) for the caller's own
// checks of the values.
func checkActivationFiniteDiff(t *testing.T, b *Backend, rng *rand.Rand,
	forward func(out, x engine.Tensor) error, backward func(dx, dOut, x engine.Tensor) error) (x, out []float32) {
	t.Helper()
	const n = 40
	x = randn(rng, n, 2)
	r := randn(rng, n, 1)
	xT, outT := zeros(t, b, n), zeros(t, b, n)
	loss := func() float64 {
		must(t, b.Upload(xT, x))
		must(t, forward(outT, xT))
		return weightedSum(values(t, b, outT), r)
	}
	num := numericGrad(x, loss)
	loss()
	dx := tensorOf(t, b, randn(rng, n, 1), n)
	must(t, backward(dx, tensorOf(t, b, r, n), xT))
	checkGrad(t, "dx", values(t, b, dx), num)
	return x, values(t, b, outT)
}

func TestFiniteDiffSoftmaxCrossEntropy(t *testing.T) {
	b := New()
	rng := rand.New(rand.NewPCG(11, 12))
	const n, vocab = 5, 9
	const gradScale = 0.25
	logits := randn(rng, n*vocab, 2)
	labels := []int32{4, IgnoreLabel, 0, 8, 4}
	lT, labT, losses := zeros(t, b, n, vocab), intsOf(t, b, labels), zeros(t, b, n)
	loss := func() float64 {
		must(t, b.Upload(lT, logits))
		must(t, b.SoftmaxCrossEntropy(lT, labT, losses, gradScale))
		var s float64
		for _, l := range values(t, b, losses) {
			s += gradScale * float64(l)
		}
		return s
	}
	num := numericGrad(logits, loss)
	loss()
	checkGrad(t, "dLogits", values(t, b, lT), num)
}

func TestFiniteDiffMatMul(t *testing.T) {
	const M, K, N = 3, 5, 4
	const alpha, beta = 0.7, 0.5
	for _, transA := range []bool{false, true} {
		for _, transB := range []bool{false, true} {
			t.Run(fmt.Sprintf("transA=%v,transB=%v", transA, transB), func(t *testing.T) {
				b := New()
				rng := rand.New(rand.NewPCG(13, 14))
				aShape, bShape := []int{M, K}, []int{K, N}
				if transA {
					aShape = []int{K, M}
				}
				if transB {
					bShape = []int{N, K}
				}
				a, bm := randn(rng, M*K, 1), randn(rng, K*N, 1)
				c0, r := randn(rng, M*N, 1), randn(rng, M*N, 1)
				aT, bT, cT := zeros(t, b, aShape...), zeros(t, b, bShape...), zeros(t, b, M, N)
				loss := func() float64 {
					must(t, b.Upload(aT, a))
					must(t, b.Upload(bT, bm))
					must(t, b.Upload(cT, c0))
					must(t, b.MatMul(cT, aT, bT, transA, transB, alpha, beta))
					return weightedSum(values(t, b, cT), r)
				}
				numA := numericGrad(a, loss)
				numB := numericGrad(bm, loss)
				numC := numericGrad(c0, loss)
				loss()
				rT := tensorOf(t, b, r, M, N)
				// The backward a model writes: each gradient is one more
				// MatMul, so this checks every transpose combination.
				dA := tensorOf(t, b, randn(rng, M*K, 1), aShape...)
				if transA {
					must(t, b.MatMul(dA, bT, rT, transB, true, alpha, 0)) // dA = alpha*op(b)@R^T
				} else {
					must(t, b.MatMul(dA, rT, bT, false, !transB, alpha, 0)) // dA = alpha*R@op(b)^T
				}
				dB := tensorOf(t, b, randn(rng, K*N, 1), bShape...)
				if transB {
					must(t, b.MatMul(dB, rT, aT, true, transA, alpha, 0)) // dB = alpha*R^T@op(a)
				} else {
					must(t, b.MatMul(dB, aT, rT, !transA, false, alpha, 0)) // dB = alpha*op(a)^T@R
				}
				checkGrad(t, "dA", values(t, b, dA), numA)
				checkGrad(t, "dB", values(t, b, dB), numB)
				dC := tensorOf(t, b, r, M, N)
				must(t, b.Scale(dC, beta))
				checkGrad(t, "dC", values(t, b, dC), numC)
			})
		}
	}
}

func TestFiniteDiffAddBias(t *testing.T) {
	b := New()
	rng := rand.New(rand.NewPCG(15, 16))
	const rows, cols = 6, 5
	x, bias, r := randn(rng, rows*cols, 1), randn(rng, cols, 1), randn(rng, rows*cols, 1)
	out, bT := zeros(t, b, rows, cols), zeros(t, b, cols)
	loss := func() float64 {
		must(t, b.Upload(out, x))
		must(t, b.Upload(bT, bias))
		must(t, b.AddBias(out, bT))
		return weightedSum(values(t, b, out), r)
	}
	numBias := numericGrad(bias, loss)
	numX := numericGrad(x, loss)
	prefill := randn(rng, cols, 1)
	dBias := tensorOf(t, b, prefill, cols)
	must(t, b.BiasBackward(dBias, tensorOf(t, b, r, rows, cols)))
	checkGrad(t, "dBias", minus(values(t, b, dBias), prefill), numBias)
	checkGrad(t, "dx", r, numX) // AddBias passes the gradient straight through
}

func TestFiniteDiffDropout(t *testing.T) {
	b := New()
	rng := rand.New(rand.NewPCG(17, 18))
	const n = 64
	const p, seed = 0.3, 12345
	x, r := randn(rng, n, 1), randn(rng, n, 1)
	xT, out := zeros(t, b, n), zeros(t, b, n)
	loss := func() float64 {
		must(t, b.Upload(xT, x))
		must(t, b.Dropout(out, xT, p, seed))
		return weightedSum(values(t, b, out), r)
	}
	num := numericGrad(x, loss)
	dx := zeros(t, b, n)
	must(t, b.Dropout(dx, tensorOf(t, b, r, n), p, seed))
	checkGrad(t, "dx", values(t, b, dx), num)
}

// TestFiniteDiffCatchesWrongGradients proves the checker has teeth: the
// usual backward bugs (a dropped term, a flipped sign, a factor off, one
// element wrong) all score far above fdTol on a real op.
func TestFiniteDiffCatchesWrongGradients(t *testing.T) {
	b := New()
	rng := rand.New(rand.NewPCG(19, 20))
	const rows, dim = 3, 8
	x, w, r := randn(rng, rows*dim, 1), randn(rng, dim, 1), randn(rng, rows*dim, 1)
	xT, wT := zeros(t, b, rows, dim), tensorOf(t, b, w, dim)
	out, rstd := zeros(t, b, rows, dim), zeros(t, b, rows)
	loss := func() float64 {
		must(t, b.Upload(xT, x))
		must(t, b.RMSNorm(out, rstd, xT, wT, 1e-6))
		return weightedSum(values(t, b, out), r)
	}
	num := numericGrad(x, loss)
	loss()
	dx := zeros(t, b, rows, dim)
	must(t, b.RMSNormBackward(dx, nil, tensorOf(t, b, r, rows, dim), xT, wT, rstd))
	good := values(t, b, dx)
	if e := gradError(good, num); e > fdTol {
		t.Fatalf("correct gradient scored %g", e)
	}
	rs := values(t, b, rstd)
	dropped := make([]float32, len(good)) // only the r*w*dy term
	for i := range dropped {
		dropped[i] = rs[i/dim] * w[i%dim] * r[i]
	}
	flipped, doubled, oneOff := make([]float32, len(good)), make([]float32, len(good)), append([]float32(nil), good...)
	for i, g := range good {
		flipped[i], doubled[i] = -g, 2*g
	}
	worst := 0
	for i := range num {
		if abs64(num[i]) > abs64(num[worst]) {
			worst = i
		}
	}
	oneOff[worst] = -oneOff[worst]
	for name, bad := range map[string][]float32{"dropped term": dropped, "flipped sign": flipped, "factor 2": doubled, "one element": oneOff} {
		if e := gradError(bad, num); e < 10*fdTol {
			t.Errorf("%s: gradient error %g, want a clear failure (> %g)", name, e, 10*fdTol)
		}
	}
}

func abs64(x float64) float64 {
	if x < 0 {
		return -x
	}
	return x
}

func TestFiniteDiffRoPEPartial(t *testing.T) {
	b := New()
	// 6 of 8 dimensions rotated, by tables a LongRoPE-style attention factor scales.
	checkRoPEFiniteDiff(t, b, rand.New(rand.NewPCG(5, 7)), 6, 1.2, b.RoPEPartial)
}

func TestFiniteDiffGeGLU(t *testing.T) {
	// gelu_pytorch_tanh(1) = 0.841192 (torch.nn.functional.gelu(approximate="tanh")).
	if y, _ := geluTanh(1); math.Abs(y-0.8411920) > 1e-6 {
		t.Errorf("gelu_tanh(1) = %.7f, want 0.8411920", y)
	}
	b := New()
	checkGatedFiniteDiff(t, b, rand.New(rand.NewPCG(9, 11)), b.GeGLU, b.GeGLUBackward)
}

func TestFiniteDiffSoftCap(t *testing.T) {
	b := New()
	rng := rand.New(rand.NewPCG(9, 12))
	const n, capValue = 30, 1.5
	x := randn(rng, n, 3)
	r := randn(rng, n, 1)
	xT := zeros(t, b, n)
	loss := func() float64 {
		must(t, b.Upload(xT, x))
		must(t, b.SoftCap(xT, capValue))
		return weightedSum(values(t, b, xT), r)
	}
	num := numericGrad(x, loss)
	loss()
	for i, y := range values(t, b, xT) {
		if math.Abs(float64(y)) >= capValue {
			t.Fatalf("capped value %d is %v, beyond the cap %v", i, y, capValue)
		}
	}
	g := tensorOf(t, b, r, n)
	must(t, b.SoftCapBackward(g, xT, capValue))
	checkGrad(t, "dx", values(t, b, g), num)
}
