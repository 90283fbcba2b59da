package gguf

import (
	"encoding/binary"
	"math"
	"math/rand/v2"
	"testing"
)

func TestFloat32ToF16(t *testing.T) {
	cases := []struct {
		in   float32
		want uint16
	}{
		{0, 0x0000},
		{float32(math.Copysign(0, -1)), 0x8000},
		{1, 0x3c00},
		{-2, 0xc000},
		{0.1, 0x2e66},           // 0.0999755859375 is nearest
		{65504, 0x7bff},         // largest finite half
		{65519, 0x7bff},         // below the midpoint to infinity
		{65520, 0x7c00},         // the midpoint rounds to even: infinity
		{1e6, 0x7c00},           // overflow
		{5.9604645e-8, 0x0001},  // smallest subnormal
		{2.9802322e-8, 0x0000},  // half of it: ties to even, zero
		{4.4703484e-8, 0x0001},  // 0.75 of it rounds up
		{6.097555e-5, 0x03ff},   // largest subnormal
		{6.1035156e-5, 0x0400},  // smallest normal
		{1.0009766, 0x3c01},     // 1 + 2^-10
		{1.00048828125, 0x3c00}, // 1 + 2^-11: tie to even (down)
		{1.00146484375, 0x3c02}, // 1 + 3*2^-11: tie to even (up)
		{float32(math.Inf(-1)), 0xfc00},
	}
	for _, c := range cases {
		if got := Float32ToF16(c.in); got != c.want {
			t.Errorf("Float32ToF16(%g) = %#04x, want %#04x", c.in, got, c.want)
		}
	}
	if h := Float32ToF16(float32(math.NaN())); h&0x7c00 != 0x7c00 || h&0x3ff == 0 {
		t.Errorf("NaN became %#04x", h)
	}
	// Every finite half survives the round trip.
	for h := 0; h < 0x10000; h++ {
		if h&0x7c00 == 0x7c00 {
			continue
		}
		if got := Float32ToF16(F16ToFloat32(uint16(h))); got != uint16(h) {
			t.Fatalf("half %#04x -> %g -> %#04x", h, F16ToFloat32(uint16(h)), got)
		}
	}
}

func randomValues(n int, seed uint64) []float32 {
	rng := rand.New(rand.NewPCG(seed, 1))
	x := make([]float32, n)
	for i := range x {
		x[i] = float32(rng.NormFloat64() * 0.05)
		if i%97 == 0 {
			x[i] *= 8 // outliers, as real weights have
		}
	}
	return x
}

func TestQ8_0LayoutByHand(t *testing.T) {
	// d = 2/127 rounds to the half 0x2008 (0.01575469970703125): every
	// value is q*d for the q chosen below, so the block is exact.
	d := F16ToFloat32(0x2008)
	x := make([]float32, 32)
	qs := make([]int8, 32)
	for i := range x {
		qs[i] = int8(i*8 - 127)
		if i == 31 {
			qs[i] = 127
		}
		x[i] = d * float32(qs[i])
	}
	got := QuantizeQ8_0(x)
	if len(got) != 34 {
		t.Fatalf("block is %d bytes, want 34", len(got))
	}
	if h := binary.LittleEndian.Uint16(got); h != 0x2008 {
		t.Errorf("d = %#04x, want 0x2008", h)
	}
	for i, q := range qs {
		if int8(got[2+i]) != q {
			t.Errorf("q[%d] = %d, want %d", i, int8(got[2+i]), q)
		}
	}
	back, err := Decode(Q8_0, got, 32)
	if err != nil {
		t.Fatal(err)
	}
	for i := range x {
		if back[i] != x[i] {
			t.Errorf("value %d: %g back as %g", i, x[i], back[i])
		}
	}
}

func TestQ8_0ErrorBound(t *testing.T) {
	x := randomValues(32*64, 7)
	data := QuantizeQ8_0(x)
	back, err := Decode(Q8_0, data, len(x))
	if err != nil {
		t.Fatal(err)
	}
	for b := 0; b < len(x)/32; b++ {
		d := F16ToFloat32(binary.LittleEndian.Uint16(data[34*b:]))
		for i := 32 * b; i < 32*b+32; i++ {
			if e := abs32(x[i] - back[i]); e > d/2*1.0001 {
				t.Fatalf("value %d: error %g beyond half a step (%g)", i, e, d/2)
			}
		}
	}
}

// kScales and kMins are the by-hand K-quant blocks' sub-block scales and
// mins: sc = j+1 (j<4) or 40+j (j>=4, needing the high bits) and
// m = 2j+1 (j<4) or 50+j.
var kScales, kMins = [8]int{1, 2, 3, 4, 44, 45, 46, 47}, [8]int{1, 3, 5, 7, 54, 55, 56, 57}

