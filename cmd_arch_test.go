package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"whet/engine"
)

// unsupportedModel copies the tiny Llama into a folder whose config.json
// names an architecture the engine does not run (Mamba).
func unsupportedModel(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	for _, f := range []string{"config.json", "generation_config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"} {
		data, err := os.ReadFile(filepath.Join("testdata", "tiny-llama", f))
		if err != nil {
			t.Fatal(err)
		}
		if f == "config.json" {
			var cfg map[string]any
			if err := json.Unmarshal(data, &cfg); err != nil {
				t.Fatal(err)
			}
			cfg["model_type"] = "mamba"
			cfg["architectures"] = []string{"MambaForCausalLM"}
			if data, err = json.Marshal(cfg); err != nil {
				t.Fatal(err)
			}
		}
		if err := os.WriteFile(filepath.Join(dir, f), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// An unsupported architecture gets one line from whet train, fit and chat
// that names it, its config.json and every supported model type, and
// nothing else on stderr.
func TestUnsupportedArchitectureOneLine(t *testing.T) {
	model := unsupportedModel(t)
	abs, err := filepath.Abs("testdata/datasets/tiny-chat.jsonl")
	if err != nil {
		t.Fatal(err)
	}
	run := filepath.Join(t.TempDir(), "run.yaml")
	yaml := "name: arch\nmodel: " + model + "\nmethod: lora\nbackend: cpu\nruns_dir: " + t.TempDir() +
		"\ndata:\n  path: " + abs + "\n  max_length: 64\ntrain:\n  epochs: 1\n"
	if err := os.WriteFile(run, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"train", "-c", run},
		{"fit", "--model", model, "--gpu", "H100"},
		{"chat", "--model", model, "--backend", "cpu", "--prompt", "hi"},
	} {
		code, _, errs := runCLI(t, args...)
		t.Logf("whet %s: %s", args[0], strings.TrimSpace(errs))
		lines := strings.Split(strings.TrimSuffix(errs, "\n"), "\n")
		if code != 1 || len(lines) != 1 {
			t.Errorf("whet %s: exit %d, stderr %q; want exit 1 and one line", args[0], code, errs)
			continue
		}
		if !strings.Contains(errs, `"mamba"`) || !strings.Contains(errs, filepath.Join(model, "config.json")) {
			t.Errorf("whet %s: %q does not name the model type and its file", args[0], errs)
		}
		for _, mt := range engine.SupportedModelTypes() {
			if !strings.Contains(errs, mt) {
				t.Errorf("whet %s: %q does not list supported type %s", args[0], errs, mt)
			}
		}
	}
}
