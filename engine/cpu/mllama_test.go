package cpu

import (
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"whet/engine"
)

// Finite-difference checks of the Mllama ops (engine.MllamaOps), in the
// style of finitediff_test.go: L = sum(out*R), accumulating backwards
// start from a random prefill that the check subtracts.

func TestFiniteDiffGELU(t *testing.T) {
	b := New()
	x, got := checkActivationFiniteDiff(t, b, rand.New(rand.NewPCG(43, 44)), b.GELU, b.GELUBackward)
	for i, v := range x {
		want := 0.5 * float64(v) * (1 + math.Erf(float64(v)/math.Sqrt2))
		if math.Abs(float64(got[i])-want) > 1e-6 {
			t.Fatalf("GELU(%v) = %v, want %v", v, got[i], want)
		}
	}
}

func TestFiniteDiffBiasAttention(t *testing.T) {
	b := New()
	rng := rand.New(rand.NewPCG(45, 46))
	for _, tc := range []struct {
		name           string
		T, S, H, KVH   int
		bias, maskRows bool
	}{
		{"no bias", 5, 7, 4, 2, false, false},
		{"bias with -Inf and a fully masked row", 6, 8, 2, 1, true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			const D = 4
			q := randn(rng, tc.T*tc.H*D, 1)
			k := randn(rng, tc.S*tc.KVH*D, 1)
			v := randn(rng, tc.S*tc.KVH*D, 1)
			r := randn(rng, tc.T*tc.H*D, 1)
			var biasT *Tensor
			if tc.bias {
				bias := randn(rng, tc.T*tc.S, 1)
				for i := range bias {
					if rng.IntN(3) == 0 {
						bias[i] = float32(math.Inf(-1))
					}
				}
				for j := 0; j < tc.S; j++ {
					bias[j] = 0 // row 0 sees everything
					if tc.maskRows {
						bias[(tc.T-1)*tc.S+j] = float32(math.Inf(-1)) // the last sees nothing
					}
				}
				biasT = tensorOf(t, b, bias, tc.T, tc.S).(*Tensor)
			}
			p := attnParamsOf(tc.H, tc.KVH, D)
			qT, kT, vT := zeros(t, b, tc.T, tc.H*D), zeros(t, b, tc.S, tc.KVH*D), zeros(t, b, tc.S, tc.KVH*D)
			out, lse := zeros(t, b, tc.T, tc.H*D), zeros(t, b, tc.H*tc.T)
			loss := func() float64 {
				must(t, b.Upload(qT, q))
				must(t, b.Upload(kT, k))
				must(t, b.Upload(vT, v))
				must(t, b.BiasAttention(out, lse, qT, kT, vT, biasT, p))
				return weightedSum(values(t, b, out), r)
			}
			numQ, numK, numV := numericGrad(q, loss), numericGrad(k, loss), numericGrad(v, loss)
			loss()
			if tc.maskRows {
				o := values(t, b, out)
				for _, x := range o[(tc.T-1)*tc.H*D:] {
					if x != 0 {
						t.Fatalf("a fully masked row's output is %v, want 0", x)
					}
				}
			}
			dq, dk, dv := zeros(t, b, tc.T, tc.H*D), zeros(t, b, tc.S, tc.KVH*D), zeros(t, b, tc.S, tc.KVH*D)
			must(t, b.BiasAttentionBackward(dq, dk, dv, tensorOf(t, b, r, tc.T, tc.H*D), qT, kT, vT, out, lse, biasT, p))
			checkGrad(t, "dq", values(t, b, dq), numQ)
			checkGrad(t, "dk", values(t, b, dk), numK)
			checkGrad(t, "dv", values(t, b, dv), numV)
		})
	}
}

func TestBiasAttentionRefusesBadShapes(t *testing.T) {
	b := New()
	p := attnParamsOf(2, 1, 4)
	q, k, v := zeros(t, b, 3, 8), zeros(t, b, 5, 4), zeros(t, b, 5, 4)
	out, lse := zeros(t, b, 3, 8), zeros(t, b, 6)
	err := b.BiasAttention(out, lse, q, k, v, zeros(t, b, 3, 4), p)
	if err == nil || !strings.Contains(err.Error(), "bias") {
		t.Fatalf("a [3, 4] bias for 3x5 scores: err = %v, want one naming bias", err)
	}
	p.Window = 2
	if err := b.BiasAttention(out, lse, q, k, v, nil, p); err == nil {
		t.Fatal("a sliding window was accepted")
	}
}

func attnParamsOf(h, kvh, d int) engine.AttnParams {
	return engine.AttnParams{NHeads: h, NKVHeads: kvh, HeadDim: d, Scale: float32(1 / math.Sqrt(float64(d)))}
}
