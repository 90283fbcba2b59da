package gguf

import (
	"encoding/binary"
	"fmt"
	"math"
	"runtime"
	"sync"
)

// Block layouts, as ggml defines them (all little-endian, f16 = IEEE half):
//
//	Q8_0 (32 values, 34 bytes):  f16 d | int8 q[32]          x = d*q
//	Q5_0 (32 values, 22 bytes):  f16 d | u8 qh[4] | u8 qs[16]   x = d*(q-16)
//	Q5_1 (32 values, 24 bytes):  f16 d | f16 m | u8 qh[4] | u8 qs[16]   x = d*q + m
//	    q in 0..31: value i < 16 has its low four bits in qs[i]&15, value
//	    i+16 in qs[i]>>4; the fifth bit of value i is bit i of qh (read
//	    as a little-endian uint32).
//	Q4_K (256 values, 144 bytes): f16 d | f16 dmin | u8 scales[12] | u8 qs[128]
//	    8 sub-blocks of 32, each with a 6-bit scale sc and 6-bit min m:
//	    x = d*sc*q - dmin*m, q in 0..15. scales[12] packs the 16 six-bit
//	    numbers: for j < 4, sc[j] = scales[j]&63, m[j] = scales[j+4]&63;
//	    for j >= 4, sc[j] = scales[j+4]&15 | (scales[j-4]>>6)<<4 and
//	    m[j] = scales[j+4]>>4 | (scales[j]>>6)<<4. qs[32*c+l] holds
//	    sub-block 2c's value l in its low nibble, sub-block 2c+1's in its high.
//	Q5_K (256 values, 176 bytes): f16 d | f16 dmin | u8 scales[12] | u8 qh[32] | u8 qs[128]
//	    Q4_K's layout with q in 0..31: the low four bits as in Q4_K, the
//	    fifth bit of sub-block j's value l is bit j of qh[l].
//	Q6_K (256 values, 210 bytes): u8 ql[128] | u8 qh[64] | int8 scales[16] | f16 d
//	    16 sub-blocks of 16 with an 8-bit signed scale: x = d*sc*(q-32),
//	    q in 0..63. In each half h (128 values) and for l < 32, the four
//	    values l, l+32, l+64, l+96 take their low nibbles from
//	    ql[64h+l]&15, ql[64h+l+32]&15, ql[64h+l]>>4, ql[64h+l+32]>>4 and their
//	    top two bits from qh[32h+l] bits 0-1, 2-3, 4-5, 6-7.

// maxF16 is the largest finite half.
const maxF16 = 65504

// QK_K is the super-block size of the K-quants.
const QK_K = 256

const (
	q5_0Bytes = 2 + 4 + 16
	q5_1Bytes = 2 + 2 + 4 + 16
	q8_0Bytes = 2 + 32
	q4KBytes  = 2 + 2 + 12 + QK_K/2
	q5KBytes  = 2 + 2 + 12 + QK_K/8 + QK_K/2
	q6KBytes  = QK_K/2 + QK_K/4 + QK_K/16 + 2
)

