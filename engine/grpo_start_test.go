package engine_test

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"whet/engine"
	"whet/engine/reward"
)

// writePrompts writes n prompt-only rows with an answer column.
func writePrompts(t *testing.T, n int) string {
	p := filepath.Join(t.TempDir(), "prompts.jsonl")
	var b strings.Builder
	for i := 0; i < n; i++ {
		fmt.Fprintf(&b, `{"prompt": "What is %d plus %d?", "answer": %d}`+"\n", i, i, 2*i)
	}
	if err := os.WriteFile(p, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// grpoRunConfig is a short GRPO run of the tiny Qwen2 with a KL term, two
// iterations per generation batch, a built-in and an external reward.
func grpoRunConfig(t *testing.T, dir string, steps int) engine.RunConfig {
	script := filepath.Join(t.TempDir(), "score.sh")
	// One reward per completion: 1 when its JSON line mentions a digit.
	os.WriteFile(script, []byte("#!/bin/sh\nwhile IFS= read -r l; do case \"$l\" in *'\"completion\":\"'*[0-9]*) echo 1;; *) echo 0;; esac; done\n"), 0o755)
	w := 0.5
	cfg := engine.RunConfig{Name: "grpo", Model: abs("../testdata/tiny-qwen2"), Method: "grpo", Backend: "cpu", RunsDir: dir,
		LoRA: engine.LoRAConfig{Rank: 4, Alpha: 8},
		Data: engine.DataConfig{Path: writePrompts(t, 4), MaxLength: 32, Seed: 1},
		Train: engine.TrainConfig{MaxSteps: steps, MicroBatch: 2, GradAccum: 2, LR: 1e-2, Schedule: "constant", Seed: 1,
			SampleEvery: 2, SampleTokens: 4, SamplePrompts: []string{"What is 1 plus 1?"}},
		GRPO: engine.GRPOConfig{NumGenerations: 2, MaxCompletionLength: 6, Beta: 0.04, NumIterations: 2, LossType: "grpo",
			Rewards: []reward.Spec{{Type: "length", TargetLength: 3}, {Type: "command", Name: "digits", Command: []string{script}, Weight: &w}}}}
	return noWarmupNoDecay(withDefaults(t, cfg))
}

// TestStartGRPORunEndToEnd trains GRPO from a RunConfig as `whet train`
// does: metrics with the reward, KL and clip statistics, sample
// completions with their rewards, checkpoints, the adapter; then a resume
// at a generation-batch boundary continues exactly as an unbroken run.
func TestStartGRPORunEndToEnd(t *testing.T) {
	dir := t.TempDir()
	straight := map[int]float64{}
	for _, ev := range runToEnd(t, grpoRunConfig(t, t.TempDir(), 6)) {
		if e, ok := ev.(engine.StepEvent); ok {
			straight[e.Step] = e.Loss
		}
	}
	var sampleRewards int
	for _, ev := range runToEnd(t, grpoRunConfig(t, dir, 4)) {
		if e, ok := ev.(engine.SampleEvent); ok && e.Rewards != nil {
			sampleRewards++
			if _, ok := e.Rewards["digits"]; !ok {
				t.Errorf("sample rewards %v lack the command's", e.Rewards)
			}
		}
	}
	if sampleRewards == 0 {
		t.Error("no sample completion carried its rewards")
	}
	run := filepath.Join(dir, "grpo")
	for _, f := range []string{"run.yaml", "metrics.jsonl", "samples.jsonl", "status.json", "adapter/adapter_model.safetensors", "adapter/adapter_config.json"} {
		if _, err := os.Stat(filepath.Join(run, f)); err != nil {
			t.Errorf("run directory lacks %s: %v", f, err)
		}
	}
	metrics, _, err := engine.RunDir(run).ReadMetrics()
	if err != nil || len(metrics) != 4 {
		t.Fatalf("metrics: %d lines, %v", len(metrics), err)
	}
	for _, k := range []string{"reward", "reward_std", "rewards/length/mean", "rewards/digits/std", "kl", "clip_ratio/region_mean", "completions/mean_length", "frac_reward_zero_std"} {
		if v, ok := metrics[3].Values[k]; !ok || math.IsNaN(v) {
			t.Errorf("metrics.jsonl step 4 has no %s: %v", k, metrics[3].Values)
		}
	}
	samples, _, _ := engine.RunDir(run).ReadSamples()
	found := false
	for _, s := range samples {
		found = found || s.Rewards != nil
	}
	if !found {
		t.Error("samples.jsonl holds no completion with rewards")
	}
	// The saved run file reads back with its rewards.
	again, err := engine.LoadRunConfig(filepath.Join(run, "run.yaml"))
	if err != nil || len(again.GRPO.Rewards) != 2 || again.GRPO.Rewards[1].W() != 0.5 || again.GRPO.NumIterations != 2 {
		t.Fatalf("run.yaml round trip: %+v %v", again.GRPO, err)
	}
	// Resume to step 6: step 4 ended a generation batch, so the resumed
	// run samples and trains exactly as the unbroken one.
	resumed := map[int]float64{}
	cfg := grpoRunConfig(t, dir, 6)
	cfg.ResumeAnyway = true
	cfg.Data.Path = again.Data.Path
	for _, ev := range runToEnd(t, cfg) {
		if e, ok := ev.(engine.StepEvent); ok {
			resumed[e.Step] = e.Loss
		}
	}
	if len(resumed) != 2 {
		t.Fatalf("resumed run made steps %v, want 5 and 6", resumed)
	}
	if straight[5] == 0 || straight[5] == straight[6] {
		t.Fatalf("losses %v: the comparison below would prove nothing", straight)
	}
	for s, l := range resumed {
		if l != straight[s] {
			t.Errorf("step %d: resumed loss %.9g, unbroken run %.9g", s, l, straight[s])
		}
	}
	var st engine.RunStatus
	js, _ := os.ReadFile(filepath.Join(run, "status.json"))
	json.Unmarshal(js, &st)
	if st.State != "done" || st.Step != 6 {
		t.Fatalf("status.json %s", js)
	}
}

// TestGRPOMaskTruncated: with mask_truncated_completions every completion
// cut at max_completion_length leaves the loss; the tiny random model never
// stops within 2 tokens with the seed below, so the loss and gradient are
// exactly 0 while the metrics still count the cut completions; the same
// run unmasked learns.
func TestGRPOMaskTruncated(t *testing.T) {
	// Alternating rewards: every group has a spread, so an unmasked step
	// always has a gradient.
	script := filepath.Join(t.TempDir(), "alternate.sh")
	os.WriteFile(script, []byte("#!/bin/sh\ni=0; while IFS= read -r l; do echo $((i % 2)); i=$((i + 1)); done\n"), 0o755)
	alternate := []reward.Spec{{Type: "command", Command: []string{script}}}
	cfg := grpoRunConfig(t, t.TempDir(), 2)
	cfg.GRPO.MaskTruncated, cfg.GRPO.MaxCompletionLength, cfg.GRPO.Rewards = true, 2, alternate
	// With this seed no completion stops within 2 tokens (seed 1 samples
	// one that does), so every one is cut.
	cfg.Train.Seed = 2
	var steps []engine.StepEvent
	for _, ev := range runToEnd(t, cfg) {
		if e, ok := ev.(engine.StepEvent); ok {
			steps = append(steps, e)
		}
	}
	for _, e := range steps {
		if e.Metrics["completions/clipped_ratio"] != 1 || e.Loss != 0 || e.GradNorm != 0 || e.Metrics["completions/mean_length"] != 2 {
			t.Errorf("step %d: loss %g grad norm %g metrics %v", e.Step, e.Loss, e.GradNorm, e.Metrics)
		}
	}
	cfg = grpoRunConfig(t, t.TempDir(), 2)
	cfg.GRPO.MaxCompletionLength, cfg.GRPO.Rewards = 2, alternate
	cfg.Train.Seed = 2
	for _, ev := range runToEnd(t, cfg) {
		if e, ok := ev.(engine.StepEvent); ok && e.GradNorm == 0 {
			t.Errorf("unmasked step %d: loss %g grad norm %g", e.Step, e.Loss, e.GradNorm)
		}
	}
}

// TestGRPOStopWhileSampling: a stop that comes while a step samples its
// completions ends the run at once, at the previous step, with its
// checkpoint and status "stopped" (a GRPO step may sample for minutes).
func TestGRPOStopWhileSampling(t *testing.T) {
	dir := t.TempDir()
	cfg := grpoRunConfig(t, dir, 4)
	cfg.GRPO.NumIterations = 1 // every step samples
	s, err := engine.Prepare(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctl := engine.TrainerControl(s.Trainer)
	steps := 0
	engine.SetPhaseHook(s.Trainer, func(phase string) {
		if phase == "step" {
			if steps++; steps == 2 {
				ctl.Stop() // the step has begun: its sampling sees the stop
			}
		}
	})
	ch := make(chan engine.Event, 256)
	if err := s.Trainer.Run(context.Background(), ch); err != nil {
		t.Fatal(err)
	}
	close(ch)
	var done engine.DoneEvent
	stepEvents := 0
	for ev := range ch {
		switch e := ev.(type) {
		case engine.DoneEvent:
			done = e
		case engine.StepEvent:
			stepEvents++
		}
	}
	if !done.Stopped || done.Step != 1 || stepEvents != 1 {
		t.Fatalf("done %+v after %d steps; want stopped at step 1", done, stepEvents)
	}
	var st engine.RunStatus
	js, _ := os.ReadFile(filepath.Join(dir, "grpo", "status.json"))
	json.Unmarshal(js, &st)
	if st.State != "stopped" || st.Step != 1 {
		t.Fatalf("status.json %s", js)
	}
	if cps, err := engine.ListCheckpoints(engine.RunDir(filepath.Join(dir, "grpo")).Checkpoints()); err != nil || len(cps) != 1 {
		t.Fatalf("checkpoints %v %v", cps, err)
	}
}
