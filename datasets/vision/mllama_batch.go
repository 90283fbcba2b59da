package vision

import "fmt"

// MllamaBatch is a batch as MllamaImageProcessor returns it for several
// samples with several images each: every sample padded to the most
// images any sample has (MaxImages).
type MllamaBatch struct {
	Batch, MaxImages, MaxTiles, TileSize int
	// PixelValues is Batch × MaxImages × MaxTiles × 3 × TileSize ×
	// TileSize; padded images and tiles are zero.
	PixelValues []float32
	// AspectRatioIDs is Batch × MaxImages; 0 for a padded image.
	AspectRatioIDs []int64
	// AspectRatioMask is Batch × MaxImages × MaxTiles. Tile 0 is 1 even
	// for padded images: build_aspect_ratio_mask sets it for every slot,
	// "because in original implementation aspect ratios are padded with
	// (1, 1)".
	AspectRatioMask []int64
	// NumTiles is each real image's tile count, per sample (not padded).
	NumTiles [][]int
}

// PackMllama stacks per-image outputs (samples[i] holds sample i's images
// in order, all from one processor) the way the processor's pack_images,
// convert_aspect_ratios_to_ids and build_aspect_ratio_mask do.
func PackMllama(samples [][]*MllamaOutput, maxTiles, tileSize int) (*MllamaBatch, error) {
	b := &MllamaBatch{Batch: len(samples), MaxTiles: maxTiles, TileSize: tileSize}
	for _, s := range samples {
		b.MaxImages = max(b.MaxImages, len(s))
	}
	if b.Batch == 0 || b.MaxImages == 0 {
		return nil, fmt.Errorf("mllama batch: no images")
	}
	per := maxTiles * 3 * tileSize * tileSize
	b.PixelValues = make([]float32, b.Batch*b.MaxImages*per)
	b.AspectRatioIDs = make([]int64, b.Batch*b.MaxImages)
	b.AspectRatioMask = make([]int64, b.Batch*b.MaxImages*maxTiles)
	for i, s := range samples {
		var tiles []int
		for j := 0; j < b.MaxImages; j++ {
			slot := i*b.MaxImages + j
			b.AspectRatioMask[slot*maxTiles] = 1
			if j >= len(s) {
				continue
			}
			o := s[j]
			if len(o.PixelValues) != per || len(o.AspectRatioMask) != maxTiles {
				return nil, fmt.Errorf("mllama batch: sample %d image %d was made with other tile settings", i, j)
			}
			copy(b.PixelValues[slot*per:], o.PixelValues)
			copy(b.AspectRatioMask[slot*maxTiles:], o.AspectRatioMask)
			b.AspectRatioIDs[slot] = int64(o.AspectRatioID)
			tiles = append(tiles, o.NumTiles)
		}
		b.NumTiles = append(b.NumTiles, tiles)
	}
	return b, nil
}
