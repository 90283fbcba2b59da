package memplan_test

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"whet/engine"
	"whet/engine/cpu"
	"whet/engine/memplan"
)

// agreementMllama is a small Llama 3.2 Vision with the released model's
// structure: two of four text layers cross-attention, a local and a
// gated global vision encoder with kept intermediate layers, four tiles
// of 16 patches (17 positions padded to 24) per image.
const agreementMllama = `{"architectures": ["MllamaForConditionalGeneration"], "image_token_index": 512, "model_type": "mllama",
 "text_config": {"cross_attention_layers": [1, 3], "hidden_act": "silu", "hidden_size": 128,
  "intermediate_size": 352, "max_position_embeddings": 1024, "model_type": "mllama_text_model",
  "num_attention_heads": 4, "num_hidden_layers": 4, "num_key_value_heads": 2, "rms_norm_eps": 1e-05,
  "rope_theta": 500000.0, "tie_word_embeddings": false, "vocab_size": 512},
 "vision_config": {"attention_heads": 4, "hidden_act": "gelu", "hidden_size": 64, "image_size": 32,
  "intermediate_layers_indices": [0, 2], "intermediate_size": 128, "max_num_tiles": 4,
  "norm_eps": 1e-05, "num_channels": 3, "num_global_layers": 2, "num_hidden_layers": 3,
  "patch_size": 8, "supported_aspect_ratios": [[1, 1], [1, 2], [1, 3], [1, 4], [2, 1], [2, 2], [3, 1], [4, 1]], "vision_output_dim": 192}}`

// TestPlanMllamaMatchesEngine runs one training step (forward and
// backward over the images and the text, AdamW) of a small Llama 3.2
// Vision on the CPU backend, which counts device-equivalent bytes, and
// requires memplan.PlanMllama's peak for the same run (float32 LoRA r16
// on every language-model linear, optionally the projector, no
// checkpointing, as the Mllama engine trains) within 5% of the engine's
// peak, with one and two images of four tiles (the second with three
// in its aspect-ratio mask), three lengths and a subset of targets.
func TestPlanMllamaMatchesEngine(t *testing.T) {
	for _, c := range []struct {
		images, tokens int
		projector      bool
		targets        []string
	}{{1, 256, false, nil}, {2, 256, false, nil}, {1, 512, true, nil}, {2, 128, true, []string{"q", "v", "down"}}} {
		t.Run(fmt.Sprintf("images=%d/tokens=%d/projector=%v/targets=%v", c.images, c.tokens, c.projector, c.targets), func(t *testing.T) {
			checkMllamaAgreement(t, c.images, c.tokens, c.projector, c.targets, engine.F32, false)
		})
	}
}

// TestPlanMllamaBF16MatchesEngine is TestPlanMllamaMatchesEngine for the
// engine's bf16 compute (engine.MllamaOptions.Compute BF16: bf16
// weights and activations, float32 masters, gradients and moments for the
// adapters) against PlanMllama with WeightDType bf16, no checkpointing,
// for LoRA and QLoRA (NF4 language-model linears).
func TestPlanMllamaBF16MatchesEngine(t *testing.T) {
	for _, c := range []struct {
		images, tokens int
		projector, nf4 bool
	}{{1, 256, false, false}, {2, 256, true, false}, {1, 256, false, true}, {1, 512, true, true}} {
		t.Run(fmt.Sprintf("images=%d/tokens=%d/projector=%v/qlora=%v", c.images, c.tokens, c.projector, c.nf4), func(t *testing.T) {
			checkMllamaAgreement(t, c.images, c.tokens, c.projector, nil, engine.BF16, c.nf4)
		})
	}
}

// TestPlanMllamaCheckpointingMatchesEngine: PlanMllama with checkpointing
// against the engine's peak with MllamaModel.Checkpointing.
func TestPlanMllamaCheckpointingMatchesEngine(t *testing.T) {
	for _, c := range []struct {
		images, tokens int
		compute        engine.DType
		nf4            bool
	}{{1, 256, engine.F32, false}, {1, 512, engine.BF16, true}, {2, 256, engine.BF16, false}} {
		t.Run(fmt.Sprintf("images=%d/tokens=%d/%s/qlora=%v", c.images, c.tokens, c.compute, c.nf4), func(t *testing.T) {
			checkMllamaAgreementCkpt(t, c.images, c.tokens, false, nil, c.compute, c.nf4, true)
		})
	}
}

