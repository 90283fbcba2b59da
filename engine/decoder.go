package engine

import (
	"fmt"
	"math"

	"whet/datasets"
	"whet/engine/units"
)

// The decoder, llm.c style: an explicit forward that saves what the
// backward needs, and a hand-derived backward that mirrors it layer by
// layer. Per layer l, with T tokens and the residual stream x (the
// family's description, Family, says which optional steps run):
//
//	h1 = rmsnorm(x_l)                       saved: h1, rstd1
//	q,k,v = h1 Wq^T (+bq), h1 Wk^T, h1 Wv^T  (+ LoRA; one fused matrix for Phi-3)
//	[q, k = rmsnorm per head (q/k norm)]    saved: q, k before it, rstd
//	rope on q and k (per layer table)
//	a = attention(q, k, v)                  saved: q, k, v, a, lse
//	x_mid = x_l + a Wo^T                    [Gemma: x_l + rmsnorm(a Wo^T), saved: a Wo^T]
//	h2 = rmsnorm(x_mid)                     saved: x_mid, h2, rstd2
//	g, u = h2 Wg^T, h2 Wu^T ; s = act(g)*u saved: g, u (act: silu or gelu-tanh)
//	x_{l+1} = x_mid + s Wd^T                [Gemma: x_mid + rmsnorm(s Wd^T)]
//
// After the last layer the LM head runs over chunks of C rows (C =
// LogitsChunk; headLossRange), each chunk's buffers reused by the next:
//
//	hN = rmsnorm(x_L) [C, D]               saved: rstdN (the rows' only trace)
//	logits = hN W^T [C, V] (f32)
//	loss, dlogits = cross-entropy          one kernel; Gemma 2's soft-cap inside
//	dh = dlogits W [C, D] ; dW += dlogits^T hN
//
// so nothing [T, V], and no [T, D] norm output, exists.
//
// s is not saved: one buffer serves every layer's forward and the backward
// recomputes it from g and u (an elementwise pass, instead of keeping L
// buffers of [T, I], the largest activation). With activation
// checkpointing only x_l is kept per layer and one shared set of the other
// buffers is recomputed from it during the backward.

// Activations holds every buffer a forward/backward pass over at most Cap
// tokens needs. Buffers are sized once; a batch of T <= Cap tokens uses
// views of their first T rows.
type Activations struct {
	m             *Model
	Cap           int
	Checkpointing bool

	fam                        *Family
	tokens, targets, positions Tensor // I32 [Cap]
	seqStarts                  Tensor // I32 [Cap+1]
	// ropes holds each rotary table the layers read, cos and sin
	// [Cap, RotaryDim/2]; longRope is set for a batch that reaches past
	// LongRoPE's original context.
	ropes    map[RopeKind][2]Tensor
	longRope bool
	// normW holds (1 + w) of the norm being run, for (1 + w) families.
	normW Tensor
	// embedScale multiplies the embeddings (1 unless the family scales them).
	embedScale float32

	resid  []Tensor // [L+1] x_l, [Cap, D]
	layers []*layerActs
	hN     Tensor // final norm output of one LM-head chunk [chunk, D] (finalNorm)
	rstdN  Tensor // F32 [Cap]
	losses Tensor // F32 [Cap]
	logits Tensor // F32 [chunk, V]
	// dlogits is the logits gradient in the compute dtype, when that is not F32.
	dlogits Tensor
	// chunk is how many rows the LM head and cross-entropy run at once
	// (LogitsChunk): logits and dlogits hold that many rows.
	chunk int
	// fusedCap: Gemma 2's final soft-cap runs inside the cross-entropy
	// (CappedCrossEntropy, where the backend's FusedSoftCap says so);
	// otherwise capped keeps the capped logits [chunk, V] for the cap's
	// backward.
	fusedCap bool
	capped   Tensor

	// backward scratch
	dres, dh      Tensor // [Cap, D]
	dtmp          Tensor // [Cap, D]: sandwich norms' output and input gradients
	datt, dq, dq2 Tensor // [Cap, QDim] (dq2: before the q norm)
	dk, dv, dk2   Tensor // [Cap, KVDim]
	ds, dg, du    Tensor // [Cap, I]
	dxa           Tensor // [Cap, maxRank]
	scratchIn     Tensor // DropoutScratch elements (LoRA dropout only)
	wScratch      Tensor // one dequantized NF4 weight at a time (QLoRA)
	t             int    // tokens in the current batch (of the tile, inside an MLP tile)
	r0            int    // first row of the current MLP tile (0 outside one)
	// mlpChunk is how many rows the MLP runs at once (MLPRowChunk): g, u,
	// s, dg, du and ds hold that many rows, and the backward recomputes
	// gate/up per tile when it is below Cap.
	mlpChunk int
	// recomputing is set while a checkpointed layer's forward is rerun
	// before its backward.
	recomputing bool
	seqs        SeqLayout
	lossesHost  []float32
	dropoutSeed uint64
	training    bool     // dropout only applies while training
	kv          *kvCache // set while generating
	// matVec lets single-row products of NF4 linears run on the codes
	// (NF4MatVec) instead of expanding the weight: the generator's fast
	// decoding sets it.
	matVec bool
	// fuse lets a one-row decoding pass take the backend's fused ops
	// (FusedMatVecs): the generator sets it from DecodeFuseEnv.
	fuse bool
	// loraFrom, when > 0, runs the adapters on rows [loraFrom, t) only:
	// the rows before it are the base model's (side-by-side generation,
	// GroupGenerator.TunedFrom).
	loraFrom           int
	viewErr            error // first failed view of a pass (a bug), see noteViewErr
	owned              []Tensor
	lastTargets, count int
	// afterLayer, when set (the last micro-batch of a data-parallel
	// rank's step), is called once a layer's backward has made its
	// parameters' gradients final, so their reduction can start.
	afterLayer func(l int) error
	// img holds the batch's images for a Gemma 3 vision model (gemma3_vision_acts.go).
	img *gemma3ImageActs
	// off is set when the checkpoints live in host memory (offload.go).
	off *ckptOffload
	// stackedProducts counts the stacked adapter products run (tests).
	stackedProducts int
}

// ActivationOptions choose how a pass saves what its backward needs.
type ActivationOptions struct {
	// Checkpointing keeps only each layer's input and recomputes the rest.
	Checkpointing bool
	// Tiling is the MLP's and the LM head's row tiles (0: the default rules).
	Tiling Tiling
	// Offload is train.offload_checkpoints: auto, on or off (empty: off),
	// decided by OffloadCheckpoints. It needs checkpointing and a backend
	// with host memory (HostOffloader); "on" without one is an error.
	Offload string
}

type layerActs struct {
	h1, rstd1, q, k, v, att, lse, xmid, h2, rstd2, g, u, s Tensor
	qraw, kraw, rstdQ, rstdK                               Tensor             // q/k norm: input and rstd
	ao, rstdAO, mo, rstdMO                                 Tensor             // sandwich norms: inputs and rstd
	xa                                                     map[*Linear]Tensor // LoRA x@A^T [Cap, r]
	// stackXA is each stacked adapter group's intermediate, Cap·R
	// elements (lorafuse.go); its members' xa are views of the same memory,
	// used when a pass runs them unstacked.
	stackXA map[*loraStack]Tensor
}

// NewActivations sizes the buffers for batches of up to capTokens tokens,
// with the MLP and the LM head tiled as MLPRowChunk's and LogitsChunk's
// default rules say.
func (m *Model) NewActivations(capTokens int, checkpointing bool) (*Activations, error) {
	return m.NewActivationsTiled(capTokens, checkpointing, Tiling{})
}

// Tiling says how many rows (tokens) the row-tiled parts of a pass run at
// once; 0 takes the default rule. These are the run config's
// train.mlp_chunk and train.logits_chunk.
type Tiling struct {
	// MLPRows: gate/up, the gated activation and down (MLPRowChunk).
	MLPRows int
	// LogitsRows: the LM head and cross-entropy (LogitsChunk).
	LogitsRows int
}

// NewActivationsTiled is NewActivations with the MLP's row tile chosen by
// MLPRowChunk(capTokens, I, tiling.MLPRows) and the LM head's by
// LogitsChunk(capTokens, V, tiling.LogitsRows).
func (m *Model) NewActivationsTiled(capTokens int, checkpointing bool, tiling Tiling) (*Activations, error) {
	return m.NewActivationsWith(capTokens, ActivationOptions{Checkpointing: checkpointing, Tiling: tiling, Offload: OffloadOff})
}

