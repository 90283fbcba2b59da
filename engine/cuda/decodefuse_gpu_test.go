package cuda_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"testing"

	"whet/engine"
	"whet/engine/cuda"
)

// sameBits fails unless got and want are equal element for element.
func sameBits(t *testing.T, what string, got, want []float32) {
	t.Helper()
	diff, first := 0, -1
	for i := range want {
		if got[i] != want[i] && !(got[i] != got[i] && want[i] != want[i]) {
			if first < 0 {
				first = i
			}
			diff++
		}
	}
	if diff > 0 {
		t.Errorf("%s: %d of %d elements differ from the unfused ops' (first %d: %g, want %g)", what, diff, len(want), first, got[first], want[first])
	}
}

// TestDecodeFusedKernels: the fused decode GEMVs (kernels/gemv.cu:
// gemv_bf16_add, gemv_bf16_norm_multi, gemv_bf16_swiglu_add) give the bits
// of the unfused ops they replace, on the same backend: Copy + GEMV with
// beta 1; RMSNorm + MatVecs (at widths whose RMSNorm block is 128, 256,
// 512 and 1024 threads, so the reproduced sum order is checked for each);
// SwiGLU + Copy + GEMV; into bf16 and f32 outputs, rows not a multiple of
// 8. Float32 operands are declined.
func TestDecodeFusedKernels(t *testing.T) {
	t.Setenv(cuda.GEMVEnv, "1")
	b := newGPU(t, cuda.Options{})
	rng := rand.New(rand.NewPCG(21, 9))
	for _, k := range []int{896, 2048, 3072, 8192, 14336} {
		for _, ydt := range []engine.DType{engine.BF16, engine.F32} {
			what := fmt.Sprintf("k %d into %s", k, ydt)
			ns := []int{300, 64, 8}
			xv, rv, nwv := randomVals(rng, k, 1), randomVals(rng, ns[0], 1), randomVals(rng, k, 0.3)
			for i := range nwv {
				nwv[i] += 1
			}
			x := upload(t, b, engine.BF16, xv, 1, k)
			nw := upload(t, b, engine.BF16, nwv, k)
			var ws []engine.Tensor
			for _, n := range ns {
				ws = append(ws, upload(t, b, engine.BF16, randomVals(rng, n*k, 0.05), n, k))
			}
			r := upload(t, b, ydt, rv, 1, ns[0])
			fresh := func(n int) engine.Tensor { return upload(t, b, ydt, make([]float32, n), 1, n) }

			// Residual.
			y, yRef := fresh(ns[0]), fresh(ns[0])
			if ok, err := b.MatVecAdd(y, x, ws[0], r); err != nil || !ok {
				t.Fatalf("%s: MatVecAdd: %v, %v", what, ok, err)
			}
			if err := b.Copy(yRef, r); err != nil {
				t.Fatal(err)
			}
			if err := b.MatMul(yRef, x, ws[0], false, true, 1, 1); err != nil {
				t.Fatal(err)
			}
			sameBits(t, what+" MatVecAdd", download(t, b, y), download(t, b, yRef))

			// Norm into up to three weights.
			h := upload(t, b, engine.BF16, make([]float32, k), 1, k)
			rstd := upload(t, b, engine.F32, make([]float32, 1), 1)
			for nWeights := 1; nWeights <= 3; nWeights++ {
				var ys, yRefs []engine.Tensor
				for _, n := range ns[:nWeights] {
					ys, yRefs = append(ys, fresh(n)), append(yRefs, fresh(n))
				}
				if ok, err := b.MatVecsNorm(ys, h, x, nw, 1e-5, ws[:nWeights]); err != nil || !ok {
					t.Fatalf("%s: MatVecsNorm of %d: %v, %v", what, nWeights, ok, err)
				}
				if hv := download(t, b, h); slices.ContainsFunc(hv, func(v float32) bool { return v != 0 }) {
					t.Errorf("%s: MatVecsNorm wrote h", what)
				}
				hRef := upload(t, b, engine.BF16, make([]float32, k), 1, k)
				if err := b.RMSNorm(hRef, rstd, x, nw, 1e-5); err != nil {
					t.Fatal(err)
				}
				if ok, err := b.MatVecs(yRefs, hRef, ws[:nWeights], false); err != nil || !ok {
					t.Fatalf("MatVecs: %v, %v", ok, err)
				}
				for i := range ys {
					sameBits(t, fmt.Sprintf("%s MatVecsNorm weight %d of %d", what, i, nWeights), download(t, b, ys[i]), download(t, b, yRefs[i]))
				}
			}

			// SwiGLU and residual.
			g := upload(t, b, engine.BF16, randomVals(rng, k, 2), 1, k)
			u := upload(t, b, engine.BF16, randomVals(rng, k, 1), 1, k)
			s := upload(t, b, engine.BF16, make([]float32, k), 1, k)
			y, yRef = fresh(ns[0]), fresh(ns[0])
			if ok, err := b.MatVecSwiGLUAdd(y, s, g, u, ws[0], r); err != nil || !ok {
				t.Fatalf("%s: MatVecSwiGLUAdd: %v, %v", what, ok, err)
			}
			sRef := upload(t, b, engine.BF16, make([]float32, k), 1, k)
			if err := b.SwiGLU(sRef, g, u); err != nil {
				t.Fatal(err)
			}
			if err := b.Copy(yRef, r); err != nil {
				t.Fatal(err)
			}
			if err := b.MatMul(yRef, sRef, ws[0], false, true, 1, 1); err != nil {
				t.Fatal(err)
			}
			sameBits(t, what+" MatVecSwiGLUAdd", download(t, b, y), download(t, b, yRef))
		}
	}
	const k = 64
	x32 := upload(t, b, engine.F32, make([]float32, k), 1, k)
	w32 := upload(t, b, engine.F32, make([]float32, 8*k), 8, k)
	y32 := upload(t, b, engine.F32, make([]float32, 8), 1, 8)
	if ok, err := b.MatVecAdd(y32, x32, w32, y32); ok || err != nil {
		t.Errorf("float32 MatVecAdd: ok %v, %v; want declined", ok, err)
	}
	if ok, err := b.MatVecsNorm([]engine.Tensor{y32}, x32, x32, upload(t, b, engine.F32, make([]float32, k), k), 1e-5, []engine.Tensor{w32}); ok || err != nil {
		t.Errorf("float32 MatVecsNorm: ok %v, %v; want declined", ok, err)
	}
}

