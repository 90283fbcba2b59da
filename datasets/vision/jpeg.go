package vision

import "image"

// After the inverse DCT libjpeg upsamples chroma and converts YCbCr to RGB
// in its own way, and Pillow (so transformers) sees exactly that: chroma
// subsampled 2×1 or 2×2 is interpolated ("fancy upsampling", jdsample.c's
// h2v1 and h2v2 triangle filters with their biased rounding and the edge
// sample repeated), and the colours go through jdcolor.c's fixed-point
// tables. Go's own conversion repeats each chroma sample instead, which
// moves a channel by tens of levels at colour edges.

// libjpegPixels writes straight RGBA for a decoded frame; false for the
// sampling layouts libjpeg would treat with other filters (left to Go).
func libjpegPixels(f *jpegFrame, dst []uint8) bool {
	w, h := f.w, f.h
	if len(f.comps) == 1 {
		p := f.comps[0]
		for y := 0; y < h; y++ {
			for x := 0; x < w; x++ {
				v := p.pix[y*p.stride+x]
				copy(dst[4*(y*w+x):], []uint8{v, v, v, 255})
			}
		}
		return true
	}
	if len(f.comps) == 4 {
		return cmykPixels(f, dst)
	}
	if len(f.comps) != 3 {
		return false
	}
	y0, c1, c2 := f.comps[0], f.comps[1], f.comps[2]
	if y0.h != f.hmax || y0.v != f.vmax || c1.h != c2.h || c1.v != c2.v || f.hmax%c1.h != 0 || f.vmax%c1.v != 0 {
		return false
	}
	hs, vs := f.hmax/c1.h, f.vmax/c1.v
	if !(hs == 1 && vs == 1 || hs == 2 && vs == 1 || hs == 2 && vs == 2) {
		return false
	}
	a := upsample(c1, hs, vs, w, h)
	b := upsample(c2, hs, vs, w, h)
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			lum := y0.pix[y*y0.stride+x]
			o := 4 * (y*w + x)
			if f.rgb {
				copy(dst[o:], []uint8{lum, a[y*w+x], b[y*w+x], 255})
				continue
			}
			yy, cb, cr := int32(lum), int32(a[y*w+x]), int32(b[y*w+x])
			dst[o] = clamp255(yy + crR[cr])
			dst[o+1] = clamp255(yy + (cbG[cb]+crG[cr])>>16)
			dst[o+2] = clamp255(yy + cbB[cb])
			dst[o+3] = 255
		}
	}
	return true
}

// libjpegRGB does the same for an image image/jpeg decoded (the fallback
// path): its planes hold the same kind of samples, only with image/jpeg's
// inverse DCT.
func libjpegRGB(m *image.YCbCr, w, h int, dst []uint8) bool {
	var hs, vs int
	switch m.SubsampleRatio {
	case image.YCbCrSubsampleRatio444:
		hs, vs = 1, 1
	case image.YCbCrSubsampleRatio422:
		hs, vs = 2, 1
	case image.YCbCrSubsampleRatio420:
		hs, vs = 2, 2
	default:
		return false
	}
	if m.Rect.Min != (image.Point{}) {
		return false
	}
	cw, ch := (w+hs-1)/hs, (h+vs-1)/vs // libjpeg's downsampled_width and _height
	f := &jpegFrame{w: w, h: h, hmax: hs, vmax: vs, comps: []jpegPlane{
		{h: hs, v: vs, w: w, hgt: h, stride: m.YStride, pix: m.Y},
		{h: 1, v: 1, w: cw, hgt: ch, stride: m.CStride, pix: m.Cb},
		{h: 1, v: 1, w: cw, hgt: ch, stride: m.CStride, pix: m.Cr},
	}}
	return libjpegPixels(f, dst)
}

// upsample returns one chroma plane at full resolution (w×h). Only the
// p.w×p.hgt samples the component really has are read (the padding
// blocks are decoded too, but libjpeg never reads them).
func upsample(p jpegPlane, hs, vs, w, h int) []uint8 {
	at := func(cx, cy int) int32 {
		cx = min(max(cx, 0), p.w-1) // libjpeg repeats the edge samples
		cy = min(max(cy, 0), p.hgt-1)
		return int32(p.pix[cy*p.stride+cx])
	}
	out := make([]uint8, w*h)
	for y := 0; y < h; y++ {
		cy := y / vs
		for x := 0; x < w; x++ {
			cx := x / hs
			var v int32
			switch {
			case hs == 1 && vs == 1:
				v = at(cx, cy)
			case vs == 1: // h2v1: 3/4 nearer + 1/4 further, rounding 1 left, 2 right
				if x%2 == 0 {
					v = (3*at(cx, cy) + at(cx-1, cy) + 1) >> 2
				} else {
					v = (3*at(cx, cy) + at(cx+1, cy) + 2) >> 2
				}
			default: // h2v2: the same triangle vertically first, then across, with 8 and 7 as rounding
				dy := 1
				if y%2 == 0 {
					dy = -1
				}
				col := func(cx int) int32 { return 3*at(cx, cy) + at(cx, cy+dy) }
				if x%2 == 0 {
					v = (3*col(cx) + col(cx-1) + 8) >> 4
				} else {
					v = (3*col(cx) + col(cx+1) + 7) >> 4
				}
			}
			out[y*w+x] = uint8(v)
		}
	}
	return out
}

// jdcolor.c's build_ycc_rgb_table: FIX(x) = x·2^16 rounded, ONE_HALF = 2^15.
var crR, cbB, crG, cbG = func() (r, b, rg, bg [256]int32) {
	fix := func(f float64) int32 { return int32(f*65536 + 0.5) }
	for i := range 256 {
		x := int32(i - 128)
		r[i] = (fix(1.40200)*x + 1<<15) >> 16
		b[i] = (fix(1.77200)*x + 1<<15) >> 16
		rg[i] = -fix(0.71414) * x
		bg[i] = -fix(0.34414)*x + 1<<15
	}
	return
}()

func clamp255(v int32) uint8 {
	return uint8(min(max(v, 0), 255))
}

// cmykPixels handles a 4-component (CMYK) JPEG the way Pillow reads it:
// libjpeg passes the samples through, Pillow's "CMYK;I" raw mode inverts
// all four (it assumes Adobe's polarity, as Photoshop writes), and
// convert("RGB") is cmyk2rgb. YCCK and subsampled CMYK files are left to
// image/jpeg.
func cmykPixels(f *jpegFrame, dst []uint8) bool {
	if f.ycck || f.hmax != 1 || f.vmax != 1 {
		return false
	}
	for y := 0; y < f.h; y++ {
		for x := 0; x < f.w; x++ {
			var s [4]uint8
			for i, p := range f.comps {
				s[i] = 255 - p.pix[y*p.stride+x]
			}
			r, g, b := cmykToRGB(s[0], s[1], s[2], s[3])
			copy(dst[4*(y*f.w+x):], []uint8{r, g, b, 255})
		}
	}
	return true
}
