// Package memplan computes, before anything is allocated, every buffer a
// training run needs: weights, quantized weights, adapters, fp32 masters,
// gradients, optimizer state, the activations saved for backward, the
// backward scratch, the logits chunk and the workspaces. The fit check prints
// this plan against the free memory, and the CUDA backend is meant to carve
// its arenas from the same Buffers table (see Layout), so the estimate and
// the real run cannot drift apart.
//
// Notation used in the comments: B micro-batch (sequences), T sequence
// length, N = B·T tokens in one micro-batch (2·B·T for DPO: chosen and
// rejected), H hidden size, Q = heads·head_dim, KV = kv_heads·head_dim,
// I intermediate size, V vocabulary, L layers, nh attention heads, r LoRA
// rank, C logits chunk in tokens.
package memplan

import (
	"fmt"
	"slices"
	"strings"

	"whet/engine"
)

// DType is the element type of a buffer. The zero value is BF16, the
// compute type on the GPU.
type DType int

const (
	BF16 DType = iota
	F32
	I32
	U8
	// NF4 packs two 4-bit NormalFloat codes per byte (bitsandbytes' layout).
	NF4
)

func (d DType) String() string {
	switch d {
	case BF16:
		return "bf16"
	case F32:
		return "f32"
	case I32:
		return "i32"
	case U8:
		return "u8"
	case NF4:
		return "nf4"
	}
	return fmt.Sprintf("DType(%d)", int(d))
}

// EngineDType is the plan's dtype for an engine compute dtype (a Model's
// Compute, or engine.VisionComputeDType): F32 for engine.F32, else BF16.
func EngineDType(d engine.DType) DType {
	if d == engine.F32 {
		return F32
	}
	return BF16
}

// engineDType is the engine's compute dtype for a plan's compute dtype
// (BF16 or F32), EngineDType's inverse.
func engineDType(d DType) engine.DType {
	if d == BF16 {
		return engine.BF16
	}
	return engine.F32
}

// Size is the number of bytes n elements take.
func (d DType) Size(n int64) int64 {
	switch d {
	case BF16:
		return 2 * n
	case F32, I32:
		return 4 * n
	case U8:
		return n
	case NF4:
		return (n + 1) / 2
	}
	return 0
}

// Category groups buffers into the lines the fit check prints; each
// category is one arena in Layout.
type Category int

const (
	Weights            Category = iota // base weights in the compute dtype
	QuantizedWeights                   // NF4 codes and their absmax scales (QLoRA)
	ReferenceWeights                   // full-weight DPO with a resident reference copy
	Adapters                           // LoRA A and B in the compute dtype
	Masters                            // fp32 master copies of the trainable parameters
	Gradients                          // fp32 gradients of the trainable parameters
	OptimizerState                     // AdamW first and second moments
	Activations                        // saved by the forward pass for the backward pass
	BackwardScratch                    // activation gradients of the layer being differentiated
	Logits                             // one chunk of LM-head logits
	Inputs                             // token ids, targets, per-token losses
	AttentionWorkspace                 // flash-style attention backward scratch
	DequantWorkspace                   // one NF4 weight dequantized to bf16 (QLoRA)
	GEMMWorkspace                      // cuBLASLt workspace
	GenerationCache                    // GRPO: the sampler's key/value cache
	HostCheckpoints                    // offloaded activation checkpoints, in pinned host memory
	numCategories
)

// Host reports a category that lives in host memory, not on the device:
// Peak leaves it out and HostPeak adds it up.
func (c Category) Host() bool { return c == HostCheckpoints }

var categoryNames = [numCategories]string{
	Weights:            "weights",
	QuantizedWeights:   "quantized weights (NF4)",
	ReferenceWeights:   "reference model (DPO)",
	Adapters:           "LoRA adapters",
	Masters:            "fp32 master weights",
	Gradients:          "gradients (fp32)",
	OptimizerState:     "AdamW moments (fp32)",
	Activations:        "activations",
	BackwardScratch:    "backward scratch",
	Logits:             "logits chunk",
	Inputs:             "inputs and losses",
	AttentionWorkspace: "attention workspace",
	DequantWorkspace:   "dequantize workspace",
	GEMMWorkspace:      "cuBLASLt workspace",
	GenerationCache:    "generation KV cache (GRPO)",
	HostCheckpoints:    "offloaded checkpoints (host)",
}

func (c Category) String() string {
	if c >= 0 && c < numCategories {
		return categoryNames[c]
	}
	return fmt.Sprintf("Category(%d)", int(c))
}

// Buffer is one named allocation. Per-layer tensors appear once with
// Repeat = L: the backend allocates L copies of the same shape.
type Buffer struct {
	Name     string
	Category Category
	DType    DType
	Shape    []int64
	Repeat   int
}

// Elems is the element count of one copy.
func (b Buffer) Elems() int64 {
	n := int64(1)
	for _, d := range b.Shape {
		n *= d
	}
	return n
}

// Bytes is the exact size of one copy.
func (b Buffer) Bytes() int64 { return b.DType.Size(b.Elems()) }

// Align is the alignment of every buffer copy inside its arena: 256 bytes,
// what cudaMalloc guarantees and what cuBLASLt and vectorized kernels want.
const Align = 256

// Stride is the aligned size of one copy: the distance between copies.
func (b Buffer) Stride() int64 { return alignUp(b.Bytes(), Align) }

// ArenaBytes is what the buffer takes in its arena: Repeat aligned copies.
func (b Buffer) ArenaBytes() int64 { return int64(b.Repeat) * b.Stride() }

