package cuda_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"whet/datasets"
	"whet/engine"
	"whet/engine/cpu"
	"whet/engine/cuda"
	"whet/engine/safetensors"
)

// gpuFamilies are tiny random models of the 2025 families at shapes where
// each family's own feature matters on the GPU kernels: Qwen3's per-head
// q/k norm with a head_dim of its own and a window of 8 on the second
// layer; Gemma 3's (1 + w) sandwich norms, GELU-tanh MLP, scaled
// embeddings and query_pre_attn_scalar, with a window of 8 on two layers of
// three (their own rope base) and linear scaling on the global one; Gemma
// 2's attention and final-logit soft-caps, small enough to bend the
// numbers, at its real head dim 256 (the float32 attention kernels, or the
// head-dim-256 tensor-core ones, the default; WHET_ATTN_TC256=0 for the float32 ones) with a window on
// alternate layers; Phi-3's fused projections,
// partial rotary (16 of 32 dimensions) and LongRoPE with an original
// context of 16 that the 64-token batches pass. The other head dims (32)
// take the tensor-core attention kernels in bf16 too. Sequences run longer
// than every window.
var gpuFamilies = map[string]string{
	"qwen3": `{"architectures": ["Qwen3ForCausalLM"], "model_type": "qwen3", "vocab_size": 160,
		"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
		"num_key_value_heads": 2, "head_dim": 32, "rms_norm_eps": 1e-6, "rope_theta": 1000000,
		"rope_scaling": null, "sliding_window": 8, "use_sliding_window": true, "max_window_layers": 1,
		"max_position_embeddings": 128, "tie_word_embeddings": true, "attention_bias": false, "hidden_act": "silu"}`,
	"gemma3": `{"architectures": ["Gemma3ForCausalLM"], "model_type": "gemma3_text", "vocab_size": 160,
		"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 3, "num_attention_heads": 4,
		"num_key_value_heads": 2, "head_dim": 32, "query_pre_attn_scalar": 24, "rms_norm_eps": 1e-6,
		"rope_theta": 1000000.0, "rope_local_base_freq": 10000.0, "rope_scaling": {"factor": 8.0, "rope_type": "linear"},
		"sliding_window": 8, "sliding_window_pattern": 3, "attn_logit_softcapping": null, "final_logit_softcapping": null,
		"hidden_activation": "gelu_pytorch_tanh", "max_position_embeddings": 128, "tie_word_embeddings": true}`,
	"gemma2": `{"architectures": ["Gemma2ForCausalLM"], "model_type": "gemma2", "vocab_size": 160,
		"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 2,
		"num_key_value_heads": 1, "head_dim": 256, "query_pre_attn_scalar": 256, "rms_norm_eps": 1e-6,
		"rope_theta": 10000.0, "sliding_window": 8, "attn_logit_softcapping": 1.0, "final_logit_softcapping": 3.0,
		"hidden_act": "gelu_pytorch_tanh", "hidden_activation": "gelu_pytorch_tanh", "max_position_embeddings": 128,
		"tie_word_embeddings": true}`,
	"phi3": `{"architectures": ["Phi3ForCausalLM"], "model_type": "phi3", "vocab_size": 160,
		"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 2,
		"num_key_value_heads": 1, "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "partial_rotary_factor": 0.5,
		"max_position_embeddings": 128, "original_max_position_embeddings": 16,
		"rope_scaling": {"type": "longrope", "short_factor": [1.0, 1.1, 1.2, 1.3, 1.5, 1.8, 2.0, 2.5],
		"long_factor": [2.0, 2.5, 3.0, 3.5, 4.0, 5.0, 6.0, 8.0]},
		"sliding_window": 262144, "tie_word_embeddings": false, "hidden_act": "silu", "bos_token_id": 1, "eos_token_id": 2}`,
}

var gpuFamilyNames = []string{"qwen3", "gemma3", "gemma2", "phi3"}

