package vision

import (
	"fmt"
	"math"
)

// Normalization constants of transformers' image_utils.
var (
	// ImageNetStandardMean and ImageNetStandardStd (0.5 each) are Gemma 3's
	// (SigLIP's) image_mean and image_std.
	ImageNetStandardMean = [3]float32{0.5, 0.5, 0.5}
	ImageNetStandardStd  = [3]float32{0.5, 0.5, 0.5}
	// CLIPMean and CLIPStd (OPENAI_CLIP_MEAN/STD) are Llama 3.2 Vision's.
	CLIPMean = [3]float32{0.48145466, 0.4578275, 0.40821073}
	CLIPStd  = [3]float32{0.26862954, 0.26130258, 0.27577711}
)

// RescaleFactor is the processors' default rescale_factor, 1/255.
const RescaleFactor = 1.0 / 255

// Normalize holds the rescale and normalisation every processor ends with.
type Normalize struct {
	Rescale   float64 // rescale_factor
	Mean, Std [3]float32
}

// planar writes img as channel-first float32 (C, H, W) into dst, which
// must hold 3·H·W values, repeating transformers' arithmetic: rescale
// casts the uint8 sample to float64, multiplies, and rounds to float32
// (image_transforms.rescale); normalize then subtracts the float32 mean
// and divides by the float32 std in float32.
func (n Normalize) planar(img *RGB, dst []float32) {
	plane := img.W * img.H
	for c := 0; c < 3; c++ {
		m, s := n.Mean[c], n.Std[c]
		out := dst[c*plane : (c+1)*plane]
		for i := range out {
			v := float32(float64(img.Pix[3*i+c]) * n.Rescale)
			out[i] = (v - m) / s
		}
	}
}

func (n Normalize) check() error {
	if n.Rescale <= 0 || math.IsNaN(n.Rescale) || math.IsInf(n.Rescale, 0) {
		return fmt.Errorf("rescale_factor %v must be a positive number", n.Rescale)
	}
	for c, s := range n.Std {
		if !(s > 0) || math.IsInf(float64(s), 0) {
			return fmt.Errorf("image_std[%d] = %v must be a positive number", c, s)
		}
		if math.IsNaN(float64(n.Mean[c])) || math.IsInf(float64(n.Mean[c]), 0) {
			return fmt.Errorf("image_mean[%d] = %v must be a finite number", c, n.Mean[c])
		}
	}
	return nil
}
