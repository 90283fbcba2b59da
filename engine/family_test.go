package engine_test

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"whet/datasets"
	"whet/engine"
	"whet/engine/cpu"
	"whet/engine/safetensors"
)

// tinyFamilies are tiny config.json files of the 2025 families, written as
// their published files are, each with the feature its family adds made to
// matter: q/k norm, a head_dim of its own and a window on the layers from
// max_window_layers on (Qwen3), (1 + w) norms,
// sandwich norms, GELU-tanh, a window shorter than the batch's sequences
// on some layers with their own rope base, linear scaling on the others
// and query_pre_attn_scalar (Gemma 3), soft-caps small enough to bend the
// numbers (Gemma 2), fused projections, partial rotary and LongRoPE whose
// long factors the 7-token sequence reaches (Phi-3).
var tinyFamilies = map[string]string{
	"qwen3": `{"architectures": ["Qwen3ForCausalLM"], "model_type": "qwen3", "vocab_size": 37,
		"hidden_size": 16, "intermediate_size": 24, "num_hidden_layers": 2, "num_attention_heads": 4,
		"num_key_value_heads": 2, "head_dim": 6, "rms_norm_eps": 1e-6, "rope_theta": 1000000,
		"rope_scaling": null, "sliding_window": 3, "use_sliding_window": true, "max_window_layers": 1, "max_position_embeddings": 64,
		"tie_word_embeddings": true, "attention_bias": false, "hidden_act": "silu"}`,
	"gemma3": `{"architectures": ["Gemma3ForCausalLM"], "model_type": "gemma3_text", "vocab_size": 37,
		"hidden_size": 12, "intermediate_size": 20, "num_hidden_layers": 3, "num_attention_heads": 2,
		"num_key_value_heads": 1, "head_dim": 8, "query_pre_attn_scalar": 6, "rms_norm_eps": 1e-6,
		"rope_theta": 1000000.0, "rope_local_base_freq": 10000.0, "rope_scaling": {"factor": 8.0, "rope_type": "linear"},
		"sliding_window": 3, "sliding_window_pattern": 3, "attn_logit_softcapping": null, "final_logit_softcapping": null,
		"hidden_activation": "gelu_pytorch_tanh", "max_position_embeddings": 64, "tie_word_embeddings": true}`,
	"gemma2": `{"architectures": ["Gemma2ForCausalLM"], "model_type": "gemma2", "vocab_size": 37,
		"hidden_size": 16, "intermediate_size": 24, "num_hidden_layers": 2, "num_attention_heads": 4,
		"num_key_value_heads": 2, "head_dim": 4, "query_pre_attn_scalar": 4, "rms_norm_eps": 1e-6,
		"rope_theta": 10000.0, "sliding_window": 3, "attn_logit_softcapping": 1.0, "final_logit_softcapping": 2.0,
		"hidden_act": "gelu_pytorch_tanh", "hidden_activation": "gelu_pytorch_tanh", "max_position_embeddings": 64,
		"tie_word_embeddings": true}`,
	"phi3": `{"architectures": ["Phi3ForCausalLM"], "model_type": "phi3", "vocab_size": 37,
		"hidden_size": 16, "intermediate_size": 24, "num_hidden_layers": 2, "num_attention_heads": 2,
		"num_key_value_heads": 1, "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "partial_rotary_factor": 0.5,
		"max_position_embeddings": 64, "original_max_position_embeddings": 4,
		"rope_scaling": {"type": "longrope", "short_factor": [1.0, 1.5], "long_factor": [2.0, 6.0]},
		"sliding_window": 262144, "tie_word_embeddings": false, "hidden_act": "silu", "bos_token_id": 1, "eos_token_id": 2}`,
}

func tinyFamilyConfig(t *testing.T, name string) *engine.ModelConfig {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "config.json"), []byte(tinyFamilies[name]), 0o644); err != nil {
		t.Fatal(err)
	}
	c, err := engine.LoadModelConfig(dir)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// newTinyNamed is the tiny model a test runs per family name: "llama" the
// plain tiny Llama (newTiny with bias as given, untied), any other name
// that family's tiny model (newTinyFamily).
func newTinyNamed(t *testing.T, name string, llamaBias bool) *engine.Model {
	t.Helper()
	if name == "llama" {
		return newTiny(t, llamaBias, false)
	}
	return newTinyFamily(t, name)
}

func newTinyFamily(t *testing.T, name string) *engine.Model {
	t.Helper()
	return newTinyFamilyWith(t, name, func(*engine.ModelConfig) {})
}

