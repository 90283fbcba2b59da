package cpu

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"whet/engine"
)

// BenchmarkMatMul times c = a@b^T (the layout of a linear layer's forward,
// weights stored [out, in]) for square sizes and for a Qwen2.5-0.5B MLP
// projection over 512 tokens, reporting the achieved GFLOP/s.
func BenchmarkMatMul(b *testing.B) {
	for _, s := range []struct{ m, k, n int }{
		{256, 256, 256},
		{1024, 1024, 1024},
		{512, 896, 4864},
	} {
		b.Run(fmt.Sprintf("%dx%dx%d", s.m, s.k, s.n), func(b *testing.B) {
			be := New()
			rng := rand.New(rand.NewPCG(1, 2))
			a := benchTensor(b, be, rng, s.m, s.k)
			w := benchTensor(b, be, rng, s.n, s.k)
			c := benchTensor(b, be, rng, s.m, s.n)
			b.ResetTimer()
			for b.Loop() {
				if err := be.MatMul(c, a, w, false, true, 1, 0); err != nil {
					b.Fatal(err)
				}
			}
			flops := 2 * float64(s.m) * float64(s.k) * float64(s.n)
			b.ReportMetric(flops*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
		})
	}
}

// BenchmarkAttention times the forward and the backward for Qwen2.5-0.5B's
// geometry (14 query heads, 2 kv heads, head dim 64) over 512 tokens packed
// as two sequences of 256, with and without a sliding window.
func BenchmarkAttention(b *testing.B) {
	const H, KVH, D = 14, 2, 64
	starts := []int32{0, 256, 512}
	T := int(starts[len(starts)-1])
	for _, window := range []int{0, 64} {
		seqs := engine.SeqLayout{Starts: starts, MaxLen: 256}
		p := engine.AttnParams{NHeads: H, NKVHeads: KVH, HeadDim: D, Scale: float32(1 / math.Sqrt(D)), Window: window}
		// Visible (query, key) pairs, each costing a q·k and a p·v of D
		// multiply-adds per head in the forward (twice that backward).
		pairs := 0
		for s := 0; s+1 < len(starts); s++ {
			for i := 0; i < int(starts[s+1]-starts[s]); i++ {
				if window > 0 {
					pairs += min(i+1, window)
				} else {
					pairs += i + 1
				}
			}
		}
		fwdFlops := 4 * float64(H) * float64(D) * float64(pairs)
		be := New()
		rng := rand.New(rand.NewPCG(3, 4))
		q := benchTensor(b, be, rng, T, H*D)
		k := benchTensor(b, be, rng, T, KVH*D)
		v := benchTensor(b, be, rng, T, KVH*D)
		out := benchTensor(b, be, rng, T, H*D)
		lse := benchTensor(b, be, rng, H, T)
		dOut := benchTensor(b, be, rng, T, H*D)
		dq := benchTensor(b, be, rng, T, H*D)
		dk := benchTensor(b, be, rng, T, KVH*D)
		dv := benchTensor(b, be, rng, T, KVH*D)
		if err := be.Attention(out, lse, q, k, v, seqs, p); err != nil {
			b.Fatal(err)
		}
		b.Run(fmt.Sprintf("forward/T%d_window%d", T, window), func(b *testing.B) {
			for b.Loop() {
				if err := be.Attention(out, lse, q, k, v, seqs, p); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(fwdFlops*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
		})
		b.Run(fmt.Sprintf("backward/T%d_window%d", T, window), func(b *testing.B) {
			for b.Loop() {
				if err := be.AttentionBackward(dq, dk, dv, dOut, q, k, v, out, lse, seqs, p); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(2*fwdFlops*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
		})
	}
}

func benchTensor(b *testing.B, be *Backend, rng *rand.Rand, shape ...int) engine.Tensor {
	b.Helper()
	t, err := be.Alloc(engine.F32, shape...)
	if err != nil {
		b.Fatal(err)
	}
	x := make([]float32, t.Len())
	for i := range x {
		x[i] = float32(rng.NormFloat64())
	}
	if err := be.Upload(t, x); err != nil {
		b.Fatal(err)
	}
	return t
}
