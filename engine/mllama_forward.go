package engine

import (
	"fmt"
	"math"
	"strings"
)

// MllamaSample is one sequence with its own images, as the Mllama
// processor lays them out (datasets/vision.Mllama, PackMllama and
// CrossAttentionMask make these).
type MllamaSample struct {
	IDs     []int32 // [T]
	Targets []int32 // [T], -100 ignored
	Images  int
	// Pixels [Images, MaxTiles, Channels, ImageSize, ImageSize]; unused tiles zero.
	Pixels          []float32
	AspectRatioIDs  []int32 // [Images], 1-based grid index
	AspectRatioMask []int32 // [Images, MaxTiles]
	CrossMask       []int32 // [T, Images, MaxTiles]: token t sees that tile
}

// MllamaResult is what Run reports.
type MllamaResult struct {
	// Loss is the summed cross-entropy over every kept target of all
	// samples divided by their Count.
	Loss  float64
	Count int
	// Logits [T, vocab] per sample, when asked for (host memory, copied
	// chunk by chunk: the backend holds LogitsChunk rows at a time).
	Logits [][]float32
	// VisionOut [Images*MaxTiles*Patches, vision OutputDim] per sample:
	// the vision tower's output (the projector's input), when logits are
	// asked for.
	VisionOut [][]float32
}

// mpass holds one Run's tensors; the first failed op is kept in err and
// later ops are skipped. Activations are in the model's compute dtype
// (alloc, upload); norm statistics, lse, logits, losses, the attention
// biases and the RoPE tables are float32 (alloc32, upload32), as in the
// text decoder.
type mpass struct {
	m     *MllamaModel
	B     Backend
	ops   MllamaOps
	owned []Tensor
	err   error
	// wScratch holds one NF4 linear's weight expanded for its products
	// (the largest such weight's size, allocated on first use).
	wScratch Tensor
}

func (p *mpass) fail(what string, err error) {
	if err != nil && p.err == nil {
		p.err = fmt.Errorf("%s: %w", what, err)
	}
}

// alloc allocates an activation in the compute dtype.
func (p *mpass) alloc(shape ...int) Tensor { return p.allocAs(p.m.Compute, shape...) }

// alloc32 allocates a float32 tensor (statistics, lse, logits, losses).
func (p *mpass) alloc32(shape ...int) Tensor { return p.allocAs(F32, shape...) }

func (p *mpass) allocAs(dt DType, shape ...int) Tensor {
	if p.err != nil {
		return nil
	}
	t, err := p.B.Alloc(dt, shape...)
	if err != nil {
		p.fail(fmt.Sprintf("allocate %v", shape), err)
		return nil
	}
	p.owned = append(p.owned, t)
	return t
}

func (p *mpass) zeros(shape ...int) Tensor {
	t := p.alloc(shape...)
	if p.err == nil {
		p.fail("fill", p.B.Fill(t, 0))
	}
	return t
}

func (p *mpass) ints(v []int32) Tensor {
	if p.err != nil {
		return nil
	}
	t, err := p.B.Alloc(I32, len(v))
	if err == nil {
		p.owned = append(p.owned, t)
		err = p.B.UploadInt32(t, v)
	}
	p.fail("upload ids", err)
	return t
}

// upload uploads host values into a new tensor in the compute dtype
// (rounded to bf16 in a bf16 model).
func (p *mpass) upload(v []float32, shape ...int) Tensor { return p.uploadAs(p.m.Compute, v, shape...) }

// upload32 uploads host values into a new float32 tensor.
func (p *mpass) upload32(v []float32, shape ...int) Tensor { return p.uploadAs(F32, v, shape...) }

func (p *mpass) uploadAs(dt DType, v []float32, shape ...int) Tensor {
	t := p.allocAs(dt, shape...)
	if p.err == nil {
		p.fail("upload", p.B.Upload(t, v))
	}
	return t
}

func (p *mpass) host(t Tensor) []float32 {
	if p.err != nil {
		return nil
	}
	v := make([]float32, t.Len())
	p.fail("download", p.B.Download(t, v))
	return v
}

