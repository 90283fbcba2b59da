package cuda

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"whet/engine"
)

// Benchmarks give a first idea of where the kernels stand; they are not
// the product's performance record (that is `whet bench` against the
// PyTorch reference). Each reports TFLOP/s or GB/s from a count of the
// work, with the device synchronised before the clock stops.

func benchBackend(b *testing.B) *Backend {
	be, err := New(Options{CacheDir: testCacheDir})
	if err != nil {
		b.Skipf("skipping: %v", err)
	}
	b.Cleanup(func() { be.Close() })
	return be
}

func benchTensor(b *testing.B, be *Backend, dt engine.DType, scale float32, shape ...int) engine.Tensor {
	t, err := be.Alloc(dt, shape...)
	if err != nil {
		b.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(uint64(len(shape)), uint64(shape[0])))
	v := make([]float32, t.Len())
	for i := range v {
		v[i] = scale * float32(rng.NormFloat64())
	}
	if err := be.Upload(t, v); err != nil {
		b.Fatal(err)
	}
	return t
}

func BenchmarkMatMulBF16(b *testing.B) {
	be := benchBackend(b)
	const n = 8192
	x, y := benchTensor(b, be, engine.BF16, 1, n, n), benchTensor(b, be, engine.BF16, 1, n, n)
	z, _ := be.Alloc(engine.BF16, n, n)
	run := func() {
		if err := be.MatMul(z, x, y, false, true, 1, 0); err != nil {
			b.Fatal(err)
		}
	}
	run()
	be.Sync()
	b.ResetTimer()
	for range b.N {
		run()
	}
	if err := be.Sync(); err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(2*n*n*n*float64(b.N)/b.Elapsed().Seconds()/1e12, "TFLOP/s")
}

// attention at Llama-3.2-1B's geometry (4 sequences of 2048 tokens, 32
// query heads, 8 key/value heads, head dim 64) or Llama-3.1-8B's (2
// sequences, head dim 128), the same heads at head dim 256, and
// Gemma-3-1B's (4 sequences, 4 query heads, 1 key/value head, head dim 256).
func benchAttention(b *testing.B, backward bool, seqs, D int) {
	benchAttentionHeads(b, backward, seqs, D, 32, 8)
}

func benchAttentionHeads(b *testing.B, backward bool, seqs, D, H, KVH int) {
	be := benchBackend(b)
	const S = 2048
	T := seqs * S
	starts := make([]int32, seqs+1)
	for i := range starts {
		starts[i] = int32(i * S)
	}
	dev, _ := be.Alloc(engine.I32, len(starts))
	be.UploadInt32(dev, starts)
	layout := engine.SeqLayout{Starts: starts, MaxLen: S, Dev: dev}
	p := engine.AttnParams{NHeads: H, NKVHeads: KVH, HeadDim: D, Scale: float32(1 / math.Sqrt(float64(D)))}
	q := benchTensor(b, be, engine.BF16, 1, T, H*D)
	k := benchTensor(b, be, engine.BF16, 1, T, KVH*D)
	v := benchTensor(b, be, engine.BF16, 1, T, KVH*D)
	out, _ := be.Alloc(engine.BF16, T, H*D)
	lse, _ := be.Alloc(engine.F32, H, T)
	if err := be.Attention(out, lse, q, k, v, layout, p); err != nil {
		b.Fatal(err)
	}
	dOut := benchTensor(b, be, engine.BF16, 1, T, H*D)
	dq, _ := be.Alloc(engine.BF16, T, H*D)
	dk, _ := be.Alloc(engine.BF16, T, KVH*D)
	dv, _ := be.Alloc(engine.BF16, T, KVH*D)
	run := func() {
		var err error
		if backward {
			err = be.AttentionBackward(dq, dk, dv, dOut, q, k, v, out, lse, layout, p)
		} else {
			err = be.Attention(out, lse, q, k, v, layout, p)
		}
		if err != nil {
			b.Fatal(err)
		}
	}
	run()
	be.Sync()
	if be.attnHopper && be.arch == "sm_90" && attnHopperHeadDims[D] {
		if be.attnHopperOff != "" {
			b.Fatalf("the Hopper attention kernels are on (%s is not 0) but were switched off: %s", AttnHopperEnv, be.attnHopperOff)
		}
		b.Logf("on the Hopper kernels (attention_*_hopper_d%d)", D)
		if ws := hopperFwdWS(); ws.mode != 0 && !backward {
			b.Logf("forward on the warp-specialised Hopper kernel (HOP_FWD_WS=%d: %d threads, %d rows a block, %d keys a tile, %d stages)", ws.mode, ws.threads(D), ws.rows(D), ws.keys(D), ws.nstages(D))
		}
	}
	if backward && fusedBackwardExpected(be, engine.BF16, D) {
		if be.attnBwdFusedRuns == 0 {
			b.Fatalf("the fused Hopper backward was asked for (%s) but did not run", AttnBwdFusedDefine)
		}
		b.Logf("on the fused Hopper backward (attention_backward_fused_hopper_d%d)", D)
	}
	b.ResetTimer()
	for range b.N {
		run()
	}
	if err := be.Sync(); err != nil {
		b.Fatal(err)
	}
	// Causal: half of the S x S scores per sequence and head; 2 matrix
	// products forward (QK^T, PV), 5 backward (QK^T, dO V^T, dV, dQ, dK).
	products := 2.0
	if backward {
		products = 5
	}
	flops := products * 2 * float64(seqs) * float64(S) * float64(S) / 2 * float64(D) * float64(H)
	b.ReportMetric(flops*float64(b.N)/b.Elapsed().Seconds()/1e12, "TFLOP/s")
}

