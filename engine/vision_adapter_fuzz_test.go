package engine

import (
	"regexp"
	"strings"
	"testing"
)

// FuzzParseMllamaAdapterConfig: any adapter_config.json is refused with an
// error naming the file, or gives a positive rank and a matcher that never
// panics and, for SaveMllamaAdapter's own pattern, reaches the language
// model's and projector's modules and not the vision tower's.
func FuzzParseMllamaAdapterConfig(f *testing.F) {
	f.Add([]byte(`{"peft_type": "LORA", "r": 4, "lora_alpha": 8, "target_modules": "` + strings.ReplaceAll(MllamaPEFTTargetPattern([]string{"q", "v"}, true), `\`, `\\`) + `"}`))
	f.Add([]byte(`{"r": 16, "lora_alpha": 32, "target_modules": ["q_proj", "multi_modal_projector"]}`))
	f.Add([]byte(`{"r": 1, "lora_alpha": 1, "target_modules": "(("}`))
	f.Add([]byte(`{"r": 0, "lora_alpha": 1, "target_modules": []}`))
	f.Add([]byte(`{"r": 2, "lora_alpha": 1, "use_dora": true, "target_modules": ["q_proj"]}`))
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