// NewActivationsWith sizes the buffers for batches of up to capTokens
// tokens with the options o.
func (m *Model) NewActivationsWith(capTokens int, o ActivationOptions) (*Activations, error) {
	checkpointing, tiling := o.Checkpointing, o.Tiling
	mode, err := ParseOffloadMode(o.Offload)
	if err != nil {
		return nil, fmt.Errorf("engine: %w", err)
	}
	if tiling.MLPRows < 0 {
		return nil, fmt.Errorf("engine: MLP row chunk %d: want 0 (automatic) or a positive row count", tiling.MLPRows)
	}
	if tiling.LogitsRows < 0 {
		return nil, fmt.Errorf("engine: logits chunk %d: want 0 (automatic) or a positive row count", tiling.LogitsRows)
	}
	a := &Activations{m: m, Cap: capTokens, Checkpointing: checkpointing, fam: m.Family(), embedScale: 1}
	if a.fam == nil {
		return nil, checkSupported(m.Cfg.ModelType)
	}
	alloc := func(dt DType, shape ...int) Tensor {
		if err != nil {
			return nil
		}
		var t Tensor
		t, err = m.B.Alloc(dt, shape...)
		if err != nil {
			err = fmt.Errorf("allocate activations %v %v: %w", dt, shape, err)
			return nil
		}
		a.owned = append(a.owned, t)
		return t
	}
	c := m.Cfg
	D, I, Q, KV, T := c.HiddenSize, c.IntermediateSize, c.QDim(), c.KVDim(), capTokens
	cd := m.Compute
	a.tokens = alloc(I32, T)
	a.targets = alloc(I32, T)
	a.positions = alloc(I32, T)
	a.seqStarts = alloc(I32, T+1)
	a.ropes = map[RopeKind][2]Tensor{}
	for _, kind := range c.ropeKinds() {
		cs, sn := RopeTablesOf(&c, kind, T)
		ct, st := alloc(F32, T, c.RotaryDim()/2), alloc(F32, T, c.RotaryDim()/2)
		if err == nil {
			if err = m.B.Upload(ct, cs); err == nil {
				err = m.B.Upload(st, sn)
			}
		}
		a.ropes[kind] = [2]Tensor{ct, st}
	}
	fam := a.fam
	if fam.NormOffset != 0 {
		a.normW = alloc(cd, max(D, c.HeadDim))
	}
	if fam.EmbedScale {
		a.embedScale = roundTo(cd, float32(math.Sqrt(float64(D))))
	}
	// The residual streams x_0..x_L: the first OffloadSlots now, the rest
	// at the end, on the device or (offloaded) as aliases of these slots.
	a.resid = make([]Tensor, c.NumLayers+1)
	for l := 0; l <= c.NumLayers && l < OffloadSlots; l++ {
		a.resid[l] = alloc(cd, T, D)
	}
	maxRank := 0
	for _, lin := range m.Linears() {
		if lin.LoRA != nil && lin.LoRA.Rank > maxRank {
			maxRank = lin.LoRA.Rank
		}
	}
	for _, l := range m.Layers {
		for _, st := range l.loraStacks {
			maxRank = max(maxRank, st.rows) // the intermediate gradient scratch holds a stack's
		}
	}
	nSets := c.NumLayers
	if checkpointing {
		nSets = 1
	}
	a.mlpChunk = MLPRowChunk(T, I, tiling.MLPRows)
	swigluOut := alloc(cd, a.mlpChunk, I) // shared by every layer, recomputed in the backward
	// Tiled, gate and up are one tile's rows, shared by every layer: the
	// backward recomputes them per tile from h2.
	var tileG, tileU Tensor
	if a.mlpChunk < T {
		tileG, tileU = alloc(cd, a.mlpChunk, I), alloc(cd, a.mlpChunk, I)
	}
	for l := 0; l < nSets; l++ {
		la := &layerActs{
			h1: alloc(cd, T, D), rstd1: alloc(F32, T),
			q: alloc(cd, T, Q), k: alloc(cd, T, KV), v: alloc(cd, T, KV),
			att: alloc(cd, T, Q), lse: alloc(F32, c.NumHeads, T),
			xmid: alloc(cd, T, D), h2: alloc(cd, T, D), rstd2: alloc(F32, T),
			g: tileG, u: tileU, s: swigluOut,
			xa: map[*Linear]Tensor{}, stackXA: map[*loraStack]Tensor{},
		}
		if a.mlpChunk >= T {
			la.g, la.u = alloc(cd, T, I), alloc(cd, T, I)
		}
		if fam.QKNorm {
			la.qraw, la.kraw = alloc(cd, T, Q), alloc(cd, T, KV)
			la.rstdQ, la.rstdK = alloc(F32, T*c.NumHeads), alloc(F32, T*c.NumKVHeads)
		}
		if fam.SandwichNorms {
			la.ao, la.rstdAO = alloc(cd, T, D), alloc(F32, T)
			la.mo, la.rstdMO = alloc(cd, T, D), alloc(F32, T)
		}
		a.layers = append(a.layers, la)
	}
	// LoRA intermediates are per layer even with checkpointing they are
	// recomputed, so they live in the layer's set.
	for li, layer := range m.Layers {
		set := a.layers[0]
		if !checkpointing {
			set = a.layers[li]
		}
		for j, st := range layer.loraStacks {
			n, offs := stackXABuffer(st, T)
			buf := Tensor(nil)
			if checkpointing && li > 0 && j < len(m.Layers[0].loraStacks) && m.Layers[0].loraStacks[j].rows == st.rows {
				buf = set.stackXA[m.Layers[0].loraStacks[j]]
			} else {
				buf = alloc(cd, n)
			}
			set.stackXA[st] = buf
			for i, lin := range st.lins {
				if err == nil {
					set.xa[lin], err = m.B.View(buf, offs[i], T, lin.LoRA.Rank)
				}
			}
		}
		for i, lin := range layer.linears() {
			if _, done := set.xa[lin]; done && lin.LoRA != nil && lin.LoRA.stack != nil {
				continue
			}
			if lin.LoRA != nil {
				if checkpointing && li > 0 {
					// share the buffer of the same module in layer 0
					set.xa[lin] = set.xa[m.Layers[0].linears()[i]]
					continue
				}
				set.xa[lin] = alloc(cd, T, lin.LoRA.Rank)
			}
		}
	}
	a.rstdN = alloc(F32, T)
	a.losses = alloc(F32, T)
	a.chunk = LogitsChunk(T, c.VocabSize, tiling.LogitsRows)
	// The final norm runs chunk by chunk in front of the head (finalNorm):
	// its output is [chunk, D], its backward reads the saved rstd.
	a.hN = alloc(cd, a.chunk, D)
	// Logits and the cross-entropy are float32 whatever the compute dtype,
	// as transformers upcasts logits before the loss; the gradient goes
	// back through the head in the compute dtype (dlogits). A final
	// soft-cap is applied inside the cross-entropy where the backend fuses
	// it (CappedCrossEntropy), with no capped copy; else around it.
	a.logits = alloc(F32, a.chunk, c.VocabSize)
	if c.FinalSoftCap > 0 {
		ce, ok := m.B.(CappedCrossEntropy)
		if a.fusedCap = ok && ce.FusedSoftCap(); !a.fusedCap {
			a.capped = alloc(F32, a.chunk, c.VocabSize)
		}
	}
	if cd != F32 {
		a.dlogits = alloc(cd, a.chunk, c.VocabSize)
	}
	a.dres = alloc(cd, T, D)
	a.dh = alloc(cd, T, D)
	a.datt = alloc(cd, T, Q)
	a.dq = alloc(cd, T, Q)
	a.dk = alloc(cd, T, KV)
	if fam.QKNorm {
		a.dq2, a.dk2 = alloc(cd, T, Q), alloc(cd, T, KV)
	}
	if fam.SandwichNorms {
		a.dtmp = alloc(cd, T, D)
	}
	a.dv = alloc(cd, T, KV)
	a.ds = alloc(cd, a.mlpChunk, I)
	a.dg = alloc(cd, a.mlpChunk, I)
	a.du = alloc(cd, a.mlpChunk, I)
	if maxRank > 0 {
		a.dxa = alloc(cd, T, maxRank)
	}
	for _, lin := range m.Linears() {
		if lin.LoRA != nil && lin.LoRA.Dropout > 0 {
			a.scratchIn = alloc(cd, DropoutScratch(&c, T, a.mlpChunk))
			break
		}
	}
	maxW := 0
	for _, lin := range m.Linears() {
		if lin.W.Quant != nil {
			maxW = max(maxW, lin.In*lin.Out)
		}
	}
	if maxW > 0 {
		a.wScratch = alloc(cd, maxW)
	}
	if err == nil {
		err = a.placeCheckpoints(mode, alloc)
	}
	if err != nil {
		a.Free()
		return nil, err
	}
	return a, nil
}

// placeCheckpoints allocates the residual streams past the first
// OffloadSlots: on the device, or, when OffloadCheckpoints says so, as
// host buffers the streams are copied to while the slots rotate. For
// "auto" the need is those streams plus the attention backward's
// workspace (allocated by the backend on first use) against the device
// memory free now, every other buffer being allocated already.
func (a *Activations) placeCheckpoints(mode string, alloc func(DType, ...int) Tensor) error {
	m, c := a.m, &a.m.Cfg
	T, D, cd := a.Cap, c.HiddenSize, m.Compute
	extra := c.NumLayers + 1 - OffloadSlots
	if extra <= 0 {
		return nil
	}
	h, canOffload := m.B.(HostOffloader)
	offload := false
	switch {
	case !a.Checkpointing:
	case mode == OffloadOn:
		if !canOffload {
			return fmt.Errorf("engine: offload_checkpoints on: backend %s has no host memory to offload to: %w", m.B.Name(), ErrNotImplemented)
		}
		offload = true
	case mode == OffloadAuto && canOffload && h.OffloadSavesDevice():
		var free int64
		if fr, ok := m.B.(FreeMemoryReporter); ok {
			if f, _, err := fr.MemInfo(); err == nil {
				free = f
			}
		}
		need := int64(extra) * int64(T) * int64(D) * int64(cd.Size())
		// The attention backward's scratch: delta [nh, T] fp32 and, where
		// the backend takes the fused Hopper backward (AttnKernels), its
		// fp32 dq accumulator; with GQA, the dK/dV accumulators [T, 2·KV],
		// fp32.
		var attn AttnKernels
		if r, ok := m.B.(AttnKernelsReporter); ok {
			attn = r.AttnKernels()
		}
		need += attn.BackwardScratch(T, c.NumHeads, c.HeadDim, cd)
		if c.NumKVHeads < c.NumHeads {
			need += 8 * int64(T) * int64(c.KVDim())
		}
		offload = OffloadCheckpoints(mode, true, need, free)
	}
	if !offload {
		for l := OffloadSlots; l <= c.NumLayers; l++ {
			a.resid[l] = alloc(cd, T, D)
		}
		return nil
	}
	host := int64(OffloadedLayers(c.NumLayers)) * int64(T) * int64(D) * int64(cd.Size())
	if err := checkHostMemory(host); err != nil {
		return fmt.Errorf("engine: %w", err)
	}
	o := &ckptOffload{h: h, slots: a.resid[:OffloadSlots:OffloadSlots], holds: make([]int, OffloadSlots)}
	for i := range o.holds {
		o.holds[i] = -1
	}
	a.off = o // before the host allocations, so that Free releases them
	for l := OffloadSlots; l <= c.NumLayers; l++ {
		a.resid[l] = o.slots[l%OffloadSlots]
	}
	for j := 0; j < OffloadedLayers(c.NumLayers); j++ {
		t, err := h.AllocHost(cd, T, D)
		if err != nil {
			return fmt.Errorf("engine: host memory for offloaded checkpoint %d of %d (%s each): %w",
				j+1, OffloadedLayers(c.NumLayers), units.Bytes(int64(T)*int64(D)*int64(cd.Size())), err)
		}
		o.host = append(o.host, t)
	}
	return nil
}

// OffloadsCheckpoints reports whether the checkpoints live in host memory.
func (a *Activations) OffloadsCheckpoints() bool { return a.off != nil }

// HostBytes is the host memory the offloaded checkpoints take (0 when
// they stay on the device).
func (a *Activations) HostBytes() int64 {
	if a.off == nil {
		return 0
	}
	var n int64
	for _, t := range a.off.host {
		n += int64(t.Len()) * int64(t.DType().Size())
	}
	return n
}

// DropoutScratch is the size, in elements, of the buffer LoRA dropout
// works in (the dropped input of an adapter, and the input gradient
// through the mask): [tokens, in] for the attention projections (in = D
// or Q), [tile, in] inside an MLP tile of mlpRows rows (in = D or I). Only
// a run with LoRA dropout allocates it. The memory plan uses it too.
func DropoutScratch(c *ModelConfig, tokens, mlpRows int) int {
	return max(tokens*max(c.HiddenSize, c.QDim()), mlpRows*max(c.HiddenSize, c.IntermediateSize))
}

// MLPRowChunk picks how many rows (tokens) the MLP runs at once for
// batches of up to T tokens and intermediate size I: requested when
// positive, else every row while T·I stays within 2^26 elements (as
// LogitsChunk's bound: 128 MiB of bf16 per [rows, I] buffer), else
// 2^26/I rows (4681 for Llama 3 8B's 14336). Below T, the six [rows, I]
// buffers (gate, up, their product and the three gradients) stop growing
// with the sequence, at the cost of recomputing gate/up in the backward.
// The memory plan uses the same rule.
func MLPRowChunk(T, I, requested int) int {
	c := requested
	if c <= 0 {
		c = T
		if int64(T)*int64(I) > 1<<26 {
			c = max(1, (1<<26)/I)
		}
	}
	return max(1, min(c, T))
}

