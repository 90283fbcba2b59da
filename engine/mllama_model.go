package engine

import (
	"fmt"
	"math"
	"slices"
	"strings"

	"whet/engine/envswitch"
	"whet/engine/safetensors"
)

// MllamaModel is a bound Llama 3.2 Vision model on a backend. Parameters
// carry the released checkpoint's tensor names (language_model.model.*,
// language_model.lm_head.weight, vision_model.*, multi_modal_projector.*);
// transformers 5's spellings (model.language_model.*, lm_head.weight,
// model.vision_model.*, model.multi_modal_projector.*) load too. It runs on
// a backend with MllamaOps (the CPU and CUDA backends) in float32, or, with
// MllamaOptions.Compute BF16, with its weights and activations in bf16
// (the text families' rules: float32 masters, gradients and moments for
// what trains, float32 norm statistics, lse, logits and losses).
type MllamaModel struct {
	Cfg MllamaConfig
	B   Backend
	ops MllamaOps
	// Compute is the dtype of the base weights (NF4 ones aside), the
	// adapters' compute copies and the activations: F32 or BF16.
	Compute DType

	Embed  *Param // [vocab+8, D]
	Layers []*MllamaTextLayer
	Norm   *Param
	Head   *Linear

	Vision    *MllamaVision
	Projector *Linear // [D, vision OutputDim] with bias

	// Checkpointing keeps only each language-model layer's input through
	// a training pass's forward and runs the layer's forward again in the
	// backward (train.checkpointing): one layer's activations at a time
	// instead of every layer's. Forward-only runs are unaffected.
	Checkpointing bool

	// LogitsRows is the rows the final norm, the LM head and the
	// cross-entropy run at once, LogitsChunk's request: the run config's
	// train.logits_chunk (memplan.Options.LogitsChunk), 0 for the
	// engine's rule. Run never holds [tokens, vocab] logits on the backend.
	LogitsRows int

	params []*Param
	// gates caches tanh of every scalar gate (frozen gates only: the
	// vision tower's, and the text gates until they are made trainable).
	gates map[*Param]float32
}

// MllamaTextLayer is one language-model layer: a Llama self-attention
// block, or (Cross) a cross-attention block whose q/k/v/o are
// cross_attn.*, with per-head q/k norms and tanh gates on both branches.
type MllamaTextLayer struct {
	Index             int
	Cross             bool
	AttnNorm, MLPNorm *Param
	QNorm, KNorm      *Param // cross only, [head_dim]
	Q, K, V, O        *Linear
	Gate, Up, Down    *Linear
	AttnGate, MLPGate *Param // cross only, [1]
}

func (l *MllamaTextLayer) linears() []*Linear {
	return []*Linear{l.Q, l.K, l.V, l.O, l.Gate, l.Up, l.Down}
}

// MllamaVision is the vision tower.
type MllamaVision struct {
	PatchEmbed *Param // [hidden, channels, patch, patch]
	Class      *Param // [hidden]
	// gated_positional_embedding: (1 - tanh g) * PosEmbed + tanh g * TileEmbed[aspect id].
	PosGate, PosEmbed, TileEmbed *Param
	// pre/post_tile_positional_embedding: tanh g * Embedding[aspect id][tile].
	PreTile, PreTileGate, PostTile, PostTileGate *Param
	LNPreW, LNPreB, LNPostW, LNPostB             *Param
	Local, Global                                []*MllamaVisionLayer
}

// MllamaVisionLayer is one encoder layer (pre-LayerNorm, exact-GELU MLP
// with biases; the global ones gate both branches with tanh).
type MllamaVisionLayer struct {
	LN1W, LN1B, LN2W, LN2B *Param
	Q, K, V, O, FC1, FC2   *Linear
	GateAttn, GateFFN      *Param // global layers only
}

// mllamaSpellings maps a released-checkpoint name to the other spellings
// a checkpoint may use (transformers 5's).
func mllamaSpellings(name string) []string {
	out := []string{name}
	for _, p := range [][2]string{
		{"language_model.model.", "model.language_model."},
		{"language_model.lm_head.", "lm_head."},
		{"vision_model.", "model.vision_model."},
		{"multi_modal_projector.", "model.multi_modal_projector."},
	} {
		if rest, ok := strings.CutPrefix(name, p[0]); ok {
			out = append(out, p[1]+rest)
		}
	}
	return out
}

