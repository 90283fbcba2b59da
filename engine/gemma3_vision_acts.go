package engine

import (
	"fmt"
	"math"

	"whet/datasets"
)

// The image side of a Gemma 3 pass (see gemma3_vision.go for the maths):
// the decoder calls these hooks, which do nothing for a model without a
// vision tower.

// gemma3ImageActs holds one batch's images and every buffer the tower and
// projector need for them.
type gemma3ImageActs struct {
	v     *Gemma3Vision
	n     int  // images of the current batch
	cap   int  // images the buffers hold
	keep  bool // per-layer buffers kept for the tower's backward
	owned []Tensor

	// The language model's side: each token's image group (-1 for text)
	// and the runs of image tokens of the batch.
	groups Tensor // I32 [Cap]
	runs   [][2]int

	patchesHost []float32 // [n*P, K] set by SetImages, uploaded per pass
	patches     Tensor    // [cap*P, K]
	pool        Tensor    // [M, P]
	vgroups     Tensor    // I32 [cap*P]: image index of each patch
	vseqs       []int32
	vstarts     Tensor // I32 [cap+1]: vseqs on the device (SeqLayout.Dev)

	x                              []Tensor // residual stream: L+1 (keep) or 2 buffers [cap*P, D]
	sets                           []*sigLIPActs
	y, meanP, rstdP                Tensor // post-layernorm
	pooled, rstdN, normed, normW   Tensor // projector: [cap*M, D], [cap*M], [cap*M, D], [D]
	feats, xa                      Tensor // [cap*M, Dt], [cap*M, r]
	dx, dh, dq, dk, dv, datt       Tensor // [cap*P, D]
	dI                             Tensor // [cap*P, I]
	dfeats, dnormed, dpooled, dxa  Tensor // [cap*M, Dt], [cap*M, D], [cap*M, D], [cap*M, r]
	dy                             Tensor // [cap*P, D]
	loraRank                       int
	towerRank                      int    // the tower adapters' rank (0: none)
	txa, tdxa                      Tensor // [cap*P, towerRank]: a tower adapter's x Aᵀ and its gradient
	kvLSE                          Tensor // F32 [H*Cap]: a generation prefill's lse
	featsReady, needGrad, towerRan bool
}

// sigLIPActs is what one tower layer saves for its backward.
type sigLIPActs struct {
	h1, mean1, rstd1, q, k, v, att, lse, x2, h2, mean2, rstd2, f, g Tensor
}

// SetImages gives the next passes (ForwardBackward, Logits) their images:
// pixels [n, C, S, S] as the processor makes them (datasets/vision), image
// i filling the i-th run of mm_tokens_per_image image tokens of the batch.
// n = 0 clears them.
func (a *Activations) SetImages(pixels []float32, n int) error {
	v := a.m.Gemma3Vision
	if v == nil {
		if n == 0 {
			return nil
		}
		return fmt.Errorf("model %s has no vision tower: it cannot take images", a.m.Cfg.ModelType)
	}
	if a.img == nil {
		a.img = &gemma3ImageActs{v: v}
	}
	ia := a.img
	if n == 0 {
		ia.n, ia.patchesHost = 0, nil
		return nil
	}
	patches, err := v.Cfg.Gemma3Patches(pixels, n)
	if err != nil {
		return err
	}
	ia.n, ia.patchesHost = n, patches
	return nil
}

// imageTokens counts the runs' tokens.
func (ia *gemma3ImageActs) imageTokens() int {
	n := 0
	for _, r := range ia.runs {
		n += r[1] - r[0]
	}
	return n
}

// setImageTokens finds the batch's image tokens and uploads their groups.
func (a *Activations) setImageTokens(b *datasets.Batch) error {
	v := a.m.Gemma3Vision
	if v == nil {
		return nil
	}
	if a.img == nil {
		a.img = &gemma3ImageActs{v: v}
	}
	ia := a.img
	ia.runs = imageRuns(b.Tokens, b.SeqStarts, v.Cfg.ImageTokenID)
	ia.featsReady = false
	got, want := ia.imageTokens(), ia.n*v.Cfg.TokensPerImage
	if got != want {
		return fmt.Errorf("batch: %d image tokens (id %d; runs %s) but %d images of %d tokens were set (Activations.SetImages)",
			got, v.Cfg.ImageTokenID, describeRuns(ia.runs), ia.n, v.Cfg.TokensPerImage)
	}
	if len(ia.runs) == 0 {
		return nil
	}
	B := a.m.B
	if ia.groups == nil {
		t, err := B.Alloc(I32, a.Cap)
		if err != nil {
			return fmt.Errorf("allocate image groups: %w", err)
		}
		ia.groups = t
		ia.owned = append(ia.owned, t)
	}
	g := make([]int32, len(b.Tokens))
	for i := range g {
		g[i] = -1
	}
	for k, r := range ia.runs {
		for i := r[0]; i < r[1]; i++ {
			g[i] = int32(k)
		}
	}
	if err := B.UploadInt32(a.rows(ia.groups, len(g)), g); err != nil {
		return fmt.Errorf("upload image groups: %w", err)
	}
	return a.viewError()
}

