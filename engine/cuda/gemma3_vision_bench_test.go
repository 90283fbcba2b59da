package cuda_test

import (
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"strings"
	"testing"
	"time"

	"whet/datasets"
	"whet/engine"
	"whet/engine/cpu"
	"whet/engine/cuda"
	"whet/engine/memplan"
	"whet/engine/testmodels"
)

// gemma3VisionStep is what TestGemma3Vision4BStep and
// TestGemma3Vision4BQLoRAStep write.
type gemma3VisionStep struct {
	GPU         string `json:"gpu"`
	Method      string `json:"method"`  // lora or qlora
	Compute     string `json:"compute"` // the model's compute dtype (Model.Compute): bf16 on CUDA
	Tokens      int    `json:"tokens"`  // in all, the image's included
	ImageTokens int    `json:"image_tokens"`
	Patches     int    `json:"patches"`      // the tower's rows for the image
	WeightBytes int64  `json:"weight_bytes"` // after the model, its tower and AddLoRA (masters, moments)
	// WarmupPeakBytes is the backend's peak through the warm-up step;
	// PeakBytes its peak over the forward and the timed step (ResetPeak
	// after the warm-up), the number held against the plan.
	WarmupPeakBytes int64 `json:"warmup_peak_bytes"`
	PeakBytes       int64 `json:"peak_bytes"`
	// Plan is memplan.PlanGemma3Vision's peak for the same run: the
	// method, LoRA r16 on the seven linears, batch 1, Tokens tokens, one
	// image, the engine's compute dtype, no checkpointing; PlanLines its
	// categories.
	Plan           int64    `json:"plan"`
	PlanLines      []string `json:"plan_lines"`
	PeakOverPlan   float64  `json:"peak_over_plan"`
	Loss           float64  `json:"loss"` // the timed step's mean loss (random weights: near ln(vocab))
	StepSeconds    float64  `json:"step_s"`
	TokensPerSec   float64  `json:"tok_s"`
	ForwardSeconds float64  `json:"forward_s"` // one forward-only pass, the tower included
	Error          string   `json:"error,omitempty"`
}

// TestGemma3Vision4BStep measures gemma-3-4b-it at its released shape
// (random weights) on the GPU in the CUDA backend's compute dtype (bf16):
// LoRA r16 on every language-model linear, the SigLIP tower and projector
// frozen, batch 1, one 896×896 image (4096 patches pooled to 256 image
// tokens) in a sequence of 1024 tokens: a warm-up step, a forward, then
// one timed step (forward, backward, clipping, AdamW); peak device memory
// against memplan.PlanGemma3Vision for the same run, and tok/s, as JSON
// into the file WHET_GEMMA3_4B names. It fails when the peak is more than
// 10 % away from the plan (issue 24), or the loss is not finite. Skipped
// unless WHET_GEMMA3_4B is set.
func TestGemma3Vision4BStep(t *testing.T) {
	gemma3Vision4B(t, "WHET_GEMMA3_4B", false)
}

// TestGemma3Vision4BQLoRAStep is TestGemma3Vision4BStep with the language
// model's linears in NF4 (engine.ModelOptions.NF4Linears; the tower,
// projector and embeddings bf16), against the plan's qlora plan, into the
// file WHET_GEMMA3_4B_QLORA names. Skipped unless it is set.
func TestGemma3Vision4BQLoRAStep(t *testing.T) {
	gemma3Vision4B(t, "WHET_GEMMA3_4B_QLORA", true)
}

