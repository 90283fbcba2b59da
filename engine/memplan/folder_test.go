package memplan_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"whet/engine/memplan"
	"whet/engine/safetensors"
)

// tensorElems counts the elements of a folder's model.safetensors.
func tensorElems(t *testing.T, dir string) int64 {
	t.Helper()
	f, err := safetensors.Open(filepath.Join(dir, "model.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var n int64
	for _, name := range f.Names() {
		info, _ := f.Info(name)
		e := int64(1)
		for _, d := range info.Shape {
			e *= int64(d)
		}
		n += e
	}
	return n
}

// FolderParams, the count the studio's model picker shows, is the number
// of elements in the folder's weights for every family whet trains: the
// text ones and both vision models (tower and projector included).
func TestFolderParamsCountsTheWeights(t *testing.T) {
	for _, name := range []string{"tiny-llama", "tiny-qwen2", "tiny-qwen3", "tiny-gemma2", "tiny-gemma3", "tiny-phi3", "tiny-gemma3-vision", "tiny-mllama"} {
		dir := filepath.Join("..", "..", "testdata", name)
		got, err := memplan.FolderParams(dir)
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if want := tensorElems(t, dir); got != want {
			t.Errorf("%s: FolderParams %d, the weights hold %d", name, got, want)
		}
	}
	// A Mistral folder is a Llama-shaped one under another model_type.
	dir := t.TempDir()
	raw, err := os.ReadFile("../../testdata/tiny-llama/config.json")
	if err != nil {
		t.Fatal(err)
	}
	mistral := strings.NewReplacer(`"llama"`, `"mistral"`, `"LlamaForCausalLM"`, `"MistralForCausalLM"`).Replace(string(raw))
	if mistral == string(raw) {
		t.Fatal("tiny-llama's config.json has no model_type llama")
	}
	if err := os.WriteFile(filepath.Join(dir, "config.json"), []byte(mistral), 0o644); err != nil {
		t.Fatal(err)
	}
	if got, err := memplan.FolderParams(dir); err != nil || got != tensorElems(t, "../../testdata/tiny-llama") {
		t.Errorf("mistral: FolderParams %d, %v; want tiny-llama's count", got, err)
	}
	if _, err := memplan.FolderParams(t.TempDir()); err == nil {
		t.Error("a folder without config.json: no error")
	}
}