// hasImageGroups: the batch has image tokens, so attention takes groups.
func (a *Activations) hasImageGroups() bool {
	return a.img != nil && len(a.img.runs) > 0 && a.kv == nil
}

// attention runs layer l's attention, with the image groups when the batch has images.
func (a *Activations) attention(l int, att, lse, q, k, v Tensor) error {
	if !a.hasImageGroups() {
		return a.m.B.Attention(att, lse, q, k, v, a.seqs, a.attnParams(l))
	}
	ga, err := a.groupAttention()
	if err != nil {
		return err
	}
	return ga.AttentionGroups(att, lse, q, k, v, a.rows(a.img.groups, a.t), a.seqs, a.attnParams(l))
}

func (a *Activations) attentionBackward(l int, dq, dk, dv, datt, q, k, v, att, lse Tensor) error {
	if !a.hasImageGroups() {
		return a.m.B.AttentionBackward(dq, dk, dv, datt, q, k, v, att, lse, a.seqs, a.attnParams(l))
	}
	ga, err := a.groupAttention()
	if err != nil {
		return err
	}
	return ga.AttentionGroupsBackward(dq, dk, dv, datt, q, k, v, att, lse, a.rows(a.img.groups, a.t), a.seqs, a.attnParams(l))
}

func (a *Activations) groupAttention() (GroupAttention, error) {
	ga, ok := a.m.B.(GroupAttention)
	if !ok {
		return nil, fmt.Errorf("backend %s has no attention with bidirectional image groups (Gemma 3's image tokens need it): %w", a.m.B.Name(), ErrNotImplemented)
	}
	return ga, nil
}

// towerTrainable: some weight of the tower, or an adapter on its layers,
// is trained.
func (v *Gemma3Vision) towerTrainable() bool {
	for _, lin := range v.TowerLinears() {
		if lo := lin.LoRA; lo != nil && lo.Enabled && (lo.A.Trainable || lo.B.Trainable) {
			return true
		}
	}
	for _, p := range v.TowerParams() {
		if p.Trainable {
			return true
		}
	}
	return false
}

// imagesNeedGrad: the batch's image features need a gradient (the
// projector or the tower is trained).
func (a *Activations) imagesNeedGrad() bool {
	if a.img == nil || len(a.img.runs) == 0 {
		return false
	}
	v := a.img.v
	if v.ProjNorm.Trainable || v.Proj.Trainable || (v.ProjLoRA != nil && v.ProjLoRA.Enabled) {
		return true
	}
	return v.towerTrainable()
}

// freeImages releases the image buffers.
func (a *Activations) freeImages() {
	if a.img == nil {
		return
	}
	for _, t := range a.img.owned {
		a.m.B.Free(t)
	}
	a.img = nil
}