func gemma3Vision4B(t *testing.T, env string, qlora bool) {
	outPath := os.Getenv(env)
	if outPath == "" {
		t.Skipf("set %s=<output json> to measure gemma-3-4b-it with an image on the GPU (about 13 GB)", env)
	}
	gpu := newGPU(t, cuda.Options{})
	text, err := engine.ParseModelConfig("config.json", []byte(testmodels.Gemma3Released4BConfig))
	if err != nil {
		t.Fatal(err)
	}
	vis, err := engine.ParseGemma3VisionConfig([]byte(testmodels.Gemma3Released4BConfig), text.HiddenSize)
	if err != nil {
		t.Fatal(err)
	}
	res := &gemma3VisionStep{GPU: gpu.Name(), Tokens: 1024}
	tag := "gemma3-4b"
	if qlora {
		tag += "-qlora"
	}
	// Written after each stage, so a run cut short by its time limit
	// still says how far it got.
	save := func(stage string) {
		b, _ := json.Marshal(res)
		t.Logf("%s %s: %s", tag, stage, b)
		if err := os.WriteFile(outPath, append(b, '\n'), 0o644); err != nil {
			t.Errorf("write %s: %v", outPath, err)
		}
	}
	defer save("end")
	measureGemma3VisionStep(t, gpu, text, vis, qlora, res, save)
	if t.Failed() {
		return
	}
	if math.Abs(res.PeakOverPlan-1) > 0.10 {
		t.Errorf("peak %d bytes is %.3f of the plan's %d: outside the 10 %% issue 24 asks for\nplan: %s",
			res.PeakBytes, res.PeakOverPlan, res.Plan, strings.Join(res.PlanLines, "; "))
	}
}

