package engine

import (
	"encoding/json"
	"regexp"
	"strings"
	"testing"
)

// FuzzParseMllamaAdapterConfig: any adapter_config.json is refused with an
// error naming the file, or gives a positive rank and a matcher that never
// panics and, for SaveMllamaAdapter's own pattern, reaches the language
// model's and projector's modules and not the vision tower's; an accepted
// config sets none of the PEFT settings whet does not apply (bias terms,
// modules_to_save, some layers only).
func FuzzParseMllamaAdapterConfig(f *testing.F) {
	f.Add([]byte(`{"peft_type": "LORA", "r": 4, "lora_alpha": 8, "target_modules": "` + strings.ReplaceAll(MllamaPEFTTargetPattern([]string{"q", "v"}, true), `\`, `\\`) + `"}`))
	f.Add([]byte(`{"r": 16, "lora_alpha": 32, "target_modules": ["q_proj", "multi_modal_projector"]}`))
	f.Add([]byte(`{"r": 1, "lora_alpha": 1, "target_modules": "(("}`))
	f.Add([]byte(`{"r": 0, "lora_alpha": 1, "target_modules": []}`))
	f.Add([]byte(`{"r": 2, "lora_alpha": 1, "use_dora": true, "target_modules": ["q_proj"]}`))
	f.Add([]byte(`{"r": 2, "lora_alpha": 1, "target_modules": ["q_proj"], "bias": "all", "modules_to_save": ["lm_head"], "layers_to_transform": 3}`))
	f.Add([]byte(`{"r": 2, "lora_alpha": 1, "target_modules": ["q_proj"], "bias": "none", "modules_to_save": null, "layers_to_transform": []}`))
	f.Fuzz(func(t *testing.T, raw []byte) {
		o, match, err := ParseMllamaAdapterConfig("adapter_config.json", raw)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "adapter_config.json: ") {
				t.Fatalf("error does not name the file: %v", err)
			}
			return
		}
		if o.Rank <= 0 || match == nil {
			t.Fatalf("accepted rank %d, matcher %v", o.Rank, match != nil)
		}
		var c map[string]any
		if json.Unmarshal(raw, &c) == nil {
			for _, k := range []string{"bias", "lora_bias", "modules_to_save", "layers_to_transform"} {
				v := c[k]
				if l, ok := v.([]any); ok && len(l) == 0 {
					continue
				}
				if v != nil && v != false && v != "" && v != "none" {
					t.Fatalf("accepted %s %v, which whet does not apply", k, v)
				}
			}
		}
		for _, m := range []string{"model.language_model.layers.0.self_attn.q_proj", "language_model.model.layers.1.cross_attn.k_proj",
			"multi_modal_projector", "model.vision_model.transformer.layers.0.self_attn.q_proj", ""} {
			match(m)
		}
	})
}

// TestMllamaPEFTTargetPattern: the pattern compiles for every subset and
// reaches exactly the adapted modules.
func TestMllamaPEFTTargetPattern(t *testing.T) {
	re := regexp.MustCompile(`^(?:` + MllamaPEFTTargetPattern([]string{"q", "down"}, false) + `)$`)
	for mod, want := range map[string]bool{
		"model.language_model.layers.3.self_attn.q_proj":           true,
		"language_model.model.layers.3.cross_attn.q_proj":          true,
		"model.language_model.layers.3.mlp.down_proj":              true,
		"model.language_model.layers.3.self_attn.k_proj":           false,
		"model.multi_modal_projector":                              false,
		"model.vision_model.transformer.layers.0.self_attn.q_proj": false,
	} {
		if re.MatchString(mod) != want {
			t.Errorf("%s: %v, want %v", mod, !want, want)
		}
	}
}