// ensure sizes the buffers for n images (and the tower's backward when keep).
func (ia *gemma3ImageActs) ensure(B Backend, dt DType, n int, keep bool) error {
	rank := 0
	if ia.v.ProjLoRA != nil {
		rank = ia.v.ProjLoRA.Rank
	}
	trank := ia.v.towerLoRARank()
	if ia.cap >= n && ia.keep == keep && ia.loraRank == rank && ia.towerRank == trank && ia.pool != nil {
		return nil
	}
	// Keep the tensors sized by the language model, free the rest.
	var kept []Tensor
	for _, t := range ia.owned {
		if t == ia.groups || t == ia.kvLSE {
			kept = append(kept, t)
		} else {
			B.Free(t)
		}
	}
	ia.owned = kept
	c := &ia.v.Cfg
	P, M, D, I, K, Dt, L := c.NumPatches(), c.TokensPerImage, c.Hidden, c.Intermediate, c.PatchDim(), c.TextHidden, c.Layers
	NP, NM := n*P, n*M
	var err error
	alloc := func(d DType, shape ...int) Tensor {
		if err != nil {
			return nil
		}
		var t Tensor
		if t, err = B.Alloc(d, shape...); err != nil {
			err = fmt.Errorf("allocate gemma3 vision activations %v %v: %w", d, shape, err)
			return nil
		}
		ia.owned = append(ia.owned, t)
		return t
	}
	ia.patches = alloc(dt, NP, K)
	ia.pool = alloc(dt, M, P)
	ia.vgroups = alloc(I32, NP)
	ia.vstarts = alloc(I32, n+1)
	nx := 2
	if keep {
		nx = L + 1
	}
	ia.x = make([]Tensor, nx)
	for i := range ia.x {
		ia.x[i] = alloc(dt, NP, D)
	}
	nsets := 1
	if keep {
		nsets = L
	}
	ia.sets = make([]*sigLIPActs, nsets)
	for i := range ia.sets {
		ia.sets[i] = &sigLIPActs{
			h1: alloc(dt, NP, D), mean1: alloc(F32, NP), rstd1: alloc(F32, NP),
			q: alloc(dt, NP, D), k: alloc(dt, NP, D), v: alloc(dt, NP, D), att: alloc(dt, NP, D), lse: alloc(F32, c.Heads, NP),
			x2: alloc(dt, NP, D), h2: alloc(dt, NP, D), mean2: alloc(F32, NP), rstd2: alloc(F32, NP),
			f: alloc(dt, NP, I), g: alloc(dt, NP, I),
		}
	}
	ia.y, ia.meanP, ia.rstdP = alloc(dt, NP, D), alloc(F32, NP), alloc(F32, NP)
	ia.pooled, ia.rstdN, ia.normed, ia.normW = alloc(dt, NM, D), alloc(F32, NM), alloc(dt, NM, D), alloc(dt, D)
	ia.feats = alloc(dt, NM, Dt)
	ia.dfeats, ia.dnormed, ia.dpooled = alloc(dt, NM, Dt), alloc(dt, NM, D), alloc(dt, NM, D)
	if rank > 0 {
		ia.xa, ia.dxa = alloc(dt, NM, rank), alloc(dt, NM, rank)
	}
	if trank > 0 {
		ia.txa = alloc(dt, NP, trank)
		if keep {
			ia.tdxa = alloc(dt, NP, trank)
		}
	}
	if keep {
		ia.dx, ia.dh, ia.dq, ia.dk, ia.dv, ia.datt = alloc(dt, NP, D), alloc(dt, NP, D), alloc(dt, NP, D), alloc(dt, NP, D), alloc(dt, NP, D), alloc(dt, NP, D)
		ia.dI, ia.dy = alloc(dt, NP, I), alloc(dt, NP, D)
	}
	if err != nil {
		return err
	}
	if err := B.Upload(ia.pool, c.poolMatrix()); err != nil {
		return fmt.Errorf("upload pooling matrix: %w", err)
	}
	vg := make([]int32, NP)
	for i := range vg {
		vg[i] = int32(i / P)
	}
	if err := B.UploadInt32(ia.vgroups, vg); err != nil {
		return fmt.Errorf("upload patch groups: %w", err)
	}
	ia.cap, ia.keep, ia.loraRank, ia.towerRank = n, keep, rank, trank
	return nil
}

// rowsView is rows [r0, r1) of t, or elements [r0, r1) of a 1-D t.
func rowsView(B Backend, t Tensor, r0, r1 int) (Tensor, error) {
	if len(t.Shape()) == 1 {
		return B.View(t, r0, r1-r0)
	}
	cols := Cols(t)
	return B.View(t, r0*cols, r1-r0, cols)
}

// visionOps returns the backend's LayerNorm, GELU-tanh and group attention.
func visionOps(B Backend) (LayerNormer, GELUTanhAct, GroupAttention, error) {
	ln, ok1 := B.(LayerNormer)
	ge, ok2 := B.(GELUTanhAct)
	ga, ok3 := B.(GroupAttention)
	if !ok1 || !ok2 || !ok3 {
		return nil, nil, nil, fmt.Errorf("backend %s lacks the SigLIP vision tower's ops (LayerNorm with bias, GELU-tanh, bidirectional attention): %w", B.Name(), ErrNotImplemented)
	}
	return ln, ge, ga, nil
}

// mergeImages runs the tower and projector over the batch's images and
// writes the features over the image tokens' embeddings in resid[0].
func (a *Activations) mergeImages() error {
	if a.img == nil || len(a.img.runs) == 0 {
		return nil
	}
	ia := a.img
	v := ia.v
	B := a.m.B
	keep := a.training && v.towerTrainable()
	if err := ia.ensure(B, a.m.Compute, ia.n, keep); err != nil {
		return err
	}
	if err := a.visionForward(); err != nil {
		return fmt.Errorf("gemma3 vision: %w", err)
	}
	feats, err := rowsView(B, ia.feats, 0, ia.n*v.Cfg.TokensPerImage)
	if err != nil {
		return err
	}
	k := 0
	for _, r := range ia.runs {
		n := r[1] - r[0]
		dst := a.rowRange(a.resid[0], r[0], r[1])
		src, err := rowsView(B, feats, k, k+n)
		if err != nil {
			return err
		}
		if err := B.Copy(dst, src); err != nil {
			return fmt.Errorf("merge image features into tokens [%d,%d): %w", r[0], r[1], err)
		}
		k += n
	}
	return a.viewError()
}

// attnParams is the attention geometry of the tower.
func (c *Gemma3VisionConfig) attnParams() AttnParams {
	hd := c.HeadDim()
	return AttnParams{NHeads: c.Heads, NKVHeads: c.Heads, HeadDim: hd, Scale: float32(1 / math.Sqrt(float64(hd)))}
}

