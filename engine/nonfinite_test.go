package engine_test

import (
	"context"
	"encoding/json"
	"errors"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"whet/engine"
)

// nanConfig is a short LoRA run that saves a checkpoint after every step.
func nanConfig(t *testing.T, dir string, lr, clip float64) engine.RunConfig {
	cfg := withDefaults(t, engine.RunConfig{Name: "nan", Model: abs("../testdata/tiny-llama"), Method: "lora", Backend: "cpu", RunsDir: dir,
		LoRA: engine.LoRAConfig{Rank: 4, Alpha: 8},
		Data: engine.DataConfig{Path: abs("../testdata/datasets/tiny-chat.jsonl"), MaxLength: 128, Packing: true, Seed: 1},
		Train: engine.TrainConfig{MaxSteps: 4, MicroBatch: 1, GradAccum: 1, LR: lr, Schedule: "constant", MaxGradNorm: clip, Seed: 1,
			SaveEvery: 1, WeightDecay: 0.01}})
	cfg.Train.MaxGradNorm, cfg.Train.WarmupSteps = clip, 0
	return cfg
}

// runSession runs a prepared session to its end and returns its error.
func runSession(t *testing.T, s *engine.Session) error {
	t.Helper()
	ch := make(chan engine.Event, 64)
	errc := make(chan error, 1)
	go func() { errc <- s.Trainer.Run(context.Background(), ch); close(ch) }()
	for range ch {
	}
	return <-errc
}

// checkNothingBadSaved checks that the run ended "failed", that its newest
// checkpoint is of step want and that no adapter was exported.
func checkNothingBadSaved(t *testing.T, run string, want int) {
	t.Helper()
	cps, err := engine.ListCheckpoints(filepath.Join(run, "checkpoints"))
	if err != nil || (want == 0 && len(cps) != 0) || (want > 0 && (len(cps) == 0 || cps[len(cps)-1].Step != want)) {
		t.Errorf("checkpoints %v (%v), want the newest at step %d", cps, err, want)
	}
	if _, err := os.Stat(filepath.Join(run, "adapter")); err == nil {
		t.Error("an adapter was exported from non-finite weights")
	}
	var st engine.RunStatus
	js, _ := os.ReadFile(filepath.Join(run, "status.json"))
	if json.Unmarshal(js, &st); st.State != "failed" {
		t.Errorf("status.json %s, want failed", js)
	}
}

// TestHugeLRStopsBeforeTheUpdate: lr 1e6 makes step 2's gradients NaN.
// The update must not be applied, no checkpoint of the poisoned weights
// written (step 1's stays the newest), and the error must name the
// gradient norm, the parameter groups and the learning rate.
func TestHugeLRStopsBeforeTheUpdate(t *testing.T) {
	dir := t.TempDir()
	s, err := engine.Prepare(nanConfig(t, dir, 1e6, 1))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	err = runSession(t, s)
	var nf *engine.NonFiniteError
	if !errors.As(err, &nf) {
		t.Fatalf("run ended with %v, want a NonFiniteError", err)
	}
	t.Log(err)
	if nf.What != "gradient norm" || nf.Step != 2 || len(nf.Groups) == 0 || !strings.Contains(nf.Hint, "train.lr (now 1e+06)") {
		t.Fatalf("error %+v", nf)
	}
	if !strings.Contains(err.Error(), "lora_") || !strings.Contains(err.Error(), "(layer") {
		t.Errorf("message does not name the parameter groups: %v", err)
	}
	if nf.NoCheckpoint || !strings.Contains(err.Error(), "the newest checkpoint is the last good one") {
		t.Errorf("message of a run with step 1's checkpoint: %v", err)
	}
	if s.Trainer.Step() != 1 {
		t.Errorf("step counter %d after the failed step 2, want 1", s.Trainer.Step())
	}
	checkNothingBadSaved(t, filepath.Join(dir, "nan"), 1)
}

