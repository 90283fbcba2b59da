package engine

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// NoTokenID is the BOSTokenID of a model whose config names no BOS token
// (Qwen2 configs may leave it out).
const NoTokenID = -1

// archDefaults are the values the transformers config class of each
// architecture uses when config.json leaves a field out. Sizes that define
// the network (hidden_size, num_hidden_layers, ...) have class defaults too,
// but a checkpoint's config always states them; one that does not is broken,
// so LoadModelConfig requires them rather than assuming a 7B shape.
type archDefaults struct {
	numKVHeads    int // 0: same as num_attention_heads
	headDim       int // 0: hidden_size / num_attention_heads
	maxPositions  int
	rmsNormEps    float64
	ropeTheta     float64
	bos           int
	eos           []int
	slidingWindow int  // the window when the field is absent (where the family has one)
	tied          bool // tie_word_embeddings when absent
	// sizes are the class defaults of size fields that published configs
	// do leave out (Gemma 3's text_config); other families require them.
	sizes map[string]int
}

// LoadModelConfig reads a Hugging Face model folder's config.json, and its
// generation_config.json when present (whose eos_token_id is what generation
// stops on), filling the defaults transformers fills and refusing what the
// engine cannot run. Errors name the file and the field.
func LoadModelConfig(dir string) (*ModelConfig, error) {
	path := filepath.Join(dir, "config.json")
	cfgJSON, err := readJSONObject(path)
	if err != nil {
		return nil, err
	}
	cfg, err := parseModelConfig(cfgJSON)
	if err != nil {
		return nil, err
	}
	genPath := filepath.Join(dir, "generation_config.json")
	if _, statErr := os.Stat(genPath); statErr == nil {
		gen, err := readJSONObject(genPath)
		if err != nil {
			return nil, err
		}
		ids, ok, err := gen.intOrList("eos_token_id")
		if err != nil {
			return nil, err
		}
		if ok {
			cfg.EOSTokenIDs = ids
		}
	}
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("config: %s: %w", path, err)
	}
	return cfg, nil
}

// ParseModelConfig reads a config.json held in memory (name labels it in
// errors) with LoadModelConfig's defaults and rules, without a
// generation_config.json. The model catalog builds its entries' configs
// through it, so a catalog entry and the downloaded file are read alike.
func ParseModelConfig(name string, raw []byte) (*ModelConfig, error) {
	j, err := parseJSONObject(name, raw)
	if err != nil {
		return nil, err
	}
	cfg, err := parseModelConfig(j)
	if err != nil {
		return nil, err
	}
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("config: %s: %w", name, err)
	}
	return cfg, nil
}

