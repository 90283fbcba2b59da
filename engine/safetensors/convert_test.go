package safetensors

import (
	"math"
	"testing"
)

func TestBF16ToFloat32Vectors(t *testing.T) {
	tests := []struct {
		in   uint16
		want uint32 // float32 bits
	}{
		{0x3f80, 0x3f800000}, // 1
		{0xc000, 0xc0000000}, // -2
		{0x8000, 0x80000000}, // -0
		{0x0001, 0x00010000}, // smallest subnormal, 2^-133
		{0x7f7f, 0x7f7f0000}, // largest finite
		{0x7f80, 0x7f800000}, // +inf
		{0xff80, 0xff800000}, // -inf
		{0x7fc1, 0x7fc10000}, // NaN, payload kept
	}
	for _, tt := range tests {
		if got := math.Float32bits(BF16ToFloat32(tt.in)); got != tt.want {
			t.Errorf("BF16ToFloat32(%#04x) = %#08x, want %#08x", tt.in, got, tt.want)
		}
	}
}

func TestFloat32ToBF16RoundsToNearestEven(t *testing.T) {
	tests := []struct {
		in   uint32 // float32 bits
		want uint16
	}{
		{0x3f800000, 0x3f80}, // 1, exact
		{0x3f808000, 0x3f80}, // halfway, lower neighbour even: down
		{0x3f818000, 0x3f82}, // halfway, lower neighbour odd: up
		{0x3f808001, 0x3f81}, // just above halfway: up
		{0x3f807fff, 0x3f80}, // just below halfway: down
		{0xbf818000, 0xbf82}, // sign does not change the rounding
		{0x00018000, 0x0002}, // subnormal halfway to even
		{0x7f7fffff, 0x7f80}, // max float32 rounds to +inf
		{0x7f800000, 0x7f80}, // +inf stays
		{0xff800000, 0xff80}, // -inf stays
		{0x7f800001, 0x7fc0}, // NaN whose payload is all in the low bits stays NaN
		{0xffc00000, 0xffc0}, // negative quiet NaN keeps its sign
		{0x7fa00000, 0x7fe0}, // signalling NaN comes out quiet
	}
	for _, tt := range tests {
		if got := Float32ToBF16(math.Float32frombits(tt.in)); got != tt.want {
			t.Errorf("Float32ToBF16(%#08x) = %#04x, want %#04x", tt.in, got, tt.want)
		}
	}
}

func TestF16ToFloat32Vectors(t *testing.T) {
	tests := []struct {
		in   uint16
		want float32
	}{
		{0x3c00, 1},
		{0xc000, -2},
		{0x3555, 0.333251953125},
		{0x7bff, 65504},                  // largest finite
		{0x0400, 6.103515625e-05},        // smallest normal, 2^-14
		{0x03ff, 6.097555160522461e-05},  // largest subnormal, 1023 * 2^-24
		{0x0001, 5.960464477539063e-08},  // smallest subnormal, 2^-24
		{0x8001, -5.960464477539063e-08}, // negative subnormal
		{0x7c00, float32(math.Inf(1))},
		{0xfc00, float32(math.Inf(-1))},
	}
	for _, tt := range tests {
		if got := F16ToFloat32(tt.in); got != tt.want {
			t.Errorf("F16ToFloat32(%#04x) = %v, want %v", tt.in, got, tt.want)
		}
	}
	if got := math.Float32bits(F16ToFloat32(0x8000)); got != 0x80000000 {
		t.Errorf("F16ToFloat32(-0) bits = %#08x, want -0", got)
	}
	// NaN keeps its payload, moved to the top of the float32 mantissa.
	if got := math.Float32bits(F16ToFloat32(0x7d01)); got != 0x7fa02000 {
		t.Errorf("F16ToFloat32(NaN 0x7d01) bits = %#08x, want 0x7fa02000", got)
	}
	if got := math.Float32bits(F16ToFloat32(0xfe00)); got != 0xffc00000 {
		t.Errorf("F16ToFloat32(-NaN 0xfe00) bits = %#08x, want 0xffc00000", got)
	}
}

func TestBF16RoundTripIsExactForBF16Values(t *testing.T) {
	// Every non-NaN bf16 pattern widens and narrows back to itself.
	for b := 0; b < 1<<16; b++ {
		h := uint16(b)
		f := BF16ToFloat32(h)
		if f != f {
			continue
		}
		if got := Float32ToBF16(f); got != h {
			t.Fatalf("bf16 %#04x -> %v -> %#04x", h, f, got)
		}
	}
}