func alignUp(n, a int64) int64 { return (n + a - 1) / a * a }

// Overhead is memory the run uses that is not one of its allocations.
type Overhead struct {
	Name  string
	Bytes int64
	Note  string
}

// Estimates the plan cannot derive from shapes.
const (
	// CUDAContextBytes is an estimate of what creating a CUDA context,
	// loading cuBLASLt and the NVRTC-compiled kernels costs in device
	// memory on a recent driver (typically 300–600 MiB, larger on bigger
	// GPUs). To be replaced by the value measured on the GPU machine.
	CUDAContextBytes = 512 << 20
	// CuBLASLtWorkspaceBytes is the workspace handed to cublasLtMatmul;
	// NVIDIA's cuBLAS documentation recommends 32 MiB on Hopper.
	CuBLASLtWorkspaceBytes = 32 << 20
	// NF4BlockSize is the number of weights sharing one absmax scale
	// (bitsandbytes' default for 4-bit quantization).
	NF4BlockSize = 64
	// DoubleQuantBlockSize is the number of 8-bit absmax values sharing one
	// fp32 scale under double quantization (bitsandbytes' nested blocks).
	DoubleQuantBlockSize = 256
	// gradNormPartials is the number of per-block partial sums the
	// grad-norm reduction writes before its final pass.
	gradNormPartials = 1024
)

// MemPlan is the complete allocation plan for one training configuration.
type MemPlan struct {
	// Options are the options the plan was made with, defaults filled in.
	Options Options
	// Tokens is N, the tokens in one micro-batch (both halves for DPO).
	Tokens int64
	// Params counts the base model's parameters; Trainable those that get
	// gradients (adapters, or every weight for full fine-tuning).
	Params, Trainable int64
	Buffers           []Buffer
	Overheads         []Overhead
}

// Bytes is the aligned size of one category (its arena).
func (p *MemPlan) Bytes(c Category) int64 {
	var n int64
	for _, b := range p.Buffers {
		if b.Category == c {
			n += b.ArenaBytes()
		}
	}
	return n
}

// ExactBytes is the unaligned size of a category: Repeat × tensor bytes.
func (p *MemPlan) ExactBytes(c Category) int64 {
	var n int64
	for _, b := range p.Buffers {
		if b.Category == c {
			n += int64(b.Repeat) * b.Bytes()
		}
	}
	return n
}

// Peak is the device memory the run needs at its peak: every buffer is
// live for the whole step (nothing is freed and reused between phases), so
// the peak is the sum of all device arenas plus the overheads. Host
// buffers (Category.Host) are HostPeak's.
func (p *MemPlan) Peak() int64 {
	var n int64
	for _, b := range p.Buffers {
		if !b.Category.Host() {
			n += b.ArenaBytes()
		}
	}
	for _, o := range p.Overheads {
		n += o.Bytes
	}
	return n
}

// HostPeak is the host memory the run pins for the whole step: the
// offloaded activation checkpoints (0 when they stay on the device).
func (p *MemPlan) HostPeak() int64 {
	var n int64
	for _, b := range p.Buffers {
		if b.Category.Host() {
			n += b.ArenaBytes()
		}
	}
	return n
}

// Offloaded reports whether the plan keeps its activation checkpoints in
// host memory.
func (p *MemPlan) Offloaded() bool { return p.HostPeak() > 0 || p.Options.offload() }

// Line is one printed row of the plan.
type Line struct {
	Label string
	Bytes int64
}

// Lines lists the non-empty device categories in a fixed order, then
// overheads. Labels carry the dtype where a category has one. HostLines
// lists the host categories.
func (p *MemPlan) Lines() []Line {
	var out []Line
	for c := Category(0); c < numCategories; c++ {
		n := p.Bytes(c)
		if n == 0 || c.Host() {
			continue
		}
		label := c.String()
		switch c {
		case Weights, ReferenceWeights, Adapters, Activations:
			label += " (" + p.Options.WeightDType.String() + ")"
		}
		out = append(out, Line{Label: label, Bytes: n})
	}
	for _, o := range p.Overheads {
		out = append(out, Line{Label: o.Name, Bytes: o.Bytes})
	}
	return out
}

// HostLines lists the non-empty host categories (pinned host memory).
func (p *MemPlan) HostLines() []Line {
	var out []Line
	for c := Category(0); c < numCategories; c++ {
		if n := p.Bytes(c); n > 0 && c.Host() {
			out = append(out, Line{Label: c.String() + " (" + p.Options.WeightDType.String() + ")", Bytes: n})
		}
	}
	return out
}

// Slot places one buffer in its arena: copy i starts at Offset + i·Stride.
type Slot struct {
	Buffer Buffer
	Offset int64
}

// Arena is one category's allocation.
type Arena struct {
	Category Category
	Size     int64
	Slots    []Slot
}

// Layout carves each category into one arena, buffers in plan order, each
// copy aligned to Align. A backend allocates Size bytes per arena and finds
// every tensor at its slot, so forward and backward derive their offsets
// from this one table.
func (p *MemPlan) Layout() []Arena {
	var arenas []Arena
	for c := Category(0); c < numCategories; c++ {
		a := Arena{Category: c}
		for _, b := range p.Buffers {
			if b.Category != c {
				continue
			}
			a.Slots = append(a.Slots, Slot{Buffer: b, Offset: a.Size})
			a.Size += b.ArenaBytes()
		}
		if a.Size > 0 {
			arenas = append(arenas, a)
		}
	}
	return arenas
}