// LogitsChunk picks how many rows (tokens) the LM head and its
// cross-entropy run at once for batches of up to T tokens and a
// vocabulary of V: requested when positive, else as many rows as fit in
// 2^26 logits (256 MiB of float32 logits plus 128 MiB of their bf16
// gradient; 523 rows of Llama 3's vocabulary, 441 of Qwen 2.5's), so no
// buffer grows with tokens × vocabulary while the head's matrix products
// stay large enough to run near the GPU's peak (at 2^24 elements, 130-row
// chunks made the head and its cross-entropy a fifth of a 1B LoRA step).
// Never more than T, never less than 1. The memory plan uses the same rule
// (run config: train.logits_chunk).
func LogitsChunk(T, V, requested int) int {
	c := requested
	if c <= 0 {
		c = (1 << 26) / max(V, 1)
	}
	return max(1, min(c, T))
}

// Free releases the buffers.
func (a *Activations) Free() {
	if a.off != nil {
		for _, t := range a.off.host {
			a.off.h.FreeHost(t)
		}
		a.off.host = nil
	}
	for _, t := range a.owned {
		if t != nil {
			a.m.B.Free(t)
		}
	}
	a.owned = nil
	a.freeImages()
}

// rows is a view of the first n rows of t.
func (a *Activations) rows(t Tensor, n int) Tensor {
	return a.rowRange(t, 0, n)
}

func (a *Activations) rowRange(t Tensor, r0, r1 int) Tensor {
	cols := Cols(t)
	shape := t.Shape()
	var v Tensor
	var err error
	if len(shape) == 1 {
		v, err = a.m.B.View(t, r0, r1-r0)
	} else {
		v, err = a.m.B.View(t, r0*cols, r1-r0, cols)
	}
	if err != nil {
		// Views are computed from shapes sized by NewActivations; a
		// failure is a bug in this file. It is kept and returned by the
		// pass (viewError), and the whole tensor stands in meanwhile.
		a.noteViewErr(fmt.Errorf("engine: view rows [%d,%d) of %v: %w", r0, r1, shape, err))
		return t
	}
	return v
}

// noteViewErr keeps the first view failure of a pass.
func (a *Activations) noteViewErr(err error) {
	if a.viewErr == nil {
		a.viewErr = err
	}
}

// viewError returns and clears the pass's view failure, if any.
func (a *Activations) viewError() error {
	err := a.viewErr
	a.viewErr = nil
	return err
}

// setBatch uploads the batch's ids and layout.
func (a *Activations) setBatch(b *datasets.Batch) error {
	T := len(b.Tokens)
	if T == 0 {
		return fmt.Errorf("empty batch")
	}
	if T > a.Cap {
		return fmt.Errorf("batch of %d tokens exceeds the %d planned", T, a.Cap)
	}
	if len(b.Targets) != T || len(b.Positions) != T {
		return fmt.Errorf("batch: %d tokens but %d targets and %d positions", T, len(b.Targets), len(b.Positions))
	}
	if len(b.SeqStarts) < 2 || b.SeqStarts[0] != 0 || int(b.SeqStarts[len(b.SeqStarts)-1]) != T {
		return fmt.Errorf("batch: sequence starts %v do not cover %d tokens", b.SeqStarts, T)
	}
	maxLen := 0
	for i := 1; i < len(b.SeqStarts); i++ {
		n := int(b.SeqStarts[i] - b.SeqStarts[i-1])
		if n <= 0 {
			return fmt.Errorf("batch: empty or reversed sequence %d in starts %v", i-1, b.SeqStarts)
		}
		if n > maxLen {
			maxLen = n
		}
	}
	V := int32(a.m.Cfg.VocabSize)
	for i, id := range b.Tokens {
		if id < 0 || id >= V {
			return fmt.Errorf("batch: token %d at position %d is outside the vocabulary (%d)", id, i, V)
		}
		if t := b.Targets[i]; t != datasets.IgnoreIndex && (t < 0 || t >= V) {
			return fmt.Errorf("batch: target %d at position %d is outside the vocabulary (%d)", t, i, V)
		}
		if p := b.Positions[i]; p < 0 || int(p) >= a.Cap {
			return fmt.Errorf("batch: position %d at %d is outside the planned %d", p, i, a.Cap)
		}
	}
	a.t = T
	a.longRope = false
	if rs := a.m.Cfg.RopeScaling; rs != nil && rs.Type == "longrope" {
		// transformers switches to the long factors for a whole forward
		// whose positions reach past the original context.
		for _, p := range b.Positions {
			if int(p)+1 > rs.OriginalMaxPositionEmbeddings {
				a.longRope = true
			}
		}
	}
	B := a.m.B
	var err error
	up := func(t Tensor, v []int32) {
		if err == nil {
			err = B.UploadInt32(t, v)
		}
	}
	up(a.rows(a.tokens, T), b.Tokens)
	up(a.rows(a.targets, T), b.Targets)
	up(a.rows(a.positions, T), b.Positions)
	ns := len(b.SeqStarts)
	up(a.rows(a.seqStarts, ns), b.SeqStarts)
	if err != nil {
		return fmt.Errorf("upload batch: %w", err)
	}
	a.seqs = SeqLayout{Starts: b.SeqStarts, Dev: a.rows(a.seqStarts, ns), MaxLen: maxLen}
	a.lastTargets = b.NumTargets()
	return a.setImageTokens(b)
}

func (a *Activations) set(l int) *layerActs {
	if a.Checkpointing {
		return a.layers[0]
	}
	return a.layers[l]
}

// attnParams is layer l's attention: its window, scale and soft-cap.
func (a *Activations) attnParams(l int) AttnParams {
	c := &a.m.Cfg
	return AttnParams{NHeads: c.NumHeads, NKVHeads: c.NumKVHeads, HeadDim: c.HeadDim,
		Scale: float32(c.AttnScale()), Window: c.LayerWindow(l), SoftCap: float32(c.AttnSoftCap)}
}

// ropeTable is layer l's cos and sin tables.
func (a *Activations) ropeTable(l int) [2]Tensor {
	c := &a.m.Cfg
	return a.ropes[RopeKind{Local: c.LayerLocalRope(l), Long: a.longRope}]
}

// rope turns x's heads by layer l's table (the backward with inverse).
func (a *Activations) rope(x Tensor, nHeads, l int, inverse bool) error {
	c := &a.m.Cfg
	tab := a.ropeTable(l)
	pos := a.rows(a.positions, a.t)
	if c.RotaryDim() == c.HeadDim {
		return a.m.B.RoPE(x, pos, tab[0], tab[1], nHeads, c.HeadDim, inverse)
	}
	pr, ok := a.m.B.(PartialRoPE)
	if !ok {
		return fmt.Errorf("backend %s has no partial rotary embedding (%s turns %d of %d head dimensions): %w",
			a.m.B.Name(), c.ModelType, c.RotaryDim(), c.HeadDim, ErrNotImplemented)
	}
	return pr.RoPEPartial(x, pos, tab[0], tab[1], nHeads, c.HeadDim, inverse)
}

// normWeight is the weight the RMSNorm op multiplies by: w itself, or
// (NormOffset + w) formed in the shared normW buffer for families that
// store w around 0. The gradient of w is the same as that of (1 + w), so
// the backward needs nothing else.
func (a *Activations) normWeight(w *Param) (Tensor, error) {
	if a.fam.NormOffset == 0 {
		return w.W, nil
	}
	B := a.m.B
	t, err := B.View(a.normW, 0, w.Shape[0])
	if err != nil {
		return nil, err
	}
	if err := B.Fill(t, a.fam.NormOffset); err != nil {
		return nil, err
	}
	return t, B.AddScaled(t, w.W, 1)
}

// norm runs the RMSNorm of weight w over the rows of x.
func (a *Activations) norm(out, rstd, x Tensor, w *Param) error {
	wt, err := a.normWeight(w)
	if err != nil {
		return err
	}
	return a.m.B.RMSNorm(out, rstd, x, wt, float32(a.m.Cfg.RMSNormEps))
}

// normBackward adds the input gradient of norm into dx (and w's gradient
// when w is trained).
func (a *Activations) normBackward(dx, dOut, x, rstd Tensor, w *Param) error {
	wt, err := a.normWeight(w)
	if err != nil {
		return err
	}
	var dw Tensor
	if w.Trainable {
		dw = w.Grad
	}
	return a.m.B.RMSNormBackward(dx, dw, dOut, x, wt, rstd)
}

// heads views a [T, n*HeadDim] tensor as [T*n, HeadDim] rows, for the
// per-head q/k norm.
func (a *Activations) heads(t Tensor, n int) Tensor {
	hd := a.m.Cfg.HeadDim
	v, err := a.m.B.View(t, 0, a.t*n, hd)
	if err != nil {
		a.noteViewErr(fmt.Errorf("engine: heads view of %v: %w", t.Shape(), err))
		return t
	}
	return v
}

// activation runs the family's gated activation, out = act(g)*u.
func (a *Activations) activation(out, g, u Tensor) error {
	if a.fam.Activation == SiLU {
		return a.m.B.SwiGLU(out, g, u)
	}
	ge, err := a.geglu()
	if err != nil {
		return err
	}
	return ge.GeGLU(out, g, u)
}

func (a *Activations) activationBackward(dg, du, ds, g, u Tensor) error {
	if a.fam.Activation == SiLU {
		return a.m.B.SwiGLUBackward(dg, du, ds, g, u)
	}
	ge, err := a.geglu()
	if err != nil {
		return err
	}
	return ge.GeGLUBackward(dg, du, ds, g, u)
}

func (a *Activations) geglu() (GELUTanhGLU, error) {
	ge, ok := a.m.B.(GELUTanhGLU)
	if !ok {
		return nil, fmt.Errorf("backend %s has no GELU-tanh gated MLP (%s needs it): %w", a.m.B.Name(), a.m.Cfg.ModelType, ErrNotImplemented)
	}
	return ge, nil
}

// seed for the dropout mask of one linear in one layer, fixed for the
// micro-batch so the backward (and a checkpointed recompute) sees the same
// mask as the forward.
func (a *Activations) seed(layer int, lin *Linear) uint64 {
	h := a.dropoutSeed ^ 0x9e3779b97f4a7c15
	h ^= uint64(layer)*0xbf58476d1ce4e5b9 + uint64(len(lin.Short))*0x94d049bb133111eb + uint64(lin.Short[0])
	// An MLP tile's rows get their own mask (the same in the forward and
	// the backward's recompute); untiled, r0 is 0 and nothing changes.
	h ^= uint64(a.r0) * 0xd6e8feb86659fd93
	h ^= h >> 31
	return h * 0x9e3779b97f4a7c15
}