func newTinyFamilyWith(t *testing.T, name string, edit func(*engine.ModelConfig)) *engine.Model {
	t.Helper()
	c := tinyFamilyConfig(t, name)
	edit(c)
	// Gemma's norms scale by (1 + w): draws around 0 there, around 1 elsewhere.
	offset := float32(0)
	if engine.FamilyOf(c.ModelType).NormOffset == 0 {
		offset = 1
	}
	return newRandomModel(t, *c, func(v []float32, rng *rand.Rand) {
		for i := range v {
			v[i] = float32(rng.NormFloat64()*0.3) + offset
		}
	})
}

// TestFamilyConfigs reads each family's published fields into the numbers
// the decoder uses.
func TestFamilyConfigs(t *testing.T) {
	q := tinyFamilyConfig(t, "qwen3")
	if q.HeadDim != 6 || q.QDim() != 24 || !q.TieWordEmbeddings || q.AttentionBias || q.LayerWindow(0) != 0 || q.LayerWindow(1) != 3 {
		t.Errorf("qwen3: %+v", q)
	}
	g3 := tinyFamilyConfig(t, "gemma3")
	if want := []string{"sliding_attention", "sliding_attention", "full_attention"}; !slices.Equal(g3.LayerTypes, want) {
		t.Errorf("gemma3 layer types %v, want %v", g3.LayerTypes, want)
	}
	if g3.LayerWindow(0) != 3 || g3.LayerWindow(2) != 0 || !g3.LayerLocalRope(1) || g3.LayerLocalRope(2) {
		t.Errorf("gemma3 windows %d %d, local rope %v %v", g3.LayerWindow(0), g3.LayerWindow(2), g3.LayerLocalRope(1), g3.LayerLocalRope(2))
	}
	if math.Abs(g3.AttnScale()-1/math.Sqrt(6)) > 1e-12 || g3.RopeScaling.Type != "linear" || g3.RopeScaling.Factor != 8 {
		t.Errorf("gemma3 scale %v, rope scaling %+v", g3.AttnScale(), g3.RopeScaling)
	}
	local, _ := engine.RopeInvFreqOf(g3, engine.RopeKind{Local: true})
	global, _ := engine.RopeInvFreqOf(g3, engine.RopeKind{})
	if math.Abs(local[1]-math.Pow(10000, -2.0/8)) > 1e-15 || math.Abs(global[1]-math.Pow(1e6, -2.0/8)/8) > 1e-15 {
		t.Errorf("gemma3 inv freq local %v global %v", local, global)
	}
	g2 := tinyFamilyConfig(t, "gemma2")
	if g2.AttnSoftCap != 1 || g2.FinalSoftCap != 2 || !slices.Equal(g2.LayerTypes, []string{"sliding_attention", "full_attention"}) {
		t.Errorf("gemma2: caps %v %v, layer types %v", g2.AttnSoftCap, g2.FinalSoftCap, g2.LayerTypes)
	}
	p := tinyFamilyConfig(t, "phi3")
	rs := p.RopeScaling
	// factor 64/4 = 16: sqrt(1 + ln 16 / ln 4) = sqrt(3).
	if p.RotaryDim() != 4 || rs.Type != "longrope" || math.Abs(rs.AttentionFactor-math.Sqrt(3)) > 1e-12 || rs.OriginalMaxPositionEmbeddings != 4 {
		t.Errorf("phi3: rotary %d, rope %+v", p.RotaryDim(), rs)
	}
	short, sc := engine.RopeInvFreqOf(p, engine.RopeKind{})
	long, _ := engine.RopeInvFreqOf(p, engine.RopeKind{Long: true})
	if short[1] != math.Pow(10000, -0.5)/1.5 || long[1] != math.Pow(10000, -0.5)/6 || sc != rs.AttentionFactor {
		t.Errorf("phi3 inv freq short %v long %v, scale %v", short, long, sc)
	}
	if p.SlidingWindow != 262144 || p.TieWordEmbeddings {
		t.Errorf("phi3 window %d tied %v", p.SlidingWindow, p.TieWordEmbeddings)
	}
}

