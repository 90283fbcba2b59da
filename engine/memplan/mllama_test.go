package memplan

import (
	"math"
	"testing"

	"whet/engine"
	"whet/engine/testmodels"
)

func TestPlanMllama11BVision(t *testing.T) {
	cfg, err := engine.ParseMllamaConfig("config.json", []byte(testmodels.Released11BVisionConfig))
	if err != nil {
		t.Fatal(err)
	}
	opts := Options{Method: QLoRA, SeqLen: 1024, MicroBatch: 1, Checkpointing: true, Backend: BackendCUDA}
	p, err := PlanMllama(cfg, opts, MllamaOptions{Images: 1})
	if err != nil {
		t.Fatal(err)
	}
	// Meta publishes 10.6B parameters (model card); the count here is
	// derived from the shapes alone.
	if got := float64(p.Params); math.Abs(got-10.67e9) > 0.01e9 {
		t.Errorf("parameters %.4g, want 10.67e9 (10.6B published)", got)
	}
	text, err := Plan(&cfg.Text, opts)
	if err != nil {
		t.Fatal(err)
	}
	// One 560x560 image is 4 tiles of 1601 positions padded to 1608: a
	// 6432x6432 fp32 mask, and 6404 image tokens each cross layer reads.
	mask, ok := p.Find("vision.mask")
	if !ok || mask.Bytes() != 6432*6432*4 {
		t.Errorf("vision mask %+v", mask)
	}
	// With checkpointing the engine holds one layer's tensors at a time
	// (engine.MllamaModel.Checkpointing): one cross layer's keys; without,
	// all 8 cross layers'.
	if k, ok := p.Find("cross.k"); !ok || k.Shape[0] != 6404 || k.Repeat != 1 {
		t.Errorf("cross-attention keys with checkpointing %+v", k)
	}
	noCkpt := opts
	noCkpt.Checkpointing = false
	if pn, err := PlanMllama(cfg, noCkpt, MllamaOptions{Images: 1}); err != nil {
		t.Fatal(err)
	} else if k, ok := pn.Find("cross.k"); !ok || k.Shape[0] != 6404 || k.Repeat != 8 {
		t.Errorf("cross-attention keys without checkpointing %+v", k)
	}
	vision := p.Bytes(Weights) - text.Bytes(Weights)
	// About 0.9B frozen bf16 vision and projector weights.
	if vision < 1.7e9 || vision > 1.9e9 {
		t.Errorf("vision and projector weights take %d bytes, want about 1.8e9", vision)
	}
	if p.Peak() <= text.Peak()+vision {
		t.Errorf("peak %d is not above the text plan's %d plus the vision weights %d", p.Peak(), text.Peak(), vision)
	}
	two, err := PlanMllama(cfg, opts, MllamaOptions{Images: 2, Projector: true})
	if err != nil {
		t.Fatal(err)
	}
	if two.Peak() <= p.Peak() || two.Trainable != p.Trainable+int64(16*(7680+4096)) {
		t.Errorf("two images with a projector adapter: peak %d (one image %d), trainable %d (one %d)", two.Peak(), p.Peak(), two.Trainable, p.Trainable)
	}
	// The LM head runs over engine.LogitsChunk rows, as the Mllama engine
	// runs it (MllamaModel.LogitsRows = Options.LogitsChunk): nothing is
	// [tokens, vocab].
	for _, c := range []struct{ request, rows int }{{0, (1 << 26) / 128256}, {100, 100}, {4096, 1024}} {
		o := opts
		o.LogitsChunk = c.request
		pc, err := PlanMllama(cfg, o, MllamaOptions{Images: 1})
		if err != nil {
			t.Fatal(err)
		}
		if got := engine.LogitsChunk(1024, 128256, c.request); got != c.rows {
			t.Fatalf("engine.LogitsChunk(1024, 128256, %d) = %d, want %d", c.request, got, c.rows)
		}
		lg, ok := pc.Find("logits.f32")
		if !ok || lg.Shape[0] != int64(c.rows) || lg.Shape[1] != 128256 {
			t.Errorf("logits chunk %d: logits buffer %+v, want [%d 128256]", c.request, lg, c.rows)
		}
		for _, b := range pc.Buffers {
			if c.rows < 1024 && b.Category >= Activations && b.Elems() >= 1024*128256 {
				t.Errorf("logits chunk %d: buffer %s %v (category %d) holds tokens x vocab values", c.request, b.Name, b.Shape, b.Category)
			}
		}
	}
	if _, err := PlanMllama(cfg, Options{Method: Full, SeqLen: 16}, MllamaOptions{}); err == nil {
		t.Error("full fine-tuning of the vision model was planned")
	}
}