// weight returns the tensor holding lin's weight for the maths: W itself,
// or for an NF4 weight its expansion into the shared scratch buffer, so only
// one layer's weight is ever expanded.
func (a *Activations) weight(lin *Linear) (Tensor, error) {
	q := lin.W.Quant
	if q == nil {
		return lin.W.W, nil
	}
	w, err := a.m.B.View(a.wScratch, 0, lin.Out, lin.In)
	if err != nil {
		return nil, err
	}
	if err := a.m.B.(NF4Dequantizer).DequantizeNF4(w, q.Packed, q.Absmax); err != nil {
		return nil, fmt.Errorf("%s dequantize: %w", lin.Module, err)
	}
	return w, nil
}

// part is one output block of a linear: rows [off, off+n) of W (all of
// them for a plain linear), written to or read from one tensor.
type part struct{ off, n int }

func (lin *Linear) parts() []part {
	if lin.Parts == nil {
		return []part{{0, lin.Out}}
	}
	out := make([]part, len(lin.Parts))
	off := 0
	for i, n := range lin.Parts {
		out[i] = part{off, n}
		off += n
	}
	return out
}

// rowsOf is rows [p.off, p.off+p.n) of a matrix with cols columns (or of
// a vector when cols is 0): one part of a fused weight, bias or gradient.
func (a *Activations) rowsOf(t Tensor, p part, cols int, whole bool) Tensor {
	if whole {
		return t
	}
	var v Tensor
	var err error
	if cols == 0 {
		v, err = a.m.B.View(t, p.off, p.n)
	} else {
		v, err = a.m.B.View(t, p.off*cols, p.n, cols)
	}
	if err != nil {
		a.noteViewErr(fmt.Errorf("engine: rows [%d,%d) of %v: %w", p.off, p.off+p.n, t.Shape(), err))
		return t
	}
	return v
}

// linearForward computes ys = x W^T (+b) (+ LoRA), one tensor per part of
// a fused linear (one for a plain linear); accumulate adds to them.
//
// The LoRA term goes first: y = scale * (x A^T) B^T overwrites (or adds
// to) y, and the base product then adds into it with beta = 1. The base
// product is bound by arithmetic, so reading y there is nearly free, while
// adding the thin LoRA product afterwards would be one more full read and
// write of y.
func (a *Activations) linearForward(lin *Linear, x Tensor, ys []Tensor, accumulate bool, layer int, set *layerActs) error {
	B := a.m.B
	parts := lin.parts()
	if len(ys) != len(parts) {
		return fmt.Errorf("%s: %d outputs for %d parts", lin.Module, len(ys), len(parts))
	}
	whole := lin.Parts == nil
	beta := float32(0)
	if accumulate {
		beta = 1
	}
	if lo := lin.LoRA; lo != nil && lo.Enabled {
		// Stacked (lorafuse.go), the group's product has run: the
		// intermediate is xaᵀ, this adapter's rows of the stack's.
		var xa Tensor
		transXA := false
		if st := a.stacked(lin); st != nil {
			xa, transXA = a.memberRows(st, lin, set), true
		} else {
			var err error
			if xa, err = a.loraXA(lin, x, layer, set); err != nil {
				return err
			}
		}
		for i, p := range parts {
			y, xr := ys[i], xa
			if a.loraFrom > 0 {
				var err error
				if y, xr, err = a.tunedRows(lin, ys[i], xa, transXA, beta == 0); err != nil {
					return err
				}
			}
			if err := B.MatMul(y, xr, a.rowsOf(lo.B.W, p, lo.Rank, whole), transXA, true, lo.Scale, beta); err != nil {
				return fmt.Errorf("%s lora B: %w", lin.Module, err)
			}
		}
		beta = 1
	}
	if done, err := a.matVecNF4(lin, x, ys, beta == 1); done || err != nil {
		return err
	}
	W, err := a.weight(lin)
	if err != nil {
		return err
	}
	for i, p := range parts {
		if err := B.MatMul(ys[i], x, a.rowsOf(W, p, lin.In, whole), false, true, 1, beta); err != nil {
			return fmt.Errorf("%s forward: %w", lin.Module, err)
		}
		if lin.B != nil {
			if err := B.AddBias(ys[i], a.rowsOf(lin.B.W, p, 0, whole)); err != nil {
				return fmt.Errorf("%s bias: %w", lin.Module, err)
			}
		}
	}
	return nil
}

// tunedRows narrows an adapter's product to the rows that take it
// (a.loraFrom on): the views of y and xa from that row. The rows before
// it, when y is being written rather than added to, are zeroed, so that
// the base product adding into them leaves exactly x·Wᵀ, as without
// adapters; the tuned rows get the adapter's term first and the base
// product added, as every row does with adapters on.
func (a *Activations) tunedRows(lin *Linear, y, xa Tensor, transXA, zero bool) (Tensor, Tensor, error) {
	B, from := a.m.B, a.loraFrom
	n, cols := Rows(y), Cols(y)
	if transXA || from >= n || a.r0 != 0 || n != a.t {
		return nil, nil, fmt.Errorf("%s: adapters from row %d of rows [%d, %d) of %d (stacked %v): want a plain adapter on a whole pass with some rows taking it", lin.Module, from, a.r0, a.r0+n, a.t, transXA)
	}
	if zero {
		base, err := B.View(y, 0, from, cols)
		if err != nil {
			return nil, nil, err
		}
		if err := B.Fill(base, 0); err != nil {
			return nil, nil, fmt.Errorf("%s: clear the base rows: %w", lin.Module, err)
		}
	}
	yt, err := B.View(y, from*cols, n-from, cols)
	if err != nil {
		return nil, nil, err
	}
	xt, err := B.View(xa, from*Cols(xa), n-from, Cols(xa))
	return yt, xt, err
}

// sharedMatVecs reports whether the single-row products of lins, which
// share their input, can go to the backend in one launch: the generator
// asked for it (a.matVec), one row, weights all plain (MatVecs) or all NF4
// (NF4MatVecs, while the backend has it on), none fused or with a bias,
// and their adapters all on or all off.
func (a *Activations) sharedMatVecs(lins ...*Linear) bool {
	if !a.matVec || a.t != 1 || a.loraFrom > 0 {
		return false
	}
	quant := lins[0].W.Quant != nil
	if quant {
		if mv, ok := a.m.B.(NF4MatVecs); !ok || !mv.NF4MatVecsOn() {
			return false
		}
	} else if _, ok := a.m.B.(MatVecs); !ok {
		return false
	}
	lora := func(lin *Linear) bool { return lin.LoRA != nil && lin.LoRA.Enabled }
	for _, lin := range lins {
		if (lin.W.Quant != nil) != quant || lin.Parts != nil || lin.B != nil || lora(lin) != lora(lins[0]) {
			return false
		}
	}
	return true
}

// linearsForward is linearForward (overwriting ys) of linears that share
// x, their base products in one MatVecs (or, for NF4 weights, MatVecsNF4)
// call (sharedMatVecs said it can), after each adapter's term; the backend
// may still refuse the operands, and then each linear runs alone.
func (a *Activations) linearsForward(lins []*Linear, x Tensor, ys []Tensor, layer int, set *layerActs) error {
	B := a.m.B
	accumulate := false
	quant := lins[0].W.Quant != nil
	ws := make([]Tensor, len(lins))
	var packed, absmax []Tensor
	for i, lin := range lins {
		ws[i] = lin.W.W
		if q := lin.W.Quant; q != nil {
			packed, absmax = append(packed, q.Packed), append(absmax, q.Absmax)
		}
		if lo := lin.LoRA; lo != nil && lo.Enabled {
			xa, err := a.loraXA(lin, x, layer, set)
			if err != nil {
				return err
			}
			if err := B.MatMul(ys[i], xa, lo.B.W, false, true, lo.Scale, 0); err != nil {
				return fmt.Errorf("%s lora B: %w", lin.Module, err)
			}
			accumulate = true
		}
	}
	var ok bool
	var err error
	if quant {
		ok, err = B.(NF4MatVecs).MatVecsNF4(ys, x, packed, absmax, accumulate)
	} else {
		ok, err = B.(MatVecs).MatVecs(ys, x, ws, accumulate)
	}
	if err != nil {
		return fmt.Errorf("%s: %w", lins[0].Module, err)
	}
	if ok {
		return nil
	}
	for i, lin := range lins {
		if done, err := a.matVecNF4(lin, x, ys[i:i+1], accumulate); done || err != nil {
			if err != nil {
				return err
			}
			continue
		}
		W, err := a.weight(lin)
		if err != nil {
			return err
		}
		beta := float32(0)
		if accumulate {
			beta = 1
		}
		if err := B.MatMul(ys[i], x, W, false, true, 1, beta); err != nil {
			return fmt.Errorf("%s forward: %w", lin.Module, err)
		}
	}
	return nil
}

// matVecNF4 runs the base product of an NF4 linear over a single row
// straight from its codes (NF4MatVec), when the generator asked for it
// (a.matVec) and the backend has it; done is false when the caller must
// expand the weight and multiply as usual.
func (a *Activations) matVecNF4(lin *Linear, x Tensor, ys []Tensor, accumulate bool) (done bool, err error) {
	q := lin.W.Quant
	mv, ok := a.m.B.(NF4MatVec)
	if q == nil || !a.matVec || !ok || Rows(x) != 1 {
		return false, nil
	}
	B := a.m.B
	for i, p := range lin.parts() {
		pk, err := B.View(q.Packed, p.off*lin.In/8, p.n*lin.In/8)
		if err != nil {
			return true, fmt.Errorf("%s nf4 codes of rows %d-%d: %w", lin.Module, p.off, p.off+p.n, err)
		}
		am, err := B.View(q.Absmax, p.off*lin.In/NF4BlockSize, p.n*lin.In/NF4BlockSize)
		if err != nil {
			return true, fmt.Errorf("%s nf4 absmax of rows %d-%d: %w", lin.Module, p.off, p.off+p.n, err)
		}
		if err := mv.MatVecNF4(ys[i], x, pk, am, accumulate); err != nil {
			return true, fmt.Errorf("%s forward (nf4 matvec): %w", lin.Module, err)
		}
		if lin.B != nil {
			if err := B.AddBias(ys[i], a.rowsOf(lin.B.W, p, 0, lin.Parts == nil)); err != nil {
				return true, fmt.Errorf("%s bias: %w", lin.Module, err)
			}
		}
	}
	return true, nil
}

func (a *Activations) dropout(lo *LoRA) bool { return a.training && lo.Dropout > 0 }

// loraXA writes lin's LoRA intermediate (dropout(x)) Aᵀ for the current
// rows into set.xa[lin] and returns that view.
func (a *Activations) loraXA(lin *Linear, x Tensor, layer int, set *layerActs) (Tensor, error) {
	B, lo := a.m.B, lin.LoRA
	xd := x
	if a.dropout(lo) {
		xd = a.rowsCols(a.scratchIn, lin.In)
		if err := B.Dropout(xd, x, lo.Dropout, a.seed(layer, lin)); err != nil {
			return nil, fmt.Errorf("%s lora dropout: %w", lin.Module, err)
		}
	}
	xa := a.rowRange(set.xa[lin], a.r0, a.r0+a.t)
	if err := B.MatMul(xa, xd, lo.A.W, false, true, 1, 0); err != nil {
		return nil, fmt.Errorf("%s lora A: %w", lin.Module, err)
	}
	return xa, nil
}

