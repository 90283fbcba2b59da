package gguf

import (
	"bytes"
	"encoding/binary"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	parser "github.com/gpustack/gguf-parser-go"
)

// sampleFile has one metadata value of every type and a tensor of every
// type the package writes.
func sampleFile(t *testing.T) (*File, map[string][]byte) {
	t.Helper()
	f := &File{KV: []KV{
		{"general.architecture", "llama"},
		{"general.alignment", uint32(32)},
		{"t.u8", uint8(200)}, {"t.i8", int8(-7)}, {"t.u16", uint16(60000)}, {"t.i16", int16(-300)},
		{"t.u32", uint32(4000000000)}, {"t.i32", int32(-5)}, {"t.f32", float32(1.5)}, {"t.bool", true},
		{"t.u64", uint64(1 << 40)}, {"t.i64", int64(-1 << 40)}, {"t.f64", 2.25},
		{"t.strings", []string{"a", "", "ĠHello"}}, {"t.i32s", []int32{1, -2, 3}}, {"t.f32s", []float32{0.5, -1}},
		{"t.bools", []bool{true, false}},
	}}
	data := map[string][]byte{}
	x := randomValues(2*256, 9)
	for _, typ := range []TensorType{F32, F16, BF16, Q8_0, Q4_K, Q6_K} {
		enc, err := Encode(typ, x)
		if err != nil {
			t.Fatal(err)
		}
		name := "w." + strings.ToLower(typ.String())
		data[name] = enc
		f.Tensors = append(f.Tensors, Tensor{Name: name, Dims: []uint64{256, 2}, Type: typ,
			Data: func() ([]byte, error) { return enc, nil }})
	}
	// A 1-D tensor of odd size, so the next offset needs padding.
	odd := []byte{1, 0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0}
	data["odd"] = odd
	f.Tensors = append(f.Tensors, Tensor{Name: "odd", Dims: []uint64{3}, Type: F32, Data: func() ([]byte, error) { return odd, nil }})
	return f, data
}

func TestWriteReadsBackThroughGGUFParser(t *testing.T) {
	f, data := sampleFile(t)
	path := filepath.Join(t.TempDir(), "x.gguf")
	var progress []string
	if err := f.WriteFile(path, func(done, total int, name string) { progress = append(progress, name) }); err != nil {
		t.Fatal(err)
	}
	if len(progress) != len(f.Tensors) {
		t.Errorf("progress reported %d tensors, want %d", len(progress), len(f.Tensors))
	}
	gf, err := parser.ParseGGUFFile(path)
	if err != nil {
		t.Fatalf("gguf-parser-go: %v", err)
	}
	if gf.Header.Magic != parser.GGUFMagicGGUFLe || gf.Header.Version != parser.GGUFVersionV3 {
		t.Errorf("header magic %#x version %d", gf.Header.Magic, gf.Header.Version)
	}
	if int(gf.Header.MetadataKVCount) != len(f.KV) || int(gf.Header.TensorCount) != len(f.Tensors) {
		t.Errorf("counts: %d kv, %d tensors", gf.Header.MetadataKVCount, gf.Header.TensorCount)
	}
	kv := gf.Header.MetadataKV
	get := func(k string) parser.GGUFMetadataKV {
		v, ok := kv.Get(k)
		if !ok {
			t.Fatalf("metadata %s missing", k)
		}
		return v
	}
	if v := get("general.architecture").ValueString(); v != "llama" {
		t.Errorf("architecture %q", v)
	}
	checks := []struct {
		key       string
		got, want any
	}{
		{"t.u8", get("t.u8").ValueUint8(), uint8(200)},
		{"t.i8", get("t.i8").ValueInt8(), int8(-7)},
		{"t.u16", get("t.u16").ValueUint16(), uint16(60000)},
		{"t.i16", get("t.i16").ValueInt16(), int16(-300)},
		{"t.u32", get("t.u32").ValueUint32(), uint32(4000000000)},
		{"t.i32", get("t.i32").ValueInt32(), int32(-5)},
		{"t.f32", get("t.f32").ValueFloat32(), float32(1.5)},
		{"t.bool", get("t.bool").ValueBool(), true},
		{"t.u64", get("t.u64").ValueUint64(), uint64(1 << 40)},
		{"t.i64", get("t.i64").ValueInt64(), int64(-1 << 40)},
		{"t.f64", get("t.f64").ValueFloat64(), 2.25},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s = %v, want %v", c.key, c.got, c.want)
		}
	}
	if s := get("t.strings").ValueArray().ValuesString(); !slices.Equal(s, []string{"a", "", "ĠHello"}) {
		t.Errorf("t.strings = %q", s)
	}
	if s := get("t.i32s").ValueArray().ValuesInt32(); !slices.Equal(s, []int32{1, -2, 3}) {
		t.Errorf("t.i32s = %v", s)
	}
	if s := get("t.f32s").ValueArray().ValuesFloat32(); !slices.Equal(s, []float32{0.5, -1}) {
		t.Errorf("t.f32s = %v", s)
	}
	if s := get("t.bools").ValueArray().ValuesBool(); !slices.Equal(s, []bool{true, false}) {
		t.Errorf("t.bools = %v", s)
	}

	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if gf.TensorDataStartOffset%32 != 0 {
		t.Errorf("tensor data starts at %d, not a multiple of 32", gf.TensorDataStartOffset)
	}
	for i, ti := range gf.TensorInfos {
		want := f.Tensors[i]
		if ti.Name != want.Name || !slices.Equal(ti.Dimensions, want.Dims) || uint32(ti.Type) != uint32(want.Type) {
			t.Errorf("tensor %d: read %s %v type %d, wrote %s %v %s", i, ti.Name, ti.Dimensions, ti.Type, want.Name, want.Dims, want.Type)
		}
		if ti.Offset%32 != 0 {
			t.Errorf("tensor %s at offset %d, not aligned to 32", ti.Name, ti.Offset)
		}
		start := gf.TensorDataStartOffset + int64(ti.Offset)
		d := data[ti.Name]
		if got := raw[start : start+int64(len(d))]; !bytes.Equal(got, d) {
			t.Errorf("tensor %s: data at its offset differs from what was written", ti.Name)
		}
		if sz, _ := want.Size(); int64(ti.Bytes()) != sz {
			t.Errorf("tensor %s: parser sizes it %d bytes, writer %d", ti.Name, ti.Bytes(), sz)
		}
	}
	if int64(len(raw))%32 != 0 {
		t.Errorf("file length %d is not padded to the alignment", len(raw))
	}
}

