package engine_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"whet/engine"
	"whet/engine/cpu"
)

// writeConfigJSON writes cfg as a Hugging Face config.json (the keys
// LoadModelConfig reads) into a new folder.
func writeConfigJSON(t *testing.T, cfg engine.ModelConfig) string {
	t.Helper()
	m := map[string]any{
		"model_type": cfg.ModelType, "vocab_size": cfg.VocabSize, "hidden_size": cfg.HiddenSize,
		"intermediate_size": cfg.IntermediateSize, "num_hidden_layers": cfg.NumLayers,
		"num_attention_heads": cfg.NumHeads, "num_key_value_heads": cfg.NumKVHeads, "head_dim": cfg.HeadDim,
		"rms_norm_eps": cfg.RMSNormEps, "rope_theta": cfg.RopeTheta, "max_position_embeddings": cfg.MaxPositions,
		"tie_word_embeddings": cfg.TieWordEmbeddings, "bos_token_id": cfg.BOSTokenID, "eos_token_id": cfg.EOSTokenIDs,
	}
	if rs := cfg.RopeScaling; rs != nil {
		m["rope_scaling"] = map[string]any{"rope_type": rs.Type, "factor": rs.Factor, "low_freq_factor": rs.LowFreqFactor,
			"high_freq_factor": rs.HighFreqFactor, "original_max_position_embeddings": rs.OriginalMaxPositionEmbeddings}
	}
	js, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "config.json"), js, 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// TestOneModelConfigValidator: a model config is held to the same rules
// whether it comes from a config.json (LoadModelConfig) or is built in
// code, as the catalog and the benchmarks do (NewModel): each broken
// config below is refused by all of them, naming the same field.
func TestOneModelConfigValidator(t *testing.T) {
	good := func() engine.ModelConfig {
		c := tinyConfig(false, false)
		c.BOSTokenID, c.EOSTokenIDs = 1, []int{2}
		return c
	}
	tests := []struct {
		field string
		edit  func(*engine.ModelConfig)
	}{
		{"vocab_size", func(c *engine.ModelConfig) { c.VocabSize = 0 }},
		{"num_key_value_heads", func(c *engine.ModelConfig) { c.NumKVHeads = 3 }},
		{"head_dim", func(c *engine.ModelConfig) { c.HeadDim = 5 }},
		{"max_position_embeddings", func(c *engine.ModelConfig) { c.MaxPositions = 0 }},
		{"rms_norm_eps", func(c *engine.ModelConfig) { c.RMSNormEps = -1 }},
		{"rope_theta", func(c *engine.ModelConfig) { c.RopeTheta = 0.5 }},
		{"bos_token_id", func(c *engine.ModelConfig) { c.BOSTokenID = c.VocabSize }},
		{"eos_token_id", func(c *engine.ModelConfig) { c.EOSTokenIDs = []int{1, c.VocabSize + 5} }},
		{"rope_scaling.factor", func(c *engine.ModelConfig) { c.RopeScaling.Factor = 0.5 }},
		{"rope_scaling.high_freq_factor", func(c *engine.ModelConfig) { c.RopeScaling.HighFreqFactor = c.RopeScaling.LowFreqFactor }},
		{"rope_scaling.original_max_position_embeddings", func(c *engine.ModelConfig) { c.RopeScaling.OriginalMaxPositionEmbeddings = 0 }},
	}
	base := good()
	if err := base.Validate(); err != nil {
		t.Fatalf("good config: %v", err)
	}
	if _, err := engine.LoadModelConfig(writeConfigJSON(t, base)); err != nil {
		t.Fatalf("good config.json: %v", err)
	}
	for _, tt := range tests {
		c := good()
		rs := *c.RopeScaling
		c.RopeScaling = &rs
		tt.edit(&c)
		check := func(via string, err error) {
			t.Helper()
			if err == nil || !strings.Contains(err.Error(), "field "+tt.field+":") {
				t.Errorf("%s via %s: error %v does not name field %s", tt.field, via, err, tt.field)
			}
		}
		check("Validate", c.Validate())
		_, err := engine.NewModel(c, cpu.New())
		check("NewModel", err)
		dir := writeConfigJSON(t, c)
		_, err = engine.LoadModelConfig(dir)
		check("LoadModelConfig", err)
		if err != nil && !strings.Contains(err.Error(), filepath.Join(dir, "config.json")) {
			t.Errorf("%s via LoadModelConfig: %v does not name the file", tt.field, err)
		}
	}
	// The decoder runs the supported families only.
	c := good()
	c.ModelType = "gpt2"
	if _, err := engine.NewModel(c, cpu.New()); err == nil || !strings.Contains(err.Error(), "model_type") {
		t.Errorf("gpt2 through NewModel: %v", err)
	}
}
