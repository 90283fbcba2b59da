package cuda_test

import (
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"testing"

	"whet/engine"
	"whet/engine/cuda"
)

// TestNF4FusedKernels: the fused NF4 decode mat-vecs (kernels/nf4.cu
// matvec_nf4_split_add, matvec_nf4_split_swiglu; engine.FusedNF4MatVecs)
// give the unfused ops' bits on the same backend: MatVecNF4Add against
// Copy + MatVecNF4 accumulating, MatVecsNF4SwiGLU against MatVecsNF4 into g
// and u and SwiGLU, for f32 and bf16 x and outputs, with rows not a
// multiple of the 4 a block (odd for the activation's pairs), k = 72
// (absmax blocks straddling rows), k past 256 words a row, Llama-3.1-8B's
// 4096 and 14336, and an x not 16-byte aligned; g and u are not written.
// MatVecNF4AddNorm against MatVecNF4Add + RMSNorm (y and h), three calls
// in a row at each width; a width not a multiple of 8 declined. With
// WHET_NF4_MATVEC=v1 they decline.
func TestNF4FusedKernels(t *testing.T) {
	b := newGPU(t, cuda.Options{})
	rng := rand.New(rand.NewPCG(21, 23))
	type shape struct{ n, k int }
	for _, sh := range []shape{{1, 64}, {5, 192}, {56, 72}, {1027, 4160}, {301, 4096}, {67, 14336}} {
		c, cu := newNF4Case(t, b, rng, sh.n, sh.k), newNF4Case(t, b, rng, sh.n, sh.k)
		xv := randomVals(rng, sh.k+1, 1)
		for _, dt := range []engine.DType{engine.F32, engine.BF16} {
			xbig := upload(t, b, dt, xv, 1, sh.k+1)
			for _, off := range []int{0, 1} {
				x, err := b.View(xbig, off, 1, sh.k)
				if err != nil {
					t.Fatal(err)
				}
				what := fmt.Sprintf("[%d %d] %s x off %d", sh.n, sh.k, dt, off)
				r := upload(t, b, dt, c.yv, 1, sh.n)
				y, yRef := upload(t, b, dt, make([]float32, sh.n), 1, sh.n), upload(t, b, dt, make([]float32, sh.n), 1, sh.n)
				if ok, err := b.MatVecNF4Add(y, x, c.pk, c.am, r); err != nil || !ok {
					t.Fatalf("%s: MatVecNF4Add: %v, %v", what, ok, err)
				}
				if err := b.Copy(yRef, r); err != nil {
					t.Fatal(err)
				}
				if err := b.MatVecNF4(yRef, x, c.pk, c.am, true); err != nil {
					t.Fatal(err)
				}
				sameBits(t, what+" MatVecNF4Add", download(t, b, y), download(t, b, yRef))

				g, u := upload(t, b, dt, make([]float32, sh.n), 1, sh.n), upload(t, b, dt, make([]float32, sh.n), 1, sh.n)
				s, sRef := upload(t, b, engine.BF16, make([]float32, sh.n), 1, sh.n), upload(t, b, engine.BF16, make([]float32, sh.n), 1, sh.n)
				if ok, err := b.MatVecsNF4SwiGLU(s, g, u, x, c.pk, c.am, cu.pk, cu.am); err != nil || !ok {
					t.Fatalf("%s: MatVecsNF4SwiGLU: %v, %v", what, ok, err)
				}
				for _, v := range append(download(t, b, g), download(t, b, u)...) {
					if v != 0 {
						t.Fatalf("%s: MatVecsNF4SwiGLU wrote g or u", what)
					}
				}
				if ok, err := b.MatVecsNF4([]engine.Tensor{g, u}, x, []engine.Tensor{c.pk, cu.pk}, []engine.Tensor{c.am, cu.am}, false); err != nil || !ok {
					t.Fatalf("MatVecsNF4: %v, %v", ok, err)
				}
				if err := b.SwiGLU(sRef, g, u); err != nil {
					t.Fatal(err)
				}
				sameBits(t, what+" MatVecsNF4SwiGLU", download(t, b, s), download(t, b, sRef))
				for _, tt := range []engine.Tensor{r, y, yRef, g, u, s, sRef} {
					b.Free(tt)
				}
			}
			b.Free(xbig)
		}
	}
	// The residual and the next norm: widths whose RMSNorm block is 32, 128,
	// 256 and 512 threads, called again and again (the ticket must be reset).
	for _, sh := range []shape{{56, 72}, {1024, 14336}, {2048, 2048}, {4096, 4096}} {
		c := newNF4Case(t, b, rng, sh.n, sh.k)
		nwv := randomVals(rng, sh.n, 0.3)
		for i := range nwv {
			nwv[i] += 1
		}
		for _, dt := range []engine.DType{engine.BF16, engine.F32} {
			what := fmt.Sprintf("[%d %d] %s", sh.n, sh.k, dt)
			x := upload(t, b, dt, randomVals(rng, sh.k, 1), 1, sh.k)
			nw := upload(t, b, dt, nwv, sh.n)
			r := upload(t, b, dt, c.yv, 1, sh.n)
			for rep := 0; rep < 3; rep++ {
				y, yRef := upload(t, b, dt, make([]float32, sh.n), 1, sh.n), upload(t, b, dt, make([]float32, sh.n), 1, sh.n)
				h, hRef := upload(t, b, dt, make([]float32, sh.n), 1, sh.n), upload(t, b, dt, make([]float32, sh.n), 1, sh.n)
				rstd := upload(t, b, engine.F32, make([]float32, 1), 1)
				if ok, err := b.MatVecNF4AddNorm(y, x, c.pk, c.am, r, h, nw, 1e-5); err != nil || !ok {
					t.Fatalf("%s: MatVecNF4AddNorm: %v, %v", what, ok, err)
				}
				if ok, err := b.MatVecNF4Add(yRef, x, c.pk, c.am, r); err != nil || !ok {
					t.Fatalf("%s: MatVecNF4Add: %v, %v", what, ok, err)
				}
				if err := b.RMSNorm(hRef, rstd, yRef, nw, 1e-5); err != nil {
					t.Fatal(err)
				}
				sameBits(t, fmt.Sprintf("%s call %d MatVecNF4AddNorm y", what, rep), download(t, b, y), download(t, b, yRef))
				sameBits(t, fmt.Sprintf("%s call %d MatVecNF4AddNorm h", what, rep), download(t, b, h), download(t, b, hRef))
				for _, tt := range []engine.Tensor{y, yRef, h, hRef, rstd} {
					b.Free(tt)
				}
			}
			for _, tt := range []engine.Tensor{x, nw, r} {
				b.Free(tt)
			}
		}
	}
	// A width not a multiple of 8 is declined (rmsnorm_forward's other path).
	{
		c := newNF4Case(t, b, rng, 5, 64)
		x := upload(t, b, engine.BF16, make([]float32, 64), 1, 64)
		y, h, nw := upload(t, b, engine.BF16, make([]float32, 5), 1, 5), upload(t, b, engine.BF16, make([]float32, 5), 1, 5), upload(t, b, engine.BF16, make([]float32, 5), 5)
		if ok, err := b.MatVecNF4AddNorm(y, x, c.pk, c.am, y, h, nw, 1e-5); ok || err != nil {
			t.Errorf("width 5: MatVecNF4AddNorm ok %v, %v; want declined", ok, err)
		}
	}
	t.Setenv(cuda.NF4MatVecEnv, "v1")
	c := newNF4Case(t, b, rng, 8, 64)
	x := upload(t, b, engine.BF16, make([]float32, 64), 1, 64)
	y := upload(t, b, engine.BF16, make([]float32, 8), 1, 8)
	if ok, err := b.MatVecNF4Add(y, x, c.pk, c.am, y); ok || err != nil {
		t.Errorf("v1: MatVecNF4Add ok %v, %v; want declined", ok, err)
	}
	g, u := upload(t, b, engine.BF16, make([]float32, 8), 1, 8), upload(t, b, engine.BF16, make([]float32, 8), 1, 8)
	if ok, err := b.MatVecsNF4SwiGLU(y, g, u, x, c.pk, c.am, c.pk, c.am); ok || err != nil {
		t.Errorf("v1: MatVecsNF4SwiGLU ok %v, %v; want declined", ok, err)
	}
}

