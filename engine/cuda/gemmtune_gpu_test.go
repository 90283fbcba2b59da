package cuda

import (
	"errors"
	"math"
	"math/rand/v2"
	"os"
	"testing"

	"whet/engine"
	"whet/engine/cpu"
)

// TestGEMMTuneMatchesReference runs LoRA's thin products (scaled down:
// the B product, x·Aᵀ, dB and dA over a long token axis) on a backend with
// GEMM tuning on, against float64 sums of the bf16-rounded operands. The
// products with beta 1 run twice from a filled output, so a timing run
// that wrote into the real output (instead of the scratch one) shows as a
// wrong sum; the reductions over 4,096 tokens get split-K variants. The
// tuning table is logged.
func TestGEMMTuneMatchesReference(t *testing.T) {
	b, err := New(Options{CacheDir: testCacheDir, TuneGEMM: true})
	if err != nil {
		if errors.Is(err, ErrNoGPU) && os.Getenv("WHET_CUDA_REQUIRE") != "1" {
			t.Skipf("skipping: the CUDA backend needs an NVIDIA GPU and driver: %v", err)
		}
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() {
		if err := b.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	if !b.GEMMTuned() {
		t.Fatal("Options.TuneGEMM: the backend does not tune")
	}
	rng := rand.New(rand.NewPCG(7, 8))
	for _, c := range []struct {
		name           string
		m, n, k        int // c [m, n] = op(a) [m, k] · op(b) [k, n]
		transA, transB bool
		out            engine.DType
		alpha, beta    float32
	}{
		{"lora_B_product", 2048, 1024, 16, false, true, engine.BF16, 2, 0},
		{"lora_xa", 2048, 16, 1024, false, true, engine.BF16, 1, 0},
		{"lora_dB", 512, 16, 4096, true, false, engine.F32, 2, 1},
		{"lora_dA", 16, 256, 4096, true, false, engine.F32, 1, 1},
		{"lora_dxa", 4096, 16, 512, false, false, engine.BF16, 2, 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			ar, ac := c.m, c.k
			if c.transA {
				ar, ac = c.k, c.m
			}
			br, bc := c.k, c.n
			if c.transB {
				br, bc = c.n, c.k
			}
			av, bv := randVals(rng, ar*ac), randVals(rng, br*bc)
			a, err := b.Alloc(engine.BF16, ar, ac)
			if err != nil {
				t.Fatal(err)
			}
			defer b.Free(a)
			bm, err := b.Alloc(engine.BF16, br, bc)
			if err != nil {
				t.Fatal(err)
			}
			defer b.Free(bm)
			out, err := b.Alloc(c.out, c.m, c.n)
			if err != nil {
				t.Fatal(err)
			}
			defer b.Free(out)
			if err := b.Upload(a, av); err != nil {
				t.Fatal(err)
			}
			if err := b.Upload(bm, bv); err != nil {
				t.Fatal(err)
			}
			const start = 1.5
			runs := 1
			if c.beta != 0 {
				runs = 2
				if err := b.Fill(out, start); err != nil {
					t.Fatal(err)
				}
			}
			for range runs {
				if err := b.MatMul(out, a, bm, c.transA, c.transB, c.alpha, c.beta); err != nil {
					t.Fatal(err)
				}
			}
			got := make([]float32, c.m*c.n)
			if err := b.Download(out, got); err != nil {
				t.Fatal(err)
			}
			at := func(v []float32, cols, r, col int) float64 { return float64(cpu.RoundBF16(v[r*cols+col])) }
			var worst, scale float64
			for i := range c.m {
				for j := range c.n {
					var s float64
					for k := range c.k {
						// Index the stored layout only: op(a)[i][k] is a[k][i] when
						// transposed, and the other order would read past the end.
						var x, y float64
						if c.transA {
							x = at(av, ac, k, i)
						} else {
							x = at(av, ac, i, k)
						}
						if c.transB {
							y = at(bv, bc, j, k)
						} else {
							y = at(bv, bc, k, j)
						}
						s += x * y
					}
					want := float64(runs) * float64(c.alpha) * s
					if c.beta != 0 {
						want += start // beta 1: 1.5 + alpha·AB + alpha·AB
					}
					worst = max(worst, math.Abs(float64(got[i*c.n+j])-want))
					scale = max(scale, math.Abs(want))
				}
			}
			tol := 1e-4 * scale
			if c.out == engine.BF16 {
				tol = 8e-3 * scale // one bf16 rounding of the result
			}
			if worst > tol {
				t.Errorf("%s[%dx%d] = op(a)·op(b) (k %d, transposes %v/%v, alpha %g, beta %g, %d runs): worst error %g against a scale of %g (bound %g)",
					c.out, c.m, c.n, c.k, c.transA, c.transB, c.alpha, c.beta, runs, worst, scale, tol)
			}
		})
	}
	if len(b.tuneLog) < 5 {
		t.Errorf("%d products tuned, want at least the 5 cases'", len(b.tuneLog))
	}
	for _, r := range b.tuneLog {
		if r.candidates >= 2 && len(r.times) > 0 && r.chosen < 0 {
			t.Errorf("%s: %d candidates timed, none chosen (times %v)", r.name, r.candidates, r.times)
		}
	}
	t.Logf("\n%s", tuneReport(b.tuneLog))
}
