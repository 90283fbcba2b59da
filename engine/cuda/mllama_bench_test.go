package cuda_test

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"strings"
	"testing"
	"time"

	"whet/datasets/vision"
	"whet/engine"
	"whet/engine/cpu"
	"whet/engine/cuda"
	"whet/engine/memplan"
	"whet/engine/testmodels"
)

// mllama11B is what TestMllama11BVisionStep writes.
type mllama11B struct {
	GPU          string  `json:"gpu"`
	Tokens       int     `json:"tokens"`
	ImageTokens  int     `json:"image_tokens"`
	WeightBytes  int64   `json:"weight_bytes"`  // after NewMllamaModel and AddLoRA
	PeakBytes    int64   `json:"peak_bytes"`    // the backend's peak over the measured steps
	PlanLoRAF32  int64   `json:"plan_lora_f32"` // memplan.PlanMllama: lora, f32 weights and activations, no checkpointing
	PlanQLoRA    int64   `json:"plan_qlora"`    // memplan.PlanMllama: qlora, bf16, checkpointing (the product's target)
	PeakOverPlan float64 `json:"peak_over_plan_lora_f32"`
	// QLoRA: the language model's linears in NF4 (MllamaOptions.NF4Linears),
	// the rest float32 as the engine holds it; its peak is held against
	// PlanQLoRAF32 (qlora, f32 weights and activations, no checkpointing).
	QLoRA             bool    `json:"qlora,omitempty"`
	PlanQLoRAF32      int64   `json:"plan_qlora_f32,omitempty"`
	PeakOverPlanQLoRA float64 `json:"peak_over_plan_qlora_f32,omitempty"`
	// BF16: the bf16 compute (engine.MllamaOptions.Compute BF16, whet
	// train's default on CUDA; WHET_MLLAMA_BF16=0 keeps float32): weights (NF4 ones aside) and
	// activations bf16; its peak is held against PlanQLoRABF16 (qlora,
	// bf16, no checkpointing: what this engine holds), PlanQLoRA (with
	// checkpointing, which the Mllama engine lacks) recorded beside it.
	BF16                  bool    `json:"bf16,omitempty"`
	PlanQLoRABF16         int64   `json:"plan_qlora_bf16_nockpt,omitempty"`
	PeakOverPlanQLoRABF16 float64 `json:"peak_over_plan_qlora_bf16_nockpt,omitempty"`
	// Checkpointing: engine.MllamaModel.Checkpointing (each text layer's
	// forward rerun in the backward); the peak is then held against
	// PlanQLoRA (qlora, bf16, checkpointing).
	Checkpointing         bool    `json:"checkpointing,omitempty"`
	PeakOverPlanQLoRACkpt float64 `json:"peak_over_plan_qlora,omitempty"`
	StepSeconds           float64 `json:"step_s"`
	TokensPerSec          float64 `json:"tok_s"`
	ForwardSeconds        float64 `json:"forward_s"` // one forward-only Run (vision tower included)
	Error                 string  `json:"error,omitempty"`
}

