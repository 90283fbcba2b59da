package vision

import (
	"fmt"
	"math"
)

// Filter is a PIL resampling filter (the numbers are PIL's
// Image.Resampling values, which processor configs store as "resample").
type Filter int

const (
	Lanczos  Filter = 1
	Bilinear Filter = 2
	Bicubic  Filter = 3
	Box      Filter = 4
	Hamming  Filter = 5
)

// ParseFilter maps a processor config's "resample" number to a filter.
// NEAREST (0) is refused: Pillow implements it by sampling, not by the
// convolution below, and neither processor uses it.
func ParseFilter(n int) (Filter, error) {
	switch f := Filter(n); f {
	case Lanczos, Bilinear, Bicubic, Box, Hamming:
		return f, nil
	}
	return 0, fmt.Errorf("resample %d is not supported (want 1 lanczos, 2 bilinear, 3 bicubic, 4 box or 5 hamming)", n)
}

func (f Filter) String() string {
	switch f {
	case Lanczos:
		return "lanczos"
	case Bilinear:
		return "bilinear"
	case Bicubic:
		return "bicubic"
	case Box:
		return "box"
	case Hamming:
		return "hamming"
	}
	return fmt.Sprintf("filter(%d)", int(f))
}

// kernel returns the filter function and its support (in input pixels at
// scale 1), as Pillow's Resample.c defines them.
func (f Filter) kernel() (func(float64) float64, float64) {
	switch f {
	case Box:
		return func(x float64) float64 {
			if x > -0.5 && x <= 0.5 {
				return 1
			}
			return 0
		}, 0.5
	case Bilinear:
		return func(x float64) float64 {
			x = math.Abs(x)
			if x < 1 {
				return 1 - x
			}
			return 0
		}, 1
	case Hamming:
		return func(x float64) float64 {
			x = math.Abs(x)
			if x == 0 {
				return 1
			}
			if x >= 1 {
				return 0
			}
			x *= math.Pi
			// Pillow writes the constants as C floats (0.54f, 0.46f).
			return math.Sin(x) / x * (float64(float32(0.54)) + float64(float32(0.46))*math.Cos(x))
		}, 1
	case Bicubic:
		return func(x float64) float64 {
			const a = -0.5
			x = math.Abs(x)
			if x < 1 {
				return ((a+2)*x-(a+3))*x*x + 1
			}
			if x < 2 {
				return (((x-5)*x+8)*x - 4) * a
			}
			return 0
		}, 2
	case Lanczos:
		sinc := func(x float64) float64 {
			if x == 0 {
				return 1
			}
			x *= math.Pi
			return math.Sin(x) / x
		}
		return func(x float64) float64 {
			if -3 <= x && x < 3 {
				return sinc(x) * sinc(x/3)
			}
			return 0
		}, 3
	}
	return nil, 0
}

// precisionBits is Pillow's PRECISION_BITS for 8-bit images: coefficients
// are fixed-point with 22 fractional bits, leaving room for the 8-bit
// sample and two bits of overshoot (bicubic and lanczos have negative
// lobes).
const precisionBits = 32 - 8 - 2

