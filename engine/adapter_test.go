package engine_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"whet/engine"
)

// TestAdapterRoundTrip: a trained adapter saved in PEFT's layout and loaded
// onto a fresh copy of the base gives the same logits, and its names and
// config are PEFT's.
func TestAdapterRoundTrip(t *testing.T) {
	tr := tinyTrainer(t, "")
	for i := 0; i < 3; i++ {
		if _, err := tr.TrainStep(); err != nil {
			t.Fatal(err)
		}
	}
	dir := t.TempDir()
	opts := engine.LoRAOptions{Rank: 2, Alpha: 4, Dropout: 0.1}
	if err := engine.SaveAdapter(dir, tr.Model, opts, "tiny"); err != nil {
		t.Fatal(err)
	}
	b := tinyBatch(tr.Model.Cfg.VocabSize, 99)
	a, _ := tr.Model.NewActivations(len(b.Tokens), false)
	want, err := a.Logits(b)
	if err != nil {
		t.Fatal(err)
	}
	fresh := newTiny(t, true, false)
	if _, err := engine.LoadAdapter(dir, fresh); err != nil {
		t.Fatal(err)
	}
	fa, _ := fresh.NewActivations(len(b.Tokens), false)
	got, _ := fa.Logits(b)
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("logit %d: %g after reload, %g before", i, got[i], want[i])
		}
	}
	// Adapter off gives back the base logits exactly; on, after training,
	// the tuned model differs from the base.
	base := newTiny(t, true, false)
	ba, _ := base.NewActivations(len(b.Tokens), false)
	wantBase, _ := ba.Logits(b)
	differ := 0
	for i := range wantBase {
		if got[i] != wantBase[i] {
			differ++
		}
	}
	if differ < len(wantBase)/2 {
		t.Fatalf("tuned logits equal the base's in %d of %d places", len(wantBase)-differ, len(wantBase))
	}
	fresh.SetLoRAEnabled(false)
	gotBase, _ := fa.Logits(b)
	for i := range wantBase {
		if gotBase[i] != wantBase[i] {
			t.Fatalf("adapter off: logit %d is %g, base %g", i, gotBase[i], wantBase[i])
		}
	}
	var cfg map[string]any
	js, _ := os.ReadFile(filepath.Join(dir, "adapter_config.json"))
	json.Unmarshal(js, &cfg)
	if cfg["peft_type"] != "LORA" || cfg["r"].(float64) != 2 || cfg["lora_alpha"].(float64) != 4 {
		t.Fatalf("adapter_config.json = %s", js)
	}
}

// TestAdapterTargetPattern: adapter_config.json's target_modules may be a
// pattern (PEFT matches it whole against module paths); one that reaches
// the adapted linears loads, one that reaches none is refused naming the
// file and the field rather than read as "every linear".
func TestAdapterTargetPattern(t *testing.T) {
	tr := tinyTrainer(t, "")
	dir := t.TempDir()
	if err := engine.SaveAdapter(dir, tr.Model, engine.LoRAOptions{Rank: 2, Alpha: 4}, "tiny"); err != nil {
		t.Fatal(err)
	}
	cfgPath := filepath.Join(dir, "adapter_config.json")
	js, _ := os.ReadFile(cfgPath)
	var cfg map[string]any
	if err := json.Unmarshal(js, &cfg); err != nil {
		t.Fatal(err)
	}
	for pattern, want := range map[string]string{
		`.*\.layers\.\d+\.(self_attn|mlp)\.(q|k|v|o|gate|up|down)_proj`: "",
		`.*vision_tower.*`: "adapter_config.json: target_modules: pattern",
		`(`:                "adapter_config.json: target_modules: pattern",
	} {
		cfg["target_modules"] = pattern
		js, _ := json.Marshal(cfg)
		if err := os.WriteFile(cfgPath, js, 0o644); err != nil {
			t.Fatal(err)
		}
		_, err := engine.LoadAdapter(dir, newTiny(t, true, false))
		if want == "" && err != nil {
			t.Errorf("%s: %v", pattern, err)
		}
		if want != "" && (err == nil || !strings.Contains(err.Error(), want)) {
			t.Errorf("%s: error %v, want …%s…", pattern, err, want)
		}
	}
}

// TestAdapterRefusesSettingsItDoesNotApply: a PEFT adapter_config.json
// that asks for more than one rank and alpha of plain LoRA matrices on
// every layer (DoRA, bias terms, modules_to_save, rank or alpha patterns,
// some layers only) is refused naming the file and the field; these were
// read and ignored, so the model differed from PEFT's without a word. An r
// that is not the tensors' rank is refused before AddLoRA allocates r rows.
func TestAdapterRefusesSettingsItDoesNotApply(t *testing.T) {
	tr := tinyTrainer(t, "")
	dir := t.TempDir()
	if err := engine.SaveAdapter(dir, tr.Model, engine.LoRAOptions{Rank: 2, Alpha: 4}, "tiny"); err != nil {
		t.Fatal(err)
	}
	cfgPath := filepath.Join(dir, "adapter_config.json")
	for extra, want := range map[string]string{
		`"use_dora": true`:                    "use_dora is set",
		`"lora_bias": true`:                   "lora_bias is set",
		`"bias": "lora_only"`:                 "bias is set",
		`"modules_to_save": ["embed_tokens"]`: "modules_to_save is set",
		`"rank_pattern": {"q_proj": 4}`:       "rank_pattern is set",
		`"alpha_pattern": {"q_proj": 8}`:      "alpha_pattern is set",
		`"layers_to_transform": [1]`:          "layers_to_transform is set",
		`"r": 64`:                             "r is 64, but " + filepath.Join(dir, "adapter_model.safetensors") + " has rank 2",
	} {
		js := `{"peft_type": "LORA", "r": 2, "lora_alpha": 4, "target_modules": ["q_proj"], "bias": "none", ` + extra + `}`
		if err := os.WriteFile(cfgPath, []byte(js), 0o644); err != nil {
			t.Fatal(err)
		}
		_, err := engine.LoadAdapter(dir, newTiny(t, true, false))
		if err == nil || !strings.HasPrefix(err.Error(), cfgPath+": ") || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: error %v, want %s: …%s…", extra, err, cfgPath, want)
		}
	}
}
