package memplan

import (
	"strings"
	"testing"

	"whet/engine"
)

// tiny is the model every hand computation below uses:
// V 64, H 16, I 32, L 2, 4 heads of 4 (Q 16), 2 kv heads (KV 8), untied.
func tiny() *engine.ModelConfig {
	return &engine.ModelConfig{
		ModelType: "llama", VocabSize: 64, HiddenSize: 16, IntermediateSize: 32,
		NumLayers: 2, NumHeads: 4, NumKVHeads: 2, HeadDim: 4,
		RMSNormEps: 1e-5, RopeTheta: 10000, MaxPositions: 2048,
	}
}

// Parameters of tiny, by hand:
//
//	embed 64·16 = 1024, lm_head 1024, final norm 16
//	per layer: q 256, k 128, v 128, o 256, gate 512, up 512, down 512, norms 32 = 2336
//	total 1024 + 1024 + 16 + 2·2336 = 6736
func TestParamCountTiny(t *testing.T) {
	if got := ParamCount(tiny()); got != 6736 {
		t.Errorf("ParamCount = %d, want 6736", got)
	}
	c := tiny()
	c.TieWordEmbeddings = true
	c.AttentionBias = true
	// tied: −1024; biases: (Q + 2·KV) · L = 32 · 2 = 64
	if got := ParamCount(c); got != 6736-1024+64 {
		t.Errorf("tied with bias: ParamCount = %d, want %d", got, 6736-1024+64)
	}
}

// TestPlanLoRAByHand: LoRA r 2 on all seven projections, B 1, T 8
// (N 8), no checkpointing, logits chunk 4, bf16, CUDA.
func TestPlanLoRAByHand(t *testing.T) {
	t.Setenv(engine.LoRAFusedEnv, "") // the default layout, stacked adapters (TestPlanLoRAStackedScratch)
	p, err := Plan(tiny(), Options{Method: LoRA, MicroBatch: 1, SeqLen: 8, LoRARank: 2, LogitsChunk: 4})
	if err != nil {
		t.Fatal(err)
	}
	want := map[Category]int64{
		// 6736 parameters × 2 bytes
		Weights: 13472,
		// r·(in+out) per target: q 2·32=64, k 2·24=48, v 48, o 64,
		// gate 2·48=96, up 96, down 96 → 512 per layer, 1024 in all, ×2 bytes
		Adapters: 2048,
		// 1024 trainable × 4 bytes
		Masters:   4096,
		Gradients: 4096,
		// m and v: 2 × 4096, plus 1024 fp32 grad-norm partials (4096)
		OptimizerState: 12288,
		// per layer, bf16: resid_in, ln1_out, q, attn_out, resid_mid, ln2_out
		// 6 × 8·16 = 768; k, v 2 × 8·8 = 128; gate, up 2 × 8·32 = 512
		// → 1408 × 2 = 2816 bytes; fp32: 2 rstd × 8 + lse 4·8 = 48 × 4 = 192;
		// x·Aᵀ for 7 targets: 7 × 8·2 = 112 × 2 = 224 → 3232 per layer,
		// × 2 layers = 6464; one swiglu_out 8·32 × 2 = 512; after the last
		// layer: resid_out 256 + final rstd 32 + final_norm_out of one
		// logits chunk, 4·16 × 2 = 128, = 416 → 7392
		Activations: 7392,
		// resid 128, ln_out 128 (also the LM head's input gradient), qkv
		// 8·32 = 256, attn_out 128, swiglu 256, gate_up 512, lora_xa 48
		// (stacked q, k, v: 3r·N = 6·8) = 1456 × 2
		BackwardScratch: 2912,
		// 4 × 64 fp32 = 1024, bf16 gradient copy 512
		Logits: 1536,
		// tokens, targets, positions, log-probs 4 × 32; seq_starts (8+1) × 4;
		// rope cos and sin 2 × 8 × head_dim/2 (2) fp32 = 128
		Inputs: 292,
		// delta 4·8 fp32 = 128 (the CUDA backward sums GQA heads in-block:
		// no dK/dV accumulators)
		AttentionWorkspace: 128,
		GEMMWorkspace:      32 << 20,
	}
	for c := Category(0); c < numCategories; c++ {
		if got := p.ExactBytes(c); got != want[c] {
			t.Errorf("%v: %d bytes, want %d", c, got, want[c])
		}
	}
	if p.Params != 6736 || p.Trainable != 1024 || p.Tokens != 8 {
		t.Errorf("params %d trainable %d tokens %d, want 6736, 1024, 8", p.Params, p.Trainable, p.Tokens)
	}
	// Aligned weights arena: every copy rounded up to 256 bytes.
	// embed 2048, lm_head 2048, norm 32→256, layer norms 2 × 2 × 256,
	// q 512 × 2, k 256 × 2, v 256 × 2, o 512 × 2, gate/up/down 1024 × 2 each
	// = 2048 + 2048 + 256 + 1024 + 1024 + 512 + 512 + 1024 + 3 × 2048 = 14592
	if got := p.Bytes(Weights); got != 14592 {
		t.Errorf("aligned weights arena = %d, want 14592", got)
	}
	var sum int64
	for c := Category(0); c < numCategories; c++ {
		sum += p.Bytes(c)
	}
	if p.Peak() != sum+CUDAContextBytes {
		t.Errorf("peak %d, want the arenas %d plus the CUDA context %d", p.Peak(), sum, CUDAContextBytes)
	}
}