func parseModelConfig(j jsonObject) (*ModelConfig, error) {
	modelType, err := j.str("model_type", "")
	if err != nil {
		return nil, err
	}
	if modelType == "" {
		return nil, j.fieldErr("model_type", "missing (supported: %s)", strings.Join(SupportedModelTypes(), ", "))
	}
	if err := checkSupported(modelType); err != nil {
		return nil, fmt.Errorf("config: %s: %w", j.path, err)
	}
	fam := familyOf(modelType)
	def := fam.Defaults
	if err := checkArchitectures(j, modelType, fam); err != nil {
		return nil, err
	}
	c := &ModelConfig{ModelType: modelType}
	if fam.TextConfig {
		// A multimodal checkpoint (Gemma 3 4B and up): the language
		// model's fields sit in text_config, and its defaults are the
		// text config class's.
		text, ok, err := j.object("text_config")
		if err != nil {
			return nil, err
		}
		if !ok {
			return nil, j.fieldErr("text_config", "missing (a %s checkpoint keeps its language model's settings there)", modelType)
		}
		j = text
	}

	required := []struct {
		key string
		dst *int
	}{
		{"vocab_size", &c.VocabSize},
		{"hidden_size", &c.HiddenSize},
		{"intermediate_size", &c.IntermediateSize},
		{"num_hidden_layers", &c.NumLayers},
		{"num_attention_heads", &c.NumHeads},
	}
	for _, r := range required {
		v, present, err := j.integer(r.key)
		if err != nil {
			return nil, err
		}
		if d, ok := def.sizes[r.key]; !present && ok {
			v, present = d, true
		}
		if !present {
			return nil, j.fieldErr(r.key, "missing")
		}
		*r.dst = v
	}

	if act, err := j.str(fam.ActivationField, fam.ActivationDefault); err != nil {
		return nil, err
	} else if !activationSpellings[fam.Activation][act] {
		return nil, j.fieldErr(fam.ActivationField, "%q is not supported (a %s model's MLP gates with %s)", act, modelType, fam.ActivationDefault)
	}

	// A null num_key_value_heads means "as many as the query heads" in
	// every class; an absent one takes the class default.
	c.NumKVHeads, err = j.intDefault("num_key_value_heads", def.numKVHeads)
	if err != nil {
		return nil, err
	}
	if c.NumKVHeads == 0 || j.isNull("num_key_value_heads") {
		c.NumKVHeads = c.NumHeads
	}

	c.HeadDim, err = j.intDefault("head_dim", def.headDim)
	if err != nil {
		return nil, err
	}
	if c.HeadDim == 0 {
		if c.NumHeads <= 0 || c.HiddenSize%c.NumHeads != 0 {
			return nil, j.fieldErr("num_attention_heads", "%d does not divide hidden_size %d, and head_dim is not given", c.NumHeads, c.HiddenSize)
		}
		c.HeadDim = c.HiddenSize / c.NumHeads
	}

	if c.RMSNormEps, err = j.floatDefault("rms_norm_eps", def.rmsNormEps); err != nil {
		return nil, err
	}
	if c.MaxPositions, err = j.intDefault("max_position_embeddings", def.maxPositions); err != nil {
		return nil, err
	}
	if c.TieWordEmbeddings, err = j.boolDefault("tie_word_embeddings", def.tied); err != nil {
		return nil, err
	}
	if err := parseRope(j, c, def); err != nil {
		return nil, err
	}

	if err := fam.parse(j, c, def); err != nil {
		return nil, err
	}

	bos, present, err := j.integer("bos_token_id")
	if err != nil {
		return nil, err
	}
	c.BOSTokenID = def.bos
	if present {
		c.BOSTokenID = bos
	} else if j.isNull("bos_token_id") {
		c.BOSTokenID = NoTokenID
	}
	eos, present, err := j.intOrList("eos_token_id")
	if err != nil {
		return nil, err
	}
	c.EOSTokenIDs = append([]int(nil), def.eos...)
	if present {
		c.EOSTokenIDs = eos
	} else if j.isNull("eos_token_id") {
		c.EOSTokenIDs = nil
	}

	// transformers 5 renamed torch_dtype to dtype.
	if c.TorchDType, err = j.str("torch_dtype", ""); err != nil {
		return nil, err
	}
	if c.TorchDType == "" {
		if c.TorchDType, err = j.str("dtype", ""); err != nil {
			return nil, err
		}
	}
	return c, nil
}

// checkArchitectures refuses a config.json whose architectures name
// another family than model_type (Qwen2ForCausalLM under model_type
// "llama"): such a file was edited by hand or stitched from two models,
// and which of the two fields is right cannot be guessed. The family of
// an architecture is its class name before "For" ("Qwen2ForCausalLM":
// qwen2), or before "Model" ("LlamaModel"), compared with model_type
// without case, "_" or "-".
func checkArchitectures(j jsonObject, modelType string, fam *Family) error {
	archs, _, err := j.strList("architectures")
	if err != nil {
		return err
	}
	squash := func(s string) string {
		return strings.NewReplacer("_", "", "-", "").Replace(strings.ToLower(s))
	}
	for i, a := range archs {
		if slices.Contains(fam.Architectures, a) {
			continue
		}
		family, _, found := strings.Cut(a, "For")
		if !found {
			family = strings.TrimSuffix(a, "Model")
		}
		if squash(family) == squash(modelType) {
			continue
		}
		key := "architectures"
		if len(archs) > 1 {
			key = fmt.Sprintf("architectures[%d]", i)
		}
		return j.fieldErr(key, "%q disagrees with field model_type %q (one of the two is wrong: fix config.json)", a, modelType)
	}
	return nil
}

