// Package testmodels writes tiny random models and pictures for tests in
// other packages (whet chat, engine/chat, whet studio); nothing outside a
// test imports it.
package testmodels

import (
	"encoding/json"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"

	"whet/engine"
	"whet/engine/cpu"
	"whet/engine/safetensors"
)

// Gemma3Vision describes a tiny random Gemma 3 vision model.
type Gemma3Vision struct {
	Config       string    // config.json's text (Gemma3ForConditionalGeneration, vocab 515)
	TokenizerDir string    // tiny-gemma3's tokenizer.json and tokenizer_config.json; "" writes none
	Seed         [2]uint64 // the PCG seed of the weights
	// EmbedStd > 0 draws the token embeddings again with this standard
	// deviation (the tied head reads them); 0 leaves them at 0.1 as every
	// other weight.
	EmbedStd float64
}

// Write writes the model into dir: config.json, model.safetensors under
// the released names (N(0, 0.1²) weights, norm weights around 1) and the
// tokenizer (unless TokenizerDir is "") plus the three image tokens
// <start_of_image>, <end_of_image> and <image_soft_token> (ids 512-514).
func (g Gemma3Vision) Write(dir string) error {
	if err := os.WriteFile(filepath.Join(dir, "config.json"), []byte(g.Config), 0o644); err != nil {
		return fmt.Errorf("testmodels: %w", err)
	}
	cfg, err := engine.LoadModelConfig(dir)
	if err != nil {
		return fmt.Errorf("testmodels: %w", err)
	}
	m, err := engine.NewModel(*cfg, cpu.New())
	if err != nil {
		return fmt.Errorf("testmodels: %w", err)
	}
	defer m.Free()
	vc, err := engine.ParseGemma3VisionConfig([]byte(g.Config), cfg.HiddenSize)
	if err != nil {
		return fmt.Errorf("testmodels: %w", err)
	}
	if err := m.AttachGemma3Vision(vc, nil); err != nil {
		return fmt.Errorf("testmodels: %w", err)
	}
	rng := rand.New(rand.NewPCG(g.Seed[0], g.Seed[1]))
	var ts []safetensors.Tensor
	for _, p := range m.Params() {
		v := make([]float32, p.W.Len())
		for i := range v {
			v[i] = float32(rng.NormFloat64() * 0.1)
			if g.EmbedStd > 0 && p.Name == "model.embed_tokens.weight" {
				v[i] = float32(rng.NormFloat64() * g.EmbedStd)
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
	if err := safetensors.Write(filepath.Join(dir, "model.safetensors"), ts, nil); err != nil {
		return fmt.Errorf("testmodels: %w", err)
	}
	if g.TokenizerDir == "" {
		return nil
	}
	return writeImageTokenizer(dir, g.TokenizerDir)
}

// writeImageTokenizer copies src's tokenizer into dir with the three image
// tokens added after its own.
func writeImageTokenizer(dir, src string) error {
	if err := writeTokenizerWith(dir, filepath.Join(src, "tokenizer.json"),
		[]specialToken{{512, "<start_of_image>"}, {513, "<end_of_image>"}, {514, "<image_soft_token>"}}); err != nil {
		return err
	}
	data, err := os.ReadFile(filepath.Join(src, "tokenizer_config.json"))
	if err != nil {
		return fmt.Errorf("testmodels: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "tokenizer_config.json"), data, 0o644); err != nil {
		return fmt.Errorf("testmodels: %w", err)
	}
	return nil
}

// specialToken is a token added to a tokenizer: its id and text.
type specialToken struct {
	id      int
	content string
}

// writeTokenizerWith writes the tokenizer.json at path into dir with
// tokens added as special tokens after its own added_tokens.
func writeTokenizerWith(dir, path string, tokens []specialToken) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("testmodels: %w", err)
	}
	var tj map[string]any
	if err := json.Unmarshal(data, &tj); err != nil {
		return fmt.Errorf("testmodels: %s: %w", path, err)
	}
	added, ok := tj["added_tokens"].([]any)
	if !ok {
		return fmt.Errorf("testmodels: %s: added_tokens is %T, want a list", path, tj["added_tokens"])
	}
	for _, tok := range tokens {
		added = append(added, map[string]any{"id": tok.id, "content": tok.content, "single_word": false, "lstrip": false,
			"rstrip": false, "normalized": false, "special": true})
	}
	tj["added_tokens"] = added
	if data, err = json.Marshal(tj); err != nil {
		return fmt.Errorf("testmodels: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "tokenizer.json"), data, 0o644); err != nil {
		return fmt.Errorf("testmodels: %w", err)
	}
	return nil
}

// WritePNG writes a w x h RGBA picture to path, each pixel pixel(x, y).
func WritePNG(path string, w, h int, pixel func(x, y int) color.RGBA) error {
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			img.Set(x, y, pixel(x, y))
		}
	}
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("testmodels: %w", err)
	}
	if err := png.Encode(f, img); err != nil {
		f.Close()
		return fmt.Errorf("testmodels: %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("testmodels: %w", err)
	}
	return nil
}

// Gemma3Released4BConfig is the released gemma-3-4b-it config.json
// (Gemma3ForConditionalGeneration; its text_config lists only what differs
// from Gemma3TextConfig's defaults, as published): 34 layers of hidden
// 2560, a SigLIP tower of 27 layers over 896×896 images in 14-pixel
// patches, pooled to 256 image tokens; 4,300,079,472 parameters.
const Gemma3Released4BConfig = `{
  "architectures": ["Gemma3ForConditionalGeneration"],
  "boi_token_index": 255999, "eoi_token_index": 256000, "eos_token_id": [1, 106],
  "image_token_index": 262144, "initializer_range": 0.02, "mm_tokens_per_image": 256, "model_type": "gemma3",
  "text_config": {"hidden_size": 2560, "intermediate_size": 10240, "model_type": "gemma3_text", "num_hidden_layers": 34,
    "rope_scaling": {"factor": 8.0, "rope_type": "linear"}, "sliding_window": 1024},
  "torch_dtype": "bfloat16", "transformers_version": "4.50.0.dev0",
  "vision_config": {"hidden_size": 1152, "image_size": 896, "intermediate_size": 4304, "model_type": "siglip_vision_model",
    "num_attention_heads": 16, "num_hidden_layers": 27, "patch_size": 14, "vision_use_head": false}
}`
