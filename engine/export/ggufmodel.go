package export

import (
	"context"
	"fmt"
	"math"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"whet/engine"
	"whet/engine/gguf"
)

// quantPlan is one GGUF precision: the type of 2-D weights and llama.cpp's
// general.file_type number for it. mix marks Q4_K_M, whose per-tensor
// types follow llama-quantize (tensorType).
type quantPlan struct {
	fileType uint32 // llama_ftype: MOSTLY_F16 1, MOSTLY_Q8_0 7, MOSTLY_Q4_K_M 15, MOSTLY_BF16 32
	base     gguf.TensorType
	mix      bool
}

var ggufQuants = map[string]quantPlan{
	"f16":    {fileType: 1, base: gguf.F16},
	"bf16":   {fileType: 32, base: gguf.BF16},
	"q8_0":   {fileType: 7, base: gguf.Q8_0},
	"q4_k_m": {fileType: 15, base: gguf.Q4_K, mix: true},
}

// useMoreBits is llama.cpp's rule for which layers of Q4_K_M keep attn_v
// and ffn_down at Q6_K: the first and last eighth, and every third layer
// in between.
func useMoreBits(layer, n int) bool {
	return layer < n/8 || layer >= 7*n/8 || (layer-n/8)%3 == 2
}

// isLlamaCpp70B is llama.cpp's model type 70B for the architectures whet
// exports: 80 layers, with grouped-query attention for llama (80 layers
// without it are its 65B). Its Q4_K_M stores attn_v in Q5_K rather than
// Q4_K there (8 query heads share each value head, so the tensor is small
// and worth the bits).
func isLlamaCpp70B(arch string, c *engine.ModelConfig) bool {
	if c.NumLayers != 80 {
		return false
	}
	return arch == "qwen2" || (arch == "llama" && c.NumKVHeads != c.NumHeads)
}

// isAttnV: llama-quantize gives a fused attn_qkv (Phi-3) attn_v's types.
func isAttnV(role string) bool { return role == "attn_v" || role == "attn_qkv" }

// blockFallback is llama.cpp's type for a tensor whose rows are not whole
// blocks of the type it chose: a 32-value block format of about the same
// precision (Q8_0 itself has none: llama.cpp refuses the tensor).
var blockFallback = map[gguf.TensorType]gguf.TensorType{
	gguf.Q4_K: gguf.Q5_0,
	gguf.Q5_K: gguf.Q5_1,
	gguf.Q6_K: gguf.Q8_0,
}

// tensorChoice is the stored type of one tensor and, when it is not the
// type the plan's rules picked because the rows are not whole blocks of
// it, what that type was.
type tensorChoice struct {
	Type    gguf.TensorType
	Instead gguf.TensorType // the rules' choice; equal to Type when no fallback applied
}

// tensorType picks the stored type of a weight (role and layer from
// ggufName, shape in PyTorch order) as llama-quantize does for the same
// file type, so a whet GGUF is laid out like the one llama.cpp would make:
//   - 1-D tensors (norms, biases) stay F32;
//   - Q4_K_M: the output head, and the token embedding when it is also the
//     head (tied), take Q6_K, or Q8_0 when their rows are not whole
//     256-value super-blocks; attn_v (and a fused attn_qkv) and ffn_down
//     take Q6_K in the layers
//     useMoreBits picks; attn_v takes Q5_K in llama.cpp's 70B models;
//     everything else Q4_K;
//   - then llama.cpp's fallback for rows that are not whole blocks of the
//     chosen type (blockFallback), and F16 when they are not whole 32-value
//     blocks either (where llama.cpp would stop with an error, whet keeps
//     the tensor in F16).
func (q quantPlan) tensorType(arch string, c *engine.ModelConfig, role string, layer int, shape []int) tensorChoice {
	if len(shape) == 1 {
		return tensorChoice{gguf.F32, gguf.F32}
	}
	width := shape[len(shape)-1]
	t := q.base
	if q.mix {
		switch {
		case role == "output" || (role == "token_embd" && c.TieWordEmbeddings):
			t = gguf.Q6_K
			if width%gguf.QK_K != 0 {
				t = gguf.Q8_0
			}
		case isAttnV(role) && useMoreBits(layer, c.NumLayers):
			t = gguf.Q6_K
		case isAttnV(role) && isLlamaCpp70B(arch, c):
			t = gguf.Q5_K
		case role == "ffn_down" && useMoreBits(layer, c.NumLayers):
			t = gguf.Q6_K
		}
	}
	chosen := t
	if width%t.BlockSize() != 0 {
		fb, ok := blockFallback[t]
		if !ok || width%fb.BlockSize() != 0 {
			fb = gguf.F16
		}
		t = fb
	}
	return tensorChoice{t, chosen}
}

