package engine_test

import (
	"strings"
	"testing"

	"whet/engine"
)

// FuzzParseGemma3VisionConfig: any config.json is parsed or refused with an
// error, and what is accepted is a geometry the tower can run (patches
// that pool evenly to a square token count).
func FuzzParseGemma3VisionConfig(f *testing.F) {
	f.Add([]byte(tinyGemma3VisionConfig), 32)
	f.Add([]byte(`{"model_type": "gemma3", "vision_config": {"hidden_size": 1152, "image_size": 896, "intermediate_size": 4304,
		"num_attention_heads": 16, "num_hidden_layers": 27, "patch_size": 14, "vision_use_head": false}}`), 2560)
	f.Add([]byte(`{"model_type": "gemma3", "mm_tokens_per_image": 3, "vision_config": {}}`), 8)
	f.Add([]byte(`{"model_type": "gemma3", "vision_config": {"patch_size": 0, "layer_norm_eps": -1}}`), 8)
	f.Add([]byte(`{"model_type": "gemma3", "vision_config": null}`), 8)
	f.Fuzz(func(t *testing.T, data []byte, textHidden int) {
		c, err := engine.ParseGemma3VisionConfig(data, textHidden)
		if err != nil {
			if !strings.Contains(err.Error(), "config.json") {
				t.Fatalf("error without the file named: %v", err)
			}
			return
		}
		if c.Hidden%c.Heads != 0 || c.ImageSize%c.PatchSize != 0 || c.TokensPerSide()*c.TokensPerSide() != c.TokensPerImage ||
			c.PatchesPerSide()%c.TokensPerSide() != 0 || c.PoolKernel() < 1 {
			t.Fatalf("accepted a geometry the tower cannot run: %+v", c)
		}
	})
}