// Find returns the buffer with the given name.
func (p *MemPlan) Find(name string) (Buffer, bool) {
	for _, b := range p.Buffers {
		if b.Name == name {
			return b, true
		}
	}
	return Buffer{}, false
}

// targetShapes maps each LoRA target to its projection's (in, out) widths.
func targetShapes(cfg *engine.ModelConfig) map[string][2]int64 {
	h, q, kv, i := int64(cfg.HiddenSize), int64(cfg.QDim()), int64(cfg.KVDim()), int64(cfg.IntermediateSize)
	return map[string][2]int64{
		"q": {h, q}, "k": {h, kv}, "v": {h, kv}, "o": {q, h},
		"gate": {h, i}, "up": {h, i}, "down": {i, h},
		"qkv": {h, q + 2*kv}, "gate_up": {h, 2 * i},
	}
}

// familyLinears lists the projections a layer of cfg's family holds
// (Phi-3 fuses q, k, v into qkv and gate, up into gate_up).
func familyLinears(cfg *engine.ModelConfig) []string {
	if f := engine.FamilyOf(cfg.ModelType); f != nil {
		return f.LoRATargets()
	}
	return AllTargets
}

// familyTargets maps LoRA targets named for the Llama block onto cfg's
// family: a fused family adapts qkv_proj when any of q, k, v is named and
// gate_up_proj for gate or up, as PEFT targets its fused modules.
func familyTargets(cfg *engine.ModelConfig, targets []string) []string {
	have := familyLinears(cfg)
	seen := map[string]bool{}
	for _, t := range targets {
		switch {
		case slices.Contains(have, t):
			seen[t] = true
		case (t == "q" || t == "k" || t == "v") && slices.Contains(have, "qkv"):
			seen["qkv"] = true
		case (t == "gate" || t == "up") && slices.Contains(have, "gate_up"):
			seen["gate_up"] = true
		}
	}
	var out []string
	for _, t := range have {
		if seen[t] {
			out = append(out, t)
		}
	}
	return out
}

// loraStackWidth is how many adapters the largest stacked group of the
// targets holds (engine's stacked adapters: q, k, v and gate, up, when
// engine.LoRAFusedOn), or 1.
func loraStackWidth(cfg *engine.ModelConfig, targets []string) int {
	f := engine.FamilyOf(cfg.ModelType)
	if f == nil || !engine.LoRAFusedOn(false) {
		return 1
	}
	have := familyTargets(cfg, targets)
	w := 1
	for _, g := range f.LoRAStackGroups() {
		n := 0
		for _, t := range g {
			if slices.Contains(have, t) {
				n++
			}
		}
		if n >= 2 {
			w = max(w, n)
		}
	}
	return w
}

// AllTargets lists the seven linear projections of a decoder layer, in
// layer order.
var AllTargets = []string{"q", "k", "v", "o", "gate", "up", "down"}

// linearName is the Hugging Face module path of each projection.
var linearName = map[string]string{
	"q": "self_attn.q_proj", "k": "self_attn.k_proj", "v": "self_attn.v_proj", "o": "self_attn.o_proj",
	"gate": "mlp.gate_proj", "up": "mlp.up_proj", "down": "mlp.down_proj",
	"qkv": "self_attn.qkv_proj", "gate_up": "mlp.gate_up_proj",
}

// targetOrder is the layer order of every projection name.
var targetOrder = []string{"q", "k", "v", "qkv", "o", "gate", "up", "gate_up", "down"}

// NormalizeTargets accepts PEFT-style names ("q_proj", "self_attn.q_proj")
// or short ones ("q") and returns short names in layer order without
// duplicates.
func NormalizeTargets(targets []string) ([]string, error) {
	seen := map[string]bool{}
	for _, t := range targets {
		s := strings.ToLower(strings.TrimSpace(t))
		if i := strings.LastIndexByte(s, '.'); i >= 0 {
			s = s[i+1:]
		}
		s = strings.TrimSuffix(s, "_proj")
		if _, ok := linearName[s]; !ok {
			return nil, fmt.Errorf("memplan: unknown LoRA target %q (want among q, k, v, o, gate, up, down, qkv, gate_up)", t)
		}
		seen[s] = true
	}
	var out []string
	for _, t := range targetOrder {
		if seen[t] {
			out = append(out, t)
		}
	}
	return out, nil
}

// checkConfig rejects configs the plan's formulas cannot describe, with
// the engine's own rules (engine.ModelConfig.Validate), so the fit check
// never plans a model the engine would refuse to build.
func checkConfig(cfg *engine.ModelConfig) error {
	if cfg == nil {
		return fmt.Errorf("memplan: no model config")
	}
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("memplan: model config: %w", err)
	}
	return nil
}

// normsPerLayer: Gemma 2 and 3 normalize attention and MLP outputs as
// well as their inputs (four RMSNorm weights per layer); the others have two.
func normsPerLayer(cfg *engine.ModelConfig) int {
	if f := engine.FamilyOf(cfg.ModelType); (f != nil && f.SandwichNorms) || cfg.ModelType == "gemma2" {
		return 4
	}
	return 2
}

// qkNorm reports a per-head RMSNorm on q and k (Qwen3, Gemma 3).
func qkNorm(cfg *engine.ModelConfig) bool {
	f := engine.FamilyOf(cfg.ModelType)
	return f != nil && f.QKNorm
}

var normNames = []string{"input_layernorm", "post_attention_layernorm", "pre_feedforward_layernorm", "post_feedforward_layernorm"}