// TestNonFiniteWeightsAreNeverSaved poisons one adapter weight just before
// the final checkpoint (as a last update that overflows does): the run
// must fail naming the weights, write neither that checkpoint nor the
// adapter, and keep step 3's checkpoint.
func TestNonFiniteWeightsAreNeverSaved(t *testing.T) {
	dir := t.TempDir()
	s, err := engine.Prepare(nanConfig(t, dir, 1e-3, 0))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var poisoned string
	engine.SetPhaseHook(s.Trainer, func(phase string) {
		if phase != "checkpoint" || s.Trainer.Step() != 4 || poisoned != "" {
			return
		}
		for _, p := range s.Model.TrainableParams() {
			if strings.Contains(p.Name, "layers.1.") && strings.Contains(p.Name, "v_proj.lora_B") {
				poisoned = p.Name
				if err := s.Backend.Fill(p.Master, float32(math.Inf(1))); err != nil {
					t.Error(err)
				}
			}
		}
	})
	err = runSession(t, s)
	if poisoned == "" {
		t.Fatal("no layers.1 v_proj lora_B parameter to poison")
	}
	var nf *engine.NonFiniteError
	if !errors.As(err, &nf) || nf.What != "weights" || len(nf.Groups) != 1 || !strings.Contains(nf.Groups[0], "v_proj.lora_B.weight (layer 1)") {
		t.Fatalf("run ended with %v, want non-finite weights in v_proj.lora_B of layer 1", err)
	}
	checkNothingBadSaved(t, filepath.Join(dir, "nan"), 3)
}

// TestNonFiniteLossBeforeAnyUpdate: a model whose weights already hold a
// NaN fails at step 1 naming the loss, with the hint about the model
// rather than the learning rate, writes no checkpoint and does not speak
// of one.
func TestNonFiniteLossBeforeAnyUpdate(t *testing.T) {
	dir := t.TempDir()
	s, err := engine.Prepare(nanConfig(t, dir, 1e-3, 1))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	p := s.Model.TrainableParams()[0]
	for _, w := range []engine.Tensor{p.W, p.Master} {
		if err := s.Backend.Fill(w, float32(math.NaN())); err != nil {
			t.Fatal(err)
		}
	}
	err = runSession(t, s)
	var nf *engine.NonFiniteError
	if !errors.As(err, &nf) || nf.What != "loss" || nf.Step != 1 || !strings.Contains(nf.Hint, "model's weights") {
		t.Fatalf("run ended with %v, want a non-finite loss at step 1 blamed on the model", err)
	}
	// No checkpoint was written: the message must not point at one.
	if !nf.NoCheckpoint || !strings.Contains(err.Error(), "the run has no checkpoint yet") || strings.Contains(err.Error(), "newest checkpoint") {
		t.Errorf("message of a run without a checkpoint: %v", err)
	}
	checkNothingBadSaved(t, filepath.Join(dir, "nan"), 0)
}

// TestDPOSharesTheStepGuards: DPO goes through the same step as SFT, so a
// NaN reference log-prob stops it at step 1 naming the loss, before any
// update, like a token loss would.
func TestDPOSharesTheStepGuards(t *testing.T) {
	dir := t.TempDir()
	cfg := engine.RunConfig{Name: "dpo", Model: abs("../testdata/tiny-qwen2"), Method: "dpo", Backend: "cpu", RunsDir: dir,
		LoRA: engine.LoRAConfig{Rank: 4, Alpha: 8}, DPO: engine.DPOConfig{Beta: 0.1},
		Data:  engine.DataConfig{Path: writePrefs(t, 4), MaxLength: 64, Packing: true, Seed: 1},
		Train: engine.TrainConfig{MaxSteps: 2, MicroBatch: 2, LR: 1e-3, Schedule: "constant", Seed: 1}}
	s, err := engine.Prepare(withDefaults(t, cfg))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for i := range s.Trainer.RefTrain {
		for j := range s.Trainer.RefTrain[i] {
			s.Trainer.RefTrain[i][j].Chosen = math.NaN()
		}
	}
	err = runSession(t, s)
	var nf *engine.NonFiniteError
	if !errors.As(err, &nf) || nf.What != "loss" || nf.Step != 1 || s.Trainer.Step() != 0 {
		t.Fatalf("run ended with %v at step %d, want a non-finite loss at step 1 and no update", err, s.Trainer.Step())
	}
}
