package memplan

import (
	"testing"

	"whet/engine"
)

// TestPlanFullShardedByHand: full fine-tuning of tiny over 4 GPUs keeps a
// quarter of the fp32 masters and moments per GPU (every trainable buffer
// of tiny splits evenly), the whole gradients, and one fp32 gather buffer
// of its largest bucket: both layers (2·2336 elements, under
// engine.DefaultBucketBytes) against embeddings, head and norm (2064).
func TestPlanFullShardedByHand(t *testing.T) {
	p, err := Plan(tiny(), Options{Method: Full, SeqLen: 8, GPUs: 4})
	if err != nil {
		t.Fatal(err)
	}
	for c, want := range map[Category]int64{
		Weights: 13472, Masters: 26944 / 4, Gradients: 26944, OptimizerState: 53888/4 + 4096 + 4*2*2336,
	} {
		if got := p.ExactBytes(c); got != want {
			t.Errorf("%v = %d, want %d", c, got, want)
		}
	}
	// LoRA keeps its (small) optimizer state whole on every GPU.
	one, _ := Plan(tiny(), Options{Method: LoRA, LoRARank: 2, SeqLen: 8})
	four, _ := Plan(tiny(), Options{Method: LoRA, LoRARank: 2, SeqLen: 8, GPUs: 4})
	if one.Peak() != four.Peak() {
		t.Errorf("LoRA per GPU: %d on 4 GPUs, %d on one", four.Peak(), one.Peak())
	}
	if _, err := Plan(tiny(), Options{Method: Full, SeqLen: 8, GPUs: -1}); err == nil {
		t.Error("-1 GPUs accepted")
	}
}

// TestEightBFullFitsOnEightGPUs: the target, an 8B full fine-tune
// (Llama 3.1 8B's shapes, 2048 tokens, activation checkpointing) does not
// fit one 80 GB GPU but fits each of eight with the state sharded.
func TestEightBFullFitsOnEightGPUs(t *testing.T) {
	cfg := &engine.ModelConfig{ModelType: "llama", VocabSize: 128256, HiddenSize: 4096, IntermediateSize: 14336,
		NumLayers: 32, NumHeads: 32, NumKVHeads: 8, HeadDim: 128, RMSNormEps: 1e-5, RopeTheta: 500000, MaxPositions: 131072}
	const gpu = 80 << 30
	opts := Options{Method: Full, SeqLen: 2048, Checkpointing: true}
	one, err := Plan(cfg, opts)
	if err != nil {
		t.Fatal(err)
	}
	opts.GPUs = 8
	eight, err := Plan(cfg, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("per GPU: one GPU %.1f GiB, eight %.1f GiB", float64(one.Peak())/(1<<30), float64(eight.Peak())/(1<<30))
	if one.Peak() <= gpu || eight.Peak() >= gpu {
		t.Fatalf("one GPU needs %d bytes, each of eight %d: want more and less than %d", one.Peak(), eight.Peak(), int64(gpu))
	}
}
