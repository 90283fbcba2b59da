package engine_test

import (
	"math"
	"math/rand/v2"
	"testing"

	"whet/datasets"
	"whet/engine"
	"whet/engine/cpu"
)

// nearestLevel is the NF4 definition written plainly: the level closest to
// x, the lower one on an exact tie.
func nearestLevel(x float32) int {
	best := 0
	for i := 1; i < 16; i++ {
		if math.Abs(float64(x-engine.NF4Levels[i])) < math.Abs(float64(x-engine.NF4Levels[best])) {
			best = i
		}
	}
	return best
}

func checkNF4(t *testing.T, what string, w []float32) {
	t.Helper()
	packed, absmax, err := engine.QuantizeNF4(w)
	if err != nil {
		t.Fatal(err)
	}
	if len(packed) != len(w)/2 || len(absmax) != len(w)/64 {
		t.Fatalf("%s: %d bytes and %d absmax for %d values", what, len(packed), len(absmax), len(w))
	}
	got := engine.DequantizeNF4(packed, absmax)
	for b := 0; b < len(w)/64; b++ {
		var m float32
		for _, v := range w[b*64 : (b+1)*64] {
			m = max(m, float32(math.Abs(float64(v))))
		}
		if absmax[b] != m {
			t.Fatalf("%s block %d: absmax %g, want %g", what, b, absmax[b], m)
		}
		for i := b * 64; i < (b+1)*64; i++ {
			want := engine.NF4Levels[nearestLevel(w[i]/m)] * m
			if got[i] != want {
				t.Fatalf("%s[%d] = %g: dequantized %g, NF4 definition gives %g", what, i, w[i], got[i], want)
			}
		}
	}
	// The CPU backend's kernel gives the same bits.
	b := cpu.New()
	pk, _ := b.Alloc(engine.I32, len(packed)/4)
	am, _ := b.Alloc(engine.F32, len(absmax))
	out, _ := b.Alloc(engine.F32, len(w))
	b.UploadInt32(pk, engine.PackNF4Words(packed))
	b.Upload(am, absmax)
	if err := b.DequantizeNF4(out, pk, am); err != nil {
		t.Fatal(err)
	}
	dev := make([]float32, len(w))
	b.Download(out, dev)
	for i := range dev {
		if math.Float32bits(dev[i]) != math.Float32bits(got[i]) {
			t.Fatalf("%s[%d]: backend %g, host %g", what, i, dev[i], got[i])
		}
	}
}

func TestNF4QuantizeMatchesDefinition(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 1))
	w := make([]float32, 64*50)
	for i := range w {
		w[i] = float32(rng.NormFloat64() * 0.05)
	}
	w[5] = 0
	for i := 64; i < 128; i++ { // a block of zeros
		w[i] = 0
	}
	checkNF4(t, "random", w)
	// Every tiny-reference linear weight.
	rc := openReference(t, "tiny-llama")
	m := loadRefModel(t, rc)
	for _, lin := range m.Linears() {
		v, err := m.WeightValues(lin.W)
		if err != nil {
			t.Fatal(err)
		}
		checkNF4(t, lin.W.Name, v)
	}
}

func TestNF4PackedLayout(t *testing.T) {
	// One block whose absmax is 2: values at exact levels, first of each
	// pair in the high nibble.
	w := make([]float32, 64)
	for i := range w {
		w[i] = engine.NF4Levels[i%16] * 2
	}
	packed, absmax, _ := engine.QuantizeNF4(w)
	if absmax[0] != 2 || packed[0] != 0x01 || packed[1] != 0x23 || packed[7] != 0xef {
		t.Fatalf("layout: absmax %g bytes % x", absmax[0], packed[:8])
	}
	if words := engine.PackNF4Words(packed[:4]); uint32(words[0]) != 0x67452301 {
		t.Fatalf("word packing %#x", uint32(words[0]))
	}
	if _, _, err := engine.QuantizeNF4(make([]float32, 65)); err == nil {
		t.Fatal("a partial block must be an error")
	}
}