// Encode converts float32 values, a whole number of rows, to t's bytes.
func Encode(t TensorType, x []float32) ([]byte, error) {
	if bs := t.BlockSize(); len(x)%bs != 0 {
		return nil, fmt.Errorf("gguf: %d values are not a multiple of %s's block of %d", len(x), t, bs)
	}
	if t != F32 && t != BF16 {
		// F16 values and the f16 scales of the quantized blocks overflow
		// past 65504: refuse rather than store infinities.
		for i, v := range x {
			if !(abs32(v) <= maxF16) {
				return nil, fmt.Errorf("gguf: value %d (%g) is beyond what %s can hold (|x| <= 65504); export bf16 instead", i, v, t)
			}
		}
	}
	switch t {
	case F32:
		out := make([]byte, 4*len(x))
		for i, v := range x {
			binary.LittleEndian.PutUint32(out[4*i:], math.Float32bits(v))
		}
		return out, nil
	case F16:
		return parallelBlocks(x, 1, 2, func(x []float32) []byte {
			out := make([]byte, 2*len(x))
			for i, v := range x {
				binary.LittleEndian.PutUint16(out[2*i:], Float32ToF16(v))
			}
			return out
		}), nil
	case BF16:
		out := make([]byte, 2*len(x))
		for i, v := range x {
			binary.LittleEndian.PutUint16(out[2*i:], Float32ToBF16(v))
		}
		return out, nil
	case Q5_0:
		return parallelBlocks(x, 32, q5_0Bytes, QuantizeQ5_0), nil
	case Q5_1:
		return parallelBlocks(x, 32, q5_1Bytes, QuantizeQ5_1), nil
	case Q8_0:
		return parallelBlocks(x, 32, q8_0Bytes, QuantizeQ8_0), nil
	case Q4_K:
		return parallelBlocks(x, QK_K, q4KBytes, QuantizeQ4K), nil
	case Q5_K:
		return parallelBlocks(x, QK_K, q5KBytes, QuantizeQ5K), nil
	case Q6_K:
		return parallelBlocks(x, QK_K, q6KBytes, QuantizeQ6K), nil
	}
	return nil, fmt.Errorf("gguf: cannot encode tensor type %s", t)
}

// parallelBlocks runs a block quantizer over x on every core: blocks are
// independent, and a K-quant's search makes a large model's export
// otherwise take many minutes on one core.
func parallelBlocks(x []float32, blockSize, blockBytes int, quantize func([]float32) []byte) []byte {
	blocks := len(x) / blockSize
	workers := min(runtime.GOMAXPROCS(0), len(x)/(1<<14))
	if workers <= 1 {
		return quantize(x)
	}
	out := make([]byte, blocks*blockBytes)
	per := (blocks + workers - 1) / workers
	var wg sync.WaitGroup
	for b0 := 0; b0 < blocks; b0 += per {
		b1 := min(b0+per, blocks)
		wg.Add(1)
		go func() {
			defer wg.Done()
			copy(out[b0*blockBytes:b1*blockBytes], quantize(x[b0*blockSize:b1*blockSize]))
		}()
	}
	wg.Wait()
	return out
}

// Decode converts n values of type t back to float32 (tests and checks
// use it to measure what quantization lost).
func Decode(t TensorType, data []byte, n int) ([]float32, error) {
	size, err := t.RowBytes(n)
	if err != nil {
		return nil, err
	}
	if len(data) != size {
		return nil, fmt.Errorf("gguf: %d values of %s need %d bytes, got %d", n, t, size, len(data))
	}
	out := make([]float32, n)
	switch t {
	case F32:
		for i := range out {
			out[i] = math.Float32frombits(binary.LittleEndian.Uint32(data[4*i:]))
		}
	case F16:
		for i := range out {
			out[i] = F16ToFloat32(binary.LittleEndian.Uint16(data[2*i:]))
		}
	case BF16:
		for i := range out {
			out[i] = math.Float32frombits(uint32(binary.LittleEndian.Uint16(data[2*i:])) << 16)
		}
	case Q8_0:
		for b := 0; b < n/32; b++ {
			blk := data[b*q8_0Bytes:]
			d := F16ToFloat32(binary.LittleEndian.Uint16(blk))
			for i := 0; i < 32; i++ {
				out[32*b+i] = d * float32(int8(blk[2+i]))
			}
		}
	case Q5_0, Q5_1:
		size := t.BlockBytes()
		for b := 0; b < n/32; b++ {
			dequantizeQ5Block(t, data[b*size:(b+1)*size], out[32*b:32*b+32])
		}
	case Q4_K:
		for b := 0; b < n/QK_K; b++ {
			dequantizeQ4KBlock(data[b*q4KBytes:(b+1)*q4KBytes], out[b*QK_K:(b+1)*QK_K])
		}
	case Q5_K:
		for b := 0; b < n/QK_K; b++ {
			dequantizeQ5KBlock(data[b*q5KBytes:(b+1)*q5KBytes], out[b*QK_K:(b+1)*QK_K])
		}
	case Q6_K:
		for b := 0; b < n/QK_K; b++ {
			dequantizeQ6KBlock(data[b*q6KBytes:(b+1)*q6KBytes], out[b*QK_K:(b+1)*QK_K])
		}
	default:
		return nil, fmt.Errorf("gguf: cannot decode tensor type %s", t)
	}
	return out, nil
}

