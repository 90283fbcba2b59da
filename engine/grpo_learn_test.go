package engine_test

import (
	"path/filepath"
	"testing"

	"whet/datasets"
	"whet/datasets/tokenizer"
	"whet/engine"
	"whet/engine/cpu"
	"whet/engine/reward"
	"whet/presets/demo"
)

// demoGRPO builds a GRPO trainer on the shipped demo model (LoRA) over the
// demo's held-out prompts, rewarded by a regex.
func demoGRPO(t *testing.T, cfg engine.GRPOConfig, train engine.TrainConfig) *engine.Trainer {
	t.Helper()
	dir := filepath.Join("..", "presets", "demo", "model")
	m, err := engine.LoadModel(dir, cpu.New())
	if err != nil {
		t.Fatal(err)
	}
	tok, err := tokenizer.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	tpl, ok := datasets.LookupTemplate("chatml")
	if !ok {
		t.Fatal("no chatml template")
	}
	convs, err := demo.Conversations(demo.HeldoutFile)
	if err != nil {
		t.Fatal(err)
	}
	var rows []datasets.Example
	for _, c := range convs {
		rows = append(rows, datasets.Example{Loc: c.Loc, Messages: c.Messages[:1]})
	}
	g, err := engine.NewGRPORun(cfg, rows, tok, tpl, 64)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.AddLoRA(engine.LoRAOptions{Rank: 8, Alpha: 16, Seed: 1}); err != nil {
		t.Fatal(err)
	}
	acts, err := m.NewActivations(train.MicroBatch*g.MaxSeqTokens(), false)
	if err != nil {
		t.Fatal(err)
	}
	tr := &engine.Trainer{Model: m, Acts: acts, Cfg: train, Seed: 5, GRPO: g, Opt: &engine.Optimizer{Beta1: 0.9, Beta2: 0.999, Eps: 1e-8}}
	tr.Sched = engine.NewSchedule(train, tr.TotalSteps())
	t.Cleanup(func() { g.Free(); acts.Free(); m.Free() })
	return tr
}

// TestGRPOLearnsRewardedOpening: the demo model opens about one answer in
// five with "The"; a regex rewards that opening, and within the test's
// budget (short completions, since only the opening is scored) the mean
// reward of its sampled completions rises well above where it started.
// (Ending answers with a question mark, the demo persona's habit, is out
// of reach this way: the pretrained model never samples one in hundreds
// of completions, so every reward is 0 and GRPO has no signal.)
func TestGRPOLearnsRewardedOpening(t *testing.T) {
	if testing.Short() {
		t.Skip("trains for a few seconds")
	}
	cfg := engine.GRPOConfig{NumGenerations: 8, MaxCompletionLength: 4, Temperature: 1, TopP: 1, RepetitionPenalty: 1,
		Epsilon: 0.2, NumIterations: 1, LossType: "dapo", ScaleRewards: "group",
		Rewards: []reward.Spec{{Type: "regex", Name: "opens", Pattern: `^The `}}}
	train := engine.TrainConfig{MicroBatch: 16, GradAccum: 2, LR: 5e-3, Schedule: "constant", MaxGradNorm: 1, MaxSteps: 8}
	tr := demoGRPO(t, cfg, train)
	var rewards []float64
	for step := 0; step < train.MaxSteps; step++ {
		ev, err := tr.TrainStep()
		if err != nil {
			t.Fatal(err)
		}
		rewards = append(rewards, ev.Metrics["rewards/opens/mean"])
		for _, k := range []string{"reward", "reward_std", "frac_reward_zero_std", "completions/mean_length", "clip_ratio/region_mean"} {
			if _, ok := ev.Metrics[k]; !ok {
				t.Fatalf("step %d: no %s in %v", step, k, ev.Metrics)
			}
		}
	}
	t.Logf("rewards/opens/mean per step: %.3f", rewards)
	mean := func(x []float64) float64 {
		s := 0.0
		for _, v := range x {
			s += v
		}
		return s / float64(len(x))
	}
	first, last := mean(rewards[:2]), mean(rewards[len(rewards)-2:])
	if !(last > first+0.25) {
		t.Fatalf("the reward did not rise: first steps %.3f, last steps %.3f (%v)", first, last, rewards)
	}
}