// weightBuffers lists the base model's tensors in Hugging Face naming, all
// in dtype dt and category Weights. Per-layer tensors carry Repeat = L.
//
//	embed_tokens.weight  [V, H]
//	lm_head.weight       [V, H]   unless tie_word_embeddings
//	norm.weight          [H]
//	layers.*_layernorm   [H]      ×2 (×4 for Gemma 2)
//	layers.q_proj        [Q, H]   k_proj, v_proj [KV, H], o_proj [H, Q]
//	layers.q/k/v bias    [Q], [KV], [KV] when attention_bias
//	layers.gate/up_proj  [I, H],  down_proj [H, I]
func weightBuffers(cfg *engine.ModelConfig, dt DType) []Buffer {
	h, v, l := int64(cfg.HiddenSize), int64(cfg.VocabSize), cfg.NumLayers
	bufs := []Buffer{{Name: "embed_tokens.weight", DType: dt, Shape: []int64{v, h}, Repeat: 1}}
	if !cfg.TieWordEmbeddings {
		bufs = append(bufs, Buffer{Name: "lm_head.weight", DType: dt, Shape: []int64{v, h}, Repeat: 1})
	}
	bufs = append(bufs, Buffer{Name: "norm.weight", DType: dt, Shape: []int64{h}, Repeat: 1})
	for _, n := range normNames[:normsPerLayer(cfg)] {
		bufs = append(bufs, Buffer{Name: "layers." + n + ".weight", DType: dt, Shape: []int64{h}, Repeat: l})
	}
	if qkNorm(cfg) {
		for _, n := range []string{"self_attn.q_norm", "self_attn.k_norm"} {
			bufs = append(bufs, Buffer{Name: "layers." + n + ".weight", DType: dt, Shape: []int64{int64(cfg.HeadDim)}, Repeat: l})
		}
	}
	shapes := targetShapes(cfg)
	for _, t := range familyLinears(cfg) {
		s := shapes[t]
		bufs = append(bufs, Buffer{Name: "layers." + linearName[t] + ".weight", DType: dt, Shape: []int64{s[1], s[0]}, Repeat: l})
		if cfg.AttentionBias && (t == "q" || t == "k" || t == "v") {
			bufs = append(bufs, Buffer{Name: "layers." + linearName[t] + ".bias", DType: dt, Shape: []int64{s[1]}, Repeat: l})
		}
	}
	for i := range bufs {
		bufs[i].Category = Weights
	}
	return bufs
}

// ParamCount is the number of parameters of the base model: the elements of
// its weight tensors (see weightBuffers for the list).
func ParamCount(cfg *engine.ModelConfig) int64 {
	var n int64
	for _, b := range weightBuffers(cfg, BF16) {
		n += int64(b.Repeat) * b.Elems()
	}
	return n
}

// addTrainingState counts the trainable buffer b (already in p.Buffers) in
// p.Trainable and adds what training it takes: an fp32 master (unless
// noMaster), an fp32 gradient, and AdamW's m and v in fp32. With shard > 1
// the master and moments are one rank's 1/shard of them (".shard").
func (p *MemPlan) addTrainingState(b Buffer, noMaster bool, shard int64) {
	p.Trainable += int64(b.Repeat) * b.Elems()
	for _, side := range []struct {
		prefix string
		cat    Category
	}{{"master.", Masters}, {"grad.", Gradients}, {"adam_m.", OptimizerState}, {"adam_v.", OptimizerState}} {
		if side.cat == Masters && noMaster {
			continue
		}
		c := b
		c.Name, c.Category, c.DType = side.prefix+b.Name, side.cat, F32
		if shard > 1 && side.cat != Gradients {
			c.Name += ".shard"
			c.Shape, c.Repeat = []int64{(int64(b.Repeat)*b.Elems() + shard - 1) / shard}, 1
		}
		p.Buffers = append(p.Buffers, c)
	}
}

// isLinear reports whether a weight buffer is one of the seven projection
// matrices (what QLoRA quantizes; embeddings, norms and biases stay bf16,
// as bitsandbytes leaves them).
func isLinear(b Buffer) bool {
	return strings.HasSuffix(b.Name, "_proj.weight")
}