// visionForward computes feats for the ia.n images set.
func (a *Activations) visionForward() error {
	ia := a.img
	v, c, B := ia.v, &ia.v.Cfg, a.m.B
	ln, ge, ga, err := visionOps(B)
	if err != nil {
		return err
	}
	n := ia.n
	P, M := c.NumPatches(), c.TokensPerImage
	NP, NM := n*P, n*M
	eps := float32(c.LayerNormEps)
	var e error
	rows := func(t Tensor, r int) Tensor {
		if e != nil {
			return t
		}
		var out Tensor
		out, e = rowsView(B, t, 0, r)
		return out
	}
	patches := rows(ia.patches, NP)
	if e != nil {
		return e
	}
	if err := B.Upload(patches, ia.patchesHost); err != nil {
		return fmt.Errorf("upload patches: %w", err)
	}
	seqs := make([]int32, n+1)
	for i := range seqs {
		seqs[i] = int32(i * P)
	}
	ia.vseqs = seqs
	starts := rows(ia.vstarts, n+1)
	if e != nil {
		return e
	}
	if err := B.UploadInt32(starts, seqs); err != nil {
		return fmt.Errorf("upload image starts: %w", err)
	}
	vs := SeqLayout{Starts: seqs, Dev: starts, MaxLen: P}
	groups := rows(ia.vgroups, NP)
	pw, err := B.View(v.PatchW.W, 0, c.Hidden, c.PatchDim())
	if err != nil {
		return err
	}
	x0 := rows(ia.x[0], NP)
	if e != nil {
		return e
	}
	if err := B.MatMul(x0, patches, pw, false, true, 1, 0); err != nil {
		return fmt.Errorf("patch embedding: %w", err)
	}
	if err := B.AddBias(x0, v.PatchB.W); err != nil {
		return fmt.Errorf("patch embedding bias: %w", err)
	}
	for i := 0; i < n; i++ {
		xi, err := rowsView(B, x0, i*P, (i+1)*P)
		if err != nil {
			return err
		}
		if err := B.AddScaled(xi, v.PosEmb.W, 1); err != nil {
			return fmt.Errorf("position embedding: %w", err)
		}
	}
	ap := c.attnParams()
	var txa Tensor
	if ia.towerRank > 0 {
		txa = rows(ia.txa, NP)
	}
	lin := func(l *Linear, x, y Tensor) error { return sigLinear(B, l, x, y, txa, 0) }
	linAdd := func(l *Linear, x, y Tensor) error { return sigLinear(B, l, x, y, txa, 1) }
	for l, L := range v.Layers {
		s := ia.set(l)
		x, xo := rows(ia.xAt(l), NP), rows(ia.xAt(l+1), NP)
		h1, q, k, vv, att := rows(s.h1, NP), rows(s.q, NP), rows(s.k, NP), rows(s.v, NP), rows(s.att, NP)
		x2, h2, f, g := rows(s.x2, NP), rows(s.h2, NP), rows(s.f, NP), rows(s.g, NP)
		m1, r1, m2, r2 := rows(s.mean1, NP), rows(s.rstd1, NP), rows(s.mean2, NP), rows(s.rstd2, NP)
		lse, lerr := B.View(s.lse, 0, c.Heads, NP)
		if e != nil || lerr != nil {
			return fmt.Errorf("views: %v %v", e, lerr)
		}
		steps := []step{
			{"layer_norm1", func() error { return ln.LayerNorm(h1, m1, r1, x, L.LN1W.W, L.LN1B.W, eps) }},
			{"q", func() error { return lin(L.Q, h1, q) }},
			{"k", func() error { return lin(L.K, h1, k) }},
			{"v", func() error { return lin(L.V, h1, vv) }},
			{"attention", func() error { return ga.AttentionGroups(att, lse, q, k, vv, groups, vs, ap) }},
			{"out_proj", func() error {
				if err := B.Copy(x2, x); err != nil {
					return err
				}
				return linAdd(L.O, att, x2)
			}},
			{"layer_norm2", func() error { return ln.LayerNorm(h2, m2, r2, x2, L.LN2W.W, L.LN2B.W, eps) }},
			{"fc1", func() error { return lin(L.FC1, h2, f) }},
			{"gelu", func() error { return ge.GELUTanh(g, f) }},
			{"fc2", func() error {
				if err := B.Copy(xo, x2); err != nil {
					return err
				}
				return linAdd(L.FC2, g, xo)
			}},
		}
		for _, st := range steps {
			if err := st.f(); err != nil {
				return fmt.Errorf("tower layer %d %s: %w", l, st.what, err)
			}
		}
	}
	y := rows(ia.y, NP)
	xL := rows(ia.xAt(len(v.Layers)), NP)
	mp, rp := rows(ia.meanP, NP), rows(ia.rstdP, NP)
	pooled, rstdN, normed, feats := rows(ia.pooled, NM), rows(ia.rstdN, NM), rows(ia.normed, NM), rows(ia.feats, NM)
	if e != nil {
		return e
	}
	if err := ln.LayerNorm(y, mp, rp, xL, v.PostW.W, v.PostB.W, eps); err != nil {
		return fmt.Errorf("post_layernorm: %w", err)
	}
	for i := 0; i < n; i++ {
		yi, err1 := rowsView(B, y, i*P, (i+1)*P)
		pi, err2 := rowsView(B, pooled, i*M, (i+1)*M)
		if err1 != nil || err2 != nil {
			return fmt.Errorf("pool views: %v %v", err1, err2)
		}
		if err := B.MatMul(pi, ia.pool, yi, false, false, 1, 0); err != nil {
			return fmt.Errorf("average pool: %w", err)
		}
	}
	if err := B.Fill(ia.normW, 1); err != nil {
		return err
	}
	if err := B.AddScaled(ia.normW, v.ProjNorm.W, 1); err != nil {
		return err
	}
	if err := B.RMSNorm(normed, rstdN, pooled, ia.normW, eps); err != nil {
		return fmt.Errorf("mm_soft_emb_norm: %w", err)
	}
	if err := B.MatMul(feats, normed, v.Proj.W, false, false, 1, 0); err != nil {
		return fmt.Errorf("mm_input_projection: %w", err)
	}
	if lo := v.ProjLoRA; lo != nil && lo.Enabled {
		xa := rows(ia.xa, NM)
		if e != nil {
			return e
		}
		if err := B.MatMul(xa, normed, lo.A.W, false, true, 1, 0); err != nil {
			return fmt.Errorf("projector lora A: %w", err)
		}
		if err := B.MatMul(feats, xa, lo.B.W, false, true, lo.Scale, 1); err != nil {
			return fmt.Errorf("projector lora B: %w", err)
		}
	}
	ia.featsReady = true
	return nil
}