// MllamaOptions change how an Mllama model's weights are held.
type MllamaOptions struct {
	// NF4Linears stores the frozen language-model linears (self- and
	// cross-attention q/k/v/o, gate/up/down of every layer) in NF4, as
	// ModelOptions.NF4Linears does for a text model (QLoRA): quantized on
	// the host as they are loaded, expanded one at a time for the products.
	// The embeddings, norms, gates, LM head, projector and vision tower
	// stay in the compute dtype.
	NF4Linears bool
	// Compute is the dtype the model computes in: F32 (the zero value:
	// float32 throughout, the CPU oracle's) or BF16 (weights and
	// activations bf16 with float32 accumulation, as the text families
	// and Gemma 3 vision run on CUDA; MllamaComputeDType picks it).
	Compute DType
}

// MllamaBF16Env is the environment variable that keeps Llama 3.2 Vision
// in float32 on a backend that computes in bf16 (the CUDA backend):
// WHET_MLLAMA_BF16=0. bf16 is the default there since tools/gpu/mllama-bf16
// passed on an H100 (TestMllamaBF16MatchesCPU: logits within 1.9 % of the
// CPU's float32, as the CPU's own bf16 emulation; the 11B QLoRA step at
// 17.50 GB against its plan's 18.42 GB and 64.6 tok/s, float32's 28.37 GB
// and 46.9 tok/s).
const MllamaBF16Env = "WHET_MLLAMA_BF16"

// MllamaComputeDType is the dtype an Mllama model computes in on b: BF16
// when b computes in bf16 (engine.ComputeDTyper) unless
// WHET_MLLAMA_BF16=0, else F32. A memory plan for an Mllama run should
// count this dtype (VisionComputeDType says the same by backend name).
func MllamaComputeDType(b Backend) DType {
	if envswitch.On(MllamaBF16Env) && computeDType(b) == BF16 {
		return BF16
	}
	return F32
}

