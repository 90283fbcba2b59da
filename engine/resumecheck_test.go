package engine_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"whet/engine"
)

// A run folder with checkpoints is resumed only by the run that made
// them: other data, another model or other settings are refused with what
// changed, unless ResumeAnyway; settings that change nothing trained
// (how often to log or save, the backend) pass.
func TestResumeRefusesChangedInputs(t *testing.T) {
	dir := t.TempDir()
	data := filepath.Join(t.TempDir(), "chat.jsonl")
	orig, err := os.ReadFile("../testdata/datasets/tiny-chat.jsonl")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(data, orig, 0o644); err != nil {
		t.Fatal(err)
	}
	base := smallRun(dir, "r")
	base.Data.Path = data
	runToEnd(t, base)

	prepare := func(cfg engine.RunConfig) error {
		s, err := engine.Prepare(cfg)
		if err == nil {
			s.Close()
		}
		return err
	}
	refused := func(what string, cfg engine.RunConfig, want ...string) {
		t.Helper()
		err := prepare(cfg)
		var changed *engine.ResumeChangedError
		if !errors.As(err, &changed) {
			t.Fatalf("%s: want a refusal, got %v", what, err)
		}
		for _, w := range want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: the refusal does not say %q:\n%v", what, w, err)
			}
		}
	}

	same := base
	same.Train.LogEvery, same.Train.SaveEvery, same.Train.KeepCheckpoints = 3, 1, 5
	if err := prepare(same); err != nil {
		t.Fatalf("resume with only reporting settings changed: %v", err)
	}

	lr := base
	lr.Train.LR = 6e-3
	lr.LoRA.Rank = 4
	refused("lr and rank", lr, "train.lr: 0.003 → 0.006", "lora.r: 2 → 4", "--resume-anyway")

	// The same path with other content.
	if err := os.WriteFile(data, append(orig, orig...), 0o644); err != nil {
		t.Fatal(err)
	}
	refused("data content", base, "data.path: the content of "+data+" changed")

	// Another model folder: a copy of the tiny Llama with one more layer
	// in its config.json.
	model := t.TempDir()
	src := abs("../testdata/tiny-llama")
	entries, _ := os.ReadDir(src)
	for _, e := range entries {
		b, _ := os.ReadFile(filepath.Join(src, e.Name()))
		if e.Name() == "config.json" {
			b = append(b, ' ')
		}
		os.WriteFile(filepath.Join(model, e.Name()), b, 0o644)
	}
	other := base
	other.Model = model
	refused("model", other, "model: "+src+" → "+model)

	anyway := base // other data (above) and another rate
	anyway.Train.LR = 6e-3
	anyway.ResumeAnyway = true
	s, err := engine.Prepare(anyway)
	if err != nil {
		t.Fatalf("resume anyway: %v", err)
	}
	defer s.Close()
	if !strings.Contains(strings.Join(s.Notices, "\n"), "resuming anyway") || !strings.Contains(strings.Join(s.Notices, "\n"), "train.lr") || !strings.Contains(strings.Join(s.Notices, "\n"), "data.path") {
		t.Errorf("notices %q should say what changed", s.Notices)
	}
}

// DPO's cached reference log-probs are used only for the data and model
// they were computed from: the same number of rows with other text gets
// fresh ones.
func TestDPOReferenceCacheFollowsData(t *testing.T) {
	dir := t.TempDir()
	data := writePrefs(t, 8)
	cfg := engine.RunConfig{Name: "dpo", Model: abs("../testdata/tiny-qwen2"), Method: "dpo", Backend: "cpu", RunsDir: dir,
		LoRA: engine.LoRAConfig{Rank: 2, Alpha: 4}, DPO: engine.DPOConfig{Beta: 0.1},
		Data:  engine.DataConfig{Path: data, MaxLength: 64, Packing: true, Seed: 1},
		Train: engine.TrainConfig{MaxSteps: 2, MicroBatch: 2, LR: 5e-3, Seed: 1}}
	cfg = withDefaults(t, cfg)
	notices := func() string {
		t.Helper()
		s, err := engine.Prepare(cfg)
		if err != nil {
			t.Fatal(err)
		}
		s.Close()
		return strings.Join(s.Notices, "\n")
	}
	if n := notices(); !strings.Contains(n, "computed before training") {
		t.Fatalf("first start: %s", n)
	}
	if n := notices(); !strings.Contains(n, "read from") {
		t.Fatalf("same data: the cache should be read: %s", n)
	}
	b, _ := os.ReadFile(data)
	os.WriteFile(data, []byte(strings.ReplaceAll(string(b), `"No."`, `"Never."`)), 0o644)
	if n := notices(); !strings.Contains(n, "computed before training") {
		t.Fatalf("other rejected answers, same row count: stale reference log-probs used: %s", n)
	}
}
