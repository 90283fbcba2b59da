package cuda_test

import (
	"context"

	"fmt"
	"math"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"whet/engine"
	"whet/engine/cpu"
	"whet/engine/cuda"
)

// upload puts vals into a new tensor of dt on b.
func upload(t *testing.T, b engine.Backend, dt engine.DType, vals []float32, shape ...int) engine.Tensor {
	t.Helper()
	x, err := b.Alloc(dt, shape...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Free(x) })
	if err := b.Upload(x, vals); err != nil {
		t.Fatal(err)
	}
	return x
}

func download(t *testing.T, b engine.Backend, x engine.Tensor) []float32 {
	t.Helper()
	out := make([]float32, x.Len())
	if err := b.Download(x, out); err != nil {
		t.Fatal(err)
	}
	return out
}

func randomVals(rng *rand.Rand, n int, std float64) []float32 {
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(rng.NormFloat64() * std)
	}
	return v
}

// closeTo fails when got and want differ by more than tol times the
// largest |want| (and names the worst element).
func closeTo(t *testing.T, what string, got, want []float32, tol float64) {
	t.Helper()
	var scale, worst float64
	wi := 0
	for i := range want {
		scale = max(scale, math.Abs(float64(want[i])))
		if d := math.Abs(float64(got[i] - want[i])); d > worst || math.IsNaN(d) {
			worst, wi = d, i
		}
	}
	if worst > tol*max(scale, 1e-6) || math.IsNaN(worst) {
		t.Errorf("%s: element %d is %g, want %g (worst difference %.3g, %.3g of the largest %.3g)", what, wi, got[wi], want[wi], worst, worst/scale, scale)
	}
}

// TestAttentionDecodeMatchesCPU: the fused decode kernel (rotary turn of
// q and the new k, their store into the caches, split-over-keys attention)
// gives the CPU's result for one query at positions on both sides of a
// split, with GQA, a window, a soft-cap, partial rotary dims and an odd
// head dim, in float32 and bf16; the cache rows it writes are the CPU's.
func TestAttentionDecodeMatchesCPU(t *testing.T) {
	g := newGPU(t, cuda.Options{})
	c := cpu.New()
	rng := rand.New(rand.NewPCG(21, 1))
	cases := []struct {
		H, KVH, D, rot, rows, window int
		softcap                      float32
	}{
		{4, 2, 64, 64, 300, 0, 0},
		{4, 2, 64, 32, 300, 50, 0},
		{8, 8, 128, 128, 40, 0, 5},
		{2, 1, 80, 80, 200, 0, 0},
		{4, 1, 256, 256, 1000, 0, 0},
	}
	for _, tc := range cases {
		half := tc.rot / 2
		cosv, sinv := make([]float32, tc.rows*half), make([]float32, tc.rows*half)
		for pp := 0; pp < tc.rows; pp++ {
			for i := 0; i < half; i++ {
				a := float64(pp) * math.Pow(10000, -float64(2*i)/float64(tc.rot))
				cosv[pp*half+i], sinv[pp*half+i] = float32(math.Cos(a)), float32(math.Sin(a))
			}
		}
		for _, dt := range []engine.DType{engine.F32, engine.BF16} {
			for _, pos := range []int{0, 1, 127, 128, tc.rows - 1} {
				if pos >= tc.rows {
					continue
				}
				name := fmt.Sprintf("%s H%d/%d D%d rot%d rows%d win%d cap%g pos%d", dt, tc.H, tc.KVH, tc.D, tc.rot, tc.rows, tc.window, tc.softcap, pos)
				p := engine.AttnParams{NHeads: tc.H, NKVHeads: tc.KVH, HeadDim: tc.D, Scale: float32(1 / math.Sqrt(float64(tc.D))), Window: tc.window, SoftCap: tc.softcap}
				kd := tc.KVH * tc.D
				qv, kv, vv := randomVals(rng, tc.H*tc.D, 1), randomVals(rng, tc.rows*kd, 1), randomVals(rng, tc.rows*kd, 1)
				kn, vn := randomVals(rng, kd, 1), randomVals(rng, kd, 1)
				var outs, kRows, vRows [2][]float32
				for i, b := range []engine.Backend{c, g} {
					q := upload(t, b, dt, qv, 1, tc.H*tc.D)
					kc := upload(t, b, dt, kv, tc.rows, kd)
					vc := upload(t, b, dt, vv, tc.rows, kd)
					k := upload(t, b, dt, kn, 1, kd)
					v := upload(t, b, dt, vn, 1, kd)
					cs := upload(t, b, engine.F32, cosv, tc.rows, half)
					sn := upload(t, b, engine.F32, sinv, tc.rows, half)
					out := upload(t, b, dt, make([]float32, tc.H*tc.D), 1, tc.H*tc.D)
					pt, _ := b.Alloc(engine.I32, 1)
					t.Cleanup(func() { b.Free(pt) })
					if err := b.UploadInt32(pt, []int32{int32(pos)}); err != nil {
						t.Fatal(err)
					}
					if err := b.(engine.DeviceDecoder).AttentionDecode(out, q, k, v, kc, vc, pt, cs, sn, p); err != nil {
						t.Fatalf("%s %s: %v", name, b.Name(), err)
					}
					outs[i] = download(t, b, out)
					kRows[i] = download(t, b, kc)[pos*kd : (pos+1)*kd]
					vRows[i] = download(t, b, vc)[pos*kd : (pos+1)*kd]
					if got := download(t, b, q); !slices.Equal(got, download(t, c, upload(t, c, dt, qv, 1, tc.H*tc.D))) {
						t.Errorf("%s %s: q was changed", name, b.Name())
					}
				}
				tol := 1e-5
				if dt == engine.BF16 {
					tol = 2e-2
				}
				closeTo(t, name, outs[1], outs[0], tol)
				closeTo(t, name+" k row", kRows[1], kRows[0], tol)
				if !slices.Equal(vRows[0], vRows[1]) {
					t.Errorf("%s: v row %v, the CPU's %v", name, vRows[1][:4], vRows[0][:4])
				}
			}
		}
	}
}

