package cuda_test

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"whet/engine"
	"whet/engine/cuda"
)

// TestGEMV2: kernels/gemv2.cu (GEMV2Env=1) equals cuBLASLt's product for
// one row, into bf16 and f32, overwriting and accumulating, on k that take
// its eight-piece rounds only (2048), those and the four- and one-piece
// tails (2880, 8200), the tails alone (64, 776), and rows not a multiple
// of the 8 a block; and MatVecs (q, k, v in one launch) equals cuBLASLt
// one by one.
func TestGEMV2(t *testing.T) {
	t.Setenv(cuda.GEMVEnv, "1")
	b := newGPU(t, cuda.Options{})
	t.Setenv(cuda.GEMVEnv, "0")
	ref := newGPU(t, cuda.Options{})
	t.Setenv(cuda.GEMV2Env, "1")
	rng := rand.New(rand.NewPCG(21, 11))
	for _, sz := range [][2]int{{13, 2048}, {7, 2880}, {9, 8200}, {3, 64}, {130, 776}} {
		n, k := sz[0], sz[1]
		xv, wv, yv := randomVals(rng, k, 1), randomVals(rng, n*k, 0.05), randomVals(rng, n, 1)
		x, rx := upload(t, b, engine.BF16, xv, 1, k), upload(t, ref, engine.BF16, xv, 1, k)
		w, rw := upload(t, b, engine.BF16, wv, n, k), upload(t, ref, engine.BF16, wv, n, k)
		for _, ydt := range []engine.DType{engine.BF16, engine.F32} {
			for _, beta := range []float32{0, 1} {
				y, ry := upload(t, b, ydt, yv, 1, n), upload(t, ref, ydt, yv, 1, n)
				if err := b.MatMul(y, x, w, false, true, 0.5, beta); err != nil {
					t.Fatal(err)
				}
				if err := ref.MatMul(ry, rx, rw, false, true, 0.5, beta); err != nil {
					t.Fatal(err)
				}
				closeTo(t, fmt.Sprintf("gemv2 [%d %d] into %s beta %g", n, k, ydt, beta), download(t, b, y), download(t, ref, ry), 1e-2)
			}
		}
	}
	const k = 2880
	ns := []int{2048, 512, 510}
	xv := randomVals(rng, k, 1)
	x, rx := upload(t, b, engine.BF16, xv, 1, k), upload(t, ref, engine.BF16, xv, 1, k)
	for _, acc := range []bool{false, true} {
		var ys, ws []engine.Tensor
		var want [][]float32
		for _, n := range ns {
			wv, yv := randomVals(rng, n*k, 0.05), randomVals(rng, n, 1)
			ys, ws = append(ys, upload(t, b, engine.BF16, yv, 1, n)), append(ws, upload(t, b, engine.BF16, wv, n, k))
			ry, rw := upload(t, ref, engine.BF16, yv, 1, n), upload(t, ref, engine.BF16, wv, n, k)
			beta := float32(0)
			if acc {
				beta = 1
			}
			if err := ref.MatMul(ry, rx, rw, false, true, 1, beta); err != nil {
				t.Fatal(err)
			}
			want = append(want, download(t, ref, ry))
		}
		ok, err := b.MatVecs(ys, x, ws, acc)
		if err != nil || !ok {
			t.Fatalf("MatVecs: %v, %v", ok, err)
		}
		for i := range ys {
			closeTo(t, fmt.Sprintf("gemv2 MatVecs accumulate=%v weight %d", acc, i), download(t, b, ys[i]), want[i], 1e-2)
		}
	}
}