// TestMllama11BVisionStep measures Llama-3.2-11B-Vision at its released
// shape (random weights) on the GPU: LoRA r16 on every language-model
// linear, batch 1, one 560x560 image (4 tiles, 6404 image tokens) and 1024
// text tokens: a warm-up step, then one timed step (forward, backward,
// AdamW); peak device memory against memplan.PlanMllama and tok/s, as
// JSON into the file WHET_MLLAMA_11B names. The Mllama engine runs in
// float32 throughout (weights included: about 43 GB) and keeps every
// activation for the backward, so the plan it is held against is the f32
// LoRA one without checkpointing; the QLoRA plan is recorded beside it.
// Skipped unless WHET_MLLAMA_11B is set.
func TestMllama11BVisionStep(t *testing.T) {
	outPath := os.Getenv("WHET_MLLAMA_11B")
	if outPath == "" {
		t.Skip("set WHET_MLLAMA_11B=<output json> to measure Llama-3.2-11B-Vision on the GPU (about 70 GB)")
	}
	gpu := newGPU(t, cuda.Options{})
	cfg, err := engine.ParseMllamaConfig("config.json", []byte(testmodels.Released11BVisionConfig))
	if err != nil {
		t.Fatal(err)
	}
	res := &mllama11B{GPU: gpu.Name(), Tokens: 1024, ImageTokens: cfg.Vision.MaxTiles * cfg.Vision.Patches()}
	// Written after each stage, so a run cut short by its time limit
	// still says how far it got.
	save := func(stage string) {
		b, _ := json.Marshal(res)
		t.Logf("mllama11b %s: %s", stage, b)
		if err := os.WriteFile(outPath, append(b, '\n'), 0o644); err != nil {
			t.Errorf("write %s: %v", outPath, err)
		}
	}
	defer save("end")
	measureMllamaStep(t, gpu, cfg, res, save)
}

// TestMllama11BVisionQLoRAStep is TestMllama11BVisionStep with the
// language model's linears in NF4 (method qlora's engine.MllamaOptions
// NF4Linears; the vision tower, projector, embeddings and head float32):
// peak against memplan.PlanMllama's qlora plan with f32 weights and no
// checkpointing (what this engine holds), and tok/s, as JSON into the file
// WHET_MLLAMA_11B_QLORA names. Skipped unless it is set.
func TestMllama11BVisionQLoRAStep(t *testing.T) {
	outPath := os.Getenv("WHET_MLLAMA_11B_QLORA")
	if outPath == "" {
		t.Skip("set WHET_MLLAMA_11B_QLORA=<output json> to measure Llama-3.2-11B-Vision QLoRA on the GPU (about 25 GB)")
	}
	gpu := newGPU(t, cuda.Options{})
	cfg, err := engine.ParseMllamaConfig("config.json", []byte(testmodels.Released11BVisionConfig))
	if err != nil {
		t.Fatal(err)
	}
	res := &mllama11B{GPU: gpu.Name(), Tokens: 1024, ImageTokens: cfg.Vision.MaxTiles * cfg.Vision.Patches(), QLoRA: true}
	save := func(stage string) {
		b, _ := json.Marshal(res)
		t.Logf("mllama11b-qlora %s: %s", stage, b)
		if err := os.WriteFile(outPath, append(b, '\n'), 0o644); err != nil {
			t.Errorf("write %s: %v", outPath, err)
		}
	}
	defer save("end")
	measureMllamaStep(t, gpu, cfg, res, save)
}

// TestMllama11BVisionQLoRABF16Step is TestMllama11BVisionQLoRAStep in
// the bf16 compute (engine.MllamaOptions.Compute BF16: the tower,
// projector, embeddings, head, norms and activations bf16, the language
// model's linears NF4 expanded into bf16, the adapters' masters, gradients
// and moments float32): peak against memplan.PlanMllama's qlora bf16 plan
// without checkpointing (PeakOverPlanQLoRABF16; the product's 12.5 GB plan
// with checkpointing is PlanQLoRA), the forward's and the step's time and
// tok/s, as JSON into the file WHET_MLLAMA_11B_QLORA_BF16 names. Skipped
// unless it is set.
func TestMllama11BVisionQLoRABF16Step(t *testing.T) {
	outPath := os.Getenv("WHET_MLLAMA_11B_QLORA_BF16")
	if outPath == "" {
		t.Skip("set WHET_MLLAMA_11B_QLORA_BF16=<output json> to measure Llama-3.2-11B-Vision QLoRA in bf16 on the GPU (about 19 GB)")
	}
	gpu := newGPU(t, cuda.Options{})
	cfg, err := engine.ParseMllamaConfig("config.json", []byte(testmodels.Released11BVisionConfig))
	if err != nil {
		t.Fatal(err)
	}
	res := &mllama11B{GPU: gpu.Name(), Tokens: 1024, ImageTokens: cfg.Vision.MaxTiles * cfg.Vision.Patches(), QLoRA: true, BF16: true}
	save := func(stage string) {
		b, _ := json.Marshal(res)
		t.Logf("mllama11b-qlora-bf16 %s: %s", stage, b)
		if err := os.WriteFile(outPath, append(b, '\n'), 0o644); err != nil {
			t.Errorf("write %s: %v", outPath, err)
		}
	}
	defer save("end")
	measureMllamaStep(t, gpu, cfg, res, save)
}