// TestArgmaxAndAdvance: the device argmax picks the largest logit and the
// lowest index among equal ones, over a Llama-3-sized row and a tiny one;
// AdvancePosition stops below its limit.
func TestArgmaxAndAdvance(t *testing.T) {
	b := newGPU(t, cuda.Options{})
	rng := rand.New(rand.NewPCG(21, 2))
	for _, V := range []int{37, 128256} {
		for _, dt := range []engine.DType{engine.F32, engine.BF16} {
			vals := randomVals(rng, V, 3)
			top := V * 2 / 3
			vals[top], vals[V-1] = 100, 100 // a tie: the lower index wins
			vals[V/5] = float32(math.Inf(-1))
			lg := upload(t, b, dt, vals, 1, V)
			ids, _ := b.Alloc(engine.I32, 1)
			if err := b.Argmax(ids, lg); err != nil {
				t.Fatal(err)
			}
			if got := download(t, b, ids)[0]; int(got) != top {
				t.Errorf("V=%d %s: argmax %g, want %d", V, dt, got, top)
			}
			b.Free(ids)
		}
	}
	pos, _ := b.Alloc(engine.I32, 1)
	defer b.Free(pos)
	if err := b.UploadInt32(pos, []int32{5}); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		if err := b.AdvancePosition(pos, 7); err != nil {
			t.Fatal(err)
		}
	}
	if got := download(t, b, pos)[0]; got != 6 {
		t.Errorf("5 advanced 3 times below 7: %g, want 6", got)
	}
}