// layoutMllama names and shapes every parameter; nothing is allocated.
func layoutMllama(cfg MllamaConfig, o MllamaOptions) *MllamaModel {
	m := &MllamaModel{Cfg: cfg, gates: map[*Param]float32{}}
	p := func(name string, shape ...int) *Param {
		pr := &Param{Name: name, Shape: shape}
		m.params = append(m.params, pr)
		return pr
	}
	nd := func(name string, shape ...int) *Param {
		pr := p(name, shape...)
		pr.NoDecay = true
		return pr
	}
	lin := func(module, short string, out, in int, bias bool) *Linear {
		l := &Linear{Module: module, Short: short, In: in, Out: out, W: p(module+".weight", out, in)}
		if bias {
			l.B = nd(module+".bias", out)
		}
		return l
	}
	t := &cfg.Text
	D, hd := t.HiddenSize, t.HeadDim
	m.Embed = p("language_model.model.embed_tokens.weight", cfg.EmbedRows(), D)
	for i := 0; i < t.NumLayers; i++ {
		pre := fmt.Sprintf("language_model.model.layers.%d.", i)
		L := &MllamaTextLayer{Index: i, Cross: cfg.IsCross(i)}
		lin := lin
		if o.NF4Linears {
			f32 := lin
			lin = func(module, short string, out, in int, bias bool) *Linear {
				l := f32(module, short, out, in, bias)
				l.W.Quant = &QuantState{} // W stays nil
				return l
			}
		}
		L.AttnNorm = nd(pre+"input_layernorm.weight", D)
		att := pre + "self_attn."
		if L.Cross {
			att = pre + "cross_attn."
		}
		L.Q = lin(att+"q_proj", "q", t.NumHeads*hd, D, false)
		L.K = lin(att+"k_proj", "k", t.KVDim(), D, false)
		L.V = lin(att+"v_proj", "v", t.KVDim(), D, false)
		L.O = lin(att+"o_proj", "o", D, t.NumHeads*hd, false)
		if L.Cross {
			L.QNorm = nd(att+"q_norm.weight", hd)
			L.KNorm = nd(att+"k_norm.weight", hd)
			L.AttnGate = nd(pre+"cross_attn_attn_gate", 1)
		}
		L.MLPNorm = nd(pre+"post_attention_layernorm.weight", D)
		L.Gate = lin(pre+"mlp.gate_proj", "gate", t.IntermediateSize, D, false)
		L.Up = lin(pre+"mlp.up_proj", "up", t.IntermediateSize, D, false)
		L.Down = lin(pre+"mlp.down_proj", "down", D, t.IntermediateSize, false)
		if L.Cross {
			L.MLPGate = nd(pre+"cross_attn_mlp_gate", 1)
		}
		m.Layers = append(m.Layers, L)
	}
	m.Norm = nd("language_model.model.norm.weight", D)
	m.Head = lin("language_model.lm_head", "lm_head", t.VocabSize, D, false)

	v := &cfg.Vision
	H, P := v.Hidden, v.Patches()
	nAR := len(v.AspectRatios) + 1
	V := &MllamaVision{}
	V.PatchEmbed = p("vision_model.patch_embedding.weight", H, v.Channels, v.PatchSize, v.PatchSize)
	V.Class = p("vision_model.class_embedding", H)
	V.PosGate = nd("vision_model.gated_positional_embedding.gate", 1)
	V.PosEmbed = p("vision_model.gated_positional_embedding.embedding", P, H)
	V.TileEmbed = p("vision_model.gated_positional_embedding.tile_embedding.weight", nAR, v.MaxTiles*P*H)
	V.PreTile = p("vision_model.pre_tile_positional_embedding.embedding.weight", nAR, v.MaxTiles*H)
	V.PreTileGate = nd("vision_model.pre_tile_positional_embedding.gate", 1)
	V.PostTile = p("vision_model.post_tile_positional_embedding.embedding.weight", nAR, v.MaxTiles*H)
	V.PostTileGate = nd("vision_model.post_tile_positional_embedding.gate", 1)
	V.LNPreW, V.LNPreB = nd("vision_model.layernorm_pre.weight", H), nd("vision_model.layernorm_pre.bias", H)
	V.LNPostW, V.LNPostB = nd("vision_model.layernorm_post.weight", H), nd("vision_model.layernorm_post.bias", H)
	enc := func(name string, n int, gated bool) []*MllamaVisionLayer {
		var out []*MllamaVisionLayer
		for i := 0; i < n; i++ {
			pre := fmt.Sprintf("vision_model.%s.layers.%d.", name, i)
			L := &MllamaVisionLayer{}
			L.Q = lin(pre+"self_attn.q_proj", "q", H, H, false)
			L.K = lin(pre+"self_attn.k_proj", "k", H, H, false)
			L.V = lin(pre+"self_attn.v_proj", "v", H, H, false)
			L.O = lin(pre+"self_attn.o_proj", "o", H, H, false)
			L.FC1 = lin(pre+"mlp.fc1", "fc1", v.Intermediate, H, true)
			L.FC2 = lin(pre+"mlp.fc2", "fc2", H, v.Intermediate, true)
			L.LN1W, L.LN1B = nd(pre+"input_layernorm.weight", H), nd(pre+"input_layernorm.bias", H)
			L.LN2W, L.LN2B = nd(pre+"post_attention_layernorm.weight", H), nd(pre+"post_attention_layernorm.bias", H)
			if gated {
				L.GateAttn, L.GateFFN = nd(pre+"gate_attn", 1), nd(pre+"gate_ffn", 1)
			}
			out = append(out, L)
		}
		return out
	}
	V.Local = enc("transformer", v.Layers, false)
	V.Global = enc("global_transformer", v.GlobalLayers, true)
	m.Vision = V
	m.Projector = lin("multi_modal_projector", "projector", D, v.OutputDim, true)
	return m
}

// Params lists every base parameter (in checkpoint order) and then the
// LoRA adapters.
func (m *MllamaModel) Params() []*Param {
	out := append([]*Param(nil), m.params...)
	for _, lin := range m.loraLinears() {
		if lin.LoRA != nil {
			out = append(out, lin.LoRA.A, lin.LoRA.B)
		}
	}
	return out
}

// loraLinears are the linears LoRA may adapt: every language-model layer's
// q/k/v/o/gate/up/down (cross-attention layers included), then the projector.
func (m *MllamaModel) loraLinears() []*Linear {
	var out []*Linear
	for _, L := range m.Layers {
		out = append(out, L.linears()...)
	}
	return append(out, m.Projector)
}

// NewMllamaModel allocates an unbound model (every base weight, float32).
func NewMllamaModel(cfg MllamaConfig, b Backend) (*MllamaModel, error) {
	return newMllama(cfg, b, nil, MllamaOptions{})
}