func (p *mpass) view(t Tensor, off int, shape ...int) Tensor {
	if p.err != nil {
		return nil
	}
	v, err := p.B.View(t, off, shape...)
	p.fail("view", err)
	return v
}

// release frees the tensors allocated since mark (len(p.owned) then),
// except keep, which stay owned.
func (p *mpass) release(mark int, keep ...Tensor) {
	var kept []Tensor
	for _, t := range p.owned[mark:] {
		held := false
		for _, k := range keep {
			if t == k {
				held = true
			}
		}
		if held {
			kept = append(kept, t)
		} else {
			p.B.Free(t)
		}
	}
	p.owned = append(p.owned[:mark], kept...)
}

func (p *mpass) free() {
	for _, t := range p.owned {
		p.B.Free(t)
	}
	p.owned = nil
	if p.wScratch != nil {
		p.B.Free(p.wScratch)
		p.wScratch = nil
	}
}

// weight returns the tensor holding lin's weight for the maths: W itself,
// or for an NF4 weight its expansion into the pass's one scratch buffer
// (as the text decoder's Activations.weight does), so only one linear's
// weight is ever expanded.
func (p *mpass) weight(lin *Linear) Tensor {
	q := lin.W.Quant
	if q == nil || p.err != nil {
		return lin.W.W
	}
	if p.wScratch == nil {
		maxW := 0
		for _, L := range p.m.Layers {
			for _, l := range L.linears() {
				if l.W.Quant != nil {
					maxW = max(maxW, l.In*l.Out)
				}
			}
		}
		t, err := p.B.Alloc(p.m.Compute, maxW)
		if err != nil {
			p.fail("allocate the nf4 weight scratch", err)
			return nil
		}
		p.wScratch = t
	}
	w := p.view(p.wScratch, 0, lin.Out, lin.In)
	p.do(lin.Module+" dequantize", func() error {
		return p.B.(NF4Dequantizer).DequantizeNF4(w, q.Packed, q.Absmax)
	})
	return w
}

// do runs one op unless an earlier one failed.
func (p *mpass) do(what string, f func() error) {
	if p.err == nil {
		p.fail(what, f())
	}
}

// linear returns y = x W^T (+ b) (+ scale (x A^T) B^T) and x A^T (nil without LoRA).
func (p *mpass) linear(lin *Linear, x Tensor) (y, xa Tensor) {
	n := Rows(x)
	y = p.alloc(n, lin.Out)
	w := p.weight(lin)
	p.do(lin.Module, func() error { return p.B.MatMul(y, x, w, false, true, 1, 0) })
	if lin.B != nil {
		p.do(lin.Module+" bias", func() error { return p.B.AddBias(y, lin.B.W) })
	}
	if lo := lin.LoRA; lo != nil && lo.Enabled {
		xa = p.alloc(n, lo.Rank)
		p.do(lin.Module+" lora A", func() error { return p.B.MatMul(xa, x, lo.A.W, false, true, 1, 0) })
		p.do(lin.Module+" lora B", func() error { return p.B.MatMul(y, xa, lo.B.W, false, true, lo.Scale, 1) })
	}
	return y, xa
}

// linearBack takes dy and writes (accumulate: adds) dx when dx is not nil,
// and adds the trainable weights' and adapters' gradients.
func (p *mpass) linearBack(lin *Linear, x, xa, dy, dx Tensor, accumulate bool) {
	if dx != nil {
		beta := float32(0)
		if accumulate {
			beta = 1
		}
		w := p.weight(lin)
		p.do(lin.Module+" dx", func() error { return p.B.MatMul(dx, dy, w, false, false, 1, beta) })
	}
	if lin.W.Trainable {
		p.do(lin.Module+" dW", func() error { return p.B.MatMul(lin.W.Grad, dy, x, true, false, 1, 1) })
	}
	if lin.B != nil && lin.B.Trainable {
		p.do(lin.Module+" db", func() error { return p.B.BiasBackward(lin.B.Grad, dy) })
	}
	if lo := lin.LoRA; lo != nil && lo.Enabled {
		p.do(lin.Module+" lora dB", func() error { return p.B.MatMul(lo.B.Grad, dy, xa, true, false, lo.Scale, 1) })
		dxa := p.alloc(Rows(dy), lo.Rank)
		p.do(lin.Module+" lora dxa", func() error { return p.B.MatMul(dxa, dy, lo.B.W, false, false, lo.Scale, 0) })
		p.do(lin.Module+" lora dA", func() error { return p.B.MatMul(lo.A.Grad, dxa, x, true, false, 1, 1) })
		if dx != nil {
			p.do(lin.Module+" lora dx", func() error { return p.B.MatMul(dx, dxa, lo.A.W, false, false, 1, 1) })
		}
	}
}

