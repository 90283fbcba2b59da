package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// whet fit --images N with Gemma 3 plans its vision tower: the catalog's
// gemma-3-4b-it with the released tower, a folder's config.json the same,
// more images plan more, and without --images the text plan is unchanged.
func TestFitGemma3Vision(t *testing.T) {
	peak := func(out string) string {
		i := strings.Index(out, "peak (total)")
		if i < 0 {
			return ""
		}
		return strings.Fields(out[i+len("peak (total)"):])[0]
	}
	code, out, errs := runFitCLI(t, "--model", "gemma-3-4b-it", "--method", "lora", "--seq", "1024", "--gpu", "H100", "--images", "1")
	if code != 0 {
		t.Fatalf("exit %d, stderr %q:\n%s", code, errs, out)
	}
	for _, want := range []string{"4.30B parameters", "verdict   fits", "vision    1 image(s) per sequence of 64×64 patches pooled to 256 tokens"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	_, text, _ := runFitCLI(t, "--model", "gemma-3-4b-it", "--method", "lora", "--seq", "1024", "--gpu", "H100")
	if strings.Contains(text, "vision ") || peak(text) == peak(out) {
		t.Errorf("without --images the plan should be the text model's:\n%s", text)
	}
	dir := t.TempDir()
	cfg := `{"architectures": ["Gemma3ForConditionalGeneration"], "model_type": "gemma3", "mm_tokens_per_image": 256,
	 "text_config": {"hidden_size": 2560, "intermediate_size": 10240, "model_type": "gemma3_text", "num_hidden_layers": 34,
	  "rope_scaling": {"factor": 8.0, "rope_type": "linear"}, "sliding_window": 1024},
	 "vision_config": {"hidden_size": 1152, "image_size": 896, "intermediate_size": 4304, "num_attention_heads": 16,
	  "num_hidden_layers": 27, "patch_size": 14, "vision_use_head": false}}`
	if err := os.WriteFile(filepath.Join(dir, "config.json"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	code, folder, errs := runFitCLI(t, "--model", dir, "--method", "lora", "--seq", "1024", "--gpu", "H100", "--images", "1")
	if code != 0 || peak(folder) == "" || peak(folder) != peak(out) {
		t.Errorf("the released config.json in a folder: exit %d, stderr %q, peak %q (catalog %q)\n%s", code, errs, peak(folder), peak(out), folder)
	}
	_, two, _ := runFitCLI(t, "--model", "gemma-3-4b-it", "--method", "lora", "--seq", "1024", "--gpu", "H100", "--images", "2")
	if peak(two) == peak(out) {
		t.Errorf("two images plan the same peak as one (%s)", peak(two))
	}
	// --vision-layers: the tower's adapters and kept activations plan more.
	code, vl, errs := runFitCLI(t, "--model", "gemma-3-4b-it", "--method", "lora", "--seq", "1024", "--gpu", "H100", "--images", "1", "--vision-layers")
	if code != 0 || !strings.Contains(vl, "LoRA on the vision tower's layers") || peak(vl) == peak(out) {
		t.Errorf("--vision-layers: exit %d, stderr %q, peak %q (without %q)\n%s", code, errs, peak(vl), peak(out), vl)
	}
	if code, _, errs := runFitCLI(t, "--model", "gemma-3-4b-it", "--method", "lora", "--seq", "1024", "--gpu", "H100", "--vision-layers"); code == 0 || !strings.Contains(errs, "--vision-layers") {
		t.Errorf("--vision-layers without --images: exit %d, stderr %q", code, errs)
	}
	if code, _, errs := runFitCLI(t, "--model", "gemma-3-4b-it", "--method", "full", "--seq", "1024", "--gpu", "H100", "--images", "1"); code == 0 || !strings.Contains(errs, "lora or qlora") {
		t.Errorf("full fine-tuning with images: exit %d, stderr %q", code, errs)
	}
}