// kQuantHeader writes the header Q4_K and Q5_K share into blk: d = 0.5,
// dmin = 0.25 and kScales, kMins packed in 12 bytes as the format defines.
func kQuantHeader(blk []byte) {
	binary.LittleEndian.PutUint16(blk[0:], 0x3800) // d = 0.5
	binary.LittleEndian.PutUint16(blk[2:], 0x3400) // dmin = 0.25
	sc, mn, s := kScales, kMins, blk[4:16]
	for j := 0; j < 4; j++ {
		s[j] = byte(sc[j]) | byte(sc[j+4]>>4)<<6
		s[j+4] = byte(mn[j]) | byte(mn[j+4]>>4)<<6
		s[j+8] = byte(sc[j+4]&15) | byte(mn[j+4]&15)<<4
	}
}

// checkKByHand decodes the one-block blk of typ and checks value l of
// sub-block j is d*sc[j]*q(j, l) - dmin*m[j] exactly.
func checkKByHand(t *testing.T, typ TensorType, blk []byte, q func(j, l int) int) {
	t.Helper()
	got, err := Decode(typ, blk, 256)
	if err != nil {
		t.Fatal(err)
	}
	for j := 0; j < 8; j++ {
		for l := 0; l < 32; l++ {
			want := 0.5*float32(kScales[j])*float32(q(j, l)) - 0.25*float32(kMins[j])
			if g := got[32*j+l]; g != want {
				t.Fatalf("%s sub-block %d value %d: got %g, want %g", typ, j, l, g, want)
			}
		}
	}
}

func TestQ4KLayoutByHand(t *testing.T) {
	// A block built byte by byte from the format's definition (the header
	// with kScales and kMins); value l of sub-block j is q=(l+j)%16.
	blk := make([]byte, 144)
	kQuantHeader(blk)
	for c := 0; c < 4; c++ {
		for l := 0; l < 32; l++ {
			lo, hi := (l+2*c)%16, (l+2*c+1)%16
			blk[16+32*c+l] = byte(lo | hi<<4)
		}
	}
	checkKByHand(t, Q4_K, blk, func(j, l int) int { return (l + j) % 16 })
}

// checkOnGrid checks that every value went to the nearest point of its
// sub-block's stored grid {step*q - off : q in 0..qmax} (or qmin..qmax for
// symmetric grids), clamped to the ends, and returns the squared error sum.
func checkOnGrid(t *testing.T, i int, x, back, step, off float32, qmin, qmax int) float64 {
	t.Helper()
	e := abs32(back - x)
	lo, hi := step*float32(qmin)-off, step*float32(qmax)-off
	if lo > hi {
		lo, hi = hi, lo
	}
	switch {
	case x < lo:
		if abs32(back-lo) > 1e-6*abs32(lo)+1e-12 {
			t.Fatalf("value %d: %g below the grid [%g, %g] came back as %g, not the lower end", i, x, lo, hi, back)
		}
	case x > hi:
		if abs32(back-hi) > 1e-6*abs32(hi)+1e-12 {
			t.Fatalf("value %d: %g above the grid [%g, %g] came back as %g, not the upper end", i, x, lo, hi, back)
		}
	default:
		if e > abs32(step)/2*1.0001+1e-12 {
			t.Fatalf("value %d: %g came back as %g, more than half a step (%g) away", i, x, back, abs32(step)/2)
		}
	}
	return float64(e * e)
}

func TestQ4KErrorBound(t *testing.T) {
	x := randomValues(256*32, 3)
	for i := 0; i < 256; i++ {
		x[256*5+i] = 0.3 + float32(i)*1e-3 // an all-positive block: min 0
	}
	data := QuantizeQ4K(x)
	back, err := Decode(Q4_K, data, len(x))
	if err != nil {
		t.Fatal(err)
	}
	var se, sx float64
	for b := 0; b < len(x)/256; b++ {
		blk := data[144*b:]
		d := F16ToFloat32(binary.LittleEndian.Uint16(blk[0:]))
		dmin := F16ToFloat32(binary.LittleEndian.Uint16(blk[2:]))
		for j := 0; j < 8; j++ {
			sc, m := q4KScaleMin(j, blk[4:16])
			for l := 0; l < 32; l++ {
				i := 256*b + 32*j + l
				se += checkOnGrid(t, i, x[i], back[i], d*float32(sc), dmin*float32(m), 0, 15)
				sx += float64(x[i] * x[i])
			}
		}
	}
	if rel := math.Sqrt(se / sx); rel > 0.12 {
		t.Errorf("relative RMS error %.3f, want below 0.12 for 4.5 bits per weight", rel)
	} else {
		t.Logf("Q4_K relative RMS error %.4f", rel)
	}
}

