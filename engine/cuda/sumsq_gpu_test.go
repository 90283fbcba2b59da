package cuda_test

import (
	"math"
	"math/rand/v2"
	"testing"

	"whet/engine"
	"whet/engine/cuda"
)

// TestSumSquaresV2: SumSquaresAll without atomics (SumSquaresV2Env=1)
// against sum_squares_multi on a second backend over a gradient-like set
// (bf16 and f32 tensors of 16M elements, odd lengths, one shorter than a
// 16-byte step, an unaligned view): within float64 rounding of each other,
// and bit-equal over reruns.
func TestSumSquaresV2(t *testing.T) {
	t.Setenv(cuda.SumSquaresV2Env, "1")
	b := newGPU(t, cuda.Options{})
	t.Setenv(cuda.SumSquaresV2Env, "0")
	ref := newGPU(t, cuda.Options{})
	rng := rand.New(rand.NewPCG(3, 9))
	var ts, rs []engine.Tensor
	for i, n := range []int{1 << 24, 70001, 5, 1 << 22, 333, 32768, 1 << 24} {
		dt := engine.BF16
		if i%2 == 1 {
			dt = engine.F32
		}
		v := randomVals(rng, n, 0.01)
		ts, rs = append(ts, upload(t, b, dt, v, n)), append(rs, upload(t, ref, dt, v, n))
	}
	v := randomVals(rng, 1003, 1)
	x, rx := upload(t, b, engine.F32, v, 1003), upload(t, ref, engine.F32, v, 1003)
	xv, err := b.View(x, 3, 1000)
	if err != nil {
		t.Fatal(err)
	}
	rxv, err := ref.View(rx, 3, 1000)
	if err != nil {
		t.Fatal(err)
	}
	ts, rs = append(ts, xv), append(rs, rxv)
	got, err := b.SumSquaresAll(ts)
	if err != nil {
		t.Fatal(err)
	}
	want, err := ref.SumSquaresAll(rs)
	if err != nil {
		t.Fatal(err)
	}
	if d := math.Abs(got - want); d > 1e-12*want || want == 0 {
		t.Errorf("SumSquaresAll %s=1: %.17g, sum_squares_multi %.17g (relative difference %.3g)", cuda.SumSquaresV2Env, got, want, d/want)
	}
	for range 3 {
		again, err := b.SumSquaresAll(ts)
		if err != nil {
			t.Fatal(err)
		}
		if again != got {
			t.Errorf("SumSquaresAll %s=1: %.17g, then %.17g on a rerun", cuda.SumSquaresV2Env, got, again)
		}
	}
	t.Logf("sum of squares %.17g (%s=1) vs %.17g", got, cuda.SumSquaresV2Env, want)
}