// With checkpointing the layers keep only resid_in (256 bytes each, × 2)
// and one recompute set: 3232 − 256 = 2976; plus the one swiglu_out 512
// and the 416 after the last layer → 4416.
func TestPlanCheckpointingByHand(t *testing.T) {
	p, err := Plan(tiny(), Options{Method: LoRA, MicroBatch: 1, SeqLen: 8, LoRARank: 2, LogitsChunk: 4, Checkpointing: true})
	if err != nil {
		t.Fatal(err)
	}
	if got := p.ExactBytes(Activations); got != 4416 {
		t.Errorf("activations with checkpointing = %d, want 4416", got)
	}
	if b, ok := p.Find("acts.checkpoint.resid_in"); !ok || b.Repeat != 2 {
		t.Errorf("checkpoint buffer = %+v, %v; want resid_in repeated per layer", b, ok)
	}
}

// QLoRA: each projection becomes NF4 codes (n/2 bytes) and absmax.
// Per layer, n = q 256, k 128, v 128, o 256, gate 512, up 512, down 512;
// codes 1152 bytes; 64-weight blocks 4+2+2+4+8+8+8 = 36.
//
//	double quant: 36 u8 + 7 scales × 4 + 7 offsets × 4 = 92 → 1244 per
//	  layer, 2488 for two, + code books 16·4 + 256·4 = 1088 → 3576
//	plain:        36 fp32 = 144 → 1296 per layer, 2592, + 64 → 2656
//
// The rest stays bf16: embed, lm_head, final norm and 2 × 2 norms
// = 1024 + 1024 + 16 + 64 = 2128 × 2 = 4256. The dequantize buffer holds
// the largest projection, 512 bf16 = 1024.
func TestPlanQLoRAByHand(t *testing.T) {
	for _, tc := range []struct {
		double bool
		quant  int64
	}{{true, 3576}, {false, 2656}} {
		p, err := Plan(tiny(), Options{Method: QLoRA, SeqLen: 8, LoRARank: 2, DoubleQuant: tc.double})
		if err != nil {
			t.Fatal(err)
		}
		if got := p.ExactBytes(QuantizedWeights); got != tc.quant {
			t.Errorf("double=%v: quantized weights %d, want %d", tc.double, got, tc.quant)
		}
		if got := p.ExactBytes(Weights); got != 4256 {
			t.Errorf("double=%v: bf16 weights %d, want 4256", tc.double, got)
		}
		if got := p.ExactBytes(DequantWorkspace); got != 1024 {
			t.Errorf("double=%v: dequantize workspace %d, want 1024", tc.double, got)
		}
	}
}

