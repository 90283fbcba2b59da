package cuda

import (
	"math/rand/v2"
	"testing"
)

// TestToBF16Parallel: the chunked conversion of a large tensor rounds
// every value as bf16Bits does, across chunk edges and the tail.
func TestToBF16Parallel(t *testing.T) {
	rng := rand.New(rand.NewPCG(21, 4))
	for _, n := range []int{5, 1 << 20, 3<<20 + 7} {
		src := make([]float32, n)
		for i := range src {
			src[i] = float32(rng.NormFloat64() * 100)
		}
		dst := make([]uint16, n)
		toBF16(dst, src)
		for i, v := range src {
			if dst[i] != bf16Bits(v) {
				t.Fatalf("n=%d: value %d (%g) became %#x, want %#x", n, i, v, dst[i], bf16Bits(v))
			}
		}
	}
}