// gate returns tanh of a scalar gate.
func (p *mpass) gate(g *Param) float32 {
	if v, ok := p.m.gates[g]; ok {
		return v
	}
	x := p.host(g.W)
	if p.err != nil {
		return 0
	}
	return float32(math.Tanh(float64(x[0])))
}

// gateGrad adds (1 - tanh^2) * sum(dOut * f) to a trainable gate's gradient.
func (p *mpass) gateGrad(g *Param, dOut, f Tensor) {
	if !g.Trainable || p.err != nil {
		return
	}
	a, b := p.host(dOut), p.host(f)
	gr := p.host(g.Grad)
	if p.err != nil {
		return
	}
	var s float64
	for i := range a {
		s += float64(a[i]) * float64(b[i])
	}
	t := float64(p.gate(g))
	gr[0] += float32(s * (1 - t*t))
	p.fail("gate grad", p.B.Upload(g.Grad, gr))
}

// Run runs every sample (each with its own images) and, with backward,
// adds the gradient of Loss to every trainable parameter. The vision
// tower runs without gradients: it must be frozen.
func (m *MllamaModel) Run(samples []MllamaSample, backward, keepLogits bool) (*MllamaResult, error) {
	return m.run(samples, backward, keepLogits, 0)
}

// run is Run with the gradient of gradScale × the summed loss instead of
// the mean (gradScale 0: 1/Count, Run's mean), for a trainer step whose
// mean runs over several micro-batches.
func (m *MllamaModel) run(samples []MllamaSample, backward, keepLogits bool, gradScale float32) (*MllamaResult, error) {
	if backward {
		for _, q := range m.params {
			if q.Trainable && strings.HasPrefix(q.Name, "vision_model.") {
				return nil, fmt.Errorf("parameter %s is trainable, but whet trains Mllama with the vision tower frozen", q.Name)
			}
		}
	}
	res := &MllamaResult{}
	for i, s := range samples {
		if err := m.checkSample(s); err != nil {
			return nil, fmt.Errorf("sample %d: %w", i, err)
		}
		for _, t := range s.Targets {
			if t != -100 {
				res.Count++
			}
		}
	}
	if res.Count == 0 {
		return nil, fmt.Errorf("no target to predict in %d samples", len(samples))
	}
	var sum float64
	for i, s := range samples {
		p := &mpass{m: m, B: m.B, ops: m.ops}
		scale := gradScale
		if scale == 0 {
			scale = float32(1 / float64(res.Count))
		}
		loss, logits, vis := p.sample(s, backward, keepLogits, scale)
		p.free()
		if p.err != nil {
			return nil, fmt.Errorf("sample %d: %w", i, p.err)
		}
		sum += loss
		if keepLogits {
			res.Logits = append(res.Logits, logits)
			res.VisionOut = append(res.VisionOut, vis)
		}
	}
	res.Loss = sum / float64(res.Count)
	return res, nil
}