// summaryOrder lists the stored types from fewest bits per weight to most.
var summaryOrder = []gguf.TensorType{gguf.Q4_K, gguf.Q5_0, gguf.Q5_K, gguf.Q5_1, gguf.Q6_K, gguf.Q8_0, gguf.BF16, gguf.F16, gguf.F32}

// typeSummary says how a GGUF's tensors are stored, for the export's log:
// the count of each type and every fallback from the rules' type, with
// the row widths that caused it. For example
// "Q4_K_M: 120 Q4_K, 48 Q5_0, 9 Q6_K, 13 Q8_0, 49 F32; llama.cpp's
// fallbacks for rows that are not whole blocks: 48 Q5_0 instead of Q4_K
// (rows of 896), 7 Q8_0 instead of Q6_K (rows of 896)".
func typeSummary(quant string, choices []tensorChoice, widths []int) string {
	count := map[gguf.TensorType]int{}
	type key struct{ from, to gguf.TensorType }
	fallbacks := map[key][]int{}
	var keys []key
	for i, c := range choices {
		count[c.Type]++
		if c.Type != c.Instead {
			k := key{c.Instead, c.Type}
			if _, ok := fallbacks[k]; !ok {
				keys = append(keys, k)
			}
			fallbacks[k] = append(fallbacks[k], widths[i])
		}
	}
	var parts []string
	for _, t := range summaryOrder {
		if count[t] > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", count[t], t))
		}
	}
	out := strings.ToUpper(quant) + ": " + strings.Join(parts, ", ")
	if len(keys) == 0 {
		return out
	}
	var fb []string
	for _, k := range keys {
		ws := slices.Compact(slices.Sorted(slices.Values(fallbacks[k])))
		var wtext []string
		for _, w := range ws {
			wtext = append(wtext, strconv.Itoa(w))
		}
		fb = append(fb, fmt.Sprintf("%d %s instead of %s (rows of %s)", len(fallbacks[k]), k.to, k.from, strings.Join(wtext, ", ")))
	}
	return out + "; llama.cpp's fallbacks for rows that are not whole blocks: " + strings.Join(fb, ", ")
}

// ggufName maps an HF tensor name of a model of family fam to llama.cpp's,
// with the role used by the quantization mix and the layer (-1 outside
// the blocks).
func ggufName(fam *engine.Family, hf string) (name, role string, layer int, err error) {
	switch hf {
	case "model.embed_tokens.weight":
		return "token_embd.weight", "token_embd", -1, nil
	case "model.norm.weight":
		return "output_norm.weight", "output_norm", -1, nil
	case "lm_head.weight":
		return "output.weight", "output", -1, nil
	}
	if _, e := fmt.Sscanf(hf, "model.layers.%d.", &layer); e != nil {
		return "", "", 0, fmt.Errorf("export: no GGUF name for tensor %s", hf)
	}
	rest := strings.TrimPrefix(hf, fmt.Sprintf("model.layers.%d.", layer))
	dot := strings.LastIndexByte(rest, '.')
	if dot < 0 {
		return "", "", 0, fmt.Errorf("export: no GGUF name for tensor %s", hf)
	}
	role, ok := ggufBlockRoles(fam.Names)[rest[:dot]]
	if !ok {
		return "", "", 0, fmt.Errorf("export: no GGUF name for tensor %s", hf)
	}
	return fmt.Sprintf("blk.%d.%s.%s", layer, role, rest[dot+1:]), role, layer, nil
}

