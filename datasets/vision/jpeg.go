package vision

import "image"

// libjpegRGB converts a colour JPEG as Go decoded it (Y, Cb, Cr planes at
// their own resolutions) to straight RGBA the way libjpeg does by default,
// which is what Pillow, and so transformers, sees: chroma subsampled 2×1
// or 2×2 is interpolated ("fancy upsampling", jdsample.c's h2v1 and h2v2
// triangle filters with their biased rounding and the edge sample
// repeated), and YCbCr becomes RGB through jdcolor.c's fixed-point tables.
// Go's own conversion repeats each chroma sample instead, which moves a
// channel by tens of levels at colour edges. What remains different is the
// inverse DCT's rounding (at most a level or two). ok is false for the
// rarer subsamplings, left to Go's conversion.
func libjpegRGB(m *image.YCbCr, w, h int, dst []uint8) (ok bool) {
	var hs, vs int // chroma subsampling factors
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
	cw, ch := (w+hs-1)/hs, (h+vs-1)/vs // libjpeg's downsampled_width and _height
	cb := upsample(m, m.Cb, cw, ch, hs, vs, w, h)
	cr := upsample(m, m.Cr, cw, ch, hs, vs, w, h)
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			yy := int32(m.Y[m.YOffset(m.Rect.Min.X+x, m.Rect.Min.Y+y)])
			b, r := int32(cb[y*w+x]), int32(cr[y*w+x])
			o := 4 * (y*w + x)
			dst[o] = clamp255(yy + crR[r])
			dst[o+1] = clamp255(yy + (cbG[b]+crG[r])>>16)
			dst[o+2] = clamp255(yy + cbB[b])
			dst[o+3] = 255
		}
	}
	return true
}

// upsample returns one chroma plane at full resolution (w×h). plane holds
// the cw×ch samples the component really has (Go also decodes the padding
// blocks, which libjpeg never reads), addressed through m's chroma stride.
func upsample(m *image.YCbCr, plane []uint8, cw, ch, hs, vs, w, h int) []uint8 {
	at := func(cx, cy int) int32 {
		cx = min(max(cx, 0), cw-1) // libjpeg repeats the edge samples
		cy = min(max(cy, 0), ch-1)
		return int32(plane[cy*m.CStride+cx])
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
