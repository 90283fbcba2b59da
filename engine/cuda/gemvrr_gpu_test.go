package cuda_test

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"whet/engine"
	"whet/engine/cuda"
)

// TestGEMVRR: the round-parallel GEMVs (DecodeGEMVEnv=rr, kernels/gemv.cu
// gemv_rr*) give the four-piece kernels' bits on the same backend, for
// each op they take: the one-row MatMul (alpha 0.5, beta 0 and 1), MatVecs
// of one to three weights (overwriting, accumulating), MatVecAdd,
// MatVecsNorm (k 1024 to 14336: RMSNorm blocks of 128 to 1024 threads),
// MatVecSwiGLUAdd; into bf16 and f32; rows not a multiple of a block's;
// blocks of 1, 8 and 32 warps (DecodeRRWarpsEnv) and the defaults; k not a
// multiple of 1024 taken by the old kernels.
func TestGEMVRR(t *testing.T) {
	t.Setenv(cuda.GEMVEnv, "1")
	b := newGPU(t, cuda.Options{})
	rng := rand.New(rand.NewPCG(21, 17))
	type result struct {
		what string
		vals []float32
	}
	// run gives every op's outputs for the env's kernels.
	run := func(k int, ydt engine.DType, ins map[string]engine.Tensor, ws []engine.Tensor, ns []int) []result {
		var out []result
		fresh := func(n int) engine.Tensor { return upload(t, b, ydt, make([]float32, n), 1, n) }
		keep := func(what string, y engine.Tensor) {
			out = append(out, result{what, download(t, b, y)})
			b.Free(y)
		}
		x, r := ins["x"], ins["r"]
		for _, beta := range []float32{0, 1} {
			y := upload(t, b, ydt, download(t, b, r), 1, ns[0])
			if err := b.MatMul(y, x, ws[0], false, true, 0.5, beta); err != nil {
				t.Fatal(err)
			}
			keep(fmt.Sprintf("MatMul beta %g", beta), y)
		}
		for nw := 1; nw <= 3; nw++ {
			for _, acc := range []bool{false, true} {
				var ys []engine.Tensor
				for _, n := range ns[:nw] {
					ys = append(ys, upload(t, b, ydt, randomVals(rand.New(rand.NewPCG(uint64(n), 1)), n, 1), 1, n))
				}
				if ok, err := b.MatVecs(ys, x, ws[:nw], acc); err != nil || !ok {
					t.Fatalf("MatVecs: %v, %v", ok, err)
				}
				for i, y := range ys {
					keep(fmt.Sprintf("MatVecs of %d accumulate=%v weight %d", nw, acc, i), y)
				}
			}
			var ys []engine.Tensor
			for _, n := range ns[:nw] {
				ys = append(ys, fresh(n))
			}
			if ok, err := b.MatVecsNorm(ys, ins["h"], x, ins["nw"], 1e-5, ws[:nw]); err != nil || !ok {
				t.Fatalf("MatVecsNorm: %v, %v", ok, err)
			}
			for i, y := range ys {
				keep(fmt.Sprintf("MatVecsNorm of %d weight %d", nw, i), y)
			}
		}
		y := fresh(ns[0])
		if ok, err := b.MatVecAdd(y, x, ws[0], r); err != nil || !ok {
			t.Fatalf("MatVecAdd: %v, %v", ok, err)
		}
		keep("MatVecAdd", y)
		y = fresh(ns[0])
		if ok, err := b.MatVecSwiGLUAdd(y, ins["s"], ins["g"], ins["u"], ws[0], r); err != nil || !ok {
			t.Fatalf("MatVecSwiGLUAdd: %v, %v", ok, err)
		}
		keep("MatVecSwiGLUAdd", y)
		return out
	}
	for _, k := range []int{1024, 2048, 4096, 8192, 14336, 896} {
		ns := []int{300, 67, 8}
		nwv := randomVals(rng, k, 0.3)
		for i := range nwv {
			nwv[i] += 1
		}
		ins := map[string]engine.Tensor{
			"x":  upload(t, b, engine.BF16, randomVals(rng, k, 1), 1, k),
			"nw": upload(t, b, engine.BF16, nwv, k),
			"h":  upload(t, b, engine.BF16, make([]float32, k), 1, k),
			"g":  upload(t, b, engine.BF16, randomVals(rng, k, 2), 1, k),
			"u":  upload(t, b, engine.BF16, randomVals(rng, k, 1), 1, k),
			"s":  upload(t, b, engine.BF16, make([]float32, k), 1, k),
		}
		var ws []engine.Tensor
		for _, n := range ns {
			ws = append(ws, upload(t, b, engine.BF16, randomVals(rng, n*k, 0.05), n, k))
		}
		for _, ydt := range []engine.DType{engine.BF16, engine.F32} {
			ins["r"] = upload(t, b, ydt, randomVals(rng, ns[0], 1), 1, ns[0])
			t.Setenv(cuda.DecodeGEMVEnv, "0")
			want := run(k, ydt, ins, ws, ns)
			for _, warps := range []string{"", "1", "8", "32"} {
				t.Setenv(cuda.DecodeGEMVEnv, "rr")
				t.Setenv(cuda.DecodeRRWarpsEnv, warps)
				got := run(k, ydt, ins, ws, ns)
				t.Setenv(cuda.DecodeRRWarpsEnv, "")
				for i := range want {
					sameBits(t, fmt.Sprintf("k %d into %s warps %q: %s", k, ydt, warps, want[i].what), got[i].vals, want[i].vals)
				}
			}
			b.Free(ins["r"])
		}
		for _, w := range ws {
			b.Free(w)
		}
		for _, v := range ins {
			if v != ins["r"] {
				b.Free(v)
			}
		}
	}
}
