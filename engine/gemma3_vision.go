package engine

import (
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// Gemma 3's image side (Gemma3ForConditionalGeneration, issue 24): the
// SigLIP vision tower, the multi-modal projector and the merge of its
// output into the language model's embeddings. Per image of S×S pixels,
// with P = (S/p)² patches of p×p, hidden Dv, M = mm_tokens_per_image:
//
//	e   = patches Wpatch^T + bpatch + pos            [P, Dv]   (the conv, as a matrix over patches)
//	per layer: h = LN1(x); x += attn(h) (both ways, q/k/v/o with biases, scale hd^-1/2)
//	           h = LN2(x); x += fc2(gelu_tanh(fc1(h)))
//	y   = LNpost(x)                                  [P, Dv]   (last_hidden_state)
//	z   = Pool y                                     [M, Dv]   (avg_pool2d by k = (S/p)/sqrt(M))
//	f   = rmsnorm_(1+w)(z) Wproj (+ LoRA)            [M, Dt]   (Wproj is [Dv, Dt]: z @ W)
//
// The image's M rows of f replace the embeddings (after their sqrt(Dt)
// scale) at its M image tokens, in order; the image tokens of one run see
// each other both ways in every language-model layer (GroupAttention).
// The backward mirrors it: the merged rows' gradient leaves the embedding
// gradient (the image tokens' embeddings are overwritten, so they get none)
// and runs back through the projector, and through the tower when any of
// it is trained.

// Gemma3VisionConfig is the vision side of a Gemma 3 config.json.
type Gemma3VisionConfig struct {
	Hidden, Intermediate, Layers, Heads, Channels, ImageSize, PatchSize int
	LayerNormEps                                                        float64
	// TokensPerImage is mm_tokens_per_image (256 in the released models).
	TokensPerImage int
	// ImageTokenID marks an image's soft tokens in the ids; BOI and EOI frame them.
	ImageTokenID, BOITokenID, EOITokenID int32
	// TextHidden is the language model's hidden size (the projector's output).
	TextHidden int
}

// PatchesPerSide is image_size / patch_size.
func (c *Gemma3VisionConfig) PatchesPerSide() int { return c.ImageSize / c.PatchSize }

// NumPatches is the tower's sequence length per image.
func (c *Gemma3VisionConfig) NumPatches() int { return c.PatchesPerSide() * c.PatchesPerSide() }

// TokensPerSide is sqrt(mm_tokens_per_image).
func (c *Gemma3VisionConfig) TokensPerSide() int {
	return int(math.Round(math.Sqrt(float64(c.TokensPerImage))))
}

// PoolKernel is the average pool's kernel and stride.
func (c *Gemma3VisionConfig) PoolKernel() int { return c.PatchesPerSide() / c.TokensPerSide() }

// HeadDim is the tower's per-head width.
func (c *Gemma3VisionConfig) HeadDim() int { return c.Hidden / c.Heads }

// PatchDim is the length of one flattened patch (channels × p × p).
func (c *Gemma3VisionConfig) PatchDim() int { return c.Channels * c.PatchSize * c.PatchSize }

// PixelsPerImage is the length of one image's pixel values [C, S, S].
func (c *Gemma3VisionConfig) PixelsPerImage() int { return c.Channels * c.ImageSize * c.ImageSize }

// ParseGemma3VisionConfig reads the vision fields of a Gemma 3 config.json
// (model_type gemma3), with transformers' defaults (Gemma3Config and
// SiglipVisionConfig) for the fields left out; textHidden is the language
// model's hidden size.
func ParseGemma3VisionConfig(data []byte, textHidden int) (*Gemma3VisionConfig, error) {
	var top map[string]json.RawMessage
	if err := json.Unmarshal(data, &top); err != nil {
		return nil, fmt.Errorf("config.json: %w", err)
	}
	var mt string
	if raw, ok := top["model_type"]; ok {
		json.Unmarshal(raw, &mt)
	}
	if mt != "gemma3" {
		return nil, fmt.Errorf("config.json: model_type %q has no Gemma 3 vision tower (want \"gemma3\")", mt)
	}
	c := &Gemma3VisionConfig{TextHidden: textHidden}
	intField := func(obj map[string]json.RawMessage, where, key string, def int) (int, error) {
		raw, ok := obj[key]
		if !ok || string(raw) == "null" {
			return def, nil
		}
		var f float64
		if err := json.Unmarshal(raw, &f); err != nil || f != math.Trunc(f) || math.Abs(f) > 1<<31 {
			return 0, fmt.Errorf("config.json: field %s%s: %s is not an integer", where, key, raw)
		}
		return int(f), nil
	}
	var err error
	tokens, err := intField(top, "", "mm_tokens_per_image", 256)
	if err != nil {
		return nil, err
	}
	c.TokensPerImage = tokens
	for _, f := range []struct {
		key string
		def int
		dst *int32
	}{{"image_token_index", 262144, &c.ImageTokenID}, {"boi_token_index", 255999, &c.BOITokenID}, {"eoi_token_index", 256000, &c.EOITokenID}} {
		v, err := intField(top, "", f.key, f.def)
		if err != nil {
			return nil, err
		}
		if v < 0 {
			return nil, fmt.Errorf("config.json: field %s: %d is negative", f.key, v)
		}
		*f.dst = int32(v)
	}
	raw, ok := top["vision_config"]
	if !ok || string(raw) == "null" {
		return nil, fmt.Errorf("config.json: field vision_config: missing (a Gemma3ForConditionalGeneration config holds its SigLIP tower's settings there)")
	}
	var vis map[string]json.RawMessage
	if err := json.Unmarshal(raw, &vis); err != nil {
		return nil, fmt.Errorf("config.json: field vision_config: %w", err)
	}
	// SiglipVisionConfig's defaults.
	for _, f := range []struct {
		key string
		def int
		dst *int
	}{{"hidden_size", 768, &c.Hidden}, {"intermediate_size", 3072, &c.Intermediate}, {"num_hidden_layers", 12, &c.Layers},
		{"num_attention_heads", 12, &c.Heads}, {"num_channels", 3, &c.Channels}, {"image_size", 224, &c.ImageSize}, {"patch_size", 16, &c.PatchSize}} {
		if *f.dst, err = intField(vis, "vision_config.", f.key, f.def); err != nil {
			return nil, err
		}
	}
	c.LayerNormEps = 1e-6
	if raw, ok := vis["layer_norm_eps"]; ok && string(raw) != "null" {
		if err := json.Unmarshal(raw, &c.LayerNormEps); err != nil || !(c.LayerNormEps >= 0) {
			return nil, fmt.Errorf("config.json: field vision_config.layer_norm_eps: %s is not a non-negative number", raw)
		}
	}
	if raw, ok := vis["hidden_act"]; ok && string(raw) != "null" {
		var act string
		json.Unmarshal(raw, &act)
		if act != "gelu_pytorch_tanh" {
			return nil, fmt.Errorf("config.json: field vision_config.hidden_act: %s is not supported (whet's SigLIP tower runs gelu_pytorch_tanh)", raw)
		}
	}
	return c, c.validate()
}

func (c *Gemma3VisionConfig) validate() error {
	for _, f := range []struct {
		name string
		v    int
	}{{"vision_config.hidden_size", c.Hidden}, {"vision_config.intermediate_size", c.Intermediate}, {"vision_config.num_hidden_layers", c.Layers},
		{"vision_config.num_attention_heads", c.Heads}, {"vision_config.num_channels", c.Channels}, {"vision_config.image_size", c.ImageSize},
		{"vision_config.patch_size", c.PatchSize}, {"mm_tokens_per_image", c.TokensPerImage}} {
		if f.v <= 0 || f.v > 1<<20 {
			return fmt.Errorf("config.json: field %s: %d is out of range", f.name, f.v)
		}
	}
	if c.Hidden%c.Heads != 0 {
		return fmt.Errorf("config.json: vision_config.hidden_size %d is not a multiple of num_attention_heads %d", c.Hidden, c.Heads)
	}
	if c.ImageSize%c.PatchSize != 0 {
		return fmt.Errorf("config.json: vision_config.image_size %d is not a multiple of patch_size %d", c.ImageSize, c.PatchSize)
	}
	if s := c.TokensPerSide(); s*s != c.TokensPerImage {
		return fmt.Errorf("config.json: field mm_tokens_per_image: %d is not a square number", c.TokensPerImage)
	}
	if n := c.PatchesPerSide(); n%c.TokensPerSide() != 0 {
		return fmt.Errorf("config.json: %d×%d patches do not pool evenly to mm_tokens_per_image %d (%d per side)", n, n, c.TokensPerImage, c.TokensPerSide())
	}
	if int64(c.NumPatches())*int64(c.Hidden) > 1<<31 {
		return fmt.Errorf("config.json: vision_config: %d patches of %d values is too large", c.NumPatches(), c.Hidden)
	}
	return nil
}

// Gemma3Vision holds the tower and projector weights of a loaded model.
type Gemma3Vision struct {
	Cfg                    Gemma3VisionConfig
	PatchW, PatchB, PosEmb *Param
	Layers                 []*SigLIPLayer
	PostW, PostB           *Param
	// ProjNorm is mm_soft_emb_norm (a (1 + w) RMSNorm); Proj is
	// mm_input_projection_weight [Dv, Dt].
	ProjNorm, Proj *Param
	// ProjLoRA, when set, adapts Proj: f += Scale * x A^T B^T with A [r, Dv]
	// and B [Dt, r].
	ProjLoRA *LoRA
}

// SigLIPLayer is one encoder layer of the tower.
type SigLIPLayer struct {
	LN1W, LN1B, LN2W, LN2B *Param
	Q, K, V, O, FC1, FC2   *Linear
}

const (
	gemma3VisionPrefix    = "vision_tower.vision_model."
	gemma3ProjectorPrefix = "multi_modal_projector."
	// Gemma3ProjectorModule names the projector's matrix for LoRA.
	Gemma3ProjectorModule = "multi_modal_projector.mm_input_projection"
)

// layout names and shapes every tower and projector weight (nothing
// allocated).
func (c *Gemma3VisionConfig) layout() *Gemma3Vision {
	v := &Gemma3Vision{Cfg: *c}
	p := func(name string, noDecay bool, shape ...int) *Param {
		return &Param{Name: name, Shape: shape, NoDecay: noDecay}
	}
	D, I := c.Hidden, c.Intermediate
	lin := func(prefix, short string, out, in int) *Linear {
		return &Linear{Module: prefix, Short: short, In: in, Out: out,
			W: p(prefix+".weight", false, out, in), B: p(prefix+".bias", true, out)}
	}
	e := gemma3VisionPrefix + "embeddings."
	v.PatchW = p(e+"patch_embedding.weight", false, D, c.Channels, c.PatchSize, c.PatchSize)
	v.PatchB = p(e+"patch_embedding.bias", true, D)
	v.PosEmb = p(e+"position_embedding.weight", false, c.NumPatches(), D)
	for l := 0; l < c.Layers; l++ {
		pre := fmt.Sprintf("%sencoder.layers.%d.", gemma3VisionPrefix, l)
		v.Layers = append(v.Layers, &SigLIPLayer{
			LN1W: p(pre+"layer_norm1.weight", true, D), LN1B: p(pre+"layer_norm1.bias", true, D),
			LN2W: p(pre+"layer_norm2.weight", true, D), LN2B: p(pre+"layer_norm2.bias", true, D),
			Q: lin(pre+"self_attn.q_proj", "q", D, D), K: lin(pre+"self_attn.k_proj", "k", D, D),
			V: lin(pre+"self_attn.v_proj", "v", D, D), O: lin(pre+"self_attn.out_proj", "o", D, D),
			FC1: lin(pre+"mlp.fc1", "fc1", I, D), FC2: lin(pre+"mlp.fc2", "fc2", D, I),
		})
	}
	v.PostW = p(gemma3VisionPrefix+"post_layernorm.weight", true, D)
	v.PostB = p(gemma3VisionPrefix+"post_layernorm.bias", true, D)
	v.ProjNorm = p(gemma3ProjectorPrefix+"mm_soft_emb_norm.weight", true, D)
	v.Proj = p(gemma3ProjectorPrefix+"mm_input_projection_weight", false, D, c.TextHidden)
	return v
}

// baseParams lists the tower's and projector's weights in checkpoint order.
func (v *Gemma3Vision) baseParams() []*Param {
	ps := []*Param{v.PatchW, v.PatchB, v.PosEmb}
	for _, l := range v.Layers {
		ps = append(ps, l.LN1W, l.LN1B)
		for _, lin := range []*Linear{l.Q, l.K, l.V, l.O} {
			ps = append(ps, lin.W, lin.B)
		}
		ps = append(ps, l.LN2W, l.LN2B, l.FC1.W, l.FC1.B, l.FC2.W, l.FC2.B)
	}
	return append(ps, v.PostW, v.PostB, v.ProjNorm, v.Proj)
}

// TowerParams lists the vision tower's weights (not the projector's).
func (v *Gemma3Vision) TowerParams() []*Param {
	ps := v.baseParams()
	return ps[:len(ps)-2]
}

// ProjectorParams lists mm_soft_emb_norm's weight and the projection.
func (v *Gemma3Vision) ProjectorParams() []*Param { return []*Param{v.ProjNorm, v.Proj} }

// loraParams lists the projector adapter's A and B, if any, then the
// tower adapters' (lora.vision_layers).
func (v *Gemma3Vision) loraParams() []*Param {
	if v == nil {
		return nil
	}
	var ps []*Param
	if v.ProjLoRA != nil {
		ps = append(ps, v.ProjLoRA.A, v.ProjLoRA.B)
	}
	return append(ps, v.towerLoRAParams()...)
}

// gemma3VisionLayouts is every place a checkpoint keeps the tower and the
// projector: whet's names are the released checkpoints' (the first row);
// a file is read in the first layout whose patch embedding it holds, and
// every other tower and projector tensor must then be under that layout.
var gemma3VisionLayouts = []struct{ what, tower, projector string }{
	{"the released checkpoints' names (transformers 4)", gemma3VisionPrefix, gemma3ProjectorPrefix},
	{"transformers 5's module names", "model." + gemma3VisionPrefix, "model." + gemma3ProjectorPrefix},
	// transformers 5.17 keeps SigLIP's layers on SiglipVisionModel itself
	// (no vision_model. under vision_tower.) and saves them so.
	{"transformers 5.17's saved names", "vision_tower.", gemma3ProjectorPrefix},
	{"transformers 5.17's module names", "model.vision_tower.", "model." + gemma3ProjectorPrefix},
}

// gemma3VisionFileName is the name of whet's tower or projector tensor in
// layout l (whet's name unchanged when it is neither).
func gemma3VisionFileName(l int, name string) string {
	if rest, ok := strings.CutPrefix(name, gemma3VisionPrefix); ok {
		return gemma3VisionLayouts[l].tower + rest
	}
	if rest, ok := strings.CutPrefix(name, gemma3ProjectorPrefix); ok {
		return gemma3VisionLayouts[l].projector + rest
	}
	return name
}

// Gemma3VisionLayout finds the layout of src's tower (the first row of
// gemma3VisionLayouts whose patch embedding src holds): its index and a
// description, or ok false when src holds no tower under any of them.
func Gemma3VisionLayout(has func(name string) bool) (layout int, what string, ok bool) {
	for i, l := range gemma3VisionLayouts {
		if has(gemma3VisionFileName(i, gemma3VisionPrefix+"embeddings.patch_embedding.weight")) {
			return i, l.what, true
		}
	}
	return 0, "", false
}

// Gemma3VisionFileName maps whet's name of a tower or projector tensor
// (vision_tower.vision_model.…, multi_modal_projector.…) to its name in
// the file whose layout Gemma3VisionLayout found.
func Gemma3VisionFileName(layout int, name string) string { return gemma3VisionFileName(layout, name) }

// gemma3VisionSource reads whet's tower and projector tensors from a file
// in one of gemma3VisionLayouts.
type gemma3VisionSource struct {
	WeightSource
	layout int
}

func newGemma3VisionSource(src WeightSource) (gemma3VisionSource, bool) {
	l, _, ok := Gemma3VisionLayout(func(n string) bool { _, ok := src.Shape(n); return ok })
	return gemma3VisionSource{src, l}, ok
}

func (s gemma3VisionSource) resolve(name string) string { return gemma3VisionFileName(s.layout, name) }

func (s gemma3VisionSource) Shape(name string) ([]int, bool) {
	return s.WeightSource.Shape(s.resolve(name))
}
func (s gemma3VisionSource) Float32(name string) ([]float32, error) {
	return s.WeightSource.Float32(s.resolve(name))
}
func (s gemma3VisionSource) Where(name string) string { return s.WeightSource.Where(s.resolve(name)) }

// check names the file's tensor when it is missing or misshapen.
func (s gemma3VisionSource) check(p *Param) error {
	fn := s.resolve(p.Name)
	shape, ok := s.WeightSource.Shape(fn)
	if !ok {
		return fmt.Errorf("%s: missing tensor %s (a gemma3 (vision) model needs it; the file keeps its tower in %s)", s.Where(p.Name), fn, gemma3VisionLayouts[s.layout].what)
	}
	if !slices.Equal(shape, p.Shape) {
		return fmt.Errorf("%s: tensor %s has shape %v, config.json implies %v", s.Where(p.Name), fn, shape, p.Shape)
	}
	return nil
}

// HasGemma3VisionWeights reports whether src holds a Gemma 3 vision tower
// (its patch embedding) in any of the known layouts.
func HasGemma3VisionWeights(src WeightSource) bool {
	_, ok := newGemma3VisionSource(src)
	return ok
}

// LoadGemma3Vision loads a Gemma 3 multimodal folder with its vision
// tower and projector (LoadModelWith with ModelOptions.Gemma3Vision).
func LoadGemma3Vision(dir string, b Backend, o ModelOptions) (*Model, error) {
	o.Gemma3Vision = true
	return LoadModelWith(dir, b, o)
}

// loadGemma3Vision attaches the vision tower and projector of a Gemma 3
// multimodal folder to m; a folder that is not one (model_type gemma3 with
// the tower's tensors) is refused by name. Every tensor is checked (name
// and shape) before anything is allocated.
func (m *Model) loadGemma3Vision(dir string, src WeightSource) error {
	if m.Cfg.ModelType != "gemma3" {
		return fmt.Errorf("%s: model_type %s has no Gemma 3 vision tower (want gemma3)", dir, m.Cfg.ModelType)
	}
	if !HasGemma3VisionWeights(src) {
		var names []string
		for i := range gemma3VisionLayouts {
			names = append(names, gemma3VisionFileName(i, gemma3VisionPrefix+"embeddings.patch_embedding.weight"))
		}
		return fmt.Errorf("%s: no vision tower: missing tensor %s (a text-only Gemma 3 checkpoint?)", dir, strings.Join(names, " or "))
	}
	data, err := os.ReadFile(filepath.Join(dir, "config.json"))
	if err != nil {
		return err
	}
	cfg, err := ParseGemma3VisionConfig(data, m.Cfg.HiddenSize)
	if err != nil {
		return fmt.Errorf("%s: %w", dir, err)
	}
	return m.AttachGemma3Vision(cfg, src)
}

// AttachGemma3Vision lays out the tower and projector of cfg on m's
// backend and fills them from src (released or transformers 5 names);
// with a nil src the weights are left uninitialised.
func (m *Model) AttachGemma3Vision(cfg *Gemma3VisionConfig, src WeightSource) error {
	if err := cfg.validate(); err != nil {
		return err
	}
	if cfg.TextHidden != m.Cfg.HiddenSize {
		return fmt.Errorf("gemma3 vision: the projector writes %d values per token, the language model's hidden size is %d", cfg.TextHidden, m.Cfg.HiddenSize)
	}
	if int(cfg.ImageTokenID) >= m.Cfg.VocabSize {
		return fmt.Errorf("gemma3 vision: image_token_index %d is outside the vocabulary (%d)", cfg.ImageTokenID, m.Cfg.VocabSize)
	}
	v := cfg.layout()
	if src != nil {
		vs, ok := newGemma3VisionSource(src)
		if !ok {
			return fmt.Errorf("%s: missing tensor %sembeddings.patch_embedding.weight (a gemma3 (vision) model needs it)", src.Where(gemma3VisionPrefix+"embeddings.patch_embedding.weight"), gemma3VisionPrefix)
		}
		for _, p := range v.baseParams() {
			if err := vs.check(p); err != nil {
				return err
			}
		}
		src = vs
	}
	var done []*Param
	for _, p := range v.baseParams() {
		w, err := m.B.Alloc(m.Compute, p.Shape...)
		if err != nil {
			for _, q := range done {
				m.B.Free(q.W)
			}
			return fmt.Errorf("allocate %s %v: %w", p.Name, p.Shape, err)
		}
		p.W = w
		done = append(done, p)
	}
	m.Gemma3Vision = v
	if src == nil {
		return nil
	}
	for _, p := range v.baseParams() {
		data, err := src.Float32(p.Name)
		if err != nil {
			return fmt.Errorf("%s: read %s: %w", src.Where(p.Name), p.Name, err)
		}
		if err := m.setValues(p, data); err != nil {
			return err
		}
	}
	return nil
}

// AddGemma3ProjectorLoRA puts a LoRA adapter on the projector's matrix
// (o.Targets is not read): A [r, Dv] random as PEFT initialises it, B zero.
func (m *Model) AddGemma3ProjectorLoRA(o LoRAOptions) error {
	v := m.Gemma3Vision
	if v == nil {
		return fmt.Errorf("the model has no Gemma 3 vision projector to adapt")
	}
	if v.ProjLoRA != nil {
		return fmt.Errorf("%s already has a LoRA adapter", Gemma3ProjectorModule)
	}
	if o.Rank <= 0 {
		return fmt.Errorf("lora rank %d must be positive", o.Rank)
	}
	Dv, Dt := v.Cfg.Hidden, v.Cfg.TextHidden
	a, err := m.newParam(Gemma3ProjectorModule+".lora_A.weight", o.Rank, Dv)
	if err != nil {
		return err
	}
	b, err := m.newParam(Gemma3ProjectorModule+".lora_B.weight", Dt, o.Rank)
	if err != nil {
		m.B.Free(a.W)
		return err
	}
	// kaiming_uniform(a=sqrt(5)) over fan_in Dv: U(-1/sqrt(Dv), 1/sqrt(Dv)).
	bound := 1 / math.Sqrt(float64(Dv))
	vals := make([]float32, o.Rank*Dv)
	rng := rand.New(rand.NewPCG(o.Seed, 0x10b))
	for i := range vals {
		vals[i] = float32((rng.Float64()*2 - 1) * bound)
	}
	if err := m.B.Upload(a.W, vals); err != nil {
		return err
	}
	if err := m.B.Fill(b.W, 0); err != nil {
		return err
	}
	for _, p := range []*Param{a, b} {
		if err := m.MakeTrainable(p); err != nil {
			return err
		}
	}
	v.ProjLoRA = &LoRA{A: a, B: b, Rank: o.Rank, Scale: o.LoRAScale(), Enabled: true}
	return nil
}

// Gemma3VisionLayersModule is the prefix of the tower's linear layers' names
// (whet's and the released checkpoints'), for LoRA on them.
const Gemma3VisionLayersModule = gemma3VisionPrefix + "encoder.layers."

// TowerLinears lists the tower's linear layers (q, k, v, out_proj, fc1,
// fc2 of each encoder layer, in order).
func (v *Gemma3Vision) TowerLinears() []*Linear {
	var out []*Linear
	for _, l := range v.Layers {
		out = append(out, l.Q, l.K, l.V, l.O, l.FC1, l.FC2)
	}
	return out
}

// towerLoRARank is the rank of the tower's adapters (0 without any).
func (v *Gemma3Vision) towerLoRARank() int {
	for _, lin := range v.TowerLinears() {
		if lin.LoRA != nil {
			return lin.LoRA.Rank
		}
	}
	return 0
}

// HasTowerLoRA reports whether the tower's linear layers carry adapters
// (lora.vision_layers).
func (v *Gemma3Vision) HasTowerLoRA() bool { return v != nil && v.towerLoRARank() > 0 }

// towerLoRAParams lists the tower adapters' A and B, layer by layer.
func (v *Gemma3Vision) towerLoRAParams() []*Param {
	if v == nil {
		return nil
	}
	var ps []*Param
	for _, lin := range v.TowerLinears() {
		if lin.LoRA != nil {
			ps = append(ps, lin.LoRA.A, lin.LoRA.B)
		}
	}
	return ps
}

// AddGemma3VisionLayersLoRA puts a LoRA adapter on every linear layer of
// the vision tower (attention q/k/v/out_proj and the MLP's fc1/fc2: Unsloth's
// finetune_vision_layers; o.Targets is not read): A [r, in] random as PEFT
// initialises it, B zero, no dropout. The tower's weights stay frozen;
// the tower then keeps its activations for the backward.
func (m *Model) AddGemma3VisionLayersLoRA(o LoRAOptions) error {
	v := m.Gemma3Vision
	if v == nil {
		return fmt.Errorf("the model has no Gemma 3 vision tower to adapt")
	}
	if v.HasTowerLoRA() {
		return fmt.Errorf("the vision tower's layers already have LoRA adapters")
	}
	if o.Rank <= 0 {
		return fmt.Errorf("lora rank %d must be positive", o.Rank)
	}
	rng := rand.New(rand.NewPCG(o.Seed, 0x51e))
	var made []*Param
	fail := func(err error) error {
		for _, p := range made {
			m.B.Free(p.W)
		}
		return err
	}
	for _, lin := range v.TowerLinears() {
		a, err := m.newParam(lin.Module+".lora_A.weight", o.Rank, lin.In)
		if err != nil {
			return fail(err)
		}
		made = append(made, a)
		b, err := m.newParam(lin.Module+".lora_B.weight", lin.Out, o.Rank)
		if err != nil {
			return fail(err)
		}
		made = append(made, b)
		bound := 1 / math.Sqrt(float64(lin.In))
		vals := make([]float32, o.Rank*lin.In)
		for i := range vals {
			vals[i] = float32((rng.Float64()*2 - 1) * bound)
		}
		if err := m.B.Upload(a.W, vals); err != nil {
			return fail(err)
		}
		if err := m.B.Fill(b.W, 0); err != nil {
			return fail(err)
		}
	}
	// Only now trainable (a failure above leaves the model as it was).
	for i, lin := range v.TowerLinears() {
		a, b := made[2*i], made[2*i+1]
		for _, p := range []*Param{a, b} {
			if err := m.MakeTrainable(p); err != nil {
				return fmt.Errorf("vision layers' lora: %w", err)
			}
		}
		lin.LoRA = &LoRA{A: a, B: b, Rank: o.Rank, Scale: o.LoRAScale(), Enabled: true}
	}
	return nil
}

// Gemma3Patches rearranges pixel values [n, C, S, S] (channel first, as the
// processor gives them) into the patch rows the tower's patch embedding
// multiplies: row i*P + py*(S/p) + px holds image i's patch (py, px) as
// c*p*p + ky*p + kx, the order of the conv weight [Dv, C, p, p].
func (c *Gemma3VisionConfig) Gemma3Patches(pixels []float32, n int) ([]float32, error) {
	if n <= 0 || len(pixels) != n*c.PixelsPerImage() {
		return nil, fmt.Errorf("gemma3 vision: %d pixel values for %d images of %d×%d×%d", len(pixels), n, c.Channels, c.ImageSize, c.ImageSize)
	}
	S, p, side := c.ImageSize, c.PatchSize, c.PatchesPerSide()
	P, K := c.NumPatches(), c.PatchDim()
	out := make([]float32, n*P*K)
	for i := 0; i < n; i++ {
		img := pixels[i*c.PixelsPerImage():]
		for py := 0; py < side; py++ {
			for px := 0; px < side; px++ {
				row := out[(i*P+py*side+px)*K:]
				for ch := 0; ch < c.Channels; ch++ {
					for ky := 0; ky < p; ky++ {
						src := img[ch*S*S+(py*p+ky)*S+px*p:]
						copy(row[ch*p*p+ky*p:ch*p*p+ky*p+p], src[:p])
					}
				}
			}
		}
	}
	return out, nil
}

// poolMatrix is the average pool as a matrix [M, P]: token (oy, ox) takes
// 1/k² of each patch (py, px) with py/k = oy and px/k = ox.
func (c *Gemma3VisionConfig) poolMatrix() []float32 {
	P, M, side, k, ts := c.NumPatches(), c.TokensPerImage, c.PatchesPerSide(), c.PoolKernel(), c.TokensPerSide()
	out := make([]float32, M*P)
	w := float32(1 / float64(k*k))
	for py := 0; py < side; py++ {
		for px := 0; px < side; px++ {
			out[((py/k)*ts+px/k)*P+py*side+px] = w
		}
	}
	return out
}

// imageRuns finds the runs of image tokens of each sequence: [start, end)
// token ranges, in order. Runs never cross a sequence boundary.
func imageRuns(tokens []int32, seqStarts []int32, imageID int32) [][2]int {
	var runs [][2]int
	for s := 0; s+1 < len(seqStarts); s++ {
		lo, hi := int(seqStarts[s]), int(seqStarts[s+1])
		for i := lo; i < hi; {
			if tokens[i] != imageID {
				i++
				continue
			}
			j := i
			for j < hi && tokens[j] == imageID {
				j++
			}
			runs = append(runs, [2]int{i, j})
			i = j
		}
	}
	return runs
}

// describeRuns is a short account of runs for error messages.
func describeRuns(runs [][2]int) string {
	var parts []string
	for i, r := range runs {
		if i == 6 {
			parts = append(parts, fmt.Sprintf("… (%d runs)", len(runs)))
			break
		}
		parts = append(parts, fmt.Sprintf("[%d,%d)", r[0], r[1]))
	}
	return strings.Join(parts, " ")
}