// rowsCols is a [t, cols] view at the start of a wider scratch buffer.
func (a *Activations) rowsCols(t Tensor, cols int) Tensor {
	v, err := a.m.B.View(t, 0, a.t, cols)
	if err != nil {
		a.noteViewErr(fmt.Errorf("engine: scratch view [%d,%d]: %w", a.t, cols, err))
		return t
	}
	return v
}

// linearBackward accumulates the weight (and bias, LoRA) gradients of lin
// from dys (one per part) and writes (accumulate=false) or adds
// (accumulate=true) dx = sum of dy W (+LoRA). dx may be nil when no input
// gradient is needed. As in the forward, the LoRA part of dx is written
// first and the base products add into it.
func (a *Activations) linearBackward(lin *Linear, x Tensor, dys []Tensor, dx Tensor, accumulate bool, layer int, set *layerActs) error {
	B := a.m.B
	parts := lin.parts()
	if len(dys) != len(parts) {
		return fmt.Errorf("%s: %d output gradients for %d parts", lin.Module, len(dys), len(parts))
	}
	whole := lin.Parts == nil
	for i, p := range parts {
		if lin.W.Trainable {
			if err := B.MatMul(a.rowsOf(lin.W.Grad, p, lin.In, whole), dys[i], x, true, false, 1, 1); err != nil {
				return fmt.Errorf("%s weight grad: %w", lin.Module, err)
			}
		}
		if lin.B != nil && lin.B.Trainable {
			if err := B.BiasBackward(a.rowsOf(lin.B.Grad, p, 0, whole), dys[i]); err != nil {
				return fmt.Errorf("%s bias grad: %w", lin.Module, err)
			}
		}
	}
	beta := float32(0)
	if accumulate {
		beta = 1
	}
	// A stacked adapter's backward ran with its group's (stackBackward).
	if lo := lin.LoRA; lo != nil && lo.Enabled && a.stacked(lin) == nil {
		var err error
		if beta, err = a.loraBackward(lin, x, dys, dx, beta, layer, set); err != nil {
			return err
		}
	}
	if dx == nil {
		return nil
	}
	W, err := a.weight(lin)
	if err != nil {
		return err
	}
	for i, p := range parts {
		if err := B.MatMul(dx, dys[i], a.rowsOf(W, p, lin.In, whole), false, false, 1, beta); err != nil {
			return fmt.Errorf("%s input grad: %w", lin.Module, err)
		}
		beta = 1
	}
	return nil
}

// loraBackward accumulates the adapter gradients of lin and writes its
// part of dx (adding when beta is 1); it returns the beta with which the
// base product must then add into dx.
func (a *Activations) loraBackward(lin *Linear, x Tensor, dys []Tensor, dx Tensor, beta float32, layer int, set *layerActs) (float32, error) {
	B, lo := a.m.B, lin.LoRA
	whole := lin.Parts == nil
	xa := a.rowRange(set.xa[lin], a.r0, a.r0+a.t)
	dxa := a.rowsCols(a.dxa, lo.Rank)
	for i, p := range lin.parts() {
		if err := B.MatMul(a.rowsOf(lo.B.Grad, p, lo.Rank, whole), dys[i], xa, true, false, lo.Scale, 1); err != nil {
			return 0, fmt.Errorf("%s lora B grad: %w", lin.Module, err)
		}
		acc := float32(1)
		if i == 0 {
			acc = 0
		}
		if err := B.MatMul(dxa, dys[i], a.rowsOf(lo.B.W, p, lo.Rank, whole), false, false, lo.Scale, acc); err != nil {
			return 0, fmt.Errorf("%s lora dxa: %w", lin.Module, err)
		}
	}
	xd := x
	if a.dropout(lo) {
		xd = a.rowsCols(a.scratchIn, lin.In)
		if err := B.Dropout(xd, x, lo.Dropout, a.seed(layer, lin)); err != nil {
			return 0, fmt.Errorf("%s lora dropout: %w", lin.Module, err)
		}
	}
	if err := B.MatMul(lo.A.Grad, dxa, xd, true, false, 1, 1); err != nil {
		return 0, fmt.Errorf("%s lora A grad: %w", lin.Module, err)
	}
	if dx == nil {
		return beta, nil
	}
	if !a.dropout(lo) {
		if err := B.MatMul(dx, dxa, lo.A.W, false, false, 1, beta); err != nil {
			return 0, fmt.Errorf("%s lora input grad: %w", lin.Module, err)
		}
		return 1, nil
	}
	tmp := a.rowsCols(a.scratchIn, lin.In)
	if err := B.MatMul(tmp, dxa, lo.A.W, false, false, 1, 0); err != nil {
		return 0, fmt.Errorf("%s lora input grad: %w", lin.Module, err)
	}
	if err := B.Dropout(tmp, tmp, lo.Dropout, a.seed(layer, lin)); err != nil {
		return 0, fmt.Errorf("%s lora dropout backward: %w", lin.Module, err)
	}
	if beta == 0 {
		return 1, B.Copy(dx, tmp)
	}
	return 1, B.AddScaled(dx, tmp, 1)
}

// step is one named stage of a layer's pass.
type step struct {
	what string
	f    func() error
}

// layerForward runs block l from resid[l] into resid[l+1].
func (a *Activations) layerForward(l int) error {
	m, B, T, fam := a.m, a.m.B, a.t, a.fam
	L := m.Layers[l]
	s := a.set(l)
	c := &m.Cfg
	x := a.rows(a.resid[l], T)
	h1, rstd1 := a.rows(s.h1, T), a.rows(s.rstd1, T)
	q, k, v := a.rows(s.q, T), a.rows(s.k, T), a.rows(s.v, T)
	att, lse := a.rows(s.att, T), a.lseView(s.lse)
	xmid, h2, rstd2 := a.rows(s.xmid, T), a.rows(s.h2, T), a.rows(s.rstd2, T)
	xout := a.rows(a.resid[l+1], T)
	// The projections write q and k here; the q/k norm moves them on.
	qIn, kIn := q, k
	if fam.QKNorm {
		qIn, kIn = a.rows(s.qraw, T), a.rows(s.kraw, T)
	}
	var steps []step
	add := func(what string, f func() error) { steps = append(steps, step{what, f}) }
	fm, fn := a.fusedMatVecs(), a.fusedNF4()
	// nf4MLP: the MLP of an NF4 layer decoding one row takes the fused NF4
	// ops; mlpNormed is set while the steps run when the o product has
	// formed the MLP's norm already.
	nf4MLP := fn != nil && !fam.SandwichNorms && fam.Activation == SiLU && L.GateUp == nil && nf4Linears(L.Gate, L.Up, L.Down)
	mlpNormed := false
	switch {
	case fm != nil && L.QKV == nil && plainLinears(L.Q, L.K, L.V):
		// Decoding one row: the norm inside the q/k/v product.
		add("attention norm, q k v", func() error {
			return a.fusedNormMatVecs(fm, h1, rstd1, x, L.AttnNorm, []*Linear{L.Q, L.K, L.V}, []Tensor{qIn, kIn, v}, l, s)
		})
	case L.QKV != nil:
		add("attention norm", func() error { return a.norm(h1, rstd1, x, L.AttnNorm) })
		add("qkv", func() error { return a.linearForward(L.QKV, h1, []Tensor{qIn, kIn, v}, false, l, s) })
	case a.sharedMatVecs(L.Q, L.K, L.V):
		add("attention norm", func() error { return a.norm(h1, rstd1, x, L.AttnNorm) })
		add("q k v", func() error { return a.linearsForward([]*Linear{L.Q, L.K, L.V}, h1, []Tensor{qIn, kIn, v}, l, s) })
	default:
		add("attention norm", func() error { return a.norm(h1, rstd1, x, L.AttnNorm) })
		add("q k v stacked lora", func() error { return a.stackXA([]*Linear{L.Q, L.K, L.V}, h1, s) })
		add("q", func() error { return a.linearForward(L.Q, h1, []Tensor{qIn}, false, l, s) })
		add("k", func() error { return a.linearForward(L.K, h1, []Tensor{kIn}, false, l, s) })
		add("v", func() error { return a.linearForward(L.V, h1, []Tensor{v}, false, l, s) })
	}
	if fam.QKNorm {
		add("q norm", func() error {
			return a.norm(a.heads(q, c.NumHeads), a.rows(s.rstdQ, T*c.NumHeads), a.heads(qIn, c.NumHeads), L.QNorm)
		})
		add("k norm", func() error {
			return a.norm(a.heads(k, c.NumKVHeads), a.rows(s.rstdK, T*c.NumKVHeads), a.heads(kIn, c.NumKVHeads), L.KNorm)
		})
	}
	// Decoding on the device, the attention op turns q and k itself.
	if a.kv == nil || a.kv.devPos == nil {
		add("rope q", func() error { return a.rope(q, c.NumHeads, l, false) })
		add("rope k", func() error { return a.rope(k, c.NumKVHeads, l, false) })
	}
	add("attention", func() error {
		if a.kv != nil {
			return a.kv.attend(a, l, q, k, v, att)
		}
		return a.attention(l, att, lse, q, k, v)
	})
	// residual: out = in + f, or in + norm(f) with sandwich norms.
	residual := func(name string, out, in, f, rstd Tensor, w *Param) {
		add(name+" residual", func() error {
			if err := B.Copy(out, in); err != nil {
				return err
			}
			tmp := a.rows(a.dtmp, T)
			if err := a.norm(tmp, rstd, f, w); err != nil {
				return err
			}
			return B.AddScaled(out, tmp, 1)
		})
	}
	if fam.SandwichNorms {
		ao := a.rows(s.ao, T)
		add("o", func() error { return a.linearForward(L.O, att, []Tensor{ao}, false, l, s) })
		residual("attention output norm", xmid, x, ao, a.rows(s.rstdAO, T), L.AttnOutNorm)
	} else if fm != nil && plainLinears(L.O) {
		add("o + residual", func() error {
			if ok, err := fm.MatVecAdd(xmid, att, L.O.W.W, x); ok || err != nil {
				return err
			}
			if err := B.Copy(xmid, x); err != nil {
				return err
			}
			return a.linearForward(L.O, att, []Tensor{xmid}, true, l, s)
		})
	} else if fn != nil && nf4Linears(L.O) {
		add("o + residual", func() error {
			q := L.O.W.Quant
			if nf4MLP {
				// The MLP's norm too, into h2 (the MLP's steps below skip theirs).
				nw, err := a.normWeight(L.MLPNorm)
				if err != nil {
					return err
				}
				ok, err := fn.MatVecNF4AddNorm(xmid, att, q.Packed, q.Absmax, x, h2, nw, float32(c.RMSNormEps))
				if ok || err != nil {
					mlpNormed = ok
					return err
				}
			}
			if ok, err := fn.MatVecNF4Add(xmid, att, q.Packed, q.Absmax, x); ok || err != nil {
				return err
			}
			if err := B.Copy(xmid, x); err != nil {
				return err
			}
			return a.linearForward(L.O, att, []Tensor{xmid}, true, l, s)
		})
	} else {
		add("residual", func() error { return B.Copy(xmid, x) })
		add("o", func() error { return a.linearForward(L.O, att, []Tensor{xmid}, true, l, s) })
	}
	if fm != nil && !fam.SandwichNorms && fam.Activation == SiLU && L.GateUp == nil && plainLinears(L.Gate, L.Up, L.Down) {
		// Decoding one row: the norm inside the gate/up product, the
		// activation and the residual inside the down product.
		g, u, sw := a.rows(s.g, 1), a.rows(s.u, 1), a.rows(s.s, 1)
		add("mlp norm, gate up", func() error {
			return a.fusedNormMatVecs(fm, h2, rstd2, xmid, L.MLPNorm, []*Linear{L.Gate, L.Up}, []Tensor{g, u}, l, s)
		})
		add("mlp down + residual", func() error {
			if ok, err := fm.MatVecSwiGLUAdd(xout, sw, g, u, L.Down.W.W, xmid); ok || err != nil {
				return err
			}
			if err := a.activation(sw, g, u); err != nil {
				return fmt.Errorf("activation: %w", err)
			}
			if err := B.Copy(xout, xmid); err != nil {
				return err
			}
			return a.linearForward(L.Down, sw, []Tensor{xout}, true, l, s)
		})
		return a.runSteps(l, steps)
	}
	if nf4MLP {
		// Decoding one row with NF4 weights: the norm inside the o
		// product (when the backend took it), the activation inside the
		// gate/up product, the residual inside the down product.
		g, u, sw := a.rows(s.g, 1), a.rows(s.u, 1), a.rows(s.s, 1)
		add("mlp norm", func() error {
			if mlpNormed {
				return nil
			}
			return a.norm(h2, rstd2, xmid, L.MLPNorm)
		})
		add("mlp gate up + activation", func() error {
			qg, qu := L.Gate.W.Quant, L.Up.W.Quant
			if ok, err := fn.MatVecsNF4SwiGLU(sw, g, u, h2, qg.Packed, qg.Absmax, qu.Packed, qu.Absmax); ok || err != nil {
				return err
			}
			if err := a.gateUp(l, s, h2, g, u); err != nil {
				return err
			}
			if err := a.activation(sw, g, u); err != nil {
				return fmt.Errorf("activation: %w", err)
			}
			return nil
		})
		add("mlp down + residual", func() error {
			q := L.Down.W.Quant
			if ok, err := fn.MatVecNF4Add(xout, sw, q.Packed, q.Absmax, xmid); ok || err != nil {
				return err
			}
			if err := B.Copy(xout, xmid); err != nil {
				return err
			}
			return a.linearForward(L.Down, sw, []Tensor{xout}, true, l, s)
		})
		return a.runSteps(l, steps)
	}
	add("mlp norm", func() error { return a.norm(h2, rstd2, xmid, L.MLPNorm) })
	if fam.SandwichNorms {
		add("mlp", func() error { return a.mlpForward(l, s, s.mo, false) })
		residual("mlp output norm", xout, xmid, a.rows(s.mo, T), a.rows(s.rstdMO, T), L.MLPOutNorm)
	} else if !a.recomputing || a.mlpChunk >= T {
		// A checkpointing recompute of a tiled MLP without sandwich norms
		// is skipped: the backward recomputes each tile itself and nothing
		// reads this layer's output again (the forward left it in place).
		add("residual", func() error { return B.Copy(xout, xmid) })
		add("mlp", func() error { return a.mlpForward(l, s, a.resid[l+1], true) })
	}
	return a.runSteps(l, steps)
}

