package memplan

import (
	"testing"

	"whet/engine"
	"whet/engine/reward"
)

// TestGRPOPlan: a GRPO run plans LoRA training over prompt + completion
// tokens and the generator's KV caches, one per completion of a prompt:
// 3 lanes · 2 (k, v) · L 2 · 96 tokens · KV 8 · 2 bytes (bf16) = 18432
// bytes; the same run as plain LoRA has none.
func TestGRPOPlan(t *testing.T) {
	rc := &engine.RunConfig{Method: "grpo", Backend: "cuda", LoRA: engine.LoRAConfig{Rank: 4},
		Data: engine.DataConfig{MaxLength: 64}, Train: engine.TrainConfig{MicroBatch: 8, GradAccum: 1},
		GRPO: engine.GRPOConfig{NumGenerations: 3, MaxCompletionLength: 32, Rewards: []reward.Spec{{Type: "json"}}}}
	o, err := FromRunConfig(rc)
	if err != nil {
		t.Fatal(err)
	}
	if o.SeqLen != 96 || o.GenerationTokens != 96 || o.Base() != LoRA {
		t.Fatalf("options %+v", o)
	}
	p, err := Plan(tiny(), o)
	if err != nil {
		t.Fatal(err)
	}
	if got := p.ExactBytes(GenerationCache); got != 18432 {
		t.Errorf("generation cache %d bytes, want 18432", got)
	}
	if p.Bytes(Adapters) == 0 || p.Bytes(Gradients) == 0 {
		t.Errorf("a GRPO LoRA run trains adapters: %+v", p.Lines())
	}
	rc.Method = "lora"
	o, _ = FromRunConfig(rc)
	if p, _ := Plan(tiny(), o); p.Bytes(GenerationCache) != 0 {
		t.Errorf("a LoRA run plans a generation cache")
	}
	rc.Method, rc.GRPO.FullWeights = "grpo", true
	if o, _ := FromRunConfig(rc); o.Base() != Full {
		t.Errorf("full-weight GRPO plans base %s", o.Base())
	}
}
