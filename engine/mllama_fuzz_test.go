package engine

import (
	"os"
	"path/filepath"
	"testing"
)

// FuzzParseMllamaConfig: any config.json either is refused or reads into
// a consistent MllamaConfig whose layout's parameters add up to
// weightBytes (checked where the layout is small enough to build).
func FuzzParseMllamaConfig(f *testing.F) {
	if raw, err := os.ReadFile(filepath.Join("..", "testdata", "tiny-mllama", "config.json")); err == nil {
		f.Add(raw)
	}
	f.Add([]byte(`{"model_type": "mllama", "image_token_index": 32, "text_config": {"vocab_size": 32, "hidden_size": 8, "intermediate_size": 16, "num_hidden_layers": 2, "num_attention_heads": 2, "cross_attention_layers": [1]}, "vision_config": {"hidden_size": 8, "attention_heads": 2, "intermediate_size": 16, "num_hidden_layers": 2, "num_global_layers": 1, "image_size": 8, "patch_size": 4, "max_num_tiles": 2, "intermediate_layers_indices": [0], "vision_output_dim": 16, "supported_aspect_ratios": [[1, 1], [1, 2], [2, 1]]}}`))
	f.Add([]byte(`{"model_type": "mllama", "text_config": {"vocab_size": 32, "hidden_size": 8, "intermediate_size": 16, "num_hidden_layers": 100000000, "num_attention_heads": 2}, "vision_config": {"hidden_size": 32768, "num_hidden_layers": 1024, "image_size": 8192, "patch_size": 1, "vision_output_dim": 196608}}`))
	f.Fuzz(func(t *testing.T, raw []byte) {
		cfg, err := ParseMllamaConfig("config.json", raw)
		if err != nil {
			return
		}
		v := &cfg.Vision
		if v.OutputDim != v.Hidden*(1+len(v.Intermediates)) || v.Patches() < 2 || v.PaddedPatches()%8 != 0 {
			t.Fatalf("inconsistent vision config %+v", v)
		}
		for _, l := range cfg.CrossLayers {
			if l < 0 || l >= cfg.Text.NumLayers {
				t.Fatalf("cross layer %d of %d", l, cfg.Text.NumLayers)
			}
		}
		bytes, ok := cfg.weightBytes()
		if !ok || bytes > 16<<20 {
			return
		}
		var n int64
		for _, p := range layoutMllama(*cfg, MllamaOptions{}).params {
			e := int64(1)
			for _, d := range p.Shape {
				e *= int64(d)
			}
			n += e
		}
		if 4*n != bytes {
			t.Fatalf("layout holds %d bytes of weights, weightBytes says %d", 4*n, bytes)
		}
	})
}
