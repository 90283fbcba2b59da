package vision

import (
	"fmt"
	"math"
)

// Mllama is MllamaImageProcessor (PIL backend) of Llama 3.2 Vision: the
// image is resized, keeping its aspect ratio, to fit the best canvas of
// up to MaxTiles square tiles, padded with zeros to the canvas, rescaled
// and normalised (the padding too), and cut into tiles.
type Mllama struct {
	TileSize int    // size.height = size.width (560)
	MaxTiles int    // max_image_tiles (4)
	Filter   Filter // resample (bilinear)
	Normalize
	Alpha  AlphaRule  // AlphaOverWhite: Mllama composites transparency over white
	Gray16 Gray16Rule // see Gray16Rule
}

// DefaultMllama is the preprocessor_config.json of
// meta-llama/Llama-3.2-11B-Vision(-Instruct): 560-pixel tiles, at most 4,
// bilinear, CLIP mean and std, rescale 1/255.
func DefaultMllama() Mllama {
	return Mllama{
		TileSize:  560,
		MaxTiles:  4,
		Filter:    Bilinear,
		Normalize: Normalize{Rescale: RescaleFactor, Mean: CLIPMean, Std: CLIPStd},
		Alpha:     AlphaOverWhite,
	}
}

// MllamaOutput is one image's processor output.
type MllamaOutput struct {
	// PixelValues is MaxTiles × 3 × TileSize × TileSize float32, the tiles
	// in row-major order; tiles past NumTiles are zero (pack_images).
	PixelValues []float32
	NumTiles    int
	TilesH      int // canvas rows of tiles
	TilesW      int // canvas columns of tiles
	// ResizedH and ResizedW are the image's size on the canvas, before
	// padding.
	ResizedH, ResizedW int
	// AspectRatioID is 1 + the index of (TilesH, TilesW) in
	// SupportedAspectRatios (0 is left for padding in a batch).
	AspectRatioID int
	// AspectRatioMask has MaxTiles entries: 1 for each real tile.
	AspectRatioMask []int64
}

// SupportedAspectRatios lists the tile grids (a, b) with a·b ≤ maxTiles in
// the processor's order (get_all_supported_aspect_ratios): a from 1 up,
// then b. The processor calls the pair (width, height) in that function's
// docstring but passes (tiles high, tiles wide) everywhere it is used, so
// here it is (rows, columns).
func SupportedAspectRatios(maxTiles int) [][2]int {
	var out [][2]int
	for a := 1; a <= maxTiles; a++ {
		for b := 1; b <= maxTiles; b++ {
			if a*b <= maxTiles {
				out = append(out, [2]int{a, b})
			}
		}
	}
	return out
}

// OptimalCanvas is get_optimal_tiled_canvas: among the canvases of the
// supported grids, the one that needs the smallest upscaling of the image
// (the limiting side decides the scale), or, if every canvas is smaller,
// the least downscaling; ties go to the smaller area, then to the first in
// SupportedAspectRatios order. Returns (height, width) in pixels.
func OptimalCanvas(imageH, imageW, maxTiles, tileSize int) (int, int) {
	grids := SupportedAspectRatios(maxTiles)
	scales := make([]float64, len(grids))
	for i, g := range grids {
		sh := float64(g[0]*tileSize) / float64(imageH)
		sw := float64(g[1]*tileSize) / float64(imageW)
		// np.where(scale_w > scale_h, scale_h, scale_w)
		if sw > sh {
			scales[i] = sh
		} else {
			scales[i] = sw
		}
	}
	selected, found := math.Inf(1), false
	for _, s := range scales {
		if s >= 1 && s < selected {
			selected, found = s, true
		}
	}
	if !found {
		selected = math.Inf(-1)
		for _, s := range scales {
			if s < 1 && s > selected {
				selected = s
			}
		}
	}
	best, bestArea := -1, 0
	for i, s := range scales {
		if s != selected {
			continue
		}
		area := grids[i][0] * tileSize * grids[i][1] * tileSize
		if best < 0 || area < bestArea { // np.argmin: first of equal minima
			best, bestArea = i, area
		}
	}
	return grids[best][0] * tileSize, grids[best][1] * tileSize
}

