package safetensors

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"
)

func testTensors(n int) ([]Tensor, map[string][]float32) {
	var tensors []Tensor
	values := map[string][]float32{}
	for i := 0; i < n; i++ {
		name := "model.layers." + string(rune('a'+i)) + ".weight"
		v := make([]float32, 6)
		for j := range v {
			v[j] = float32(i*10 + j)
		}
		values[name] = v
		if i%2 == 0 {
			tensors = append(tensors, F32Tensor(name, []int{2, 3}, v))
		} else {
			tensors = append(tensors, BF16Tensor(name, []int{3, 2}, v)) // small integers: exact in bf16
		}
	}
	return tensors, values
}

func TestOpenDirSingleFile(t *testing.T) {
	dir := t.TempDir()
	tensors, values := testTensors(3)
	if err := WriteSharded(dir, "model", tensors, 1<<20, map[string]string{"format": "pt"}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, IndexFileName)); !os.IsNotExist(err) {
		t.Errorf("an index was written for a checkpoint under the shard limit")
	}
	s, err := OpenDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if s.Source() != filepath.Join(dir, SingleFileName) {
		t.Errorf("source = %s", s.Source())
	}
	checkSet(t, s, values)
	if s.Metadata()["format"] != "pt" {
		t.Errorf("metadata = %v", s.Metadata())
	}
}

func checkSet(t *testing.T, s *Set, values map[string][]float32) {
	t.Helper()
	var want []string
	for name := range values {
		want = append(want, name)
	}
	sort.Strings(want)
	if got := s.Names(); !reflect.DeepEqual(got, want) {
		t.Fatalf("names = %v, want %v", got, want)
	}
	for name, v := range values {
		checkFloats(t, s, name, v)
	}
}

func TestWriteShardedAndOpenDir(t *testing.T) {
	dir := t.TempDir()
	tensors, values := testTensors(5)
	// F32 tensors are 24 bytes and BF16 ones 12; packed in name order
	// under a 40-byte limit: a(24)+b(12) | c(24)+d(12) | e(24).
	if err := WriteSharded(dir, "model", tensors, 40, map[string]string{"format": "pt"}); err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(filepath.Join(dir, IndexFileName))
	if err != nil {
		t.Fatal(err)
	}
	var index struct {
		Metadata  map[string]int64  `json:"metadata"`
		WeightMap map[string]string `json:"weight_map"`
	}
	if err := json.Unmarshal(raw, &index); err != nil {
		t.Fatal(err)
	}
	if index.Metadata["total_size"] != 3*24+2*12 {
		t.Errorf("total_size = %d, want %d", index.Metadata["total_size"], 3*24+2*12)
	}
	wantMap := map[string]string{
		"model.layers.a.weight": "model-00001-of-00003.safetensors",
		"model.layers.b.weight": "model-00001-of-00003.safetensors",
		"model.layers.c.weight": "model-00002-of-00003.safetensors",
		"model.layers.d.weight": "model-00002-of-00003.safetensors",
		"model.layers.e.weight": "model-00003-of-00003.safetensors",
	}
	if !reflect.DeepEqual(index.WeightMap, wantMap) {
		t.Errorf("weight_map = %v\nwant %v", index.WeightMap, wantMap)
	}
	s, err := OpenDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	checkSet(t, s, values)
	info, ok := s.Info("model.layers.e.weight")
	if !ok || info.File != filepath.Join(dir, "model-00003-of-00003.safetensors") || info.DType != "F32" {
		t.Errorf("info = %+v, %v", info, ok)
	}
	if _, ok := s.Info("missing"); ok {
		t.Error("Info of a missing tensor reported ok")
	}
	if _, err := s.Float32("missing"); err == nil || !strings.Contains(err.Error(), IndexFileName) {
		t.Errorf("Float32 of a missing tensor: %v", err)
	}
}

func TestWriteShardedGivesAnOversizedTensorItsOwnShard(t *testing.T) {
	dir := t.TempDir()
	tensors := []Tensor{
		F32Tensor("a", []int{1}, []float32{1}),
		F32Tensor("big", []int{10}, make([]float32, 10)),
		F32Tensor("c", []int{1}, []float32{3}),
	}
	if err := WriteSharded(dir, "model", tensors, 8, nil); err != nil {
		t.Fatal(err)
	}
	s, err := OpenDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	files := map[string]bool{}
	for _, name := range s.Names() {
		info, _ := s.Info(name)
		files[info.File] = true
	}
	if len(files) != 3 {
		t.Errorf("tensors spread over %d shards, want 3 (a | big | c)", len(files))
	}
}

// shardedDir writes a two-shard checkpoint and returns its folder.
func shardedDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	tensors, _ := testTensors(2)
	if err := WriteSharded(dir, "model", tensors, 24, nil); err != nil {
		t.Fatal(err)
	}
	return dir
}