// TestMatVecKernels: the NF4 mat-vec equals expanding the weight and
// multiplying, and the bf16 GEMV (GEMVEnv=1) equals cuBLASLt's product,
// with and without accumulation, for the head's f32 output too.
func TestMatVecKernels(t *testing.T) {
	t.Setenv(cuda.GEMVEnv, "1")
	b := newGPU(t, cuda.Options{})
	t.Setenv(cuda.GEMVEnv, "0")
	ref := newGPU(t, cuda.Options{})
	rng := rand.New(rand.NewPCG(21, 3))
	for _, sz := range [][2]int{{24, 128}, {520, 2048}, {8, 72}} {
		n, k := sz[0], sz[1]
		xv, wv, yv := randomVals(rng, k, 1), randomVals(rng, n*k, 0.05), randomVals(rng, n, 1)
		packed, absmax, err := engine.QuantizeNF4(wv)
		if err != nil {
			t.Fatal(err)
		}
		words := engine.PackNF4Words(packed)
		for _, dt := range []engine.DType{engine.F32, engine.BF16} {
			for _, acc := range []bool{false, true} {
				name := fmt.Sprintf("[%d %d] %s accumulate=%v", n, k, dt, acc)
				// NF4: the kernel against DequantizeNF4 + MatMul on cuBLASLt.
				x := upload(t, b, dt, xv, 1, k)
				y := upload(t, b, dt, yv, 1, n)
				pk, _ := b.Alloc(engine.I32, n*k/8)
				am, _ := b.Alloc(engine.F32, n*k/64)
				if err := b.UploadInt32(pk, words); err != nil {
					t.Fatal(err)
				}
				if err := b.Upload(am, absmax); err != nil {
					t.Fatal(err)
				}
				if err := b.MatVecNF4(y, x, pk, am, acc); err != nil {
					t.Fatalf("%s: %v", name, err)
				}
				got := download(t, b, y)
				b.Free(pk)
				b.Free(am)
				rx := upload(t, ref, dt, xv, 1, k)
				ry := upload(t, ref, dt, yv, 1, n)
				w := upload(t, ref, dt, make([]float32, n*k), n, k)
				rpk, _ := ref.Alloc(engine.I32, n*k/8)
				ram, _ := ref.Alloc(engine.F32, n*k/64)
				ref.UploadInt32(rpk, words)
				ref.Upload(ram, absmax)
				if err := ref.DequantizeNF4(w, rpk, ram); err != nil {
					t.Fatal(err)
				}
				beta := float32(0)
				if acc {
					beta = 1
				}
				if err := ref.MatMul(ry, rx, w, false, true, 1, beta); err != nil {
					t.Fatal(err)
				}
				want := download(t, ref, ry)
				tol := 1e-5
				if dt == engine.BF16 {
					tol = 1e-2
				}
				closeTo(t, "nf4 "+name, got, want, tol)
				// bf16 GEMV against cuBLASLt, into bf16 and f32 outputs.
				if dt != engine.BF16 {
					continue
				}
				for _, ydt := range []engine.DType{engine.BF16, engine.F32} {
					gy := upload(t, b, ydt, yv, 1, n)
					gw := upload(t, b, engine.BF16, wv, n, k)
					if err := b.MatMul(gy, x, gw, false, true, 0.5, beta); err != nil {
						t.Fatal(err)
					}
					ry := upload(t, ref, ydt, yv, 1, n)
					rw := upload(t, ref, engine.BF16, wv, n, k)
					if err := ref.MatMul(ry, rx, rw, false, true, 0.5, beta); err != nil {
						t.Fatal(err)
					}
					closeTo(t, fmt.Sprintf("gemv %s into %s", name, ydt), download(t, b, gy), download(t, ref, ry), 1e-2)
				}
			}
		}
	}
}

