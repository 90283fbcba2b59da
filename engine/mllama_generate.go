package engine

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
)

// MllamaGenerator decodes Llama 3.2 Vision with caches: the vision tower
// runs once per image set (its output is kept while the same pixels come
// back, so the base and the tuned model and later turns reuse it), the
// projector and every cross-attention layer's keys and values of it once
// per Generate (they depend on the adapters, which may be switched between
// calls), and the self-attention layers keep a KV cache, so the prompt is
// one prefill and every new token one row through the text model. It uses
// only ops the training forward uses (MatMul, RMSNorm, RoPE, SwiGLU,
// BiasAttention for the cross-attention) plus the backend's KVAttention,
// the text generator's cached attention.
//
// Its tokens equal Greedy's (the whole training forward rerun for every
// token): TestMllamaGeneratorMatchesGreedy.
type MllamaGenerator struct {
	m      *MllamaModel
	MaxLen int
	kva    KVAttention
	k, v   []Tensor // per self-attention layer [MaxLen, KVDim]; nil for cross layers
	cos    Tensor   // rotary tables for MaxLen positions
	sin    Tensor

	// The image set whose vision output is held.
	visKey  mllamaImageKey
	visOut  []float32
	visDone bool

	// VisionRuns counts the vision tower's runs (once per new image set).
	VisionRuns int

	// OnLogits, when set, sees every step's last-row logits (a copy; tests).
	OnLogits func([]float32)
}

type mllamaImageKey struct {
	images int
	pixels []float32
	ar     []int32
	arMask []int32
}

func (k mllamaImageKey) equal(s MllamaSample) bool {
	return k.images == s.Images && slices.Equal(k.pixels, s.Pixels) && slices.Equal(k.ar, s.AspectRatioIDs) && slices.Equal(k.arMask, s.AspectRatioMask)
}

// NewGenerator allocates the self-attention KV cache for maxLen tokens
// (prompt and reply). The backend must have KVAttention.
func (m *MllamaModel) NewGenerator(maxLen int) (*MllamaGenerator, error) {
	if maxLen <= 0 {
		return nil, fmt.Errorf("mllama generation: max length %d", maxLen)
	}
	kva, ok := m.B.(KVAttention)
	if !ok {
		return nil, fmt.Errorf("mllama generation: backend %s has no cached attention (KVAttention)", m.B.Name())
	}
	g := &MllamaGenerator{m: m, MaxLen: maxLen, kva: kva, k: make([]Tensor, len(m.Layers)), v: make([]Tensor, len(m.Layers))}
	c := &m.Cfg.Text
	for l, L := range m.Layers {
		if L.Cross {
			continue
		}
		for _, dst := range []*Tensor{&g.k[l], &g.v[l]} {
			t, err := m.B.Alloc(m.Compute, maxLen, c.KVDim())
			if err != nil {
				g.Free()
				return nil, fmt.Errorf("mllama generation: allocate the KV cache of layer %d for %d tokens: %w", l, maxLen, err)
			}
			*dst = t
		}
	}
	cosH, sinH := RopeTables(c, maxLen)
	var err error
	if g.cos, err = m.B.Alloc(F32, maxLen, c.HeadDim/2); err == nil {
		if err = m.B.Upload(g.cos, cosH); err == nil {
			if g.sin, err = m.B.Alloc(F32, maxLen, c.HeadDim/2); err == nil {
				err = m.B.Upload(g.sin, sinH)
			}
		}
	}
	if err != nil {
		g.Free()
		return nil, fmt.Errorf("mllama generation: rotary tables: %w", err)
	}
	return g, nil
}

// Free releases the caches.
func (g *MllamaGenerator) Free() {
	for _, ts := range [][]Tensor{g.k, g.v} {
		for i, t := range ts {
			if t != nil {
				g.m.B.Free(t)
				ts[i] = nil
			}
		}
	}
	for _, t := range []*Tensor{&g.cos, &g.sin} {
		if *t != nil {
			g.m.B.Free(*t)
			*t = nil
		}
	}
}