// parseRope reads rope_theta and the scaling. transformers 4 writes
// rope_theta at the top level and the scaling as "rope_scaling"; transformers
// 5 writes both inside "rope_parameters" (rope_type "default" meaning no
// scaling). Either layout is accepted.
func parseRope(j jsonObject, c *ModelConfig, def archDefaults) error {
	v5, hasV5, err := j.object("rope_parameters")
	if err != nil {
		return err
	}
	theta, present, err := j.float("rope_theta")
	if err != nil {
		return err
	}
	if !present && hasV5 {
		if theta, present, err = v5.float("rope_theta"); err != nil {
			return err
		}
	}
	c.RopeTheta = def.ropeTheta
	if present {
		c.RopeTheta = theta
	}
	field := "rope_scaling"
	params, ok, err := j.object("rope_scaling")
	if err != nil {
		return err
	}
	if !ok {
		if !hasV5 {
			return nil
		}
		field, params = "rope_parameters", v5
	}
	ropeType, err := params.str("rope_type", "")
	if err != nil {
		return err
	}
	typeKey := field + ".rope_type"
	if ropeType == "" {
		if ropeType, err = params.str("type", ""); err != nil {
			return err
		}
		typeKey = field + ".type"
	}
	switch ropeType {
	case "", "default":
		return nil
	case "llama3":
		return parseLlama3Rope(j, c, field, params)
	case "linear":
		factor, present, err := params.float("factor")
		if err != nil {
			return err
		}
		if !present {
			return j.fieldErr(field+".factor", "missing (required by linear rope scaling)")
		}
		c.RopeScaling = &RopeScaling{Type: "linear", Factor: factor}
		return nil
	case "longrope":
		return parseLongRope(j, c, field, params)
	}
	return j.fieldErr(typeKey, "unsupported rope scaling %q (supported: %s)", ropeType, strings.Join(ropeScalingTypes, ", "))
}

// ropeScalingTypes are the rope_type values the engine computes.
var ropeScalingTypes = []string{"default", "llama3", "linear", "longrope"}

func parseLlama3Rope(j jsonObject, c *ModelConfig, field string, params jsonObject) error {
	rs := &RopeScaling{Type: "llama3"}
	floats := []struct {
		key string
		dst *float64
	}{
		{"factor", &rs.Factor},
		{"low_freq_factor", &rs.LowFreqFactor},
		{"high_freq_factor", &rs.HighFreqFactor},
	}
	for _, f := range floats {
		v, present, err := params.float(f.key)
		if err != nil {
			return err
		}
		if !present {
			return j.fieldErr(field+"."+f.key, "missing (required by llama3 rope scaling)")
		}
		*f.dst = v
	}
	orig, present, err := params.integer("original_max_position_embeddings")
	if err != nil {
		return err
	}
	if !present {
		return j.fieldErr(field+".original_max_position_embeddings", "missing (required by llama3 rope scaling)")
	}
	rs.OriginalMaxPositionEmbeddings = orig
	c.RopeScaling = rs
	return nil
}

// parseLongRope reads Phi-3's LongRoPE: one divisor per frequency for
// sequences up to original_max_position_embeddings (short_factor) and
// beyond (long_factor); cos and sin are scaled by attention_factor, by
// default sqrt(1 + ln(factor)/ln(original)) with factor the ratio of
// max_position_embeddings to the original, as transformers computes it.
func parseLongRope(j jsonObject, c *ModelConfig, field string, params jsonObject) error {
	rs := &RopeScaling{Type: "longrope"}
	for _, f := range []struct {
		key string
		dst *[]float64
	}{{"short_factor", &rs.ShortFactor}, {"long_factor", &rs.LongFactor}} {
		if !params.has(f.key) {
			return j.fieldErr(field+"."+f.key, "missing (required by longrope scaling)")
		}
		if err := json.Unmarshal(params.m[f.key], f.dst); err != nil {
			return j.fieldErr(field+"."+f.key, "want a list of numbers, found %s", params.m[f.key])
		}
	}
	orig, present, err := j.integer("original_max_position_embeddings")
	if err != nil {
		return err
	}
	factor := 0.0
	if present {
		factor = float64(c.MaxPositions) / float64(orig)
	} else {
		if orig, present, err = params.integer("original_max_position_embeddings"); err != nil {
			return err
		}
		if !present {
			orig = c.MaxPositions
		}
		if factor, err = params.floatDefault("factor", 1); err != nil {
			return err
		}
	}
	rs.OriginalMaxPositionEmbeddings, rs.Factor = orig, factor
	att, present, err := params.float("attention_factor")
	if err != nil {
		return err
	}
	switch {
	case present:
		rs.AttentionFactor = att
	case factor <= 1 || orig <= 1:
		rs.AttentionFactor = 1
	default:
		rs.AttentionFactor = math.Sqrt(1 + math.Log(factor)/math.Log(float64(orig)))
	}
	c.RopeScaling = rs
	return nil
}