func TestHeaderBytes(t *testing.T) {
	f := &File{KV: []KV{{"a", uint32(7)}}}
	var b bytes.Buffer
	if err := f.Write(&b, nil); err != nil {
		t.Fatal(err)
	}
	want := []byte("GGUF")
	want = binary.LittleEndian.AppendUint32(want, 3)
	want = binary.LittleEndian.AppendUint64(want, 0) // tensors
	want = binary.LittleEndian.AppendUint64(want, 1) // kv
	want = binary.LittleEndian.AppendUint64(want, 1) // key length
	want = append(want, 'a')
	want = binary.LittleEndian.AppendUint32(want, uint32(TypeUint32))
	want = binary.LittleEndian.AppendUint32(want, 7)
	want = append(want, make([]byte, 32-len(want)%32)...)
	if !bytes.Equal(b.Bytes(), want) {
		t.Errorf("bytes\n got %x\nwant %x", b.Bytes(), want)
	}
}

func TestWriteRejectsBadInput(t *testing.T) {
	good := func() ([]byte, error) { return make([]byte, 34), nil }
	cases := map[string]*File{
		"duplicate key":     {KV: []KV{{"a", uint8(1)}, {"a", uint8(2)}}},
		"unsupported value": {KV: []KV{{"a", 3}}},
		"bad alignment":     {KV: []KV{{"general.alignment", uint32(12)}}},
		"ragged row":        {Tensors: []Tensor{{Name: "w", Dims: []uint64{33}, Type: Q8_0, Data: good}}},
		"duplicate tensor":  {Tensors: []Tensor{{Name: "w", Dims: []uint64{32}, Type: Q8_0, Data: good}, {Name: "w", Dims: []uint64{32}, Type: Q8_0, Data: good}}},
		"wrong data size":   {Tensors: []Tensor{{Name: "w", Dims: []uint64{64}, Type: Q8_0, Data: good}}},
	}
	for name, f := range cases {
		path := filepath.Join(t.TempDir(), "bad.gguf")
		if err := f.WriteFile(path, nil); err == nil {
			t.Errorf("%s: no error", name)
		} else if _, statErr := os.Stat(path); statErr == nil {
			t.Errorf("%s: a file was left behind after %v", name, err)
		}
	}
}
