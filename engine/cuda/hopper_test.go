package cuda

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"whet/engine"
	"whet/engine/cpu"
)

// TestHopperWgmmaProbe runs kernels/attention_hopper.cu's building blocks
// alone on an sm_90 card (skips elsewhere): one warpgroup computes
// S = Q K^T (64 x 128, both operands through swizzled shared memory and
// K-major descriptors) and O = bf16(S) V (P from registers, V N-major).
// When the attention tests fail with the Hopper kernels, this says whether
// the descriptors and layouts are at fault (and, for each wrong element,
// where its value belongs: a permutation shows as a pattern) or the
// attention logic around them.
func TestHopperWgmmaProbe(t *testing.T) {
	b := newTestBackend(t)
	if b.arch != "sm_90" {
		t.Skipf("skipping: the wgmma probe needs an sm_90 card (this is %s)", b.arch)
	}
	for _, d := range []int{64, 128} {
		t.Run(fmt.Sprintf("d%d", d), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(11, uint64(d)))
			vals := func(n int) []float32 {
				v := randVals(rng, n)
				for i := range v {
					v[i] = cpu.RoundBF16(v[i])
				}
				return v
			}
			qv, kv, vv := vals(64*d), vals(128*d), vals(128*d)
			up := func(v []float32, shape ...int) *Tensor {
				x, err := b.Alloc(engine.BF16, shape...)
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { b.Free(x) })
				if err := b.Upload(x, v); err != nil {
					t.Fatal(err)
				}
				return x.(*Tensor)
			}
			q, k, v := up(qv, 64, d), up(kv, 128, d), up(vv, 128, d)
			sOut, _ := b.Alloc(engine.F32, 64, 128)
			oOut, _ := b.Alloc(engine.F32, 64, d)
			t.Cleanup(func() { b.Free(sOut); b.Free(oOut) })
			if err := b.hopperProbe(sOut.(*Tensor), oOut.(*Tensor), q, k, v, d); err != nil {
				t.Fatal(err)
			}
			if err := b.Sync(); err != nil {
				t.Fatal(err)
			}
			s, o := make([]float32, 64*128), make([]float32, 64*d)
			if err := b.Download(sOut, s); err != nil {
				t.Fatal(err)
			}
			if err := b.Download(oOut, o); err != nil {
				t.Fatal(err)
			}
			wantS := make([]float32, 64*128)
			for m := 0; m < 64; m++ {
				for n := 0; n < 128; n++ {
					var acc float64
					for c := 0; c < d; c++ {
						acc += float64(qv[m*d+c]) * float64(kv[n*d+c])
					}
					wantS[m*128+n] = float32(acc)
				}
			}
			// O from the card's own S, rounded as the kernel rounds P, so that
			// a wrong S does not hide whether the P V product is right.
			wantO := make([]float32, 64*d)
			for m := 0; m < 64; m++ {
				for c := 0; c < d; c++ {
					var acc float64
					for n := 0; n < 128; n++ {
						acc += float64(cpu.RoundBF16(s[m*128+n])) * float64(vv[n*d+c])
					}
					wantO[m*d+c] = float32(acc)
				}
			}
			for _, r := range probeMismatches("S = Q K^T", s, wantS, 128, 1e-3) {
				t.Error(r)
			}
			for _, r := range probeMismatches("O = P V", o, wantO, d, 1e-3) {
				t.Error(r)
			}
		})
	}
}

// probeMismatches compares got with want (row-major, cols columns) within
// rel times want's largest magnitude and describes the first few wrong
// elements, each with the position in want whose value is nearest to what
// came out, and the count of all wrong elements.
func probeMismatches(name string, got, want []float32, cols int, rel float64) []string {
	var scale float64
	for _, w := range want {
		scale = max(scale, math.Abs(float64(w)))
	}
	tol := rel*scale + 1e-6
	var out []string
	bad := 0
	for i := range got {
		if math.Abs(float64(got[i]-want[i])) <= tol && !math.IsNaN(float64(got[i])) {
			continue
		}
		bad++
		if bad > 8 {
			continue
		}
		near, best := -1, math.Inf(1)
		for j, w := range want {
			if e := math.Abs(float64(got[i] - w)); e < best {
				near, best = j, e
			}
		}
		where := "no element of the reference is near it"
		if near >= 0 && best <= tol {
			where = fmt.Sprintf("the reference has it at [%d][%d]", near/cols, near%cols)
		}
		out = append(out, fmt.Sprintf("%s: [%d][%d] = %g, want %g; %s", name, i/cols, i%cols, got[i], want[i], where))
	}
	if bad > 0 {
		out = append(out, fmt.Sprintf("%s: %d of %d elements wrong (tolerance %g)", name, bad, len(got), tol))
	}
	return out
}

// TestProbeMismatches: the probe's report finds a transposed element where
// it belongs and passes equal matrices.
func TestProbeMismatches(t *testing.T) {
	want := []float32{1, 2, 3, 4, 5, 6} // 2 x 3
	if r := probeMismatches("x", want, want, 3, 1e-3); len(r) != 0 {
		t.Errorf("equal matrices reported: %v", r)
	}
	got := []float32{1, 5, 3, 4, 2, 6} // [0][1] and [1][1] swapped
	r := probeMismatches("x", got, want, 3, 1e-3)
	if len(r) != 3 || r[0] != "x: [0][1] = 5, want 2; the reference has it at [1][1]" ||
		r[2] != "x: 2 of 6 elements wrong (tolerance 0.006001)" {
		t.Errorf("report %q", r)
	}
	nan := []float32{1, 2, 3, 4, 5, float32(math.NaN())}
	if r := probeMismatches("x", nan, want, 3, 1e-3); len(r) != 2 {
		t.Errorf("NaN not reported once: %q", r)
	}
}
