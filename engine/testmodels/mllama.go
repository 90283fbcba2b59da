package testmodels

import "strings"

// TinyMllamaConfig is the tests' tiny Llama 3.2 Vision config.json: 16-pixel
// tiles of 8-pixel patches (5 positions, padded to 8), up to 4 tiles,
// vision hidden 32 with 3 local and 2 global layers and intermediate layers
// [0, 2]; text hidden 64 (head dim 16, GQA 4/2), 3 layers with
// cross-attention at layer 1, vocab 256 (+8 embedding rows, image token 256).
const TinyMllamaConfig = `{
  "architectures": ["MllamaForConditionalGeneration"], "image_token_index": 256, "model_type": "mllama",
  "text_config": {
    "bos_token_id": 1, "cross_attention_layers": [1], "dropout": 0, "eos_token_id": 2,
    "hidden_act": "silu", "hidden_size": 64, "intermediate_size": 96,
    "max_position_embeddings": 512, "model_type": "mllama_text_model",
    "num_attention_heads": 4, "num_hidden_layers": 3, "num_key_value_heads": 2,
    "pad_token_id": null, "rms_norm_eps": 1e-05,
    "rope_scaling": {"factor": 8.0, "high_freq_factor": 4.0, "low_freq_factor": 1.0,
      "original_max_position_embeddings": 64, "rope_type": "llama3"},
    "rope_theta": 500000.0, "tie_word_embeddings": false, "vocab_size": 256
  },
  "vision_config": {
    "attention_heads": 4, "hidden_act": "gelu", "hidden_size": 32, "image_size": 16,
    "intermediate_layers_indices": [0, 2], "intermediate_size": 64, "max_num_tiles": 4,
    "model_type": "mllama_vision_model", "norm_eps": 1e-05, "num_channels": 3,
    "num_global_layers": 2, "num_hidden_layers": 3, "patch_size": 8,
    "supported_aspect_ratios": [[1, 1], [1, 2], [1, 3], [1, 4], [2, 1], [2, 2], [3, 1], [4, 1]],
    "vision_output_dim": 96
  }
}`

// Released11BVisionConfig is the released Llama-3.2-11B-Vision config.json.
const Released11BVisionConfig = `{"architectures": ["MllamaForConditionalGeneration"], "image_token_index": 128256, "model_type": "mllama",
 "text_config": {"cross_attention_layers": [3, 8, 13, 18, 23, 28, 33, 38], "hidden_act": "silu", "hidden_size": 4096,
  "intermediate_size": 14336, "max_position_embeddings": 131072, "model_type": "mllama_text_model",
  "num_attention_heads": 32, "num_hidden_layers": 40, "num_key_value_heads": 8, "rms_norm_eps": 1e-05,
  "rope_scaling": {"factor": 8.0, "high_freq_factor": 4.0, "low_freq_factor": 1.0, "original_max_position_embeddings": 8192, "rope_type": "llama3"},
  "rope_theta": 500000.0, "tie_word_embeddings": false, "vocab_size": 128256},
 "vision_config": {"attention_heads": 16, "hidden_act": "gelu", "hidden_size": 1280, "image_size": 560,
  "intermediate_layers_indices": [3, 7, 15, 23, 30], "intermediate_size": 5120, "max_num_tiles": 4,
  "norm_eps": 1e-05, "num_channels": 3, "num_global_layers": 8, "num_hidden_layers": 32,
  "patch_size": 14, "supported_aspect_ratios": [[1, 1], [1, 2], [1, 3], [1, 4], [2, 1], [2, 2], [3, 1], [4, 1]], "vision_output_dim": 7680}}`

// MllamaWeightDraw is how the reference script draws each value of a tiny
// Mllama's weight named name (the released checkpoint's or the engine's
// parameter name): mean + std·N(0, 1), with gates (gate, gate_attn,
// gate_ffn) 0.5 and 0.3, norm weights 1 and 0.1, every other weight 0 and
// 0.1.
func MllamaWeightDraw(name string) (mean, std float32) {
	leaf := name[strings.LastIndex(name, ".")+1:]
	switch {
	case strings.HasSuffix(leaf, "gate") || leaf == "gate_attn" || leaf == "gate_ffn":
		return 0.5, 0.3
	case strings.Contains(name, "norm") && leaf == "weight":
		return 1, 0.1
	default:
		return 0, 0.1
	}
}
