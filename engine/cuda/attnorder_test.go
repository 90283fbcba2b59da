package cuda

import (
	"slices"
	"testing"
)

// TestBlockOrders: each order is a permutation of the 64-row blocks, the
// heaviest first: the forward's and dq's last query block of the longest
// sequence, the dK/dV kernel's first key block of it.
func TestBlockOrders(t *testing.T) {
	for _, c := range []struct {
		name           string
		starts         []int32
		window         int
		firstQ, firstK int32
	}{
		{"four_equal_sequences", []int32{0, 2048, 4096, 6144, 8192}, 0, 31, 0},
		{"one_sequence", []int32{0, 8192}, 0, 127, 0},
		{"short_then_long", []int32{0, 100, 1100}, 0, 17, 1},
		{"window_makes_work_equal", []int32{0, 1024}, 64, 1, 0},
		{"partial_last_block", []int32{0, 5, 13, 20}, 0, 0, 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			q, k := blockOrders(c.starts, c.window)
			n := (int(c.starts[len(c.starts)-1]) + 63) / 64
			for name, o := range map[string][]int32{"query": q, "key": k} {
				s := slices.Clone(o)
				slices.Sort(s)
				for i, v := range s {
					if v != int32(i) {
						t.Fatalf("%s order %v is not a permutation of %d blocks", name, o, n)
					}
				}
			}
			if q[0] != c.firstQ || k[0] != c.firstK {
				t.Errorf("heaviest query block %d, key block %d; want %d, %d (orders %v / %v)", q[0], k[0], c.firstQ, c.firstK, q, k)
			}
		})
	}
}