// NewMllamaModelWith is NewMllamaModel with options.
func NewMllamaModelWith(cfg MllamaConfig, b Backend, o MllamaOptions) (*MllamaModel, error) {
	return newMllama(cfg, b, nil, o)
}

func newMllama(cfg MllamaConfig, b Backend, src WeightSource, o MllamaOptions) (*MllamaModel, error) {
	ops, ok := b.(MllamaOps)
	if !ok {
		return nil, fmt.Errorf("backend %s cannot run Llama 3.2 Vision (Mllama): it lacks the vision ops (LayerNorm, GELU, attention under a mask)", b.Name())
	}
	if _, ok := b.(NF4Dequantizer); o.NF4Linears && !ok {
		return nil, fmt.Errorf("backend %s cannot dequantize NF4 weights (QLoRA)", b.Name())
	}
	if o.Compute != F32 && o.Compute != BF16 {
		return nil, fmt.Errorf("mllama: compute dtype %s: want f32 or bf16", o.Compute)
	}
	// Counted before the layout, which takes host memory per layer.
	bytes, ok := cfg.weightBytes()
	if !ok {
		return nil, fmt.Errorf("model config: the Mllama weights' size overflows")
	}
	what := "float32"
	if o.Compute == BF16 {
		// weightBytes counts 4 bytes a value; bf16 takes 2.
		bytes /= 2
		what = "bf16"
	}
	if o.NF4Linears {
		// The language model's linears take half a byte a value and a
		// float32 absmax a block, not 2 or 4 bytes (their count is part
		// of weightBytes', so it does not overflow).
		t := &cfg.Text
		D := int64(t.HiddenSize)
		n := int64(t.NumLayers) * (2*D*int64(t.NumHeads*t.HeadDim) + 2*D*int64(t.KVDim()) + 3*D*int64(t.IntermediateSize))
		bytes -= int64(o.Compute.Size())*n - n/2 - 4*(n/NF4BlockSize)
		what = "NF4 and " + what
	}
	if fr, isFR := b.(FreeMemoryReporter); isFR {
		if free, _, err := fr.MemInfo(); err == nil && bytes > free {
			return nil, fmt.Errorf("the Mllama model's %s weights need %d bytes, but backend %s has %d free", what, bytes, b.Name(), free)
		}
	}
	m := layoutMllama(cfg, o)
	m.B, m.ops, m.Compute = b, ops, o.Compute
	for _, p := range m.params {
		if n := numel(p.Shape); p.Quant != nil && n%NF4BlockSize != 0 {
			return nil, fmt.Errorf("qlora: %s %v holds %d values, not a whole number of %d-value NF4 blocks", p.Name, p.Shape, n, NF4BlockSize)
		}
	}
	if src != nil {
		for _, p := range m.params {
			if err := checkMllamaShape(src, p); err != nil {
				return nil, err
			}
		}
	}
	for _, p := range m.params {
		if p.Quant != nil {
			n := numel(p.Shape)
			var err error
			if p.Quant.Packed, err = b.Alloc(I32, n/8); err == nil {
				p.Quant.Absmax, err = b.Alloc(F32, n/NF4BlockSize)
			}
			if err != nil {
				m.Free()
				return nil, fmt.Errorf("allocate %s (nf4): %w", p.Name, err)
			}
			continue
		}
		t, err := b.Alloc(o.Compute, p.Shape...)
		if err != nil {
			m.Free()
			return nil, fmt.Errorf("allocate %s %v: %w", p.Name, p.Shape, err)
		}
		p.W = t
	}
	return m, nil
}

// resolveMllama finds the spelling of name that src holds.
func resolveMllama(src WeightSource, name string) (string, []int, bool) {
	for _, n := range mllamaSpellings(name) {
		if s, ok := src.Shape(n); ok {
			return n, s, true
		}
	}
	return name, nil, false
}

func checkMllamaShape(src WeightSource, p *Param) error {
	n, shape, ok := resolveMllama(src, p.Name)
	if !ok {
		return fmt.Errorf("%s: missing tensor %s (an Mllama checkpoint has it; also looked for %s)",
			src.Where(n), p.Name, strings.Join(mllamaSpellings(p.Name)[1:], ", "))
	}
	if !slices.Equal(shape, p.Shape) && !sameRows(shape, p.Shape, p.Name) {
		return fmt.Errorf("%s: tensor %s has shape %v, config.json asks for %v", src.Where(n), n, shape, p.Shape)
	}
	return nil
}