// FitToCanvas is get_image_size_fit_to_canvas: the image's size on the
// canvas, each side first clipped to [tileSize, canvas], then the
// aspect ratio kept by flooring the other side. Returns (height, width).
func FitToCanvas(imageH, imageW, canvasH, canvasW, tileSize int) (int, int) {
	clip := func(v, lo, hi int) int { return min(max(v, lo), hi) } // np.clip
	tw, th := clip(imageW, tileSize, canvasW), clip(imageH, tileSize, canvasH)
	sh := float64(th) / float64(imageH)
	sw := float64(tw) / float64(imageW)
	if sw < sh {
		return min(int(math.Floor(float64(imageH)*sw)), th), tw
	}
	return th, min(int(math.Floor(float64(imageW)*sh)), tw)
}

// Process runs the processor on one decoded image.
func (p Mllama) Process(d *Decoded) (*MllamaOutput, error) {
	if p.TileSize <= 0 || p.MaxTiles <= 0 {
		return nil, fmt.Errorf("mllama processor: tile size %d and max tiles %d must be positive", p.TileSize, p.MaxTiles)
	}
	if err := p.check(); err != nil {
		return nil, fmt.Errorf("mllama processor: %w", err)
	}
	img := d.RGB(p.Alpha, p.Gray16)
	ch, cw := OptimalCanvas(img.H, img.W, p.MaxTiles, p.TileSize)
	nh, nw := FitToCanvas(img.H, img.W, ch, cw, p.TileSize)
	if nh <= 0 || nw <= 0 {
		return nil, fmt.Errorf("mllama processor: a %dx%d image fits the canvas as %dx%d, which has no pixels", img.W, img.H, nw, nh)
	}
	r, err := Resize(img, nw, nh, p.Filter)
	if err != nil {
		return nil, fmt.Errorf("mllama processor: %w", err)
	}
	// Pad with zeros to the canvas, then normalise the whole canvas: the
	// padding becomes -mean/std, as in transformers.
	canvas := &RGB{W: cw, H: ch, Pix: make([]uint8, 3*cw*ch)}
	for y := 0; y < nh; y++ {
		copy(canvas.Pix[3*y*cw:], r.Pix[3*y*nw:3*(y+1)*nw])
	}
	norm := make([]float32, 3*cw*ch)
	p.planar(canvas, norm)

	th, tw := ch/p.TileSize, cw/p.TileSize
	t := p.TileSize
	out := &MllamaOutput{
		PixelValues: make([]float32, p.MaxTiles*3*t*t),
		NumTiles:    th * tw,
		TilesH:      th,
		TilesW:      tw,
		ResizedH:    nh,
		ResizedW:    nw,
	}
	// split_to_tiles: (C, th, t, tw, t) → (th, tw, C, t, t).
	for ty := 0; ty < th; ty++ {
		for tx := 0; tx < tw; tx++ {
			tile := out.PixelValues[(ty*tw+tx)*3*t*t:]
			for c := 0; c < 3; c++ {
				for y := 0; y < t; y++ {
					src := norm[c*ch*cw+(ty*t+y)*cw+tx*t:]
					copy(tile[(c*t+y)*t:(c*t+y+1)*t], src[:t])
				}
			}
		}
	}
	for i, g := range SupportedAspectRatios(p.MaxTiles) {
		if g == [2]int{th, tw} {
			out.AspectRatioID = i + 1
		}
	}
	out.AspectRatioMask = make([]int64, p.MaxTiles)
	out.AspectRatioMask[0] = 1
	for i := 0; i < th*tw; i++ {
		out.AspectRatioMask[i] = 1
	}
	return out, nil
}