// TestMllama11BVisionQLoRABF16CkptStep is TestMllama11BVisionQLoRABF16Step
// with activation checkpointing (engine.MllamaModel.Checkpointing, what
// train.activation_checkpointing sets): peak against memplan.PlanMllama's
// qlora bf16 plan with checkpointing (PeakOverPlanQLoRACkpt; 12.2 GB),
// forward and step time, tok/s, as JSON into the file
// WHET_MLLAMA_11B_QLORA_BF16_CKPT names. Skipped unless it is set.
func TestMllama11BVisionQLoRABF16CkptStep(t *testing.T) {
	outPath := os.Getenv("WHET_MLLAMA_11B_QLORA_BF16_CKPT")
	if outPath == "" {
		t.Skip("set WHET_MLLAMA_11B_QLORA_BF16_CKPT=<output json> to measure Llama-3.2-11B-Vision QLoRA in bf16 with checkpointing on the GPU (about 13 GB)")
	}
	gpu := newGPU(t, cuda.Options{})
	cfg, err := engine.ParseMllamaConfig("config.json", []byte(testmodels.Released11BVisionConfig))
	if err != nil {
		t.Fatal(err)
	}
	res := &mllama11B{GPU: gpu.Name(), Tokens: 1024, ImageTokens: cfg.Vision.MaxTiles * cfg.Vision.Patches(), QLoRA: true, BF16: true, Checkpointing: true}
	save := func(stage string) {
		b, _ := json.Marshal(res)
		t.Logf("mllama11b-qlora-bf16-ckpt %s: %s", stage, b)
		if err := os.WriteFile(outPath, append(b, '\n'), 0o644); err != nil {
			t.Errorf("write %s: %v", outPath, err)
		}
	}
	defer save("end")
	measureMllamaStep(t, gpu, cfg, res, save)
}

// peakBackend is a backend that reports and resets its peak memory.
type peakBackend interface {
	engine.Backend
	engine.MemoryReporter
	ResetPeak()
}