// sameRows accepts the aspect-ratio embedding tables written with their
// rows unflattened (early conversions kept tile_embedding as
// [ids, tiles, patches, hidden] and the tile embeddings as [ids, tiles, 1,
// hidden]): the same values in the same order.
func sameRows(got, want []int, name string) bool {
	if !strings.HasSuffix(name, "embedding.weight") || len(got) < 2 || len(want) != 2 || got[0] != want[0] {
		return false
	}
	n := 1
	for _, d := range got[1:] {
		if d <= 0 || n > want[1] {
			return false
		}
		n *= d
	}
	return n == want[1]
}

// LoadWeights uploads every base weight from src (shapes checked first).
func (m *MllamaModel) LoadWeights(src WeightSource) error {
	for _, p := range m.params {
		if err := checkMllamaShape(src, p); err != nil {
			return err
		}
	}
	for _, p := range m.params {
		n, _, _ := resolveMllama(src, p.Name)
		v, err := src.Float32(n)
		if err != nil {
			return fmt.Errorf("%s: tensor %s: %w", src.Where(n), n, err)
		}
		if err := m.SetValues(p, v); err != nil {
			return err
		}
	}
	return m.cacheGates()
}

// SetValues writes host values into a parameter: a base weight's are
// uploaded as they are (rounded to bf16 in a bf16 model), or, for an NF4
// one, quantized on the host and stored packed (the text model's
// QuantizeNF4 and layout); a trainable one with a float32 master (an
// adapter of a bf16 model) gets them in its master and its compute copy
// refreshed from it.
func (m *MllamaModel) SetValues(p *Param, v []float32) error {
	if p.Quant == nil {
		dst := p.W
		if p.Master != nil {
			dst = p.Master
		}
		if err := m.B.Upload(dst, v); err != nil {
			return fmt.Errorf("upload %s: %w", p.Name, err)
		}
		if dst != p.W {
			if err := m.B.Copy(p.W, dst); err != nil {
				return fmt.Errorf("upload %s: refresh its compute copy: %w", p.Name, err)
			}
		}
		return nil
	}
	packed, absmax, err := QuantizeNF4(v)
	if err != nil {
		return fmt.Errorf("qlora: %s: %w", p.Name, err)
	}
	if err := m.B.UploadInt32(p.Quant.Packed, PackNF4Words(packed)); err != nil {
		return fmt.Errorf("upload %s (nf4): %w", p.Name, err)
	}
	if err := m.B.Upload(p.Quant.Absmax, absmax); err != nil {
		return fmt.Errorf("upload %s (nf4 absmax): %w", p.Name, err)
	}
	return nil
}

// WeightValues returns a parameter's values on the host: the dequantized
// values of an NF4 one, a trainable one's float32 master, else W.
func (m *MllamaModel) WeightValues(p *Param) ([]float32, error) {
	v := make([]float32, numel(p.Shape))
	if p.Quant == nil {
		src := p.W
		if p.Master != nil {
			src = p.Master
		}
		if err := m.B.Download(src, v); err != nil {
			return nil, fmt.Errorf("download %s: %w", p.Name, err)
		}
		return v, nil
	}
	tmp, err := m.B.Alloc(F32, len(v))
	if err != nil {
		return nil, fmt.Errorf("dequantize %s: %w", p.Name, err)
	}
	defer m.B.Free(tmp)
	if err := m.B.(NF4Dequantizer).DequantizeNF4(tmp, p.Quant.Packed, p.Quant.Absmax); err != nil {
		return nil, fmt.Errorf("dequantize %s: %w", p.Name, err)
	}
	if err := m.B.Download(tmp, v); err != nil {
		return nil, fmt.Errorf("download %s: %w", p.Name, err)
	}
	return v, nil
}