// newGPU opens the CUDA backend, closed when the test ends; without a GPU
// the test skips, unless WHET_CUDA_REQUIRE=1 (the GPU machine's runs),
// where it fails.
func newGPU(t *testing.T, o cuda.Options) *cuda.Backend {
	t.Helper()
	b, err := cuda.New(o)
	if err != nil {
		if errors.Is(err, cuda.ErrNoGPU) && os.Getenv("WHET_CUDA_REQUIRE") != "1" {
			t.Skipf("no GPU: %v", err)
		}
		t.Fatalf("cuda.New: %v", err)
	}
	t.Cleanup(func() {
		if err := b.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return b
}

// gpuFamilyConfig reads one of gpuFamilies through the engine's loader.
func gpuFamilyConfig(t *testing.T, name string) engine.ModelConfig {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "config.json"), []byte(gpuFamilies[name]), 0o644); err != nil {
		t.Fatal(err)
	}
	c, err := engine.LoadModelConfig(dir)
	if err != nil {
		t.Fatal(err)
	}
	return *c
}

// newFamilyModel builds the model on b with the same weights whatever the
// backend: seeded random matrices, and norm weights near 1 (near 0 for
// the (1 + w) families, as trained Gemma checkpoints hold them).
func newFamilyModel(t *testing.T, cfg engine.ModelConfig, b engine.Backend, std float64) *engine.Model {
	t.Helper()
	m, err := engine.NewModel(cfg, b)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Free)
	if err := m.InitRandom(3, std); err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(9, 9))
	for _, p := range m.Params() {
		if len(p.Shape) != 1 {
			continue
		}
		v := make([]float32, p.Shape[0])
		for i := range v {
			v[i] = float32(rng.NormFloat64() * 0.2)
			if m.Family().NormOffset == 0 {
				v[i]++
			}
		}
		if err := b.Upload(p.W, v); err != nil {
			t.Fatal(err)
		}
	}
	return m
}

// patternBatches are micro-batches of 64 tokens, each packing sequences of
// 10 to 40 tokens that count up from a random start by a random stride
// (mod vocab), so the next token is learnable from the two before it. The
// first two targets of each sequence are masked like a prompt.
func patternBatches(vocab, n int) []*datasets.Batch {
	const T = 64
	rng := rand.New(rand.NewPCG(21, 4))
	var out []*datasets.Batch
	for range n {
		b := &datasets.Batch{SeqStarts: []int32{0}}
		for len(b.Tokens) < T {
			L := min(10+rng.IntN(31), T-len(b.Tokens))
			start, stride := rng.IntN(vocab), 1+rng.IntN(7)
			s0 := len(b.Tokens)
			for i := range L {
				b.Tokens = append(b.Tokens, int32((start+i*stride)%vocab))
				b.Positions = append(b.Positions, int32(i))
			}
			for i := range L {
				if i < 2 || i == L-1 {
					b.Targets = append(b.Targets, datasets.IgnoreIndex)
				} else {
					b.Targets = append(b.Targets, b.Tokens[s0+i+1])
				}
			}
			b.SeqStarts = append(b.SeqStarts, int32(len(b.Tokens)))
		}
		out = append(out, b)
	}
	return out
}

// trainFamily sets method up ("lora": rank 8 adapters with dropout;
// "full": every weight trainable) and trains as trainLoRA does.
func trainFamily(t *testing.T, m *engine.Model, method string, batches []*datasets.Batch, steps int, lr float64) []float64 {
	t.Helper()
	switch method {
	case "lora":
		if err := m.AddLoRA(engine.LoRAOptions{Rank: 8, Alpha: 16, Dropout: 0.05, Seed: 1}); err != nil {
			t.Fatal(err)
		}
	case "full":
		if err := m.MakeAllTrainable(); err != nil {
			t.Fatal(err)
		}
	default:
		t.Fatalf("method %q", method)
	}
	return trainLoRA(t, m, batches, steps, lr)
}