// Full fine-tuning: all 6736 parameters train: fp32 master, gradient and
// two moments each.
func TestPlanFullByHand(t *testing.T) {
	p, err := Plan(tiny(), Options{Method: Full, SeqLen: 8})
	if err != nil {
		t.Fatal(err)
	}
	for c, want := range map[Category]int64{
		Weights: 13472, Masters: 26944, Gradients: 26944, OptimizerState: 53888 + 4096, Adapters: 0, ReferenceWeights: 0,
	} {
		if got := p.ExactBytes(c); got != want {
			t.Errorf("%v = %d, want %d", c, got, want)
		}
	}
	// The CPU reference backend computes in fp32: no separate masters,
	// no bf16 logits copy, no CUDA context or cuBLASLt workspace.
	cpu, err := Plan(tiny(), Options{Method: Full, SeqLen: 8, WeightDType: F32, Backend: BackendCPU})
	if err != nil {
		t.Fatal(err)
	}
	if cpu.ExactBytes(Weights) != 26944 || cpu.ExactBytes(Masters) != 0 || cpu.ExactBytes(GEMMWorkspace) != 0 || len(cpu.Overheads) != 0 {
		t.Errorf("fp32 CPU plan: weights %d masters %d gemm %d overheads %v", cpu.ExactBytes(Weights), cpu.ExactBytes(Masters), cpu.ExactBytes(GEMMWorkspace), cpu.Overheads)
	}
}

// train.master_weights: bf16 plans no fp32 masters: the peak drops by
// exactly the masters' arena, every other category stays.
func TestPlanBF16Masters(t *testing.T) {
	f32, err := Plan(tiny(), Options{Method: Full, SeqLen: 8})
	if err != nil {
		t.Fatal(err)
	}
	rc := &engine.RunConfig{Method: "full", Backend: "cuda"}
	rc.Train.MicroBatch, rc.Train.GradAccum, rc.Train.MasterWeights = 1, 1, "bf16"
	rc.Data.MaxLength = 8
	o, err := FromRunConfig(rc)
	if err != nil || !o.BF16Masters {
		t.Fatalf("FromRunConfig with master_weights bf16: %+v, %v", o, err)
	}
	b16, err := Plan(tiny(), o)
	if err != nil {
		t.Fatal(err)
	}
	if b16.ExactBytes(Masters) != 0 || f32.ExactBytes(Masters) != 26944 {
		t.Errorf("masters: %d with bf16 masters (want 0), %d with fp32 (want 26944)", b16.ExactBytes(Masters), f32.ExactBytes(Masters))
	}
	if d := f32.Peak() - b16.Peak(); d != f32.Bytes(Masters) {
		t.Errorf("peak falls by %d, want the masters' arena %d", d, f32.Bytes(Masters))
	}
	rc.Train.MasterWeights = "fp8"
	if _, err := FromRunConfig(rc); err == nil || !strings.Contains(err.Error(), "master_weights") {
		t.Errorf("master_weights fp8: err = %v", err)
	}
}