// Generate continues s.IDs (s.Targets is ignored; the images, aspect
// ratios and cross-attention mask as for Run) and returns the new ids,
// sampled with o as the text Generator does. Each new token sees the
// images the prompt's last token sees (the processor's rule: the last
// image's span runs to the end). onToken, when set, sees each new id and
// may return false to stop.
func (g *MllamaGenerator) Generate(ctx context.Context, s MllamaSample, o SampleOptions, onToken func(id int32) bool) ([]int32, error) {
	m := g.m
	T := len(s.IDs)
	if T == 0 {
		return nil, fmt.Errorf("mllama generation: empty prompt")
	}
	if o.MaxNewTokens <= 0 {
		o.MaxNewTokens = g.MaxLen - T
	}
	if T+o.MaxNewTokens > g.MaxLen {
		return nil, fmt.Errorf("mllama generation: prompt of %d tokens + %d new exceeds the planned %d", T, o.MaxNewTokens, g.MaxLen)
	}
	chk := s
	chk.Targets = make([]int32, T)
	if err := m.checkSample(chk); err != nil {
		return nil, fmt.Errorf("mllama generation: %w", err)
	}
	p := &mpass{m: m, B: m.B, ops: m.ops}
	defer p.free()
	st, err := g.prepare(p, s)
	if err != nil {
		return nil, err
	}
	rng := rand.New(rand.NewPCG(o.Seed, 0x6e6))
	seen := map[int32]bool{}
	for _, id := range s.IDs {
		seen[id] = true
	}
	mark := len(p.owned)
	logits := g.forward(p, st, s.IDs, 0, st.bias, st.rowKeep)
	if p.err != nil {
		return nil, fmt.Errorf("mllama generation: prefill: %w", p.err)
	}
	p.release(mark)
	pos := T
	var out []int32
	for len(out) < o.MaxNewTokens {
		if err := ctx.Err(); err != nil {
			return out, err
		}
		if g.OnLogits != nil {
			g.OnLogits(append([]float32(nil), logits...))
		}
		id := Sample(logits, o, seen, rng)
		out = append(out, id)
		seen[id] = true
		if onToken != nil && !onToken(id) {
			break
		}
		if isStop(id, o.StopIDs) || len(out) == o.MaxNewTokens {
			break
		}
		logits = g.forward(p, st, []int32{id}, pos, st.lastBias, []bool{st.lastKeep})
		if p.err != nil {
			return out, fmt.Errorf("mllama generation: token %d: %w", pos, p.err)
		}
		p.release(mark)
		pos++
	}
	return out, nil
}

// mllamaGenState is one Generate's image-side tensors.
type mllamaGenState struct {
	images     bool
	crossK     []Tensor // per cross layer: normed keys [nkv, KVDim]
	crossV     []Tensor
	nkv        int
	bias       []float32 // [T, nkv] for the prompt
	rowKeep    []bool    // [T]
	lastBias   []float32 // [nkv]: every new token's row (the prompt's last)
	lastKeep   bool
	selfParams AttnParams
}

// prepare runs the vision tower (unless its output is held), the projector
// and the cross-attention keys and values, and the prompt's cross bias.
func (g *MllamaGenerator) prepare(p *mpass, s MllamaSample) (*mllamaGenState, error) {
	m := g.m
	c := &m.Cfg.Text
	v := &m.Cfg.Vision
	T, hd := len(s.IDs), c.HeadDim
	P := v.Patches()
	st := &mllamaGenState{images: s.Images > 0, nkv: s.Images * v.MaxTiles * P}
	st.selfParams = AttnParams{NHeads: c.NumHeads, NKVHeads: c.NumKVHeads, HeadDim: hd, Scale: float32(1 / math.Sqrt(float64(hd)))}
	st.bias, st.rowKeep = mllamaCrossBias(s, v.MaxTiles, P)
	st.lastKeep = st.rowKeep[T-1]
	st.lastBias = st.bias[(T-1)*st.nkv : T*st.nkv]
	if !st.images {
		return st, nil
	}
	if !g.visDone || !g.visKey.equal(s) {
		g.visDone = false
		out := p.vision(s)
		if p.err != nil {
			return nil, fmt.Errorf("mllama generation: vision tower: %w", p.err)
		}
		g.visOut = out
		g.VisionRuns++
		g.visKey = mllamaImageKey{images: s.Images, pixels: slices.Clone(s.Pixels), ar: slices.Clone(s.AspectRatioIDs), arMask: slices.Clone(s.AspectRatioMask)}
		g.visDone = true
	}
	st.crossK = make([]Tensor, len(m.Layers))
	st.crossV = make([]Tensor, len(m.Layers))
	mark := len(p.owned)
	cs := p.upload(g.visOut, st.nkv, v.OutputDim)
	C, _ := p.linear(m.Projector, cs)
	heads := func(t Tensor, n int) Tensor { return p.view(t, 0, Rows(t)*n, hd) }
	var keep []Tensor
	for l, L := range m.Layers {
		if !L.Cross {
			continue
		}
		kraw, _ := p.linear(L.K, C)
		st.crossV[l], _ = p.linear(L.V, C)
		st.crossK[l] = p.alloc(st.nkv, c.KVDim())
		rstd := p.alloc32(st.nkv * c.NumKVHeads)
		p.do(fmt.Sprintf("k norm of layer %d", l), func() error {
			return p.B.RMSNorm(heads(st.crossK[l], c.NumKVHeads), rstd, heads(kraw, c.NumKVHeads), L.KNorm.W, float32(c.RMSNormEps))
		})
		keep = append(keep, st.crossK[l], st.crossV[l])
	}
	if p.err != nil {
		return nil, fmt.Errorf("mllama generation: cross-attention keys: %w", p.err)
	}
	// The projector's output and the keys before their norm are not
	// needed once the cross layers' keys and values are made.
	p.release(mark, keep...)
	return st, nil
}