// set is layer l's saved buffers (one shared set unless kept).
func (ia *gemma3ImageActs) set(l int) *sigLIPActs {
	if ia.keep {
		return ia.sets[l]
	}
	return ia.sets[0]
}

// xAt is the tower's residual stream before layer l (ping-pong unless kept).
func (ia *gemma3ImageActs) xAt(l int) Tensor {
	if ia.keep {
		return ia.x[l]
	}
	return ia.x[l%2]
}

// sigLinear: y = x W^T + b + beta·y (+ the adapter's s x Aᵀ Bᵀ, xa
// [rows, r] its scratch); beta 0 writes y, 1 adds to it.
func sigLinear(B Backend, lin *Linear, x, y, xa Tensor, beta float32) error {
	if err := B.MatMul(y, x, lin.W.W, false, true, 1, beta); err != nil {
		return err
	}
	if err := B.AddBias(y, lin.B.W); err != nil {
		return err
	}
	return sigLoRA(B, lin, x, y, xa)
}

// sigLoRA: y += s (x Aᵀ) Bᵀ when lin has an enabled adapter.
func sigLoRA(B Backend, lin *Linear, x, y, xa Tensor) error {
	lo := lin.LoRA
	if lo == nil || !lo.Enabled {
		return nil
	}
	if xa == nil {
		return fmt.Errorf("%s: no buffer for its adapter", lin.Module)
	}
	if err := B.MatMul(xa, x, lo.A.W, false, true, 1, 0); err != nil {
		return fmt.Errorf("%s lora A: %w", lin.Module, err)
	}
	if err := B.MatMul(y, xa, lo.B.W, false, true, lo.Scale, 1); err != nil {
		return fmt.Errorf("%s lora B: %w", lin.Module, err)
	}
	return nil
}

// sigLinearBackward: the weight and bias gradients (when trained), the
// adapter's (its x Aᵀ recomputed into xa, dxa its gradient) and dx = dy W
// (+ dy's share through the adapter; += when accumulate).
func sigLinearBackward(B Backend, lin *Linear, x, dy, dx, xa, dxa Tensor, accumulate bool) error {
	if lin.W.Trainable {
		if err := B.MatMul(lin.W.Grad, dy, x, true, false, 1, 1); err != nil {
			return err
		}
	}
	if lin.B.Trainable {
		if err := B.BiasBackward(lin.B.Grad, dy); err != nil {
			return err
		}
	}
	beta := float32(0)
	if accumulate {
		beta = 1
	}
	if err := B.MatMul(dx, dy, lin.W.W, false, false, 1, beta); err != nil {
		return err
	}
	lo := lin.LoRA
	if lo == nil || !lo.Enabled {
		return nil
	}
	if xa == nil || dxa == nil {
		return fmt.Errorf("%s: no buffers for its adapter's backward", lin.Module)
	}
	if lo.B.Trainable {
		if err := B.MatMul(xa, x, lo.A.W, false, true, 1, 0); err != nil {
			return fmt.Errorf("%s lora A (recomputed): %w", lin.Module, err)
		}
		if err := B.MatMul(lo.B.Grad, dy, xa, true, false, lo.Scale, 1); err != nil {
			return fmt.Errorf("%s lora B grad: %w", lin.Module, err)
		}
	}
	if err := B.MatMul(dxa, dy, lo.B.W, false, false, lo.Scale, 0); err != nil {
		return fmt.Errorf("%s lora dxa: %w", lin.Module, err)
	}
	if lo.A.Trainable {
		if err := B.MatMul(lo.A.Grad, dxa, x, true, false, 1, 1); err != nil {
			return fmt.Errorf("%s lora A grad: %w", lin.Module, err)
		}
	}
	if err := B.MatMul(dx, dxa, lo.A.W, false, false, 1, 1); err != nil {
		return fmt.Errorf("%s lora input grad: %w", lin.Module, err)
	}
	return nil
}

