package memplan

import (
	"testing"

	"whet/engine"
)

// TestTiledMLPPlan: with MLPChunk below the tokens no buffer holds
// tokens × I values: gate and up leave the per-layer set for one [tile, I]
// pair, and the product and its gradients are [tile, I]; the activations
// shrink by exactly that, with and without checkpointing.
func TestTiledMLPPlan(t *testing.T) {
	cfg := tiny()
	cfg.IntermediateSize = 200 // no other width equals I or 2·I
	n, i, c, l := int64(2*64), int64(cfg.IntermediateSize), int64(8), int64(cfg.NumLayers)
	for _, ck := range []bool{false, true} {
		o := Options{Method: LoRA, MicroBatch: 2, SeqLen: 64, Checkpointing: ck, WeightDType: F32}
		untiled, err := Plan(cfg, o)
		if err != nil {
			t.Fatal(err)
		}
		o.MLPChunk = int(c)
		tiled, err := Plan(cfg, o)
		if err != nil {
			t.Fatal(err)
		}
		for _, b := range tiled.Buffers {
			for k, d := range b.Shape {
				if d == n && k+1 < len(b.Shape) && (b.Shape[k+1] == i || b.Shape[k+1] == 2*i) {
					t.Errorf("checkpointing %v: %s %v grows with tokens × I", ck, b.Name, b.Shape)
				}
			}
		}
		sets := l // gate and up kept per layer untiled
		if ck {
			sets = 1
		}
		// untiled: 2·sets·n·I (gate, up) + n·I (product) + 3·n·I (grads)
		// tiled:   2·c·I + c·I + 3·c·I
		want := 4 * ((2*sets+4)*n*i - 6*c*i)
		if got := untiled.ExactBytes(Activations) + untiled.ExactBytes(BackwardScratch) -
			tiled.ExactBytes(Activations) - tiled.ExactBytes(BackwardScratch); got != want {
			t.Errorf("checkpointing %v: tiling saves %d bytes, want %d", ck, got, want)
		}
	}
}

// TestMaxSeqLenAcrossTheTilingSwitch: with the default rule the MLP tiles
// past 2^26/I tokens and the peak drops there; on a model whose switch is
// at 1024 tokens, for budgets below, at and past the switch, MaxSeqLen
// answers past the switch when the first tiled length fits (the peak grows
// from there on), else what a linear scan of the untiled lengths finds.
func TestMaxSeqLenAcrossTheTilingSwitch(t *testing.T) {
	cfg := tiny()
	cfg.IntermediateSize = 1 << 16
	if k := engine.MLPRowChunk(1<<20, cfg.IntermediateSize, 0); k != 1024 {
		t.Fatalf("switch at %d tokens, want 1024", k)
	}
	o := Options{Method: LoRA, MicroBatch: 1}
	peak := func(n int) int64 {
		o.SeqLen = n
		p, err := Plan(cfg, o)
		if err != nil {
			t.Fatal(err)
		}
		return p.Peak()
	}
	if peak(1025) >= peak(1024) {
		t.Fatalf("no drop at the switch: %d then %d", peak(1024), peak(1025))
	}
	for _, budget := range []int64{peak(1) - 1, peak(500), peak(1024), (peak(1024) + peak(1025)) / 2, peak(1025), peak(1025) + 1, peak(1500), peak(3000)} {
		got, err := MaxSeqLen(cfg, o, budget)
		if err != nil {
			t.Fatal(err)
		}
		if peak(1025) <= budget {
			if got.SeqLen <= 1024 {
				t.Errorf("budget %d: MaxSeqLen %d, but 1025 tokens fit", budget, got.SeqLen)
			}
		} else {
			scan := 0
			for n := 1; n <= 1024; n++ {
				if peak(n) <= budget {
					scan = n
				}
			}
			if got.SeqLen != scan {
				t.Errorf("budget %d: MaxSeqLen %d, scan %d", budget, got.SeqLen, scan)
			}
		}
		if got.SeqLen > 0 && (got.Plan == nil || got.Plan.Peak() > budget) {
			t.Errorf("budget %d: plan %v does not fit", budget, got.Plan)
		}
		if got.Next == nil || got.Next.Options.SeqLen != got.SeqLen+1 || got.Next.Peak() <= budget {
			t.Errorf("budget %d: answer %d, next %v", budget, got.SeqLen, got.Next)
		}
	}
}