// TestFamilyTrainingMatchesCPU trains each family's tiny model for 50
// steps on the GPU (bf16 weights and activations, fp32 masters and
// moments) and on the CPU (float32 throughout) from the same weights and
// batches, and requires every step's loss within 1% of the CPU's: LoRA
// (with dropout, whose mask both backends draw from the same hash) on
// every family, full fine-tuning on Qwen3 and Gemma 2.
func TestFamilyTrainingMatchesCPU(t *testing.T) {
	gpu := newGPU(t, cuda.Options{})
	const steps = 50
	cases := []struct {
		family, method string
		lr             float64
	}{
		{"qwen3", "lora", 2e-3}, {"gemma3", "lora", 2e-3}, {"gemma2", "lora", 2e-3}, {"phi3", "lora", 2e-3},
		{"qwen3", "full", 3e-4}, {"gemma2", "full", 3e-4},
	}
	for _, c := range cases {
		t.Run(c.family+"_"+c.method, func(t *testing.T) {
			cfg := gpuFamilyConfig(t, c.family)
			batches := patternBatches(cfg.VocabSize, 4)
			want := trainFamily(t, newFamilyModel(t, cfg, cpu.New(), 0.15), c.method, batches, steps, c.lr)
			got := trainFamily(t, newFamilyModel(t, cfg, gpu, 0.15), c.method, batches, steps, c.lr)
			worst, at := 0.0, 0
			for i := range steps {
				d := math.Abs(got[i]-want[i]) / (0.01 * math.Abs(want[i]))
				if d > worst || math.IsNaN(got[i]) {
					worst, at = d, i
				}
			}
			t.Logf("loss cpu  %.4f -> %.4f", want[0], want[steps-1])
			t.Logf("loss cuda %.4f -> %.4f; largest difference %.2f of the 1%% bound, at step %d (cpu %.5f, cuda %.5f)",
				got[0], got[steps-1], worst, at+1, want[at], got[at])
			if !(want[steps-1] < want[0]) {
				t.Errorf("the CPU's loss did not fall (%.4f -> %.4f): the comparison would measure nothing", want[0], want[steps-1])
			}
			if worst > 1 || math.IsNaN(worst) {
				t.Errorf("GPU loss curve leaves 1%% of the CPU's at step %d\ncpu  %v\ncuda %v", at+1, want, got)
			}
		})
	}
}

// greedyFamily decodes n tokens greedily with the KV cache.
func greedyFamily(t *testing.T, m *engine.Model, prompt []int32, n int) []int32 {
	t.Helper()
	g, err := m.NewGenerator(len(prompt) + n)
	if err != nil {
		t.Fatal(err)
	}
	defer g.Free()
	out, err := g.Generate(context.Background(), prompt, engine.Greedy(n, nil), nil)
	if err != nil {
		t.Fatalf("%s: %v", m.B.Name(), err)
	}
	return out
}

// allLogits runs m over ids (one sequence, full forward) and returns the
// logits of every position, [len(ids), vocab].
func allLogits(t *testing.T, m *engine.Model, ids []int32) []float32 {
	t.Helper()
	b := &datasets.Batch{Tokens: ids, SeqStarts: []int32{0, int32(len(ids))}}
	for i := range ids {
		b.Targets = append(b.Targets, datasets.IgnoreIndex)
		b.Positions = append(b.Positions, int32(i))
	}
	a, err := m.NewActivations(len(ids), false)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Free()
	logits, err := a.Logits(b)
	if err != nil {
		t.Fatal(err)
	}
	return logits
}

// lastLogits is allLogits of the last position.
func lastLogits(t *testing.T, m *engine.Model, ids []int32) []float32 {
	t.Helper()
	return allLogits(t, m, ids)[(len(ids)-1)*m.Cfg.VocabSize:]
}

// bf16Ulp is the spacing of bf16 values at x's magnitude (8 significant
// bits).
func bf16Ulp(x float32) float64 {
	_, e := math.Frexp(math.Abs(float64(x)))
	return math.Ldexp(1, e-8)
}

// copyWeights gives dst (same config, any backend) the weights of src.
func copyWeights(t *testing.T, dst, src *engine.Model) {
	t.Helper()
	dp, sp := dst.Params(), src.Params()
	if len(dp) != len(sp) {
		t.Fatalf("%d parameters, the source has %d", len(dp), len(sp))
	}
	for i, p := range dp {
		if p.Name != sp[i].Name {
			t.Fatalf("parameter %d is %s, the source's %s", i, p.Name, sp[i].Name)
		}
		v, err := src.WeightValues(sp[i])
		if err != nil {
			t.Fatal(err)
		}
		if err := dst.B.Upload(p.W, v); err != nil {
			t.Fatal(err)
		}
	}
}