// Plan computes the allocation plan for training cfg with opts.
func Plan(cfg *engine.ModelConfig, opts Options) (*MemPlan, error) {
	if err := checkConfig(cfg); err != nil {
		return nil, err
	}
	o, err := opts.resolve()
	if err != nil {
		return nil, err
	}
	p := &MemPlan{Options: o}
	base := o.Base()
	dt := o.WeightDType
	l := cfg.NumLayers

	// ---- weights ------------------------------------------------------
	weights := weightBuffers(cfg, dt)
	p.Params = ParamCount(cfg)
	var trainable []Buffer // tensors that get masters, gradients and moments
	var maxLinear int64
	for _, b := range weights {
		if base == QLoRA && isLinear(b) {
			p.Buffers = append(p.Buffers, quantized(b, o.DoubleQuant)...)
			maxLinear = max(maxLinear, b.Elems())
			continue
		}
		p.Buffers = append(p.Buffers, b)
		if base == Full {
			trainable = append(trainable, b)
		}
	}
	if base == QLoRA {
		// One copy of each code book for the whole model: the 16 NF4
		// values, and under double quantization the 256-entry 8-bit map
		// the absmax values are coded with.
		p.Buffers = append(p.Buffers, Buffer{Name: "nf4.code", Category: QuantizedWeights, DType: F32, Shape: []int64{16}, Repeat: 1})
		if o.DoubleQuant {
			p.Buffers = append(p.Buffers, Buffer{Name: "nf4.absmax_code", Category: QuantizedWeights, DType: F32, Shape: []int64{256}, Repeat: 1})
		}
		// The GEMMs take bf16: each NF4 weight is dequantized just before
		// its matmul (forward, and again for the input gradient in the
		// backward) into one buffer the size of the largest projection.
		p.Buffers = append(p.Buffers, Buffer{Name: "nf4.dequantized", Category: DequantWorkspace, DType: BF16, Shape: []int64{maxLinear}, Repeat: 1})
	}
	if o.Method == DPO && base == Full && o.DPOResidentReference {
		// The reference policy is the model before training. The engine
		// computes its log-probs once, before the first step, and caches
		// them (engine/dpo.go), so by default nothing stays resident; a
		// backend that keeps the reference on the device instead needs a
		// frozen copy of every weight.
		for _, b := range weights {
			b.Name = "ref." + b.Name
			b.Category = ReferenceWeights
			p.Buffers = append(p.Buffers, b)
		}
	}

	// ---- LoRA adapters -------------------------------------------------
	// Each target projection W [out, in] gets A [r, in] and B [out, r];
	// the compute copy is in the weight dtype, the masters in fp32.
	if base == LoRA || base == QLoRA {
		shapes := targetShapes(cfg)
		r := int64(o.LoRARank)
		for _, t := range familyTargets(cfg, o.LoRATargets) {
			s := shapes[t]
			a := Buffer{Name: "layers." + linearName[t] + ".lora_A", Category: Adapters, DType: dt, Shape: []int64{r, s[0]}, Repeat: l}
			b := Buffer{Name: "layers." + linearName[t] + ".lora_B", Category: Adapters, DType: dt, Shape: []int64{s[1], r}, Repeat: l}
			p.Buffers = append(p.Buffers, a, b)
			trainable = append(trainable, a, b)
		}
	}

	// ---- generation ----------------------------------------------------
	// GRPO samples completions together (engine/grpo_generate.go) over a
	// paged KV cache (engine/kv_paged.go) of as many blocks as the lanes
	// of one longest prompt need: per layer k and v [lanes · prompt +
	// completion rounded up to whole blocks, KV] in the compute dtype,
	// and one gather span [prompt + completion, KV] each for k and v.
	if o.GenerationTokens > 0 {
		kv := int64(cfg.KVDim())
		g := int64(o.GenerationTokens)
		bt := int64(engine.DefaultKVBlockTokens)
		pooled := (g + bt - 1) / bt * bt
		lanes := max(1, o.GenerationLanes)
		p.Buffers = append(p.Buffers,
			Buffer{Name: "gen.k_cache", Category: GenerationCache, DType: dt, Shape: []int64{pooled, kv}, Repeat: l * lanes},
			Buffer{Name: "gen.v_cache", Category: GenerationCache, DType: dt, Shape: []int64{pooled, kv}, Repeat: l * lanes},
			Buffer{Name: "gen.kv_gather", Category: GenerationCache, DType: dt, Shape: []int64{g, kv}, Repeat: 2})
	}

	// ---- masters, gradients, AdamW moments ---------------------------
	// Per trainable element: an fp32 master (skipped when the compute
	// copy is already fp32, or is the master: Options.BF16Masters), an
	// fp32 gradient (accumulated over the
	// micro-batches of a step), and AdamW's m and v in fp32.
	// Data-parallel full fine-tuning keeps 1/GPUs of the masters and
	// moments on each GPU (the rank's chunk of every gradient bucket),
	// and gathers a checkpoint one bucket at a time through an fp32
	// buffer of the largest bucket: layers, or the embeddings, final norm
	// and head together.
	shard := int64(1)
	if o.GPUs > 1 && base == Full {
		shard = int64(o.GPUs)
	}
	for _, b := range trainable {
		p.addTrainingState(b, dt == F32 || o.BF16Masters, shard)
	}
	if shard > 1 {
		var layer, rest int64
		for _, b := range trainable {
			if strings.HasPrefix(b.Name, "layers.") {
				layer += b.Elems()
			} else {
				rest += int64(b.Repeat) * b.Elems()
			}
		}
		// As NewDataParallel fills buckets: whole layers until one holds
		// engine.DefaultBucketBytes or more.
		per := int64(1)
		if layer > 0 {
			per = min(int64(l), (engine.DefaultBucketBytes/4+layer-1)/layer)
		}
		gather := max(per*layer, rest)
		p.Buffers = append(p.Buffers, Buffer{Name: "dp.checkpoint_gather", Category: OptimizerState, DType: F32, Shape: []int64{gather}, Repeat: 1})
	}
	p.Buffers = append(p.Buffers, Buffer{Name: "optim.grad_norm_partials", Category: OptimizerState, DType: F32, Shape: []int64{gradNormPartials}, Repeat: 1})

	// ---- activations ---------------------------------------------------
	n := int64(o.MicroBatch) * int64(o.SeqLen)
	seqs := int64(o.MicroBatch)
	if o.Method == DPO {
		// Chosen and rejected completions run as one batch of 2·B.
		n *= 2
		seqs *= 2
	}
	p.Tokens = n
	p.Buffers = append(p.Buffers, activationBuffers(cfg, o, n)...)

	// ---- LM head: logits chunk ------------------------------------------
	// The LM head and cross-entropy run over C tokens at a time, C =
	// engine.LogitsChunk(N, V, Options.LogitsChunk) (the run config's
	// train.logits_chunk; 0: as many rows as 2^26 logits hold): logits
	// [C, V] in fp32 (the softmax and the loss are computed from them in
	// one kernel that writes the logit gradient, with Gemma 2's soft-cap
	// inside it where engine.FusedSoftCapOn says so), and a bf16 [C, V]
	// gradient for the two backward GEMMs (input gradient and lm_head
	// gradient). Nothing is [N, V].
	c := int64(engine.LogitsChunk(int(n), cfg.VocabSize, o.LogitsChunk))
	v := int64(cfg.VocabSize)
	p.Buffers = append(p.Buffers, Buffer{Name: "logits.f32", Category: Logits, DType: F32, Shape: []int64{c, v}, Repeat: 1})
	if dt != F32 {
		p.Buffers = append(p.Buffers, Buffer{Name: "logits.grad", Category: Logits, DType: dt, Shape: []int64{c, v}, Repeat: 1})
	}
	if cfg.FinalSoftCap > 0 && !engine.FusedSoftCapOn(o.Backend == BackendCPU) {
		// Gemma 2's capped logits, kept for the cap's backward where the
		// cap is not fused into the cross-entropy (CUDA without
		// WHET_FUSED_SOFTCAP_CE=1).
		p.Buffers = append(p.Buffers, Buffer{Name: "logits.capped", Category: Logits, DType: F32, Shape: []int64{c, v}, Repeat: 1})
	}

	// ---- inputs and per-token results ----------------------------------
	p.Buffers = append(p.Buffers,
		Buffer{Name: "inputs.tokens", Category: Inputs, DType: I32, Shape: []int64{n}, Repeat: 1},
		Buffer{Name: "inputs.targets", Category: Inputs, DType: I32, Shape: []int64{n}, Repeat: 1},
		Buffer{Name: "inputs.positions", Category: Inputs, DType: I32, Shape: []int64{n}, Repeat: 1},
		// Sequence start offsets for packed variable-length attention.
		// (room for one sequence per token: the engine sizes it before
		// it sees a batch).
		Buffer{Name: "inputs.seq_starts", Category: Inputs, DType: I32, Shape: []int64{n + 1}, Repeat: 1},
		// The rotary tables, cos and sin per kind (engine.ModelConfig.RopeTables).
		Buffer{Name: "inputs.rope_tables", Category: Inputs, DType: F32, Shape: []int64{2 * int64(cfg.RopeTables()), n, int64(cfg.RotaryDim() / 2)}, Repeat: 1},
		// Log-probability of each target token (loss, DPO sums).
		Buffer{Name: "loss.token_logprobs", Category: Inputs, DType: F32, Shape: []int64{n}, Repeat: 1},
	)
	if o.Method == DPO {
		// Per pair: policy chosen, policy rejected, reference chosen,
		// reference rejected log-probs. With LoRA the reference pass is
		// the same model with the adapter disabled, run without saving
		// activations, so it needs nothing beyond these sums.
		p.Buffers = append(p.Buffers, Buffer{Name: "dpo.logps", Category: Inputs, DType: F32, Shape: []int64{4, int64(o.MicroBatch)}, Repeat: 1})
	}

	// ---- attention backward workspace ------------------------------------
	// delta = rowsum(dO ∘ O) per head and token, fp32 [nh, N], the CUDA
	// backward's one scratch (engine/cuda/attention.go). With GQA the
	// dK/dV kernel sums a key/value head's query heads inside one block
	// and writes dK and dV in the compute dtype: no fp32 accumulator.
	// The fused Hopper backward (o.Attention.FusedBackward: sm_90, head
	// dim 64 or 128, bf16, not deterministic) adds dq through fp32
	// atomics into an accumulator of N·nh·head_dim floats (N padded to 64
	// with the tiled layout), in the same scratch after delta at a
	// 256-byte boundary (engine.AttnFusedAccOffset, which is delta's
	// Stride): 16 KiB a token for Llama-3.1-8B.
	nh := int64(cfg.NumHeads)
	p.Buffers = append(p.Buffers, Buffer{Name: "attn.delta", Category: AttentionWorkspace, DType: F32, Shape: []int64{nh, n}, Repeat: 1})
	if o.Backend == BackendCUDA && o.Attention.FusedBackward(cfg.HeadDim, int(n), engineDType(dt)) {
		acc := o.Attention.FusedAccFloats(int(n), cfg.NumHeads, cfg.HeadDim)
		p.Buffers = append(p.Buffers, Buffer{Name: "attn.dq_accum", Category: AttentionWorkspace, DType: F32, Shape: []int64{acc}, Repeat: 1})
	}

	if o.Backend == BackendCUDA {
		p.Buffers = append(p.Buffers, Buffer{Name: "cublaslt.workspace", Category: GEMMWorkspace, DType: U8, Shape: []int64{CuBLASLtWorkspaceBytes}, Repeat: 1})
		p.Overheads = append(p.Overheads, Overhead{Name: "CUDA context (estimate)", Bytes: CUDAContextBytes,
			Note: "driver context, cuBLASLt and kernel modules; an estimate until measured"})
	}
	return p, nil
}

