package cuda_test

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"path/filepath"
	"testing"

	"whet/engine"
	"whet/engine/cuda"
)

// TestMatVecArgmax: kernels/gemv.cu's gemv_bf16_argmax (engine.HeadArgmax)
// writes the GEMV's logits bit for bit and the id decode.cu's argmax picks
// from them: random heads (the largest anywhere, in the last block), a
// tie between two equal rows (the lower wins, in different blocks and in
// one), a NaN row (never chosen), all-equal rows, -inf rows (all of them:
// id 0), into f32 and bf16 logits; called again and again with the largest
// moving, so the best key and ticket it leaves must be reset; float32
// operands declined.
func TestMatVecArgmax(t *testing.T) {
	t.Setenv(cuda.GEMVEnv, "1")
	b := newGPU(t, cuda.Options{})
	rng := rand.New(rand.NewPCG(21, 13))
	ids := upload(t, b, engine.I32, []float32{0}, 1)
	ref := upload(t, b, engine.I32, []float32{0}, 1)
	for _, sz := range [][2]int{{20011, 2048}, {1000, 64}, {8, 776}, {3, 2048}} {
		V, k := sz[0], sz[1]
		xv := randomVals(rng, k, 1)
		x := upload(t, b, engine.BF16, xv, 1, k)
		for trial := 0; trial < 7; trial++ {
			wv := randomVals(rng, V*k, 0.05)
			row := func(r int) []float32 { return wv[r*k : (r+1)*k] }
			switch trial {
			case 1: // the largest in the last row
				for c := range k {
					row(V - 1)[c] = 2 * xv[c]
				}
			case 2: // two equal largest rows, far apart
				for c := range k {
					row(V / 3)[c], row(V - 1)[c] = xv[c], xv[c]
				}
			case 3: // two equal largest rows in one block, and a NaN row
				lo := min(1, V-1)
				for c := range k {
					row(lo)[c], row(0)[c] = xv[c], xv[c]
					row(V / 2)[c] = float32(math.NaN())
				}
			case 4: // every row equal
				for r := range V {
					copy(row(r), xv)
				}
			case 5, 6: // every row's logit -inf, but one in the middle (5) or none (6)
				for r := range V {
					for c := range k {
						row(r)[c] = 0
						if xv[c] > 0 {
							row(r)[c] = float32(math.Inf(-1))
						}
					}
				}
				if trial == 5 {
					copy(row(V/2), xv)
				}
			}
			w := upload(t, b, engine.BF16, wv, V, k)
			for _, ldt := range []engine.DType{engine.F32, engine.BF16} {
				what := fmt.Sprintf("[%d %d] trial %d into %s", V, k, trial, ldt)
				logits := upload(t, b, ldt, make([]float32, V), 1, V)
				want := upload(t, b, ldt, make([]float32, V), 1, V)
				ok, err := b.MatVecArgmax(ids, logits, x, w)
				if err != nil || !ok {
					t.Fatalf("%s: MatVecArgmax: %v, %v", what, ok, err)
				}
				if err := b.MatMul(want, x, w, false, true, 1, 0); err != nil {
					t.Fatal(err)
				}
				if err := b.Argmax(ref, want); err != nil {
					t.Fatal(err)
				}
				sameBits(t, what+" logits", download(t, b, logits), download(t, b, want))
				if got, exp := download(t, b, ids)[0], download(t, b, ref)[0]; got != exp {
					lv := download(t, b, want)
					t.Errorf("%s: id %v (logit %g), argmax %v (logit %g)", what, got, lv[int(got)], exp, lv[int(exp)])
				}
				b.Free(logits)
				b.Free(want)
			}
			b.Free(w)
		}
		b.Free(x)
	}
	const k = 64
	x32 := upload(t, b, engine.F32, make([]float32, k), 1, k)
	w32 := upload(t, b, engine.F32, make([]float32, 8*k), 8, k)
	y32 := upload(t, b, engine.F32, make([]float32, 8), 1, 8)
	if ok, err := b.MatVecArgmax(ids, y32, x32, w32); ok || err != nil {
		t.Errorf("float32 MatVecArgmax: ok %v, %v; want declined", ok, err)
	}
}

// TestDecodeHeadArgmaxGenerate: greedy decoding of the tiny models with the
// argmax in the head (Generator.HeadArgmax) gives the tokens of the head
// and Argmax apart, in graph mode and run directly, in bf16 (the kernel
// takes the head) and float32 (declined); the graph is used.
func TestDecodeHeadArgmaxGenerate(t *testing.T) {
	t.Setenv(cuda.GEMVEnv, "1")
	f32 := newGPU(t, cuda.Options{ComputeF32: true})
	bf16 := newGPU(t, cuda.Options{})
	prompt := []int32{5, 77, 310, 12, 499, 3, 250, 18}
	for _, name := range []string{"tiny-llama", "tiny-qwen2", "tiny-gemma2", "tiny-phi3"} {
		for _, b := range []*cuda.Backend{f32, bf16} {
			m, err := engine.LoadModelWith(filepath.Join("..", "..", "testdata", name), b, engine.ModelOptions{})
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			for _, mode := range []engine.DecodeMode{engine.DecodeDevice, engine.DecodeGraph} {
				what := fmt.Sprintf("%s %s %s", name, b.ComputeDType(), mode)
				toks := map[bool][]int32{}
				for _, on := range []bool{false, true} {
					g, err := m.NewGenerator(len(prompt) + 48)
					if err != nil {
						t.Fatal(err)
					}
					g.Mode, g.HeadArgmax = mode, on
					out, err := g.Generate(context.Background(), prompt, engine.Greedy(40, nil), nil)
					if err != nil {
						t.Fatalf("%s head argmax=%v: %v", what, on, err)
					}
					if g.Used != mode || g.Fallback != "" {
						t.Errorf("%s head argmax=%v: used %s (%s)", what, on, g.Used, g.Fallback)
					}
					g.Free()
					toks[on] = out
				}
				n := commonPrefix(toks[true], toks[false])
				t.Logf("%s: head argmax and apart agree on %d of 40 tokens", what, n)
				if n != 40 {
					t.Errorf("%s: head argmax %v, apart %v", what, toks[true], toks[false])
				}
			}
			m.Free()
		}
	}
}
