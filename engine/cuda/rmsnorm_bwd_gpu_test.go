package cuda_test

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"whet/engine"
	"whet/engine/cuda"
)

// TestRMSNormBackwardV2: the two-stage weight gradient (RMSNormBwdV2Env=1)
// and the one fused with the input gradient (=2) against the one-stage
// kernel on a third backend: Llama-3.2-1B's
// 8192×2048 in bf16 and f32 with a bf16 and an f32 dWeight, rows and
// columns that leave partial tiles and chunks (777×200, 16×4096), the
// path without 16-byte loads (300×61), and QK-norm's many short rows
// (65536×128). dWeight starts non-zero (the op accumulates). Each result
// must be bit-equal run to run (deterministic); the kernels' times at
// 8192×2048 are logged.
func TestRMSNormBackwardV2(t *testing.T) {
	t.Setenv(cuda.RMSNormBwdV2Env, "0")
	ref := newGPU(t, cuda.Options{})
	for _, mode := range []string{"1", "2"} {
		t.Setenv(cuda.RMSNormBwdV2Env, mode)
		b := newGPU(t, cuda.Options{})
		t.Run("mode"+mode, func(t *testing.T) { testRMSNormBackwardMode(t, b, ref, mode) })
	}
}

func testRMSNormBackwardMode(t *testing.T, b, ref engine.Backend, mode string) {
	rng := rand.New(rand.NewPCG(20, 7))
	for _, c := range []struct {
		rows, dim int
		act, dw   engine.DType
	}{
		{8192, 2048, engine.BF16, engine.F32}, {8192, 2048, engine.BF16, engine.BF16}, {8192, 2048, engine.F32, engine.F32},
		{777, 200, engine.BF16, engine.F32}, {16, 4096, engine.BF16, engine.BF16}, {300, 61, engine.F32, engine.F32},
		{300, 61, engine.BF16, engine.F32}, {65536, 128, engine.BF16, engine.F32}, {1, 8, engine.F32, engine.F32},
	} {
		name := fmt.Sprintf("%dx%d_%s_dw%s", c.rows, c.dim, c.act, c.dw)
		t.Run(name, func(t *testing.T) {
			n := c.rows * c.dim
			xv, dyv, wv := randomVals(rng, n, 1), randomVals(rng, n, 1), randomVals(rng, c.dim, 0.2)
			for i := range wv {
				wv[i]++
			}
			rv := make([]float32, c.rows)
			for i := range rv {
				rv[i] = 0.5 + rng.Float32()
			}
			dw0 := randomVals(rng, c.dim, 1)
			type run struct {
				dw, dx engine.Tensor
				args   [4]engine.Tensor // dOut, x, weight, rstd
			}
			setup := func(be engine.Backend) run {
				return run{
					dw: upload(t, be, c.dw, dw0, c.dim), dx: upload(t, be, c.act, make([]float32, n), c.rows, c.dim),
					args: [4]engine.Tensor{upload(t, be, c.act, dyv, c.rows, c.dim), upload(t, be, c.act, xv, c.rows, c.dim),
						upload(t, be, c.act, wv, c.dim), upload(t, be, engine.F32, rv, c.rows)},
				}
			}
			step := func(be engine.Backend, r run) {
				t.Helper()
				if err := be.RMSNormBackward(r.dx, r.dw, r.args[0], r.args[1], r.args[2], r.args[3]); err != nil {
					t.Fatal(err)
				}
			}
			got, want := setup(b), setup(ref)
			step(b, got)
			step(ref, want)
			g, w := download(t, b, got.dw), download(t, ref, want.dw)
			tol := 1e-4
			if c.dw == engine.BF16 {
				tol = 1e-2 // one bf16 rounding of the sum apart
			}
			closeTo(t, name+" dWeight", g, w, tol)
			dxTol := 1e-6 // =1 runs the same input-gradient kernel
			if mode == "2" {
				// The same formulas in another kernel: contractions may differ.
				dxTol = 1e-5
				if c.act == engine.BF16 {
					dxTol = 1e-2
				}
			}
			closeTo(t, name+" dx", download(t, b, got.dx), download(t, ref, want.dx), dxTol)
			again := setup(b)
			step(b, again)
			if a := download(t, b, again.dw); !slices.Equal(a, g) {
				t.Errorf("%s: %s=%s: dWeight differs between two runs from the same inputs", name, cuda.RMSNormBwdV2Env, mode)
			}
			if c.rows*c.dim < 1<<24 {
				return
			}
			for _, be := range []struct {
				name string
				b    engine.Backend
				r    run
			}{{cuda.RMSNormBwdV2Env + "=" + mode, b, got}, {"one-stage", ref, want}} {
				const iters = 20
				if err := be.b.Sync(); err != nil {
					t.Fatal(err)
				}
				began := time.Now()
				for range iters {
					step(be.b, be.r)
				}
				if err := be.b.Sync(); err != nil {
					t.Fatal(err)
				}
				t.Logf("%s %s: %.1f µs a RMSNormBackward (weight and input gradients)", name, be.name,
					float64(time.Since(began).Microseconds())/iters)
			}
			began := time.Now()
			for range 20 {
				if err := ref.RMSNormBackward(want.dx, nil, want.args[0], want.args[1], want.args[2], want.args[3]); err != nil {
					t.Fatal(err)
				}
			}
			if err := ref.Sync(); err != nil {
				t.Fatal(err)
			}
			t.Logf("%s input gradient alone: %.1f µs", name, float64(time.Since(began).Microseconds())/20)
		})
	}
}