// runSteps runs layer l's steps in order.
func (a *Activations) runSteps(l int, steps []step) error {
	for _, st := range steps {
		if err := st.f(); err != nil {
			return fmt.Errorf("layer %d %s: %w", l, st.what, err)
		}
	}
	return nil
}

// fusedMatVecs is the backend's fused decoding ops when the generator
// asked for them (a.fuse) and this pass decodes one row of one sequence,
// else nil.
func (a *Activations) fusedMatVecs() FusedMatVecs {
	if !a.fuseCandidate() {
		return nil
	}
	f, _ := a.m.B.(FusedMatVecs)
	return f
}

// fusedNF4 is the backend's fused NF4 decoding ops when the generator
// asked for fused ops (a.fuse) and for the mat-vec path (a.matVec: the
// plain path expands NF4 weights instead) and this pass decodes one row
// of one sequence, else nil.
func (a *Activations) fusedNF4() FusedNF4MatVecs {
	if !a.matVec || !a.fuseCandidate() {
		return nil
	}
	f, _ := a.m.B.(FusedNF4MatVecs)
	return f
}

// fuseCandidate is fusedMatVecs' condition on the pass, whatever the
// backend implements.
func (a *Activations) fuseCandidate() bool {
	return a.fuse && a.t == 1 && a.kv != nil && a.kv.lanes == nil && a.loraFrom <= 0 && !a.training
}

// nf4Linears reports whether lins are NF4 weights alone: codes, no parts,
// bias or adapter turned on.
func nf4Linears(lins ...*Linear) bool {
	for _, lin := range lins {
		if lin == nil || lin.W.Quant == nil || lin.Parts != nil || lin.B != nil || (lin.LoRA != nil && lin.LoRA.Enabled) {
			return false
		}
	}
	return true
}

// plainLinears reports whether lins multiply by their weight alone: no NF4
// codes, parts, bias or adapter turned on.
func plainLinears(lins ...*Linear) bool {
	for _, lin := range lins {
		if lin == nil || lin.W.Quant != nil || lin.Parts != nil || lin.B != nil || (lin.LoRA != nil && lin.LoRA.Enabled) {
			return false
		}
	}
	return true
}

// fusedNormMatVecs writes ys = norm(x) @ W^T for the plain linears lins
// in one fused op, or, when the backend declines, runs the norm into h
// (saving rstd) and then the products as layerForward would.
func (a *Activations) fusedNormMatVecs(fm FusedMatVecs, h, rstd, x Tensor, w *Param, lins []*Linear, ys []Tensor, l int, s *layerActs) error {
	nw, err := a.normWeight(w)
	if err != nil {
		return err
	}
	ws := make([]Tensor, len(lins))
	for i, lin := range lins {
		ws[i] = lin.W.W
	}
	if ok, err := fm.MatVecsNorm(ys, h, x, nw, float32(a.m.Cfg.RMSNormEps), ws); ok || err != nil {
		return err
	}
	if err := a.m.B.RMSNorm(h, rstd, x, nw, float32(a.m.Cfg.RMSNormEps)); err != nil {
		return err
	}
	if a.sharedMatVecs(lins...) {
		return a.linearsForward(lins, h, ys, l, s)
	}
	for i, lin := range lins {
		if err := a.linearForward(lin, h, ys[i:i+1], false, l, s); err != nil {
			return err
		}
	}
	return nil
}

// mlpTiles calls f on each tile of the batch's rows, [r0, r0+n) with n at
// most mlpChunk (one tile of T rows untiled), with a.t = n and a.r0 = r0
// so that the linears address the tile's rows of their LoRA
// intermediates and draw the tile's dropout mask.
func (a *Activations) mlpTiles(f func(r0, n int) error) error {
	T := a.t
	defer func() { a.t, a.r0 = T, 0 }()
	for r0 := 0; r0 < T; r0 += a.mlpChunk {
		n := min(a.mlpChunk, T-r0)
		a.t, a.r0 = n, r0
		if err := f(r0, n); err != nil {
			if n < T {
				return fmt.Errorf("rows %d-%d: %w", r0, r0+n, err)
			}
			return err
		}
	}
	return nil
}

// gateUp runs layer l's gate and up projections of h2 into g and u.
func (a *Activations) gateUp(l int, s *layerActs, h2, g, u Tensor) error {
	L := a.m.Layers[l]
	if L.GateUp != nil {
		if err := a.linearForward(L.GateUp, h2, []Tensor{g, u}, false, l, s); err != nil {
			return fmt.Errorf("gate_up: %w", err)
		}
		return nil
	}
	if a.sharedMatVecs(L.Gate, L.Up) {
		if err := a.linearsForward([]*Linear{L.Gate, L.Up}, h2, []Tensor{g, u}, l, s); err != nil {
			return fmt.Errorf("gate, up: %w", err)
		}
		return nil
	}
	if err := a.stackXA([]*Linear{L.Gate, L.Up}, h2, s); err != nil {
		return fmt.Errorf("gate, up: %w", err)
	}
	if err := a.linearForward(L.Gate, h2, []Tensor{g}, false, l, s); err != nil {
		return fmt.Errorf("gate: %w", err)
	}
	if err := a.linearForward(L.Up, h2, []Tensor{u}, false, l, s); err != nil {
		return fmt.Errorf("up: %w", err)
	}
	return nil
}

// mlpForward runs layer l's MLP, down(act(gate(h2)) * up(h2)), tile by
// tile into the same rows of out (a [Cap, D] buffer), adding to them with
// accumulate. Each tile's gate, up and product live in the [mlpChunk, I]
// buffers, so nothing here grows with tokens × I once tiled.
func (a *Activations) mlpForward(l int, s *layerActs, out Tensor, accumulate bool) error {
	L := a.m.Layers[l]
	return a.mlpTiles(func(r0, n int) error {
		g, u, sw := a.rows(s.g, n), a.rows(s.u, n), a.rows(s.s, n)
		if err := a.gateUp(l, s, a.rowRange(s.h2, r0, r0+n), g, u); err != nil {
			return err
		}
		if err := a.activation(sw, g, u); err != nil {
			return fmt.Errorf("activation: %w", err)
		}
		if err := a.linearForward(L.Down, sw, []Tensor{a.rowRange(out, r0, r0+n)}, accumulate, l, s); err != nil {
			return fmt.Errorf("down: %w", err)
		}
		return nil
	})
}