// permuteRoPE reorders the rows of a q or k weight ([heads*hd, in]) from
// Hugging Face's rotate-half rope layout (a head's first half pairs with
// its second half) to GGML's interleaved one (pairs are adjacent rows):
// new row 2i of a head is old row i, new row 2i+1 is old row i+hd/2.
// llama.cpp's converter applies the same reordering to llama-arch models.
func permuteRoPE(w []float32, heads, in int) []float32 {
	rows := len(w) / in
	hd := rows / heads
	out := make([]float32, len(w))
	for h := 0; h < heads; h++ {
		for i := 0; i < hd/2; i++ {
			for j := 0; j < 2; j++ {
				src := h*hd + j*hd/2 + i
				dst := h*hd + 2*i + j
				copy(out[dst*in:(dst+1)*in], w[src*in:(src+1)*in])
			}
		}
	}
	return out
}

// llama3RopeFactors is the rope_freqs tensor llama.cpp reads for Llama 3.1
// style scaling: per frequency pair, the factor the base frequency is
// divided by (1 for high frequencies, factor for low ones, a smooth blend
// between), the same rule transformers applies to inv_freq.
func llama3RopeFactors(c *engine.ModelConfig) []float32 {
	rs := c.RopeScaling
	dim := c.HeadDim
	lowWavelen := float64(rs.OriginalMaxPositionEmbeddings) / rs.LowFreqFactor
	highWavelen := float64(rs.OriginalMaxPositionEmbeddings) / rs.HighFreqFactor
	out := make([]float32, dim/2)
	for i := range out {
		freq := 1 / math.Pow(c.RopeTheta, float64(2*i)/float64(dim))
		wavelen := 2 * math.Pi / freq
		switch {
		case wavelen < highWavelen:
			out[i] = 1
		case wavelen > lowWavelen:
			out[i] = float32(rs.Factor)
		default:
			smooth := (float64(rs.OriginalMaxPositionEmbeddings)/wavelen - rs.LowFreqFactor) / (rs.HighFreqFactor - rs.LowFreqFactor)
			out[i] = float32(1 / ((1-smooth)/rs.Factor + smooth))
		}
	}
	return out
}

// BuildGGUF lays out src as a GGUF file in the named precision (f16, bf16,
// q8_0 or q4_k_m). Tensor data is computed (merged, permuted, quantized)
// when the writer reaches each tensor.
func BuildGGUF(src *Source, quant string) (*gguf.File, error) {
	f, _, err := buildGGUF(src, quant)
	return f, err
}

// buildGGUF is BuildGGUF that also returns typeSummary's account of the
// stored types.
func buildGGUF(src *Source, quant string) (*gguf.File, string, error) {
	plan, ok := ggufQuants[quant]
	if !ok {
		return nil, "", fmt.Errorf("export: unknown GGUF precision %q", quant)
	}
	f, summary, err := layOutGGUF(src, quant, plan)
	return f, summary, err
}