// activationSpellings are the config.json names of each MLP activation.
var activationSpellings = map[Activation]map[string]bool{
	SiLU:     {"silu": true, "swish": true},
	GELUTanh: {"gelu_pytorch_tanh": true, "gelu_tanh": true},
}

// maxLayerTypes bounds the per-layer attention list a config may ask for
// (a huge num_hidden_layers is refused later, with the sizes named).
const maxLayerTypes = 1 << 16

// parseLayerTypes reads transformers' layer_types: one entry per layer,
// sliding_attention or full_attention.
func parseLayerTypes(j jsonObject, numLayers int) ([]string, bool, error) {
	types, ok, err := j.strList("layer_types")
	if err != nil || !ok {
		return nil, false, err
	}
	if len(types) != numLayers {
		return nil, false, j.fieldErr("layer_types", "has %d entries for num_hidden_layers %d", len(types), numLayers)
	}
	for i, t := range types {
		if t != SlidingAttention && t != FullAttention {
			return nil, false, j.fieldErr(fmt.Sprintf("layer_types[%d]", i), "unknown layer type %q (want %s or %s)", t, SlidingAttention, FullAttention)
		}
	}
	return types, true, nil
}

// qwenSlidingWindow sets the attention windows of a Qwen2 or Qwen3 model.
// Qwen uses sliding_window only with use_sliding_window, and then only on
// layers from max_window_layers on (transformers 5 spells this out per
// layer as layer_types). When every layer agrees, c.SlidingWindow alone
// says it; otherwise c.LayerTypes names each layer's kind.
func qwenSlidingWindow(j jsonObject, c *ModelConfig) error {
	use, err := j.boolDefault("use_sliding_window", false)
	if err != nil || !use {
		return err
	}
	window, err := j.intDefault("sliding_window", 4096)
	if err != nil || window == 0 {
		return err
	}
	types, ok, err := parseLayerTypes(j, c.NumLayers)
	if err != nil {
		return err
	}
	if !ok {
		first, err := j.intDefault("max_window_layers", 28)
		if err != nil {
			return err
		}
		first = min(max(first, 0), c.NumLayers)
		switch {
		case first == c.NumLayers:
			return nil
		case first == 0:
			c.SlidingWindow = window
			return nil
		case c.NumLayers > maxLayerTypes:
			return j.fieldErr("num_hidden_layers", "%d layers is more than the %d the engine lays out", c.NumLayers, maxLayerTypes)
		}
		types = make([]string, c.NumLayers)
		for i := range types {
			types[i] = FullAttention
			if i >= first {
				types[i] = SlidingAttention
			}
		}
	}
	sliding := 0
	for _, t := range types {
		if t == SlidingAttention {
			sliding++
		}
	}
	switch sliding {
	case 0:
		return nil
	case len(types):
		c.SlidingWindow = window
		return nil
	}
	c.SlidingWindow, c.LayerTypes = window, types
	return nil
}

