package engine

import (
	"os"
	"path/filepath"
	"testing"
)

// FuzzModelConfig: no config.json makes the parser, the validator or the
// size count panic; a config they accept is one whose weights are counted
// the same way from one layer (what NewModel checks before the layout) as
// from the whole layout.
func FuzzModelConfig(f *testing.F) {
	for _, dir := range []string{"tiny-llama", "tiny-qwen2", "tiny-qwen3", "tiny-gemma3", "tiny-gemma2", "tiny-phi3"} {
		if raw, err := os.ReadFile(filepath.Join("..", "testdata", dir, "config.json")); err == nil {
			f.Add(raw)
		}
	}
	f.Add([]byte(`{"model_type": "mistral", "vocab_size": 1000000000000, "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4}`))
	f.Add([]byte(`{"model_type": "llama", "architectures": ["LlamaForCausalLM"], "vocab_size": 32, "hidden_size": 8, "intermediate_size": 16, "num_hidden_layers": 1000000000, "num_attention_heads": 2, "rope_scaling": {"rope_type": "llama3", "factor": 8, "low_freq_factor": 1, "high_freq_factor": 4, "original_max_position_embeddings": 64}}`))
	f.Add([]byte(`{"model_type": "gemma3_text", "architectures": ["Gemma3ForCausalLM"], "vocab_size": 32, "hidden_size": 8, "intermediate_size": 16, "num_hidden_layers": 7, "num_attention_heads": 2, "head_dim": 4, "sliding_window": 3, "rope_scaling": {"rope_type": "linear", "factor": 8}, "layer_types": ["sliding_attention", "full_attention"]}`))
	f.Add([]byte(`{"model_type": "phi3", "vocab_size": 32, "hidden_size": 8, "intermediate_size": 16, "num_hidden_layers": 2, "num_attention_heads": 2, "partial_rotary_factor": 0.5, "original_max_position_embeddings": 4, "rope_scaling": {"type": "longrope", "short_factor": [1], "long_factor": [2]}, "bos_token_id": 1, "eos_token_id": 2}`))
	f.Add([]byte(`{"model_type": "gemma2", "vocab_size": 32, "hidden_size": 8, "intermediate_size": 16, "num_hidden_layers": 100000000, "num_attention_heads": 2, "head_dim": 4, "bos_token_id": 2, "eos_token_id": 1, "attn_logit_softcapping": null}`))
	f.Fuzz(func(t *testing.T, raw []byte) {
		j, err := parseJSONObject("config.json", raw)
		if err != nil {
			return
		}
		cfg, err := parseModelConfig(j)
		if err != nil || cfg.Validate() != nil {
			return
		}
		for _, o := range []ModelOptions{{}, {NF4Linears: true}} {
			total, err := weightBytesOf(*cfg, nil, o)
			if err != nil || total > 64<<20 {
				continue // too large to lay out here; NewModel refuses it by memory
			}
			whole, err := layoutModel(*cfg, nil, o).weightBytes()
			if err != nil {
				t.Fatalf("counted %d bytes from one layer, but the whole layout fails: %v", total, err)
			}
			if want := whole + int64(cfg.NumLayers)*layoutBytesPerLayer; total != want {
				t.Fatalf("nf4 %v: %d bytes counted from one layer, %d from the layout", o.NF4Linears, total, want)
			}
		}
	})
}
