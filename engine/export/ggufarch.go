package export

import (
	"fmt"
	"math"
	"strings"

	"whet/engine"
)

// ggufArch is how llama.cpp lays out one of whet's families: its
// architecture name, the tensor names of a block (derived from the
// family's own module names, engine.Family.Names), the metadata it reads
// and what it computes differently from transformers (check refuses those
// models rather than writing a file that answers otherwise). The rules
// were read from llama.cpp's convert_hf_to_gguf.py (conversion/*.py) and
// src/models/<arch>.cpp at the release node-llama-cpp bundles; the export
// tests run every architecture there.
type ggufArch struct {
	Name string
	// PermuteQK reorders q/k rows to GGML's interleaved rope (llama only;
	// the other architectures use NEOX-style rope, as transformers does).
	PermuteQK bool
	// check refuses a config llama.cpp would not compute as whet does.
	check func(c *engine.ModelConfig) error
	// kv writes the architecture's own keys (a prefixes the arch name).
	kv func(c *engine.ModelConfig, a func(string, any))
	// RopeFactors adds Phi-3's LongRoPE rope_factors_long/short tensors.
	RopeFactors bool
}

// ggufArchs maps config.json model_type to llama.cpp's architecture.
var ggufArchs = map[string]*ggufArch{
	"llama":   llamaGGUF,
	"mistral": llamaGGUF, // Mistral runs as llama
	"qwen2":   {Name: "qwen2", check: noWindows("qwen2")},
	"qwen3":   {Name: "qwen3", check: noWindows("qwen3")},
	"gemma2":  {Name: "gemma2", check: checkGemma2, kv: gemmaKV},
	// Gemma 3's text model, alone or inside Gemma3ForConditionalGeneration
	// (llama.cpp converts the text part of both to gemma3).
	"gemma3_text": gemma3GGUF,
	"gemma3":      gemma3GGUF,
	"phi3":        {Name: "phi3", check: checkPhi3, kv: phi3KV, RopeFactors: true},
}

var llamaGGUF = &ggufArch{Name: "llama", PermuteQK: true}

var gemma3GGUF = &ggufArch{Name: "gemma3", check: checkGemma3, kv: gemmaKV}

// ggufArchOf returns llama.cpp's layout for a model_type.
func ggufArchOf(modelType string) (*ggufArch, error) {
	if a, ok := ggufArchs[modelType]; ok {
		return a, nil
	}
	var names []string
	for _, t := range engine.SupportedModelTypes() {
		if _, ok := ggufArchs[t]; ok {
			names = append(names, t)
		}
	}
	return nil, fmt.Errorf("export: GGUF for model_type %q is not supported (%s)", modelType, strings.Join(names, ", "))
}

// ggufArchName is llama.cpp's architecture name for an HF model_type.
func ggufArchName(modelType string) (string, error) {
	a, err := ggufArchOf(modelType)
	if err != nil {
		return "", err
	}
	return a.Name, nil
}

// noWindows refuses sliding-window layers for an architecture whose
// llama.cpp graph attends over the whole context.
func noWindows(arch string) func(c *engine.ModelConfig) error {
	return func(c *engine.ModelConfig) error {
		for l := 0; l < c.NumLayers; l++ {
			if c.LayerWindow(l) > 0 {
				return fmt.Errorf("export: GGUF: layer %d attends over a sliding window of %d tokens, which llama.cpp's %s does not do (it would attend over the whole context)", l, c.LayerWindow(l), arch)
			}
		}
		return nil
	}
}

// llamaCppGemmaScale is the attention scale llama.cpp's gemma2 and gemma3
// use: 1/sqrt(hidden/heads) for the 27B models (identified by layer
// count, 46 and 62), else 1/sqrt(head_dim). query_pre_attn_scalar is not
// stored; the published models agree with this rule.
func llamaCppGemmaScale(c *engine.ModelConfig, layers27B int) float64 {
	if c.NumLayers == layers27B {
		return 1 / math.Sqrt(float64(c.HiddenSize/c.NumHeads))
	}
	return 1 / math.Sqrt(float64(c.HeadDim))
}

func checkGemmaScale(c *engine.ModelConfig, arch string, layers27B int) error {
	if want, got := llamaCppGemmaScale(c, layers27B), c.AttnScale(); math.Abs(want/got-1) > 1e-6 {
		return fmt.Errorf("export: GGUF: query_pre_attn_scalar %v scales attention by %.6g, llama.cpp's %s by %.6g (1/sqrt(head_dim), or 1/sqrt(hidden/heads) for the 27B model)", c.QueryPreAttnScalar, got, arch, want)
	}
	return nil
}

func checkGemma2(c *engine.ModelConfig) error {
	if !c.TieWordEmbeddings {
		return fmt.Errorf("export: GGUF: llama.cpp's gemma2 always reads the head from the embedding (tie_word_embeddings false is not supported)")
	}
	if c.AttnSoftCap == 0 || c.FinalSoftCap == 0 {
		return fmt.Errorf("export: GGUF: llama.cpp's gemma2 always soft-caps attention scores and logits (attn_logit_softcapping %v, final_logit_softcapping %v)", c.AttnSoftCap, c.FinalSoftCap)
	}
	if c.RopeLocalTheta > 0 && c.RopeLocalTheta != c.RopeTheta {
		return fmt.Errorf("export: GGUF: a Gemma 2 with its own local rope base is not supported")
	}
	return checkGemmaScale(c, "gemma2", 46)
}