// Float32ToF16 rounds to the nearest IEEE half (ties to even), with
// overflow to infinity and gradual underflow to subnormals.
func Float32ToF16(f float32) uint16 {
	b := math.Float32bits(f)
	sign := uint16(b>>16) & 0x8000
	exp := int32(b>>23) & 0xff
	mant := b & 0x7fffff
	if exp == 0xff { // inf or NaN
		if mant != 0 {
			return sign | 0x7e00
		}
		return sign | 0x7c00
	}
	e := exp - 127 + 15
	if e >= 0x1f {
		return sign | 0x7c00
	}
	if e <= 0 {
		if e < -10 {
			return sign // too small even for a subnormal
		}
		m := mant | 0x800000 // implicit bit
		shift := uint32(14 - e)
		half := m >> shift
		rem := m & (1<<shift - 1)
		mid := uint32(1) << (shift - 1)
		if rem > mid || (rem == mid && half&1 == 1) {
			half++
		}
		return sign | uint16(half)
	}
	half := uint32(e)<<10 | mant>>13
	rem := mant & 0x1fff
	if rem > 0x1000 || (rem == 0x1000 && half&1 == 1) {
		half++ // may carry into the exponent, up to infinity: still right
	}
	return sign | uint16(half)
}

// F16ToFloat32 widens an IEEE half.
func F16ToFloat32(h uint16) float32 {
	sign := uint32(h&0x8000) << 16
	exp := uint32(h>>10) & 0x1f
	mant := uint32(h & 0x3ff)
	switch {
	case exp == 0x1f:
		return math.Float32frombits(sign | 0x7f800000 | mant<<13)
	case exp == 0:
		if mant == 0 {
			return math.Float32frombits(sign)
		}
		v := float32(mant) / (1 << 24)
		if sign != 0 {
			v = -v
		}
		return v
	}
	return math.Float32frombits(sign | (exp+127-15)<<23 | mant<<13)
}

// Float32ToBF16 rounds to bfloat16 (nearest, ties to even; NaN kept).
func Float32ToBF16(f float32) uint16 {
	b := math.Float32bits(f)
	if b&0x7fffffff > 0x7f800000 {
		return uint16(b>>16) | 0x40
	}
	return uint16((b + 0x7fff + (b>>16)&1) >> 16)
}

// roundF16 is the value a float32 takes once stored as f16.
func roundF16(f float32) float32 { return F16ToFloat32(Float32ToF16(f)) }

// nearest rounds to the nearest integer, ties to even (|f| is at most a
// few hundred here, or clamped right after: NaN and huge values never
// reach it from Encode, which refuses them).
func nearest(f float32) int { return int(math.RoundToEven(float64(f))) }

func clampInt(v, lo, hi int) int { return min(max(v, lo), hi) }

// QuantizeQ8_0 stores each block of 32 as d = max|x|/127 and q = round(x/d).
// The scale is rounded to f16 before the values are divided by it, so the
// error of every value is at most d/2 for the d that is stored.
func QuantizeQ8_0(x []float32) []byte {
	out := make([]byte, len(x)/32*q8_0Bytes)
	for b := 0; b < len(x)/32; b++ {
		blk := x[32*b : 32*b+32]
		var amax float32
		for _, v := range blk {
			amax = max(amax, abs32(v))
		}
		d := roundF16(amax / 127)
		o := out[b*q8_0Bytes:]
		binary.LittleEndian.PutUint16(o, Float32ToF16(d))
		if d == 0 {
			continue
		}
		for i, v := range blk {
			o[2+i] = byte(int8(clampInt(nearest(v/d), -127, 127)))
		}
	}
	return out
}

func abs32(v float32) float32 { return float32(math.Abs(float64(v))) }

