// Package presets holds what whet offers before it knows anything about the
// user's files: the catalog of base models (with the architecture numbers
// needed to plan memory without downloading weights), the method defaults
// (LoRA, QLoRA, full, DPO) and hardware profiles for planning a run on
// another machine. The data lives in embedded YAML files next to this one;
// the package test validates every entry.
package presets

import (
	"bytes"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"sort"
	"strings"
	"sync"

	"go.yaml.in/yaml/v3"

	"whet/engine"
	"whet/engine/memplan"
	"whet/engine/reward"
	"whet/engine/spell"
)

//go:embed models.yaml
var modelsYAML []byte

//go:embed methods.yaml
var methodsYAML []byte

//go:embed hardware.yaml
var hardwareYAML []byte

// Model is one catalog entry.
type Model struct {
	Name     string `yaml:"name"`     // short name, e.g. "qwen2.5-7b-instruct"
	Repo     string `yaml:"repo"`     // Hugging Face repository id
	Family   string `yaml:"family"`   // models of one family share a tokenizer and template
	Instruct bool   `yaml:"instruct"` // instruction-tuned variant
	Template string `yaml:"template"` // built-in chat template name (datasets.LookupTemplate)
	Licence  string `yaml:"licence"`
	// Params is the parameter count the model card or report publishes
	// (rounded as published). CountParams recomputes it from Arch.
	Params float64 `yaml:"params"`
	// ParamsNonEmbedding is the published count without the embedding and
	// LM-head matrices, where the publisher gives one (0 otherwise).
	ParamsNonEmbedding float64 `yaml:"params_non_embedding"`
	// NotTrainable, when set, says why whet cannot train this model yet.
	NotTrainable string `yaml:"not_trainable"`
	Arch         Arch   `yaml:"arch"`

	// cfg is Arch read by the engine's config.json reader (engine.ParseModelConfig)
	// at load time: nil for an entry whose model type the engine does not run.
	cfg *engine.ModelConfig
}

// Arch is the part of a config.json the engine reads, with the same key
// names (for a multimodal checkpoint: its text_config). Fields left out
// take the defaults of the model type's config class, exactly as when the
// engine reads a downloaded config.json.
type Arch struct {
	ModelType         string  `yaml:"model_type" json:"model_type"`
	VocabSize         int     `yaml:"vocab_size" json:"vocab_size"`
	HiddenSize        int     `yaml:"hidden_size" json:"hidden_size"`
	IntermediateSize  int     `yaml:"intermediate_size" json:"intermediate_size"`
	NumLayers         int     `yaml:"num_hidden_layers" json:"num_hidden_layers"`
	NumHeads          int     `yaml:"num_attention_heads" json:"num_attention_heads"`
	NumKVHeads        int     `yaml:"num_key_value_heads" json:"num_key_value_heads"`
	HeadDim           int     `yaml:"head_dim" json:"head_dim"`
	TieWordEmbeddings bool    `yaml:"tie_word_embeddings" json:"tie_word_embeddings"`
	AttentionBias     bool    `yaml:"attention_bias" json:"attention_bias"`
	MaxPositions      int     `yaml:"max_position_embeddings" json:"max_position_embeddings"`
	RopeTheta         float64 `yaml:"rope_theta" json:"rope_theta"`
	RMSNormEps        float64 `yaml:"rms_norm_eps" json:"rms_norm_eps"`
	// SlidingWindow absent is config.json's null (no window): Mistral's
	// class would otherwise assume 4096.
	SlidingWindow *int         `yaml:"sliding_window" json:"sliding_window"`
	RopeScaling   *RopeScaling `yaml:"rope_scaling" json:"rope_scaling,omitempty"`

	// Gemma 2 and 3.
	SlidingWindowPattern int     `yaml:"sliding_window_pattern" json:"sliding_window_pattern,omitempty"`
	QueryPreAttnScalar   float64 `yaml:"query_pre_attn_scalar" json:"query_pre_attn_scalar,omitempty"`
	RopeLocalBaseFreq    float64 `yaml:"rope_local_base_freq" json:"rope_local_base_freq,omitempty"`
	AttnSoftCap          float64 `yaml:"attn_logit_softcapping" json:"attn_logit_softcapping,omitempty"`
	FinalSoftCap         float64 `yaml:"final_logit_softcapping" json:"final_logit_softcapping,omitempty"`
	// Phi-3 and Phi-4-mini.
	PartialRotaryFactor           float64 `yaml:"partial_rotary_factor" json:"partial_rotary_factor,omitempty"`
	OriginalMaxPositionEmbeddings int     `yaml:"original_max_position_embeddings" json:"original_max_position_embeddings,omitempty"`
}