func checkGemma3(c *engine.ModelConfig) error {
	if c.AttnSoftCap != 0 {
		return fmt.Errorf("export: GGUF: llama.cpp's gemma3 has no attention soft-cap (attn_logit_softcapping %v)", c.AttnSoftCap)
	}
	if c.RopeLocalTheta == 0 && c.RopeScaling != nil {
		// whet then scales the sliding layers' rope too; llama.cpp never does.
		return fmt.Errorf("export: GGUF: rope_local_base_freq 0 with rope_scaling is not supported")
	}
	return checkGemmaScale(c, "gemma3", 62)
}

// gemmaKV writes the soft-caps, the window and which layers slide.
// llama.cpp reads sliding_window_pattern as one flag per layer (or a
// period); the flags are written as whet computes them from layer_types.
// A Gemma 2 without a window gets the context length as its window on its
// sliding layers, since llama.cpp's gemma2 always slides (4096 by default).
func gemmaKV(c *engine.ModelConfig, a func(string, any)) {
	if c.AttnSoftCap > 0 {
		a("attn_logit_softcapping", float32(c.AttnSoftCap))
	}
	if c.FinalSoftCap > 0 {
		a("final_logit_softcapping", float32(c.FinalSoftCap))
	}
	pattern := make([]bool, c.NumLayers)
	window, slides := c.SlidingWindow, false
	gemma2NoWindow := c.ModelType == "gemma2" && window == 0
	if gemma2NoWindow {
		// llama.cpp's gemma2 always slides: its sliding layers get a
		// window as long as the context, which hides nothing.
		window = c.MaxPositions
	}
	for l := range pattern {
		pattern[l] = c.LayerWindow(l) > 0 || (gemma2NoWindow && c.LayerTypes != nil && c.LayerTypes[l] == engine.SlidingAttention)
		slides = slides || pattern[l] || c.ModelType == "gemma2"
	}
	if !slides {
		return // gemma3 without a sliding_window key: no SWA
	}
	a("attention.sliding_window", uint32(window))
	a("attention.sliding_window_pattern", pattern)
	local := c.RopeTheta
	if c.RopeLocalTheta > 0 {
		local = c.RopeLocalTheta
	}
	a("rope.freq_base_swa", float32(local))
	if c.ModelType != "gemma2" {
		// Ollama's own gemma3 engine reads these names for the two bases
		// (its defaults are the published 10000 and 1e6); llama.cpp
		// ignores them.
		a("rope.local.freq_base", float32(local))
		a("rope.global.freq_base", float32(c.RopeTheta))
	}
}

func checkPhi3(c *engine.ModelConfig) error {
	if c.NumHeads*c.HeadDim != c.HiddenSize {
		return fmt.Errorf("export: GGUF: llama.cpp's phi3 needs heads*head_dim = hidden_size (%d*%d != %d)", c.NumHeads, c.HeadDim, c.HiddenSize)
	}
	if rs := c.RopeScaling; rs != nil && rs.Type == "longrope" {
		if n := c.RotaryDim() / 2; len(rs.ShortFactor) != n || len(rs.LongFactor) != n {
			return fmt.Errorf("export: GGUF: LongRoPE factors: %d short and %d long, want %d each", len(rs.ShortFactor), len(rs.LongFactor), n)
		}
	}
	return nil
}

// phi3KV writes LongRoPE's settings: llama.cpp picks the long factors when
// its context is longer than the original one (transformers when the
// sequence is), and scales cos/sin by attn_factor either way. The window
// is written as the converter does; llama.cpp's phi3 ignores it.
func phi3KV(c *engine.ModelConfig, a func(string, any)) {
	if c.SlidingWindow > 0 {
		a("attention.sliding_window", uint32(c.SlidingWindow))
	}
	rs := c.RopeScaling
	if rs == nil || rs.Type != "longrope" {
		return
	}
	a("rope.scaling.type", "longrope")
	a("rope.scaling.attn_factor", float32(rs.AttentionFactor))
	a("rope.scaling.original_context_length", uint32(rs.OriginalMaxPositionEmbeddings))
}

// ggufBlockRoles maps the family's module names inside a block to
// llama.cpp's tensor roles (blk.N.<role>.weight).
func ggufBlockRoles(n engine.LayerNames) map[string]string {
	roles := map[string]string{}
	for _, p := range [][2]string{
		{n.AttnNorm, "attn_norm"}, {n.AttnOutNorm, "post_attention_norm"},
		{n.MLPNorm, "ffn_norm"}, {n.MLPOutNorm, "post_ffw_norm"},
		{n.QNorm, "attn_q_norm"}, {n.KNorm, "attn_k_norm"},
		{n.Q, "attn_q"}, {n.K, "attn_k"}, {n.V, "attn_v"}, {n.QKV, "attn_qkv"}, {n.O, "attn_output"},
		// llama.cpp's phi3 keeps gate and up stacked in ffn_up.
		{n.Gate, "ffn_gate"}, {n.Up, "ffn_up"}, {n.GateUp, "ffn_up"}, {n.Down, "ffn_down"},
	} {
		if p[0] != "" {
			roles[p[0]] = p[1]
		}
	}
	return roles
}
