package engine_test

import (
	"strings"
	"testing"

	"whet/engine"
	"whet/engine/reward"
)

// FuzzGRPOConfig reads run files with a grpo section: decoding and
// validation never panic, an error names a run-file key, and a config that
// validates builds its reward functions.
func FuzzGRPOConfig(f *testing.F) {
	for _, s := range []string{
		"method: grpo\nmodel: m\ndata: {path: d.jsonl}\ngrpo:\n  rewards:\n    - {type: regex, pattern: '\\?$', weight: 2}\n",
		"method: grpo\nmodel: m\ndata: {path: d.jsonl}\ngrpo: {num_generations: 3, loss_type: bnpo, scale_rewards: batch}\n",
		"method: grpo\nmodel: m\ndata: {path: d.jsonl}\ngrpo: {rewards: [{type: command, command: [score], timeout_s: -1}]}\n",
		"method: grpo\nmodel: m\ndata: {path: d.jsonl}\ngrpo: {rewards: [{type: length}], beta: 0.1, full_weights: true}\n",
		"method: grpo\nmodel: m\ndata: {path: d.jsonl}\ngrpo: {rewards: [{type: exact_answer, pattern: '(x'}]}\n",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		cfg, err := engine.DecodeRunConfig([]byte(s))
		if err != nil {
			return
		}
		if err := cfg.Validate(); err != nil {
			if cfg.Method == "grpo" && strings.Contains(err.Error(), "grpo") && !strings.Contains(err.Error(), "grpo.") && !strings.Contains(err.Error(), "grpo ") {
				t.Fatalf("error names no key: %v", err)
			}
			return
		}
		if cfg.Method == "grpo" {
			if _, _, err := reward.Build(cfg.GRPO.Rewards); err != nil {
				t.Fatalf("validated config's rewards do not build: %v", err)
			}
		}
	})
}
