package cpu

import (
	"math"
	"math/rand/v2"
	"testing"

	"whet/engine"
)

// tensorOf allocates an F32 tensor of the given shape holding data.
func tensorOf(t *testing.T, b *Backend, data []float32, shape ...int) engine.Tensor {
	t.Helper()
	x, err := b.Alloc(engine.F32, shape...)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Upload(x, data); err != nil {
		t.Fatal(err)
	}
	return x
}

// intsOf allocates an I32 tensor holding data.
func intsOf(t *testing.T, b *Backend, data []int32) engine.Tensor {
	t.Helper()
	x, err := b.Alloc(engine.I32, len(data))
	if err != nil {
		t.Fatal(err)
	}
	if err := b.UploadInt32(x, data); err != nil {
		t.Fatal(err)
	}
	return x
}

func zeros(t *testing.T, b *Backend, shape ...int) engine.Tensor {
	t.Helper()
	x, err := b.Alloc(engine.F32, shape...)
	if err != nil {
		t.Fatal(err)
	}
	return x
}

func values(t *testing.T, b *Backend, x engine.Tensor) []float32 {
	t.Helper()
	out := make([]float32, x.Len())
	if err := b.Download(x, out); err != nil {
		t.Fatal(err)
	}
	return out
}

func randn(rng *rand.Rand, n int, scale float32) []float32 {
	x := make([]float32, n)
	for i := range x {
		x[i] = float32(rng.NormFloat64()) * scale
	}
	return x
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// weightedSum is sum(out*r) in float64: the scalar loss whose gradient
// with respect to out is r.
func weightedSum(out, r []float32) float64 {
	var s float64
	for i, v := range out {
		s += float64(v) * float64(r[i])
	}
	return s
}

// fdEps is the finite-difference step. Inputs are O(1) and the ops are
// smooth, so the central difference's truncation error (eps^2 times the third derivative) is
// about 1e-4 relative, and float32 rounding in a loss of a few hundred
// terms stays near 1e-6/eps: both far below fdTol.
const fdEps = 1e-2

// fdTol is the largest gradError a correct backward may show here (they
// measure 3e-5 or less). A wrong sign, a missing term or a wrong factor
// gives errors of order 1.
const fdTol = 1e-3

// numericGrad returns the central-difference gradient of loss with respect
// to every element of x; loss must read x afresh on each call.
func numericGrad(x []float32, loss func() float64) []float64 {
	g := make([]float64, len(x))
	for i := range x {
		orig := x[i]
		x[i] = orig + fdEps
		plusX := x[i]
		lp := loss()
		x[i] = orig - fdEps
		minusX := x[i]
		lm := loss()
		x[i] = orig
		g[i] = (lp - lm) / (float64(plusX) - float64(minusX))
	}
	return g
}

// gradError is max|analytic - numeric| / max|numeric|: an error relative to
// the gradient's scale, so near-zero entries do not blow it up.
func gradError(analytic []float32, numeric []float64) float64 {
	var maxDiff, maxRef float64
	for i, n := range numeric {
		maxDiff = max(maxDiff, math.Abs(float64(analytic[i])-n))
		maxRef = max(maxRef, math.Abs(n))
	}
	if maxRef == 0 {
		return maxDiff
	}
	return maxDiff / maxRef
}

func checkGrad(t *testing.T, name string, analytic []float32, numeric []float64) {
	t.Helper()
	if len(analytic) != len(numeric) {
		t.Fatalf("%s: %d analytic values, %d numeric", name, len(analytic), len(numeric))
	}
	e := gradError(analytic, numeric)
	if e > fdTol || math.IsNaN(e) {
		worst := 0
		for i := range numeric {
			if math.Abs(float64(analytic[i])-numeric[i]) > math.Abs(float64(analytic[worst])-numeric[worst]) {
				worst = i
			}
		}
		t.Errorf("%s: gradient error %.3g > %g (worst at %d: analytic %g, numeric %g)",
			name, e, fdTol, worst, analytic[worst], numeric[worst])
	} else {
		t.Logf("%s: gradient error %.2g", name, e)
	}
}

// minus returns a - b elementwise (what an accumulating backward added).
func minus(a, b []float32) []float32 {
	out := make([]float32, len(a))
	for i := range a {
		out[i] = a[i] - b[i]
	}
	return out
}

// ropeTables builds Hugging Face's default cos/sin tables:
// angle(p, i) = p * theta^(-2i/headDim).
func ropeTables(maxPos, headDim int, theta float64) (cos, sin []float32) {
	half := headDim / 2
	cos = make([]float32, maxPos*half)
	sin = make([]float32, maxPos*half)
	for p := 0; p < maxPos; p++ {
		for i := 0; i < half; i++ {
			a := float64(p) * math.Pow(theta, -2*float64(i)/float64(headDim))
			cos[p*half+i] = float32(math.Cos(a))
			sin[p*half+i] = float32(math.Sin(a))
		}
	}
	return cos, sin
}