// QuantizeQ5_0 stores each block of 32 on the symmetric grid d*(q-16),
// q in 0..31, with d = -v/16 for the value v of largest magnitude: v lands
// exactly on the grid's longer end (q = 0) and the other side reaches
// 15/16 of |v|.
func QuantizeQ5_0(x []float32) []byte {
	out := make([]byte, len(x)/32*q5_0Bytes)
	for b := 0; b < len(x)/32; b++ {
		blk := x[32*b : 32*b+32]
		var peak float32
		for _, v := range blk {
			if abs32(v) > abs32(peak) {
				peak = v
			}
		}
		d := roundF16(peak / -16)
		o := out[b*q5_0Bytes:]
		binary.LittleEndian.PutUint16(o, Float32ToF16(d))
		var q [32]int
		for i, v := range blk {
			q[i] = 16
			if d != 0 {
				q[i] = clampInt(nearest(v/d)+16, 0, 31)
			}
		}
		packQ5(q, o[2:6], o[6:22])
	}
	return out
}

// QuantizeQ5_1 stores each block of 32 on the grid d*q + m, q in 0..31,
// from the block's minimum m to its maximum.
func QuantizeQ5_1(x []float32) []byte {
	out := make([]byte, len(x)/32*q5_1Bytes)
	for b := 0; b < len(x)/32; b++ {
		blk := x[32*b : 32*b+32]
		lo, hi := blk[0], blk[0]
		for _, v := range blk {
			lo, hi = min(lo, v), max(hi, v)
		}
		m := roundF16(lo)
		d := roundF16((hi - m) / 31)
		o := out[b*q5_1Bytes:]
		binary.LittleEndian.PutUint16(o, Float32ToF16(d))
		binary.LittleEndian.PutUint16(o[2:], Float32ToF16(m))
		var q [32]int
		for i, v := range blk {
			if d != 0 {
				q[i] = clampInt(nearest((v-m)/d), 0, 31)
			}
		}
		packQ5(q, o[4:8], o[8:24])
	}
	return out
}

// packQ5 splits 32 five-bit codes into qs (low four bits, values i and
// i+16 sharing byte i) and the 32-bit mask qh of fifth bits.
func packQ5(q [32]int, qh, qs []byte) {
	var high uint32
	for i := 0; i < 16; i++ {
		qs[i] = byte(q[i]&15 | (q[i+16]&15)<<4)
		high |= uint32(q[i]>>4) << i
		high |= uint32(q[i+16]>>4) << (i + 16)
	}
	binary.LittleEndian.PutUint32(qh, high)
}

func dequantizeQ5Block(t TensorType, o []byte, y []float32) {
	d := F16ToFloat32(binary.LittleEndian.Uint16(o))
	off := float32(-16) * d // Q5_0: d*(q-16)
	rest := o[2:]
	if t == Q5_1 {
		off = F16ToFloat32(binary.LittleEndian.Uint16(o[2:]))
		rest = o[4:]
	}
	high := binary.LittleEndian.Uint32(rest)
	qs := rest[4:20]
	for i := 0; i < 16; i++ {
		lo := int(qs[i]&15) | int(high>>i&1)<<4
		hi := int(qs[i]>>4) | int(high>>(i+16)&1)<<4
		y[i] = d*float32(lo) + off
		y[i+16] = d*float32(hi) + off
	}
}

// importance weights the values of a sub-block as the format's reference
// quantizer does: the sub-block's RMS plus each value's magnitude, so
// large weights, which move activations most, are fit more closely.
func importance(x []float32, w []float32) {
	var s2 float32
	for _, v := range x {
		s2 += v * v
	}
	rms := float32(math.Sqrt(float64(s2 / float32(len(x)))))
	for i, v := range x {
		w[i] = rms + abs32(v)
	}
}

