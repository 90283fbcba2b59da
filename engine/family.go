package engine

import (
	"fmt"
	"slices"
	"strings"
)

// Family describes how one model family's decoder differs from the Llama
// block: the forward, backward, loader, LoRA targets and generation read
// these fields instead of switching on model_type. Adding a family is one
// family_*.go file holding its Family (and its config.json fields), listed
// in families, plus its reference case.
type Family struct {
	// ModelTypes are the config.json model_type values of the family.
	ModelTypes []string
	// Architectures are the config.json architectures classes that may
	// stand with these model types (besides those named after the type).
	Architectures []string
	Defaults      archDefaults
	// TextConfig: config.json holds the language model's fields in
	// text_config (a multimodal checkpoint's text part).
	TextConfig bool
	// WeightAliases are other spellings of a weight's leading "model."
	// in checkpoints that keep this text model inside a larger one; the
	// loader tries them when the plain name is absent.
	WeightAliases []string

	// Activation gates the MLP: out = act(gate) * up.
	Activation Activation
	// ActivationField is the config.json key naming the activation, and
	// the value its config class assumes when the key is absent.
	ActivationField, ActivationDefault string

	// NormOffset: RMSNorm scales by (NormOffset + w) (Gemma stores w
	// around 0 and scales by 1 + w; Llama by w).
	NormOffset float32
	// SandwichNorms adds a norm on the attention output and one on the
	// MLP output before each residual add (Gemma's four norms a block).
	SandwichNorms bool
	// QKNorm normalises each head of q and k over head_dim (its own
	// weight of head_dim) before RoPE (Qwen3, Gemma 3).
	QKNorm bool
	// EmbedScale multiplies the embeddings by sqrt(hidden_size), rounded
	// to the compute dtype as transformers rounds it to the weights'.
	EmbedScale bool
	// FusedQKV and FusedGateUp hold q, k, v (and gate, up) in one matrix
	// each, stacked along the output dimension (Phi-3).
	FusedQKV, FusedGateUp bool

	// Names are the tensors' names inside model.layers.N.
	Names LayerNames

	// parse reads the family's own config.json fields into c (attention
	// biases, windows, soft-caps); the common ones are read already.
	parse func(j jsonObject, c *ModelConfig, def archDefaults) error
}

// Activation is the MLP's gate activation.
type Activation uint8

const (
	SiLU     Activation = iota // silu(g)*u: SwiGLU
	GELUTanh                   // gelu_pytorch_tanh(g)*u: GeGLU
)

// LayerNames are the module names of one decoder block under
// model.layers.N. (weights add ".weight"). A name the family lacks is "".
type LayerNames struct {
	AttnNorm, AttnOutNorm, MLPNorm, MLPOutNorm string
	QNorm, KNorm                               string
	Q, K, V, QKV, O                            string
	Gate, Up, GateUp, Down                     string
}

// llamaNames is the block of Llama and the families that kept its names.
var llamaNames = LayerNames{
	AttnNorm: "input_layernorm", MLPNorm: "post_attention_layernorm",
	Q: "self_attn.q_proj", K: "self_attn.k_proj", V: "self_attn.v_proj", O: "self_attn.o_proj",
	Gate: "mlp.gate_proj", Up: "mlp.up_proj", Down: "mlp.down_proj",
}

// families lists every supported family, in the order messages name them.
var families = []*Family{llamaFamily, mistralFamily, qwen2Family, qwen3Family, gemma2Family, gemma3Family, gemma3Multimodal, phi3Family}

// SupportedModelTypes lists the config.json model_type values the engine runs.
func SupportedModelTypes() []string {
	var out []string
	for _, f := range families {
		out = append(out, f.ModelTypes...)
	}
	return out
}

// familyOf returns the family of a model_type, or nil.
func familyOf(modelType string) *Family {
	for _, f := range families {
		if slices.Contains(f.ModelTypes, modelType) {
			return f
		}
	}
	return nil
}

// FamilyOf returns the family of a config.json model_type, or nil when the
// engine does not run it.
func FamilyOf(modelType string) *Family { return familyOf(modelType) }

// Family returns the model's family (its config was validated, so it has one).
func (m *Model) Family() *Family { return familyOf(m.Cfg.ModelType) }