// Validate is the one set of rules a model config is held to, wherever it
// comes from: a config.json (LoadModelConfig), the catalog (presets), the
// memory plan and NewModel all call it. The error names the config.json
// field; callers add the file.
func (c *ModelConfig) Validate() error {
	bad := func(field, format string, args ...any) error {
		return fmt.Errorf("field %s: %s", field, fmt.Sprintf(format, args...))
	}
	if c.ModelType == "" {
		return bad("model_type", "missing")
	}
	positive := []struct {
		field string
		v     int
	}{
		{"vocab_size", c.VocabSize},
		{"hidden_size", c.HiddenSize},
		{"intermediate_size", c.IntermediateSize},
		{"num_hidden_layers", c.NumLayers},
		{"num_attention_heads", c.NumHeads},
		{"num_key_value_heads", c.NumKVHeads},
		{"head_dim", c.HeadDim},
		{"max_position_embeddings", c.MaxPositions},
	}
	for _, p := range positive {
		if p.v <= 0 {
			return bad(p.field, "%d must be positive", p.v)
		}
	}
	if c.NumHeads%c.NumKVHeads != 0 {
		return bad("num_key_value_heads", "%d does not divide num_attention_heads %d", c.NumKVHeads, c.NumHeads)
	}
	if c.HeadDim%2 != 0 {
		return bad("head_dim", "%d must be even for rotary embeddings", c.HeadDim)
	}
	if !(c.RMSNormEps > 0) || math.IsInf(c.RMSNormEps, 0) {
		return bad("rms_norm_eps", "%v must be a positive number", c.RMSNormEps)
	}
	if !(c.RopeTheta > 1) || math.IsInf(c.RopeTheta, 0) {
		return bad("rope_theta", "%v must be a number above 1", c.RopeTheta)
	}
	if err := c.validateRope(); err != nil {
		return err
	}
	if c.LayerTypes != nil && len(c.LayerTypes) != c.NumLayers {
		return bad("layer_types", "has %d entries for num_hidden_layers %d", len(c.LayerTypes), c.NumLayers)
	}
	for i, t := range c.LayerTypes {
		if t != SlidingAttention && t != FullAttention {
			return bad(fmt.Sprintf("layer_types[%d]", i), "unknown layer type %q", t)
		}
	}
	nonNegative := []struct {
		field string
		v     float64
	}{
		{"query_pre_attn_scalar", c.QueryPreAttnScalar},
		{"attn_logit_softcapping", c.AttnSoftCap},
		{"final_logit_softcapping", c.FinalSoftCap},
		{"rope_local_base_freq", c.RopeLocalTheta},
	}
	for _, f := range nonNegative {
		if !(f.v >= 0) || math.IsInf(f.v, 0) {
			return bad(f.field, "%v must be a non-negative number", f.v)
		}
	}
	if c.RopeLocalTheta != 0 && !(c.RopeLocalTheta > 1) {
		return bad("rope_local_base_freq", "%v must be a number above 1", c.RopeLocalTheta)
	}
	if f := c.PartialRotaryFactor; f != 0 && !(f > 0 && f <= 1) {
		return bad("partial_rotary_factor", "%v must be in (0, 1]", f)
	}
	if r := c.RotaryDim(); r <= 0 || r%2 != 0 {
		return bad("partial_rotary_factor", "turns %d of head_dim %d dimensions; it must be a positive even number", r, c.HeadDim)
	}
	if c.SlidingWindow < 0 {
		return bad("sliding_window", "%d must not be negative", c.SlidingWindow)
	}
	for i, id := range c.EOSTokenIDs {
		if id < 0 || id >= c.VocabSize {
			return bad("eos_token_id", "id %d (entry %d) is outside the vocabulary of %d", id, i, c.VocabSize)
		}
	}
	if c.BOSTokenID != NoTokenID && (c.BOSTokenID < 0 || c.BOSTokenID >= c.VocabSize) {
		return bad("bos_token_id", "%d is outside the vocabulary of %d", c.BOSTokenID, c.VocabSize)
	}
	return nil
}

