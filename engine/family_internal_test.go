package engine

import (
	"math"
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