// cacheGates reads every scalar gate's tanh.
func (m *MllamaModel) cacheGates() error {
	v := m.Vision
	gs := []*Param{v.PosGate, v.PreTileGate, v.PostTileGate}
	for _, L := range v.Global {
		gs = append(gs, L.GateAttn, L.GateFFN)
	}
	for _, L := range m.Layers {
		if L.Cross {
			gs = append(gs, L.AttnGate, L.MLPGate)
		}
	}
	for _, g := range gs {
		x := make([]float32, 1)
		if err := m.B.Download(g.W, x); err != nil {
			return fmt.Errorf("read gate %s: %w", g.Name, err)
		}
		if math.IsNaN(float64(x[0])) || math.IsInf(float64(x[0]), 0) {
			return fmt.Errorf("gate %s is %v", g.Name, x[0])
		}
		m.gates[g] = float32(math.Tanh(float64(x[0])))
	}
	return nil
}

// LoadMllama reads an Mllama folder's config.json and safetensors weights onto b.
func LoadMllama(dir string, b Backend) (*MllamaModel, error) {
	return LoadMllamaWith(dir, b, MllamaOptions{})
}

// LoadMllamaWith is LoadMllama with options (NF4Linears: QLoRA's base).
func LoadMllamaWith(dir string, b Backend, o MllamaOptions) (*MllamaModel, error) {
	cfg, err := LoadMllamaConfig(dir)
	if err != nil {
		return nil, err
	}
	set, err := safetensors.OpenDir(dir)
	if err != nil {
		return nil, err
	}
	defer set.Close()
	m, err := newMllama(*cfg, b, safetensorsSource{set}, o)
	if err != nil {
		return nil, err
	}
	if err := m.LoadWeights(safetensorsSource{set}); err != nil {
		m.Free()
		return nil, err
	}
	return m, nil
}

// MllamaLoRA says which linears get adapters: the language model's
// q/k/v/o/gate/up/down (Targets as short names; empty means all) and,
// with Projector, multi_modal_projector. The vision tower stays frozen.
type MllamaLoRA struct {
	Rank      int
	Alpha     float32
	Targets   []string
	Projector bool
}

// AddLoRA adds adapters (scale Alpha/Rank) whose A and B start at zero;
// the caller uploads their initial values. The base stays frozen.
func (m *MllamaModel) AddLoRA(o MllamaLoRA) error {
	if o.Rank <= 0 {
		return fmt.Errorf("lora rank %d must be positive", o.Rank)
	}
	targets := o.Targets
	if len(targets) == 0 || slices.ContainsFunc(targets, isAllLinear) {
		targets = []string{"q", "k", "v", "o", "gate", "up", "down"}
	} else {
		var err error
		if targets, err = NormalizeTargets(targets); err != nil {
			return err
		}
		for _, t := range targets {
			if !slices.Contains([]string{"q", "k", "v", "o", "gate", "up", "down"}, t) {
				return fmt.Errorf("lora target_modules: Mllama's language model has no %s_proj", t)
			}
		}
	}
	for _, lin := range m.loraLinears() {
		if lin == m.Projector && !o.Projector || lin != m.Projector && !slices.Contains(targets, lin.Short) {
			continue
		}
		if err := m.addAdapter(lin, o); err != nil {
			return err
		}
	}
	return nil
}

// addAdapter puts a zero adapter (scale Alpha/Rank) on lin, its A and B
// allocated on the backend.
func (m *MllamaModel) addAdapter(lin *Linear, o MllamaLoRA) error {
	lo := &LoRA{Rank: o.Rank, Scale: o.Alpha / float32(o.Rank), Enabled: true,
		A: &Param{Name: lin.Module + ".lora_A.weight", Shape: []int{o.Rank, lin.In}, Trainable: true},
		B: &Param{Name: lin.Module + ".lora_B.weight", Shape: []int{lin.Out, o.Rank}, Trainable: true}}
	for _, p := range []*Param{lo.A, lo.B} {
		if err := m.allocAdapter(p); err != nil {
			return err
		}
	}
	lin.LoRA = lo
	return nil
}

// allocAdapter gives an adapter matrix p its zero compute copy W (in
// m.Compute), its float32 master (W itself in a float32 model, else a
// float32 tensor of its own, as the text families keep one for a bf16
// weight) and its zero float32 gradient. SetValues writes its values.
func (m *MllamaModel) allocAdapter(p *Param) error {
	alloc := func(dt DType) (Tensor, error) {
		t, err := m.B.Alloc(dt, p.Shape...)
		if err == nil {
			if err = m.B.Fill(t, 0); err != nil {
				m.B.Free(t)
			}
		}
		return t, err
	}
	var err error
	if p.W, err = alloc(m.Compute); err != nil {
		p.W = nil
		return fmt.Errorf("allocate %s: %w", p.Name, err)
	}
	p.Master = p.W
	if m.Compute != F32 {
		if p.Master, err = alloc(F32); err != nil {
			p.Master = nil
			return fmt.Errorf("allocate the float32 master of %s: %w", p.Name, err)
		}
	}
	if p.Grad, err = alloc(F32); err != nil {
		p.Grad = nil
		return fmt.Errorf("allocate the gradient of %s: %w", p.Name, err)
	}
	return nil
}

