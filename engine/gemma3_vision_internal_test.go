package engine

import (
	"slices"
	"testing"
)

// The released gemma-3-4b-it and gemma-3-12b-it config.json files (their
// vision_config and the top level as published; text_config trimmed to
// the hidden size) give the tower and projector of those checkpoints: the
// shapes below are the ones in their model.safetensors index.
func TestGemma3VisionReleasedShapes(t *testing.T) {
	const released = `{
  "architectures": ["Gemma3ForConditionalGeneration"],
  "boi_token_index": 255999, "eoi_token_index": 256000, "eos_token_id": [1, 106],
  "image_token_index": 262144, "initializer_range": 0.02, "mm_tokens_per_image": 256, "model_type": "gemma3",
  "text_config": {"hidden_size": 2560, "intermediate_size": 10240, "model_type": "gemma3_text", "num_hidden_layers": 34,
    "rope_scaling": {"factor": 8.0, "rope_type": "linear"}, "sliding_window": 1024},
  "torch_dtype": "bfloat16", "transformers_version": "4.50.0.dev0",
  "vision_config": {"hidden_size": 1152, "image_size": 896, "intermediate_size": 4304, "model_type": "siglip_vision_model",
    "num_attention_heads": 16, "num_hidden_layers": 27, "patch_size": 14, "vision_use_head": false}
}`
	for _, tc := range []struct {
		name       string
		textHidden int
	}{{"gemma-3-4b-it", 2560}, {"gemma-3-12b-it", 3840}} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := ParseGemma3VisionConfig([]byte(released), tc.textHidden)
			if err != nil {
				t.Fatal(err)
			}
			if c.NumPatches() != 4096 || c.TokensPerSide() != 16 || c.PoolKernel() != 4 || c.HeadDim() != 72 ||
				c.ImageTokenID != 262144 || c.BOITokenID != 255999 || c.EOITokenID != 256000 || c.LayerNormEps != 1e-6 || c.Channels != 3 {
				t.Fatalf("config %+v: want 64x64 patches pooled 4x4 to 16x16 tokens, head_dim 72, the released ids", c)
			}
			v := c.layout()
			if len(v.Layers) != 27 {
				t.Fatalf("%d layers", len(v.Layers))
			}
			want := map[string][]int{
				"vision_tower.vision_model.embeddings.patch_embedding.weight":         {1152, 3, 14, 14},
				"vision_tower.vision_model.embeddings.patch_embedding.bias":           {1152},
				"vision_tower.vision_model.embeddings.position_embedding.weight":      {4096, 1152},
				"vision_tower.vision_model.encoder.layers.26.self_attn.q_proj.weight": {1152, 1152},
				"vision_tower.vision_model.encoder.layers.26.self_attn.out_proj.bias": {1152},
				"vision_tower.vision_model.encoder.layers.0.mlp.fc1.weight":           {4304, 1152},
				"vision_tower.vision_model.encoder.layers.0.mlp.fc2.weight":           {1152, 4304},
				"vision_tower.vision_model.encoder.layers.0.layer_norm1.bias":         {1152},
				"vision_tower.vision_model.post_layernorm.weight":                     {1152},
				"multi_modal_projector.mm_soft_emb_norm.weight":                       {1152},
				"multi_modal_projector.mm_input_projection_weight":                    {1152, tc.textHidden},
			}
			got := map[string][]int{}
			for _, p := range v.baseParams() {
				got[p.Name] = p.Shape
			}
			for name, shape := range want {
				if !slices.Equal(got[name], shape) {
					t.Errorf("%s: %v, released %v", name, got[name], shape)
				}
			}
			// 27 layers of 16 tensors, 3 embedding, 2 post-norm, 2 projector.
			if n := len(got); n != 27*16+7 {
				t.Errorf("%d tensors, the released tower and projector have %d", n, 27*16+7)
			}
			if tc.name != "gemma-3-4b-it" {
				return
			}
			// The whole 4B model, language model included: its safetensors
			// index says total_size 8,600,158,944 bytes of bf16.
			cfg, err := ParseModelConfig("config.json", []byte(released))
			if err != nil {
				t.Fatal(err)
			}
			m := layoutModel(*cfg, nil, ModelOptions{})
			m.Gemma3Vision = v
			if n := m.NumParams(); n != 4_300_079_472 {
				t.Errorf("gemma-3-4b-it: %d parameters, the checkpoint holds 4,300,079,472", n)
			}
		})
	}
}
