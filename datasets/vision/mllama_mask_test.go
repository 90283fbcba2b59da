package vision

import (
	"slices"
	"testing"
)

// TestCrossAttentionSpans follows get_cross_attention_token_mask by hand;
// 9 stands for <|image|>.
func TestCrossAttentionSpans(t *testing.T) {
	for _, tc := range []struct {
		ids  []int
		want [][2]int
	}{
		{[]int{1, 2, 3}, nil},
		{[]int{9, 1, 2}, [][2]int{{0, -1}}},              // one image: to the end
		{[]int{9, 1, 2, 9, 3}, [][2]int{{0, 3}, {3, 5}}}, // each image until the next
		{[]int{9, 9, 1, 2}, [][2]int{{0, 4}, {1, 4}}},    // adjacent images share the text after them
		{[]int{1, 9, 9, 9, 2, 9, 3}, [][2]int{{1, 5}, {2, 5}, {3, 5}, {5, 7}}},
	} {
		if got := CrossAttentionSpans(tc.ids, 9); !slices.Equal(got, tc.want) {
			t.Errorf("%v: %v, want %v", tc.ids, got, tc.want)
		}
	}
}

func TestCrossAttentionMask(t *testing.T) {
	// Two images of 2 and 4 tiles (max 4) in 6 tokens: image 0 seen by
	// tokens 1-2 on its 2 tiles, image 1 by tokens 3-5 on all 4.
	spans := [][2]int{{1, 3}, {3, 6}}
	m := CrossAttentionMask(spans, []int{2, 4}, 4, 6)
	at := func(tok, img, tile int) uint8 { return m[(tok*2+img)*4+tile] }
	for tok := 0; tok < 6; tok++ {
		for img := 0; img < 2; img++ {
			for tile := 0; tile < 4; tile++ {
				want := uint8(0)
				if img == 0 && tok >= 1 && tok < 3 && tile < 2 {
					want = 1
				}
				if img == 1 && tok >= 3 && tile < 4 {
					want = 1
				}
				if got := at(tok, img, tile); got != want {
					t.Errorf("token %d image %d tile %d: %d, want %d", tok, img, tile, got, want)
				}
			}
		}
	}
	// A lone image (end -1) reaches the end; an end past the length is cut.
	m = CrossAttentionMask([][2]int{{2, -1}}, []int{1}, 4, 5)
	if got := []uint8{m[0*4], m[1*4], m[2*4], m[4*4], m[4*4+1]}; !slices.Equal(got, []uint8{0, 0, 1, 1, 0}) {
		t.Errorf("lone image: %v", got)
	}
	if m = CrossAttentionMask([][2]int{{1, 99}}, []int{4}, 4, 3); m[2*4+3] != 1 {
		t.Error("end past the length not clipped to it")
	}
}