// measureGemma3VisionStep fills res for the Gemma 3 vision model of text
// and vis on b (res.Tokens tokens, one image). Random weights are drawn
// once into a block on the device and copied into every weight chunk by
// chunk, so the 4B model needs no 4e9 host draws.
func measureGemma3VisionStep(t *testing.T, b peakBackend, text *engine.ModelConfig, vis *engine.Gemma3VisionConfig, qlora bool, res *gemma3VisionStep, save func(stage string)) {
	T := res.Tokens
	res.Method = "lora"
	if qlora {
		res.Method = "qlora"
	}
	res.ImageTokens, res.Patches = vis.TokensPerImage, vis.NumPatches()

	m, err := engine.NewModelWith(*text, b, engine.ModelOptions{NF4Linears: qlora})
	if err != nil {
		res.Error = err.Error()
		t.Fatal(err)
	}
	defer m.Free()
	if err := m.AttachGemma3Vision(vis, nil); err != nil {
		res.Error = err.Error()
		t.Fatal(err)
	}
	res.Compute = memplan.EngineDType(m.Compute).String()

	// The plan for what this engine does: the model's compute dtype, no
	// checkpointing, the engine's default tiling.
	backend := memplan.BackendCPU
	if strings.HasPrefix(b.Name(), "cuda") {
		backend = memplan.BackendCUDA
	}
	opts := memplan.Options{Method: memplan.Method(res.Method), SeqLen: T, MicroBatch: 1, LoRARank: 16,
		WeightDType: memplan.EngineDType(m.Compute), Backend: backend}
	if k, ok := b.(engine.AttnKernelsReporter); ok {
		opts.Attention = k.AttnKernels() // the fused Hopper backward's dq accumulator where it runs
	}
	if p, err := memplan.PlanGemma3Vision(text, vis, opts, memplan.Gemma3VisionOptions{Images: 1}); err == nil {
		res.Plan = p.Peak()
		for _, l := range p.Lines() {
			res.PlanLines = append(res.PlanLines, l.Label+" "+formatGB(l.Bytes))
		}
	} else {
		t.Errorf("plan: %v", err)
	}

	block := min(1<<24, 1<<20*max(1, text.HiddenSize/256))
	rng := rand.New(rand.NewPCG(4, 24))
	host := make([]float32, block)
	for i := range host {
		host[i] = float32(rng.NormFloat64() * 0.02)
	}
	src, err := b.Alloc(engine.F32, block)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Free(src)
	if err := b.Upload(src, host); err != nil {
		t.Fatal(err)
	}
	// fill copies src's values (converted to w's dtype) into w, chunk by
	// chunk from shifting offsets.
	fill := func(w, src engine.Tensor, shift bool) error {
		n, c := w.Len(), src.Len()
		for off := 0; off < n; off += c {
			k := min(c, n-off)
			at := 0
			if shift {
				at = (off / c * 7919) % (c - k + 1)
			}
			dst, err := b.View(w, off, k)
			if err != nil {
				return err
			}
			s, err := b.View(src, at, k)
			if err != nil {
				return err
			}
			if err := b.Copy(dst, s); err != nil {
				return err
			}
		}
		return nil
	}
	var srcCodes, srcAbsmax engine.Tensor
	if qlora {
		// The block quantized once on the host; its codes and absmax
		// copied into every NF4 weight.
		packed, absmax, err := engine.QuantizeNF4(host)
		if err != nil {
			t.Fatal(err)
		}
		words := engine.PackNF4Words(packed)
		if srcCodes, err = b.Alloc(engine.I32, len(words)); err != nil {
			t.Fatal(err)
		}
		defer b.Free(srcCodes)
		if srcAbsmax, err = b.Alloc(engine.F32, len(absmax)); err != nil {
			t.Fatal(err)
		}
		defer b.Free(srcAbsmax)
		if err := b.UploadInt32(srcCodes, words); err != nil {
			t.Fatal(err)
		}
		if err := b.Upload(srcAbsmax, absmax); err != nil {
			t.Fatal(err)
		}
	}
	nf4 := 0
	for _, p := range m.Params() {
		if p.Quant != nil {
			nf4++
			if err := fill(p.Quant.Packed, srcCodes, false); err != nil {
				t.Fatalf("%s codes: %v", p.Name, err)
			}
			if err := fill(p.Quant.Absmax, srcAbsmax, false); err != nil {
				t.Fatalf("%s absmax: %v", p.Name, err)
			}
			continue
		}
		switch {
		case len(p.Shape) == 1 && !strings.HasSuffix(p.Name, ".bias") &&
			(strings.Contains(p.Name, "layer_norm") || strings.Contains(p.Name, "post_layernorm")):
			err = b.Fill(p.W, 1) // the tower's LayerNorm scales
		case len(p.Shape) == 1:
			err = b.Fill(p.W, 0) // biases; Gemma's (1 + w) RMSNorms, the projector's included
		default:
			err = fill(p.W, src, true)
		}
		if err != nil {
			t.Fatalf("%s: %v", p.Name, err)
		}
	}
	if qlora && nf4 != 7*text.NumLayers {
		t.Fatalf("%d NF4 weights, want the 7 linears of %d layers", nf4, text.NumLayers)
	}
	// The source blocks go before the weights are counted (freeing twice,
	// as the deferred calls then do, does nothing).
	for _, x := range []engine.Tensor{src, srcCodes, srcAbsmax} {
		if x != nil {
			b.Free(x)
		}
	}
	if err := m.AddLoRA(engine.LoRAOptions{Rank: 16, Alpha: 32, Seed: 1}); err != nil {
		res.Error = err.Error()
		t.Fatal(err)
	}
	res.WeightBytes = b.InUseBytes()
	save("weights")

	// One sequence: BOS, BOI, the image's tokens, EOI, then text; the
	// targets are the next tokens but for the image tokens.
	ids := make([]int32, T)
	for i := range ids {
		ids[i] = int32(3 + rng.IntN(int(vis.BOITokenID)-3))
	}
	ids[0], ids[1] = 2, vis.BOITokenID
	for i := range vis.TokensPerImage {
		ids[2+i] = vis.ImageTokenID
	}
	ids[2+vis.TokensPerImage] = vis.EOITokenID
	batch := &datasets.Batch{Tokens: ids, SeqStarts: []int32{0, int32(T)}}
	for i := range ids {
		batch.Positions = append(batch.Positions, int32(i))
		tg := int32(datasets.IgnoreIndex)
		if i+1 < T && ids[i+1] != vis.ImageTokenID {
			tg = ids[i+1]
		}
		batch.Targets = append(batch.Targets, tg)
	}
	pixels := make([]float32, vis.PixelsPerImage())
	for i := range pixels {
		pixels[i] = float32(rng.Float64()*2 - 1) // the processor's range, mean = std = 0.5
	}
	acts, err := m.NewActivations(T, false)
	if err != nil {
		res.Error = err.Error()
		t.Fatal(err)
	}
	defer acts.Free()
	opt := &engine.Optimizer{Beta1: 0.9, Beta2: 0.999, Eps: 1e-8, WeightDecay: 0.01}
	scale := float32(1 / float64(batch.NumTargets()))
	pass := func(backward bool) (float64, error) {
		if backward {
			if err := m.ZeroGrads(); err != nil {
				return 0, err
			}
		}
		if err := acts.SetImages(pixels, 1); err != nil {
			return 0, err
		}
		r, err := acts.ForwardBackward(batch, scale, backward, 1)
		if err != nil {
			return 0, err
		}
		if backward {
			if _, err := engine.ClipGrads(m, 1); err != nil {
				return 0, err
			}
			if err := opt.Apply(m, 1e-5); err != nil {
				return 0, err
			}
		}
		return r.LossSum / float64(max(1, r.Count)), b.Sync()
	}
	if _, err := pass(true); err != nil { // warm-up: kernels compiled, buffers grown
		res.Error = err.Error()
		res.WarmupPeakBytes = b.PeakBytes()
		t.Fatalf("warm-up step: %v", err)
	}
	res.WarmupPeakBytes = b.PeakBytes()
	save("warm-up step")
	prof := newStepProfiler(t, b, fmt.Sprintf("gemma3-vision %s %s", res.Method, res.Compute))
	prof.drop()
	b.ResetPeak()
	t0 := time.Now()
	if _, err := pass(false); err != nil {
		res.Error = err.Error()
		t.Fatal(err)
	}
	res.ForwardSeconds = time.Since(t0).Seconds()
	prof.report("forward", res.ForwardSeconds)
	save("forward")
	t0 = time.Now()
	loss, err := pass(true)
	if err != nil {
		res.Error = err.Error()
		t.Fatal(err)
	}
	res.StepSeconds = time.Since(t0).Seconds()
	prof.report("step", res.StepSeconds)
	res.TokensPerSec = float64(T) / res.StepSeconds
	res.Loss = loss
	res.PeakBytes = b.PeakBytes()
	if res.Plan > 0 {
		res.PeakOverPlan = float64(res.PeakBytes) / float64(res.Plan)
	}
	if math.IsNaN(loss) || math.IsInf(loss, 0) || loss <= 0 {
		res.Error = "loss not finite and positive"
		t.Errorf("the timed step's loss is %v", loss)
	}
}

