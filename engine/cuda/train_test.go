package cuda

import (
	"math"
	"path/filepath"
	"testing"

	"whet/engine"
	"whet/engine/cpu"
)

func init() {
	// The program registers the CPU backend from package main; this test
	// binary needs it for the reference runs.
	engine.RegisterBackend("cpu", func() (engine.Backend, error) { return cpu.New(), nil })
}

// TestTrainingMatchesCPU trains the tiny reference Llama for 50 steps on
// the GPU (bf16 weights and activations, fp32 masters and moments) and on
// the CPU (float32 throughout), from the same RunConfig and data, and
// requires every step's loss to agree within 1%, for LoRA (with dropout,
// whose mask both backends draw from the same hash) and for full
// fine-tuning.
func TestTrainingMatchesCPU(t *testing.T) {
	newTestBackend(t) // skips without a GPU
	abs := func(p string) string {
		a, err := filepath.Abs(p)
		if err != nil {
			t.Fatal(err)
		}
		return a
	}
	for _, method := range []string{"lora", "full"} {
		t.Run(method, func(t *testing.T) {
			const steps = 50
			losses := map[string][]float64{}
			for _, backend := range []string{"cpu", "cuda"} {
				cfg := engine.RunConfig{Name: method + "-" + backend, Model: abs("../../testdata/tiny-llama"), Method: method,
					Backend: backend, RunsDir: t.TempDir(),
					LoRA: engine.LoRAConfig{Rank: 8, Alpha: 16, Dropout: 0.05},
					Data: engine.DataConfig{Path: abs("../../testdata/datasets/tiny-chat.jsonl"), MaxLength: 256, Packing: true, EvalSplit: 0.1, Seed: 1},
					Train: engine.TrainConfig{Epochs: 100, MaxSteps: steps, MicroBatch: 2, LR: 1e-3, Schedule: "cosine", WarmupSteps: 2,
						MaxGradNorm: 1, Seed: 1}}
				if method == "full" {
					cfg.Train.LR = 1e-4
				}
				s, err := engine.Prepare(cfg)
				if err != nil {
					t.Fatalf("%s: Prepare: %v", backend, err)
				}
				for i := 0; i < steps; i++ {
					ev, err := s.Trainer.TrainStep()
					if err != nil {
						s.Close()
						t.Fatalf("%s: step %d: %v", backend, i+1, err)
					}
					losses[backend] = append(losses[backend], ev.Loss)
				}
				if mr, ok := s.Backend.(engine.MemoryReporter); ok {
					t.Logf("%s: peak %d bytes", s.Backend.Name(), mr.PeakBytes())
				}
				s.Close()
			}
			worst, at := 0.0, 0
			for i := range steps {
				c, g := losses["cpu"][i], losses["cuda"][i]
				if d := math.Abs(g-c) / math.Abs(c); d > worst || math.IsNaN(g) {
					worst, at = d, i
				}
			}
			t.Logf("loss cpu  %.4f -> %.4f", losses["cpu"][0], losses["cpu"][steps-1])
			t.Logf("loss cuda %.4f -> %.4f; worst relative difference %.3g%% at step %d", losses["cuda"][0], losses["cuda"][steps-1], 100*worst, at+1)
			if worst > 0.01 || math.IsNaN(worst) {
				t.Errorf("GPU loss curve departs from the CPU's by %.3g%% at step %d\ncpu  %v\ncuda %v", 100*worst, at+1, losses["cpu"], losses["cuda"])
			}
		})
	}
}