// DPO doubles the tokens (chosen and rejected); with full fine-tuning it
// caches the reference log-probs before training (nothing resident)
// unless a resident frozen copy is asked for; with LoRA nothing.
func TestPlanDPO(t *testing.T) {
	lora, err := Plan(tiny(), Options{Method: DPO, MicroBatch: 1, SeqLen: 8, LoRARank: 2, LogitsChunk: 4})
	if err != nil {
		t.Fatal(err)
	}
	sft, err := Plan(tiny(), Options{Method: LoRA, MicroBatch: 2, SeqLen: 8, LoRARank: 2, LogitsChunk: 4})
	if err != nil {
		t.Fatal(err)
	}
	if lora.Tokens != 16 || lora.ExactBytes(ReferenceWeights) != 0 {
		t.Errorf("LoRA DPO: tokens %d reference %d, want 16 and 0", lora.Tokens, lora.ExactBytes(ReferenceWeights))
	}
	// One pair of 8-token sequences costs what a batch of two costs, plus
	// the four per-pair log-prob sums (16 bytes).
	if got, want := lora.ExactBytes(Activations), sft.ExactBytes(Activations); got != want {
		t.Errorf("DPO activations %d, want those of a batch of 2: %d", got, want)
	}
	if got, want := lora.ExactBytes(Inputs), sft.ExactBytes(Inputs)+16; got != want {
		t.Errorf("DPO inputs %d, want %d", got, want)
	}
	full, err := Plan(tiny(), Options{Method: DPO, DPOBase: Full, SeqLen: 8})
	if err != nil {
		t.Fatal(err)
	}
	if got := full.ExactBytes(ReferenceWeights); got != 0 {
		t.Errorf("full DPO with cached reference log-probs: reference weights = %d, want 0", got)
	}
	resident, err := Plan(tiny(), Options{Method: DPO, DPOBase: Full, DPOResidentReference: true, SeqLen: 8})
	if err != nil {
		t.Fatal(err)
	}
	if got := resident.ExactBytes(ReferenceWeights); got != 13472 {
		t.Errorf("full DPO with a resident reference: %d bytes, want the 6736 parameters in bf16 = 13472", got)
	}
	if full.Trainable != 6736 {
		t.Errorf("full DPO trainable = %d, want 6736", full.Trainable)
	}
}

func TestLayoutMatchesPeak(t *testing.T) {
	p, err := Plan(tiny(), Options{Method: QLoRA, MicroBatch: 2, SeqLen: 8, DoubleQuant: true})
	if err != nil {
		t.Fatal(err)
	}
	var total int64
	for _, a := range p.Layout() {
		var end int64
		for _, s := range a.Slots {
			if s.Offset%Align != 0 {
				t.Errorf("%s at offset %d, not %d-aligned", s.Buffer.Name, s.Offset, Align)
			}
			if s.Offset < end {
				t.Errorf("%s at %d overlaps the previous buffer ending at %d", s.Buffer.Name, s.Offset, end)
			}
			end = s.Offset + s.Buffer.ArenaBytes()
		}
		if end != a.Size {
			t.Errorf("arena %v: slots end at %d, size %d", a.Category, end, a.Size)
		}
		total += a.Size
	}
	if total+CUDAContextBytes != p.Peak() {
		t.Errorf("layout total %d + context ≠ peak %d", total, p.Peak())
	}
	names := map[string]bool{}
	for _, b := range p.Buffers {
		if names[b.Name] {
			t.Errorf("buffer name %s used twice", b.Name)
		}
		names[b.Name] = true
	}
}

func TestOptionsErrors(t *testing.T) {
	for _, tc := range []struct {
		cfg  func(*engine.ModelConfig)
		opts Options
		want string
	}{
		{nil, Options{SeqLen: 0}, "sequence length"},
		{nil, Options{SeqLen: 8, Method: "ppo"}, "unknown method"},
		{nil, Options{SeqLen: 8, LoRATargets: []string{"q_proj", "lm_head"}}, `"lm_head"`},
		{nil, Options{SeqLen: 8, OptimizerBits: 8}, "8-bit"},
		{nil, Options{SeqLen: 8, Method: DPO, DPOBase: DPO}, "DPO base"},
		{func(c *engine.ModelConfig) { c.NumKVHeads = 3 }, Options{SeqLen: 8}, "num_key_value_heads"},
		{func(c *engine.ModelConfig) { c.HiddenSize = 0 }, Options{SeqLen: 8}, "hidden_size"},
		// The engine's own rules (engine.ModelConfig.Validate), not only
		// the sizes the formulas use: the fit check plans nothing the
		// engine would refuse.
		{func(c *engine.ModelConfig) { c.RopeTheta = 0 }, Options{SeqLen: 8}, "rope_theta"},
		{func(c *engine.ModelConfig) { c.BOSTokenID = 1000 }, Options{SeqLen: 8}, "bos_token_id"},
	} {
		c := tiny()
		if tc.cfg != nil {
			tc.cfg(c)
		}
		_, err := Plan(c, tc.opts)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Plan(%+v) error = %v, want one mentioning %s", tc.opts, err, tc.want)
		}
	}
	got, err := NormalizeTargets([]string{"self_attn.v_proj", "Q", "down_proj", "q"})
	if err != nil || strings.Join(got, ",") != "q,v,down" {
		t.Errorf("NormalizeTargets = %v, %v; want q,v,down", got, err)
	}
}