// measureMllamaStep fills res for cfg on gpu (res.Tokens text tokens, one
// image of 4 tiles).
func measureMllamaStep(t *testing.T, gpu peakBackend, cfg *engine.MllamaConfig, res *mllama11B, save func(stage string)) {
	T := res.Tokens
	var err error
	base := memplan.Options{Method: memplan.LoRA, SeqLen: T, MicroBatch: 1, LoRARank: 16, Backend: memplan.BackendCUDA}
	if k, ok := gpu.(engine.AttnKernelsReporter); ok {
		base.Attention = k.AttnKernels() // the fused Hopper backward's dq accumulator where it runs
	}
	f32 := base
	f32.WeightDType = memplan.F32
	if p, err := memplan.PlanMllama(cfg, f32, memplan.MllamaOptions{Images: 1}); err == nil {
		res.PlanLoRAF32 = p.Peak()
	} else {
		t.Errorf("plan lora f32: %v", err)
	}
	q := base
	q.Method, q.Checkpointing = memplan.QLoRA, true
	if p, err := memplan.PlanMllama(cfg, q, memplan.MllamaOptions{Images: 1}); err == nil {
		res.PlanQLoRA = p.Peak()
	} else {
		t.Errorf("plan qlora: %v", err)
	}
	if res.BF16 {
		qb := base
		qb.Method, qb.WeightDType = memplan.QLoRA, memplan.BF16
		if p, err := memplan.PlanMllama(cfg, qb, memplan.MllamaOptions{Images: 1}); err == nil {
			res.PlanQLoRABF16 = p.Peak()
		} else {
			t.Errorf("plan qlora bf16: %v", err)
		}
	} else if res.QLoRA {
		qf := f32
		qf.Method = memplan.QLoRA
		if p, err := memplan.PlanMllama(cfg, qf, memplan.MllamaOptions{Images: 1}); err == nil {
			res.PlanQLoRAF32 = p.Peak()
		} else {
			t.Errorf("plan qlora f32: %v", err)
		}
	}

	compute := engine.F32
	if res.BF16 {
		compute = engine.BF16
	}
	m, err := engine.NewMllamaModelWith(*cfg, gpu, engine.MllamaOptions{NF4Linears: res.QLoRA, Compute: compute})
	if err != nil {
		res.Error = err.Error()
		t.Fatal(err)
	}
	defer m.Free()
	m.Checkpointing = res.Checkpointing
	// Random weights without 11e9 host draws: one block of N(0, 0.02²)
	// values copied on the device into every weight; norms 1, gates 0.5.
	block := min(1<<24, 1<<20*max(1, cfg.Text.HiddenSize/256))
	rng := rand.New(rand.NewPCG(11, 2))
	host := make([]float32, block)
	for i := range host {
		host[i] = float32(rng.NormFloat64() * 0.02)
	}
	src, err := gpu.Alloc(engine.F32, block)
	if err != nil {
		t.Fatal(err)
	}
	defer gpu.Free(src)
	if err := gpu.Upload(src, host); err != nil {
		t.Fatal(err)
	}
	fillRandom := func(w engine.Tensor) error {
		n := w.Len()
		for off := 0; off < n; off += block {
			k := min(block, n-off)
			dst, err := gpu.View(w, off, k)
			if err != nil {
				return err
			}
			s, err := gpu.View(src, (off/block*7919)%(block-k+1), k)
			if err != nil {
				return err
			}
			if err := gpu.Copy(dst, s); err != nil {
				return err
			}
		}
		return nil
	}
	// NF4 weights: the block quantized once on the host, its codes and
	// absmax copied chunk by chunk into every NF4 weight.
	packed, absmax, err := engine.QuantizeNF4(host)
	if err != nil {
		t.Fatal(err)
	}
	words := engine.PackNF4Words(packed)
	srcCodes, err := gpu.Alloc(engine.I32, len(words))
	if err != nil {
		t.Fatal(err)
	}
	defer gpu.Free(srcCodes)
	srcAbsmax, err := gpu.Alloc(engine.F32, len(absmax))
	if err != nil {
		t.Fatal(err)
	}
	defer gpu.Free(srcAbsmax)
	if err := gpu.UploadInt32(srcCodes, words); err != nil {
		t.Fatal(err)
	}
	if err := gpu.Upload(srcAbsmax, absmax); err != nil {
		t.Fatal(err)
	}
	fillChunks := func(w, src engine.Tensor) error {
		n, c := w.Len(), src.Len()
		for off := 0; off < n; off += c {
			k := min(c, n-off)
			dst, err := gpu.View(w, off, k)
			if err != nil {
				return err
			}
			s, err := gpu.View(src, 0, k)
			if err != nil {
				return err
			}
			if err := gpu.Copy(dst, s); err != nil {
				return err
			}
		}
		return nil
	}
	for _, p := range m.Params() {
		if p.Quant != nil {
			if err := fillChunks(p.Quant.Packed, srcCodes); err != nil {
				t.Fatalf("%s codes: %v", p.Name, err)
			}
			if err := fillChunks(p.Quant.Absmax, srcAbsmax); err != nil {
				t.Fatalf("%s absmax: %v", p.Name, err)
			}
			continue
		}
		leaf := p.Name[strings.LastIndex(p.Name, ".")+1:]
		switch {
		case strings.HasSuffix(leaf, "gate") || leaf == "gate_attn" || leaf == "gate_ffn":
			err = gpu.Fill(p.W, 0.5)
		case strings.Contains(p.Name, "norm") && leaf == "weight":
			err = gpu.Fill(p.W, 1)
		case strings.Contains(p.Name, "norm") && leaf == "bias":
			err = gpu.Fill(p.W, 0)
		default:
			err = fillRandom(p.W)
		}
		if err != nil {
			t.Fatalf("%s: %v", p.Name, err)
		}
	}
	if err := m.AddLoRA(engine.MllamaLoRA{Rank: 16, Alpha: 32}); err != nil {
		res.Error = err.Error()
		t.Fatal(err)
	}
	for _, p := range m.Params() {
		if strings.HasSuffix(p.Name, "lora_A.weight") {
			if err := fillRandom(p.W); err != nil {
				t.Fatal(err)
			}
			if p.Master != p.W { // a bf16 model's float32 master
				if err := gpu.Copy(p.Master, p.W); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	res.WeightBytes = gpu.InUseBytes()
	save("weights")

	v := &cfg.Vision
	s := engine.MllamaSample{Images: 1, AspectRatioIDs: []int32{6}, AspectRatioMask: []int32{1, 1, 1, 1},
		Pixels: make([]float32, v.MaxTiles*v.Channels*v.ImageSize*v.ImageSize)}
	for i := range s.Pixels {
		s.Pixels[i] = float32(rng.NormFloat64())
	}
	ids := make([]int, T)
	for i := range ids {
		ids[i] = 3 + rng.IntN(cfg.Text.VocabSize-3)
	}
	ids[0], ids[1] = 1, cfg.ImageToken
	for _, b := range vision.CrossAttentionMask(vision.CrossAttentionSpans(ids, cfg.ImageToken), []int{4}, v.MaxTiles, T) {
		s.CrossMask = append(s.CrossMask, int32(b))
	}
	for i, id := range ids {
		s.IDs = append(s.IDs, int32(id))
		tg := int32(-100)
		if i >= 2 && i+1 < T {
			tg = int32(ids[i+1])
		}
		s.Targets = append(s.Targets, tg)
	}
	batch := []engine.MllamaSample{s}
	step := func() error {
		if err := m.ZeroGrads(); err != nil {
			return err
		}
		if _, err := m.Run(batch, true, false); err != nil {
			return err
		}
		if err := m.AdamW(engine.AdamWParams{LR: 1e-5, Beta1: 0.9, Beta2: 0.999, Eps: 1e-8, Step: 1}); err != nil {
			return err
		}
		return gpu.Sync()
	}
	if err := step(); err != nil { // warm-up: kernels compiled, allocator grown
		res.Error = err.Error()
		res.PeakBytes = gpu.PeakBytes()
		t.Fatalf("warm-up step: %v", err)
	}
	res.PeakBytes = gpu.PeakBytes()
	save("warm-up step")
	prof := newStepProfiler(t, gpu, fmt.Sprintf("mllama qlora=%v WHET_MLLAMA_BF16=%q", res.QLoRA, os.Getenv("WHET_MLLAMA_BF16")))
	prof.drop()
	gpu.ResetPeak()
	t0 := time.Now()
	if _, err := m.Run(batch, false, false); err != nil {
		res.Error = err.Error()
		t.Fatal(err)
	}
	if err := gpu.Sync(); err != nil {
		t.Fatal(err)
	}
	res.ForwardSeconds = time.Since(t0).Seconds()
	prof.report("forward", res.ForwardSeconds)
	save("forward")
	const steps = 1
	t0 = time.Now()
	for range steps {
		if err := step(); err != nil {
			res.Error = err.Error()
			t.Fatal(err)
		}
	}
	res.StepSeconds = time.Since(t0).Seconds() / steps
	prof.report("step", res.StepSeconds)
	res.TokensPerSec = float64(T) / res.StepSeconds
	res.PeakBytes = gpu.PeakBytes()
	if res.PlanLoRAF32 > 0 && !res.QLoRA {
		res.PeakOverPlan = float64(res.PeakBytes) / float64(res.PlanLoRAF32)
	}
	if res.PlanQLoRAF32 > 0 {
		res.PeakOverPlanQLoRA = float64(res.PeakBytes) / float64(res.PlanQLoRAF32)
	}
	if res.PlanQLoRABF16 > 0 && !res.Checkpointing {
		res.PeakOverPlanQLoRABF16 = float64(res.PeakBytes) / float64(res.PlanQLoRABF16)
	}
	if res.Checkpointing && res.PlanQLoRA > 0 {
		res.PeakOverPlanQLoRACkpt = float64(res.PeakBytes) / float64(res.PlanQLoRA)
	}
	// Issue 24 holds the peak within 10 % of the plan of what this run
	// does; a plan that drifts from the engine fails here on the GPU. (The
	// CUDA plan counts the backend's fixed workspaces, which the tiny CPU
	// run of TestMllamaStepMeasureCPU does not have: not checked there.)
	if name, r := res.enginePlanRatio(); res.GPU != "" && (r < 0.9 || r > 1.1) {
		t.Errorf("peak %d bytes is %.3f of the %s plan: more than 10 %% away", res.PeakBytes, r, name)
	}
}

// enginePlanRatio is the peak over the plan of the run measured: f32 LoRA,
// f32 QLoRA, bf16 QLoRA, or bf16 QLoRA with checkpointing.
func (res *mllama11B) enginePlanRatio() (string, float64) {
	switch {
	case res.Checkpointing:
		return "bf16 qlora with checkpointing", res.PeakOverPlanQLoRACkpt
	case res.BF16:
		return "bf16 qlora", res.PeakOverPlanQLoRABF16
	case res.QLoRA:
		return "f32 qlora", res.PeakOverPlanQLoRA
	default:
		return "f32 lora", res.PeakOverPlan
	}
}

// TestMllamaStepMeasureCPU runs TestMllama11BVisionStep's measurement on
// the CPU with the tiny Mllama (64 tokens, one image of 4 tiles), so the
// harness itself is checked where no GPU is: it must finish without error
// and report a peak above the weights and a rate.
func TestMllamaStepMeasureCPU(t *testing.T) {
	cfg, err := engine.ParseMllamaConfig("config.json", []byte(testmodels.TinyMllamaConfig))
	if err != nil {
		t.Fatal(err)
	}
	var weights [4]int64
	for i, c := range []struct{ qlora, bf16, ckpt bool }{{false, false, false}, {true, false, false}, {true, true, false}, {true, true, true}} {
		res := &mllama11B{Tokens: 64, QLoRA: c.qlora, BF16: c.bf16, Checkpointing: c.ckpt}
		stages := 0
		measureMllamaStep(t, cpu.New(), cfg, res, func(string) { stages++ })
		t.Logf("%+v", *res)
		if stages != 3 || res.Error != "" || res.PeakBytes <= 0 || res.TokensPerSec <= 0 || res.PlanLoRAF32 <= 0 || res.PlanQLoRA <= 0 ||
			c.qlora && !c.bf16 && (res.PlanQLoRAF32 <= 0 || res.PeakOverPlanQLoRA <= 0) ||
			c.bf16 && !c.ckpt && (res.PlanQLoRABF16 <= 0 || res.PeakOverPlanQLoRABF16 <= 0) ||
			c.ckpt && res.PeakOverPlanQLoRACkpt <= 0 {
			t.Errorf("measurement %+v", *res)
		}
		weights[i] = res.WeightBytes
	}
	if weights[1] >= weights[0] {
		t.Errorf("the NF4 model holds %d bytes of weights, the float32 one %d", weights[1], weights[0])
	}
	if weights[2] >= weights[1] {
		t.Errorf("the NF4 + bf16 model holds %d bytes of weights, NF4 + float32 %d", weights[2], weights[1])
	}
}