// fitScaleMin finds, for one Q4_K sub-block, a scale s >= 0 and an offset
// m >= 0 with x ≈ s*q - m, q in 0..nmax, by trying several grid spacings
// and refitting s and m by weighted least squares for each (weights w):
// the fit the format's reference quantizer also searches for.
func fitScaleMin(x, w []float32, nmax int) (scale, minus float32) {
	lo, hi := x[0], x[0]
	for _, v := range x {
		lo, hi = min(lo, v), max(hi, v)
	}
	lo = min(lo, 0) // the offset can only move the grid down
	if hi <= lo {
		return 0, -lo
	}
	bestErr := float32(math.Inf(1))
	scale, minus = (hi-lo)/float32(nmax), -lo
	var L [32]int // sub-blocks are 32 values
	for step := -10; step <= 10; step++ {
		iscale := (float32(nmax) + 0.1*float32(step)) / (hi - lo)
		var sw, sl, sl2, sx, slx float32
		for i, v := range x {
			l := clampInt(nearest(iscale*(v-lo)), 0, nmax)
			L[i] = l
			fl := float32(l)
			sw += w[i]
			sl += w[i] * fl
			sl2 += w[i] * fl * fl
			sx += w[i] * v
			slx += w[i] * fl * v
		}
		det := sw*sl2 - sl*sl
		if det <= 0 {
			continue
		}
		s := (sw*slx - sl*sx) / det
		off := (sl2*sx - sl*slx) / det // x ≈ s*l + off
		if off > 0 {                   // the format needs off <= 0
			off = 0
			if sl2 == 0 {
				continue
			}
			s = slx / sl2
		}
		if s <= 0 {
			continue
		}
		var err float32
		for i, v := range x {
			d := s*float32(L[i]) + off - v
			err += w[i] * d * d
		}
		if err < bestErr {
			bestErr, scale, minus = err, s, -off
		}
	}
	return scale, minus
}

// QuantizeQ4K quantizes whole super-blocks of 256 values.
func QuantizeQ4K(x []float32) []byte {
	out := make([]byte, len(x)/QK_K*q4KBytes)
	for b := 0; b < len(x)/QK_K; b++ {
		f := fitKBlock(x[b*QK_K:(b+1)*QK_K], 15)
		o := out[b*q4KBytes : (b+1)*q4KBytes]
		f.packHeader(o)
		packNibbles(&f.q, o[16:])
	}
	return out
}

// QuantizeQ5K quantizes whole super-blocks of 256 values.
func QuantizeQ5K(x []float32) []byte {
	out := make([]byte, len(x)/QK_K*q5KBytes)
	for b := 0; b < len(x)/QK_K; b++ {
		f := fitKBlock(x[b*QK_K:(b+1)*QK_K], 31)
		o := out[b*q5KBytes : (b+1)*q5KBytes]
		f.packHeader(o)
		qh := o[16:48]
		for j := 0; j < 8; j++ {
			for l := 0; l < 32; l++ {
				qh[l] |= byte(f.q[32*j+l]>>4) << j
			}
		}
		packNibbles(&f.q, o[48:])
	}
	return out
}

// kBlockFit is one Q4_K or Q5_K super-block: the f16 scales d and dmin,
// each sub-block's 6-bit scale and min codes, and each value's code in
// 0..nmax (x ≈ d*sc[j]*q - dmin*mn[j]).
type kBlockFit struct {
	d, dmin float32
	sc, mn  [8]int
	q       [QK_K]int
}

// fitKBlock fits each sub-block of 32 with fitScaleMin, then stores the
// scales and mins as 6-bit multiples of d and dmin.
func fitKBlock(x []float32, nmax int) (f kBlockFit) {
	var scales, mins [8]float32
	var weights [8][32]float32
	var maxScale, maxMin float32
	for j := 0; j < 8; j++ {
		sub := x[32*j : 32*j+32]
		importance(sub, weights[j][:])
		scales[j], mins[j] = fitScaleMin(sub, weights[j][:], nmax)
		maxScale, maxMin = max(maxScale, scales[j]), max(maxMin, mins[j])
	}
	f.d = roundF16(maxScale / 63)
	f.dmin = roundF16(maxMin / 63)
	// Rounding each sub-block's scale and min to 6 bits of d and dmin
	// can land far from its fit when the sub-block's scale is small next
	// to the block's largest: try the neighbouring codes and keep the pair
	// whose grid fits the values best.
	for j := 0; j < 8; j++ {
		s0, m0 := 0, 0
		if f.d > 0 {
			s0 = nearest(scales[j] / f.d)
		}
		if f.dmin > 0 {
			m0 = nearest(mins[j] / f.dmin)
		}
		best := float32(math.Inf(1))
		for ds := -1; ds <= 1; ds++ {
			for dm := -1; dm <= 1; dm++ {
				s, m := clampInt(s0+ds, 0, 63), clampInt(m0+dm, 0, 63)
				if err := subBlockError(x[32*j:32*j+32], weights[j][:], f.d*float32(s), f.dmin*float32(m), nmax); err < best {
					best, f.sc[j], f.mn[j] = err, s, m
				}
			}
		}
		step := f.d * float32(f.sc[j])
		off := f.dmin * float32(f.mn[j])
		for l := 0; l < 32; l++ {
			if step > 0 {
				f.q[32*j+l] = clampInt(nearest((x[32*j+l]+off)/step), 0, nmax)
			}
		}
	}
	return f
}