// quantized replaces a projection weight [out, in] with its NF4 form, the
// bitsandbytes layout:
//
//	codes         n/2 bytes            two 4-bit codes per byte
//	absmax        ⌈n/64⌉ fp32          one scale per 64 weights
//
// or, with double quantization (bnb_4bit_use_double_quant), the absmax
// values themselves quantized:
//
//	absmax        ⌈n/64⌉ u8            8-bit codes of the scales
//	absmax_scale  ⌈⌈n/64⌉/256⌉ fp32    one scale per 256 absmax values
//	absmax_offset 1 fp32               the mean subtracted before coding
func quantized(w Buffer, double bool) []Buffer {
	n := w.Elems()
	blocks := (n + NF4BlockSize - 1) / NF4BlockSize
	out := []Buffer{{Name: w.Name + ".nf4", Category: QuantizedWeights, DType: NF4, Shape: w.Shape, Repeat: w.Repeat}}
	if !double {
		return append(out, Buffer{Name: w.Name + ".absmax", Category: QuantizedWeights, DType: F32, Shape: []int64{blocks}, Repeat: w.Repeat})
	}
	groups := (blocks + DoubleQuantBlockSize - 1) / DoubleQuantBlockSize
	return append(out,
		Buffer{Name: w.Name + ".absmax", Category: QuantizedWeights, DType: U8, Shape: []int64{blocks}, Repeat: w.Repeat},
		Buffer{Name: w.Name + ".absmax_scale", Category: QuantizedWeights, DType: F32, Shape: []int64{groups}, Repeat: w.Repeat},
		Buffer{Name: w.Name + ".absmax_offset", Category: QuantizedWeights, DType: F32, Shape: []int64{1}, Repeat: w.Repeat},
	)
}