// RopeScaling mirrors config.json's rope_scaling: Llama 3's keys, linear's
// factor, and LongRoPE's per-frequency factor lists.
type RopeScaling struct {
	Type                          string    `yaml:"rope_type" json:"rope_type"`
	Factor                        float64   `yaml:"factor" json:"factor,omitempty"`
	LowFreqFactor                 float64   `yaml:"low_freq_factor" json:"low_freq_factor,omitempty"`
	HighFreqFactor                float64   `yaml:"high_freq_factor" json:"high_freq_factor,omitempty"`
	OriginalMaxPositionEmbeddings int       `yaml:"original_max_position_embeddings" json:"original_max_position_embeddings,omitempty"`
	ShortFactor                   []float64 `yaml:"short_factor" json:"short_factor,omitempty"`
	LongFactor                    []float64 `yaml:"long_factor" json:"long_factor,omitempty"`
}

// Trainable reports whether whet's engine can train this model.
func (m *Model) Trainable() bool { return m.NotTrainable == "" }

// configJSON is the entry's architecture as a config.json: Arch's fields,
// nested under text_config for a model type whose checkpoints keep the
// language model's settings there (Gemma 3 4B and up).
func (m *Model) configJSON() ([]byte, error) {
	text, err := json.Marshal(m.Arch)
	if err != nil {
		return nil, err
	}
	if f := engine.FamilyOf(m.Arch.ModelType); f != nil && f.TextConfig {
		return json.Marshal(map[string]any{"model_type": m.Arch.ModelType, "text_config": json.RawMessage(text)})
	}
	return text, nil
}

// parseArch reads the entry's architecture with the engine's config.json
// reader. An entry whose model type the engine does not run must say why
// it is not trainable; it has no engine config.
func (m *Model) parseArch() error {
	if engine.FamilyOf(m.Arch.ModelType) == nil {
		if m.Trainable() {
			return fmt.Errorf("presets: embedded models.yaml entry %s: model_type %q is not one the engine runs (%s); set not_trainable",
				m.Name, m.Arch.ModelType, strings.Join(engine.SupportedModelTypes(), ", "))
		}
		return nil
	}
	raw, err := m.configJSON()
	if err != nil {
		return fmt.Errorf("presets: embedded models.yaml entry %s: %w", m.Name, err)
	}
	cfg, err := engine.ParseModelConfig("models.yaml entry "+m.Name, raw)
	if err != nil {
		return fmt.Errorf("presets: embedded %w", err)
	}
	cfg.TorchDType = "bfloat16"
	m.cfg = cfg
	return nil
}

// ToModelConfig returns the engine's view of the architecture, read as the
// engine reads a config.json (class defaults, per-layer attention kinds,
// LongRoPE's attention factor). Token ids (BOS/EOS) are the class
// defaults: the real ones come from the model's own files once
// downloaded; planning does not need them. For an entry the engine cannot
// run, the numbers are copied as they stand (enough to show them).
// The result shares nothing with the catalog.
func (m *Model) ToModelConfig() *engine.ModelConfig {
	if m.cfg != nil {
		return cloneConfig(m.cfg)
	}
	a := m.Arch
	cfg := &engine.ModelConfig{
		ModelType:         a.ModelType,
		VocabSize:         a.VocabSize,
		HiddenSize:        a.HiddenSize,
		IntermediateSize:  a.IntermediateSize,
		NumLayers:         a.NumLayers,
		NumHeads:          a.NumHeads,
		NumKVHeads:        a.NumKVHeads,
		HeadDim:           a.HeadDim,
		RMSNormEps:        a.RMSNormEps,
		RopeTheta:         a.RopeTheta,
		MaxPositions:      a.MaxPositions,
		TieWordEmbeddings: a.TieWordEmbeddings,
		AttentionBias:     a.AttentionBias,
		TorchDType:        "bfloat16",
		BOSTokenID:        engine.NoTokenID,
	}
	if a.SlidingWindow != nil {
		cfg.SlidingWindow = *a.SlidingWindow
	}
	return cfg
}

// cloneConfig copies a config deeply.
func cloneConfig(c *engine.ModelConfig) *engine.ModelConfig {
	out := *c
	out.LayerTypes = slices.Clone(c.LayerTypes)
	out.EOSTokenIDs = slices.Clone(c.EOSTokenIDs)
	if c.RopeScaling != nil {
		rs := *c.RopeScaling
		rs.ShortFactor = slices.Clone(rs.ShortFactor)
		rs.LongFactor = slices.Clone(rs.LongFactor)
		out.RopeScaling = &rs
	}
	return &out
}