// mlpBackward takes dDown (a [Cap, D] buffer: dL/d down's output) and
// writes dL/dh2 into dh, tile by tile, accumulating the MLP's parameter
// gradients. Untiled, gate and up are this layer's saved ones and only
// the shared product is rebuilt (a checkpointing recompute has just
// written it); tiled, each tile recomputes gate and up from h2 first.
func (a *Activations) mlpBackward(l int, s *layerActs, dDown Tensor) error {
	L := a.m.Layers[l]
	tiled := a.mlpChunk < a.t
	return a.mlpTiles(func(r0, n int) error {
		g, u, sw := a.rows(s.g, n), a.rows(s.u, n), a.rows(s.s, n)
		ds, dg, du := a.rows(a.ds, n), a.rows(a.dg, n), a.rows(a.du, n)
		h2, dh := a.rowRange(s.h2, r0, r0+n), a.rowRange(a.dh, r0, r0+n)
		if tiled {
			if err := a.gateUp(l, s, h2, g, u); err != nil {
				return fmt.Errorf("recompute %w", err)
			}
		}
		if tiled || !a.Checkpointing {
			if err := a.activation(sw, g, u); err != nil {
				return fmt.Errorf("activation recompute: %w", err)
			}
		}
		if lo := L.Down.LoRA; tiled && a.Checkpointing && !a.fam.SandwichNorms && lo != nil && lo.Enabled {
			// The recompute skipped this MLP (layerForward): down's
			// adapter intermediate, shared by every layer, is another
			// layer's; rebuild this tile's.
			if _, err := a.loraXA(L.Down, sw, l, s); err != nil {
				return fmt.Errorf("down recompute: %w", err)
			}
		}
		if err := a.linearBackward(L.Down, sw, []Tensor{a.rowRange(dDown, r0, r0+n)}, ds, false, l, s); err != nil {
			return fmt.Errorf("down: %w", err)
		}
		if err := a.activationBackward(dg, du, ds, g, u); err != nil {
			return fmt.Errorf("activation: %w", err)
		}
		if L.GateUp != nil {
			if err := a.linearBackward(L.GateUp, h2, []Tensor{dg, du}, dh, false, l, s); err != nil {
				return fmt.Errorf("gate_up: %w", err)
			}
			return nil
		}
		// Stacked adapters write their part of dh first, the base
		// products add to it.
		wrote, err := a.stackBackward([]*Linear{L.Gate, L.Up}, h2, []Tensor{dg, du}, dh, false, s)
		if err != nil {
			return fmt.Errorf("gate, up: %w", err)
		}
		if err := a.linearBackward(L.Gate, h2, []Tensor{dg}, dh, wrote, l, s); err != nil {
			return fmt.Errorf("gate: %w", err)
		}
		if err := a.linearBackward(L.Up, h2, []Tensor{du}, dh, true, l, s); err != nil {
			return fmt.Errorf("up: %w", err)
		}
		return nil
	})
}

// lseView is the [NHeads, T] block of an [NHeads, Cap] lse buffer. The
// buffer is laid out head-major with stride Cap, so for T < Cap we repack:
// attention kernels take a contiguous [NHeads, T] tensor, which is the
// first NHeads*T elements.
func (a *Activations) lseView(lse Tensor) Tensor {
	v, err := a.m.B.View(lse, 0, a.m.Cfg.NumHeads, a.t)
	if err != nil {
		a.noteViewErr(fmt.Errorf("engine: lse view: %w", err))
		return lse
	}
	return v
}

// layerBackward takes dres = dL/dx_{l+1} and leaves dL/dx_l in dres.
func (a *Activations) layerBackward(l int, needInputGrad bool) error {
	m, B, T, fam := a.m, a.m.B, a.t, a.fam
	L := m.Layers[l]
	s := a.set(l)
	c := &m.Cfg
	x := a.rows(a.resid[l], T)
	h1, rstd1 := a.rows(s.h1, T), a.rows(s.rstd1, T)
	q, k, v := a.rows(s.q, T), a.rows(s.k, T), a.rows(s.v, T)
	att, lse := a.rows(s.att, T), a.lseView(s.lse)
	xmid, rstd2 := a.rows(s.xmid, T), a.rows(s.rstd2, T)
	dres, dh := a.rows(a.dres, T), a.rows(a.dh, T)
	datt, dq, dk, dv := a.rows(a.datt, T), a.rows(a.dq, T), a.rows(a.dk, T), a.rows(a.dv, T)
	// The projections' output gradients: before the q/k norm when there is one.
	dqIn, dkIn := dq, dk
	if fam.QKNorm {
		dqIn, dkIn = a.rows(a.dq2, T), a.rows(a.dk2, T)
	}
	var steps []step
	add := func(what string, f func() error) { steps = append(steps, step{what, f}) }
	// sandwich: with out = in + norm(f) and dres = dL/dout, write dL/df
	// into dtmp; dres stays the residual part of dL/din.
	sandwich := func(name string, f, rstd Tensor, w *Param) Tensor {
		df := a.rows(a.dtmp, T)
		add(name, func() error {
			if err := B.Fill(df, 0); err != nil {
				return err
			}
			return a.normBackward(df, dres, f, rstd, w)
		})
		return df
	}
	dDown := a.dres // x_{l+1} = x_mid + down(s): dres already is dL/dx_mid's residual part.
	if fam.SandwichNorms {
		sandwich("mlp output norm", a.rows(s.mo, T), a.rows(s.rstdMO, T), L.MLPOutNorm)
		dDown = a.dtmp
	}
	add("mlp", func() error { return a.mlpBackward(l, s, dDown) })
	add("mlp norm", func() error { return a.normBackward(dres, dh, xmid, rstd2, L.MLPNorm) })
	// x_mid = x_l + o(att): dres is now dL/dx_mid.
	dO := dres
	if fam.SandwichNorms {
		dO = sandwich("attention output norm", a.rows(s.ao, T), a.rows(s.rstdAO, T), L.AttnOutNorm)
	}
	add("o", func() error { return a.linearBackward(L.O, att, []Tensor{dO}, datt, false, l, s) })
	add("attention", func() error {
		return a.attentionBackward(l, dq, dk, dv, datt, q, k, v, att, lse)
	})
	add("rope q", func() error { return a.rope(dq, c.NumHeads, l, true) })
	add("rope k", func() error { return a.rope(dk, c.NumKVHeads, l, true) })
	if fam.QKNorm {
		headNorm := func(name string, dIn, dOut, in, rstd Tensor, n int, w *Param) {
			add(name, func() error {
				if err := B.Fill(dIn, 0); err != nil {
					return err
				}
				return a.normBackward(a.heads(dIn, n), a.heads(dOut, n), a.heads(in, n), a.rows(rstd, T*n), w)
			})
		}
		headNorm("q norm", dqIn, dq, a.rows(s.qraw, T), s.rstdQ, c.NumHeads, L.QNorm)
		headNorm("k norm", dkIn, dk, a.rows(s.kraw, T), s.rstdK, c.NumKVHeads, L.KNorm)
	}
	if L.QKV != nil {
		add("qkv", func() error { return a.linearBackward(L.QKV, h1, []Tensor{dqIn, dkIn, dv}, dh, false, l, s) })
	} else {
		// Stacked adapters write their part of dh first, the base
		// products add to it.
		wrote := false
		add("q k v stacked lora", func() (err error) {
			wrote, err = a.stackBackward([]*Linear{L.Q, L.K, L.V}, h1, []Tensor{dqIn, dkIn, dv}, dh, false, s)
			return err
		})
		add("q", func() error { return a.linearBackward(L.Q, h1, []Tensor{dqIn}, dh, wrote, l, s) })
		add("k", func() error { return a.linearBackward(L.K, h1, []Tensor{dkIn}, dh, true, l, s) })
		add("v", func() error { return a.linearBackward(L.V, h1, []Tensor{dv}, dh, true, l, s) })
	}
	add("attention norm", func() error {
		if !needInputGrad && !L.AttnNorm.Trainable {
			return nil
		}
		return a.normBackward(dres, dh, x, rstd1, L.AttnNorm)
	})
	for _, st := range steps {
		if err := st.f(); err != nil {
			return fmt.Errorf("layer %d %s backward: %w", l, st.what, err)
		}
	}
	return nil
}

// forward runs the embedding, every block and the final norm for the
// batch already set.
func (a *Activations) forward() error {
	m, B, T := a.m, a.m.B, a.t
	if err := a.offloadStart(); err != nil {
		return err
	}
	if err := B.Embedding(a.rows(a.resid[0], T), m.Embed.W, a.rows(a.tokens, T)); err != nil {
		return fmt.Errorf("embedding: %w", err)
	}
	if a.embedScale != 1 {
		if err := B.Scale(a.rows(a.resid[0], T), a.embedScale); err != nil {
			return fmt.Errorf("embedding scale: %w", err)
		}
	}
	if err := a.mergeImages(); err != nil {
		return err
	}
	for l := range m.Layers {
		if err := a.offloadBefore(l); err != nil {
			return err
		}
		if err := a.layerForward(l); err != nil {
			return err
		}
		if err := a.offloadAfter(l); err != nil {
			return err
		}
	}
	return a.viewError()
}

// finalNorm runs the final norm over rows [r0, r1) of the last layer's
// output (at most chunk rows) into the head's input buffer, saving their
// rstd for the backward, and returns the view of its first r1-r0 rows.
// The forward leaves the final norm to the LM head's chunks, so no
// [tokens, D] norm output is kept.
func (a *Activations) finalNorm(r0, r1 int) (Tensor, error) {
	if r1-r0 > a.chunk {
		return nil, fmt.Errorf("final norm of rows %d-%d: more than the head's chunk of %d rows", r0, r1, a.chunk)
	}
	h := a.rows(a.hN, r1-r0)
	if err := a.norm(h, a.rowRange(a.rstdN, r0, r1), a.rowRange(a.resid[len(a.m.Layers)], r0, r1), a.m.Norm); err != nil {
		return nil, fmt.Errorf("final norm rows %d-%d: %w", r0, r1, err)
	}
	return h, a.viewError()
}

// headLoss runs the LM head and cross-entropy over chunks of rows. With
// backward it also writes dL/dhN into dh and accumulates the head's grad;
// gradScale multiplies the summed loss for the gradient.
func (a *Activations) headLoss(gradScale float32, backward bool) error {
	return a.headLossRange(0, a.t, gradScale, backward)
}

// headLossPerSequence is headLoss with one gradient scale per sequence of
// the batch (DPO weights each sequence's summed log-probability by its
// pair's loss derivative).
func (a *Activations) headLossPerSequence(scales []float32) error {
	st := a.seqs.Starts
	if len(scales) != len(st)-1 {
		return fmt.Errorf("%d sequence scales for %d sequences", len(scales), len(st)-1)
	}
	for i, sc := range scales {
		if err := a.headLossRange(int(st[i]), int(st[i+1]), sc, true); err != nil {
			return err
		}
	}
	return nil
}

