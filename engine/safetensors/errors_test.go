package safetensors

import (
	"encoding/binary"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// rawFile writes a safetensors file with the given header text and data
// length, so tests can state exactly what a broken header claims.
func rawFile(t *testing.T, header string, dataLen int) string {
	t.Helper()
	buf := make([]byte, 8+len(header)+dataLen)
	binary.LittleEndian.PutUint64(buf, uint64(len(header)))
	copy(buf[8:], header)
	path := filepath.Join(t.TempDir(), "weights.safetensors")
	if err := os.WriteFile(path, buf, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// openErr opens path, expecting an error that mentions path and every one
// of want.
func openErr(t *testing.T, path string, want ...string) {
	t.Helper()
	f, err := Open(path)
	if err == nil {
		f.Close()
		t.Fatalf("Open succeeded, want an error mentioning %q", want)
	}
	msg := err.Error()
	t.Log(msg)
	if !strings.Contains(msg, path) {
		t.Errorf("error %q does not name the file %s", msg, path)
	}
	for _, w := range want {
		if !strings.Contains(msg, w) {
			t.Errorf("error %q does not mention %q", msg, w)
		}
	}
}

func TestOpenTruncatedFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "model.safetensors")
	err := Write(path, []Tensor{
		F32Tensor("model.embed_tokens.weight", []int{4, 2}, make([]float32, 8)),
		F32Tensor("model.norm.weight", []int{2}, []float32{1, 1}),
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	info, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	// The norm sorts last in the data section; cutting 3 bytes breaks it.
	if err := os.Truncate(path, info.Size()-3); err != nil {
		t.Fatal(err)
	}
	openErr(t, path, `"model.norm.weight"`, "truncated")

	// Cut inside the header: the length prefix now exceeds the file.
	if err := os.Truncate(path, 20); err != nil {
		t.Fatal(err)
	}
	openErr(t, path, "header length")

	if err := os.Truncate(path, 5); err != nil {
		t.Fatal(err)
	}
	openErr(t, path, "5 bytes")

	if err := os.Truncate(path, 0); err != nil {
		t.Fatal(err)
	}
	openErr(t, path, "0 bytes")
}

func TestOpenHeaderLengthBeyondFile(t *testing.T) {
	path := rawFile(t, `{}`, 0)
	buf, _ := os.ReadFile(path)
	binary.LittleEndian.PutUint64(buf, 1<<62)
	if err := os.WriteFile(path, buf, 0o644); err != nil {
		t.Fatal(err)
	}
	openErr(t, path, "header length 4611686018427387904")
}

func TestOpenBadHeaders(t *testing.T) {
	tests := []struct {
		name    string
		header  string
		dataLen int
		want    []string
	}{
		{"garbage", `{not json`, 0, []string{"not valid JSON"}},
		{"array", `[1, 2]`, 0, []string{"JSON object"}},
		{"trailing bytes", `{}xyz`, 0, []string{"after the JSON object"}},
		{"entry garbage", `{"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, "x"]}}`, 8, []string{`"w"`}},
		{"entry not an object", `{"w": 7}`, 0, []string{`"w"`}},
		{"unknown dtype", `{"w": {"dtype": "F8_E4M3", "shape": [2], "data_offsets": [0, 2]}}`, 2, []string{`"w"`, `"F8_E4M3"`, "BF16"}},
		{"missing shape", `{"w": {"dtype": "F32", "data_offsets": [0, 4]}}`, 4, []string{`"w"`, "shape"}},
		{"negative dim", `{"w": {"dtype": "F32", "shape": [-2, -2], "data_offsets": [0, 16]}}`, 16, []string{`"w"`, "negative"}},
		{"overflowing dims", `{"w": {"dtype": "F32", "shape": [4294967296, 4294967296], "data_offsets": [0, 0]}}`, 0, []string{`"w"`, "overflows"}},
		{"overflowing bytes", `{"w": {"dtype": "F64", "shape": [4611686018427387904], "data_offsets": [0, 0]}}`, 0, []string{`"w"`}},
		{"fractional dim", `{"w": {"dtype": "F32", "shape": [1.5], "data_offsets": [0, 4]}}`, 4, []string{`"w"`}},
		{"size mismatch", `{"w": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}}`, 8, []string{`"w"`, "hold 8 bytes"}},
		{"beyond the data", `{"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}, "w": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}}`, 8, []string{`"w"`, "past the end"}},
		{"offsets reversed", `{"w": {"dtype": "F32", "shape": [0], "data_offsets": [8, 4]}}`, 8, []string{`"w"`, "[8, 4]"}},
		{"negative offset", `{"w": {"dtype": "U8", "shape": [2], "data_offsets": [-2, 0]}}`, 8, []string{`"w"`}},
		{"one offset", `{"w": {"dtype": "U8", "shape": [2], "data_offsets": [2]}}`, 8, []string{`"w"`, "data_offsets"}},
		{"overlap", `{"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}, "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}}`, 12, []string{`"a"`, `"b"`, "overlaps"}},
		{"same range", `{"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}, "b": {"dtype": "I32", "shape": [1], "data_offsets": [0, 4]}}`, 4, []string{`"a"`, `"b"`, "overlaps"}},
		{"duplicate", `{"w": {"dtype": "U8", "shape": [1], "data_offsets": [0, 1]}, "w": {"dtype": "U8", "shape": [1], "data_offsets": [1, 2]}}`, 2, []string{`"w"`, "twice"}},
		{"metadata not strings", `{"__metadata__": {"total": 5}}`, 0, []string{"__metadata__"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			openErr(t, rawFile(t, tt.header, tt.dataLen), tt.want...)
		})
	}
}

func TestOpenAcceptsPaddingAndEmptyTensors(t *testing.T) {
	path := rawFile(t, `{"__metadata__": {"format": "pt"}, "e": {"dtype": "F32", "shape": [0], "data_offsets": [4, 4]}, "w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}   `, 4)
	f, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if got := f.Metadata()["format"]; got != "pt" {
		t.Errorf("metadata format = %q", got)
	}
	if v, err := f.Float32("e"); err != nil || len(v) != 0 {
		t.Errorf("empty tensor: %v, %v", v, err)
	}
}

func TestReadAfterCloseIsAnError(t *testing.T) {
	path := filepath.Join(t.TempDir(), "a.safetensors")
	if err := Write(path, []Tensor{F32Tensor("w", []int{1}, []float32{2})}, nil); err != nil {
		t.Fatal(err)
	}
	f, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := f.Float32("w"); err == nil || !strings.Contains(err.Error(), "Close") {
		t.Errorf("Float32 after Close: %v", err)
	}
	if err := f.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

func TestWriteRejectsBadTensors(t *testing.T) {
	path := filepath.Join(t.TempDir(), "a.safetensors")
	tests := []struct {
		name    string
		tensors []Tensor
		want    string
	}{
		{"short data", []Tensor{{Name: "w", DType: "F32", Shape: []int{2}, Data: make([]byte, 4)}}, `"w"`},
		{"unknown dtype", []Tensor{{Name: "w", DType: "Q4", Shape: []int{1}, Data: make([]byte, 1)}}, `"Q4"`},
		{"negative dim", []Tensor{{Name: "w", DType: "U8", Shape: []int{-1}}}, "negative"},
		{"duplicate", []Tensor{F32Tensor("w", []int{1}, []float32{1}), F32Tensor("w", []int{1}, []float32{2})}, "twice"},
		{"reserved name", []Tensor{F32Tensor("__metadata__", []int{1}, []float32{1})}, "__metadata__"},
	}
	for _, tt := range tests {
		err := Write(path, tt.tensors, nil)
		if err == nil || !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), path) {
			t.Errorf("%s: error %v, want one naming %s and %s", tt.name, err, path, tt.want)
		}
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Errorf("a rejected write left a file behind: %v", err)
	}
}
