package engine_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"whet/engine"
)

// An example longer than the model's max_position_embeddings is said
// before training (tiny-llama has 512 positions; its rows here have about
// 1,200 tokens): the run trains positions the base model never saw, and
// nothing said so. Within the positions, nothing is said.
func TestPrepareWarnsPastMaxPositions(t *testing.T) {
	dir := t.TempDir()
	words := make([]string, 120)
	for i := range words {
		words[i] = "word" + strings.Repeat("x", i%3)
	}
	text := strings.Join(words, " ")
	var b strings.Builder
	for range 4 {
		row, _ := json.Marshal(map[string]any{"messages": []map[string]string{{"role": "user", "content": text}, {"role": "assistant", "content": text}}})
		b.Write(append(row, '\n'))
	}
	data := filepath.Join(dir, "long.jsonl")
	if err := os.WriteFile(data, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		maxLength int
		warn      bool
	}{{4096, true}, {512, false}} {
		cfg := withDefaults(t, engine.RunConfig{Name: "pos", Model: abs("../testdata/tiny-llama"), Method: "lora", Backend: "cpu", RunsDir: t.TempDir(),
			LoRA:  engine.LoRAConfig{Rank: 4, Alpha: 8},
			Data:  engine.DataConfig{Path: data, MaxLength: tc.maxLength, Seed: 1},
			Train: engine.TrainConfig{MaxSteps: 1, MicroBatch: 1, LR: 1e-3, Seed: 1}})
		s, err := engine.Prepare(cfg)
		if err != nil {
			t.Fatal(err)
		}
		notes := strings.Join(s.Notices, "\n")
		s.Close()
		if got := strings.Contains(notes, "more than the model's max_position_embeddings (512)"); got != tc.warn {
			t.Errorf("max_length %d: warned %v, want %v:\n%s", tc.maxLength, got, tc.warn, notes)
		}
	}
}
