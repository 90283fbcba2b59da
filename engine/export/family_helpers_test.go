package export

import (
	"encoding/json"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"whet/engine"
	"whet/engine/cpu"
	"whet/engine/safetensors"
)

// familyConfigs are tiny random models of the 2025 families, with
// tiny-llama's 512-token tokenizer: widths that are whole Q8_0 blocks,
// windows shorter than the test sequences (Gemma), soft-caps that bend
// the numbers (Gemma 2), Gemma 3's linear-scaled global rope beside its
// local base, Phi-3's fused projections, partial rotary and LongRoPE (its
// short factors below a 512-token original context, its long ones in
// phi3-long whose original context of 4 tokens every prompt passes).
var familyConfigs = map[string]string{
	"qwen3": `{"architectures": ["Qwen3ForCausalLM"], "model_type": "qwen3", "vocab_size": 512,
		"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
		"num_key_value_heads": 2, "head_dim": 32, "rms_norm_eps": 1e-6, "rope_theta": 1000000,
		"rope_scaling": null, "sliding_window": null, "use_sliding_window": false, "max_position_embeddings": 512,
		"tie_word_embeddings": true, "attention_bias": false, "hidden_act": "silu", "eos_token_id": 2}`,
	"gemma3": `{"architectures": ["Gemma3ForCausalLM"], "model_type": "gemma3_text", "vocab_size": 512,
		"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 3, "num_attention_heads": 4,
		"num_key_value_heads": 2, "head_dim": 16, "query_pre_attn_scalar": 16, "rms_norm_eps": 1e-6,
		"rope_theta": 1000000.0, "rope_local_base_freq": 10000.0, "rope_scaling": {"factor": 8.0, "rope_type": "linear"},
		"sliding_window": 4, "sliding_window_pattern": 3, "layer_types": ["sliding_attention", "sliding_attention", "full_attention"], "attn_logit_softcapping": null, "final_logit_softcapping": null,
		"hidden_activation": "gelu_pytorch_tanh", "max_position_embeddings": 512, "tie_word_embeddings": true, "eos_token_id": 2}`,
	"gemma2": `{"architectures": ["Gemma2ForCausalLM"], "model_type": "gemma2", "vocab_size": 512,
		"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
		"num_key_value_heads": 2, "head_dim": 16, "query_pre_attn_scalar": 16, "rms_norm_eps": 1e-6,
		"rope_theta": 10000.0, "sliding_window": 4, "layer_types": ["sliding_attention", "full_attention"], "attn_logit_softcapping": 3.0, "final_logit_softcapping": 8.0,
		"hidden_act": "gelu_pytorch_tanh", "hidden_activation": "gelu_pytorch_tanh", "max_position_embeddings": 512,
		"tie_word_embeddings": true, "eos_token_id": 2}`,
	// Gemma 2 without a window: full attention in whet; llama.cpp's gemma2
	// always slides, over the context length here.
	"gemma2-full": `{"architectures": ["Gemma2ForCausalLM"], "model_type": "gemma2", "vocab_size": 512,
		"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
		"num_key_value_heads": 2, "head_dim": 16, "query_pre_attn_scalar": 16, "rms_norm_eps": 1e-6,
		"rope_theta": 10000.0, "sliding_window": null, "attn_logit_softcapping": 3.0, "final_logit_softcapping": 8.0,
		"hidden_activation": "gelu_pytorch_tanh", "max_position_embeddings": 512, "tie_word_embeddings": true, "eos_token_id": 2}`,
	"phi3": `{"architectures": ["Phi3ForCausalLM"], "model_type": "phi3", "vocab_size": 512,
		"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
		"num_key_value_heads": 2, "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "partial_rotary_factor": 0.5,
		"max_position_embeddings": 2048, "original_max_position_embeddings": 512,
		"rope_scaling": {"type": "longrope", "short_factor": [1.0, 1.5, 2.0, 3.0], "long_factor": [1.0, 4.0, 9.0, 16.0]},
		"sliding_window": 2047, "tie_word_embeddings": false, "hidden_act": "silu", "eos_token_id": 2, "pad_token_id": null}`,
	"phi3-long": `{"architectures": ["Phi3ForCausalLM"], "model_type": "phi3", "vocab_size": 512,
		"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
		"num_key_value_heads": 2, "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "partial_rotary_factor": 0.5,
		"max_position_embeddings": 512, "original_max_position_embeddings": 4,
		"rope_scaling": {"type": "longrope", "short_factor": [1.0, 1.5, 2.0, 3.0], "long_factor": [1.0, 4.0, 9.0, 16.0]},
		"sliding_window": 2047, "tie_word_embeddings": true, "hidden_act": "silu", "eos_token_id": 2, "pad_token_id": null}`,
}

// familyNames lists familyConfigs in a fixed order.
var familyNames = []string{"qwen3", "gemma3", "gemma2", "phi3", "phi3-long"}

// makeFamilyModel writes a model folder for familyConfigs[name]: its
// config.json, random float32 weights (norm weights random too, around 1
// for Llama-style norms and around 0 for Gemma's 1 + w) and tiny-llama's
// tokenizer files.
func makeFamilyModel(t *testing.T, dir, name string) string {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"tokenizer.json", "tokenizer_config.json", "generation_config.json"} {
		data, err := os.ReadFile(testdata("tiny-llama/" + f))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, f), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	writeRandomModel(t, dir, familyConfigs[name])
	return dir
}

// writeRandomModel writes config into dir and random weights for it.
func writeRandomModel(t *testing.T, dir, config string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, "config.json"), []byte(config), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := engine.LoadModelConfig(dir)
	if err != nil {
		t.Fatalf("%s: %v", dir, err)
	}
	m, err := engine.NewModel(*cfg, cpu.New())
	if err != nil {
		t.Fatal(err)
	}
	defer m.Free()
	if err := m.InitRandom(5, 0.08); err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(7, uint64(cfg.NumLayers)))
	var ts []safetensors.Tensor
	for _, w := range Weights(m) {
		v, err := w.Values(m)
		if err != nil {
			t.Fatal(err)
		}
		if len(w.Shape) == 1 {
			for i := range v {
				v[i] = float32(rng.NormFloat64()*0.2) + 1 - m.Family().NormOffset
			}
		}
		ts = append(ts, safetensors.F32Tensor(w.Name, w.Shape, v))
	}
	if err := safetensors.Write(filepath.Join(dir, "model.safetensors"), ts, map[string]string{"format": "pt"}); err != nil {
		t.Fatal(err)
	}
}

// familyLoRARun makes a finished LoRA run on a family model with every
// linear of the family adapted (Phi-3: qkv_proj, gate_up_proj).
func familyLoRARun(t *testing.T, dir, base string, seed uint64) string {
	t.Helper()
	return makeAdapterRun(t, dir, base, "lora", seed, nil)
}

// jsonString is v as JSON (for building configs in tests).
func jsonString(t *testing.T, v any) string {
	t.Helper()
	js, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(js)
}
