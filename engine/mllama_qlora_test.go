package engine_test

import (
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"whet/engine"
	"whet/engine/cpu"
	"whet/engine/memplan"
	"whet/engine/testmodels"
)

// loadTinyMllamaNF4 loads the tiny Mllama of seed twice from the same
// files: with its language-model linears in NF4 (QLoRA's base), and in
// float32 with those linears replaced by their NF4-dequantised values.
func loadTinyMllamaNF4(t *testing.T, seed uint64) (q, f *engine.MllamaModel, cfg *engine.MllamaConfig) {
	t.Helper()
	cfg = tinyMllamaConfigParsed(t)
	dir := writeMllama(t, testmodels.TinyMllamaConfig, randomMllamaTensors(t, cfg, rand.New(rand.NewPCG(seed, 1))))
	q, err := engine.LoadMllamaWith(dir, cpu.New(), engine.MllamaOptions{NF4Linears: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(q.Free)
	f, err = engine.LoadMllama(dir, cpu.New())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(f.Free)
	quantized := 0
	for _, p := range q.Params() {
		if p.Quant == nil {
			continue
		}
		quantized++
		if p.W != nil || !strings.HasPrefix(p.Name, "language_model.model.layers.") || !strings.HasSuffix(p.Name, "_proj.weight") {
			t.Fatalf("%s is quantized (W %v); only the language model's linears should be", p.Name, p.W)
		}
		v, err := q.WeightValues(p)
		if err != nil {
			t.Fatal(err)
		}
		orig, err := f.WeightValues(f.Param(p.Name))
		if err != nil {
			t.Fatal(err)
		}
		var diff float64
		for i := range v {
			diff = max(diff, math.Abs(float64(v[i]-orig[i])))
		}
		if diff == 0 {
			t.Fatalf("%s: the NF4 values equal the float32 ones; the test would not see the quantization", p.Name)
		}
		if err := f.B.Upload(f.Param(p.Name).W, v); err != nil {
			t.Fatal(err)
		}
	}
	// 7 linears a layer.
	if want := 7 * cfg.Text.NumLayers; quantized != want {
		t.Fatalf("%d weights in NF4, want %d (7 linears × %d layers)", quantized, want, cfg.Text.NumLayers)
	}
	return q, f, cfg
}

// TestMllamaQLoRAMatchesDequantized: the tiny Mllama with NF4 language-model
// linears gives the loss, logits, vision output and LoRA (and trainable norm
// and gate) gradients of the float32 model whose weights are the
// NF4-dequantised ones.
func TestMllamaQLoRAMatchesDequantized(t *testing.T) {
	q, f, cfg := loadTinyMllamaNF4(t, 21)
	rng := rand.New(rand.NewPCG(22, 23))
	samples := append(tinyMllamaSamples(cfg, rng), mllamaSample(cfg, rng, 7, nil, nil, 1))
	for _, m := range []*engine.MllamaModel{q, f} {
		if err := m.AddLoRA(engine.MllamaLoRA{Rank: 2, Alpha: 4, Projector: true}); err != nil {
			t.Fatal(err)
		}
		for _, name := range []string{"language_model.model.layers.1.cross_attn_attn_gate", "language_model.model.norm.weight"} {
			if err := m.MakeTrainable(m.Param(name)); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := q.MakeTrainable(q.Param("language_model.model.layers.0.mlp.up_proj.weight")); err == nil || !strings.Contains(err.Error(), "NF4") {
		t.Errorf("making an NF4 weight trainable: %v", err)
	}
	var trained []string
	for _, p := range q.Params() {
		if strings.Contains(p.Name, "lora_") {
			v := make([]float32, p.W.Len())
			for i := range v {
				v[i] = float32(rng.NormFloat64() * 0.15)
			}
			for _, m := range []*engine.MllamaModel{q, f} {
				if err := m.B.Upload(m.Param(p.Name).W, v); err != nil {
					t.Fatal(err)
				}
			}
		}
		if p.Trainable {
			trained = append(trained, p.Name)
		}
	}
	rq, err := q.Run(samples, true, true)
	if err != nil {
		t.Fatal(err)
	}
	rf, err := f.Run(samples, true, true)
	if err != nil {
		t.Fatal(err)
	}
	if math.Abs(rq.Loss-rf.Loss) > 1e-6*math.Abs(rf.Loss) {
		t.Errorf("loss %v with NF4 weights, %v with their float32 values", rq.Loss, rf.Loss)
	}
	near := func(what string, a, b []float32) {
		t.Helper()
		if len(a) != len(b) {
			t.Fatalf("%s: %d values, %d", what, len(a), len(b))
		}
		for i := range a {
			if d := math.Abs(float64(a[i] - b[i])); d > 1e-5+1e-5*math.Abs(float64(b[i])) {
				t.Fatalf("%s[%d]: %v with NF4 weights, %v with their float32 values", what, i, a[i], b[i])
			}
		}
	}
	for i := range rf.Logits {
		near("logits", rq.Logits[i], rf.Logits[i])
		near("vision output", rq.VisionOut[i], rf.VisionOut[i])
	}
	if len(trained) < 2*7*cfg.Text.NumLayers+2+2 {
		t.Fatalf("only %d trainable parameters: %v", len(trained), trained)
	}
	for _, name := range trained {
		gq := make([]float32, q.Param(name).Grad.Len())
		gf := make([]float32, len(gq))
		q.B.Download(q.Param(name).Grad, gq)
		f.B.Download(f.Param(name).Grad, gf)
		nonzero := false
		for _, v := range gf {
			nonzero = nonzero || v != 0
		}
		if !nonzero && strings.Contains(name, "lora_B") {
			t.Errorf("%s: zero gradient", name)
		}
		near(name+" gradient", gq, gf)
	}
}

// TestMllamaQLoRAFiniteDiff checks the LoRA gradients of the NF4 model
// against central differences of its loss: the adapters of every
// language-model linear (self and cross attention, MLPs) and the projector.
func TestMllamaQLoRAFiniteDiff(t *testing.T) {
	m, _, cfg := loadTinyMllamaNF4(t, 31)
	rng := rand.New(rand.NewPCG(32, 33))
	samples := append(tinyMllamaSamples(cfg, rng), mllamaSample(cfg, rng, 7, nil, nil, 1))
	if err := m.AddLoRA(engine.MllamaLoRA{Rank: 2, Alpha: 4, Projector: true}); err != nil {
		t.Fatal(err)
	}
	var params []*engine.Param
	for _, p := range m.Params() {
		if strings.Contains(p.Name, "lora_") {
			uploadRandom(t, m, p, rng, 0.15)
			params = append(params, p)
		}
	}
	if _, err := m.Run(samples, true, false); err != nil {
		t.Fatal(err)
	}
	lossAt := func() float64 {
		r, err := m.Run(samples, false, false)
		if err != nil {
			t.Fatal(err)
		}
		return r.Loss
	}
	for _, p := range params {
		grad := make([]float32, p.Grad.Len())
		w := make([]float32, p.W.Len())
		m.B.Download(p.Grad, grad)
		m.B.Download(p.W, w)
		for _, i := range []int{rng.IntN(len(w)), rng.IntN(len(w))} {
			checkMllamaFiniteDiff(t, m, p, grad, w, i, lossAt)
		}
	}
}

// TestPlanMllamaQLoRAMatchesEngine: memplan's QLoRA plan of the tiny Mllama
// counts the NF4 codes and absmax the engine allocates for its language
// model, and a float32 dequantize buffer the size of its largest linear.
func TestPlanMllamaQLoRAMatchesEngine(t *testing.T) {
	q, _, cfg := loadTinyMllamaNF4(t, 41)
	var engineBytes int64
	maxW := 0
	for _, p := range q.Params() {
		if p.Quant != nil {
			engineBytes += int64(4*p.Quant.Packed.Len() + 4*p.Quant.Absmax.Len())
			maxW = max(maxW, p.Quant.Packed.Len()*8)
		}
	}
	plan, err := memplan.PlanMllama(cfg, memplan.Options{Method: memplan.QLoRA, SeqLen: 16, MicroBatch: 1, LoRARank: 2,
		Backend: memplan.BackendCPU, WeightDType: memplan.F32}, memplan.MllamaOptions{Images: 1})
	if err != nil {
		t.Fatal(err)
	}
	code, ok := plan.Find("nf4.code")
	if !ok {
		t.Fatal("the plan has no NF4 code book")
	}
	if got := plan.ExactBytes(memplan.QuantizedWeights) - code.Bytes(); got != engineBytes {
		t.Errorf("the plan counts %d bytes of NF4 codes and absmax, the engine allocates %d", got, engineBytes)
	}
	ws, ok := plan.Find("nf4.dequantized")
	if !ok || ws.DType != memplan.F32 || ws.Elems() != int64(maxW) {
		t.Errorf("dequantize workspace %+v, want %d float32 values", ws, maxW)
	}
	// In bf16 compute (engine.MllamaOptions.Compute) the engine expands
	// into bf16, as the bf16 plan counts.
	plan, err = memplan.PlanMllama(cfg, memplan.Options{Method: memplan.QLoRA, SeqLen: 16, MicroBatch: 1, LoRARank: 2,
		Backend: memplan.BackendCUDA, WeightDType: memplan.BF16}, memplan.MllamaOptions{Images: 1})
	if err != nil {
		t.Fatal(err)
	}
	if ws, ok := plan.Find("nf4.dequantized"); !ok || ws.DType != memplan.BF16 || ws.Elems() != int64(maxW) {
		t.Errorf("bf16 plan: dequantize workspace %+v, want %d bf16 values", ws, maxW)
	}
}