// packHeader writes d, dmin and the twelve bytes of 6-bit scales and mins
// that Q4_K and Q5_K share.
func (f *kBlockFit) packHeader(o []byte) {
	binary.LittleEndian.PutUint16(o[0:], Float32ToF16(f.d))
	binary.LittleEndian.PutUint16(o[2:], Float32ToF16(f.dmin))
	s := o[4:16]
	for j := 0; j < 8; j++ {
		if j < 4 {
			s[j] = byte(f.sc[j])
			s[j+4] = byte(f.mn[j])
		} else {
			s[j+4] = byte(f.sc[j]&15 | (f.mn[j]&15)<<4)
			s[j-4] |= byte(f.sc[j]>>4) << 6
			s[j] |= byte(f.mn[j]>>4) << 6
		}
	}
}

// packNibbles stores the low four bits of the codes: sub-blocks 2c and
// 2c+1 share the 32 bytes of chunk c, low and high nibble.
func packNibbles(q *[QK_K]int, qs []byte) {
	for j := 0; j < 8; j++ {
		for l := 0; l < 32; l++ {
			v := byte(q[32*j+l] & 15)
			idx := 32*(j/2) + l
			if j%2 == 0 {
				qs[idx] = qs[idx]&0xf0 | v
			} else {
				qs[idx] = qs[idx]&0x0f | v<<4
			}
		}
	}
}

// subBlockError is the weighted squared error of x on the grid
// step*q - off, q in 0..nmax, each value at its nearest grid point.
func subBlockError(x, w []float32, step, off float32, nmax int) float32 {
	var e float32
	for i, v := range x {
		q := 0
		if step > 0 {
			q = clampInt(nearest((v+off)/step), 0, nmax)
		}
		d := step*float32(q) - off - v
		e += w[i] * d * d
	}
	return e
}

// q4KScaleMin unpacks sub-block j's 6-bit scale and min.
func q4KScaleMin(j int, s []byte) (sc, m int) {
	if j < 4 {
		return int(s[j] & 63), int(s[j+4] & 63)
	}
	return int(s[j+4]&15 | (s[j-4]>>6)<<4), int(s[j+4]>>4 | (s[j]>>6)<<4)
}

func dequantizeQ4KBlock(o []byte, y []float32) {
	d := F16ToFloat32(binary.LittleEndian.Uint16(o[0:]))
	dmin := F16ToFloat32(binary.LittleEndian.Uint16(o[2:]))
	s, qs := o[4:16], o[16:]
	for j := 0; j < 8; j++ {
		sc, m := q4KScaleMin(j, s)
		step, off := d*float32(sc), dmin*float32(m)
		for l := 0; l < 32; l++ {
			q := qs[32*(j/2)+l]
			if j%2 == 1 {
				q >>= 4
			}
			y[32*j+l] = step*float32(q&15) - off
		}
	}
}

func dequantizeQ5KBlock(o []byte, y []float32) {
	d := F16ToFloat32(binary.LittleEndian.Uint16(o[0:]))
	dmin := F16ToFloat32(binary.LittleEndian.Uint16(o[2:]))
	s, qh, qs := o[4:16], o[16:48], o[48:176]
	for j := 0; j < 8; j++ {
		sc, m := q4KScaleMin(j, s)
		step, off := d*float32(sc), dmin*float32(m)
		for l := 0; l < 32; l++ {
			q := qs[32*(j/2)+l]
			if j%2 == 1 {
				q >>= 4
			}
			v := int(q&15) | int(qh[l]>>j&1)<<4
			y[32*j+l] = step*float32(v) - off
		}
	}
}

