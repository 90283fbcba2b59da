package main

import (
	"bytes"
	"image/color"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"whet/engine/testmodels"
)

// gemma3ChatModel writes a tiny random Gemma 3 vision model with
// tiny-gemma3's tokenizer plus the three image tokens (ids 512-514).
func gemma3ChatModel(t *testing.T) string {
	t.Helper()
	return gemma3TinyVisionModel(t, 0.1)
}

// gemma3TinyVisionModel is gemma3ChatModel with the token embeddings drawn
// with standard deviation embedStd (the tied head reads them: at 0.1 over
// 32 values no logit can stand far above 514 others).
func gemma3TinyVisionModel(t *testing.T, embedStd float64) string {
	t.Helper()
	const config = `{"architectures": ["Gemma3ForConditionalGeneration"], "model_type": "gemma3",
  "boi_token_index": 512, "eoi_token_index": 513, "image_token_index": 514, "mm_tokens_per_image": 4,
  "text_config": {"model_type": "gemma3_text", "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
    "num_attention_heads": 2, "num_key_value_heads": 1, "head_dim": 16, "vocab_size": 515, "max_position_embeddings": 512,
    "sliding_window": 3, "sliding_window_pattern": 2, "pad_token_id": null, "eos_token_id": 2},
  "vision_config": {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1,
    "num_attention_heads": 2, "image_size": 32, "patch_size": 8, "vision_use_head": false}}`
	dir := t.TempDir()
	g := testmodels.Gemma3Vision{Config: config, TokenizerDir: filepath.Join("testdata", "tiny-gemma3"), Seed: [2]uint64{6, 24}, EmbedStd: embedStd}
	if err := g.Write(dir); err != nil {
		t.Fatal(err)
	}
	if err := testmodels.WritePNG(filepath.Join(dir, "look.png"), 40, 30, func(x, y int) color.RGBA {
		return color.RGBA{uint8(6 * x), uint8(8 * y), 90, 255}
	}); err != nil {
		t.Fatal(err)
	}
	return dir
}

// whet chat --image and /image PATH: the image goes with the next message
// of a Gemma 3 vision model; a missing file is reported and the chat goes on.
func TestChatWithImageFlagAndCommand(t *testing.T) {
	dir := gemma3ChatModel(t)
	img := filepath.Join(dir, "look.png")
	code, out, errs := runCLI(t, "chat", "--model", dir, "--template", "gemma-3", "--backend", "cpu",
		"--max-new-tokens", "3", "--temperature", "0", "--image", img, "--prompt", "what is this?")
	if code != 0 || !strings.Contains(out, "tokens") {
		t.Fatalf("--image: exit %d, stderr %q\n%s", code, errs, out)
	}
	in := strings.NewReader("/image " + filepath.Join(dir, "missing.png") + "\n/image " + img + "\nwhat is this?\nand now?\n\n")
	var o, e bytes.Buffer
	if code := runMain([]string{"chat", "--model", dir, "--template", "gemma-3", "--backend", "cpu", "--vision",
		"--max-new-tokens", "3", "--temperature", "0"}, in, &o, &e); code != 0 {
		t.Fatalf("/image: exit %d, stderr %q\n%s", code, e.String(), o.String())
	}
	for _, want := range []string{"image: ", "missing.png", "attached to your next message"} {
		if !strings.Contains(o.String(), want) {
			t.Errorf("chat output lacks %q:\n%s", want, o.String())
		}
	}
	if n := strings.Count(o.String(), "tok/s"); n != 2 {
		t.Errorf("%d replies, want 2 (the second turn re-reads the image with the history):\n%s", n, o.String())
	}
	code, _, errs = runCLI(t, "chat", "--model", "testdata/tiny-gemma3", "--backend", "cpu", "--image", img, "--prompt", "hi")
	if code != 1 || !strings.Contains(errs, "vision tower") {
		t.Errorf("--image on a text model: exit %d, stderr %q", code, errs)
	}
	// A text model of another family: the message names the flag and
	// both vision families, not only Gemma 3's model_type.
	code, _, errs = runCLI(t, "chat", "--model", "testdata/tiny-qwen3", "--backend", "cpu", "--image", img, "--prompt", "hi")
	if code != 1 || !strings.Contains(errs, "--image: testdata/tiny-qwen3 is not a vision model") || !strings.Contains(errs, "Llama 3.2 Vision") {
		t.Errorf("--image on a Qwen 3 model: exit %d, stderr %q", code, errs)
	}
	// Without --vision the tower is not loaded: /image says how to get it.
	o.Reset()
	in = strings.NewReader("/image " + img + "\n\n")
	if code := runMain([]string{"chat", "--model", dir, "--template", "gemma-3", "--backend", "cpu"}, in, &o, &e); code != 0 ||
		!strings.Contains(o.String(), "--vision") {
		t.Errorf("/image without --vision: exit %d\n%s", code, o.String())
	}
}

// whet chat --run uses the chat template the run trained with
// (data.template), as the studio's chat and whet export do. Before, it
// used the model folder's own, so a Gemma 3 vision run trained with
// template gemma-3 on a folder whose tokenizer names chatml could not
// take an image ("chat template chatml: content lists ... are not
// supported"). --template still wins.
func TestChatRunUsesItsTemplate(t *testing.T) {
	dir := gemma3ChatModel(t)
	run := filepath.Join(t.TempDir(), "vision-run")
	if err := os.MkdirAll(run, 0o755); err != nil {
		t.Fatal(err)
	}
	cfg := "name: vision-run\nmodel: " + dir + "\nmethod: lora\nbackend: cpu\ndata: {path: data.jsonl, template: gemma-3}\n"
	if err := os.WriteFile(filepath.Join(run, "run.yaml"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	img := filepath.Join(dir, "look.png")
	code, out, errs := runCLI(t, "chat", "--run", run, "--backend", "cpu", "--max-new-tokens", "3", "--temperature", "0",
		"--image", img, "--prompt", "what is this?")
	if code != 0 || !strings.Contains(out, "tokens") {
		t.Fatalf("chat --run: exit %d, stderr %q\n%s", code, errs, out)
	}
	code, _, errs = runCLI(t, "chat", "--run", run, "--template", "chatml", "--backend", "cpu", "--max-new-tokens", "3",
		"--image", img, "--prompt", "what is this?")
	if code != 1 || !strings.Contains(errs, "chat template chatml") {
		t.Errorf("--template chatml should win over the run's: exit %d, stderr %q", code, errs)
	}
}