// TestQLoRAMatchesLoRA: the tiny reference model trained 50 steps with
// QLoRA (NF4 base) reaches a loss within 2% of bf16-free LoRA.
func TestQLoRAMatchesLoRA(t *testing.T) {
	final := func(quant bool) (first, last float64) {
		rc := openReference(t, "tiny-llama")
		m := loadRefModel(t, rc)
		if quant {
			if err := m.QuantizeBase(); err != nil {
				t.Fatal(err)
			}
		}
		if err := m.AddLoRA(engine.LoRAOptions{Rank: 8, Alpha: 16, Seed: 1}); err != nil {
			t.Fatal(err)
		}
		a, err := m.NewActivations(len(rc.batch.Tokens), false)
		if err != nil {
			t.Fatal(err)
		}
		tr := &engine.Trainer{Model: m, Acts: a, Train: []datasets.Batch{*rc.batch}, Seed: 1,
			Cfg:   engine.TrainConfig{MicroBatch: 1, GradAccum: 1, LR: 1e-2, MaxGradNorm: 1, MaxSteps: 50},
			Opt:   &engine.Optimizer{Beta1: 0.9, Beta2: 0.999, Eps: 1e-8},
			Sched: engine.Schedule{Kind: "constant"}}
		for i := 0; i < 50; i++ {
			ev, err := tr.TrainStep()
			if err != nil {
				t.Fatal(err)
			}
			if i == 0 {
				first = ev.Loss
			}
			last = ev.Loss
		}
		return first, last
	}
	lora0, lora := final(false)
	qlora0, qlora := final(true)
	if lora0 == qlora0 {
		t.Fatalf("the NF4 base gives the same initial loss (%g) as the full-precision one: nothing was quantized", lora0)
	}
	if d := math.Abs(qlora-lora) / lora; d > 0.02 {
		t.Fatalf("after 50 steps QLoRA loss %.4f, LoRA %.4f (%.1f%% apart)", qlora, lora, 100*d)
	}
	t.Logf("after 50 steps: LoRA %.4f, QLoRA %.4f", lora, qlora)
}

// TestLoadQuantizedEqualsQuantizeAfter: quantizing while loading (the
// QLoRA path, which never puts full-precision weights on the device) gives
// the same model as loading and quantizing afterwards, and holds less.
func TestLoadQuantizedEqualsQuantizeAfter(t *testing.T) {
	rc := openReference(t, "tiny-qwen2")
	after := loadRefModel(t, rc)
	if err := after.QuantizeBase(); err != nil {
		t.Fatal(err)
	}
	b := cpu.New()
	direct, err := engine.LoadModelWith(rc.dir, b, engine.ModelOptions{NF4Linears: true})
	if err != nil {
		t.Fatal(err)
	}
	logits := func(m *engine.Model) []float32 {
		a, err := m.NewActivations(len(rc.batch.Tokens), false)
		if err != nil {
			t.Fatal(err)
		}
		l, err := a.Logits(rc.batch)
		if err != nil {
			t.Fatal(err)
		}
		return l
	}
	x, y := logits(after), logits(direct)
	for i := range x {
		if x[i] != y[i] {
			t.Fatalf("logit %d: %g quantized after loading, %g quantized while loading", i, x[i], y[i])
		}
	}
	if err := direct.MakeAllTrainable(); err == nil {
		t.Fatal("full fine-tuning of an NF4 model must be refused")
	}
}

// TestInitRandomNF4EqualsQuantizeAfter: InitRandom of an NF4 model, which
// quantizes each chunk of values as it draws them, gives the codes of
// drawing the full-precision model with the same seed and quantizing it
// afterwards, and the same unquantized weights. The linears span several
// of InitRandom's chunks (2^20 values), the last one partial.
func TestInitRandomNF4EqualsQuantizeAfter(t *testing.T) {
	cfg := engine.ModelConfig{ModelType: "qwen2", VocabSize: 40, HiddenSize: 1024, IntermediateSize: 2112,
		NumLayers: 2, NumHeads: 8, NumKVHeads: 4, HeadDim: 128, RMSNormEps: 1e-6, RopeTheta: 10000,
		MaxPositions: 64, AttentionBias: true}
	build := func(nf4 bool) *engine.Model {
		m, err := engine.NewModelWith(cfg, cpu.New(), engine.ModelOptions{NF4Linears: nf4})
		if err != nil {
			t.Fatal(err)
		}
		if err := m.InitRandom(11, 0.02); err != nil {
			t.Fatal(err)
		}
		return m
	}
	direct, after := build(true), build(false)
	if err := after.QuantizeBase(); err != nil {
		t.Fatal(err)
	}
	dp, ap := direct.Params(), after.Params()
	if len(dp) != len(ap) {
		t.Fatalf("%d parameters, %d quantized after", len(dp), len(ap))
	}
	quantized := 0
	for i, p := range dp {
		if (p.Quant != nil) != (ap[i].Quant != nil) || p.Name != ap[i].Name {
			t.Fatalf("parameter %d: %s (nf4 %v), quantized after: %s (nf4 %v)", i, p.Name, p.Quant != nil, ap[i].Name, ap[i].Quant != nil)
		}
		if p.Quant != nil {
			quantized++
		}
		x, err := direct.WeightValues(p)
		if err != nil {
			t.Fatal(err)
		}
		y, err := after.WeightValues(ap[i])
		if err != nil {
			t.Fatal(err)
		}
		for j := range x {
			if math.Float32bits(x[j]) != math.Float32bits(y[j]) {
				t.Fatalf("%s[%d]: %g drawn as NF4, %g quantized after", p.Name, j, x[j], y[j])
			}
		}
	}
	if quantized != 7*cfg.NumLayers {
		t.Fatalf("%d NF4 weights, want %d", quantized, 7*cfg.NumLayers)
	}
}
