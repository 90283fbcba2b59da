// Package safetensors reads and writes the safetensors format used by Hugging
// Face checkpoints: an 8-byte little-endian header length, a JSON header that
// maps tensor names to {dtype, shape, data_offsets} (plus an optional
// "__metadata__" map of strings), then the raw little-endian tensor data.
// Offsets in the header are relative to the start of the data section.
//
// Open memory-maps a file and checks its header against the file before any
// tensor is read, so a truncated file or a header whose offsets lie is an
// error naming the file and the tensor, never a crash or garbage weights.
package safetensors

import (
	"fmt"
	"math"
	"sort"
	"strings"
)

// dtypeSizes lists the element types this package accepts, with their size in
// bytes. Floats are what models hold; the integer types carry token ids,
// quantized weights and optimizer states.
var dtypeSizes = map[string]int{
	"F64":  8,
	"F32":  4,
	"F16":  2,
	"BF16": 2,
	"I64":  8,
	"I32":  4,
	"I8":   1,
	"U8":   1,
	"BOOL": 1,
}

// DTypeSize returns the size in bytes of one element of dtype, and false for
// a dtype this package does not know.
func DTypeSize(dtype string) (int, bool) {
	n, ok := dtypeSizes[dtype]
	return n, ok
}

func knownDTypes() string {
	names := make([]string, 0, len(dtypeSizes))
	for k := range dtypeSizes {
		names = append(names, k)
	}
	sort.Strings(names)
	return strings.Join(names, ", ")
}

// numElements multiplies the dims of shape, refusing negative dims and
// products that do not fit in an int64 (a header can claim anything).
func numElements(shape []int64) (int64, error) {
	n := int64(1)
	for i, d := range shape {
		if d < 0 {
			return 0, fmt.Errorf("shape dim %d is negative (%d)", i, d)
		}
		if d != 0 && n > math.MaxInt64/d {
			return 0, fmt.Errorf("shape %v overflows int64", shape)
		}
		n *= d
	}
	return n, nil
}

// BF16ToFloat32 widens a bfloat16 bit pattern to float32; every bf16 value,
// NaN payloads included, is exactly representable.
func BF16ToFloat32(b uint16) float32 {
	return math.Float32frombits(uint32(b) << 16)
}

// Float32ToBF16 rounds f to the nearest bfloat16, ties to even. NaN stays NaN
// (quieted, sign kept); values beyond the bf16 range become infinities, as
// round-to-nearest requires.
func Float32ToBF16(f float32) uint16 {
	bits := math.Float32bits(f)
	if bits&0x7fffffff > 0x7f800000 { // NaN: truncating could clear the mantissa
		return uint16(bits>>16) | 0x0040
	}
	rounding := uint32(0x7fff) + (bits>>16)&1
	return uint16((bits + rounding) >> 16)
}

// F16ToFloat32 widens an IEEE half-precision bit pattern to float32,
// subnormals, infinities and NaN payloads included.
func F16ToFloat32(h uint16) float32 {
	sign := uint32(h>>15) << 31
	exp := uint32(h>>10) & 0x1f
	mant := uint32(h) & 0x3ff
	switch {
	case exp == 0x1f: // inf or NaN: keep the payload in the top mantissa bits
		return math.Float32frombits(sign | 0x7f800000 | mant<<13)
	case exp == 0: // zero or subnormal: mant * 2^-24, exact in float32
		v := float32(mant) * (1.0 / (1 << 24))
		if sign != 0 {
			v = -v
		}
		return v
	}
	return math.Float32frombits(sign | (exp+127-15)<<23 | mant<<13)
}
