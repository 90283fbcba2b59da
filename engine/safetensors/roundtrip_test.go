package safetensors

import (
	"encoding/binary"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

func TestRoundTripEveryDType(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "model.safetensors")
	f32 := []float32{1.5, -2.25, float32(math.Inf(1)), 0, 3e-39, -7}
	bf := []float32{1, -0.5, 3.140625, float32(math.Inf(-1))} // exact in bf16
	i32 := []int32{-1, 0, 7, math.MaxInt32, math.MinInt32, 42}
	f16 := []byte{0x00, 0x3c, 0x00, 0xc0} // 1.0, -2.0
	i64 := make([]byte, 16)
	minus3 := int64(-3)
	binary.LittleEndian.PutUint64(i64, uint64(minus3))
	binary.LittleEndian.PutUint64(i64[8:], 1<<40)
	tensors := []Tensor{
		F32Tensor("f32", []int{2, 3}, f32),
		BF16Tensor("bf16", []int{4}, bf),
		I32Tensor("i32", []int{3, 2}, i32),
		{Name: "f16", DType: "F16", Shape: []int{2}, Data: f16},
		{Name: "i64", DType: "I64", Shape: []int{2}, Data: i64},
		{Name: "u8", DType: "U8", Shape: []int{3}, Data: []byte{0, 128, 255}},
		{Name: "i8", DType: "I8", Shape: []int{1, 1, 1}, Data: []byte{0x80}},
		{Name: "f64", DType: "F64", Shape: []int{}, Data: make([]byte, 8)},
		{Name: "bool", DType: "BOOL", Shape: []int{1}, Data: []byte{1}},
		{Name: "empty", DType: "F32", Shape: []int{0, 4}, Data: nil},
	}
	meta := map[string]string{"format": "pt", "note": "round \"trip\""}
	if err := Write(path, tensors, meta); err != nil {
		t.Fatal(err)
	}
	f, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if got := f.Metadata(); !reflect.DeepEqual(got, meta) {
		t.Errorf("metadata = %v, want %v", got, meta)
	}
	want := []string{"bf16", "bool", "empty", "f16", "f32", "f64", "i32", "i64", "i8", "u8"}
	if got := f.Names(); !reflect.DeepEqual(got, want) {
		t.Errorf("names = %v, want %v", got, want)
	}
	for _, tt := range tensors {
		info, ok := f.Info(tt.Name)
		if !ok {
			t.Fatalf("tensor %q missing", tt.Name)
		}
		if info.DType != tt.DType || !reflect.DeepEqual(info.Shape, tt.Shape) || info.File != path {
			t.Errorf("%s: info = %+v, want dtype %s shape %v file %s", tt.Name, info, tt.DType, tt.Shape, path)
		}
		raw, err := f.Raw(tt.Name)
		if err != nil {
			t.Fatal(err)
		}
		if len(raw) != len(tt.Data) || (len(raw) > 0 && !reflect.DeepEqual(raw, tt.Data)) {
			t.Errorf("%s: raw bytes differ: %v vs %v", tt.Name, raw, tt.Data)
		}
	}
	checkFloats(t, f, "f32", f32)
	checkFloats(t, f, "bf16", bf)
	checkFloats(t, f, "f16", []float32{1, -2})
	if got, err := f.Int32("i32"); err != nil || !reflect.DeepEqual(got, i32) {
		t.Errorf("i32 = %v, %v; want %v", got, err, i32)
	}
	if _, err := f.Int32("i64"); err == nil {
		t.Error("i64 holding 2^40 narrowed to int32 without an error")
	}
	if _, err := f.Float32("i32"); err == nil {
		t.Error("Float32 of an I32 tensor gave no error")
	}
	if _, err := f.Float32("nope"); err == nil {
		t.Error("Float32 of a missing tensor gave no error")
	}
}

func checkFloats(t *testing.T, f interface {
	Float32(string) ([]float32, error)
}, name string, want []float32) {
	t.Helper()
	got, err := f.Float32(name)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want) {
		t.Fatalf("%s: %d values, want %d", name, len(got), len(want))
	}
	for i := range want {
		if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
			t.Errorf("%s[%d] = %v, want %v", name, i, got[i], want[i])
		}
	}
}

func TestHeaderIsPaddedAndDataAligned(t *testing.T) {
	path := filepath.Join(t.TempDir(), "a.safetensors")
	// An odd-length bf16 tensor sorts before the f32 one by name; the data
	// layout must still put the f32 tensor at a 4-byte aligned offset.
	err := Write(path, []Tensor{
		BF16Tensor("a", []int{3}, []float32{1, 2, 3}),
		F32Tensor("b", []int{1}, []float32{4}),
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	buf, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	n := binary.LittleEndian.Uint64(buf)
	if n%8 != 0 {
		t.Errorf("header length %d is not a multiple of 8", n)
	}
	f, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, name := range f.Names() {
		e := f.tensors[name]
		if size := dtypeSizes[e.info.DType]; (8+int64(n)+e.begin)%int64(size) != 0 {
			t.Errorf("tensor %s starts at file offset %d, not aligned to %d", name, 8+int64(n)+e.begin, size)
		}
	}
	checkFloats(t, f, "b", []float32{4})
}