func TestQ6KLayoutByHand(t *testing.T) {
	// Sub-block j has scale j-8 (negative ones too); value i has
	// q = (i*7)%64 stored as 6 bits split over ql and qh.
	blk := make([]byte, 210)
	ql, qh, sc := blk[0:128], blk[128:192], blk[192:208]
	binary.LittleEndian.PutUint16(blk[208:], 0x2c00) // d = 1/16
	for j := 0; j < 16; j++ {
		sc[j] = byte(int8(j - 8))
	}
	q := func(i int) int { return (i * 7) % 64 }
	for h := 0; h < 2; h++ {
		for l := 0; l < 32; l++ {
			b := 128 * h
			ql[64*h+l] = byte(q(b+l)&15 | (q(b+l+64)&15)<<4)
			ql[64*h+l+32] = byte(q(b+l+32)&15 | (q(b+l+96)&15)<<4)
			qh[32*h+l] = byte(q(b+l)>>4 | (q(b+l+32)>>4)<<2 | (q(b+l+64)>>4)<<4 | (q(b+l+96)>>4)<<6)
		}
	}
	got, err := Decode(Q6_K, blk, 256)
	if err != nil {
		t.Fatal(err)
	}
	for i := range got {
		want := float32(1.0/16) * float32(i/16-8) * float32(q(i)-32)
		if got[i] != want {
			t.Fatalf("value %d: got %g, want %g", i, got[i], want)
		}
	}
}

func TestQ6KErrorBound(t *testing.T) {
	x := randomValues(256*32, 5)
	data := QuantizeQ6K(x)
	back, err := Decode(Q6_K, data, len(x))
	if err != nil {
		t.Fatal(err)
	}
	var se, sx float64
	for b := 0; b < len(x)/256; b++ {
		blk := data[210*b:]
		d := F16ToFloat32(binary.LittleEndian.Uint16(blk[208:]))
		for j := 0; j < 16; j++ {
			step := d * float32(int8(blk[192+j]))
			for l := 0; l < 16; l++ {
				i := 256*b + 16*j + l
				se += checkOnGrid(t, i, x[i], back[i], step, 0, -32, 31)
				sx += float64(x[i] * x[i])
			}
		}
	}
	if rel := math.Sqrt(se / sx); rel > 0.03 {
		t.Errorf("relative RMS error %.4f, want below 0.03 for 6.5 bits per weight", rel)
	} else {
		t.Logf("Q6_K relative RMS error %.4f", rel)
	}
}

func TestEncodeRejectsRaggedRows(t *testing.T) {
	for _, typ := range []TensorType{Q5_0, Q5_1, Q8_0, Q4_K, Q5_K, Q6_K} {
		if _, err := Encode(typ, make([]float32, typ.BlockSize()+1)); err == nil {
			t.Errorf("%s: %d values encoded without error", typ, typ.BlockSize()+1)
		}
	}
}

func TestBF16AndF16Encode(t *testing.T) {
	x := []float32{1, -0.5, 3.140625, 1e-3}
	for _, typ := range []TensorType{F16, BF16, F32} {
		data, err := Encode(typ, x)
		if err != nil {
			t.Fatal(err)
		}
		back, err := Decode(typ, data, len(x))
		if err != nil {
			t.Fatal(err)
		}
		for i := range x {
			tol := float32(0)
			switch typ {
			case F16:
				tol = abs32(x[i]) / 2048
			case BF16:
				tol = abs32(x[i]) / 256
			}
			if e := abs32(back[i] - x[i]); e > tol {
				t.Errorf("%s value %g back as %g", typ, x[i], back[i])
			}
		}
	}
}

// BenchmarkEncode reports how fast each type is written, in values per
// second (one core): the export time of a model is about its parameter
// count over this rate.
func BenchmarkEncode(b *testing.B) {
	x := randomValues(4096*256, 4)
	for _, typ := range []TensorType{F16, BF16, Q5_0, Q5_1, Q8_0, Q4_K, Q5_K, Q6_K} {
		b.Run(typ.String(), func(b *testing.B) {
			for b.Loop() {
				if _, err := Encode(typ, x); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(len(x))*float64(b.N)/b.Elapsed().Seconds()/1e6, "Mvalues/s")
		})
	}
}