// layOutGGUF is buildGGUF for a given plan (tests pass plans of their own).
func layOutGGUF(src *Source, quant string, plan quantPlan) (*gguf.File, string, error) {
	c := src.Model.Cfg
	spec, err := ggufArchOf(c.ModelType)
	if err != nil {
		return nil, "", err
	}
	if spec.check != nil {
		if err := spec.check(&c); err != nil {
			return nil, "", err
		}
	}
	fam := src.Model.Family()
	arch := spec.Name
	vocab, err := readVocab(src.ModelDir, c.VocabSize)
	if err != nil {
		return nil, "", err
	}
	f := &gguf.File{}
	kv := func(k string, v any) { f.KV = append(f.KV, gguf.KV{Key: k, Value: v}) }
	a := func(k string, v any) { kv(arch+"."+k, v) }
	kv("general.architecture", arch)
	kv("general.name", src.Name)
	kv("general.file_type", plan.fileType)
	kv("general.quantization_version", uint32(2))
	kv("general.alignment", uint32(gguf.DefaultAlignment))
	a("context_length", uint32(c.MaxPositions))
	a("embedding_length", uint32(c.HiddenSize))
	a("block_count", uint32(c.NumLayers))
	a("feed_forward_length", uint32(c.IntermediateSize))
	a("attention.head_count", uint32(c.NumHeads))
	a("attention.head_count_kv", uint32(c.NumKVHeads))
	a("attention.key_length", uint32(c.HeadDim))
	a("attention.value_length", uint32(c.HeadDim))
	a("attention.layer_norm_rms_epsilon", float32(c.RMSNormEps))
	a("rope.freq_base", float32(c.RopeTheta))
	a("rope.dimension_count", uint32(c.RotaryDim()))
	if rs := c.RopeScaling; rs != nil && rs.Type == "linear" {
		// llama.cpp divides positions by the factor (Gemma 3: the global
		// layers only; its sliding layers keep scale 1).
		a("rope.scaling.type", "linear")
		a("rope.scaling.factor", float32(rs.Factor))
	}
	a("vocab_size", uint32(c.VocabSize))
	if spec.kv != nil {
		spec.kv(&c, a)
	}
	if err := tokenizerKV(src, vocab, kv); err != nil {
		return nil, "", err
	}

	m := src.Model
	var choices []tensorChoice
	var widths []int
	addF32 := func(name string, v []float32) {
		f.Tensors = append(f.Tensors, gguf.Tensor{Name: name, Dims: []uint64{uint64(len(v))}, Type: gguf.F32,
			Data: func() ([]byte, error) { return gguf.Encode(gguf.F32, v) }})
		choices = append(choices, tensorChoice{gguf.F32, gguf.F32})
		widths = append(widths, len(v))
	}
	for _, w := range Weights(m) {
		if v := m.Gemma3Vision; v != nil && isVisionWeight(v, w.param) {
			continue // the mmproj file's (mmproj.go)
		}
		name, role, layer, err := ggufName(fam, w.Name)
		if err != nil {
			return nil, "", err
		}
		dims := make([]uint64, len(w.Shape))
		for i, d := range w.Shape {
			dims[len(w.Shape)-1-i] = uint64(d)
		}
		choice := plan.tensorType(arch, &c, role, layer, w.Shape)
		typ := choice.Type
		choices = append(choices, choice)
		widths = append(widths, w.Shape[len(w.Shape)-1])
		heads := 0
		if spec.PermuteQK && len(w.Shape) == 2 {
			switch role {
			case "attn_q":
				heads = c.NumHeads
			case "attn_k":
				heads = c.NumKVHeads
			}
		}
		// Gemma's RMSNorm scales by (1 + w); llama.cpp's by the stored
		// weight, so its converter stores 1 + w.
		var shift float32
		if strings.HasSuffix(role, "norm") {
			shift = fam.NormOffset
		}
		w := w
		f.Tensors = append(f.Tensors, gguf.Tensor{Name: name, Dims: dims, Type: typ, Data: func() ([]byte, error) {
			v, err := w.Values(m)
			if err != nil {
				return nil, err
			}
			if heads > 0 {
				v = permuteRoPE(v, heads, w.Shape[1])
			}
			if shift != 0 {
				for i := range v {
					v[i] += shift
				}
			}
			return gguf.Encode(typ, v)
		}})
	}
	if rs := c.RopeScaling; rs != nil && rs.Type == "llama3" {
		if arch != "llama" {
			return nil, "", fmt.Errorf("export: llama3 rope scaling on a %s model is not supported in GGUF", c.ModelType)
		}
		addF32("rope_freqs.weight", llama3RopeFactors(&c))
	}
	if rs := c.RopeScaling; rs != nil && rs.Type == "longrope" {
		if !spec.RopeFactors {
			return nil, "", fmt.Errorf("export: longrope rope scaling on a %s model is not supported in GGUF", c.ModelType)
		}
		// One divisor per frequency pair: llama.cpp divides the base
		// frequencies by them as transformers does.
		addF32("rope_factors_long.weight", toF32(rs.LongFactor))
		addF32("rope_factors_short.weight", toF32(rs.ShortFactor))
	}
	return f, typeSummary(quant, choices, widths), nil
}

func toF32(v []float64) []float32 {
	out := make([]float32, len(v))
	for i, x := range v {
		out[i] = float32(x)
	}
	return out
}

