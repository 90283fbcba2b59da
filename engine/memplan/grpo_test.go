package memplan

import (
	"testing"

	"whet/engine"
	"whet/engine/reward"
)

// TestGRPOPlan: a GRPO run plans LoRA training over prompt + completion
// tokens and the generator's paged KV cache, as many blocks as one lane
// per completion of a prompt: 3 lanes · 2 (k, v) · L 2 · 96 tokens (6
// blocks of 16) · KV 8 · 2 bytes (bf16) = 18432 bytes, and the gather
// span, 2 · 96 · 8 · 2 = 3072; the same run as plain LoRA has none. A
// completion of 33 tokens rounds the pool up to 7 blocks (112 tokens)
// per lane: 3 · 2 · 2 · 112 · 8 · 2 + 2 · 97 · 8 · 2.
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
	if got := p.ExactBytes(GenerationCache); got != 18432+3072 {
		t.Errorf("generation cache %d bytes, want %d", got, 18432+3072)
	}
	rc.GRPO.MaxCompletionLength = 33
	o, _ = FromRunConfig(rc)
	if p, _ := Plan(tiny(), o); p.ExactBytes(GenerationCache) != 3*2*2*112*8*2+2*97*8*2 {
		t.Errorf("generation cache %d bytes for 97 tokens, want %d", p.ExactBytes(GenerationCache), 3*2*2*112*8*2+2*97*8*2)
	}
	rc.GRPO.MaxCompletionLength = 32
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