// CountParams is the parameter count of a Llama-family decoder computed
// from its architecture numbers: the elements of the weight tensors the
// memory plan allocates (memplan.ParamCount lists them), so a catalog entry
// that matches its published count also plans the right weights.
func CountParams(cfg *engine.ModelConfig) int64 { return memplan.ParamCount(cfg) }

// Method is a method preset: the defaults a run starts from.
type Method struct {
	Name         string `yaml:"name"`
	Description  string `yaml:"description"`
	Optimizer    string `yaml:"optimizer"`
	Quantization string `yaml:"quantization"` // "nf4" for qlora
	DoubleQuant  bool   `yaml:"double_quant"`
	// Defaults are the method's run settings, in a run file's keys.
	Defaults engine.RunConfig `yaml:"defaults"`
}

// RunConfig returns the settings a run of this method starts from, with
// Method set. The result shares nothing with the preset.
func (m *Method) RunConfig() engine.RunConfig {
	rc := m.Defaults
	rc.Method = m.Name
	rc.LoRA.TargetModules = append([]string(nil), m.Defaults.LoRA.TargetModules...)
	rc.Train.SamplePrompts = append([]string(nil), m.Defaults.Train.SamplePrompts...)
	rc.GRPO.Rewards = reward.CloneSpecs(m.Defaults.GRPO.Rewards)
	if m.Defaults.Data.Columns != nil {
		rc.Data.Columns = map[string]string{}
		for k, v := range m.Defaults.Data.Columns {
			rc.Data.Columns[k] = v
		}
	}
	return rc
}

// MaxLengthFor is the max length a run of a model starts from
// (engine.MaxLengthFor, the one rule, which run files without
// data.max_length go through too).
func MaxLengthFor(methodDefault, positions int) int {
	return engine.MaxLengthFor(methodDefault, positions)
}

// RunConfigFor is RunConfig with the max length fitted to the model
// (MaxLengthFor); mc nil (the model is not known yet) keeps the method's.
func (m *Method) RunConfigFor(mc *engine.ModelConfig) engine.RunConfig {
	rc := m.RunConfig()
	if mc != nil {
		rc.Data.MaxLength = MaxLengthFor(rc.Data.MaxLength, mc.MaxPositions)
	}
	return rc
}

// init hands the method defaults to the engine, which reads every run
// file on top of them.
func init() {
	engine.MethodDefaults = func(method string) (engine.RunConfig, error) {
		methods, err := Methods()
		if err != nil {
			return engine.RunConfig{}, err
		}
		if method == "" && len(methods) > 0 {
			return methods[0].RunConfig(), nil
		}
		var names []string
		for i := range methods {
			if methods[i].Name == method {
				return methods[i].RunConfig(), nil
			}
			names = append(names, methods[i].Name)
		}
		return engine.RunConfig{}, fmt.Errorf("unknown %q (want one of %s)", method, strings.Join(names, ", "))
	}
}

// Hardware is a GPU (or unified-memory machine) to plan for. Each figure
// in hardware.yaml carries a comment naming its source.
type Hardware struct {
	Name    string   `yaml:"name"`
	Aliases []string `yaml:"aliases"`
	// ComputeCapability is CUDA's sm_XY as "X.Y".
	ComputeCapability string `yaml:"compute_capability"`
	MemoryMiB         int64  `yaml:"memory_mib"`
	// BF16TFLOPs is the dense bf16 tensor rate (fp32 accumulate).
	BF16TFLOPs float64 `yaml:"bf16_tflops"`
	// BandwidthGBs is the memory bandwidth in GB/s.
	BandwidthGBs float64 `yaml:"bandwidth_gbs"`
	// Unified is true where CPU and GPU share one memory pool.
	Unified bool `yaml:"unified"`
}

// Arch is the profile's architecture as sm_XY ("9.0" → "sm_90"), as
// engine/cuda names a device's.
func (h *Hardware) Arch() string { return "sm_" + strings.ReplaceAll(h.ComputeCapability, ".", "") }

// MemoryBytes is the profile's memory in bytes.
func (h *Hardware) MemoryBytes() int64 { return h.MemoryMiB << 20 }

type catalog struct {
	models   []Model
	methods  []Method
	hardware []Hardware
	err      error
}

var (
	loadOnce sync.Once
	loaded   catalog
)

