package engine

import (
	"math"
	"math/rand/v2"
	"testing"
)

// nf4CodeSearch is the branching binary search nf4Code replaced: the
// number of midpoints below x.
func nf4CodeSearch(x float32) uint8 {
	lo, hi := 0, 15
	for lo < hi {
		mid := (lo + hi) / 2
		if x > nf4Mids[mid] {
			lo = mid + 1
		} else {
			hi = mid
		}
	}
	return uint8(lo)
}

// TestNF4CodeBranchless: the branch-free search gives the branching one's
// code for every midpoint, its float neighbours on both sides, the ends,
// both zeros, infinities, NaN and a million random values in and around
// [-1, 1].
func TestNF4CodeBranchless(t *testing.T) {
	xs := []float32{0, float32(math.Copysign(0, -1)), 1, -1, 2, -2, float32(math.Inf(1)), float32(math.Inf(-1)),
		float32(math.NaN()), -float32(math.NaN()), math.MaxFloat32, -math.MaxFloat32, math.SmallestNonzeroFloat32, -math.SmallestNonzeroFloat32}
	for _, l := range NF4Levels {
		xs = append(xs, l, math.Nextafter32(l, 3), math.Nextafter32(l, -3))
	}
	for _, m := range nf4Mids {
		xs = append(xs, m, math.Nextafter32(m, 3), math.Nextafter32(m, -3))
	}
	rng := rand.New(rand.NewPCG(4, 4))
	for range 1 << 20 {
		xs = append(xs, float32(rng.Float64()*2.2-1.1))
	}
	codes := map[uint8]bool{}
	for _, x := range xs {
		got, want := nf4Code(x), nf4CodeSearch(x)
		if got != want {
			t.Fatalf("nf4Code(%g) (bits %#x) = %d, the branching search gives %d", x, math.Float32bits(x), got, want)
		}
		codes[got] = true
	}
	if len(codes) != 16 {
		t.Fatalf("only %d of the 16 codes were produced", len(codes))
	}
}

// TestQuantizeNF4WordsEqualsPacked: the words written directly equal
// PackNF4Words of QuantizeNF4's bytes, and the absmax are the same.
func TestQuantizeNF4WordsEqualsPacked(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 5))
	w := make([]float32, 64*5000+64*3)
	for i := range w {
		w[i] = float32(rng.NormFloat64() * 0.02)
	}
	packed, am1, err := QuantizeNF4(w)
	if err != nil {
		t.Fatal(err)
	}
	words, am2, err := QuantizeNF4Words(w)
	if err != nil {
		t.Fatal(err)
	}
	want := PackNF4Words(packed)
	if len(words) != len(want) || len(am1) != len(am2) {
		t.Fatalf("%d words, %d absmax; want %d and %d", len(words), len(am2), len(want), len(am1))
	}
	for i := range want {
		if words[i] != want[i] {
			t.Fatalf("word %d: %#x, want %#x", i, uint32(words[i]), uint32(want[i]))
		}
	}
	for i := range am1 {
		if am1[i] != am2[i] {
			t.Fatalf("absmax %d: %g, want %g", i, am2[i], am1[i])
		}
	}
	if _, _, err := QuantizeNF4Words(make([]float32, 100)); err == nil {
		t.Fatal("a partial block must be an error")
	}
}
