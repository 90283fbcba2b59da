package safetensors

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"
)

// FuzzOpenIndex reads arbitrary model.safetensors.index.json files beside
// three shards (two good ones, one that is not safetensors). No input
// panics; an error names the index; and a set that opens holds exactly the
// tensors the weight_map lists, each with the bytes its shard holds.
func FuzzOpenIndex(f *testing.F) {
	dir := f.TempDir()
	shards := map[string][]Tensor{
		"a.safetensors": {F32Tensor("x", []int{2}, []float32{1, 2}), BF16Tensor("y", []int{3}, []float32{1, 2, 3})},
		"b.safetensors": {I32Tensor("z", []int{1}, []int32{7})},
	}
	alone := map[string]*File{}
	for name, ts := range shards {
		path := filepath.Join(dir, name)
		if err := Write(path, ts, map[string]string{"format": "pt"}); err != nil {
			f.Fatal(err)
		}
		file, err := Open(path)
		if err != nil {
			f.Fatal(err)
		}
		alone[name] = file
	}
	if err := os.WriteFile(filepath.Join(dir, "bad.safetensors"), []byte("not safetensors"), 0o644); err != nil {
		f.Fatal(err)
	}
	for _, s := range []string{
		`{"metadata":{"total_size":24},"weight_map":{"x":"a.safetensors","y":"a.safetensors","z":"b.safetensors"}}`,
		`{"weight_map":{"x":"a.safetensors"}}`,
		`{"weight_map":{"x":"b.safetensors"}}`,
		`{"weight_map":{"x":"../a.safetensors"}}`,
		`{"weight_map":{"x":"c.safetensors"}}`,
		`{"weight_map":{"x":"bad.safetensors"}}`,
		`{"weight_map":{}}`,
		`{"weight_map":{"x":"./a.safetensors","y":"a.safetensors"}}`,
	} {
		f.Add([]byte(s))
	}
	index := filepath.Join(dir, IndexFileName)
	f.Fuzz(func(t *testing.T, data []byte) {
		if err := os.WriteFile(index, data, 0o644); err != nil {
			t.Fatal(err)
		}
		set, err := OpenIndex(index)
		if err != nil {
			if !strings.Contains(err.Error(), index) {
				t.Fatalf("error does not name the index: %v", err)
			}
			return
		}
		defer set.Close()
		var doc struct {
			WeightMap map[string]string `json:"weight_map"`
		}
		if err := json.Unmarshal(data, &doc); err != nil {
			t.Fatalf("accepted an index encoding/json cannot read: %v", err)
		}
		var want []string
		for name := range doc.WeightMap {
			want = append(want, name)
		}
		sort.Strings(want)
		if got := set.Names(); !reflect.DeepEqual(got, want) {
			t.Fatalf("set holds %q, the weight_map lists %q", got, want)
		}
		for name, shard := range doc.WeightMap {
			file := alone[filepath.Clean(shard)]
			if file == nil {
				t.Fatalf("tensor %q opened from %q, which is not a good shard", name, shard)
			}
			got, err := set.Raw(name)
			if err != nil {
				t.Fatal(err)
			}
			if w, err := file.Raw(name); err != nil || !bytes.Equal(got, w) {
				t.Fatalf("tensor %q: %v from the set, %v (%v) from %s", name, got, w, err, shard)
			}
		}
	})
}
