package testmodels

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"

	"whet/engine"
	"whet/engine/cpu"
	"whet/engine/safetensors"
)

// TinyMllamaChatConfig is a tiny Llama 3.2 Vision config.json that goes
// with tiny-llama's tokenizer plus Llama 3's header tokens and <|image|>
// (MllamaChat): vocab 520, image token 520 (in the 8 embedding rows past
// the vocabulary, as in the released model), 16-pixel tiles, up to 4, text
// hidden 64 with a cross-attention layer at 1.
const TinyMllamaChatConfig = `{"architectures": ["MllamaForConditionalGeneration"], "image_token_index": 520, "model_type": "mllama",
  "text_config": {"bos_token_id": 516, "cross_attention_layers": [1], "eos_token_id": 515, "hidden_act": "silu",
    "hidden_size": 64, "intermediate_size": 96, "max_position_embeddings": 512, "model_type": "mllama_text_model",
    "num_attention_heads": 4, "num_hidden_layers": 3, "num_key_value_heads": 2, "pad_token_id": null, "rms_norm_eps": 1e-05,
    "rope_theta": 500000.0, "tie_word_embeddings": false, "vocab_size": 520},
  "vision_config": {"attention_heads": 4, "hidden_act": "gelu", "hidden_size": 32, "image_size": 16,
    "intermediate_layers_indices": [0, 2], "intermediate_size": 64, "max_num_tiles": 4, "model_type": "mllama_vision_model",
    "norm_eps": 1e-05, "num_channels": 3, "num_global_layers": 2, "num_hidden_layers": 3, "patch_size": 8,
    "supported_aspect_ratios": [[1, 1], [1, 2], [1, 3], [1, 4], [2, 1], [2, 2], [3, 1], [4, 1]], "vision_output_dim": 96}}`

// MllamaChat describes a tiny random Llama 3.2 Vision folder that chats:
// TinyMllamaChatConfig, random weights, tiny-llama's tokenizer with the
// Llama 3 tokens and Llama 3.2 Vision's chat template.
type MllamaChat struct {
	// TestdataDir is the repository's testdata folder (tiny-llama's
	// tokenizer, templates/llama-3.2-vision.jinja).
	TestdataDir string
	Seed        [2]uint64
}

// Write writes config.json, model.safetensors (under the released names:
// norms 1 + N(0, 0.1²), gates 0.5 + N(0, 0.3²), the embeddings and LM
// head N(0, 1) so that the next token is confident, the rest N(0, 0.1²)),
// tokenizer.json and tokenizer_config.json into dir.
func (g MllamaChat) Write(dir string) error {
	if err := os.WriteFile(filepath.Join(dir, "config.json"), []byte(TinyMllamaChatConfig), 0o644); err != nil {
		return fmt.Errorf("testmodels: %w", err)
	}
	cfg, err := engine.ParseMllamaConfig("config.json", []byte(TinyMllamaChatConfig))
	if err != nil {
		return fmt.Errorf("testmodels: %w", err)
	}
	m, err := engine.NewMllamaModel(*cfg, cpu.New())
	if err != nil {
		return fmt.Errorf("testmodels: %w", err)
	}
	defer m.Free()
	rng := rand.New(rand.NewPCG(g.Seed[0], g.Seed[1]))
	var ts []safetensors.Tensor
	for _, p := range m.Params() {
		n := 1
		for _, d := range p.Shape {
			n *= d
		}
		v := make([]float32, n)
		mean, std := MllamaWeightDraw(p.Name)
		if strings.Contains(p.Name, "embed_tokens") || strings.Contains(p.Name, "lm_head") {
			mean, std = 0, 1
		}
		for i := range v {
			v[i] = mean + std*float32(rng.NormFloat64())
		}
		ts = append(ts, safetensors.F32Tensor(p.Name, p.Shape, v))
	}
	if err := safetensors.Write(filepath.Join(dir, "model.safetensors"), ts, nil); err != nil {
		return fmt.Errorf("testmodels: %w", err)
	}
	if err := writeTokenizerWith(dir, filepath.Join(g.TestdataDir, "tiny-llama", "tokenizer.json"), []specialToken{
		{513, "<|start_header_id|>"}, {514, "<|end_header_id|>"}, {515, "<|eot_id|>"}, {516, "<|begin_of_text|>"}, {520, "<|image|>"}}); err != nil {
		return err
	}
	tpl, err := os.ReadFile(filepath.Join(g.TestdataDir, "templates", "llama-3.2-vision.jinja"))
	if err != nil {
		return fmt.Errorf("testmodels: %w", err)
	}
	tc, err := json.Marshal(map[string]any{"bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>", "add_bos_token": false,
		"chat_template": string(tpl), "tokenizer_class": "PreTrainedTokenizerFast"})
	if err != nil {
		return fmt.Errorf("testmodels: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "tokenizer_config.json"), tc, 0o644); err != nil {
		return fmt.Errorf("testmodels: %w", err)
	}
	return nil
}

// MllamaChatAdapter describes a random PEFT adapter for a tiny Mllama
// folder (MllamaChat's): rank 4, alpha 8, on every language-model linear
// and the projector, every value Scale·N(0, 1) drawn from Seed, saved as
// whet train saves one (engine.SaveMllamaAdapter).
type MllamaChatAdapter struct {
	Seed  [2]uint64
	Scale float64
}

// Write saves the adapter for the model in modelDir into dir.
func (a MllamaChatAdapter) Write(dir, modelDir string) error {
	m, err := engine.LoadMllama(modelDir, cpu.New())
	if err != nil {
		return fmt.Errorf("testmodels: %w", err)
	}
	defer m.Free()
	o := engine.MllamaLoRA{Rank: 4, Alpha: 8, Projector: true}
	if err := m.AddLoRA(o); err != nil {
		return fmt.Errorf("testmodels: %w", err)
	}
	rng := rand.New(rand.NewPCG(a.Seed[0], a.Seed[1]))
	for _, p := range m.Params() {
		if !p.Trainable {
			continue
		}
		v := make([]float32, p.W.Len())
		for i := range v {
			v[i] = float32(rng.NormFloat64() * a.Scale)
		}
		if err := m.SetValues(p, v); err != nil {
			return fmt.Errorf("testmodels: %s: %w", p.Name, err)
		}
	}
	if err := engine.SaveMllamaAdapter(dir, m, o, modelDir); err != nil {
		return fmt.Errorf("testmodels: %w", err)
	}
	return nil
}