func (m *MllamaModel) checkSample(s MllamaSample) error {
	v := &m.Cfg.Vision
	T := len(s.IDs)
	switch {
	case T == 0:
		return fmt.Errorf("no tokens")
	case len(s.Targets) != T:
		return fmt.Errorf("%d targets for %d tokens", len(s.Targets), T)
	case s.Images < 0:
		return fmt.Errorf("%d images", s.Images)
	case len(s.Pixels) != s.Images*v.MaxTiles*v.Channels*v.ImageSize*v.ImageSize:
		return fmt.Errorf("pixel values: %d values, want %d images x %d tiles x %d x %d x %d", len(s.Pixels), s.Images, v.MaxTiles, v.Channels, v.ImageSize, v.ImageSize)
	case len(s.AspectRatioIDs) != s.Images:
		return fmt.Errorf("%d aspect-ratio ids for %d images", len(s.AspectRatioIDs), s.Images)
	case len(s.AspectRatioMask) != s.Images*v.MaxTiles:
		return fmt.Errorf("aspect-ratio mask: %d values, want %d images x %d tiles", len(s.AspectRatioMask), s.Images, v.MaxTiles)
	case len(s.CrossMask) != T*s.Images*v.MaxTiles:
		return fmt.Errorf("cross-attention mask: %d values, want %d tokens x %d images x %d tiles", len(s.CrossMask), T, s.Images, v.MaxTiles)
	}
	for i, a := range s.AspectRatioIDs {
		if a < 0 || int(a) > len(v.AspectRatios) {
			return fmt.Errorf("image %d: aspect-ratio id %d is outside 0..%d", i, a, len(v.AspectRatios))
		}
	}
	for t, id := range s.IDs {
		if id < 0 || int(id) >= m.Cfg.EmbedRows() {
			return fmt.Errorf("token %d: id %d is outside the %d embedding rows", t, id, m.Cfg.EmbedRows())
		}
	}
	return nil
}

// textActs are one text layer's saved tensors.
type textActs struct {
	x, h1, rstd1, q, k, v, att, lse, xmid, h2, rstd2, g, u, s Tensor
	qraw, rstdQ, kraw, rstdK, a, mo                           Tensor
	xa                                                        map[*Linear]Tensor
}