// TestMatVecsMatchesMatMul: the shared-input GEMV of q, k, v (or gate,
// up) in one launch equals cuBLASLt's products one by one, overwriting and
// accumulating; it declines float32 operands.
func TestMatVecsMatchesMatMul(t *testing.T) {
	t.Setenv(cuda.GEMVEnv, "1")
	b := newGPU(t, cuda.Options{})
	t.Setenv(cuda.GEMVEnv, "0")
	ref := newGPU(t, cuda.Options{})
	rng := rand.New(rand.NewPCG(21, 5))
	const k = 2048
	ns := []int{2048, 512, 512}
	xv := randomVals(rng, k, 1)
	for _, acc := range []bool{false, true} {
		var ys, rys, ws, rws []engine.Tensor
		var yvs [][]float32
		for _, n := range ns {
			wv, yv := randomVals(rng, n*k, 0.05), randomVals(rng, n, 1)
			yvs = append(yvs, yv)
			ws, rws = append(ws, upload(t, b, engine.BF16, wv, n, k)), append(rws, upload(t, ref, engine.BF16, wv, n, k))
			ys, rys = append(ys, upload(t, b, engine.BF16, yv, 1, n)), append(rys, upload(t, ref, engine.BF16, yv, 1, n))
		}
		x, rx := upload(t, b, engine.BF16, xv, 1, k), upload(t, ref, engine.BF16, xv, 1, k)
		ok, err := b.MatVecs(ys, x, ws, acc)
		if err != nil || !ok {
			t.Fatalf("MatVecs: %v, %v", ok, err)
		}
		beta := float32(0)
		if acc {
			beta = 1
		}
		for i := range ns {
			if err := ref.MatMul(rys[i], rx, rws[i], false, true, 1, beta); err != nil {
				t.Fatal(err)
			}
			closeTo(t, fmt.Sprintf("weight %d accumulate=%v", i, acc), download(t, b, ys[i]), download(t, ref, rys[i]), 1e-2)
		}
	}
	x32 := upload(t, b, engine.F32, xv, 1, k)
	w32 := upload(t, b, engine.F32, make([]float32, 8*k), 8, k)
	y32 := upload(t, b, engine.F32, make([]float32, 8), 1, 8)
	if ok, err := b.MatVecs([]engine.Tensor{y32}, x32, []engine.Tensor{w32}, false); ok || err != nil {
		t.Errorf("float32 operands: ok %v, %v; want declined", ok, err)
	}
}

// TestRecordRefusesHostWork: an op that needs the host while recording
// fails the recording with the reason, and the backend works afterwards.
func TestRecordRefusesHostWork(t *testing.T) {
	b := newGPU(t, cuda.Options{})
	x := upload(t, b, engine.F32, []float32{1, 2, 3}, 3)
	_, err := b.Record(func() error {
		if err := b.Scale(x, 2); err != nil {
			return err
		}
		_, err := b.SumSquares(x)
		return err
	})
	if err == nil || !strings.Contains(err.Error(), "recording") {
		t.Fatalf("recording a read-back: %v, want a refusal", err)
	}
	if got := download(t, b, x); !slices.Equal(got, []float32{1, 2, 3}) {
		t.Errorf("after the failed recording x is %v; nothing recorded may run", got)
	}
	rec, err := b.Record(func() error { return b.Scale(x, 2) })
	if err != nil {
		t.Fatal(err)
	}
	defer rec.Free()
	for i := 0; i < 3; i++ {
		if err := rec.Replay(); err != nil {
			t.Fatal(err)
		}
	}
	if got := download(t, b, x); !slices.Equal(got, []float32{8, 16, 24}) {
		t.Errorf("three replays of x *= 2: %v", got)
	}
}

