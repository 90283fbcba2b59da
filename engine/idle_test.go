package engine_test

import (
	"strings"
	"testing"

	"whet/engine"
)

// A run whose every step has learning rate 0 says so before it trains: one
// step with warm-up (a two-pair DPO file at the default micro batch of 8
// is one step) trained nothing, silently; the studio showed loss 0.6931 and
// a tuned model equal to the base. Two steps, or no warm-up, say nothing.
func TestIdleScheduleIsSaid(t *testing.T) {
	if !(engine.Schedule{Kind: "cosine", Warmup: 3, Total: 1}).Idle() || (engine.Schedule{Kind: "cosine", Warmup: 3, Total: 2}).Idle() ||
		(engine.Schedule{Kind: "linear", Total: 1}).Idle() || (engine.Schedule{Kind: "constant"}).Idle() {
		t.Error("Idle: want true only for one step with warm-up")
	}
	dir := t.TempDir()
	data := writeChatRows(t, dir, 4, "hello ")
	for _, c := range []struct {
		steps, warmup int
		said          bool
	}{{1, 3, true}, {2, 3, false}, {1, 0, false}} {
		cfg := withDefaults(t, engine.RunConfig{Name: "idle", Model: abs("../testdata/tiny-llama"), Method: "lora", Backend: "cpu", RunsDir: t.TempDir(),
			LoRA:  engine.LoRAConfig{Rank: 4, Alpha: 8},
			Data:  engine.DataConfig{Path: data, MaxLength: 64, Seed: 1},
			Train: engine.TrainConfig{MaxSteps: c.steps, WarmupSteps: c.warmup, MicroBatch: 1, LR: 1e-3, Seed: 1}})
		cfg.Train.WarmupRatio = 0
		s, err := engine.Prepare(cfg)
		if err != nil {
			t.Fatal(err)
		}
		notes := strings.Join(s.Notices, "\n")
		s.Close()
		if said := strings.Contains(notes, "warning: learning rate 0 at every step: the model will not change"); said != c.said {
			t.Errorf("%d step(s), %d warm-up: warned %v, want %v:\n%s", c.steps, c.warmup, said, c.said, notes)
		}
	}
}
