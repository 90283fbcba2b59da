package gguf

import (
	"encoding/binary"
	"math"
	"testing"
)

// FuzzQuantize feeds arbitrary values through every encoder: each either
// refuses them with an error (non-finite or beyond f16) or stores a block
// that decodes to the nearest point of its own grid.
func FuzzQuantize(f *testing.F) {
	seed := make([]byte, 4*256)
	for i, v := range randomValues(256, 1) {
		binary.LittleEndian.PutUint32(seed[4*i:], math.Float32bits(v))
	}
	f.Add(seed)
	f.Add(make([]byte, 4*256))
	f.Fuzz(func(t *testing.T, raw []byte) {
		x := make([]float32, 256)
		for i := range x {
			if 4*i+4 <= len(raw) {
				x[i] = math.Float32frombits(binary.LittleEndian.Uint32(raw[4*i:]))
			}
		}
		finite := true
		for _, v := range x {
			finite = finite && abs32(v) <= maxF16
		}
		for _, typ := range []TensorType{F16, Q5_0, Q5_1, Q8_0, Q4_K, Q5_K, Q6_K} {
			data, err := Encode(typ, x)
			if err != nil {
				if finite {
					t.Fatalf("%s refused finite values: %v", typ, err)
				}
				continue
			}
			if !finite {
				t.Fatalf("%s accepted values beyond f16", typ)
			}
			back, err := Decode(typ, data, len(x))
			if err != nil {
				t.Fatal(err)
			}
			switch typ {
			case Q8_0:
				for b := 0; b < 8; b++ {
					d := F16ToFloat32(binary.LittleEndian.Uint16(data[34*b:]))
					for i := 32 * b; i < 32*b+32; i++ {
						checkOnGrid(t, i, x[i], back[i], d, 0, -127, 127)
					}
				}
			case Q5_0, Q5_1, Q5_K:
				checkQ5Grid(t, typ, x, back, data)
			case Q4_K:
				d := F16ToFloat32(binary.LittleEndian.Uint16(data[0:]))
				dmin := F16ToFloat32(binary.LittleEndian.Uint16(data[2:]))
				for j := 0; j < 8; j++ {
					sc, m := q4KScaleMin(j, data[4:16])
					for l := 0; l < 32; l++ {
						checkOnGrid(t, 32*j+l, x[32*j+l], back[32*j+l], d*float32(sc), dmin*float32(m), 0, 15)
					}
				}
			case Q6_K:
				d := F16ToFloat32(binary.LittleEndian.Uint16(data[208:]))
				for j := 0; j < 16; j++ {
					step := d * float32(int8(data[192+j]))
					for l := 0; l < 16; l++ {
						checkOnGrid(t, 16*j+l, x[16*j+l], back[16*j+l], step, 0, -32, 31)
					}
				}
			case F16:
				for i, v := range x {
					if e := abs32(back[i] - v); e > abs32(v)/2048+3e-8 {
						t.Fatalf("f16 value %d: %g back as %g", i, v, back[i])
					}
				}
			}
		}
	})
}