// imagesBackward takes the image tokens' rows of dres (dL/d merged
// embeddings) as the features' gradient, zeroes them there (those tokens'
// embeddings were overwritten) and runs the projector's and, when trained,
// the tower's backward.
func (a *Activations) imagesBackward(dres Tensor) error {
	if !a.imagesNeedGrad() {
		if a.img != nil {
			for _, r := range a.img.runs {
				if err := a.m.B.Fill(a.rowRange(dres, r[0], r[1]), 0); err != nil {
					return err
				}
			}
		}
		return a.viewError()
	}
	ia := a.img
	v, c, B := ia.v, &ia.v.Cfg, a.m.B
	if !ia.featsReady {
		return fmt.Errorf("gemma3 vision: backward without a forward over the images")
	}
	NM := ia.n * c.TokensPerImage
	var e error
	rows := func(t Tensor, r int) Tensor {
		if e != nil {
			return t
		}
		var out Tensor
		out, e = rowsView(B, t, 0, r)
		return out
	}
	dfeats, normed, pooled, rstdN := rows(ia.dfeats, NM), rows(ia.normed, NM), rows(ia.pooled, NM), rows(ia.rstdN, NM)
	if e != nil {
		return e
	}
	k := 0
	for _, r := range ia.runs {
		cnt := r[1] - r[0]
		src := a.rowRange(dres, r[0], r[1])
		dst, err := rowsView(B, dfeats, k, k+cnt)
		if err != nil {
			return err
		}
		if err := B.Copy(dst, src); err != nil {
			return err
		}
		if err := B.Fill(src, 0); err != nil {
			return err
		}
		k += cnt
	}
	if err := a.viewError(); err != nil {
		return err
	}
	if v.Proj.Trainable {
		if err := B.MatMul(v.Proj.Grad, normed, dfeats, true, false, 1, 1); err != nil {
			return fmt.Errorf("mm_input_projection grad: %w", err)
		}
	}
	var dxa Tensor
	lo := v.ProjLoRA
	if lo != nil && lo.Enabled {
		xa := rows(ia.xa, NM)
		dxa = rows(ia.dxa, NM)
		if e != nil {
			return e
		}
		if lo.B.Trainable {
			if err := B.MatMul(lo.B.Grad, dfeats, xa, true, false, lo.Scale, 1); err != nil {
				return fmt.Errorf("projector lora B grad: %w", err)
			}
		}
		if err := B.MatMul(dxa, dfeats, lo.B.W, false, false, lo.Scale, 0); err != nil {
			return fmt.Errorf("projector lora dxa: %w", err)
		}
		if lo.A.Trainable {
			if err := B.MatMul(lo.A.Grad, dxa, normed, true, false, 1, 1); err != nil {
				return fmt.Errorf("projector lora A grad: %w", err)
			}
		}
	}
	tower := v.towerTrainable()
	if !v.ProjNorm.Trainable && !tower {
		return nil
	}
	dnormed, dpooled := rows(ia.dnormed, NM), rows(ia.dpooled, NM)
	if e != nil {
		return e
	}
	if err := B.MatMul(dnormed, dfeats, v.Proj.W, false, true, 1, 0); err != nil {
		return fmt.Errorf("mm_input_projection input grad: %w", err)
	}
	if dxa != nil {
		if err := B.MatMul(dnormed, dxa, lo.A.W, false, false, 1, 1); err != nil {
			return fmt.Errorf("projector lora input grad: %w", err)
		}
	}
	if err := B.Fill(dpooled, 0); err != nil {
		return err
	}
	var dnw Tensor
	if v.ProjNorm.Trainable {
		dnw = v.ProjNorm.Grad
	}
	if err := B.RMSNormBackward(dpooled, dnw, dnormed, pooled, ia.normW, rstdN); err != nil {
		return fmt.Errorf("mm_soft_emb_norm backward: %w", err)
	}
	if !tower {
		return nil
	}
	if !ia.keep {
		return fmt.Errorf("gemma3 vision: the tower is trained but its forward kept no activations (made trainable after the forward?)")
	}
	return a.towerBackward(dpooled)
}