func TestFromRunConfig(t *testing.T) {
	rc := &engine.RunConfig{Method: "dpo", Backend: "auto"}
	rc.LoRA.Rank = 8
	rc.LoRA.TargetModules = []string{"q_proj", "v_proj"}
	rc.Train.MicroBatch, rc.Train.GradAccum, rc.Train.Checkpointing = 2, 4, true
	rc.Data.MaxLength = 1024
	o, err := FromRunConfig(rc)
	if err != nil {
		t.Fatal(err)
	}
	if o.Method != DPO || o.DPOBase != LoRA || o.LoRARank != 8 || strings.Join(o.LoRATargets, ",") != "q,v" ||
		o.MicroBatch != 2 || o.GradAccum != 4 || !o.Checkpointing || o.SeqLen != 1024 || o.Backend != BackendCUDA {
		t.Errorf("options = %+v", o)
	}
	rc.DPO.FullWeights = true
	rc.Backend = "cpu"
	if o, err = FromRunConfig(rc); err != nil || o.DPOBase != Full || o.WeightDType != F32 || o.Backend != BackendCPU {
		t.Errorf("full-policy CPU DPO: %+v, %v", o, err)
	}
	rc.Backend = "tpu"
	if _, err := FromRunConfig(rc); err == nil || !strings.Contains(err.Error(), "tpu") {
		t.Errorf("backend tpu: err = %v", err)
	}
	rc.Backend, rc.Data.MaxLength = "cuda", 0
	if _, err := FromRunConfig(rc); err == nil || !strings.Contains(err.Error(), "sequence length") {
		t.Errorf("no max length: err = %v", err)
	}
}

// TestPlanLoRAStackedScratch: with stacked adapters (the default;
// engine.LoRAFusedEnv=0 turns them off) the adapters' intermediate
// gradient holds the largest stacked group's ranks: 3r with q, k, v
// adapted, 2r with only gate and up among them, r with no group.
func TestPlanLoRAStackedScratch(t *testing.T) {
	scratch := func(targets []string) int64 {
		p, err := Plan(tiny(), Options{Method: LoRA, MicroBatch: 1, SeqLen: 8, LoRARank: 2, LogitsChunk: 4, LoRATargets: targets})
		if err != nil {
			t.Fatal(err)
		}
		for _, b := range p.Buffers {
			if b.Name == "grad.lora_xa" {
				return b.Bytes()
			}
		}
		t.Fatal("no grad.lora_xa buffer")
		return 0
	}
	t.Setenv(engine.LoRAFusedEnv, "0")
	plain := scratch(nil)
	for _, env := range []string{"", "1"} {
		t.Setenv(engine.LoRAFusedEnv, env)
		for _, c := range []struct {
			targets []string
			times   int64
		}{{nil, 3}, {[]string{"q", "v", "down"}, 2}, {[]string{"gate", "up", "o"}, 2}, {[]string{"q", "o", "up"}, 1}} {
			if got := scratch(c.targets); got != c.times*plain {
				t.Errorf("%s=%q, targets %v: %d bytes of scratch, want %d × %d", engine.LoRAFusedEnv, env, c.targets, got, c.times, plain)
			}
		}
	}
}
