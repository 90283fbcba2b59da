package memplan_test

import (
	"fmt"
	"testing"

	"whet/engine"
	"whet/engine/cpu"
	"whet/engine/memplan"
)

// TestPlanMatchesEngineAllocations builds the real model, adapters,
// optimizer state and activations on the CPU backend (which counts
// device-equivalent bytes) and checks that the plan for the same run is
// within 5% of what the engine actually allocated, for LoRA, QLoRA-free
// full fine-tuning, with and without checkpointing. It keeps the plan and
// the engine from drifting apart: a buffer added to one and not the other
// fails here.
func TestPlanMatchesEngineAllocations(t *testing.T) {
	cfg := engine.ModelConfig{ModelType: "llama", VocabSize: 4096, HiddenSize: 256, IntermediateSize: 704,
		NumLayers: 4, NumHeads: 4, NumKVHeads: 2, HeadDim: 64, RMSNormEps: 1e-5, RopeTheta: 10000,
		MaxPositions: 512, TieWordEmbeddings: true}
	for _, method := range []string{"lora", "full"} {
		for _, ckpt := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/checkpointing=%v", method, ckpt), func(t *testing.T) {
				b := cpu.New()
				m, err := engine.NewModel(cfg, b)
				if err != nil {
					t.Fatal(err)
				}
				defer m.Free()
				if method == "lora" {
					err = m.AddLoRA(engine.LoRAOptions{Rank: 16, Alpha: 16})
				} else {
					err = m.MakeAllTrainable()
				}
				if err != nil {
					t.Fatal(err)
				}
				const batch, seq = 4, 256
				a, err := m.NewActivations(batch*seq, ckpt)
				if err != nil {
					t.Fatal(err)
				}
				defer a.Free()
				rc := engine.RunConfig{Method: method, Backend: "cpu", LoRA: engine.LoRAConfig{Rank: 16},
					Data: engine.DataConfig{MaxLength: seq}, Train: engine.TrainConfig{MicroBatch: batch, GradAccum: 1, Checkpointing: ckpt}}
				o, err := memplan.FromRunConfig(&rc)
				if err != nil {
					t.Fatal(err)
				}
				p, err := memplan.Plan(&cfg, o)
				if err != nil {
					t.Fatal(err)
				}
				got, plan := b.PeakBytes(), p.Peak()
				ratio := float64(plan) / float64(got)
				t.Logf("engine allocated %d bytes, plan %d (%.3f)", got, plan, ratio)
				if ratio < 0.95 || ratio > 1.05 {
					t.Fatalf("plan %d bytes vs engine %d: off by %.1f%%", plan, got, 100*(ratio-1))
				}
			})
		}
	}
}