// TestDecodeFusedNF4Generate: greedy decoding of the tiny models in NF4
// with the fused ops (Generator.Fuse) gives the unfused tokens, in graph
// mode and run directly, bf16 and float32 (the fused NF4 kernels keep the
// split kernel's bits and swiglu_forward's); the graph is used.
func TestDecodeFusedNF4Generate(t *testing.T) {
	f32 := newGPU(t, cuda.Options{ComputeF32: true})
	bf16 := newGPU(t, cuda.Options{})
	prompt := []int32{5, 77, 310, 12, 499, 3, 250, 18}
	for _, name := range []string{"tiny-llama", "tiny-qwen2", "tiny-qwen3", "tiny-phi3"} {
		for _, b := range []*cuda.Backend{f32, bf16} {
			m, err := engine.LoadModelWith(filepath.Join("..", "..", "testdata", name), b, engine.ModelOptions{})
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			if err := m.QuantizeBase(); err != nil {
				t.Fatal(err)
			}
			for _, mode := range []engine.DecodeMode{engine.DecodeDevice, engine.DecodeGraph} {
				what := fmt.Sprintf("%s nf4 %s %s", name, b.ComputeDType(), mode)
				toks := map[bool][]int32{}
				for _, fuse := range []bool{false, true} {
					g, err := m.NewGenerator(len(prompt) + 48)
					if err != nil {
						t.Fatal(err)
					}
					g.Mode, g.Fuse = mode, fuse
					out, err := g.Generate(t.Context(), prompt, engine.Greedy(40, nil), nil)
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