func checkMllamaAgreement(t *testing.T, images, T int, projector bool, targets []string, compute engine.DType, nf4 bool) {
	checkMllamaAgreementCkpt(t, images, T, projector, targets, compute, nf4, false)
}

func checkMllamaAgreementCkpt(t *testing.T, images, T int, projector bool, targets []string, compute engine.DType, nf4, ckpt bool) {
	t.Helper()
	cfg, err := engine.ParseMllamaConfig("config.json", []byte(agreementMllama))
	if err != nil {
		t.Fatal(err)
	}
	wdt := memplan.F32
	if compute == engine.BF16 {
		wdt = memplan.BF16
	}
	method := memplan.LoRA
	if nf4 {
		method = memplan.QLoRA
	}
	opts := memplan.Options{Method: method, SeqLen: T, MicroBatch: 1, LoRARank: 16,
		WeightDType: wdt, Backend: memplan.BackendCPU, LoRATargets: targets, Checkpointing: ckpt}
	p, err := memplan.PlanMllama(cfg, opts, memplan.MllamaOptions{Images: images, Projector: projector})
	if err != nil {
		t.Fatal(err)
	}

	b := cpu.New()
	m, err := engine.NewMllamaModelWith(*cfg, b, engine.MllamaOptions{Compute: compute, NF4Linears: nf4})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Free()
	m.Checkpointing = ckpt
	rng := rand.New(rand.NewPCG(24, uint64(T)))
	for _, q := range m.Params() {
		h := make([]float32, elems(q.Shape))
		for i := range h {
			h[i] = float32(rng.NormFloat64() * 0.05)
		}
		if err := m.SetValues(q, h); err != nil {
			t.Fatal(err)
		}
	}
	if err := m.AddLoRA(engine.MllamaLoRA{Rank: 16, Alpha: 32, Projector: projector, Targets: targets}); err != nil {
		t.Fatal(err)
	}
	v := &cfg.Vision
	s := engine.MllamaSample{Images: images, Pixels: make([]float32, images*v.MaxTiles*v.Channels*v.ImageSize*v.ImageSize)}
	for i := range s.Pixels {
		s.Pixels[i] = float32(rng.NormFloat64())
	}
	for i := 0; i < images; i++ {
		s.AspectRatioIDs = append(s.AspectRatioIDs, int32(6-i)) // 2x2, then 2x1
		s.AspectRatioMask = append(s.AspectRatioMask, 1, 1, 1, int32(1-i))
	}
	for i := 0; i < T; i++ {
		id, tg := int32(3+rng.IntN(cfg.Text.VocabSize-3)), int32(-100)
		if i < images {
			id = int32(cfg.ImageToken)
		}
		s.IDs = append(s.IDs, id)
		if i >= images && i+1 < T {
			tg = int32(3 + rng.IntN(cfg.Text.VocabSize-3))
		}
		s.Targets = append(s.Targets, tg)
		for j := 0; j < images*v.MaxTiles; j++ {
			s.CrossMask = append(s.CrossMask, 1)
		}
	}
	// Two steps, as TestMllama11BVisionStep measures: the AdamW moments
	// made by the first exist during the second's pass.
	for step := 1; step <= 2; step++ {
		if err := m.ZeroGrads(); err != nil {
			t.Fatal(err)
		}
		if _, err := m.Run([]engine.MllamaSample{s}, true, false); err != nil {
			t.Fatal(err)
		}
		if err := m.AdamW(engine.AdamWParams{LR: 1e-4, Beta1: 0.9, Beta2: 0.999, Eps: 1e-8, Step: step}); err != nil {
			t.Fatal(err)
		}
	}
	got, plan := b.PeakBytes(), p.Peak()
	ratio := float64(plan) / float64(got)
	t.Logf("engine peak %d bytes, plan %d (%.3f)", got, plan, ratio)
	for _, l := range p.Lines() {
		t.Logf("  %-28s %12d", l.Label, l.Bytes)
	}
	if ratio < 0.95 || ratio > 1.05 {
		t.Errorf("plan %d bytes vs engine %d: off by %.1f%%", plan, got, 100*(ratio-1))
	}
	var params int64
	for _, q := range m.Params() {
		if !q.Trainable {
			params += int64(elems(q.Shape))
		}
	}
	if p.Params != params {
		t.Errorf("plan counts %d parameters, the model has %d", p.Params, params)
	}
}

// elems is the number of values of a shape.
func elems(shape []int) int {
	n := 1
	for _, d := range shape {
		n *= d
	}
	return n
}
