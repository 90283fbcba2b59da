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
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"sync"

	"go.yaml.in/yaml/v3"

	"whet/engine"
	"whet/engine/memplan"
)

//go:embed models.yaml
var modelsYAML []byte

//go:embed methods.yaml
var methodsYAML []byte

//go:embed hardware.yaml
var hardwareYAML []byte

// Templates are the built-in chat template names a catalog entry may use.
var Templates = []string{"llama-3", "llama-3.1", "llama-3.2", "chatml", "qwen-3", "gemma", "mistral", "phi-3", "alpaca"}

// Model is one catalog entry.
type Model struct {
	Name     string `yaml:"name"`     // short name, e.g. "qwen2.5-7b-instruct"
	Repo     string `yaml:"repo"`     // Hugging Face repository id
	Family   string `yaml:"family"`   // models of one family share a tokenizer and template
	Instruct bool   `yaml:"instruct"` // instruction-tuned variant
	Template string `yaml:"template"` // chat template name, one of Templates
	Licence  string `yaml:"licence"`
	// Params is the parameter count the model card publishes (rounded as
	// published). CountParams recomputes it from Arch.
	Params float64 `yaml:"params"`
	// NotTrainable, when set, says why whet cannot train this model yet.
	NotTrainable string `yaml:"not_trainable"`
	Arch         Arch   `yaml:"arch"`
}

// Arch is the part of a config.json the memory plan needs, with the same
// key names.
type Arch struct {
	ModelType         string       `yaml:"model_type"`
	VocabSize         int          `yaml:"vocab_size"`
	HiddenSize        int          `yaml:"hidden_size"`
	IntermediateSize  int          `yaml:"intermediate_size"`
	NumLayers         int          `yaml:"num_hidden_layers"`
	NumHeads          int          `yaml:"num_attention_heads"`
	NumKVHeads        int          `yaml:"num_key_value_heads"`
	HeadDim           int          `yaml:"head_dim"`
	TieWordEmbeddings bool         `yaml:"tie_word_embeddings"`
	AttentionBias     bool         `yaml:"attention_bias"`
	MaxPositions      int          `yaml:"max_position_embeddings"`
	RopeTheta         float64      `yaml:"rope_theta"`
	RMSNormEps        float64      `yaml:"rms_norm_eps"`
	SlidingWindow     int          `yaml:"sliding_window"`
	RopeScaling       *RopeScaling `yaml:"rope_scaling"`
}

// RopeScaling mirrors config.json's rope_scaling (Llama 3 keys).
type RopeScaling struct {
	Type                          string  `yaml:"rope_type"`
	Factor                        float64 `yaml:"factor"`
	LowFreqFactor                 float64 `yaml:"low_freq_factor"`
	HighFreqFactor                float64 `yaml:"high_freq_factor"`
	OriginalMaxPositionEmbeddings int     `yaml:"original_max_position_embeddings"`
}

// Trainable reports whether whet's engine can train this model.
func (m *Model) Trainable() bool { return m.NotTrainable == "" }

// ToModelConfig returns the engine's view of the architecture. Token ids
// (BOS/EOS) are not in the catalog: they come from the model's own files
// once downloaded; planning does not need them.
func (m *Model) ToModelConfig() *engine.ModelConfig {
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
		SlidingWindow:     a.SlidingWindow,
		TorchDType:        "bfloat16",
	}
	if a.RopeScaling != nil {
		rs := *a.RopeScaling
		cfg.RopeScaling = &engine.RopeScaling{
			Type:                          rs.Type,
			Factor:                        rs.Factor,
			LowFreqFactor:                 rs.LowFreqFactor,
			HighFreqFactor:                rs.HighFreqFactor,
			OriginalMaxPositionEmbeddings: rs.OriginalMaxPositionEmbeddings,
		}
	}
	return cfg
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
	if m.Defaults.Data.Columns != nil {
		rc.Data.Columns = map[string]string{}
		for k, v := range m.Defaults.Data.Columns {
			rc.Data.Columns[k] = v
		}
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

// Hardware is a GPU (or unified-memory machine) to plan for.
type Hardware struct {
	Name      string   `yaml:"name"`
	Aliases   []string `yaml:"aliases"`
	MemoryMiB int64    `yaml:"memory_mib"`
	// BF16TFLOPs is the dense bf16 tensor rate (fp32 accumulate); 0 when
	// not recorded.
	BF16TFLOPs float64 `yaml:"bf16_tflops"`
	// Unified is true where CPU and GPU share one memory pool.
	Unified bool `yaml:"unified"`
}

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
	return nil, fmt.Errorf("presets: no model %q in the catalog (try one of: %s)", name, strings.Join(suggest(models, key), ", "))
}

// suggest lists catalog names sharing the query's first word, or all names
// when none does, so the error message points at something usable.
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
