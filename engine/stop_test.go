package engine_test

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"whet/engine"
)

// stopConfig is a short LoRA run that evaluates, samples and saves every
// second step, so each phase of the loop comes round early.
func stopConfig(t *testing.T, dir string) engine.RunConfig {
	return noWarmupNoDecay(withDefaults(t, engine.RunConfig{Name: "stop", Model: abs("../testdata/tiny-llama"), Method: "lora", Backend: "cpu", RunsDir: dir,
		LoRA: engine.LoRAConfig{Rank: 4, Alpha: 8},
		Data: engine.DataConfig{Path: abs("../testdata/datasets/tiny-chat.jsonl"), MaxLength: 128, Packing: true, EvalSplit: 0.2, Seed: 1},
		Train: engine.TrainConfig{MaxSteps: 6, MicroBatch: 1, GradAccum: 1, LR: 1e-3, Schedule: "constant", MaxGradNorm: 1, Seed: 1,
			EvalEvery: 2, SampleEvery: 2, SaveEvery: 2, SamplePrompts: []string{"What is a variable?"}, SampleTokens: 4}}))
}

// TestStopAtEveryPhaseSavesAndSaysStopped stops a run (a cancelled context,
// as SIGINT gives `whet train`, or RunControl.Stop, as the studio sends)
// while it is in each phase of the loop, at the second time that phase
// begins: every time the run must end with a checkpoint of its last step,
// status "stopped" and a DoneEvent saying so, and no error.
func TestStopAtEveryPhaseSavesAndSaysStopped(t *testing.T) {
	for _, phase := range []string{"step", "eval", "sample", "checkpoint"} {
		for _, how := range []string{"cancel", "control"} {
			t.Run(phase+"/"+how, func(t *testing.T) {
				dir := t.TempDir()
				s, err := engine.Prepare(stopConfig(t, dir))
				if err != nil {
					t.Fatal(err)
				}
				defer s.Close()
				ctx, cancel := context.WithCancel(context.Background())
				defer cancel()
				ctl := engine.TrainerControl(s.Trainer)
				seen := 0
				engine.SetPhaseHook(s.Trainer, func(p string) {
					if p != phase {
						return
					}
					if seen++; seen == 2 {
						if how == "cancel" {
							cancel()
						} else {
							ctl.Stop()
						}
					}
				})
				ch := make(chan engine.Event, 64)
				errc := make(chan error, 1)
				go func() { errc <- s.Trainer.Run(ctx, ch); close(ch) }()
				var last engine.Event
				for ev := range ch {
					last = ev
				}
				if err := <-errc; err != nil {
					t.Fatalf("run failed: %v", err)
				}
				if seen < 2 {
					t.Fatalf("phase %s began %d times; the stop never came", phase, seen)
				}
				done, ok := last.(engine.DoneEvent)
				if !ok || !done.Stopped || done.Err != nil {
					t.Fatalf("last event %#v, want a DoneEvent with Stopped", last)
				}
				if done.Step == 0 || done.Step >= 6 {
					t.Fatalf("stopped at step %d, want a step inside the run", done.Step)
				}
				run := filepath.Join(dir, "stop")
				cps, err := engine.ListCheckpoints(filepath.Join(run, "checkpoints"))
				if err != nil || len(cps) == 0 || cps[len(cps)-1].Step != done.Step {
					t.Fatalf("checkpoints %v (%v), want the last at step %d", cps, err, done.Step)
				}
				var st engine.RunStatus
				js, _ := os.ReadFile(filepath.Join(run, "status.json"))
				if err := json.Unmarshal(js, &st); err != nil || st.State != "stopped" || st.Step != done.Step {
					t.Fatalf("status.json %s, want stopped at step %d", js, done.Step)
				}
			})
		}
	}
}