// sample runs one sample; it returns the summed loss of its kept targets.
func (p *mpass) sample(s MllamaSample, backward, keep bool, gradScale float32) (float64, []float32, []float32) {
	m := p.m
	c := &m.Cfg.Text
	v := &m.Cfg.Vision
	T, D, hd := len(s.IDs), c.HiddenSize, c.HeadDim
	P := v.Patches()
	nkv := s.Images * v.MaxTiles * P

	// Without images transformers skips the cross-attention layers.
	images := s.Images > 0
	var visOut []float32
	var cs, C, csXA, crossBias Tensor
	if images {
		visOut = p.vision(s)
		if p.err != nil {
			return 0, nil, nil
		}
		cs = p.upload(visOut, nkv, v.OutputDim)
		C, csXA = p.linear(m.Projector, cs)
	}

	// The cross-attention bias: a token sees the tiles its mask row
	// allows; a row that allows none sees everything (transformers' full
	// text-row rule) and its MLP output is zeroed (rowKeep 0).
	bias := make([]float32, T*nkv)
	rowKeep := make([]bool, T)
	ninf := float32(math.Inf(-1))
	for t := 0; t < T; t++ {
		for i := 0; i < s.Images; i++ {
			for tile := 0; tile < v.MaxTiles; tile++ {
				if s.CrossMask[(t*s.Images+i)*v.MaxTiles+tile] != 0 {
					rowKeep[t] = true
				}
			}
		}
		if !rowKeep[t] {
			continue
		}
		for i := 0; i < s.Images; i++ {
			for tile := 0; tile < v.MaxTiles; tile++ {
				if s.CrossMask[(t*s.Images+i)*v.MaxTiles+tile] != 0 {
					continue
				}
				off := t*nkv + (i*v.MaxTiles+tile)*P
				for j := 0; j < P; j++ {
					bias[off+j] = ninf
				}
			}
		}
	}
	if images {
		crossBias = p.upload32(bias, T, nkv)
	}

	tokens := p.ints(s.IDs)
	targets := p.ints(s.Targets)
	pos := make([]int32, T)
	for i := range pos {
		pos[i] = int32(i)
	}
	positions := p.ints(pos)
	cosH, sinH := RopeTables(c, T)
	cos, sin := p.upload32(cosH, T, hd/2), p.upload32(sinH, T, hd/2)
	seqs := SeqLayout{Starts: []int32{0, int32(T)}, Dev: p.ints([]int32{0, int32(T)}), MaxLen: T}
	selfP := AttnParams{NHeads: c.NumHeads, NKVHeads: c.NumKVHeads, HeadDim: hd, Scale: float32(1 / math.Sqrt(float64(hd)))}
	eps := float32(c.RMSNormEps)

	x := p.alloc(T, D)
	p.do("embedding", func() error { return p.B.Embedding(x, m.Embed.W, tokens) })
	acts := make([]*textActs, len(m.Layers))
	// marks[l] is len(p.owned) before layer l's forward: once its
	// backward is done, everything allocated from there on (its forward
	// tensors, its output, which the next layer read, and its backward
	// ones) is freed but the running gradients dres and dC.
	marks := make([]int, len(m.Layers))
	heads := func(t Tensor, n int) Tensor { return p.view(t, 0, Rows(t)*n, hd) }
	// layer runs layer l's forward from its input x: its saved tensors
	// and its output.
	layer := func(l int, L *MllamaTextLayer, x Tensor) (*textActs, Tensor) {
		a := &textActs{x: x, xa: map[*Linear]Tensor{}}
		a.h1, a.rstd1 = p.alloc(T, D), p.alloc32(T)
		p.do(fmt.Sprintf("layer %d attention norm", l), func() error { return p.B.RMSNorm(a.h1, a.rstd1, x, L.AttnNorm.W, eps) })
		a.xmid = p.alloc(T, D)
		p.do("copy", func() error { return p.B.Copy(a.xmid, x) })
		if !L.Cross {
			a.q, a.xa[L.Q] = p.linear(L.Q, a.h1)
			a.k, a.xa[L.K] = p.linear(L.K, a.h1)
			a.v, a.xa[L.V] = p.linear(L.V, a.h1)
			p.do("rope q", func() error { return p.B.RoPE(a.q, positions, cos, sin, c.NumHeads, hd, false) })
			p.do("rope k", func() error { return p.B.RoPE(a.k, positions, cos, sin, c.NumKVHeads, hd, false) })
			a.att, a.lse = p.alloc(T, c.NumHeads*hd), p.alloc32(c.NumHeads*T)
			p.do(fmt.Sprintf("layer %d attention", l), func() error { return p.B.Attention(a.att, a.lse, a.q, a.k, a.v, seqs, selfP) })
			o, xa := p.linear(L.O, a.att)
			a.xa[L.O] = xa
			p.do("residual", func() error { return p.B.AddScaled(a.xmid, o, 1) })
		} else {
			a.qraw, a.xa[L.Q] = p.linear(L.Q, a.h1)
			a.kraw, a.xa[L.K] = p.linear(L.K, C)
			a.v, a.xa[L.V] = p.linear(L.V, C)
			a.q, a.rstdQ = p.alloc(T, c.NumHeads*hd), p.alloc32(T*c.NumHeads)
			a.k, a.rstdK = p.alloc(nkv, c.KVDim()), p.alloc32(nkv*c.NumKVHeads)
			p.do("q norm", func() error {
				return p.B.RMSNorm(heads(a.q, c.NumHeads), a.rstdQ, heads(a.qraw, c.NumHeads), L.QNorm.W, eps)
			})
			p.do("k norm", func() error {
				return p.B.RMSNorm(heads(a.k, c.NumKVHeads), a.rstdK, heads(a.kraw, c.NumKVHeads), L.KNorm.W, eps)
			})
			a.att, a.lse = p.alloc(T, c.NumHeads*hd), p.alloc32(c.NumHeads*T)
			p.do(fmt.Sprintf("layer %d cross-attention", l), func() error {
				return p.ops.BiasAttention(a.att, a.lse, a.q, a.k, a.v, crossBias, selfP)
			})
			a.a, a.xa[L.O] = p.linear(L.O, a.att)
			g := p.gate(L.AttnGate)
			p.do("gated residual", func() error { return p.B.AddScaled(a.xmid, a.a, g) })
		}
		a.h2, a.rstd2 = p.alloc(T, D), p.alloc32(T)
		p.do(fmt.Sprintf("layer %d mlp norm", l), func() error { return p.B.RMSNorm(a.h2, a.rstd2, a.xmid, L.MLPNorm.W, eps) })
		a.g, a.xa[L.Gate] = p.linear(L.Gate, a.h2)
		a.u, a.xa[L.Up] = p.linear(L.Up, a.h2)
		a.s = p.alloc(T, c.IntermediateSize)
		p.do("swiglu", func() error { return p.B.SwiGLU(a.s, a.g, a.u) })
		mo, xa := p.linear(L.Down, a.s)
		a.xa[L.Down], a.mo = xa, mo
		next := p.alloc(T, D)
		p.do("copy", func() error { return p.B.Copy(next, a.xmid) })
		g := float32(1)
		if L.Cross {
			for t, k := range rowKeep {
				if !k {
					row := p.view(mo, t*D, D)
					p.do("full-text-row mask", func() error { return p.B.Fill(row, 0) })
				}
			}
			g = p.gate(L.MLPGate)
		}
		p.do("residual", func() error { return p.B.AddScaled(next, mo, g) })
		return a, next
	}
	// With m.Checkpointing only each layer's input survives its forward;
	// the backward runs the layer's forward again from it. A forward
	// without a backward (evaluation, generation) keeps only each layer's
	// output: its peak is one layer's tensors, below a training step's
	// with or without checkpointing, as memplan.PlanMllama assumes.
	inputs := make([]Tensor, len(m.Layers))
	for l, L := range m.Layers {
		marks[l] = len(p.owned)
		if L.Cross && !images {
			continue
		}
		a, next := layer(l, L, x)
		switch {
		case !backward:
			p.release(marks[l], next)
		case m.Checkpointing:
			inputs[l] = x
			p.release(marks[l], next)
		default:
			acts[l] = a
		}
		x = next
	}
	// The final norm, the LM head and the cross-entropy run over
	// LogitsChunk rows at a time (the text path's rule and the run
	// config's train.logits_chunk, which memplan.Plan counts too): no
	// buffer is [T, vocab]. With backward each chunk's logit gradient goes
	// through the head at once, into dh.
	V := c.VocabSize
	chunk := LogitsChunk(T, V, m.LogitsRows)
	// Logits and the cross-entropy are float32 whatever the compute
	// dtype (the text decoder's rule); in a bf16 model the logits'
	// gradient goes back through the head in bf16 (dlogits).
	rstdN := p.alloc32(T)
	hN, logits := p.alloc(chunk, D), p.alloc32(chunk, V)
	losses := p.alloc32(T)
	var dh, dlogits Tensor
	if backward {
		dh = p.alloc(T, D)
		if m.Compute != F32 {
			dlogits = p.alloc(chunk, V)
		}
	}
	var logitsHost []float32
	if keep {
		logitsHost = make([]float32, 0, T*V)
	}
	if m.Head.LoRA != nil || m.Head.B != nil {
		p.fail("lm head", fmt.Errorf("the chunked LM head takes no adapter or bias"))
	}
	for r0 := 0; r0 < T && p.err == nil; r0 += chunk {
		r1 := min(r0+chunk, T)
		n := r1 - r0
		h, lg := p.view(hN, 0, n, D), p.view(logits, 0, n, V)
		p.do(fmt.Sprintf("final norm rows %d-%d", r0, r1), func() error {
			return p.B.RMSNorm(h, p.view(rstdN, r0, n), p.view(x, r0*D, n, D), m.Norm.W, eps)
		})
		p.do(fmt.Sprintf("lm head rows %d-%d", r0, r1), func() error { return p.B.MatMul(lg, h, m.Head.W.W, false, true, 1, 0) })
		if keep {
			logitsHost = append(logitsHost, p.host(lg)...)
		}
		dl := lg // dL/dlogits after the cross-entropy
		ce, into := p.B.(CrossEntropyInto)
		switch {
		case backward && dlogits != nil && into:
			// The gradient goes straight into the compute dtype.
			dl = p.view(dlogits, 0, n, V)
			p.do(fmt.Sprintf("cross-entropy rows %d-%d", r0, r1), func() error {
				return ce.SoftmaxCrossEntropyInto(dl, lg, p.view(targets, r0, n), p.view(losses, r0, n), gradScale)
			})
		default:
			p.do(fmt.Sprintf("cross-entropy rows %d-%d", r0, r1), func() error {
				return p.B.SoftmaxCrossEntropy(lg, p.view(targets, r0, n), p.view(losses, r0, n), gradScale)
			})
			if backward && dlogits != nil {
				dl = p.view(dlogits, 0, n, V)
				p.do(fmt.Sprintf("cast logits gradient rows %d-%d", r0, r1), func() error { return p.B.Copy(dl, lg) })
			}
		}
		if !backward {
			continue
		}
		p.do(fmt.Sprintf("lm head input grad rows %d-%d", r0, r1), func() error {
			return p.B.MatMul(p.view(dh, r0*D, n, D), dl, m.Head.W.W, false, false, 1, 0)
		})
		if m.Head.W.Trainable {
			p.do(fmt.Sprintf("lm head weight grad rows %d-%d", r0, r1), func() error {
				return p.B.MatMul(m.Head.W.Grad, dl, h, true, false, 1, 1)
			})
		}
	}
	var loss float64
	for _, l := range p.host(losses) {
		loss += float64(l)
	}
	if !backward || p.err != nil {
		return loss, logitsHost, visOut
	}

	// Backward: dh holds dL/dhN.
	dres := p.zeros(T, D)
	p.do("final norm backward", func() error { return p.B.RMSNormBackward(dres, gradOf(m.Norm), dh, x, m.Norm.W, rstdN) })
	var dC Tensor
	if images {
		dC = p.zeros(nkv, D)
	}
	for l := len(m.Layers) - 1; l >= 0; l-- {
		L, a := m.Layers[l], acts[l]
		if a == nil && inputs[l] != nil {
			a, _ = layer(l, L, inputs[l]) // checkpointing: recompute
		}
		if a == nil {
			continue // a cross-attention layer skipped without images
		}
		// MLP branch: x_out = x_mid + g * mask * mo.
		dmo := dres
		if L.Cross {
			dmo = p.alloc(T, D)
			g := p.gate(L.MLPGate)
			p.do("copy", func() error { return p.B.Copy(dmo, dres) })
			p.do("scale", func() error { return p.B.Scale(dmo, g) })
			for t, k := range rowKeep {
				if !k {
					row := p.view(dmo, t*D, D)
					p.do("full-text-row mask", func() error { return p.B.Fill(row, 0) })
				}
			}
			p.gateGrad(L.MLPGate, dres, a.mo)
		}
		ds := p.alloc(T, c.IntermediateSize)
		p.linearBack(L.Down, a.s, a.xa[L.Down], dmo, ds, false)
		dg, du := p.alloc(T, c.IntermediateSize), p.alloc(T, c.IntermediateSize)
		p.do("swiglu backward", func() error { return p.B.SwiGLUBackward(dg, du, ds, a.g, a.u) })
		dh2 := p.alloc(T, D)
		p.linearBack(L.Gate, a.h2, a.xa[L.Gate], dg, dh2, false)
		p.linearBack(L.Up, a.h2, a.xa[L.Up], du, dh2, true)
		p.do(fmt.Sprintf("layer %d mlp norm backward", l), func() error {
			return p.B.RMSNormBackward(dres, gradOf(L.MLPNorm), dh2, a.xmid, L.MLPNorm.W, a.rstd2)
		})
		// Attention branch: x_mid = x + g * o(att).
		do := dres
		if L.Cross {
			do = p.alloc(T, D)
			g := p.gate(L.AttnGate)
			p.do("copy", func() error { return p.B.Copy(do, dres) })
			p.do("scale", func() error { return p.B.Scale(do, g) })
			p.gateGrad(L.AttnGate, dres, a.a)
		}
		datt := p.alloc(T, c.NumHeads*hd)
		p.linearBack(L.O, a.att, a.xa[L.O], do, datt, false)
		dq := p.alloc(T, c.NumHeads*hd)
		dh1 := p.alloc(T, D)
		if !L.Cross {
			dk, dv := p.alloc(T, c.KVDim()), p.alloc(T, c.KVDim())
			p.do(fmt.Sprintf("layer %d attention backward", l), func() error {
				return p.B.AttentionBackward(dq, dk, dv, datt, a.q, a.k, a.v, a.att, a.lse, seqs, selfP)
			})
			p.do("rope q backward", func() error { return p.B.RoPE(dq, positions, cos, sin, c.NumHeads, hd, true) })
			p.do("rope k backward", func() error { return p.B.RoPE(dk, positions, cos, sin, c.NumKVHeads, hd, true) })
			p.linearBack(L.Q, a.h1, a.xa[L.Q], dq, dh1, false)
			p.linearBack(L.K, a.h1, a.xa[L.K], dk, dh1, true)
			p.linearBack(L.V, a.h1, a.xa[L.V], dv, dh1, true)
		} else {
			dk, dv := p.alloc(nkv, c.KVDim()), p.alloc(nkv, c.KVDim())
			p.do(fmt.Sprintf("layer %d cross-attention backward", l), func() error {
				return p.ops.BiasAttentionBackward(dq, dk, dv, datt, a.q, a.k, a.v, a.att, a.lse, crossBias, selfP)
			})
			dqraw, dkraw := p.zeros(T, c.NumHeads*hd), p.zeros(nkv, c.KVDim())
			p.do("q norm backward", func() error {
				return p.B.RMSNormBackward(heads(dqraw, c.NumHeads), gradOf(L.QNorm), heads(dq, c.NumHeads), heads(a.qraw, c.NumHeads), L.QNorm.W, a.rstdQ)
			})
			p.do("k norm backward", func() error {
				return p.B.RMSNormBackward(heads(dkraw, c.NumKVHeads), gradOf(L.KNorm), heads(dk, c.NumKVHeads), heads(a.kraw, c.NumKVHeads), L.KNorm.W, a.rstdK)
			})
			p.linearBack(L.Q, a.h1, a.xa[L.Q], dqraw, dh1, false)
			p.linearBack(L.K, C, a.xa[L.K], dkraw, dC, true)
			p.linearBack(L.V, C, a.xa[L.V], dv, dC, true)
		}
		p.do(fmt.Sprintf("layer %d attention norm backward", l), func() error {
			return p.B.RMSNormBackward(dres, gradOf(L.AttnNorm), dh1, a.x, L.AttnNorm.W, a.rstd1)
		})
		// Layer l is done: its tensors (and the head's, the first time)
		// go, so only one layer's backward tensors exist at once.
		p.release(marks[l], dres, dC)
	}
	if m.Embed.Trainable {
		p.do("embedding backward", func() error { return p.B.EmbeddingBackward(m.Embed.Grad, dres, tokens) })
	}
	if images {
		p.linearBack(m.Projector, cs, csXA, dC, nil, false)
	}
	return loss, logitsHost, visOut
}