// layerActivations lists what one decoder layer's forward saves for its
// backward, llm.c-style, for n tokens (activation dtype dt):
//
//	resid_in     [N, H]   layer input = residual stream = RMSNorm 1 input
//	ln1_rstd     [N]      fp32 reciprocal RMS of RMSNorm 1
//	ln1_out      [N, H]   q/k/v projection input
//	q            [N, Q]   after RoPE
//	k, v         [N, KV]  after RoPE (k)
//	attn_out     [N, Q]   attention output = o_proj input
//	attn_lse     [nh, N]  fp32 log-sum-exp per head and query (flash backward)
//	resid_mid    [N, H]   residual after attention = RMSNorm 2 input
//	ln2_rstd     [N]      fp32
//	ln2_out      [N, H]   gate/up projection input
//	gate, up     [N, I]   SwiGLU inputs
//
// The SwiGLU output (down_proj's input) is not among them: one [N, I]
// buffer serves every layer, and the backward recomputes it from gate and
// up (see activationBuffers). With the MLP tiled (mlpRows below N) gate
// and up are not saved either: one [tile, I] pair serves every layer and
// the backward recomputes them per tile from ln2_out.
//
// Gemma 2 also normalizes the attention and MLP outputs: their inputs
// (o_proj and down_proj outputs) [N, H] and rstd [N] are saved too. LoRA
// saves each target's low-rank intermediate x·Aᵀ [N, r], needed for B's
// gradient.
func layerActivations(cfg *engine.ModelConfig, o Options, n int64) []Buffer {
	h, q, kv, i, nh := int64(cfg.HiddenSize), int64(cfg.QDim()), int64(cfg.KVDim()), int64(cfg.IntermediateSize), int64(cfg.NumHeads)
	dt := o.WeightDType
	b := func(name string, d DType, shape ...int64) Buffer {
		return Buffer{Name: "acts." + name, Category: Activations, DType: d, Shape: shape, Repeat: 1}
	}
	bufs := []Buffer{
		b("resid_in", dt, n, h),
		b("ln1_rstd", F32, n),
		b("ln1_out", dt, n, h),
		b("q", dt, n, q),
		b("k", dt, n, kv),
		b("v", dt, n, kv),
		b("attn_out", dt, n, q),
		b("attn_lse", F32, nh, n),
		b("resid_mid", dt, n, h),
		b("ln2_rstd", F32, n),
		b("ln2_out", dt, n, h),
	}
	if mlpRows(cfg, o, n) == n {
		bufs = append(bufs, b("gate", dt, n, i), b("up", dt, n, i))
	}
	if normsPerLayer(cfg) == 4 {
		bufs = append(bufs,
			b("attn_proj_out", dt, n, h), b("post_attn_rstd", F32, n),
			b("mlp_proj_out", dt, n, h), b("post_mlp_rstd", F32, n))
	}
	if qkNorm(cfg) {
		// q and k before their norm, and its rstd per head.
		bufs = append(bufs, b("q_raw", dt, n, q), b("k_raw", dt, n, kv),
			b("q_norm_rstd", F32, n*nh), b("k_norm_rstd", F32, n*int64(cfg.NumKVHeads)))
	}
	if o.Base() == LoRA || o.Base() == QLoRA {
		for _, t := range familyTargets(cfg, o.LoRATargets) {
			bufs = append(bufs, b("lora_xa."+t, dt, n, int64(o.LoRARank)))
		}
	}
	return bufs
}

// mlpRows is how many of the n tokens the MLP runs at once, by the
// engine's rule (engine.MLPRowChunk) or Options.MLPChunk.
func mlpRows(cfg *engine.ModelConfig, o Options, n int64) int64 {
	return int64(engine.MLPRowChunk(int(n), cfg.IntermediateSize, o.MLPChunk))
}

