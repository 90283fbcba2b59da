package cuda

import (
	"errors"
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"whet/engine"
)

// TestVisionAttentionTC runs the vision models' attention at their
// released sizes twice on the GPU, with the plain kernels
// (group_attention.cu, bias_attention.cu; checked against the CPU by
// TestConformance) and with the tensor-core kernels (VisionAttnTCEnv for
// the forwards, VisionAttnTCBwdEnv for the backward passes at head dims
// 256 and 128, both from the plain forward's out and lse), and compares:
// bf16 results within 3 % of the plain result's largest value, lse within
// 0.05. It logs both kernels' device times (the backend profiles) and
// fails when the tensor-core kernels did not run.
func TestVisionAttentionTC(t *testing.T) {
	newTestBackend(t) // skips without a GPU
	b, err := New(Options{CacheDir: testCacheDir, Profile: true})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	rng := rand.New(rand.NewPCG(24, 72))
	upload := func(vals []float32, shape ...int) engine.Tensor {
		x, err := b.Alloc(engine.BF16, shape...)
		if err != nil {
			t.Fatal(err)
		}
		if err := b.Upload(x, vals); err != nil {
			t.Fatal(err)
		}
		return x
	}
	randn := func(n int) []float32 {
		v := make([]float32, n)
		for i := range v {
			v[i] = float32(rng.NormFloat64())
		}
		return v
	}
	// outSpec is one output of the op under test: its name, length and
	// dtype (f32: an lse, compared absolutely; bf16: relatively).
	type outSpec struct {
		name string
		n    int
		dt   engine.DType
	}
	// compare runs f (on freshly allocated outputs) with the switches in
	// envs off, then on, and compares the outputs.
	compare := func(t *testing.T, envs []string, specs []outSpec, f func(outs []engine.Tensor) error) {
		var res [2][][]float32
		var reports [2]string
		for i, on := range []string{"", "1"} {
			for _, e := range envs {
				t.Setenv(e, on)
			}
			outs := make([]engine.Tensor, len(specs))
			for j, sp := range specs {
				x, err := b.Alloc(sp.dt, sp.n)
				if err != nil {
					t.Fatal(err)
				}
				defer b.Free(x)
				outs[j] = x
			}
			if _, err := b.ProfileReport(); err != nil {
				t.Fatal(err)
			}
			for range 2 { // the first compiles
				if err := f(outs); err != nil {
					t.Fatalf("%v=%q: %v", envs, on, err)
				}
			}
			rep, err := b.ProfileReport()
			if err != nil {
				t.Fatal(err)
			}
			reports[i] = rep
			for j, sp := range specs {
				host := make([]float32, sp.n)
				if err := b.Download(outs[j], host); err != nil {
					t.Fatal(err)
				}
				res[i] = append(res[i], host)
			}
			t.Logf("%v=%q (2 calls):\n%s", envs, on, rep)
		}
		if strings.Contains(reports[0], "_tc_d") || !strings.Contains(reports[1], "_tc_d") {
			t.Errorf("the tensor-core kernels ran without the switch or did not run with it")
		}
		for j, sp := range specs {
			scale, worst := 0.0, 0.0
			for i, w := range res[0][j] {
				g := res[1][j][i]
				d := math.Abs(float64(g - w))
				if sp.dt == engine.F32 && math.IsInf(float64(w), -1) && math.IsInf(float64(g), -1) {
					d = 0
				}
				if math.IsNaN(d) || math.IsNaN(float64(g)) {
					d = math.Inf(1)
				}
				worst = max(worst, d)
				if !math.IsInf(float64(w), 0) {
					scale = max(scale, math.Abs(float64(w)))
				}
			}
			bound := 0.03 * scale
			if sp.dt == engine.F32 {
				bound = 0.05
			}
			t.Logf("%s: worst difference %.3g (bound %.3g, scale %.3g)", sp.name, worst, bound, scale)
			if !(worst <= bound) {
				t.Errorf("%s: the tensor-core result differs by %.3g, above %.3g", sp.name, worst, bound)
			}
		}
	}
	fwd := []string{VisionAttnTCEnv}
	bwd := []string{VisionAttnTCBwdEnv}
	// forward returns the plain kernels' out and lse (both switches off).
	forward := func(t *testing.T, outLen, lseLen int, f func(out, lse engine.Tensor) error) (engine.Tensor, engine.Tensor) {
		t.Setenv(VisionAttnTCEnv, "")
		out, err := b.Alloc(engine.BF16, outLen)
		if err != nil {
			t.Fatal(err)
		}
		lse, err := b.Alloc(engine.F32, lseLen)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { b.Free(out); b.Free(lse) })
		if err := f(out, lse); err != nil {
			t.Fatal(err)
		}
		return out, lse
	}
	// attend compares one attention op, queries [T, H·D] over keys and
	// values [S, KVH·D] (drawn here, in that order): its forward, then, at
	// head dim bwdD, its backward from the plain forward's out and lse.
	attend := func(t *testing.T, T, S, H, KVH, D, bwdD int,
		fwdOp func(out, lse, q, k, v engine.Tensor) error,
		bwdOp func(dq, dk, dv, dOut, q, k, v, out, lse engine.Tensor) error) {
		q, k, v := upload(randn(T*H*D), T, H*D), upload(randn(S*KVH*D), S, KVH*D), upload(randn(S*KVH*D), S, KVH*D)
		defer b.Free(q)
		defer b.Free(k)
		defer b.Free(v)
		run := func(out, lse engine.Tensor) error {
			o, err := b.View(out, 0, T, H*D)
			if err != nil {
				return err
			}
			l, err := b.View(lse, 0, H, T)
			if err != nil {
				return err
			}
			return fwdOp(o, l, q, k, v)
		}
		compare(t, fwd, []outSpec{{"out", T * H * D, engine.BF16}, {"lse", H * T, engine.F32}},
			func(o []engine.Tensor) error { return run(o[0], o[1]) })
		if D != bwdD {
			return
		}
		out, lse := forward(t, T*H*D, H*T, run)
		dOut := upload(randn(T*H*D), T, H*D)
		defer b.Free(dOut)
		compare(t, bwd, []outSpec{{"dq", T * H * D, engine.BF16}, {"dk", S * KVH * D, engine.BF16}, {"dv", S * KVH * D, engine.BF16}},
			func(o []engine.Tensor) error {
				dq, e1 := b.View(o[0], 0, T, H*D)
				dk, e2 := b.View(o[1], 0, S, KVH*D)
				dv, e3 := b.View(o[2], 0, S, KVH*D)
				ov, e4 := b.View(out, 0, T, H*D)
				lv, e5 := b.View(lse, 0, H, T)
				if err := errors.Join(e1, e2, e3, e4, e5); err != nil {
					return err
				}
				return bwdOp(dq, dk, dv, dOut, q, k, v, ov, lv)
			})
	}
	groups := func(name string, starts []int32, runs [][2]int, H, KVH, D, window int) {
		t.Run(name, func(t *testing.T) {
			T := int(starts[len(starts)-1])
			g := make([]int32, T)
			for i := range g {
				g[i] = -1
			}
			for k, r := range runs {
				for i := r[0]; i < r[1]; i++ {
					g[i] = int32(k)
				}
			}
			gt, err := b.Alloc(engine.I32, T)
			if err != nil {
				t.Fatal(err)
			}
			defer b.Free(gt)
			st, err := b.Alloc(engine.I32, len(starts))
			if err != nil {
				t.Fatal(err)
			}
			defer b.Free(st)
			if err := b.UploadInt32(gt, g); err != nil {
				t.Fatal(err)
			}
			if err := b.UploadInt32(st, starts); err != nil {
				t.Fatal(err)
			}
			maxLen := 0
			for i := 0; i+1 < len(starts); i++ {
				maxLen = max(maxLen, int(starts[i+1]-starts[i]))
			}
			seqs := engine.SeqLayout{Starts: starts, Dev: st, MaxLen: maxLen}
			p := engine.AttnParams{NHeads: H, NKVHeads: KVH, HeadDim: D, Scale: float32(1 / math.Sqrt(float64(D))), Window: window}
			attend(t, T, T, H, KVH, D, 256, // the backward's tensor-core kernels are at head dim 256
				func(out, lse, q, k, v engine.Tensor) error {
					return b.AttentionGroups(out, lse, q, k, v, gt, seqs, p)
				},
				func(dq, dk, dv, dOut, q, k, v, out, lse engine.Tensor) error {
					return b.AttentionGroupsBackward(dq, dk, dv, dOut, q, k, v, out, lse, gt, seqs, p)
				})
		})
	}
	// SigLIP at 896x896: 4096 patches, 16 heads of 72; two images.
	groups("siglip_4096_d72", []int32{0, 4096}, [][2]int{{0, 4096}}, 16, 16, 72, 0)
	groups("siglip_2images_d72", []int32{0, 4096, 8192}, [][2]int{{0, 4096}, {4096, 8192}}, 16, 16, 72, 0)
	// Gemma 3 4B's language model: 1024 tokens, one image's 256 tokens, 8/4 heads of 256.
	groups("gemma3_lm_1024_d256", []int32{0, 1024}, [][2]int{{2, 258}}, 8, 4, 256, 0)
	groups("gemma3_lm_window300_d256", []int32{0, 600, 1024}, [][2]int{{2, 258}, {700, 956}}, 8, 4, 256, 300)

	bias := func(name string, T, S, H, KVH, D int, mask func(r, c int) float32) {
		t.Run(name, func(t *testing.T) {
			var bt engine.Tensor
			if mask != nil {
				host := make([]float32, T*S)
				for r := 0; r < T; r++ {
					for c := 0; c < S; c++ {
						host[r*S+c] = mask(r, c)
					}
				}
				var err error
				if bt, err = b.Alloc(engine.F32, T, S); err != nil {
					t.Fatal(err)
				}
				defer b.Free(bt)
				if err := b.Upload(bt, host); err != nil {
					t.Fatal(err)
				}
			}
			p := engine.AttnParams{NHeads: H, NKVHeads: KVH, HeadDim: D, Scale: float32(1 / math.Sqrt(float64(D)))}
			attend(t, T, S, H, KVH, D, 128, // the backward's tensor-core kernels are at head dim 128
				func(out, lse, q, k, v engine.Tensor) error {
					return b.BiasAttention(out, lse, q, k, v, bt, p)
				},
				func(dq, dk, dv, dOut, q, k, v, out, lse engine.Tensor) error {
					return b.BiasAttentionBackward(dq, dk, dv, dOut, q, k, v, out, lse, bt, p)
				})
		})
	}
	// Mllama's tower: 4 tiles of 1601 patches padded to 1608, 16 heads of 80,
	// padding rows masked from each other.
	pad := func(i int) bool { return i%1608 >= 1601 }
	ninf := float32(math.Inf(-1))
	bias("mllama_tower_4tiles_d80", 4*1608, 4*1608, 16, 16, 80, func(r, c int) float32 {
		if pad(r) && pad(c) {
			return ninf
		}
		return 0
	})
	// Its cross-attention: 1024 text tokens over 6404 image tokens, 32/8 heads
	// of 128; the first 3 rows see no image.
	bias("mllama_cross_1024x6404_d128", 1024, 6404, 32, 8, 128, func(r, c int) float32 {
		if r < 3 {
			return ninf
		}
		return 0
	})
}