// gradOf is p's gradient when trainable, else nil (a frozen norm weight).
func gradOf(p *Param) Tensor {
	if p.Trainable {
		return p.Grad
	}
	return nil
}

// Greedy extends s's ids by up to n argmax tokens, stopping after one of
// stop, recomputing the whole sequence at each step (no cache: the CPU
// oracle's generation). Each new token sees the images the last image
// token's span gives it (the processor's rule: the last image's span runs
// to the end).
func (m *MllamaModel) Greedy(s MllamaSample, n int, stop []int32) ([]int32, error) {
	v := &m.Cfg.Vision
	per := s.Images * v.MaxTiles
	var out []int32
	for len(out) < n {
		T := len(s.IDs)
		cur := s
		cur.Targets = make([]int32, T)
		for i := range cur.Targets {
			cur.Targets[i] = -100
		}
		cur.Targets[T-1] = 0 // Run wants one target; its loss is not used
		r, err := m.Run([]MllamaSample{cur}, false, true)
		if err != nil {
			return out, err
		}
		V := m.Cfg.Text.VocabSize
		row := r.Logits[0][(T-1)*V : T*V]
		best := 0
		for j, x := range row {
			if x > row[best] {
				best = j
			}
		}
		out = append(out, int32(best))
		for _, st := range stop {
			if int32(best) == st {
				return out, nil
			}
		}
		// The new token's cross-attention row repeats the last one's.
		s.IDs = append(append([]int32(nil), s.IDs...), int32(best))
		if per > 0 {
			s.CrossMask = append(append([]int32(nil), s.CrossMask...), s.CrossMask[(T-1)*per:T*per]...)
		}
	}
	return out, nil
}