func openDirErr(t *testing.T, dir string, want ...string) {
	t.Helper()
	s, err := OpenDir(dir)
	if err == nil {
		s.Close()
		t.Fatalf("OpenDir succeeded, want an error mentioning %q", want)
	}
	for _, w := range want {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q does not mention %q", err, w)
		}
	}
}

func TestOpenDirErrors(t *testing.T) {
	t.Run("empty folder", func(t *testing.T) {
		dir := t.TempDir()
		openDirErr(t, dir, dir, SingleFileName, IndexFileName)
	})
	t.Run("no such folder", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "absent")
		openDirErr(t, dir, dir)
	})
	t.Run("missing shard", func(t *testing.T) {
		dir := shardedDir(t)
		shard := filepath.Join(dir, "model-00002-of-00002.safetensors")
		if err := os.Remove(shard); err != nil {
			t.Fatal(err)
		}
		openDirErr(t, dir, filepath.Join(dir, IndexFileName), shard, "missing", `"model.layers.b.weight"`)
	})
	t.Run("tensor absent from its shard", func(t *testing.T) {
		dir := shardedDir(t)
		editIndex(t, dir, func(m map[string]string) { m["lm_head.weight"] = "model-00001-of-00002.safetensors" })
		openDirErr(t, dir, filepath.Join(dir, IndexFileName), `"lm_head.weight"`, "model-00001-of-00002.safetensors", "absent")
	})
	t.Run("shard outside the folder", func(t *testing.T) {
		dir := shardedDir(t)
		editIndex(t, dir, func(m map[string]string) { m["model.layers.a.weight"] = "../elsewhere.safetensors" })
		openDirErr(t, dir, IndexFileName, `"model.layers.a.weight"`, "../elsewhere.safetensors")
	})
	t.Run("broken shard", func(t *testing.T) {
		dir := shardedDir(t)
		shard := filepath.Join(dir, "model-00001-of-00002.safetensors")
		if err := os.Truncate(shard, 30); err != nil {
			t.Fatal(err)
		}
		openDirErr(t, dir, shard, IndexFileName)
	})
	t.Run("index garbage", func(t *testing.T) {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, IndexFileName), []byte(`{"weight_map": [`), 0o644); err != nil {
			t.Fatal(err)
		}
		openDirErr(t, dir, filepath.Join(dir, IndexFileName), "not a valid index")
	})
	t.Run("index without weight_map", func(t *testing.T) {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, IndexFileName), []byte(`{"metadata": {}}`), 0o644); err != nil {
			t.Fatal(err)
		}
		openDirErr(t, dir, filepath.Join(dir, IndexFileName), "weight_map")
	})
}

func editIndex(t *testing.T, dir string, edit func(map[string]string)) {
	t.Helper()
	path := filepath.Join(dir, IndexFileName)
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var index map[string]json.RawMessage
	if err := json.Unmarshal(raw, &index); err != nil {
		t.Fatal(err)
	}
	var m map[string]string
	if err := json.Unmarshal(index["weight_map"], &m); err != nil {
		t.Fatal(err)
	}
	edit(m)
	index["weight_map"], _ = json.Marshal(m)
	raw, _ = json.Marshal(index)
	if err := os.WriteFile(path, raw, 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestWriteShardedRemovesStaleWeights(t *testing.T) {
	dir := t.TempDir()
	unrelated := filepath.Join(dir, "model-notes.safetensors")
	if err := os.WriteFile(unrelated, []byte("keep me"), 0o644); err != nil {
		t.Fatal(err)
	}
	small, _ := testTensors(1)
	if err := WriteSharded(dir, "model", small, 1<<20, nil); err != nil {
		t.Fatal(err)
	}
	// A larger save into the same folder goes sharded: the single file of
	// the first save must go, or OpenDir (which prefers it) would read it.
	big, values := testTensors(5) // three shards under 40 bytes
	if err := WriteSharded(dir, "model", big, 40, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, SingleFileName)); !os.IsNotExist(err) {
		t.Errorf("stale %s left behind: %v", SingleFileName, err)
	}
	s, err := OpenDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	checkSet(t, s, values)
	s.Close()
	// Two shards this time: the old 3-shard files must go.
	if err := WriteSharded(dir, "model", big[:4], 40, nil); err != nil {
		t.Fatal(err)
	}
	left, _ := filepath.Glob(filepath.Join(dir, "model-*-of-00003.safetensors"))
	now, _ := filepath.Glob(filepath.Join(dir, "model-*-of-00002.safetensors"))
	if len(left) != 0 || len(now) != 2 {
		t.Errorf("after a 2-shard save: stale shards %v, new shards %v", left, now)
	}
	// Back to one file: index and shards go.
	if err := WriteSharded(dir, "model", small, 1<<20, nil); err != nil {
		t.Fatal(err)
	}
	entries, _ := os.ReadDir(dir)
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	sort.Strings(names)
	if want := []string{"model-notes.safetensors", "model.safetensors"}; !reflect.DeepEqual(names, want) {
		t.Errorf("folder holds %v, want %v", names, want)
	}
}