// TestGenerateGraphEqualsPlain: decoding from a recorded step (a CUDA
// graph) gives the tokens of the same steps run directly, exactly, and in
// float32 the plain path's tokens too, for the tiny reference models, the
// 2025 families and an NF4 (QLoRA) model; the graph is used, not fallen
// back from.
func TestGenerateGraphEqualsPlain(t *testing.T) {
	t.Setenv(cuda.GEMVEnv, "1") // the opt-in kernels too
	f32 := newGPU(t, cuda.Options{ComputeF32: true})
	bf16 := newGPU(t, cuda.Options{})
	prompt := []int32{5, 77, 310, 12, 499, 3, 250, 18}
	for _, name := range []string{"tiny-llama", "tiny-qwen2", "tiny-qwen3", "tiny-gemma2", "tiny-phi3"} {
		for _, nf4 := range []bool{false, true} {
			for _, b := range []*cuda.Backend{f32, bf16} {
				what := fmt.Sprintf("%s nf4=%v %s", name, nf4, b.ComputeDType())
				m, err := engine.LoadModelWith(filepath.Join("..", "..", "testdata", name), b, engine.ModelOptions{NF4Linears: nf4})
				if err != nil {
					t.Fatalf("%s: %v", what, err)
				}
				toks := map[engine.DecodeMode][]int32{}
				for _, mode := range []engine.DecodeMode{engine.DecodePlain, engine.DecodeDevice, engine.DecodeGraph} {
					g, err := m.NewGenerator(len(prompt) + 48)
					if err != nil {
						t.Fatal(err)
					}
					g.Mode = mode
					for rep := 0; rep < 2; rep++ { // the second call replays the same recording
						out, err := g.Generate(context.Background(), prompt, engine.Greedy(40, nil), nil)
						if err != nil {
							t.Fatalf("%s %s: %v", what, mode, err)
						}
						if rep == 1 && !slices.Equal(out, toks[mode]) {
							t.Errorf("%s %s: a second generation gave %v after %v", what, mode, out, toks[mode])
						}
						toks[mode] = out
					}
					if g.Used != mode || g.Fallback != "" {
						t.Errorf("%s: asked for %s, used %s (%s)", what, mode, g.Used, g.Fallback)
					}
					g.Free()
				}
				m.Free()
				if !slices.Equal(toks[engine.DecodeGraph], toks[engine.DecodeDevice]) {
					t.Errorf("%s: graph %v, direct %v", what, toks[engine.DecodeGraph], toks[engine.DecodeDevice])
				}
				n := commonPrefix(toks[engine.DecodeGraph], toks[engine.DecodePlain])
				t.Logf("%s: graph and plain agree on %d of 40 tokens", what, n)
				if b == f32 && n != 40 {
					t.Errorf("%s float32: graph %v, plain %v", what, toks[engine.DecodeGraph], toks[engine.DecodePlain])
				}
			}
		}
	}
}

