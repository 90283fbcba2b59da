package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"whet/engine"
	"whet/engine/cpu"
	"whet/engine/safetensors"
)

// trainVisionRun trains a LoRA run (language model and projector) on the
// shapes pictures for a few steps with whet train and returns its folder.
func trainVisionRun(t *testing.T, modelDir, name, template string) string {
	t.Helper()
	dir := t.TempDir()
	writeShapeData(t, dir, "train.jsonl", 7, 0, 6)
	tmpl := ""
	if template != "" {
		tmpl = "template: " + template + ", "
	}
	run := fmt.Sprintf(`name: %s
model: %s
backend: cpu
runs_dir: %s
method: lora
lora: {r: 4, alpha: 8, dropout: 0, projector: true}
data: {path: %s, %smax_length: 128, packing: false, seed: 1}
train: {max_steps: 2, micro_batch: 3, lr: 0.01, schedule: constant, warmup_steps: 0, seed: 1, save_every: 2, log_every: 1, sample_every: 0}
`, name, modelDir, dir, filepath.Join(dir, "train.jsonl"), tmpl)
	p := writeRunYAML(t, dir, run)
	var out strings.Builder
	if err := runTrain([]string{"-c", p}, nil, &out, &out); err != nil {
		t.Fatalf("whet train: %v\n%s", err, out.String())
	}
	return filepath.Join(dir, name)
}

// TestExportVisionRuns: whet export on runs that whet train made on images.
// A Gemma 3 run exports a PEFT adapter with the projector under PEFT's
// target_parameters keys, a merged folder that LoadGemma3Vision reads, and
// model.gguf with mmproj-model.gguf and the Modelfile; a Llama 3.2 Vision
// run exports PEFT (transformers 5 names) and merged, and refuses GGUF by
// name.
func TestExportVisionRuns(t *testing.T) {
	// llama.cpp's gemma3 scales attention by 1/sqrt(head_dim) only: the
	// tiny model gets query_pre_attn_scalar = head_dim so its GGUF is not
	// refused for that.
	g3Model := gemma3TinyVisionModel(t, 1)
	cfgPath := filepath.Join(g3Model, "config.json")
	raw, err := os.ReadFile(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	var cfg map[string]any
	if err := json.Unmarshal(raw, &cfg); err != nil {
		t.Fatal(err)
	}
	cfg["text_config"].(map[string]any)["query_pre_attn_scalar"] = 16
	raw, _ = json.Marshal(cfg)
	if err := os.WriteFile(cfgPath, raw, 0o644); err != nil {
		t.Fatal(err)
	}
	g3 := trainVisionRun(t, g3Model, "g3", "gemma-3")
	out := t.TempDir()
	for _, c := range []struct{ format, quant string }{{"peft", ""}, {"merged", "bf16"}, {"gguf", "f16"}} {
		args := []string{"--run", g3, "--format", c.format, "--out", filepath.Join(out, c.format)}
		if c.quant != "" {
			args = append(args, "--quant", c.quant)
		}
		code, stdout, stderr := runExportCLI(t, args...)
		if code != 0 {
			t.Fatalf("whet export %v: exit %d\n%s%s", args, code, stdout, stderr)
		}
		if c.format == "gguf" && !strings.Contains(stdout, "--mmproj mmproj-model.gguf") {
			t.Errorf("the GGUF export does not say how to use the mmproj file:\n%s", stdout)
		}
	}
	keys := func(path string) []string {
		f, err := safetensors.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		return f.Names()
	}
	if k := keys(filepath.Join(out, "peft", "adapter_model.safetensors")); !slices.Contains(k, "base_model.model.model.multi_modal_projector.lora_A.weight") ||
		!slices.Contains(k, "base_model.model.model.language_model.layers.1.mlp.down_proj.lora_B.weight") {
		t.Errorf("Gemma 3 PEFT keys %v", k)
	}
	for _, f := range []string{"model.gguf", "mmproj-model.gguf", "Modelfile"} {
		if _, err := os.Stat(filepath.Join(out, "gguf", f)); err != nil {
			t.Error(err)
		}
	}
	m, err := engine.LoadGemma3Vision(filepath.Join(out, "merged"), cpu.New(), engine.ModelOptions{})
	if err != nil {
		t.Fatalf("the merged Gemma 3 folder: %v", err)
	}
	m.Free()

	ml := trainVisionRun(t, mllamaTinyModel(t), "ml", "")
	for _, format := range []string{"peft", "merged"} {
		args := []string{"--run", ml, "--format", format, "--out", filepath.Join(out, "ml-"+format)}
		if code, stdout, stderr := runExportCLI(t, args...); code != 0 {
			t.Fatalf("whet export %v: exit %d\n%s%s", args, code, stdout, stderr)
		}
	}
	if k := keys(filepath.Join(out, "ml-peft", "adapter_model.safetensors")); !slices.Contains(k, "base_model.model.model.language_model.layers.1.cross_attn.q_proj.lora_A.weight") ||
		!slices.Contains(k, "base_model.model.model.multi_modal_projector.lora_B.weight") {
		t.Errorf("Mllama PEFT keys %v", k)
	}
	mm, err := engine.LoadMllama(filepath.Join(out, "ml-merged"), cpu.New())
	if err != nil {
		t.Fatalf("the merged Mllama folder: %v", err)
	}
	mm.Free()
	code, _, stderr := runExportCLI(t, "--run", ml, "--format", "gguf", "--out", filepath.Join(out, "ml-gguf"))
	if code == 0 || !strings.Contains(stderr, "llama.cpp has no Mllama support") {
		t.Errorf("GGUF of an Mllama run: exit %d, %s", code, stderr)
	}
}