// towerBackward runs from the pooled features' gradient down to the
// patch embedding, accumulating the tower's trained weights' gradients.
func (a *Activations) towerBackward(dpooled Tensor) error {
	ia := a.img
	v, c, B := ia.v, &ia.v.Cfg, a.m.B
	ln, ge, ga, err := visionOps(B)
	if err != nil {
		return err
	}
	n := ia.n
	P, M := c.NumPatches(), c.TokensPerImage
	NP := n * P
	var e error
	rows := func(t Tensor, r int) Tensor {
		if e != nil {
			return t
		}
		var out Tensor
		out, e = rowsView(B, t, 0, r)
		return out
	}
	dy, dx, dh := rows(ia.dy, NP), rows(ia.dx, NP), rows(ia.dh, NP)
	dq, dk, dv, datt, dI := rows(ia.dq, NP), rows(ia.dk, NP), rows(ia.dv, NP), rows(ia.datt, NP), rows(ia.dI, NP)
	if e != nil {
		return e
	}
	for i := 0; i < n; i++ {
		dyi, err1 := rowsView(B, dy, i*P, (i+1)*P)
		dpi, err2 := rowsView(B, dpooled, i*M, (i+1)*M)
		if err1 != nil || err2 != nil {
			return fmt.Errorf("pool views: %v %v", err1, err2)
		}
		if err := B.MatMul(dyi, ia.pool, dpi, true, false, 1, 0); err != nil {
			return fmt.Errorf("average pool backward: %w", err)
		}
	}
	gradOf := func(p *Param) Tensor {
		if p.Trainable {
			return p.Grad
		}
		return nil
	}
	if err := B.Fill(dx, 0); err != nil {
		return err
	}
	xL := rows(ia.xAt(len(v.Layers)), NP)
	if err := ln.LayerNormBackward(dx, gradOf(v.PostW), gradOf(v.PostB), dy, xL, v.PostW.W, rows(ia.meanP, NP), rows(ia.rstdP, NP)); err != nil {
		return fmt.Errorf("post_layernorm backward: %w", err)
	}
	vs := SeqLayout{Starts: ia.vseqs, Dev: rows(ia.vstarts, n+1), MaxLen: P}
	groups := rows(ia.vgroups, NP)
	ap := c.attnParams()
	var txa, tdxa Tensor
	if ia.towerRank > 0 {
		txa, tdxa = rows(ia.txa, NP), rows(ia.tdxa, NP)
	}
	back := func(lin *Linear, x, dy, dx Tensor, acc bool) error {
		return sigLinearBackward(B, lin, x, dy, dx, txa, tdxa, acc)
	}
	for l := len(v.Layers) - 1; l >= 0; l-- {
		L, s := v.Layers[l], ia.set(l)
		x := rows(ia.xAt(l), NP)
		h1, q, k, vv, att := rows(s.h1, NP), rows(s.q, NP), rows(s.k, NP), rows(s.v, NP), rows(s.att, NP)
		x2, h2, f, g := rows(s.x2, NP), rows(s.h2, NP), rows(s.f, NP), rows(s.g, NP)
		m1, r1, m2, r2 := rows(s.mean1, NP), rows(s.rstd1, NP), rows(s.mean2, NP), rows(s.rstd2, NP)
		lse, lerr := B.View(s.lse, 0, c.Heads, NP)
		if e != nil || lerr != nil {
			return fmt.Errorf("views: %v %v", e, lerr)
		}
		// dx holds dL/dx_{l+1}; x_{l+1} = x2 + fc2(gelu(fc1(ln2(x2)))).
		steps := []step{
			{"fc2", func() error { return back(L.FC2, g, dx, dI, false) }},
			{"gelu", func() error { return ge.GELUTanhBackward(dI, dI, f) }},
			{"fc1", func() error { return back(L.FC1, h2, dI, dh, false) }},
			{"layer_norm2", func() error {
				return ln.LayerNormBackward(dx, gradOf(L.LN2W), gradOf(L.LN2B), dh, x2, L.LN2W.W, m2, r2)
			}},
			// dx is dL/dx2; x2 = x + out_proj(attention(ln1(x))).
			{"out_proj", func() error { return back(L.O, att, dx, datt, false) }},
			{"attention", func() error {
				return ga.AttentionGroupsBackward(dq, dk, dv, datt, q, k, vv, att, lse, groups, vs, ap)
			}},
			{"q", func() error { return back(L.Q, h1, dq, dh, false) }},
			{"k", func() error { return back(L.K, h1, dk, dh, true) }},
			{"v", func() error { return back(L.V, h1, dv, dh, true) }},
			{"layer_norm1", func() error {
				return ln.LayerNormBackward(dx, gradOf(L.LN1W), gradOf(L.LN1B), dh, x, L.LN1W.W, m1, r1)
			}},
		}
		for _, st := range steps {
			if err := st.f(); err != nil {
				return fmt.Errorf("gemma3 vision: tower layer %d %s backward: %w", l, st.what, err)
			}
		}
	}
	// dx is dL/d(patch embeddings + positions).
	if v.PatchW.Trainable {
		pg, err := B.View(v.PatchW.Grad, 0, c.Hidden, c.PatchDim())
		if err != nil {
			return err
		}
		if err := B.MatMul(pg, dx, rows(ia.patches, NP), true, false, 1, 1); err != nil {
			return fmt.Errorf("patch embedding grad: %w", err)
		}
	}
	if v.PatchB.Trainable {
		if err := B.BiasBackward(v.PatchB.Grad, dx); err != nil {
			return fmt.Errorf("patch embedding bias grad: %w", err)
		}
	}
	if v.PosEmb.Trainable {
		for i := 0; i < n; i++ {
			dxi, err := rowsView(B, dx, i*P, (i+1)*P)
			if err != nil {
				return err
			}
			if err := B.AddScaled(v.PosEmb.Grad, dxi, 1); err != nil {
				return fmt.Errorf("position embedding grad: %w", err)
			}
		}
	}
	return e
}