// TestFamilyLayouts: each family's tensors carry transformers' names and
// shapes, and LoRA's "all" means the family's own linears.
func TestFamilyLayouts(t *testing.T) {
	for name, want := range map[string][]string{
		"qwen3":  {"model.layers.0.self_attn.q_norm.weight [6]", "model.layers.1.self_attn.k_proj.weight [12 16]"},
		"gemma3": {"model.layers.2.pre_feedforward_layernorm.weight [12]", "model.layers.0.post_feedforward_layernorm.weight [12]", "model.layers.0.self_attn.k_norm.weight [8]"},
		"gemma2": {"model.layers.1.post_attention_layernorm.weight [16]"},
		"phi3":   {"model.layers.0.self_attn.qkv_proj.weight [32 16]", "model.layers.1.mlp.gate_up_proj.weight [48 16]", "lm_head.weight [37 16]"},
	} {
		m := newTinyFamily(t, name)
		var got []string
		for _, p := range m.Params() {
			got = append(got, fmt.Sprintf("%s %v", p.Name, p.Shape))
		}
		for _, w := range want {
			if !slices.Contains(got, w) {
				t.Errorf("%s lacks %s: %v", name, w, got)
			}
		}
		if err := m.AddLoRA(engine.LoRAOptions{Rank: 2, Alpha: 4, Targets: []string{"all-linear"}}); err != nil {
			t.Fatal(err)
		}
		if n, want := len(m.TrainableParams()), 2*len(m.Family().LoRATargets())*len(m.Layers); n != want {
			t.Errorf("%s: %d adapter tensors, want %d", name, n, want)
		}
	}
	phi := newTinyFamily(t, "phi3")
	if err := phi.AddLoRA(engine.LoRAOptions{Rank: 2, Alpha: 4, Targets: []string{"q_proj"}}); err == nil || !strings.Contains(err.Error(), "qkv_proj") {
		t.Errorf("q_proj on phi3: %v", err)
	}
	if err := phi.AddLoRA(engine.LoRAOptions{Rank: 2, Alpha: 4, Targets: []string{"qkv_proj", "gate_up_proj"}}); err != nil {
		t.Errorf("qkv_proj, gate_up_proj on phi3: %v", err)
	}
}

// TestFamilyFiniteDiff checks each family's whole backward, full and LoRA
// (with a non-zero B, so the fused projections' adapter parts all carry
// gradient), with and without checkpointing, against central differences.
func TestFamilyFiniteDiff(t *testing.T) {
	for _, name := range []string{"qwen3", "gemma3", "gemma2", "phi3"} {
		for _, mode := range []string{"full", "full-checkpointing", "lora"} {
			t.Run(name+"/"+mode, func(t *testing.T) {
				m := newTinyFamily(t, name)
				if mode == "lora" {
					if err := m.AddLoRA(engine.LoRAOptions{Rank: 2, Alpha: 4, Seed: 4}); err != nil {
						t.Fatal(err)
					}
					rng := rand.New(rand.NewPCG(6, 6))
					randomLoRAB(t, m, rng)
				} else if err := m.MakeAllTrainable(); err != nil {
					t.Fatal(err)
				}
				checkWholeModelFD(t, m, mode == "full-checkpointing")
			})
		}
	}
}

// TestFamilyGenerateMatchesForward: greedy decoding with the KV cache (one
// token at a time, per-layer windows, soft-caps, LongRoPE's switch past the
// original context) picks the argmax of a full forward over the same text.
func TestFamilyGenerateMatchesForward(t *testing.T) {
	for _, name := range []string{"qwen3", "gemma3", "gemma2", "phi3"} {
		t.Run(name, func(t *testing.T) {
			// transformers keeps the short-factor keys of the cache when a
			// LongRoPE model crosses its original context, so a full
			// forward only agrees below it.
			m := newTinyFamilyWith(t, name, func(c *engine.ModelConfig) {
				if rs := c.RopeScaling; rs != nil && rs.Type == "longrope" {
					rs.OriginalMaxPositionEmbeddings = 16
				}
			})
			prompt := []int32{3, 1, 4}
			g, err := m.NewGenerator(12)
			if err != nil {
				t.Fatal(err)
			}
			got, err := g.Generate(context.Background(), prompt, engine.Greedy(6, nil), nil)
			if err != nil {
				t.Fatal(err)
			}
			if want := greedyNoCache(t, m, prompt, len(got)); !slices.Equal(got, want) {
				t.Errorf("cached greedy %v, full forward %v", got, want)
			}
		})
	}
}

// tinyBatchOf is ids as one sequence with no targets, for logits.
func tinyBatchOf(ids []int32) *datasets.Batch {
	b := &datasets.Batch{Tokens: ids, SeqStarts: []int32{0, int32(len(ids))}}
	for i := range ids {
		b.Targets = append(b.Targets, datasets.IgnoreIndex)
		b.Positions = append(b.Positions, int32(i))
	}
	return b
}