// validateRope checks the rope scaling against the rotary dimensions.
func (c *ModelConfig) validateRope() error {
	rs := c.RopeScaling
	if rs == nil {
		return nil
	}
	bad := func(field, format string, args ...any) error {
		return fmt.Errorf("field rope_scaling.%s: %s", field, fmt.Sprintf(format, args...))
	}
	switch rs.Type {
	case "llama3":
		switch {
		case !(rs.Factor >= 1) || math.IsInf(rs.Factor, 0):
			return bad("factor", "%v must be at least 1", rs.Factor)
		case !(rs.LowFreqFactor > 0) || !(rs.HighFreqFactor > rs.LowFreqFactor) || math.IsInf(rs.HighFreqFactor, 0):
			return bad("high_freq_factor", "need 0 < low_freq_factor (%v) < high_freq_factor (%v)", rs.LowFreqFactor, rs.HighFreqFactor)
		case rs.OriginalMaxPositionEmbeddings <= 0:
			return bad("original_max_position_embeddings", "%d must be positive", rs.OriginalMaxPositionEmbeddings)
		}
	case "linear":
		if !(rs.Factor > 0) || math.IsInf(rs.Factor, 0) {
			return bad("factor", "%v must be positive", rs.Factor)
		}
	case "longrope":
		half := c.RotaryDim() / 2
		for _, f := range []struct {
			name string
			v    []float64
		}{{"short_factor", rs.ShortFactor}, {"long_factor", rs.LongFactor}} {
			if len(f.v) != half {
				return bad(f.name, "has %d entries; the %d rotary dimensions need %d", len(f.v), 2*half, half)
			}
			for i, x := range f.v {
				if !(x > 0) || math.IsInf(x, 0) {
					return bad(fmt.Sprintf("%s[%d]", f.name, i), "%v must be positive", x)
				}
			}
		}
		if rs.OriginalMaxPositionEmbeddings <= 0 {
			return bad("original_max_position_embeddings", "%d must be positive", rs.OriginalMaxPositionEmbeddings)
		}
		if !(rs.AttentionFactor > 0) || math.IsInf(rs.AttentionFactor, 0) {
			return bad("attention_factor", "%v must be positive", rs.AttentionFactor)
		}
	default:
		return bad("rope_type", "unsupported rope scaling %q (supported: %s)", rs.Type, strings.Join(ropeScalingTypes, ", "))
	}
	return nil
}

// RopeKind picks one of a model's rotary tables: Local for the sliding
// layers of a model with rope_local_base_freq (Gemma 3), Long for LongRoPE
// past original_max_position_embeddings.
type RopeKind struct{ Local, Long bool }

// RopeInvFreq returns the rotary inverse frequencies of the global layers
// (short LongRoPE factors); see RopeInvFreqOf.
func RopeInvFreq(c *ModelConfig) []float64 {
	inv, _ := RopeInvFreqOf(c, RopeKind{})
	return inv
}

// RopeInvFreqOf returns one table's inverse frequencies, theta^(-2i/rot)
// for i < rot/2 (rot the rotary dimensions), scaled as transformers'
// modeling_rope_utils does, and the factor cos and sin are multiplied by
// (LongRoPE's attention factor, else 1). Llama 3 scaling slows long
// wavelengths by factor, keeps short ones and blends the band between;
// linear divides every frequency by factor; LongRoPE divides each by its
// own short or long factor. Local tables turn by rope_local_base_freq,
// unscaled.
func RopeInvFreqOf(c *ModelConfig, k RopeKind) ([]float64, float64) {
	rot := c.RotaryDim()
	theta := c.RopeTheta
	rs := c.RopeScaling
	if k.Local && c.RopeLocalTheta > 0 {
		theta, rs = c.RopeLocalTheta, nil
	}
	inv := make([]float64, rot/2)
	for i := range inv {
		inv[i] = math.Pow(theta, -float64(2*i)/float64(rot))
	}
	if rs == nil {
		return inv, 1
	}
	switch rs.Type {
	case "linear":
		for i := range inv {
			inv[i] /= rs.Factor
		}
	case "longrope":
		ext := rs.ShortFactor
		if k.Long {
			ext = rs.LongFactor
		}
		for i := range inv {
			inv[i] /= ext[i]
		}
		return inv, rs.AttentionFactor
	case "llama3":
		oldCtx := float64(rs.OriginalMaxPositionEmbeddings)
		lowFreqWavelen := oldCtx / rs.LowFreqFactor
		highFreqWavelen := oldCtx / rs.HighFreqFactor
		for i, f := range inv {
			wavelen := 2 * math.Pi / f
			switch {
			case wavelen > lowFreqWavelen:
				inv[i] = f / rs.Factor
			case wavelen >= highFreqWavelen:
				smooth := (oldCtx/wavelen - rs.LowFreqFactor) / (rs.HighFreqFactor - rs.LowFreqFactor)
				inv[i] = (1-smooth)*f/rs.Factor + smooth*f
			}
		}
	}
	return inv, 1
}

