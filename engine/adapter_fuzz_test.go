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

// FuzzLoadAdapter loads a PEFT adapter folder (whet chat --adapter, whet
// export) whose adapter_model.safetensors is a rank-2 adapter of a tiny
// Llama and whose adapter_config.json is arbitrary. No config panics or
// allocates past the file's adapters (r is checked against the tensors
// first); an error names the config or the weights file; and an adapter
// that loads has the file's rank, the config's alpha, and none of the PEFT
// settings whet does not apply (DoRA, bias terms, modules_to_save, a rank
// or alpha per module, some layers only), which would make the loaded
// model silently differ from PEFT's.
func FuzzLoadAdapter(f *testing.F) {
	newBase := func() (*engine.Model, error) {
		m, err := engine.NewModel(tinyConfig(true, false), cpu.New())
		if err != nil {
			return nil, err
		}
		return m, m.InitRandom(3, 0.3)
	}
	dir := f.TempDir()
	m, err := newBase()
	if err != nil {
		f.Fatal(err)
	}
	opts := engine.LoRAOptions{Rank: 2, Alpha: 4}
	if err := m.AddLoRA(opts); err != nil {
		f.Fatal(err)
	}
	if err := engine.SaveAdapter(dir, m, opts, "tiny"); err != nil {
		f.Fatal(err)
	}
	cfgPath := filepath.Join(dir, "adapter_config.json")
	saved, err := os.ReadFile(cfgPath)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(saved)
	for _, s := range []string{
		`{"peft_type": "LORA", "r": 2, "lora_alpha": 8, "target_modules": ["q_proj", "v_proj"], "use_rslora": true}`,
		`{"r": 2, "lora_alpha": 4, "target_modules": ".*\\.(q|k|v|o|gate|up|down)_proj", "bias": "none", "modules_to_save": null, "rank_pattern": {}}`,
		`{"r": 2, "lora_alpha": 4, "target_modules": ["q_proj"], "modules_to_save": ["lm_head"]}`,
		`{"r": 2, "lora_alpha": 4, "target_modules": ["q_proj"], "bias": "all"}`,
		`{"r": 2, "lora_alpha": 4, "target_modules": ["q_proj"], "use_dora": true}`,
		`{"r": 2, "lora_alpha": 4, "target_modules": ["q_proj"], "alpha_pattern": {"q_proj": 8}}`,
		`{"r": 2, "lora_alpha": 4, "target_modules": ["q_proj"], "layers_to_transform": [0]}`,
		`{"r": 100000000, "lora_alpha": 4, "target_modules": ["q_proj"]}`,
		`{"r": -1, "target_modules": ["q_proj"]}`,
		`{"r": 2, "target_modules": ["lm_head"]}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, js []byte) {
		if err := os.WriteFile(cfgPath, js, 0o644); err != nil {
			t.Fatal(err)
		}
		base, err := newBase()
		if err != nil {
			t.Fatal(err)
		}
		got, err := engine.LoadAdapter(dir, base)
		if err != nil {
			if !strings.Contains(err.Error(), "adapter_config.json") && !strings.Contains(err.Error(), "adapter_model.safetensors") {
				t.Fatalf("error names neither file: %v", err)
			}
			return
		}
		var cfg struct {
			R            int            `json:"r"`
			Alpha        float64        `json:"lora_alpha"`
			UseDoRA      bool           `json:"use_dora"`
			LoRABias     bool           `json:"lora_bias"`
			Bias         string         `json:"bias"`
			ModulesSaved []string       `json:"modules_to_save"`
			RankPattern  map[string]any `json:"rank_pattern"`
			AlphaPattern map[string]any `json:"alpha_pattern"`
			Layers       []int          `json:"layers_to_transform"`
		}
		if err := json.Unmarshal(js, &cfg); err != nil {
			t.Fatalf("loaded a config encoding/json cannot read: %v", err)
		}
		if got.Rank != 2 || got.Rank != cfg.R || got.Alpha != cfg.Alpha {
			t.Fatalf("loaded rank %d alpha %g; the file's tensors have rank 2, the config says r %d lora_alpha %g", got.Rank, got.Alpha, cfg.R, cfg.Alpha)
		}
		if cfg.UseDoRA || cfg.LoRABias || cfg.Bias != "" && cfg.Bias != "none" || len(cfg.ModulesSaved) > 0 ||
			len(cfg.RankPattern) > 0 || len(cfg.AlphaPattern) > 0 || len(cfg.Layers) > 0 {
			t.Fatalf("loaded an adapter with a setting whet does not apply: %s", js)
		}
	})
}
