package main

import (
	"bytes"
	"encoding/json"
	"image"
	"image/color"
	"image/png"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"whet/engine"
	"whet/engine/cpu"
	"whet/engine/safetensors"
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
	check := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	check(os.WriteFile(filepath.Join(dir, "config.json"), []byte(config), 0o644))
	cfg, err := engine.LoadModelConfig(dir)
	check(err)
	m, err := engine.NewModel(*cfg, cpu.New())
	check(err)
	defer m.Free()
	vc, err := engine.ParseGemma3VisionConfig([]byte(config), cfg.HiddenSize)
	check(err)
	check(m.AttachGemma3Vision(vc, nil))
	rng := rand.New(rand.NewPCG(6, 24))
	var ts []safetensors.Tensor
	for _, p := range m.Params() {
		v := make([]float32, p.W.Len())
		for i := range v {
			v[i] = float32(rng.NormFloat64() * 0.1)
			if p.Name == "model.embed_tokens.weight" {
				v[i] = float32(rng.NormFloat64() * embedStd)
			}
			if strings.Contains(p.Name, "layer_norm") || strings.Contains(p.Name, "layernorm.") {
				v[i]++
			}
		}
		name := p.Name
		if rest, ok := strings.CutPrefix(name, "model."); ok {
			name = "language_model.model." + rest
		}
		ts = append(ts, safetensors.F32Tensor(name, p.Shape, v))
	}
	check(safetensors.Write(filepath.Join(dir, "model.safetensors"), ts, nil))
	data, err := os.ReadFile(filepath.Join("testdata", "tiny-gemma3", "tokenizer.json"))
	check(err)
	var tj map[string]any
	check(json.Unmarshal(data, &tj))
	added := tj["added_tokens"].([]any)
	for i, s := range []string{"<start_of_image>", "<end_of_image>", "<image_soft_token>"} {
		added = append(added, map[string]any{"id": 512 + i, "content": s, "single_word": false, "lstrip": false,
			"rstrip": false, "normalized": false, "special": true})
	}
	tj["added_tokens"] = added
	data, err = json.Marshal(tj)
	check(err)
	check(os.WriteFile(filepath.Join(dir, "tokenizer.json"), data, 0o644))
	data, err = os.ReadFile(filepath.Join("testdata", "tiny-gemma3", "tokenizer_config.json"))
	check(err)
	check(os.WriteFile(filepath.Join(dir, "tokenizer_config.json"), data, 0o644))

	img := image.NewRGBA(image.Rect(0, 0, 40, 30))
	for y := 0; y < 30; y++ {
		for x := 0; x < 40; x++ {
			img.Set(x, y, color.RGBA{uint8(6 * x), uint8(8 * y), 90, 255})
		}
	}
	var buf bytes.Buffer
	check(png.Encode(&buf, img))
	check(os.WriteFile(filepath.Join(dir, "look.png"), buf.Bytes(), 0o644))
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
	// Without --vision the tower is not loaded: /image says how to get it.
	o.Reset()
	in = strings.NewReader("/image " + img + "\n\n")
	if code := runMain([]string{"chat", "--model", dir, "--template", "gemma-3", "--backend", "cpu"}, in, &o, &e); code != 0 ||
		!strings.Contains(o.String(), "--vision") {
		t.Errorf("/image without --vision: exit %d\n%s", code, o.String())
	}
}