// TestFamilyGenerateMatchesCPU: greedy decoding with the KV cache (a
// prompt prefill, then one token at a time past every window) gives the
// CPU's tokens exactly on the GPU in float32. In bf16 the tokens may part
// only where the CPU's logit of the GPU's token is within a few bf16
// rounding steps of the CPU's best, or within the measured difference of
// the two backends' logits there, which must itself stay at bf16's
// accuracy for that model (DESIGN.md: a near tie, never a fixed count);
// after that the texts are different and no longer compared. The bf16
// logits at every position of the prompt and the CPU's text are held to
// the same accuracy (comparePositions).
//
// Two kinds of model per family: gpuFamilies' shapes, first fully
// fine-tuned on the CPU for 200 steps on patternBatches so that they
// continue a counting prompt with varied tokens (a random Gemma only
// repeats its last token: its embeddings, scaled by sqrt(hidden), swamp
// the blocks' output and meet themselves in the tied head); and the
// reference models transformers built (testdata/tiny-*), as loaded from
// their folders.
func TestFamilyGenerateMatchesCPU(t *testing.T) {
	f32 := newGPU(t, cuda.Options{ComputeF32: true})
	bf16 := newGPU(t, cuda.Options{})
	for _, name := range gpuFamilyNames {
		t.Run(name, func(t *testing.T) {
			cfg := gpuFamilyConfig(t, name)
			if rs := cfg.RopeScaling; rs != nil && rs.Type == "longrope" {
				// The full forward that judges a near tie uses one set of
				// LongRoPE factors for every position, which the cache
				// matches only below the original context.
				rs.OriginalMaxPositionEmbeddings = cfg.MaxPositions
			}
			ref := newFamilyModel(t, cfg, cpu.New(), 0.15)
			trainFamily(t, ref, "full", patternBatches(cfg.VocabSize, 4), 200, 3e-3)
			gpuModel := func(b engine.Backend) *engine.Model {
				m := newFamilyModel(t, cfg, b, 0.15)
				copyWeights(t, m, ref)
				return m
			}
			bf16Model, prompt := gpuModel(bf16), []int32{5, 8, 11, 14, 17, 20, 23, 26}
			want := compareGreedy(t, ref, gpuModel(f32), bf16Model, prompt, 40)
			comparePositions(t, ref, bf16Model, append(prompt, want...))
			if dir := os.Getenv("WHET_FAMILY_DUMP"); dir != "" {
				dumpFamily(t, filepath.Join(dir, name), name, ref, bf16Model, append(prompt, want...))
			}
		})
	}
	for _, name := range []string{"tiny-qwen3", "tiny-gemma3", "tiny-gemma2", "tiny-phi3"} {
		t.Run(name, func(t *testing.T) {
			load := func(b engine.Backend) *engine.Model {
				m, err := engine.LoadModel(filepath.Join("..", "..", "testdata", name), b)
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(m.Free)
				return m
			}
			// 48 positions stay below tiny-phi3's original context (64).
			ref, bf16Model, prompt := load(cpu.New()), load(bf16), []int32{5, 77, 310, 12, 499, 3, 250, 18}
			want := compareGreedy(t, ref, load(f32), bf16Model, prompt, 40)
			comparePositions(t, ref, bf16Model, append(prompt, want...))
		})
	}
}

