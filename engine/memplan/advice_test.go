package memplan

import (
	"slices"
	"testing"

	"whet/engine"
)

// wide is tiny with a larger vocabulary and width, so that activations,
// weights and the logits chunk are all of a size the advice can move.
func wide(layers int) *engine.ModelConfig {
	return &engine.ModelConfig{
		ModelType: "llama", VocabSize: 4096, HiddenSize: 256, IntermediateSize: 1024,
		NumLayers: layers, NumHeads: 8, NumKVHeads: 2, HeadDim: 32,
		RMSNormEps: 1e-5, RopeTheta: 10000, MaxPositions: 2048,
	}
}

func kinds(advice []Advice) []AdviceKind {
	var out []AdviceKind
	for _, a := range advice {
		out = append(out, a.Kind)
	}
	return out
}

func TestAdviseNothingWhenItFits(t *testing.T) {
	opts := Options{Method: LoRA, MicroBatch: 4, SeqLen: 1024, Backend: BackendCPU}
	p, err := Plan(wide(8), opts)
	if err != nil {
		t.Fatal(err)
	}
	advice, err := Advise(wide(8), opts, p.Peak(), nil)
	if err != nil || advice != nil {
		t.Errorf("Advise with exactly the peak available = %v, %v; want nothing", kinds(advice), err)
	}
}

func TestAdviseOrderLoRA(t *testing.T) {
	cfg := wide(8)
	opts := Options{Method: LoRA, MicroBatch: 4, GradAccum: 2, SeqLen: 1024, Backend: BackendCPU}
	p, err := Plan(cfg, opts)
	if err != nil {
		t.Fatal(err)
	}
	small := wide(2)
	small.VocabSize = 1024
	smaller := Alternative{Name: "wide-2", Config: small}
	bigger := Alternative{Name: "wide-16", Config: wide(16)}
	// Available: exactly what the small model needs with checkpointing
	// and micro-batch 1, so it fits and the original model does not.
	safe := opts
	safe.Checkpointing, safe.MicroBatch, safe.GradAccum = true, 1, 8
	ps, err := Plan(small, safe)
	if err != nil {
		t.Fatal(err)
	}
	available := ps.Peak()
	advice, err := Advise(cfg, opts, available, []Alternative{bigger, smaller})
	if err != nil {
		t.Fatal(err)
	}
	want := []AdviceKind{AdviseCheckpointing, AdviseMicroBatch, AdviseSeqLen, AdviseQLoRA, AdviseSmallerModel}
	if !slices.Equal(kinds(advice), want) {
		t.Fatalf("advice = %v, want %v", kinds(advice), want)
	}
	for i, a := range advice {
		if a.Plan.Peak() >= p.Peak() {
			t.Errorf("advice %d (%s) peak %d is not below the original %d", i, a.Kind, a.Plan.Peak(), p.Peak())
		}
		if !a.Options.Checkpointing {
			t.Errorf("advice %d (%s) dropped checkpointing, which every later step keeps", i, a.Kind)
		}
		if a.Fits != (a.Plan.Peak() <= available) {
			t.Errorf("advice %d (%s): Fits %v for peak %d of %d", i, a.Kind, a.Fits, a.Plan.Peak(), available)
		}
	}
	mb := advice[1].Options
	if mb.MicroBatch != 1 || mb.MicroBatch*mb.GradAccum != 8 {
		t.Errorf("micro-batch advice = %d × %d, want 1 × 8 (same effective batch)", mb.MicroBatch, mb.GradAccum)
	}
	if got := advice[2].Options.SeqLen; !advice[2].Fits && got != minAdviceSeqLen {
		t.Errorf("max-length advice at %d tokens, want the floor %d when no length fits", got, minAdviceSeqLen)
	}
	if q := advice[3].Options; q.Method != QLoRA || q.DoubleQuant || q.SeqLen != 1024 {
		t.Errorf("QLoRA advice options = %+v, want qlora with fp32 absmax (the engine's layout) at the original length", q)
	}
	if m := advice[4]; m.Model != "wide-2" || !m.Fits || m.Config.NumLayers != 2 {
		t.Errorf("smaller-model advice = %s fits=%v, want wide-2 fitting (wide-16 is not smaller)", m.Model, m.Fits)
	}
}

// When checkpointing alone fits, the first piece of advice says so and the
// micro-batch step keeps the largest micro-batch that fits.
func TestAdvisePicksMildestSetting(t *testing.T) {
	cfg := wide(8)
	opts := Options{Method: LoRA, MicroBatch: 4, SeqLen: 1024, Backend: BackendCPU}
	ck := opts
	ck.Checkpointing = true
	pck, err := Plan(cfg, ck)
	if err != nil {
		t.Fatal(err)
	}
	advice, err := Advise(cfg, opts, pck.Peak(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(advice) == 0 || advice[0].Kind != AdviseCheckpointing || !advice[0].Fits {
		t.Fatalf("advice = %v, want checkpointing first and fitting", kinds(advice))
	}
	// Micro-batch 2 with checkpointing sits between the two: the search
	// must stop at 2, not go on to 1.
	two := ck
	two.MicroBatch = 2
	p2, err := Plan(cfg, two)
	if err != nil {
		t.Fatal(err)
	}
	advice, err = Advise(cfg, opts, p2.Peak(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if advice[1].Kind != AdviseMicroBatch || advice[1].Options.MicroBatch != 2 || advice[1].Options.GradAccum != 2 || !advice[1].Fits {
		t.Errorf("micro-batch advice = %+v, want 2 × 2 fitting", advice[1].Options)
	}
}

func TestAdviseFullOffersLoRAThenQLoRA(t *testing.T) {
	cfg := wide(8)
	opts := Options{Method: Full, MicroBatch: 1, SeqLen: 256, Checkpointing: true, Backend: BackendCPU}
	advice, err := Advise(cfg, opts, 1, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := []AdviceKind{AdviseLoRA, AdviseQLoRA}
	if !slices.Equal(kinds(advice), want) {
		t.Errorf("advice = %v, want %v (checkpointing on, micro-batch 1, length at the floor)", kinds(advice), want)
	}
	// DPO on a full policy: the switch is to a LoRA policy, still DPO.
	dpo := opts
	dpo.Method, dpo.DPOBase = DPO, Full
	advice, err = Advise(cfg, dpo, 1, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(advice) < 1 || advice[0].Options.Method != DPO || advice[0].Options.DPOBase != LoRA {
		t.Errorf("DPO advice = %+v, want DPO with a LoRA policy first", advice)
	}
}