// QuantizeQ6K quantizes whole super-blocks of 256 values.
func QuantizeQ6K(x []float32) []byte {
	out := make([]byte, len(x)/QK_K*q6KBytes)
	for b := 0; b < len(x)/QK_K; b++ {
		quantizeQ6KBlock(x[b*QK_K:(b+1)*QK_K], out[b*q6KBytes:(b+1)*q6KBytes])
	}
	return out
}

// fitSymmetric finds a signed scale s with x ≈ s*q, q in -32..31: the value
// of largest magnitude maps to -32 (using the grid's longer side), then s
// is refit by least squares; a few nearby grids are tried too.
func fitSymmetric(x []float32) float32 {
	var peak float32
	for _, v := range x {
		if abs32(v) > abs32(peak) {
			peak = v
		}
	}
	if peak == 0 {
		return 0
	}
	var best float32
	bestErr := float32(math.Inf(1))
	for step := -6; step <= 6; step++ {
		iscale := -(32 + 0.1*float32(step)) / peak
		var slx, sl2 float32
		for _, v := range x {
			l := float32(clampInt(nearest(iscale*v), -32, 31))
			slx += l * v
			sl2 += l * l
		}
		if sl2 == 0 {
			continue
		}
		s := slx / sl2
		var err float32
		for _, v := range x {
			l := float32(clampInt(nearest(v/s), -32, 31))
			d := s*l - v
			err += d * d
		}
		if err < bestErr {
			best, bestErr = s, err
		}
	}
	return best
}

func quantizeQ6KBlock(x []float32, o []byte) {
	var scales [16]float32
	var peak float32
	for j := 0; j < 16; j++ {
		scales[j] = fitSymmetric(x[16*j : 16*j+16])
		peak = max(peak, abs32(scales[j]))
	}
	d := roundF16(peak / 127)
	ql, qh, sc := o[0:128], o[128:192], o[192:208]
	binary.LittleEndian.PutUint16(o[208:], Float32ToF16(d))
	var q [QK_K]int
	for j := 0; j < 16; j++ {
		s := 0
		if d > 0 {
			s = clampInt(nearest(scales[j]/d), -127, 127)
		}
		sc[j] = byte(int8(s))
		step := d * float32(s)
		for l := 0; l < 16; l++ {
			v := 0
			if step != 0 {
				v = clampInt(nearest(x[16*j+l]/step), -32, 31)
			}
			q[16*j+l] = v + 32
		}
	}
	for h := 0; h < 2; h++ {
		for l := 0; l < 32; l++ {
			q1, q2, q3, q4 := q[128*h+l], q[128*h+l+32], q[128*h+l+64], q[128*h+l+96]
			ql[64*h+l] = byte(q1&15 | (q3&15)<<4)
			ql[64*h+l+32] = byte(q2&15 | (q4&15)<<4)
			qh[32*h+l] = byte(q1>>4 | (q2>>4)<<2 | (q3>>4)<<4 | (q4>>4)<<6)
		}
	}
}

func dequantizeQ6KBlock(o []byte, y []float32) {
	ql, qh, sc := o[0:128], o[128:192], o[192:208]
	d := F16ToFloat32(binary.LittleEndian.Uint16(o[208:]))
	for h := 0; h < 2; h++ {
		for l := 0; l < 32; l++ {
			a, b, c := ql[64*h+l], ql[64*h+l+32], qh[32*h+l]
			qs := [4]int{
				int(a&15) | int(c&3)<<4,
				int(b&15) | int((c>>2)&3)<<4,
				int(a>>4) | int((c>>4)&3)<<4,
				int(b>>4) | int((c>>6)&3)<<4,
			}
			for k, qv := range qs {
				i := 128*h + l + 32*k
				y[i] = d * float32(int8(sc[i/16])) * float32(qv-32)
			}
		}
	}
}