// TestDecodeFusedGenerate: greedy decoding of the tiny models with the
// fused ops (Generator.Fuse) gives the unfused tokens, in graph mode and
// run directly, in bf16 (the fused kernels reproduce the unfused bits)
// and in float32 (where they decline); the graph is used, not fallen back
// from.
func TestDecodeFusedGenerate(t *testing.T) {
	t.Setenv(cuda.GEMVEnv, "1")
	f32 := newGPU(t, cuda.Options{ComputeF32: true})
	bf16 := newGPU(t, cuda.Options{})
	prompt := []int32{5, 77, 310, 12, 499, 3, 250, 18}
	for _, name := range []string{"tiny-llama", "tiny-qwen2", "tiny-qwen3", "tiny-gemma2", "tiny-phi3"} {
		for _, b := range []*cuda.Backend{f32, bf16} {
			m, err := engine.LoadModelWith(filepath.Join("..", "..", "testdata", name), b, engine.ModelOptions{})
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			for _, mode := range []engine.DecodeMode{engine.DecodeDevice, engine.DecodeGraph} {
				what := fmt.Sprintf("%s %s %s", name, b.ComputeDType(), mode)
				toks := map[bool][]int32{}
				for _, fuse := range []bool{false, true} {
					g, err := m.NewGenerator(len(prompt) + 48)
					if err != nil {
						t.Fatal(err)
					}
					g.Mode, g.Fuse = mode, fuse
					out, err := g.Generate(context.Background(), prompt, engine.Greedy(40, nil), nil)
					if err != nil {
						t.Fatalf("%s fuse=%v: %v", what, fuse, err)
					}
					if g.Used != mode || g.Fallback != "" {
						t.Errorf("%s fuse=%v: used %s (%s)", what, fuse, g.Used, g.Fallback)
					}
					g.Free()
					toks[fuse] = out
				}
				n := commonPrefix(toks[true], toks[false])
				t.Logf("%s: fused and unfused agree on %d of 40 tokens", what, n)
				if n != 40 {
					t.Errorf("%s: fused %v, unfused %v", what, toks[true], toks[false])
				}
			}
			m.Free()
		}
	}
}