// RopeTables returns the global layers' rotary cos and sin tables; see
// RopeTablesOf.
func RopeTables(cfg *ModelConfig, maxPos int) (cos, sin []float32) {
	return RopeTablesOf(cfg, RopeKind{}, maxPos)
}

// RopeTablesOf returns one kind's rotary cos and sin tables, each
// [maxPos, rot/2] row-major: entry (p, i) is cos/sin of p * inv_freq[i]
// times the attention factor. The angle is formed in float64 so that
// large positions keep their precision.
func RopeTablesOf(cfg *ModelConfig, k RopeKind, maxPos int) (cos, sin []float32) {
	inv, scale := RopeInvFreqOf(cfg, k)
	half := len(inv)
	cos = make([]float32, maxPos*half)
	sin = make([]float32, maxPos*half)
	for p := 0; p < maxPos; p++ {
		for i, f := range inv {
			s, c := math.Sincos(float64(p) * f)
			cos[p*half+i] = float32(c * scale)
			sin[p*half+i] = float32(s * scale)
		}
	}
	return cos, sin
}

// ropeKinds lists the tables a model's layers read.
// RopeTables is how many rotary tables (cos and sin, [tokens, RotaryDim/2]
// float32 each) the decoder keeps: one, plus Gemma 3's local one and
// LongRoPE's long one.
func (c *ModelConfig) RopeTables() int { return len(c.ropeKinds()) }

func (c *ModelConfig) ropeKinds() []RopeKind {
	kinds := []RopeKind{{}}
	if c.RopeLocalTheta > 0 {
		kinds = append(kinds, RopeKind{Local: true})
	}
	if c.RopeScaling != nil && c.RopeScaling.Type == "longrope" {
		kinds = append(kinds, RopeKind{Long: true})
	}
	return kinds
}

// jsonObject is a decoded JSON object that remembers its file, so every
// accessor's error can name the file and the field.
type jsonObject struct {
	path   string
	prefix string // "rope_scaling." inside a nested object
	m      map[string]json.RawMessage
}

func readJSONObject(path string) (jsonObject, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return jsonObject{}, fmt.Errorf("config: %s: not found (a Hugging Face model folder has one)", path)
		}
		return jsonObject{}, fmt.Errorf("config: %w", err)
	}
	return parseJSONObject(path, raw)
}

// parseJSONObject decodes a config file's bytes; path names it in errors.
func parseJSONObject(path string, raw []byte) (jsonObject, error) {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil {
		return jsonObject{}, fmt.Errorf("config: %s: not a JSON object: %v", path, describeJSONError(raw, err))
	}
	if m == nil { // the file held "null"
		return jsonObject{}, fmt.Errorf("config: %s: not a JSON object", path)
	}
	return jsonObject{path: path, m: m}, nil
}

// describeJSONError adds the line number to a syntax error.
func describeJSONError(raw []byte, err error) string {
	var syn *json.SyntaxError
	if errors.As(err, &syn) {
		line := 1 + bytes.Count(raw[:min(int(syn.Offset), len(raw))], []byte("\n"))
		return fmt.Sprintf("line %d: %v", line, err)
	}
	return err.Error()
}

func (j jsonObject) fieldErr(key, format string, args ...any) error {
	return fmt.Errorf("config: %s: field %s%s: %s", j.path, j.prefix, key, fmt.Sprintf(format, args...))
}

// has reports a key present with a non-null value.
func (j jsonObject) has(key string) bool {
	raw, ok := j.m[key]
	return ok && string(bytes.TrimSpace(raw)) != "null"
}

func (j jsonObject) isNull(key string) bool {
	raw, ok := j.m[key]
	return ok && string(bytes.TrimSpace(raw)) == "null"
}

