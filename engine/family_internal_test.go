package engine

import (
	"math"
	"slices"
	"testing"
)

// TestEmbedScaleRounding: Gemma's sqrt(hidden) multiplies in the weights'
// dtype, as transformers casts it: sqrt(48) is 6.9375 in bfloat16.
func TestEmbedScaleRounding(t *testing.T) {
	v := float32(math.Sqrt(48))
	if got := roundTo(BF16, v); got != 6.9375 {
		t.Errorf("bf16 sqrt(48) = %v, want 6.9375", got)
	}
	if got := roundTo(F32, v); got != v {
		t.Errorf("f32 sqrt(48) = %v, want %v", got, v)
	}
	// Ties go to the even mantissa: 1 + 2^-8 sits halfway between 1 and 1 + 2^-7.
	if got := roundTo(BF16, 1+1.0/256); got != 1 {
		t.Errorf("bf16 of 1+2^-8 = %v, want 1", got)
	}
}

// TestFusedLoRATargets: the presets' every-linear list (q, k, v, o, gate,
// up, down) adapts Phi-3's fused qkv_proj and gate_up_proj, where it used to
// be refused ("phi3 has no q_proj module"); a part of a fused module asked
// for alone is still refused, and Llama keeps its separate projections.
func TestFusedLoRATargets(t *testing.T) {
	preset := []string{"q", "k", "v", "o", "gate", "up", "down"}
	got, err := phi3Family.resolveLoRATargets(preset)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"qkv", "o", "gate_up", "down"}; !slices.Equal(got, want) {
		t.Errorf("phi3 preset targets = %v, want %v", got, want)
	}
	got, err = phi3Family.resolveLoRATargets([]string{"q_proj", "v_proj", "k_proj"})
	if err != nil || !slices.Equal(got, []string{"qkv"}) {
		t.Errorf("phi3 q, v, k = %v, %v; want [qkv]", got, err)
	}
	if _, err := phi3Family.resolveLoRATargets([]string{"q", "v"}); err == nil {
		t.Error("phi3 q and v alone: accepted, want a refusal (they live in qkv_proj with k)")
	}
	got, err = llamaFamily.resolveLoRATargets(preset)
	if err != nil || !slices.Equal(got, preset) {
		t.Errorf("llama preset targets = %v, %v; want %v", got, err, preset)
	}
}