// compareGreedy decodes n tokens after prompt with each model and holds
// the GPU's float32 model to the CPU's tokens exactly and its bf16 model
// to them up to a near tie (see TestFamilyGenerateMatchesCPU).
//
// bf16's accuracy is the model's own: what rounding to bf16 costs a model
// depends on how its weights amplify small changes (the phi3 model of
// gpuFamilies, after its 200 CPU steps, loses 3% of its largest logit
// after 12 tokens to its weights' storage in bf16 alone, with float32
// arithmetic, where qwen3's loses 1%; layer 0's input, the embeddings and
// the attention norm, carries most of it). So the bound is measured on the
// CPU: engine/cpu holding the same weights in bf16 with every activation
// rounded where this backend rounds it and attention's P rounded as the
// tensor-core kernels round it (pRoundCPU) differs from the float32 CPU by
// emu; the GPU may differ by 3% of the largest logit or by twice emu,
// whichever is more. The factor 2 leaves room for what emu does not model,
// the GPU kernels' own orders of summation: in the H100 run of 2026-12-07
// (the fixed-3% rule; emu computed afterwards on the CPU for the same
// models) the GPU differed by 1.0 to 1.4 times emu at the measured points
// (phi3 after 12 tokens 0.2407 against emu's 0.2008 on a largest logit of
// 5.374; qwen3, gemma3, gemma2 after 47 tokens 0.0768/0.0656,
// 0.0383/0.0383, 0.0145/0.0107). Not yet run on a GPU in this form.
func compareGreedy(t *testing.T, ref, f32Model, bf16Model *engine.Model, prompt []int32, n int) (want []int32) {
	t.Helper()
	want = greedyFamily(t, ref, prompt, n)
	t.Logf("cpu: %v", want)
	if got := greedyFamily(t, f32Model, prompt, n); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("float32: GPU and CPU greedy tokens differ at %d\n cpu %v\n gpu %v", commonPrefix(got, want), want, got)
	}
	got := greedyFamily(t, bf16Model, prompt, n)
	same := commonPrefix(got, want)
	t.Logf("bf16: %d of %d tokens equal the CPU's", same, n)
	emuModel := cloneModel(t, ref, pRoundCPU{bf16CPU{cpu.New()}})
	if emuGot := greedyFamily(t, emuModel, prompt, n); fmt.Sprint(emuGot) == fmt.Sprint(got) {
		t.Logf("bf16: the CPU's model of the GPU's rounding gives the GPU's %d tokens", n)
	} else {
		t.Logf("bf16: the CPU's model of the GPU's rounding gives %d of %d of the CPU's tokens and parts from the GPU's at %d\n emu %v\n gpu %v",
			commonPrefix(emuGot, want), n, commonPrefix(emuGot, got), emuGot, got)
	}
	// The whole logit vector of the GPU's bf16 model over the prefix both
	// texts share (all of it when they agree) against the CPU's.
	ids := append(append([]int32{}, prompt...), want[:min(same, n-1)]...)
	cpuL, gpuL := lastLogits(t, ref, ids), lastLogits(t, bf16Model, ids)
	emuL := lastLogits(t, emuModel, ids)
	weightsL := lastLogits(t, bf16WeightsModel(t, ref), ids)
	actsL := lastLogits(t, cloneModel(t, ref, bf16CPU{cpu.New()}), ids)
	worst, emu := maxAbsDiff(gpuL, cpuL), maxAbsDiff(emuL, cpuL)
	var scale float64
	for _, x := range cpuL {
		scale = max(scale, math.Abs(float64(x)))
	}
	t.Logf("bf16: logits after %d tokens differ from the CPU's by at most %.4f (largest logit %.3f, %.2f%%)", len(ids), worst, scale, 100*worst/scale)
	t.Logf("bf16: on the CPU, weights in bf16 alone: %.4f; weights and activations: %.4f; and attention's P (emu): %.4f (%.2f%%); GPU against emu: %.4f",
		maxAbsDiff(weightsL, cpuL), maxAbsDiff(actsL, cpuL), emu, 100*emu/scale, maxAbsDiff(gpuL, emuL))
	if bound := max(0.03*scale, 2*emu); worst > bound {
		t.Errorf("bf16: the GPU's logits after %d tokens differ from the CPU's by %.4g, more than %.4g (3%% of %.4g, or twice the %.4g that bf16 rounding costs this model on the CPU)",
			len(ids), worst, bound, scale, emu)
	}
	if len(got) != len(want) {
		t.Errorf("bf16: %d tokens, the CPU gave %d", len(got), len(want))
		return want
	}
	if same == n {
		return want
	}
	// Where the texts part, the CPU's margin for its token over the GPU's
	// must be within that measured error (or 4 bf16 steps): a near tie.
	top, alt := cpuL[want[same]], cpuL[got[same]]
	gap := float64(top - alt)
	t.Logf("bf16: parts at token %d: cpu logits %.5f (its token %d) and %.5f (the GPU's %d), gap %.4f", same, top, want[same], alt, got[same], gap)
	if gap > max(2*worst, 4*bf16Ulp(top)) {
		t.Errorf("bf16: the GPU's token %d at %d is %.4g below the CPU's best, more than its logits' error allows\n cpu %v\n gpu %v",
			got[same], same, gap, want, got)
	}
	return want
}