// integer reads an integer field; present is false when absent or null.
// Integral floats such as 4096.0 are accepted (some exporters write them).
func (j jsonObject) integer(key string) (v int, present bool, err error) {
	if !j.has(key) {
		return 0, false, nil
	}
	var n json.Number
	// json.Number would also take a quoted number; a string is not a size.
	if raw := bytes.TrimSpace(j.m[key]); raw[0] == '"' || json.Unmarshal(raw, &n) != nil {
		return 0, false, j.fieldErr(key, "want an integer, found %s", j.m[key])
	}
	v, err = numberToInt(n)
	if err != nil {
		return 0, false, j.fieldErr(key, "%v", err)
	}
	return v, true, nil
}

func numberToInt(n json.Number) (int, error) {
	if i, err := strconv.ParseInt(string(n), 10, 64); err == nil {
		if int64(int(i)) != i {
			return 0, fmt.Errorf("%s is out of range", n)
		}
		return int(i), nil
	}
	f, err := strconv.ParseFloat(string(n), 64)
	if err != nil || f != math.Trunc(f) || math.Abs(f) > 1<<53 {
		return 0, fmt.Errorf("want an integer, found %s", n)
	}
	return int(f), nil
}

func (j jsonObject) intDefault(key string, def int) (int, error) {
	v, present, err := j.integer(key)
	if err != nil || !present {
		return def, err
	}
	return v, nil
}

func (j jsonObject) float(key string) (v float64, present bool, err error) {
	if !j.has(key) {
		return 0, false, nil
	}
	if err := json.Unmarshal(j.m[key], &v); err != nil {
		return 0, false, j.fieldErr(key, "want a number, found %s", j.m[key])
	}
	return v, true, nil
}

func (j jsonObject) floatDefault(key string, def float64) (float64, error) {
	v, present, err := j.float(key)
	if err != nil || !present {
		return def, err
	}
	return v, nil
}

func (j jsonObject) boolDefault(key string, def bool) (bool, error) {
	if !j.has(key) {
		return def, nil
	}
	var v bool
	if err := json.Unmarshal(j.m[key], &v); err != nil {
		return def, j.fieldErr(key, "want true or false, found %s", j.m[key])
	}
	return v, nil
}

func (j jsonObject) str(key, def string) (string, error) {
	if !j.has(key) {
		return def, nil
	}
	var v string
	if err := json.Unmarshal(j.m[key], &v); err != nil {
		return def, j.fieldErr(key, "want a string, found %s", j.m[key])
	}
	return v, nil
}

func (j jsonObject) strList(key string) ([]string, bool, error) {
	if !j.has(key) {
		return nil, false, nil
	}
	var v []string
	if err := json.Unmarshal(j.m[key], &v); err != nil {
		return nil, false, j.fieldErr(key, "want a list of strings, found %s", j.m[key])
	}
	return v, true, nil
}

// intOrList reads a field that may hold one integer or a list of them, as
// eos_token_id does.
func (j jsonObject) intOrList(key string) ([]int, bool, error) {
	if !j.has(key) {
		return nil, false, nil
	}
	raw := bytes.TrimSpace(j.m[key])
	if len(raw) > 0 && raw[0] == '[' {
		var list []json.Number
		if err := json.Unmarshal(raw, &list); err != nil {
			return nil, false, j.fieldErr(key, "want an integer or a list of integers, found %s", raw)
		}
		ids := make([]int, 0, len(list))
		for i, n := range list {
			v, err := numberToInt(n)
			if err != nil {
				return nil, false, j.fieldErr(fmt.Sprintf("%s[%d]", key, i), "%v", err)
			}
			ids = append(ids, v)
		}
		return ids, true, nil
	}
	v, _, err := j.integer(key)
	if err != nil {
		return nil, false, err
	}
	return []int{v}, true, nil
}

// object reads a nested object; present is false when absent or null.
func (j jsonObject) object(key string) (jsonObject, bool, error) {
	if !j.has(key) {
		return jsonObject{}, false, nil
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(j.m[key], &m); err != nil {
		return jsonObject{}, false, j.fieldErr(key, "want an object, found %s", j.m[key])
	}
	return jsonObject{path: j.path, prefix: j.prefix + key + ".", m: m}, true, nil
}