// headLossRange runs the head over rows [from, to) in chunks.
func (a *Activations) headLossRange(from, to int, gradScale float32, backward bool) error {
	m, B := a.m, a.m.B
	V := m.Cfg.VocabSize
	W := m.Head.W
	for r0 := from; r0 < to; r0 += a.chunk {
		r1 := min(r0+a.chunk, to)
		n := r1 - r0
		logits, err := B.View(a.logits, 0, n, V)
		if err != nil {
			return err
		}
		h, err := a.finalNorm(r0, r1)
		if err != nil {
			return err
		}
		if err := B.MatMul(logits, h, W.W, false, true, 1, 0); err != nil {
			return fmt.Errorf("lm head rows %d-%d: %w", r0, r1, err)
		}
		var capped Tensor
		if a.capped != nil {
			// Unfused soft-cap: cap in place, keep a copy for its backward.
			if capped, err = B.View(a.capped, 0, n, V); err != nil {
				return err
			}
			if err := a.softCapLogits(logits); err != nil {
				return fmt.Errorf("final soft-cap rows %d-%d: %w", r0, r1, err)
			}
			if backward {
				if err := B.Copy(capped, logits); err != nil {
					return fmt.Errorf("final soft-cap rows %d-%d: %w", r0, r1, err)
				}
			}
		}
		labels, losses := a.rowRange(a.targets, r0, r1), a.rowRange(a.losses, r0, r1)
		dl := logits
		if capValue := m.Cfg.FinalSoftCap; capValue > 0 && a.fusedCap {
			// The cap, the loss and the cap's backward in one pass: the
			// gradient with respect to the raw logits lands in dl.
			ce := B.(CappedCrossEntropy)
			if backward && a.dlogits != nil {
				if dl, err = B.View(a.dlogits, 0, n, V); err != nil {
					return err
				}
			}
			if err := ce.SoftmaxCrossEntropyCapped(dl, logits, labels, losses, gradScale, float32(capValue)); err != nil {
				return fmt.Errorf("soft-capped cross-entropy rows %d-%d: %w", r0, r1, err)
			}
			if !backward {
				continue
			}
		} else if ce, ok := B.(CrossEntropyInto); ok && backward && a.dlogits != nil {
			// The gradient goes straight into the compute dtype.
			if dl, err = B.View(a.dlogits, 0, n, V); err != nil {
				return err
			}
			if err := ce.SoftmaxCrossEntropyInto(dl, logits, labels, losses, gradScale); err != nil {
				return fmt.Errorf("cross-entropy rows %d-%d: %w", r0, r1, err)
			}
		} else {
			if err := B.SoftmaxCrossEntropy(logits, labels, losses, gradScale); err != nil {
				return fmt.Errorf("cross-entropy rows %d-%d: %w", r0, r1, err)
			}
			if !backward {
				continue
			}
			if a.dlogits != nil {
				if dl, err = B.View(a.dlogits, 0, n, V); err != nil {
					return err
				}
				if err := B.Copy(dl, logits); err != nil {
					return fmt.Errorf("cast logits gradient rows %d-%d: %w", r0, r1, err)
				}
			}
		}
		if capped != nil {
			if err := a.capper().SoftCapBackward(dl, capped, float32(m.Cfg.FinalSoftCap)); err != nil {
				return fmt.Errorf("final soft-cap backward rows %d-%d: %w", r0, r1, err)
			}
		}
		if err := B.MatMul(a.rowRange(a.dh, r0, r1), dl, W.W, false, false, 1, 0); err != nil {
			return fmt.Errorf("lm head input grad rows %d-%d: %w", r0, r1, err)
		}
		if W.Trainable {
			if err := B.MatMul(W.Grad, dl, h, true, false, 1, 1); err != nil {
				return fmt.Errorf("lm head weight grad rows %d-%d: %w", r0, r1, err)
			}
		}
	}
	return a.viewError()
}

// backward runs from dL/dhN (in dh) down to the embedding.
func (a *Activations) backward() error {
	m, B, T := a.m, a.m.B, a.t
	dres := a.rows(a.dres, T)
	if err := B.Fill(dres, 0); err != nil {
		return err
	}
	if err := a.normBackward(dres, a.rows(a.dh, T), a.rows(a.resid[len(m.Layers)], T), a.rows(a.rstdN, T), m.Norm); err != nil {
		return fmt.Errorf("final norm backward: %w", err)
	}
	if a.off != nil && !a.off.saved {
		return fmt.Errorf("engine: backward after a forward that did not keep its offloaded checkpoints (not training)")
	}
	for l := len(m.Layers) - 1; l >= 0; l-- {
		if err := a.fetchAhead(l); err != nil {
			return err
		}
		if a.Checkpointing {
			a.recomputing = true
			err := a.layerForward(l)
			a.recomputing = false
			if err != nil {
				return fmt.Errorf("recompute: %w", err)
			}
		}
		if err := a.layerBackward(l, l > 0 || m.Embed.Trainable || a.imagesNeedGrad()); err != nil {
			return err
		}
		if a.afterLayer != nil {
			if err := a.afterLayer(l); err != nil {
				return err
			}
		}
	}
	if err := a.imagesBackward(dres); err != nil {
		return err
	}
	if m.Embed.Trainable {
		if a.embedScale != 1 {
			if err := B.Scale(dres, a.embedScale); err != nil {
				return fmt.Errorf("embedding scale backward: %w", err)
			}
		}
		if err := B.EmbeddingBackward(m.Embed.Grad, dres, a.rows(a.tokens, T)); err != nil {
			return fmt.Errorf("embedding backward: %w", err)
		}
	}
	return a.viewError()
}

// StepResult is what one micro-batch pass reports.
type StepResult struct {
	LossSum float64 // sum of per-token losses over counted targets
	Count   int     // targets counted
}

// ForwardBackward runs one micro-batch. With backward, gradients of
// gradScale * (sum of token losses) are accumulated into every trainable
// parameter's Grad.
func (a *Activations) ForwardBackward(b *datasets.Batch, gradScale float32, backward bool, dropoutSeed uint64) (StepResult, error) {
	if err := a.setBatch(b); err != nil {
		return StepResult{}, err
	}
	a.dropoutSeed = dropoutSeed
	a.training = backward
	if err := a.forward(); err != nil {
		return StepResult{}, err
	}
	if err := a.headLoss(gradScale, backward); err != nil {
		return StepResult{}, err
	}
	if backward {
		if err := a.backward(); err != nil {
			return StepResult{}, err
		}
	}
	losses, err := a.TokenLosses()
	if err != nil {
		return StepResult{}, err
	}
	var sum float64
	for i, l := range losses {
		if b.Targets[i] != datasets.IgnoreIndex {
			sum += float64(l)
		}
	}
	return StepResult{LossSum: sum, Count: a.lastTargets}, nil
}

// TokenLosses downloads the per-token losses (-log p(target)) of the last
// pass; ignored positions hold 0.
func (a *Activations) TokenLosses() ([]float32, error) {
	if cap(a.lossesHost) < a.t {
		a.lossesHost = make([]float32, a.Cap)
	}
	out := a.lossesHost[:a.t]
	if err := a.m.B.Download(a.rows(a.losses, a.t), out); err != nil {
		return nil, fmt.Errorf("download losses: %w", err)
	}
	return out, nil
}

// Logits runs the forward for b and returns the full [T, V] logits. Meant
// for tests and small models: it materialises what training never does.
func (a *Activations) Logits(b *datasets.Batch) ([]float32, error) {
	if err := a.setBatch(b); err != nil {
		return nil, err
	}
	a.training = false
	if err := a.forward(); err != nil {
		return nil, err
	}
	m, B, T := a.m, a.m.B, a.t
	V := m.Cfg.VocabSize
	out := make([]float32, T*V)
	for r0 := 0; r0 < T; r0 += a.chunk {
		r1 := min(r0+a.chunk, T)
		logits, err := B.View(a.logits, 0, r1-r0, V)
		if err != nil {
			return nil, err
		}
		h, err := a.finalNorm(r0, r1)
		if err != nil {
			return nil, err
		}
		if err := B.MatMul(logits, h, m.Head.W.W, false, true, 1, 0); err != nil {
			return nil, err
		}
		if m.Cfg.FinalSoftCap > 0 {
			if err := a.softCapLogits(logits); err != nil {
				return nil, err
			}
		}
		if err := B.Download(logits, out[r0*V:r1*V]); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// softCapLogits caps logits in place at c*tanh(x/c) (Gemma 2's final
// soft-cap), for callers that read the logits themselves and for the
// unfused loss; the fused loss caps inside the cross-entropy
// (CappedCrossEntropy).
func (a *Activations) softCapLogits(logits Tensor) error {
	sc := a.capper()
	if sc == nil {
		return fmt.Errorf("backend %s has no logit soft-cap (%s needs it): %w", a.m.B.Name(), a.m.Cfg.ModelType, ErrNotImplemented)
	}
	return sc.SoftCap(logits, float32(a.m.Cfg.FinalSoftCap))
}

func (a *Activations) capper() SoftCapper {
	sc, _ := a.m.B.(SoftCapper)
	return sc
}

// roundTo rounds v to what dtype dt holds (bfloat16 keeps 8 bits of
// mantissa, rounded to nearest even), so a constant multiplies as it does
// in the weights' dtype.
func roundTo(dt DType, v float32) float32 {
	if dt != BF16 {
		return v
	}
	b := math.Float32bits(v)
	b += 0x7fff + (b>>16)&1
	return math.Float32frombits(b &^ 0xffff)
}

// Offloaded checkpoints (a.off, see ckptOffload): stream j lives in
// slot j % OffloadSlots. The forward writes stream l+1 into the slot of
// stream l-2, whose copy to the host was queued after layer l-2 and has
// had layer l-1 to run in; the backward fetches stream l-1 back into the
// slot of stream l+2 (free once layer l+1's backward is queued) while
// layer l runs. Every method here is a no-op without offload.

// offloadStart readies the slots for a forward: any copy still running
// from the last pass is waited for before the embedding writes stream 0.
func (a *Activations) offloadStart() error {
	o := a.off
	if o == nil {
		return nil
	}
	for i, s := range o.slots {
		if err := o.h.AwaitCopies(s); err != nil {
			return fmt.Errorf("offloaded checkpoints: await slot %d: %w", i, err)
		}
		o.holds[i] = -1
	}
	o.holds[0] = 0
	o.saved = a.training
	return nil
}

// offloadBefore waits, before layer l writes stream l+1, for the copy out
// of the stream that slot held.
func (a *Activations) offloadBefore(l int) error {
	o := a.off
	if o == nil {
		return nil
	}
	i := (l + 1) % OffloadSlots
	if err := o.h.AwaitCopies(o.slots[i]); err != nil {
		return fmt.Errorf("layer %d: offloaded checkpoints: await slot %d: %w", l, i, err)
	}
	o.holds[i] = l + 1
	return nil
}

// offloadAfter queues the copy of layer l's input to the host once the
// layer's forward (queued before it) is done, when a later stream will
// overwrite it and a backward will need it.
func (a *Activations) offloadAfter(l int) error {
	o := a.off
	if o == nil || !o.saved || l >= len(o.host) {
		return nil
	}
	if err := o.h.CopyToHost(o.host[l], a.rows(a.resid[l], a.t)); err != nil {
		return fmt.Errorf("layer %d: offload checkpoint: %w", l, err)
	}
	return nil
}

// fetchAhead, before layer l's backward, makes sure stream l is in its
// slot (fetched during layer l+1's backward, or never overwritten) and
// queues the fetch of stream l-1, which layer l's work then overlaps.
func (a *Activations) fetchAhead(l int) error {
	o := a.off
	if o == nil {
		return nil
	}
	for _, j := range []int{l, l - 1} {
		if j < 0 {
			break
		}
		i := j % OffloadSlots
		if o.holds[i] == j {
			continue
		}
		if j >= len(o.host) {
			return fmt.Errorf("layer %d: offloaded checkpoints: stream %d is neither in slot %d (which holds %d) nor on the host", l, j, i, o.holds[i])
		}
		if err := o.h.CopyFromHost(a.rows(o.slots[i], a.t), o.host[j]); err != nil {
			return fmt.Errorf("layer %d: fetch checkpoint %d: %w", l, j, err)
		}
		o.holds[i] = j
	}
	if err := o.h.AwaitCopies(o.slots[l%OffloadSlots]); err != nil {
		return fmt.Errorf("layer %d: offloaded checkpoints: await slot %d: %w", l, l%OffloadSlots, err)
	}
	return nil
}