// coeffs is Pillow's precompute_coeffs for a box [0, inSize) mapped onto
// outSize samples, followed by normalize_coeffs_8bpc: for each output
// sample the first input index and the fixed-point weights. When
// shrinking, the filter is stretched by the scale (antialiasing), which is
// what makes PIL's "bilinear" differ from textbook bilinear interpolation.
func coeffs(inSize, outSize int, f Filter) (starts []int, weights [][]int32) {
	filter, support := f.kernel()
	scale := float64(inSize) / float64(outSize)
	filterscale := scale
	if filterscale < 1 {
		filterscale = 1
	}
	support *= filterscale
	starts = make([]int, outSize)
	weights = make([][]int32, outSize)
	for xx := 0; xx < outSize; xx++ {
		center := (float64(xx) + 0.5) * scale
		ss := 1 / filterscale
		xmin := int(center - support + 0.5) // C truncation toward zero, as Pillow's (int) cast
		if xmin < 0 {
			xmin = 0
		}
		xmax := int(center + support + 0.5)
		if xmax > inSize {
			xmax = inSize
		}
		xmax -= xmin
		k := make([]float64, xmax)
		ww := 0.0
		for x := 0; x < xmax; x++ {
			w := filter((float64(x+xmin) - center + 0.5) * ss)
			k[x] = w
			ww += w
		}
		fixed := make([]int32, xmax)
		for x := range k {
			if ww != 0 {
				k[x] /= ww
			}
			if k[x] < 0 {
				fixed[x] = int32(-0.5 + k[x]*(1<<precisionBits))
			} else {
				fixed[x] = int32(0.5 + k[x]*(1<<precisionBits))
			}
		}
		starts[xx] = xmin
		weights[xx] = fixed
	}
	return starts, weights
}

// clip8 is Pillow's clip8: drop the fraction (an arithmetic shift, so
// negative sums floor) and clamp to 0..255.
func clip8(v int32) uint8 {
	v >>= precisionBits
	if v < 0 {
		return 0
	}
	if v > 255 {
		return 255
	}
	return uint8(v)
}

// Resize is PIL's Image.resize((w, h), filter) of an RGB image: a
// horizontal pass, rounded to 8 bits, then a vertical pass, each skipped
// when that dimension does not change; an unchanged size is a copy.
func Resize(src *RGB, w, h int, f Filter) (*RGB, error) {
	if w <= 0 || h <= 0 {
		return nil, fmt.Errorf("resize to %dx%d: sizes must be positive", w, h)
	}
	if _, err := ParseFilter(int(f)); err != nil {
		return nil, err
	}
	img := &RGB{W: src.W, H: src.H, Pix: append([]uint8(nil), src.Pix...)}
	if w != src.W {
		img = resampleH(img, w, f)
	}
	if h != src.H {
		img = resampleV(img, h, f)
	}
	return img, nil
}

func resampleH(src *RGB, w int, f Filter) *RGB {
	starts, weights := coeffs(src.W, w, f)
	out := &RGB{W: w, H: src.H, Pix: make([]uint8, 3*w*src.H)}
	for y := 0; y < src.H; y++ {
		row := src.Pix[3*y*src.W : 3*(y+1)*src.W]
		for xx := 0; xx < w; xx++ {
			s0, s1, s2 := int32(1<<(precisionBits-1)), int32(1<<(precisionBits-1)), int32(1<<(precisionBits-1))
			for x, k := range weights[xx] {
				p := row[3*(starts[xx]+x):]
				s0 += int32(p[0]) * k
				s1 += int32(p[1]) * k
				s2 += int32(p[2]) * k
			}
			o := 3 * (y*w + xx)
			out.Pix[o], out.Pix[o+1], out.Pix[o+2] = clip8(s0), clip8(s1), clip8(s2)
		}
	}
	return out
}

func resampleV(src *RGB, h int, f Filter) *RGB {
	starts, weights := coeffs(src.H, h, f)
	w := src.W
	out := &RGB{W: w, H: h, Pix: make([]uint8, 3*w*h)}
	for yy := 0; yy < h; yy++ {
		for x := 0; x < w; x++ {
			s0, s1, s2 := int32(1<<(precisionBits-1)), int32(1<<(precisionBits-1)), int32(1<<(precisionBits-1))
			for y, k := range weights[yy] {
				p := src.Pix[3*((starts[yy]+y)*w+x):]
				s0 += int32(p[0]) * k
				s1 += int32(p[1]) * k
				s2 += int32(p[2]) * k
			}
			o := 3 * (yy*w + x)
			out.Pix[o], out.Pix[o+1], out.Pix[o+2] = clip8(s0), clip8(s1), clip8(s2)
		}
	}
	return out
}
