package engine

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
)

// Param is one named parameter of the model. W is the copy the maths reads,
// in the backend's compute dtype. Trainable parameters also carry an F32
// master (the same tensor as W when the compute dtype is F32), an F32
// gradient and the two AdamW moments.
type Param struct {
	Name      string // Hugging Face / PEFT name, e.g. model.layers.0.mlp.up_proj.weight
	Shape     []int
	W         Tensor
	Trainable bool
	Master    Tensor
	Grad      Tensor
	M, V      Tensor
	// NoDecay exempts the parameter from weight decay (biases and norm
	// weights, as transformers' Trainer groups them).
	NoDecay bool
	// Quant, when set, holds the frozen weight in NF4 (QLoRA); W is nil
	// and the maths reads a dequantized scratch copy.
	Quant *QuantState
}

// Linear is y = x @ W^T (+ b) (+ LoRA).
type Linear struct {
	Module string // e.g. model.layers.0.self_attn.q_proj
	Short  string // q, k, v, qkv, o, gate, up, gate_up, down, lm_head
	W      *Param // [out, in]
	B      *Param // [out] or nil
	LoRA   *LoRA
	In     int
	Out    int
	// Parts splits a fused projection's output (Phi-3's qkv_proj: the q,
	// k and v widths; gate_up_proj: gate and up) into the separate
	// tensors the decoder reads; nil for a plain linear. Each part's rows
	// of W are a contiguous block, so the maths runs on views of W.
	Parts []int
}

// LoRA is PEFT's low-rank adapter: y += Scale * dropout(x) @ A^T @ B^T.
type LoRA struct {
	A, B    *Param // A [r, in], B [out, r]
	Rank    int
	Scale   float32
	Dropout float32
	// Enabled switches the adapter off (base model) without freeing it.
	Enabled bool
	// stack, when set, holds A.W and A.Grad as rows [stackRow,
	// stackRow+Rank) of its tensors (stacked adapters, lorafuse.go).
	stack    *loraStack
	stackRow int
}

// Layer is one decoder block. Which fields are set follows the family:
// AttnNorm, MLPNorm, O and Down always; AttnOutNorm and MLPOutNorm with
// sandwich norms (Gemma); QNorm and KNorm with q/k norm; QKV instead of Q,
// K and V and GateUp instead of Gate and Up when fused (Phi-3).
type Layer struct {
	AttnNorm, AttnOutNorm, MLPNorm, MLPOutNorm *Param
	QNorm, KNorm                               *Param
	Q, K, V, QKV, O                            *Linear
	Gate, Up, GateUp, Down                     *Linear
	// loraStacks are the block's stacked adapter groups (lorafuse.go).
	loraStacks []*loraStack
}

// linears lists the block's linears in order (those that exist).
func (l *Layer) linears() []*Linear {
	var out []*Linear
	for _, lin := range []*Linear{l.Q, l.K, l.V, l.QKV, l.O, l.Gate, l.Up, l.GateUp, l.Down} {
		if lin != nil {
			out = append(out, lin)
		}
	}
	return out
}

// Model is a bound decoder: weights on a backend plus its config.
type Model struct {
	Cfg     ModelConfig
	B       Backend
	Compute DType // dtype of weights and activations on this backend
	Embed   *Param
	Layers  []*Layer
	Norm    *Param
	Head    *Linear // Head.W is Embed when the embeddings are tied
	// Tied is true when the LM head reads the embedding matrix.
	Tied bool
	// Gemma3Vision is the SigLIP tower and projector of a Gemma 3
	// multimodal model whose files hold them (nil otherwise).
	Gemma3Vision *Gemma3Vision
	// BF16Masters makes each trainable weight's compute copy its master
	// (train.master_weights: bf16, engine/masters.go): MakeTrainable
	// allocates no fp32 master and AdamW rounds the updated weight to
	// bf16 stochastically. Set it before making parameters trainable.
	BF16Masters bool
	// mllama, when set, makes this Model the trainer's view of a Llama 3.2
	// Vision model (train_vision.go): its parameters are mllama's, so
	// clipping, AdamW and checkpoints work on them unchanged.
	mllama *MllamaModel
}

// ComputeDTyper lets a backend pick the dtype of weights and activations
// (bf16 on GPUs); backends without it compute in F32.
type ComputeDTyper interface{ ComputeDType() DType }

func computeDType(b Backend) DType {
	if c, ok := b.(ComputeDTyper); ok {
		return c.ComputeDType()
	}
	return F32
}

// Linears lists every linear layer of the decoder blocks in a fixed order
// (of a model only partly built, those that exist).
func (m *Model) Linears() []*Linear {
	var out []*Linear
	for _, l := range m.Layers {
		if l != nil {
			out = append(out, l.linears()...)
		}
	}
	return out
}

