package engine_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"whet/engine"
)

// A run with train.sample_every set but no prompts to sample (none of its
// own, no eval rows) makes no samples and says so with
// engine.NoSamplesNote; with sample prompts it says nothing of the kind.
func TestPrepareSaysWhenNoSamplesCome(t *testing.T) {
	dir := t.TempDir()
	data := writeChatRows(t, dir, 6, "hello number ")
	for _, prompts := range [][]string{nil, {"Say hi"}} {
		cfg := withDefaults(t, engine.RunConfig{Name: "ns", Model: abs("../testdata/tiny-llama"), Method: "lora", Backend: "cpu", RunsDir: t.TempDir(),
			LoRA:  engine.LoRAConfig{Rank: 4, Alpha: 8},
			Data:  engine.DataConfig{Path: data, MaxLength: 64, Seed: 1},
			Train: engine.TrainConfig{MaxSteps: 1, MicroBatch: 1, LR: 1e-3, Seed: 1, SampleEvery: 5, SampleTokens: 4, SamplePrompts: prompts}})
		cfg.Data.EvalSplit = 0
		s, err := engine.Prepare(cfg)
		if err != nil {
			t.Fatal(err)
		}
		notes := strings.Join(s.Notices, "\n")
		sampler := s.Trainer.Sampler != nil
		s.Close()
		want := engine.NoSamplesNote + "no sample prompts (train.sample_prompts) and no eval rows to take them from"
		if said := strings.Contains(notes, want); said == (prompts != nil) || sampler != (prompts != nil) {
			t.Errorf("prompts %q: sampler %v, says no samples %v:\n%s", prompts, sampler, said, notes)
		}
	}
}

// writeChatRows writes n one-turn chats (user: prefix and i x's, assistant:
// "hi") to DIR/rows.jsonl and returns its path.
func writeChatRows(t *testing.T, dir string, n int, prefix string) string {
	t.Helper()
	var b strings.Builder
	for i := range n {
		row, _ := json.Marshal(map[string]any{"messages": []map[string]string{{"role": "user", "content": prefix + strings.Repeat("x", i)}, {"role": "assistant", "content": "hi"}}})
		b.Write(append(row, '\n'))
	}
	data := filepath.Join(dir, "rows.jsonl")
	if err := os.WriteFile(data, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	return data
}
