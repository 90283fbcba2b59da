package safetensors

import (
	"encoding/binary"
	"os"
	"path/filepath"
	"testing"
)

// FuzzParseHeader feeds arbitrary bytes, as a whole file, to the parser. It
// must never panic, and whatever it accepts must be readable: every tensor's
// bytes inside the buffer and sized as its shape says.
func FuzzParseHeader(f *testing.F) {
	seed := func(header string, dataLen int) []byte {
		buf := make([]byte, 8+len(header)+dataLen)
		binary.LittleEndian.PutUint64(buf, uint64(len(header)))
		copy(buf[8:], header)
		return buf
	}
	path := filepath.Join(f.TempDir(), "seed.safetensors")
	err := Write(path, []Tensor{
		F32Tensor("a", []int{2, 2}, []float32{1, 2, 3, 4}),
		BF16Tensor("b", []int{3}, []float32{1, 2, 3}),
		I32Tensor("c", []int{1}, []int32{7}),
		{Name: "d", DType: "F16", Shape: []int{1}, Data: []byte{0, 0x3c}},
	}, map[string]string{"format": "pt"})
	if err != nil {
		f.Fatal(err)
	}
	good, err := os.ReadFile(path)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good)
	f.Add(good[:len(good)-1])
	f.Add(seed(`{"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}`, 8))
	f.Add(seed(`{"a": {"dtype": "U8", "shape": [4], "data_offsets": [0, 4]}, "b": {"dtype": "U8", "shape": [4], "data_offsets": [2, 6]}}`, 6))
	f.Add(seed(`{"w": {"dtype": "I64", "shape": [-1, -8], "data_offsets": [0, 64]}}`, 64))
	f.Add(seed(`{"__metadata__": {"k": "v"}}`, 0))
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, '{', '}'})

	f.Fuzz(func(t *testing.T, buf []byte) {
		file, err := parse("fuzz.safetensors", buf)
		if err != nil {
			return
		}
		for _, name := range file.Names() {
			info, ok := file.Info(name)
			if !ok {
				t.Fatalf("listed tensor %q has no info", name)
			}
			raw, err := file.Raw(name)
			if err != nil {
				t.Fatal(err)
			}
			size, _ := DTypeSize(info.DType)
			if len(raw) != info.NumElements()*size {
				t.Fatalf("tensor %q: %d bytes for shape %v of %s", name, len(raw), info.Shape, info.DType)
			}
			if v, err := file.Float32(name); err == nil && len(v) != info.NumElements() {
				t.Fatalf("tensor %q: Float32 gave %d values for %d elements", name, len(v), info.NumElements())
			}
			if v, err := file.Int32(name); err == nil && len(v) != info.NumElements() {
				t.Fatalf("tensor %q: Int32 gave %d values for %d elements", name, len(v), info.NumElements())
			}
		}
	})
}