// Params lists every parameter once (the tied head is not repeated), base
// weights first in HF order, then LoRA adapters. Of a model only partly
// built (NewModel failing half-way), it lists those that exist, so that
// Free can release them.
func (m *Model) Params() []*Param {
	var ps []*Param
	add := func(p *Param) {
		if p != nil {
			ps = append(ps, p)
		}
	}
	addLinear := func(lin *Linear) {
		if lin != nil {
			add(lin.W)
			add(lin.B)
		}
	}
	add(m.Embed)
	for _, l := range m.Layers {
		if l == nil {
			continue
		}
		add(l.AttnNorm)
		for _, lin := range []*Linear{l.Q, l.K, l.V, l.QKV, l.O} {
			addLinear(lin)
		}
		add(l.QNorm)
		add(l.KNorm)
		add(l.AttnOutNorm)
		add(l.MLPNorm)
		for _, lin := range []*Linear{l.Gate, l.Up, l.GateUp, l.Down} {
			addLinear(lin)
		}
		add(l.MLPOutNorm)
	}
	add(m.Norm)
	if !m.Tied && m.Head != nil {
		add(m.Head.W)
	}
	if m.Gemma3Vision != nil {
		ps = append(ps, m.Gemma3Vision.baseParams()...)
	}
	for _, lin := range m.Linears() {
		if lin.LoRA != nil {
			add(lin.LoRA.A)
			add(lin.LoRA.B)
		}
	}
	ps = append(ps, m.Gemma3Vision.loraParams()...)
	if m.mllama != nil {
		ps = append(ps, m.mllama.Params()...)
	}
	return ps
}

// TrainableParams lists the parameters the optimizer updates.
func (m *Model) TrainableParams() []*Param {
	var out []*Param
	for _, p := range m.Params() {
		if p.Trainable {
			out = append(out, p)
		}
	}
	return out
}

// NumParams counts the elements of the base weights (adapters excluded).
func (m *Model) NumParams() int64 {
	var n int64
	for _, p := range m.Params() {
		if isLoRAName(p.Name) {
			continue
		}
		n += int64(numel(p.Shape))
	}
	return n
}

func isLoRAName(name string) bool {
	return strings.Contains(name, ".lora_A.") || strings.Contains(name, ".lora_B.")
}

func numel(shape []int) int {
	n := 1
	for _, d := range shape {
		n *= d
	}
	return n
}

// newParam allocates a frozen parameter in the compute dtype.
func (m *Model) newParam(name string, shape ...int) (*Param, error) {
	w, err := m.B.Alloc(m.Compute, shape...)
	if err != nil {
		return nil, fmt.Errorf("allocate %s %v: %w", name, shape, err)
	}
	return &Param{Name: name, Shape: append([]int(nil), shape...), W: w}, nil
}

// MakeTrainable gives p its master copy, gradient and AdamW moments.
func (m *Model) MakeTrainable(p *Param) error { return m.makeTrainable(p, nil) }

// makeTrainable is MakeTrainable with the gradient grad (zero, p's shape)
// when not nil, instead of a new one.
func (m *Model) makeTrainable(p *Param, grad Tensor) error {
	if p.Trainable {
		return nil
	}
	if p.Quant != nil {
		return fmt.Errorf("%s is stored in NF4 and cannot be trained (QLoRA trains adapters only)", p.Name)
	}
	var err error
	alloc := func() Tensor {
		if err != nil {
			return nil
		}
		var t Tensor
		t, err = m.B.Alloc(F32, p.Shape...)
		if err == nil {
			err = m.B.Fill(t, 0)
		}
		return t
	}
	switch {
	case m.BF16Masters:
		// The compute copy is the master: bf16 values, also where the
		// backend stores them in fp32.
		p.Master = p.W
		if p.W.DType() == F32 {
			err = roundToBF16(m.B, p.W)
		}
	case p.W.DType() == F32:
		p.Master = p.W
	default:
		p.Master = alloc()
		if err == nil {
			err = m.B.Copy(p.Master, p.W)
		}
	}
	if p.Grad = grad; grad == nil {
		p.Grad = alloc()
	}
	p.M = alloc()
	p.V = alloc()
	if err != nil {
		return fmt.Errorf("make %s trainable: %w", p.Name, err)
	}
	p.Trainable = true
	return nil
}

// roundToBF16 rounds an F32 tensor's values to bfloat16 (to nearest even)
// through a BF16 scratch copy.
func roundToBF16(b Backend, t Tensor) error {
	tmp, err := b.Alloc(BF16, t.Shape()...)
	if err != nil {
		return err
	}
	defer b.Free(tmp)
	if err := b.Copy(tmp, t); err != nil {
		return err
	}
	return b.Copy(t, tmp)
}