// activationBuffers lays out the saved activations for the whole model and
// the backward scratch.
//
// Without checkpointing every layer keeps its full set (Repeat = L). With
// checkpointing only each layer's input resid_in is kept (Repeat = L), and
// one layer's set, minus that input, exists for the layer being recomputed
// and differentiated (Repeat = 1).
// With the checkpoints offloaded (Options.OffloadCheckpoints "on") the
// device keeps engine.OffloadSlots residual streams (acts.checkpoint.slots
// and acts.resid_out) and pinned host memory the other L+1-OffloadSlots
// (host.checkpoint.resid_in, category HostCheckpoints, outside Peak).
//
// After the last layer: its output [N, H] (final RMSNorm input), that
// norm's rstd [N], and its output for one LM-head chunk [C, H] (the head
// normalises each chunk's rows just before its GEMM; C as the logits).
//
// The backward scratch holds the gradients of one layer at a time:
//
//	grad.resid     [N, H]       gradient along the residual stream
//	grad.ln_out    [N, H]       gradient at an RMSNorm output
//	grad.qkv       [N, Q+2·KV]
//	grad.attn_out  [N, Q]
//	grad.swiglu    [tile, I]    tile = N untiled (mlpRows)
//	grad.gate_up   [tile, 2·I]
//	grad.lora_xa   [N, r]       LoRA: one target's intermediate at a time
//	grad.lora_dropout_in        LoRA dropout only: max(N·max(H, Q), tile·max(H, I))
//	                            (engine.DropoutScratch)
//
// The chunked LM head writes its input gradient into grad.ln_out, which
// the final norm's backward reads before the layers reuse it.
func activationBuffers(cfg *engine.ModelConfig, o Options, n int64) []Buffer {
	h, q, kv, i := int64(cfg.HiddenSize), int64(cfg.QDim()), int64(cfg.KVDim()), int64(cfg.IntermediateSize)
	dt := o.WeightDType
	l := cfg.NumLayers
	set := layerActivations(cfg, o, n)
	var bufs []Buffer
	if o.Checkpointing {
		for _, b := range set {
			if b.Name != "acts.resid_in" {
				continue
			}
			if !o.offload() {
				b.Name = "acts.checkpoint.resid_in"
				b.Repeat = l
				bufs = append(bufs, b)
				continue
			}
			// Offloaded: the residual streams 0..L rotate through
			// engine.OffloadSlots device buffers (one of them is
			// acts.resid_out below) and all but the last OffloadSlots
			// streams are copied to pinned host buffers.
			b.Name = "acts.checkpoint.slots"
			b.Repeat = min(engine.OffloadSlots, l+1) - 1
			bufs = append(bufs, b)
			if h := engine.OffloadedLayers(l); h > 0 {
				b.Name, b.Category, b.Repeat = "host.checkpoint.resid_in", HostCheckpoints, h
				bufs = append(bufs, b)
			}
		}
		for _, b := range set {
			if b.Name != "acts.resid_in" {
				b.Name = "acts.recompute." + strings.TrimPrefix(b.Name, "acts.")
				bufs = append(bufs, b)
			}
		}
	} else {
		for _, b := range set {
			b.Name = "acts.layers." + strings.TrimPrefix(b.Name, "acts.")
			b.Repeat = l
			bufs = append(bufs, b)
		}
	}
	c := mlpRows(cfg, o, n)
	if c < n {
		bufs = append(bufs,
			Buffer{Name: "acts.mlp_tile.gate", Category: Activations, DType: dt, Shape: []int64{c, i}, Repeat: 1},
			Buffer{Name: "acts.mlp_tile.up", Category: Activations, DType: dt, Shape: []int64{c, i}, Repeat: 1})
	}
	bufs = append(bufs,
		// silu(gate)*up of the layer (tile) being run: written by each
		// forward and recomputed by each backward (cheaper than keeping L
		// of them).
		Buffer{Name: "acts.swiglu_out", Category: Activations, DType: dt, Shape: []int64{c, i}, Repeat: 1},
		Buffer{Name: "acts.resid_out", Category: Activations, DType: dt, Shape: []int64{n, h}, Repeat: 1},
		Buffer{Name: "acts.final_rstd", Category: Activations, DType: F32, Shape: []int64{n}, Repeat: 1},
		Buffer{Name: "acts.final_norm_out", Category: Activations, DType: dt, Shape: []int64{int64(engine.LogitsChunk(int(n), cfg.VocabSize, o.LogitsChunk)), h}, Repeat: 1},
	)
	if f := engine.FamilyOf(cfg.ModelType); f != nil && f.NormOffset != 0 {
		// (1 + w) of the norm being run, for families that store w around 0.
		bufs = append(bufs, Buffer{Name: "acts.norm_weight", Category: Activations, DType: dt, Shape: []int64{max(h, int64(cfg.HeadDim))}, Repeat: 1})
	}
	g := func(name string, shape ...int64) Buffer {
		return Buffer{Name: "grad." + name, Category: BackwardScratch, DType: dt, Shape: shape, Repeat: 1}
	}
	bufs = append(bufs,
		g("resid", n, h),
		g("ln_out", n, h),
		g("qkv", n, q+2*kv),
		g("attn_out", n, q),
		g("swiglu", c, i),
		g("gate_up", c, 2*i),
	)
	if (o.Base() == LoRA || o.Base() == QLoRA) && len(o.LoRATargets) > 0 {
		// Stacked adapters (engine.LoRAFusedOn) hold a whole group's
		// intermediate gradient at once.
		bufs = append(bufs, g("lora_xa", n, int64(o.LoRARank*loraStackWidth(cfg, o.LoRATargets))))
		if o.LoRADropout > 0 {
			bufs = append(bufs, g("lora_dropout_in", int64(engine.DropoutScratch(cfg, int(n), int(c)))))
		}
	}
	if qkNorm(cfg) {
		bufs = append(bufs, g("q_raw", n, q), g("k_raw", n, kv))
	}
	if normsPerLayer(cfg) == 4 {
		bufs = append(bufs, g("norm_out", n, h)) // the sandwich norms' output and gradient
	}
	return bufs
}