// load parses the embedded files once. A parse error is a bug in the
// embedded data; the package test reports it, and every accessor returns it.
func load() *catalog {
	loadOnce.Do(func() {
		var m struct {
			Models []Model `yaml:"models"`
		}
		var me struct {
			Common  engine.RunConfig `yaml:"common"` // merged into each method
			Methods []Method         `yaml:"methods"`
		}
		var hw struct {
			Hardware []Hardware `yaml:"hardware"`
		}
		loaded.err = errors.Join(
			decodeStrict("models.yaml", modelsYAML, &m),
			decodeStrict("methods.yaml", methodsYAML, &me),
			decodeStrict("hardware.yaml", hardwareYAML, &hw),
		)
		loaded.models, loaded.methods, loaded.hardware = m.Models, me.Methods, hw.Hardware
		if loaded.err != nil {
			return
		}
		var errs []error
		for i := range loaded.models {
			errs = append(errs, loaded.models[i].parseArch())
		}
		loaded.err = errors.Join(errs...)
	})
	return &loaded
}

// decodeStrict decodes YAML rejecting unknown keys, so a misspelt field in
// the catalog fails the test instead of silently reading as zero.
func decodeStrict(name string, data []byte, out any) error {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(out); err != nil && err != io.EOF {
		return fmt.Errorf("presets: embedded %s: %w", name, err)
	}
	return nil
}

// Models returns the model catalog in file order.
func Models() ([]Model, error) {
	c := load()
	if c.err != nil {
		return nil, c.err
	}
	return append([]Model(nil), c.models...), nil
}

// Lookup finds a model by short name or Hugging Face repository id, ignoring
// case ("Llama-3.1-8B", "meta-llama/Llama-3.1-8B").
func Lookup(name string) (*Model, error) {
	models, err := Models()
	if err != nil {
		return nil, err
	}
	key := strings.ToLower(strings.TrimSpace(name))
	for i := range models {
		if strings.ToLower(models[i].Name) == key || strings.ToLower(models[i].Repo) == key {
			return &models[i], nil
		}
	}
	if near := nearest(models, key); near != "" {
		return nil, fmt.Errorf("presets: no model %q in the catalog (did you mean %s?)", name, near)
	}
	return nil, fmt.Errorf("presets: no model %q in the catalog (try one of: %s)", name, strings.Join(suggest(models, key), ", "))
}

// suggest lists catalog names sharing the query's first word, or all names
// when none does, so the error message points at something usable.
// nearest is the catalog name nearest key by spell.Near (a typo such as
// qwen2.5-05b), "" when none is that close or several are the closest.
func nearest(models []Model, key string) string {
	best, bestD, ties := "", 0, 0
	for _, m := range models {
		d, near := spell.Near(key, m.Name)
		switch {
		case !near:
		case best == "" || d < bestD:
			best, bestD, ties = m.Name, d, 0
		case d == bestD:
			ties++
		}
	}
	if ties > 0 {
		return ""
	}
	return best
}

func suggest(models []Model, key string) []string {
	first, _, _ := strings.Cut(key, "-")
	var out, all []string
	for _, m := range models {
		all = append(all, m.Name)
		if first != "" && strings.HasPrefix(m.Name, first) {
			out = append(out, m.Name)
		}
	}
	if len(out) == 0 {
		out = all
	}
	return out
}

// Methods returns the method presets.
func Methods() ([]Method, error) {
	c := load()
	if c.err != nil {
		return nil, c.err
	}
	return append([]Method(nil), c.methods...), nil
}

// LookupMethod finds a method preset by name (lora, qlora, full, dpo).
func LookupMethod(name string) (*Method, error) {
	methods, err := Methods()
	if err != nil {
		return nil, err
	}
	key := strings.ToLower(strings.TrimSpace(name))
	var names []string
	for i := range methods {
		if methods[i].Name == key {
			return &methods[i], nil
		}
		names = append(names, methods[i].Name)
	}
	return nil, fmt.Errorf("presets: no method %q (one of: %s)", name, strings.Join(names, ", "))
}

// HardwareProfiles returns the hardware profiles.
func HardwareProfiles() ([]Hardware, error) {
	c := load()
	if c.err != nil {
		return nil, c.err
	}
	return append([]Hardware(nil), c.hardware...), nil
}

// LookupHardware finds a profile by name or alias, ignoring case and
// spaces ("RTX 4090", "rtx4090", "4090").
func LookupHardware(name string) (*Hardware, error) {
	profiles, err := HardwareProfiles()
	if err != nil {
		return nil, err
	}
	key := squash(name)
	var names []string
	for i := range profiles {
		p := &profiles[i]
		names = append(names, p.Name)
		if squash(p.Name) == key {
			return p, nil
		}
		for _, a := range p.Aliases {
			if squash(a) == key {
				return p, nil
			}
		}
	}
	sort.Strings(names)
	return nil, fmt.Errorf("presets: no hardware profile %q (one of: %s)", name, strings.Join(names, ", "))
}

func squash(s string) string {
	return strings.ToLower(strings.Join(strings.Fields(s), ""))
}