// Gemma3VisionHidden returns the tower's output (last_hidden_state, after
// post_layernorm) of the last pass over images, [images, patches, Dv].
func (a *Activations) Gemma3VisionHidden() ([]float32, error) {
	return a.imageBuffer(func(ia *gemma3ImageActs) (Tensor, int) { return ia.y, ia.n * ia.v.Cfg.NumPatches() })
}

// Gemma3ImageFeatures returns the projector's output of the last pass over
// images, [images, mm_tokens_per_image, Dt]: what replaced the image tokens.
func (a *Activations) Gemma3ImageFeatures() ([]float32, error) {
	return a.imageBuffer(func(ia *gemma3ImageActs) (Tensor, int) { return ia.feats, ia.n * ia.v.Cfg.TokensPerImage })
}

func (a *Activations) imageBuffer(pick func(*gemma3ImageActs) (Tensor, int)) ([]float32, error) {
	if a.img == nil || !a.img.featsReady {
		return nil, fmt.Errorf("no pass over images has run")
	}
	t, rows := pick(a.img)
	v, err := rowsView(a.m.B, t, 0, rows)
	if err != nil {
		return nil, err
	}
	out := make([]float32, v.Len())
	return out, a.m.B.Download(v, out)
}

// SetImages gives the next Generate's prompt its images (pixels [n, C, S,
// S], one per run of image tokens in the prompt); the prompt's prefill
// uses them up.
func (g *Generator) SetImages(pixels []float32, n int) error { return g.acts.SetImages(pixels, n) }

// imagePrefillAttention runs layer l's attention for a prefill whose
// prompt holds image tokens: the cache takes k and v as usual, and the
// prompt attends with its image groups (decoding steps after it see the
// cached image tokens causally, as transformers' mask lets them). It
// reports whether it handled the call.
func (a *Activations) imagePrefillAttention(c *kvCache, l int, q, k, v, att Tensor) (bool, error) {
	if a.img == nil || len(a.img.runs) == 0 || c.lanes != nil || c.devPos != nil {
		return false, nil
	}
	if c.pos != 0 {
		return true, fmt.Errorf("generation: image tokens must come in the first chunk of a prompt (the cache holds %d tokens)", c.pos)
	}
	ga, err := a.groupAttention()
	if err != nil {
		return true, err
	}
	B, T, kvd := a.m.B, Rows(k), a.m.Cfg.KVDim()
	for _, pair := range [][2]Tensor{{c.k[l], k}, {c.v[l], v}} {
		dst, err := B.View(pair[0], 0, T, kvd)
		if err != nil {
			return true, err
		}
		if err := B.Copy(dst, pair[1]); err != nil {
			return true, err
		}
	}
	ia := a.img
	H := a.m.Cfg.NumHeads
	if ia.kvLSE == nil || ia.kvLSE.Len() < H*T {
		if ia.kvLSE != nil {
			B.Free(ia.kvLSE)
		}
		t, err := B.Alloc(F32, H*a.Cap)
		if err != nil {
			return true, fmt.Errorf("allocate prefill lse: %w", err)
		}
		ia.kvLSE = t
		ia.owned = append(ia.owned, t)
	}
	lse, err := B.View(ia.kvLSE, 0, H, T)
	if err != nil {
		return true, err
	}
	return true, ga.AttentionGroups(att, lse, q, k, v, a.rows(ia.groups, T), a.seqs, a.attnParams(l))
}

// imagesUsed forgets a prefill's images and image tokens, so the decoding
// steps after it run as text.
func (a *Activations) imagesUsed() {
	if a.img != nil {
		a.img.runs, a.img.n, a.img.patchesHost = nil, 0, nil
	}
}
