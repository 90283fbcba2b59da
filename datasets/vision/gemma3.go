package vision

import (
	"fmt"
	"math"
)

// Gemma3 is Gemma3ImageProcessor (PIL backend): optional pan-and-scan
// crops, each image and crop resized to Size×Size, rescaled and normalised.
// The zero value is not useful; start from DefaultGemma3.
type Gemma3 struct {
	Size   int    // size.height = size.width (896 for the released models)
	Filter Filter // resample (bilinear)
	Normalize
	Alpha  AlphaRule  // convert("RGB"): AlphaDrop
	Gray16 Gray16Rule // see Gray16Rule; Gray16Clip is transformers' output

	// Pan and scan (do_pan_and_scan, off by default as in the released
	// configs): a long image is also cut into 2..PanMaxCrops crops along
	// its long side, each processed like a whole image after the original.
	PanAndScan  bool
	PanMinCrop  int     // pan_and_scan_min_crop_size
	PanMaxCrops int     // pan_and_scan_max_num_crops
	PanMinRatio float64 // pan_and_scan_min_ratio_to_activate
}

// DefaultGemma3 is the preprocessor_config.json of google/gemma-3-4b-it
// (and 12b/27b): 896×896, bilinear, mean and std 0.5, rescale 1/255,
// pan-and-scan off with Gemma 3's processor defaults for when it is on
// (min crop 256, at most 4 crops, aspect ratio at least 1.2).
func DefaultGemma3() Gemma3 {
	return Gemma3{
		Size:        896,
		Filter:      Bilinear,
		Normalize:   Normalize{Rescale: RescaleFactor, Mean: ImageNetStandardMean, Std: ImageNetStandardStd},
		Alpha:       AlphaDrop,
		PanMinCrop:  256,
		PanMaxCrops: 4,
		PanMinRatio: 1.2,
	}
}

// Gemma3Output is one image's processor output: PixelValues holds
// 1+NumCrops images of 3×Size×Size float32, channel-first, the original
// first (transformers' pixel_values rows for this image; num_crops).
type Gemma3Output struct {
	PixelValues [][]float32
	NumCrops    int
}

// Process runs the processor on one decoded image.
func (p Gemma3) Process(d *Decoded) (*Gemma3Output, error) {
	if p.Size <= 0 {
		return nil, fmt.Errorf("gemma3 processor: size %d must be positive", p.Size)
	}
	if err := p.check(); err != nil {
		return nil, fmt.Errorf("gemma3 processor: %w", err)
	}
	img := d.RGB(p.Alpha, p.Gray16)
	images := []*RGB{img}
	if p.PanAndScan {
		images = append(images, p.panAndScan(img)...)
	}
	out := &Gemma3Output{NumCrops: len(images) - 1}
	for _, im := range images {
		r, err := Resize(im, p.Size, p.Size, p.Filter)
		if err != nil {
			return nil, fmt.Errorf("gemma3 processor: %w", err)
		}
		px := make([]float32, 3*p.Size*p.Size)
		p.planar(r, px)
		out.PixelValues = append(out.PixelValues, px)
	}
	return out, nil
}

// PanAndScanGrid returns the crop grid (columns, rows) and crop size that
// Gemma 3's pan_and_scan picks for a w×h image, or zeros when it leaves
// the image whole. It follows the processor line by line, including its
// "half round up" crop count and the ceil'd crop size (so the last crop
// may be narrower).
func (p Gemma3) PanAndScanGrid(w, h int) (cols, rows, cropW, cropH int) {
	if p.PanMinCrop <= 0 || p.PanMaxCrops <= 0 {
		return 0, 0, 0, 0
	}
	count := func(long, short int) int {
		if float64(long)/float64(short) < p.PanMinRatio {
			return 0
		}
		n := int(math.Floor(float64(long)/float64(short) + 0.5))
		n = min(int(math.Floor(float64(long)/float64(p.PanMinCrop))), n)
		n = max(2, n)
		return min(p.PanMaxCrops, n)
	}
	if w >= h {
		cols, rows = count(w, h), 1
	} else {
		cols, rows = 1, count(h, w)
	}
	if cols == 0 || rows == 0 {
		return 0, 0, 0, 0
	}
	cropW = int(math.Ceil(float64(w) / float64(cols)))
	cropH = int(math.Ceil(float64(h) / float64(rows)))
	if min(cropW, cropH) < p.PanMinCrop {
		return 0, 0, 0, 0
	}
	return cols, rows, cropW, cropH
}

// panAndScan cuts the crops, rows first as itertools.product does; numpy
// slicing clips a crop that runs past the edge.
func (p Gemma3) panAndScan(img *RGB) []*RGB {
	cols, rows, cw, ch := p.PanAndScanGrid(img.W, img.H)
	var crops []*RGB
	for r := 0; r < rows; r++ {
		for c := 0; c < cols; c++ {
			x0, y0 := c*cw, r*ch
			x1, y1 := min(x0+cw, img.W), min(y0+ch, img.H)
			if x1 <= x0 || y1 <= y0 {
				continue // an empty slice; the resize in transformers would fail on it
			}
			crops = append(crops, crop(img, x0, y0, x1, y1))
		}
	}
	return crops
}

func crop(img *RGB, x0, y0, x1, y1 int) *RGB {
	out := &RGB{W: x1 - x0, H: y1 - y0}
	out.Pix = make([]uint8, 0, 3*out.W*out.H)
	for y := y0; y < y1; y++ {
		out.Pix = append(out.Pix, img.Pix[3*(y*img.W+x0):3*(y*img.W+x1)]...)
	}
	return out
}