// TestGemma3MultimodalCheckpoint: the text part of a Gemma 3 4B-style
// checkpoint (settings in text_config, tensors under
// model.language_model. beside a vision tower) loads as the same decoder
// as a Gemma3ForCausalLM folder holding the same weights.
func TestGemma3MultimodalCheckpoint(t *testing.T) {
	m := newTinyFamily(t, "gemma3")
	write := func(config string, rename func(string) string, extra bool) string {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, "config.json"), []byte(config), 0o644); err != nil {
			t.Fatal(err)
		}
		var ts []safetensors.Tensor
		for _, p := range m.Params() {
			v, err := m.WeightValues(p)
			if err != nil {
				t.Fatal(err)
			}
			ts = append(ts, safetensors.F32Tensor(rename(p.Name), p.Shape, v))
		}
		if extra {
			ts = append(ts, safetensors.F32Tensor("model.vision_tower.vision_model.post_layernorm.weight", []int{4}, make([]float32, 4)))
		}
		if err := safetensors.Write(filepath.Join(dir, "model.safetensors"), ts, map[string]string{"format": "pt"}); err != nil {
			t.Fatal(err)
		}
		return dir
	}
	textDir := write(tinyFamilies["gemma3"], func(s string) string { return s }, false)
	multi := `{"architectures": ["Gemma3ForConditionalGeneration"], "model_type": "gemma3", "bos_token_id": 2, "eos_token_id": [1, 3],
		"text_config": ` + strings.Replace(tinyFamilies["gemma3"], `"vocab_size": 37,`, `"vocab_size": 37, "bos_token_id": 2, "eos_token_id": 1,`, 1) + `}`
	multiDir := write(multi, func(s string) string { return "model.language_model." + strings.TrimPrefix(s, "model.") }, true)
	b := tinyBatch(m.Cfg.VocabSize, 4)
	var logits [][]float32
	for _, dir := range []string{textDir, multiDir} {
		lm, err := engine.LoadModel(dir, cpu.New())
		if err != nil {
			t.Fatal(err)
		}
		a, err := lm.NewActivations(len(b.Tokens), false)
		if err != nil {
			t.Fatal(err)
		}
		l, err := a.Logits(b)
		if err != nil {
			t.Fatal(err)
		}
		logits = append(logits, l)
	}
	if !slices.Equal(logits[0], logits[1]) {
		t.Fatal("the multimodal checkpoint's text model computes other logits than the text-only folder")
	}
	// Without text_config the file is refused by name.
	bad := t.TempDir()
	os.WriteFile(filepath.Join(bad, "config.json"), []byte(`{"model_type": "gemma3", "architectures": ["Gemma3ForConditionalGeneration"]}`), 0o644)
	if _, err := engine.LoadModelConfig(bad); err == nil || !strings.Contains(err.Error(), "text_config") {
		t.Errorf("gemma3 without text_config: %v", err)
	}
}

// TestPhi3AdapterRoundTrip: a Phi-3 LoRA saves with PEFT's fused module
// names and loads back into the same adapters.
func TestPhi3AdapterRoundTrip(t *testing.T) {
	m := newTinyFamily(t, "phi3")
	opts := engine.LoRAOptions{Rank: 2, Alpha: 4, Seed: 3}
	if err := m.AddLoRA(opts); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := engine.SaveAdapter(dir, m, opts, "tiny-phi3"); err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(filepath.Join(dir, "adapter_config.json"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"qkv_proj"`, `"gate_up_proj"`, `"o_proj"`, `"down_proj"`} {
		if !strings.Contains(string(raw), want) {
			t.Errorf("adapter_config.json lacks %s: %s", want, raw)
		}
	}
	m2 := newTinyFamily(t, "phi3")
	if _, err := engine.LoadAdapter(dir, m2); err != nil {
		t.Fatal(err)
	}
	if len(m2.TrainableParams()) != len(m.TrainableParams()) {
		t.Fatalf("loaded %d adapter tensors, saved %d", len(m2.TrainableParams()), len(m.TrainableParams()))
	}
	for i, p := range m.TrainableParams() {
		a, _ := m.WeightValues(p)
		b, _ := m2.WeightValues(m2.TrainableParams()[i])
		if !slices.Equal(a, b) {
			t.Errorf("%s differs after the round trip", p.Name)
		}
	}
}