// mllamaCrossBias is the cross-attention bias [T, nkv] and which rows see
// any tile, the training forward's rule (see mpass.sample).
func mllamaCrossBias(s MllamaSample, maxTiles, P int) ([]float32, []bool) {
	T := len(s.IDs)
	nkv := s.Images * maxTiles * P
	bias := make([]float32, T*nkv)
	rowKeep := make([]bool, T)
	ninf := float32(math.Inf(-1))
	for t := 0; t < T; t++ {
		for i := 0; i < s.Images; i++ {
			for tile := 0; tile < maxTiles; tile++ {
				if s.CrossMask[(t*s.Images+i)*maxTiles+tile] != 0 {
					rowKeep[t] = true
				}
			}
		}
		if !rowKeep[t] {
			continue
		}
		for i := 0; i < s.Images; i++ {
			for tile := 0; tile < maxTiles; tile++ {
				if s.CrossMask[(t*s.Images+i)*maxTiles+tile] != 0 {
					continue
				}
				off := t*nkv + (i*maxTiles+tile)*P
				for j := 0; j < P; j++ {
					bias[off+j] = ninf
				}
			}
		}
	}
	return bias, rowKeep
}

// forward runs ids at positions pos.. through the text model, storing the
// self-attention layers' keys and values in the cache, and returns the
// last row's logits (host, float32).
func (g *MllamaGenerator) forward(p *mpass, st *mllamaGenState, ids []int32, pos int, bias []float32, rowKeep []bool) []float32 {
	m := g.m
	c := &m.Cfg.Text
	T, D, hd := len(ids), c.HiddenSize, c.HeadDim
	kvd := c.KVDim()
	eps := float32(c.RMSNormEps)
	heads := func(t Tensor, n int) Tensor { return p.view(t, 0, Rows(t)*n, hd) }
	posv := make([]int32, T)
	for i := range posv {
		posv[i] = int32(pos + i)
	}
	positions := p.ints(posv)
	tokens := p.ints(ids)
	var crossBias Tensor
	if st.images {
		crossBias = p.upload32(bias, T, st.nkv)
	}
	x := p.alloc(T, D)
	p.do("embedding", func() error { return p.B.Embedding(x, m.Embed.W, tokens) })
	for l, L := range m.Layers {
		if L.Cross && !st.images {
			continue
		}
		h1, rstd1 := p.alloc(T, D), p.alloc32(T)
		p.do(fmt.Sprintf("layer %d attention norm", l), func() error { return p.B.RMSNorm(h1, rstd1, x, L.AttnNorm.W, eps) })
		xmid := p.alloc(T, D)
		p.do("copy", func() error { return p.B.Copy(xmid, x) })
		att := p.alloc(T, c.NumHeads*hd)
		if !L.Cross {
			q, _ := p.linear(L.Q, h1)
			k, _ := p.linear(L.K, h1)
			v, _ := p.linear(L.V, h1)
			p.do("rope q", func() error { return p.B.RoPE(q, positions, g.cos, g.sin, c.NumHeads, hd, false) })
			p.do("rope k", func() error { return p.B.RoPE(k, positions, g.cos, g.sin, c.NumKVHeads, hd, false) })
			p.do("cache k", func() error { return p.B.Copy(p.view(g.k[l], pos*kvd, T, kvd), k) })
			p.do("cache v", func() error { return p.B.Copy(p.view(g.v[l], pos*kvd, T, kvd), v) })
			kAll, vAll := p.view(g.k[l], 0, pos+T, kvd), p.view(g.v[l], 0, pos+T, kvd)
			p.do(fmt.Sprintf("layer %d attention", l), func() error { return g.kva.AttentionKV(att, q, kAll, vAll, pos, st.selfParams) })
			o, _ := p.linear(L.O, att)
			p.do("residual", func() error { return p.B.AddScaled(xmid, o, 1) })
		} else {
			qraw, _ := p.linear(L.Q, h1)
			q, rstdQ := p.alloc(T, c.NumHeads*hd), p.alloc32(T*c.NumHeads)
			p.do("q norm", func() error {
				return p.B.RMSNorm(heads(q, c.NumHeads), rstdQ, heads(qraw, c.NumHeads), L.QNorm.W, eps)
			})
			lse := p.alloc32(c.NumHeads * T)
			p.do(fmt.Sprintf("layer %d cross-attention", l), func() error {
				return p.ops.BiasAttention(att, lse, q, st.crossK[l], st.crossV[l], crossBias, st.selfParams)
			})
			a, _ := p.linear(L.O, att)
			gt := p.gate(L.AttnGate)
			p.do("gated residual", func() error { return p.B.AddScaled(xmid, a, gt) })
		}
		h2, rstd2 := p.alloc(T, D), p.alloc32(T)
		p.do(fmt.Sprintf("layer %d mlp norm", l), func() error { return p.B.RMSNorm(h2, rstd2, xmid, L.MLPNorm.W, eps) })
		gg, _ := p.linear(L.Gate, h2)
		u, _ := p.linear(L.Up, h2)
		sw := p.alloc(T, c.IntermediateSize)
		p.do("swiglu", func() error { return p.B.SwiGLU(sw, gg, u) })
		mo, _ := p.linear(L.Down, sw)
		gt := float32(1)
		if L.Cross {
			for t, k := range rowKeep {
				if !k {
					row := p.view(mo, t*D, D)
					p.do("full-text-row mask", func() error { return p.B.Fill(row, 0) })
				}
			}
			gt = p.gate(L.MLPGate)
		}
		p.do("residual", func() error { return p.B.AddScaled(xmid, mo, gt) })
		x = xmid
	}
	if m.Head.LoRA != nil || m.Head.B != nil {
		p.fail("lm head", fmt.Errorf("the LM head takes no adapter or bias"))
	}
	V := c.VocabSize
	rstdN, hN, logits := p.alloc32(1), p.alloc(1, D), p.alloc32(1, V)
	p.do("final norm", func() error { return p.B.RMSNorm(hN, rstdN, p.view(x, (T-1)*D, 1, D), m.Norm.W, eps) })
	p.do("lm head", func() error { return p.B.MatMul(logits, hN, m.Head.W.W, false, true, 1, 0) })
	return p.host(logits)
}

// SetLoRAEnabled switches every adapter (language model and projector) on
// or off, to talk to the tuned or the base model over one copy of the
// weights.
func (m *MllamaModel) SetLoRAEnabled(on bool) {
	for _, lin := range m.loraLinears() {
		if lin.LoRA != nil {
			lin.LoRA.Enabled = on
		}
	}
}

// HasLoRA reports whether any adapter is attached.
func (m *MllamaModel) HasLoRA() bool {
	for _, lin := range m.loraLinears() {
		if lin.LoRA != nil {
			return true
		}
	}
	return false
}

// MllamaGenerationAllowed refuses a GPU backend for Llama 3.2 Vision
// generation only where WHET_CUDA_VISION=0 turns the vision GPU paths off
// (CUDAVisionEnv). On by default: tools/gpu/mllama-gen passed on an H100
// (TestMllamaGeneratorMatchesCPU; whet chat's CUDA replies equal the CPU's).
func MllamaGenerationAllowed(backend Backend) error {
	return cudaVisionAllowed(backend, "Llama 3.2 Vision generation (the vision tower, attention under a bias, cached attention)")
}
