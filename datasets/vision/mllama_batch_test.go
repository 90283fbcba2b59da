package vision

import (
	"slices"
	"testing"
)

// TestPackMllama: two samples, with 2 images and 1; the second sample's
// missing image is zeros with id 0 and only tile 0 set in its mask.
func TestPackMllama(t *testing.T) {
	m := DefaultMllama()
	m.TileSize = 8
	wide, err := m.Process(solid(30, 8, 255)) // 1×4 tiles
	if err != nil {
		t.Fatal(err)
	}
	square, err := m.Process(solid(8, 8, 0)) // 1 tile
	if err != nil {
		t.Fatal(err)
	}
	b, err := PackMllama([][]*MllamaOutput{{wide, square}, {square}}, 4, 8)
	if err != nil {
		t.Fatal(err)
	}
	if b.MaxImages != 2 || !slices.Equal(b.AspectRatioIDs, []int64{4, 1, 1, 0}) {
		t.Errorf("images %d, ids %v", b.MaxImages, b.AspectRatioIDs)
	}
	wantMask := []int64{1, 1, 1, 1, 1, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0}
	if !slices.Equal(b.AspectRatioMask, wantMask) {
		t.Errorf("mask %v, want %v", b.AspectRatioMask, wantMask)
	}
	if len(b.NumTiles) != 2 || !slices.Equal(b.NumTiles[0], []int{4, 1}) || !slices.Equal(b.NumTiles[1], []int{1}) {
		t.Errorf("num tiles %v", b.NumTiles)
	}
	per := 4 * 3 * 8 * 8
	if !slices.Equal(b.PixelValues[:per], wide.PixelValues) || !slices.Equal(b.PixelValues[2*per:3*per], square.PixelValues) {
		t.Error("pixels not copied into their slots")
	}
	for _, v := range b.PixelValues[3*per:] {
		if v != 0 {
			t.Fatal("padded image slot not zero")
		}
	}
	m.TileSize = 16
	other, _ := m.Process(solid(8, 8, 0))
	if _, err := PackMllama([][]*MllamaOutput{{other}}, 4, 8); err == nil {
		t.Error("mixed tile sizes accepted")
	}
}