func TestQ5LayoutByHand(t *testing.T) {
	// Value i has code q = (7i+3)%32: low four bits in qs (values i and
	// i+16 share byte i), the fifth bit in bit i of the little-endian qh.
	q := func(i int) int { return (7*i + 3) % 32 }
	var qs [16]byte
	var qh uint32
	for i := 0; i < 16; i++ {
		qs[i] = byte(q(i)&15 | (q(i+16)&15)<<4)
	}
	for i := 0; i < 32; i++ {
		qh |= uint32(q(i)>>4) << i
	}
	q50 := make([]byte, 22)
	binary.LittleEndian.PutUint16(q50, 0x3800) // d = 0.5
	binary.LittleEndian.PutUint32(q50[2:], qh)
	copy(q50[6:], qs[:])
	q51 := make([]byte, 24)
	binary.LittleEndian.PutUint16(q51, 0x3400)     // d = 0.25
	binary.LittleEndian.PutUint16(q51[2:], 0xbc00) // m = -1
	binary.LittleEndian.PutUint32(q51[4:], qh)
	copy(q51[8:], qs[:])
	for _, c := range []struct {
		typ  TensorType
		blk  []byte
		want func(q int) float32
	}{
		{Q5_0, q50, func(q int) float32 { return 0.5 * float32(q-16) }},
		{Q5_1, q51, func(q int) float32 { return 0.25*float32(q) - 1 }},
	} {
		got, err := Decode(c.typ, c.blk, 32)
		if err != nil {
			t.Fatal(err)
		}
		for i := range got {
			if got[i] != c.want(q(i)) {
				t.Fatalf("%s value %d: got %g, want %g", c.typ, i, got[i], c.want(q(i)))
			}
		}
	}
}

func TestQ5KLayoutByHand(t *testing.T) {
	// Q4_K's header (kQuantHeader); value l of
	// sub-block j has q = (l+3j)%32, its fifth bit in bit j of qh[l].
	blk := make([]byte, 176)
	kQuantHeader(blk)
	q := func(j, l int) int { return (l + 3*j) % 32 }
	qh, qs := blk[16:48], blk[48:]
	for j := 0; j < 8; j++ {
		for l := 0; l < 32; l++ {
			qh[l] |= byte(q(j, l)>>4) << j
			qs[32*(j/2)+l] |= byte(q(j, l)&15) << (4 * (j % 2))
		}
	}
	checkKByHand(t, Q5_K, blk, q)
}

// The 5-bit formats put every value at the nearest point of its block's
// stored grid, and lose about half what the 4-bit ones do.
func TestQ5ErrorBounds(t *testing.T) {
	x := randomValues(256*32, 9)
	for i := 0; i < 256; i++ {
		x[256*7+i] = 0.3 + float32(i)*1e-3 // an all-positive block
	}
	for _, c := range []struct {
		typ    TensorType
		maxRel float64
	}{{Q5_0, 0.06}, {Q5_1, 0.06}, {Q5_K, 0.06}} {
		data, err := Encode(c.typ, x)
		if err != nil {
			t.Fatal(err)
		}
		back, err := Decode(c.typ, data, len(x))
		if err != nil {
			t.Fatal(err)
		}
		se, sx := checkQ5Grid(t, c.typ, x, back, data)
		rel := math.Sqrt(se / sx)
		if rel > c.maxRel {
			t.Errorf("%s: relative RMS error %.4f, want below %.2f", c.typ, rel, c.maxRel)
		}
		t.Logf("%s relative RMS error %.4f", c.typ, rel)
	}
}

// checkQ5Grid checks every value against its block's grid (checkOnGrid)
// and returns the squared error and squared value sums.
func checkQ5Grid(t *testing.T, typ TensorType, x, back []float32, data []byte) (se, sx float64) {
	t.Helper()
	for i := range x {
		sx += float64(x[i] * x[i])
	}
	switch typ {
	case Q5_0:
		for b := 0; b < len(x)/32; b++ {
			d := F16ToFloat32(binary.LittleEndian.Uint16(data[22*b:]))
			for i := 32 * b; i < 32*b+32; i++ {
				se += checkOnGrid(t, i, x[i], back[i], d, 16*d, 0, 31)
			}
		}
	case Q5_1:
		for b := 0; b < len(x)/32; b++ {
			d := F16ToFloat32(binary.LittleEndian.Uint16(data[24*b:]))
			m := F16ToFloat32(binary.LittleEndian.Uint16(data[24*b+2:]))
			for i := 32 * b; i < 32*b+32; i++ {
				se += checkOnGrid(t, i, x[i], back[i], d, -m, 0, 31)
			}
		}
	case Q5_K:
		for b := 0; b < len(x)/256; b++ {
			blk := data[176*b:]
			d := F16ToFloat32(binary.LittleEndian.Uint16(blk[0:]))
			dmin := F16ToFloat32(binary.LittleEndian.Uint16(blk[2:]))
			for j := 0; j < 8; j++ {
				sc, m := q4KScaleMin(j, blk[4:16])
				for l := 0; l < 32; l++ {
					i := 256*b + 32*j + l
					se += checkOnGrid(t, i, x[i], back[i], d*float32(sc), dmin*float32(m), 0, 31)
				}
			}
		}
	}
	return se, sx
}