// formatGB writes bytes as GB with two decimals.
func formatGB(n int64) string { return fmt.Sprintf("%.2f GB", float64(n)/1e9) }

// TestGemma3VisionStepMeasureCPU runs TestGemma3Vision4BStep's measurement
// on the CPU with the tiny Gemma 3 vision model (48 tokens, one image of 4
// tokens), LoRA and QLoRA, so the harness itself is checked where no GPU
// is: it must finish without error, with a finite loss, a peak above the
// weights and within 10 % of the plan (in float32), and a rate; the NF4
// model holds fewer weight bytes than the float32 one.
func TestGemma3VisionStepMeasureCPU(t *testing.T) {
	text, err := engine.ParseModelConfig("config.json", []byte(gpuTinyGemma3Vision))
	if err != nil {
		t.Fatal(err)
	}
	vis, err := engine.ParseGemma3VisionConfig([]byte(gpuTinyGemma3Vision), text.HiddenSize)
	if err != nil {
		t.Fatal(err)
	}
	// The tiny config's vocabulary puts BOI, EOI and the image token at
	// the top; its text is then drawn below BOI.
	var weights [2]int64
	for i, qlora := range []bool{false, true} {
		res := &gemma3VisionStep{Tokens: 48}
		stages := 0
		measureGemma3VisionStep(t, cpu.New(), text, vis, qlora, res, func(string) { stages++ })
		t.Logf("%+v", *res)
		if stages != 3 || res.Error != "" || res.PeakBytes <= res.WeightBytes || res.TokensPerSec <= 0 || res.Plan <= 0 ||
			res.PeakOverPlan <= 0 || res.Compute != "f32" || res.Loss <= 0 || len(res.PlanLines) == 0 || res.ImageTokens != 4 {
			t.Errorf("qlora %v: measurement %+v", qlora, *res)
		}
		// The CPU backend counts what the engine holds as the GPU would:
		// the plan must hold here too.
		if math.Abs(res.PeakOverPlan-1) > 0.10 {
			t.Errorf("qlora %v: peak %d bytes, plan %d (%.3f)", qlora, res.PeakBytes, res.Plan, res.PeakOverPlan)
		}
		weights[i] = res.WeightBytes
	}
	if weights[1] >= weights[0] {
		t.Errorf("the NF4 model holds %d bytes of weights, the float32 one %d", weights[1], weights[0])
	}
}