// TestAttentionDecodeV2MatchesCPU: with WHET_DECODE_ATTN=v2 the decode
// attention (attention_decode_v2_d*) gives the CPU's result and
// attention_decode's, and writes the same cache rows bit for bit (v3,
// attention_decode_v3_d*, gives v2's output and caches bit for bit), at
// cache lengths (pos+1) around its lane groups (1, 15, 16, 17), the
// profile's 143 and a long 4097, with GQA, head dims 64, 128 and 256, a
// window, a soft-cap and partial rotary dims, in float32 and bf16. Each
// case runs at two positions on the same tensors, as a recorded step
// does, so the split of the keys follows pos read on the device.
func TestAttentionDecodeV2MatchesCPU(t *testing.T) {
	t.Setenv(cuda.DecodeAttnEnv, "v1") // the reference, whatever the caller's environment says
	ref := newGPU(t, cuda.Options{})
	t.Setenv(cuda.DecodeAttnEnv, "v2")
	g := newGPU(t, cuda.Options{})
	t.Setenv(cuda.DecodeAttnEnv, "v3")
	g3 := newGPU(t, cuda.Options{})
	if !cuda.DecodeAttnV2(g) || cuda.DecodeAttnV2(ref) || cuda.DecodeAttnV3(g) || !cuda.DecodeAttnV3(g3) {
		t.Fatalf("%s=v2 and v3 did not select the v2 and v3 kernels for the second and third backends only", cuda.DecodeAttnEnv)
	}
	c := cpu.New()
	rng := rand.New(rand.NewPCG(21, 7))
	cases := []struct {
		H, KVH, D, rot, rows, window int
		softcap                      float32
		lens                         []int // cache lengths pos+1
	}{
		{32, 8, 64, 64, 384, 0, 0, []int{1, 15, 16, 17, 143}},
		{8, 2, 128, 128, 300, 0, 0, []int{1, 15, 16, 17, 143}},
		{4, 1, 256, 256, 200, 0, 0, []int{1, 17, 143}},
		{4, 2, 64, 32, 300, 50, 0, []int{17, 143}},
		{8, 8, 128, 128, 64, 0, 5, []int{16, 33}},
		{8, 2, 64, 64, 4200, 0, 0, []int{4097}},
		{4, 4, 128, 128, 4100, 0, 0, []int{4097}},
	}
	for _, tc := range cases {
		half := tc.rot / 2
		cosv, sinv := make([]float32, tc.rows*half), make([]float32, tc.rows*half)
		for pp := 0; pp < tc.rows; pp++ {
			for i := 0; i < half; i++ {
				a := float64(pp) * math.Pow(10000, -float64(2*i)/float64(tc.rot))
				cosv[pp*half+i], sinv[pp*half+i] = float32(math.Cos(a)), float32(math.Sin(a))
			}
		}
		kd := tc.KVH * tc.D
		for _, dt := range []engine.DType{engine.F32, engine.BF16} {
			p := engine.AttnParams{NHeads: tc.H, NKVHeads: tc.KVH, HeadDim: tc.D, Scale: float32(1 / math.Sqrt(float64(tc.D))), Window: tc.window, SoftCap: tc.softcap}
			qv, kv, vv := randomVals(rng, tc.H*tc.D, 1), randomVals(rng, tc.rows*kd, 1), randomVals(rng, tc.rows*kd, 1)
			kn, vn := randomVals(rng, kd, 1), randomVals(rng, kd, 1)
			type dev struct {
				q, k, v, kc, vc, cs, sn, out, pt engine.Tensor
			}
			var devs [4]dev
			for i, b := range []engine.Backend{c, ref, g, g3} {
				d := dev{
					q: upload(t, b, dt, qv, 1, tc.H*tc.D), k: upload(t, b, dt, kn, 1, kd), v: upload(t, b, dt, vn, 1, kd),
					kc: upload(t, b, dt, kv, tc.rows, kd), vc: upload(t, b, dt, vv, tc.rows, kd),
					cs: upload(t, b, engine.F32, cosv, tc.rows, half), sn: upload(t, b, engine.F32, sinv, tc.rows, half),
					out: upload(t, b, dt, make([]float32, tc.H*tc.D), 1, tc.H*tc.D),
				}
				pt, err := b.Alloc(engine.I32, 1)
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { b.Free(pt) })
				d.pt = pt
				devs[i] = d
			}
			for _, n := range tc.lens {
				pos := n - 1
				name := fmt.Sprintf("%s H%d/%d D%d rot%d rows%d win%d cap%g len%d", dt, tc.H, tc.KVH, tc.D, tc.rot, tc.rows, tc.window, tc.softcap, n)
				var outs, kc, vc [4][]float32
				for i, b := range []engine.Backend{c, ref, g, g3} {
					d := devs[i]
					if err := b.UploadInt32(d.pt, []int32{int32(pos)}); err != nil {
						t.Fatal(err)
					}
					if err := b.(engine.DeviceDecoder).AttentionDecode(d.out, d.q, d.k, d.v, d.kc, d.vc, d.pt, d.cs, d.sn, p); err != nil {
						t.Fatalf("%s %s: %v", name, b.Name(), err)
					}
					outs[i], kc[i], vc[i] = download(t, b, d.out), download(t, b, d.kc), download(t, b, d.vc)
				}
				tol := 1e-5
				if dt == engine.BF16 {
					tol = 2e-2
				}
				closeTo(t, name+" v2 against the CPU", outs[2], outs[0], tol)
				closeTo(t, name+" v2 against attention_decode", outs[2], outs[1], tol)
				if !slices.Equal(kc[2], kc[1]) || !slices.Equal(vc[2], vc[1]) {
					t.Errorf("%s: the caches v2 leaves differ from attention_decode's", name)
				}
				closeTo(t, name+" k row", kc[2][pos*kd:(pos+1)*kd], kc[0][pos*kd:(pos+1)*kd], tol)
				// v3 is v2 with its loads moved earlier: the same bits.
				if !slices.Equal(outs[3], outs[2]) || !slices.Equal(kc[3], kc[2]) || !slices.Equal(vc[3], vc[2]) {
					t.Errorf("%s: v3's output or caches differ from v2's", name)
				}
			}
		}
	}
}
