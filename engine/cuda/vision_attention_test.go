package cuda

import (
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"whet/engine"
)

// TestVisionAttentionTC runs the vision models' attention forwards at
// their released sizes twice on the GPU, with the plain kernels
// (group_attention.cu, bias_attention.cu; checked against the CPU by
// TestConformance) and with VisionAttnTCEnv's tensor-core kernels, and
// compares: out within 3 % of the plain output's largest value, lse
// within 0.05. It logs both kernels' device times (the backend profiles)
// and fails when the tensor-core kernel did not run.
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
	type run struct {
		out, lse []float32
		report   string
	}
	// compare runs f (allocating its own outputs of outLen and lseLen)
	// without and with the tensor-core kernels.
	compare := func(t *testing.T, outLen, lseLen int, f func(out, lse engine.Tensor) error) {
		var res [2]run
		for i, env := range []string{"", "1"} {
			t.Setenv(VisionAttnTCEnv, env)
			out, err := b.Alloc(engine.BF16, outLen)
			if err != nil {
				t.Fatal(err)
			}
			defer b.Free(out)
			lse, err := b.Alloc(engine.F32, lseLen)
			if err != nil {
				t.Fatal(err)
			}
			defer b.Free(lse)
			if _, err := b.ProfileReport(); err != nil {
				t.Fatal(err)
			}
			for range 2 { // the first compiles
				if err := f(out, lse); err != nil {
					t.Fatalf("%s=%q: %v", VisionAttnTCEnv, env, err)
				}
			}
			rep, err := b.ProfileReport()
			if err != nil {
				t.Fatal(err)
			}
			res[i] = run{make([]float32, outLen), make([]float32, lseLen), rep}
			if err := b.Download(out, res[i].out); err != nil {
				t.Fatal(err)
			}
			if err := b.Download(lse, res[i].lse); err != nil {
				t.Fatal(err)
			}
			t.Logf("%s=%q (2 calls):\n%s", VisionAttnTCEnv, env, rep)
		}
		if strings.Contains(res[0].report, "forward_tc_d") || !strings.Contains(res[1].report, "forward_tc_d") {
			t.Errorf("the tensor-core kernel ran without the switch or did not run with it")
		}
		scale, worst, worstLSE := 0.0, 0.0, 0.0
		for i, w := range res[0].out {
			scale = max(scale, math.Abs(float64(w)))
			worst = max(worst, math.Abs(float64(res[1].out[i]-w)))
			if math.IsNaN(float64(res[1].out[i])) {
				worst = math.Inf(1)
			}
		}
		for i, w := range res[0].lse {
			d := math.Abs(float64(res[1].lse[i] - w))
			if math.IsInf(float64(w), -1) && math.IsInf(float64(res[1].lse[i]), -1) {
				d = 0
			}
			if math.IsNaN(d) {
				d = math.Inf(1)
			}
			worstLSE = max(worstLSE, d)
		}
		t.Logf("out: worst difference %.3g of a scale %.3g; lse: worst %.3g", worst, scale, worstLSE)
		if !(worst <= 0.03*scale) || !(worstLSE <= 0.05) {
			t.Errorf("tensor-core forward differs: out %.3g (scale %.3g), lse %.3g", worst, scale, worstLSE)
		}
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
			q, k, v := upload(randn(T*H*D), T, H*D), upload(randn(T*KVH*D), T, KVH*D), upload(randn(T*KVH*D), T, KVH*D)
			defer b.Free(q)
			defer b.Free(k)
			defer b.Free(v)
			p := engine.AttnParams{NHeads: H, NKVHeads: KVH, HeadDim: D, Scale: float32(1 / math.Sqrt(float64(D))), Window: window}
			compare(t, T*H*D, H*T, func(out, lse engine.Tensor) error {
				o, err := b.View(out, 0, T, H*D)
				if err != nil {
					return err
				}
				l, err := b.View(lse, 0, H, T)
				if err != nil {
					return err
				}
				return b.AttentionGroups(o, l, q, k, v, gt, seqs, p)
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
			q, k, v := upload(randn(T*H*D), T, H*D), upload(randn(S*KVH*D), S, KVH*D), upload(randn(S*KVH*D), S, KVH*D)
			defer b.Free(q)
			defer b.Free(k)
			defer b.Free(v)
			p := engine.AttnParams{NHeads: H, NKVHeads: KVH, HeadDim: D, Scale: float32(1 / math.Sqrt(float64(D)))}
			compare(t, T*H*D, H*T, func(out, lse engine.Tensor) error {
				o, err := b.View(out, 0, T, H*D)
				if err != nil {
					return err
				}
				l, err := b.View(lse, 0, H, T)
				if err != nil {
					return err
				}
				return b.BiasAttention(o, l, q, k, v, bt, p)
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