// comparePositions holds the bf16 model's logits at every position of ids
// (the prompt and the CPU's greedy text, one full forward) to the CPU's by
// compareGreedy's rule, each position against its own scale and its own
// measured rounding cost (emu), and logs how the differences spread.
func comparePositions(t *testing.T, ref, bf16Model *engine.Model, ids []int32) {
	t.Helper()
	V := ref.Cfg.VocabSize
	cpuL, gpuL := allLogits(t, ref, ids), allLogits(t, bf16Model, ids)
	emuL := allLogits(t, cloneModel(t, ref, pRoundCPU{bf16CPU{cpu.New()}}), ids)
	var gpuRel, emuRel, ratio []float64
	for p := range ids {
		c, g, e := cpuL[p*V:(p+1)*V], gpuL[p*V:(p+1)*V], emuL[p*V:(p+1)*V]
		var scale float64
		for _, x := range c {
			scale = max(scale, math.Abs(float64(x)))
		}
		worst, emu := maxAbsDiff(g, c), maxAbsDiff(e, c)
		gpuRel, emuRel, ratio = append(gpuRel, 100*worst/scale), append(emuRel, 100*emu/scale), append(ratio, worst/emu)
		if bound := max(0.03*scale, 2*emu); worst > bound || math.IsNaN(worst) {
			t.Errorf("bf16: logits at position %d differ from the CPU's by %.4g, more than %.4g (3%% of %.4g, or twice emu's %.4g)", p, worst, bound, scale, emu)
		}
	}
	t.Logf("bf16 at all %d positions, %% of each position's largest logit: GPU %s; emu %s; GPU/emu %s", len(ids), spread(gpuRel), spread(emuRel), spread(ratio))
}

// spread describes values by their median, 90th percentile and largest.
func spread(v []float64) string {
	s := append([]float64(nil), v...)
	slices.Sort(s)
	return fmt.Sprintf("median %.2f, p90 %.2f, max %.2f", s[len(s)/2], s[len(s)*9/10], s[len(s)-1])
}

// dumpFamily writes the CPU-trained model of gpuFamilies[name] as a
// transformers folder (float32 weights; LongRoPE's original context and
// attention factor as the test sets them) with whet.json: the ids and the
// logits of every position from the float32 CPU, its bf16 model (emu) and
// the GPU's bf16 model, for a transformers run of the same model in bf16
// (WHET_FAMILY_DUMP on the GPU machine).
func dumpFamily(t *testing.T, dir, name string, ref, bf16Model *engine.Model, ids []int32) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	var cfg map[string]any
	if err := json.Unmarshal([]byte(gpuFamilies[name]), &cfg); err != nil {
		t.Fatal(err)
	}
	if rs := ref.Cfg.RopeScaling; rs != nil && rs.Type == "longrope" {
		cfg["original_max_position_embeddings"] = rs.OriginalMaxPositionEmbeddings
		cfg["rope_scaling"].(map[string]any)["attention_factor"] = rs.AttentionFactor
	}
	raw, err := json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "config.json"), raw, 0o644); err != nil {
		t.Fatal(err)
	}
	var ts []safetensors.Tensor
	for _, p := range ref.Params() {
		v, err := ref.WeightValues(p)
		if err != nil {
			t.Fatal(err)
		}
		ts = append(ts, safetensors.F32Tensor(p.Name, p.Shape, v))
	}
	if err := safetensors.Write(filepath.Join(dir, "model.safetensors"), ts, map[string]string{"format": "pt"}); err != nil {
		t.Fatal(err)
	}
	out := map[string]any{
		"ids": ids, "cpu": allLogits(t, ref, ids), "gpu_bf16": allLogits(t, bf16Model, ids),
		"emu": allLogits(t, cloneModel(t, ref, pRoundCPU{bf16CPU{cpu.New()}}), ids),
	}
	if raw, err = json.Marshal(out); err == nil {
		err = os.WriteFile(filepath.Join(dir, "whet.json"), raw, 0o644)
	}
	if err != nil {
		t.Fatal(err)
	}
}