// LoRAOptions configures adapters as PEFT does.
type LoRAOptions struct {
	Rank    int
	Alpha   float64
	Dropout float64
	Targets []string // short names: q k v o gate up down (qkv, gate_up when fused); none: all
	RSLoRA  bool
	Seed    uint64
	// Fused stacks the A matrices of the adapters that share an input (q,
	// k, v; gate, up) so that their thin products run as one GEMM each
	// (lorafuse.go). Stacking is the default even with Fused false, unless
	// WHET_LORA_FUSED=0. The Params and what checkpoints and adapter files
	// hold are the same either way.
	Fused bool
}

// LoRAScale is alpha/r, or alpha/sqrt(r) with rsLoRA.
func (o LoRAOptions) LoRAScale() float32 {
	if o.RSLoRA {
		return float32(o.Alpha / math.Sqrt(float64(o.Rank)))
	}
	return float32(o.Alpha / float64(o.Rank))
}

// NormalizeTargets maps q_proj/q/... to the short names and rejects
// unknown ones; "all" or "all-linear" means the seven of the Llama block
// (a model's own list is its Family's LoRATargets). Fused projections'
// names (qkv_proj, gate_up_proj) are known too.
func NormalizeTargets(targets []string) ([]string, error) {
	all := []string{"q", "k", "v", "o", "gate", "up", "down"}
	known := append(all[:len(all):len(all)], "qkv", "gate_up")
	if len(targets) == 0 {
		return all, nil
	}
	seen := map[string]bool{}
	var out []string
	for _, t := range targets {
		s := t
		if s == "all" || s == "all-linear" || s == "all_linear" {
			return all, nil
		}
		if len(s) > 5 && s[len(s)-5:] == "_proj" {
			s = s[:len(s)-5]
		}
		ok := false
		for _, a := range known {
			if s == a {
				ok = true
			}
		}
		if !ok {
			return nil, fmt.Errorf("lora target_modules: unknown module %q (want q, k, v, o, gate, up, down, qkv, gate_up or their _proj names)", t)
		}
		if !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	return out, nil
}

// AddLoRA attaches adapters to the targeted linears with PEFT's
// initialisation: A Kaiming-uniform (a=sqrt(5), so U(-1/sqrt(in), 1/sqrt(in))),
// B zero. The base stays frozen.
func (m *Model) AddLoRA(o LoRAOptions) error {
	if o.Rank <= 0 {
		return fmt.Errorf("lora r must be positive, got %d", o.Rank)
	}
	targets, err := m.Family().resolveLoRATargets(o.Targets)
	if err != nil {
		return err
	}
	want := map[string]bool{}
	for _, t := range targets {
		want[t] = true
	}
	// Stacked groups (opt-in): each member's A is a view of its stack.
	inStack := map[*Linear]*loraStack{}
	if LoRAFusedOn(o.Fused) {
		for _, l := range m.Layers {
			for _, lins := range m.stackGroups(l, want) {
				st, err := m.newLoRAStack(lins, o.Rank)
				if err != nil {
					return err
				}
				l.loraStacks = append(l.loraStacks, st)
				for _, lin := range lins {
					inStack[lin] = st
				}
			}
		}
	}
	rng := rand.New(rand.NewPCG(o.Seed, 0x10a))
	for _, lin := range m.Linears() {
		if !want[lin.Short] {
			continue
		}
		st := inStack[lin]
		var a *Param
		var grad Tensor
		var err error
		if st != nil {
			i := slices.Index(st.lins, lin)
			a = &Param{Name: lin.Module + ".lora_A.weight", Shape: []int{o.Rank, lin.In}, W: st.ws[i]}
			grad = st.grads[i]
		} else if a, err = m.newParam(lin.Module+".lora_A.weight", o.Rank, lin.In); err != nil {
			return err
		}
		b, err := m.newParam(lin.Module+".lora_B.weight", lin.Out, o.Rank)
		if err != nil {
			return err
		}
		bound := 1 / math.Sqrt(float64(lin.In))
		av := make([]float32, o.Rank*lin.In)
		for i := range av {
			av[i] = float32((rng.Float64()*2 - 1) * bound)
		}
		if err := m.B.Upload(a.W, av); err != nil {
			return err
		}
		if err := m.B.Fill(b.W, 0); err != nil {
			return err
		}
		if err := m.makeTrainable(a, grad); err != nil {
			return err
		}
		if err := m.MakeTrainable(b); err != nil {
			return err
		}
		lin.LoRA = &LoRA{A: a, B: b, Rank: o.Rank, Scale: o.LoRAScale(), Dropout: float32(o.Dropout), Enabled: true}
		if st != nil {
			lin.LoRA.stack, lin.LoRA.stackRow = st, st.offs[slices.Index(st.lins, lin)]
		}
	}
	return nil
}

// SetLoRAEnabled switches every adapter on or off (base vs tuned model).
func (m *Model) SetLoRAEnabled(on bool) {
	for _, lin := range m.Linears() {
		if lin.LoRA != nil {
			lin.LoRA.Enabled = on
		}
	}
}

// loraOn reports whether any adapter is switched on.
func (m *Model) loraOn() bool {
	for _, lin := range m.Linears() {
		if lin.LoRA != nil && lin.LoRA.Enabled {
			return true
		}
	}
	return false
}

// MakeAllTrainable prepares full fine-tuning.
func (m *Model) MakeAllTrainable() error {
	for _, p := range m.Params() {
		if isLoRAName(p.Name) {
			continue
		}
		if err := m.MakeTrainable(p); err != nil {
			return err
		}
	}
	return nil
}

// SyncFromMasters copies updated F32 masters into the compute copies
// (a no-op where they are the same tensor).
func (m *Model) SyncFromMasters() error {
	for _, p := range m.TrainableParams() {
		if p.Master != p.W {
			if err := m.B.Copy(p.W, p.Master); err != nil {
				return fmt.Errorf("copy master of %s: %w", p.Name, err)
			}
		}
	}
	return nil
}

// grads lists the gradients of params, for the backends' multi-tensor ops.
func grads(params []*Param) []Tensor {
	out := make([]Tensor, len(params))
	for i, p := range params {
		out[i] = p.Grad
	}
	return out
}

// ZeroGrads clears every gradient before an optimizer step's micro-batches.
func (m *Model) ZeroGrads() error {
	params := m.TrainableParams()
	if all, ok := m.B.(FillOfAll); ok {
		if err := all.FillAll(grads(params), 0); err != nil {
			return fmt.Errorf("zero grads: %w", err)
		}
		return nil
	}
	for _, p := range params {
		if err := m.B.Fill(p.Grad, 0); err != nil {
			return fmt.Errorf("zero grad of %s: %w", p.Name, err)
		}
	}
	return nil
}

// Free releases every tensor of the model. It is safe on a model that
// NewModel left half-built (nil parameters and tensors are skipped) and
// on one already freed.
func (m *Model) Free() {
	if m == nil || m.B == nil {
		return
	}
	seen := map[Tensor]bool{}
	free := func(t Tensor) {
		if t != nil && !seen[t] {
			seen[t] = true
			m.B.Free(t)
		}
	}
	for _, p := range m.Params() {
		free(p.W)
		if p.Quant != nil {
			free(p.Quant.Packed)
			free(p.Quant.Absmax)
			p.Quant.Packed, p.Quant.Absmax = nil, nil
		}
		free(p.Master)
		free(p.Grad)
		free(p.M)
		free(p.V)
		// Forget the freed tensors, so that a second Free frees nothing.
		p.W, p.Master, p.Grad, p.M, p.V = nil, nil, nil, nil, nil
	}
	// Stacked adapters: their A weights and gradients were views.
	for _, l := range m.Layers {
		if l == nil {
			continue
		}
		for _, st := range l.loraStacks {
			st.free(m.B)
		}
		l.loraStacks = nil
	}
}

// WeightValues returns a parameter's values on the host: the F32 master of
// a trainable parameter, the dequantized values of an NF4 one, else W.
func (m *Model) WeightValues(p *Param) ([]float32, error) {
	if p.Quant != nil {
		n := numel(p.Shape)
		tmp, err := m.B.Alloc(F32, n)
		if err != nil {
			return nil, err
		}
		defer m.B.Free(tmp)
		dq, ok := m.B.(NF4Dequantizer)
		if !ok {
			return nil, fmt.Errorf("backend %s cannot dequantize %s", m.B.Name(), p.Name)
		}
		if err := dq.DequantizeNF4(tmp, p.Quant.Packed, p.Quant.Absmax); err != nil {
			return nil, fmt.Errorf("dequantize %s: %w", p.Name, err)
		}
		v := make([]float32, n)
		return v, m.B.Download(tmp, v)
	}
	src := p.W
	if p.Trainable {
		src = p.Master
	}
	v := make([]float32, numel(p.Shape))
	if err := m.B.Download(src, v); err != nil {
		return nil, fmt.Errorf("download %s: %w", p.Name, err)
	}
	return v, nil
}