// Param returns the parameter (base or adapter) of that name, or nil.
func (m *MllamaModel) Param(name string) *Param {
	for _, p := range m.Params() {
		if p.Name == name {
			return p
		}
	}
	return nil
}

// MakeTrainable gives p a gradient (zeroed); float32 weights are their
// own master, a bf16 one gets a float32 master copied from it. A
// trainable gate is read from W at every pass.
func (m *MllamaModel) MakeTrainable(p *Param) error {
	if p.Trainable {
		return nil
	}
	if p.Quant != nil {
		return fmt.Errorf("qlora: %s is held in NF4; only the adapters, norms, gates and float32 or bf16 weights can be trained", p.Name)
	}
	g, err := m.B.Alloc(F32, p.Shape...)
	if err != nil {
		return fmt.Errorf("allocate gradient of %s: %w", p.Name, err)
	}
	if err := m.B.Fill(g, 0); err != nil {
		m.B.Free(g)
		return err
	}
	master := p.W
	if p.W.DType() != F32 {
		if master, err = m.B.Alloc(F32, p.Shape...); err == nil {
			if err = m.B.Copy(master, p.W); err != nil {
				m.B.Free(master)
			}
		}
		if err != nil {
			m.B.Free(g)
			return fmt.Errorf("allocate the float32 master of %s: %w", p.Name, err)
		}
	}
	p.Grad, p.Master, p.Trainable = g, master, true
	delete(m.gates, p)
	return nil
}

// ZeroGrads clears every gradient.
func (m *MllamaModel) ZeroGrads() error {
	for _, p := range m.Params() {
		if p.Grad != nil {
			if err := m.B.Fill(p.Grad, 0); err != nil {
				return err
			}
		}
	}
	return nil
}

// Free releases every tensor.
func (m *MllamaModel) Free() {
	if m == nil || m.B == nil {
		return
	}
	for _, p := range m.Params() {
		if p.Master != nil && p.Master != p.W {
			m.B.Free(p.Master)
		}
		for _, t := range []Tensor{p.W, p.Grad, p.M, p.V} {
			if t != nil {
				m.B.Free(t)
			}
		}
		p.W, p.Grad, p.M, p.V, p.Master = nil, nil, nil, nil, nil
		if q := p.Quant; q != nil {
			for _, t := range []Tensor{q.Packed, q.Absmax} {
				if t != nil {
					m.B.Free(t)
				}
			}
			q.Packed, q.Absmax = nil, nil
		}
	}
}

// AdamW steps every trainable parameter's float32 master (PyTorch's
// AdamW: decoupled weight decay, bias correction by the 1-based step),
// creating the moments on first use, and refreshes a separate compute
// copy (bf16) from it. Norm weights, biases and gates take no decay.
func (m *MllamaModel) AdamW(p AdamWParams) error {
	for _, q := range m.Params() {
		if !q.Trainable {
			continue
		}
		for _, t := range []*Tensor{&q.M, &q.V} {
			if *t == nil {
				x, err := m.B.Alloc(F32, q.Shape...)
				if err == nil {
					err = m.B.Fill(x, 0)
				}
				if err != nil {
					return fmt.Errorf("AdamW moments of %s: %w", q.Name, err)
				}
				*t = x
			}
		}
		pp := p
		if q.NoDecay {
			pp.WeightDecay = 0
		}
		master := q.Master
		if master == nil {
			master = q.W
		}
		if err := m.B.AdamW(master, q.Grad, q.M, q.V, pp); err != nil {
			return fmt.Errorf("AdamW %s: %w", q.Name, err)
		}
		if master != q.W {
			if err := m.B.Copy(q.W, master); err != nil {
				return fmt.Errorf("AdamW %s: refresh the compute copy: %w", q.Name, err)
			}
		}
	}
	return nil
}