// tokenizerKV adds the tokenizer.ggml.* and chat template metadata.
func tokenizerKV(src *Source, vocab *ggufVocab, kv func(string, any)) error {
	tok := src.Tok
	kv("tokenizer.ggml.model", vocab.Model)
	kv("tokenizer.ggml.pre", vocab.Pre)
	kv("tokenizer.ggml.tokens", vocab.Tokens)
	if vocab.Model == "llama" {
		kv("tokenizer.ggml.scores", vocab.Scores)
	}
	kv("tokenizer.ggml.token_type", vocab.Types)
	if vocab.Model == "gpt2" {
		kv("tokenizer.ggml.merges", vocab.Merges)
	} else {
		kv("tokenizer.ggml.add_space_prefix", vocab.AddSpacePrefix)
	}
	if vocab.UnkID >= 0 {
		kv("tokenizer.ggml.unknown_token_id", uint32(vocab.UnkID))
	}
	cfg := tok.Config()
	idOf := func(key string) (int, bool) {
		var name string
		switch v := cfg[key].(type) {
		case string:
			name = v
		case map[string]any:
			name, _ = v["content"].(string)
		}
		if name == "" {
			return 0, false
		}
		return tok.TokenID(name)
	}
	bos, hasBOS := tok.BOS()
	if hasBOS {
		kv("tokenizer.ggml.bos_token_id", uint32(bos))
	}
	eos, ok := idOf("eos_token")
	if !ok {
		if ids := tok.EOSIDs(); len(ids) > 0 {
			eos, ok = ids[0], true
		}
	}
	if ok {
		kv("tokenizer.ggml.eos_token_id", uint32(eos))
	}
	// The end-of-turn token of the chat template, so llama.cpp stops at
	// the end of a reply even when it differs from EOS.
	if src.Template != nil {
		if eot, ok := tok.TokenID(src.Template.EOS); ok && src.Template.EOS != "" {
			kv("tokenizer.ggml.eot_token_id", uint32(eot))
		}
	}
	if pad, ok := idOf("pad_token"); ok {
		kv("tokenizer.ggml.padding_token_id", uint32(pad))
	}
	// Whether plain encoding starts with BOS, as the HF tokenizer does it.
	addBOS := false
	if hasBOS {
		ids := tok.Encode("a", true)
		addBOS = len(ids) > 0 && ids[0] == bos
	}
	kv("tokenizer.ggml.add_bos_token", addBOS)
	kv("tokenizer.ggml.add_eos_token", false)
	// The template the run trained with: the base's own unless the run
	// named another (Source.Chat).
	if t := src.chat().Jinja; t != "" {
		kv("tokenizer.chat_template", t)
	}
	return nil
}

// writeGGUFExport writes model.gguf and a Modelfile into dir.
func writeGGUFExport(ctx context.Context, src *Source, dir, quant string, progress Progress) error {
	f, summary, err := buildGGUF(src, quant)
	if err != nil {
		return err
	}
	progress(0, 0, summary)
	total := len(f.Tensors) + 1
	path := filepath.Join(dir, ggufFile)
	if err := f.WriteFileContext(ctx, path, func(done, _ int, name string) { progress(done, total, name) }); err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("export cancelled (%s not written): %w", path, ctx.Err())
		}
		return fmt.Errorf("export: %w", err)
	}
	if src.Model.Gemma3Vision != nil {
		if err := writeMMProj(ctx, src, dir, progress); err != nil {
			return err
		}
	}
	mf, err := Modelfile(src, "./model.gguf")
	if err != nil {
		return err
	}
	if c := src.chat(); c.Custom() && c.Template != nil {
		if _, ok := ollamaTemplateFor(src); !ok {
			// Said at export time too, not only in a comment of the
			// Modelfile: Ollama may prompt the model unlike its training.
			progress(0, 0, "Ollama: "+NoOllamaTemplate(c))
		}
	}
	if err := writeFile(filepath.Join(dir, modelfileFile), []byte(mf)); err != nil {
		return err
	}
	progress(total, total, modelfileFile)
	return nil
}