// checkSupported refuses a model type the decoder does not run, naming
// the ones it does.
func checkSupported(modelType string) error {
	if familyOf(modelType) != nil {
		return nil
	}
	return fmt.Errorf("field model_type: unsupported model type %q (supported: %s)", modelType, strings.Join(SupportedModelTypes(), ", "))
}

// LoRATargets are the short names of the family's linear modules, in
// block order: what "all" means for LoRA.
func (f *Family) LoRATargets() []string {
	var out []string
	add := func(name, short string) {
		if name != "" {
			out = append(out, short)
		}
	}
	n := f.Names
	add(n.Q, "q")
	add(n.K, "k")
	add(n.V, "v")
	add(n.QKV, "qkv")
	add(n.O, "o")
	add(n.Gate, "gate")
	add(n.Up, "up")
	add(n.GateUp, "gate_up")
	add(n.Down, "down")
	return out
}

// resolveLoRATargets maps PEFT-style names to the family's short names:
// none, "all" or "all-linear" mean every linear of the block; a module the
// family does not have is refused, naming those it has.
func (f *Family) resolveLoRATargets(targets []string) ([]string, error) {
	all := f.LoRATargets()
	if len(targets) == 0 || slices.ContainsFunc(targets, isAllLinear) {
		return all, nil
	}
	norm, err := NormalizeTargets(targets)
	if err != nil {
		return nil, err
	}
	norm = f.fuseTargets(norm)
	for _, t := range norm {
		if !slices.Contains(all, t) {
			return nil, fmt.Errorf("lora target_modules: %s has no %s_proj module (its linears: %s_proj)",
				f.ModelTypes[0], t, strings.Join(all, "_proj, "))
		}
	}
	return norm, nil
}

// fuseTargets maps the separate projections onto a family's fused module
// when all of its parts are asked for: q, k and v become qkv and gate and
// up become gate_up, so the presets' every-linear list adapts Phi-3's fused
// layers too. A part asked for alone stays as it is and is refused, since
// an adapter on the fused module would also change its siblings.
func (f *Family) fuseTargets(ts []string) []string {
	fuse := func(ts []string, fused string, parts ...string) []string {
		for _, p := range parts {
			if !slices.Contains(ts, p) {
				return ts
			}
		}
		var out []string
		for _, t := range ts {
			switch {
			case t == parts[0]:
				out = append(out, fused)
			case slices.Contains(parts, t):
			default:
				out = append(out, t)
			}
		}
		return out
	}
	if f.Names.QKV != "" && f.Names.Q == "" {
		ts = fuse(ts, "qkv", "q", "k", "v")
	}
	if f.Names.GateUp != "" && f.Names.Gate == "" {
		ts = fuse(ts, "gate_up", "gate", "up")
	}
	return ts
}

func isAllLinear(s string) bool { return s == "all" || s == "all-linear" || s == "all_linear" }

// aliasSource reads a family's weights under their other spellings
// (Family.WeightAliases) when the plain name is absent.
type aliasSource struct {
	WeightSource
	aliases []string
}

// withAliases wraps src for fam, or returns it as is.
func withAliases(src WeightSource, fam *Family) WeightSource {
	if src == nil || fam == nil || len(fam.WeightAliases) == 0 {
		return src
	}
	return aliasSource{src, fam.WeightAliases}
}

// spellings is name followed by its other spellings under aliases (each
// alias in place of a leading "model."): where a checkpoint, or a PEFT
// adapter of it, may keep the weight or module whet calls name.
func spellings(name string, aliases []string) []string {
	out := []string{name}
	if rest, ok := strings.CutPrefix(name, "model."); ok {
		for _, a := range aliases {
			out = append(out, a+rest)
		}
	}
	return out
}

func (s aliasSource) resolve(name string) string {
	for _, n := range spellings(name, s.aliases) {
		if _, ok := s.WeightSource.Shape(n); ok {
			return n
		}
	}
	return name
}

func (s aliasSource) Shape(name string) ([]int, bool) { return s.WeightSource.Shape(s.resolve(name)) }
func (s aliasSource) Float32(name string) ([]float32, error) {
	return s.WeightSource.Float32(s.resolve(name))
}
func (s aliasSource) Where(name string) string { return s.WeightSource.Where(s.resolve(name)) }