func BenchmarkAttentionForward(b *testing.B)      { benchAttention(b, false, 4, 64) }
func BenchmarkAttentionBackward(b *testing.B)     { benchAttention(b, true, 4, 64) }
func BenchmarkAttentionForwardD128(b *testing.B)  { benchAttention(b, false, 2, 128) }
func BenchmarkAttentionBackwardD128(b *testing.B) { benchAttention(b, true, 2, 128) }
func BenchmarkAttentionForwardD256(b *testing.B)  { benchAttention(b, false, 2, 256) }
func BenchmarkAttentionBackwardD256(b *testing.B) { benchAttention(b, true, 2, 256) }
func BenchmarkAttentionForwardGemma3(b *testing.B) {
	benchAttentionHeads(b, false, 4, 256, 4, 1)
}
func BenchmarkAttentionBackwardGemma3(b *testing.B) { benchAttentionHeads(b, true, 4, 256, 4, 1) }

func BenchmarkRMSNorm(b *testing.B) {
	be := benchBackend(b)
	const rows, dim = 8192, 2048
	x := benchTensor(b, be, engine.BF16, 1, rows, dim)
	w := benchTensor(b, be, engine.BF16, 1, dim)
	out, _ := be.Alloc(engine.BF16, rows, dim)
	rstd, _ := be.Alloc(engine.F32, rows)
	be.RMSNorm(out, rstd, x, w, 1e-5)
	be.Sync()
	b.ResetTimer()
	for range b.N {
		if err := be.RMSNorm(out, rstd, x, w, 1e-5); err != nil {
			b.Fatal(err)
		}
	}
	be.Sync()
	b.ReportMetric(2*2*rows*dim*float64(b.N)/b.Elapsed().Seconds()/1e9, "GB/s")
}

func BenchmarkSoftmaxCrossEntropy(b *testing.B) {
	be := benchBackend(b)
	const rows, vocab = 1024, 128256
	logits := benchTensor(b, be, engine.BF16, 2, rows, vocab)
	labels, _ := be.Alloc(engine.I32, rows)
	lab := make([]int32, rows)
	for i := range lab {
		lab[i] = int32(i * 97 % vocab)
	}
	be.UploadInt32(labels, lab)
	losses, _ := be.Alloc(engine.F32, rows)
	be.SoftmaxCrossEntropy(logits, labels, losses, 1)
	be.Sync()
	b.ResetTimer()
	for range b.N {
		// Overwrites logits with gradients each time: the values change,
		// the work does not.
		if err := be.SoftmaxCrossEntropy(logits, labels, losses, 1); err != nil {
			b.Fatal(err)
		}
	}
	be.Sync()
	b.ReportMetric(3*2*rows*vocab*float64(b.N)/b.Elapsed().Seconds()/1e9, "GB/s")
}

// BenchmarkAttentionDecode: one new token's decode attention (RoPE, the
// cache row's store, attention over pos+1 keys) for Llama-3.2-1B's heads
// (32/8 of 64) and Llama-3.1-8B's (32/8 of 128) in bf16, attention_decode
// against attention_decode_v2 (DecodeAttnEnv=v2), over caches of 384 rows
// (whet bench --seq 128 --decode 256) at 143 keys and 4200 rows at 4097.
// GB/s counts the k and v rows read.
func BenchmarkAttentionDecode(b *testing.B) {
	be := benchBackend(b)
	for _, D := range []int{64, 128} {
		for _, sz := range [][2]int{{384, 143}, {4200, 4097}} {
			rows, n := sz[0], sz[1]
			const H, KVH = 32, 8
			q := benchTensor(b, be, engine.BF16, 1, 1, H*D)
			k, v := benchTensor(b, be, engine.BF16, 1, 1, KVH*D), benchTensor(b, be, engine.BF16, 1, 1, KVH*D)
			kc, vc := benchTensor(b, be, engine.BF16, 1, rows, KVH*D), benchTensor(b, be, engine.BF16, 1, rows, KVH*D)
			cs, sn := benchTensor(b, be, engine.F32, 1, rows, D/2), benchTensor(b, be, engine.F32, 1, rows, D/2)
			out, _ := be.Alloc(engine.BF16, 1, H*D)
			pt, _ := be.Alloc(engine.I32, 1)
			if err := be.UploadInt32(pt, []int32{int32(n - 1)}); err != nil {
				b.Fatal(err)
			}
			p := engine.AttnParams{NHeads: H, NKVHeads: KVH, HeadDim: D, Scale: float32(1 / math.Sqrt(float64(D)))}
			for _, name := range []string{"v1", "v2", "v3"} {
				b.Run(fmt.Sprintf("%s/D%d/len%d", name, D, n), func(b *testing.B) {
					be.decodeAttnV2, be.decodeAttnV3 = name != "v1", name == "v3"
					defer func() { be.decodeAttnV2, be.decodeAttnV3 = false, false }()
					run := func() {
						if err := be.AttentionDecode(out, q, k, v, kc, vc, pt, cs, sn, p); err != nil {
							b.Fatal(err)
						}
					}
					run()
					be.Sync()
					b.ResetTimer()
					for range b.N {
						run()
					}
					if err := be.Sync(); err != nil {
						b.Fatal(err)
					}
					b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N), "us/op")
					b.ReportMetric(2*float64(n*KVH*D*2)*float64(b.N)/b.Elapsed().Seconds()/1e9, "GB/s")
				})
			}
			for _, t := range []engine.Tensor{q, k, v, kc, vc, cs, sn, out, pt} {
				be.Free(t)
			}
		}
	}
}
