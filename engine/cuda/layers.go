package cuda

import (
	"fmt"

	"whet/engine"
	"whet/engine/envswitch"
	"whet/engine/opcheck"
)

// ignoreLabel marks a token that the loss skips, as in PyTorch.
const ignoreLabel = -100

// checkIndices checks every value of an I32 tensor against [0, limit)
// before an op writes anything, as engine/cpu does; allowIgnore also lets
// -100 through (labels). Values the host uploaded are checked from the
// summary kept at upload, with no device round trip; otherwise (or when
// the summary shows a bad value, to name it) the tensor is read back,
// which waits for the device. The caller holds the context. bad formats
// the error for index i and value v.
func (b *Backend) checkIndices(op, what string, t *Tensor, limit int, allowIgnore bool, bad func(i int, v int32) error) error {
	if k := t.summary(); k != nil {
		lo, hi, present := k.min, k.max, k.n > 0
		if allowIgnore {
			lo, hi, present = k.lo, k.hi, k.others
		}
		if !present || (lo >= 0 && int(hi) < limit) {
			return nil
		}
	}
	if b.capturing {
		return fmt.Errorf("cuda: %s: checking %s would read them back: %w", op, what, errCapturing)
	}
	b.indexReads++
	h, err := b.downloadInt32(t)
	if err != nil {
		return withOp(op+": reading "+what, err)
	}
	for i, v := range h {
		if allowIgnore && v == ignoreLabel {
			continue
		}
		if v < 0 || int(v) >= limit {
			return bad(i, v)
		}
	}
	return nil
}

// validIDs checks token ids against the rows of an embedding table.
func (b *Backend) validIDs(op string, ids *Tensor, vocab int) error {
	return b.checkIndices(op, "ids", ids, vocab, false, func(i int, v int32) error {
		return fmt.Errorf("cuda: %s: ids[%d] = %d is outside the table's %d rows", op, i, v, vocab)
	})
}

// Embedding copies row ids[t] of table into row t of out.
func (b *Backend) Embedding(out, table, ids engine.Tensor) error {
	c := b.check("Embedding")
	o := c.float("out", out)
	tb := c.float("table", table)
	id := c.intTensor("ids", ids)
	if c.Err != nil {
		return c.Err
	}
	dim := engine.Cols(tb)
	c.Matrix("out", o, id.n, dim)
	if c.Err != nil {
		return c.Err
	}
	exit, err := b.enter()
	if err != nil {
		return err
	}
	defer exit()
	vocab := engine.Rows(tb)
	if err := b.validIDs("Embedding", id, vocab); err != nil {
		return err
	}
	if o.n == 0 {
		return nil
	}
	return b.launch(fmt.Sprintf("Embedding %s %v from %s %v", o.dt, o.shape, tb.dt, tb.shape), "embedding.cu", "embedding_forward",
		b.gridFor(o.n), block256, 0, o.ptr(), dt(o), tb.ptr(), dt(tb), id.ptr(), int64(id.n), int64(dim), int64(vocab))
}

// EmbeddingBackward adds row t of dOut into row ids[t] of dTable.
func (b *Backend) EmbeddingBackward(dTable, dOut, ids engine.Tensor) error {
	c := b.check("EmbeddingBackward")
	dtb := c.float("dTable", dTable)
	do := c.float("dOut", dOut)
	id := c.intTensor("ids", ids)
	if c.Err != nil {
		return c.Err
	}
	dim := engine.Cols(dtb)
	c.Matrix("dOut", do, id.n, dim)
	if c.Err != nil {
		return c.Err
	}
	exit, err := b.enter()
	if err != nil {
		return err
	}
	defer exit()
	vocab := engine.Rows(dtb)
	if err := b.validIDs("EmbeddingBackward", id, vocab); err != nil {
		return err
	}
	if do.n == 0 {
		return nil
	}
	return b.launch(fmt.Sprintf("EmbeddingBackward %s %v into %s %v", do.dt, do.shape, dtb.dt, dtb.shape), "embedding.cu", "embedding_backward",
		b.gridFor(do.n), block256, 0, dtb.ptr(), dt(dtb), do.ptr(), dt(do), id.ptr(), int64(id.n), int64(dim), int64(vocab))
}

// rowBlock is the block size for one-row-per-block kernels: enough
// threads to cover the row, in whole warps, at most 1024.
func rowBlock(cols int) dim3 {
	if cols%8 == 0 {
		cols /= 8 // the kernels' 16-byte path: 8 elements per thread step
	}
	t := 32
	for t < cols && t < 1024 {
		t *= 2
	}
	return dim3{t, 1, 1}
}

// RMSNorm writes out = x*rstd*weight row by row and saves rstd (f32, one
// per row) for the backward.
func (b *Backend) RMSNorm(out, rstd, x, weight engine.Tensor, eps float32) error {
	c := b.check("RMSNorm")
	o := c.float("out", out)
	rs := c.f32("rstd", rstd)
	xt := c.float("x", x)
	w := c.float("weight", weight)
	if c.Err != nil {
		return c.Err
	}
	rows, dim, ok := c.RMSNorm(o, rs, xt, w)
	if !ok {
		return c.Err
	}
	if rows == 0 || dim == 0 {
		return nil
	}
	exit, err := b.enter()
	if err != nil {
		return err
	}
	defer exit()
	return b.launch(fmt.Sprintf("RMSNorm %s %v", xt.dt, xt.shape), "rmsnorm.cu", "rmsnorm_forward", dim3{rows, 1, 1}, rowBlock(dim), 0,
		o.ptr(), dt(o), rs.ptr(), xt.ptr(), dt(xt), w.ptr(), dt(w), int64(dim), eps)
}

// RMSNormBackward adds the input gradient into dx and, unless dWeight is
// nil, the weight gradient into dWeight.
func (b *Backend) RMSNormBackward(dx, dWeight, dOut, x, weight, rstd engine.Tensor) error {
	c := b.check("RMSNormBackward")
	dxt := c.float("dx", dx)
	dwt := c.optFloat("dWeight", dWeight)
	do := c.float("dOut", dOut)
	xt := c.float("x", x)
	w := c.float("weight", weight)
	rs := c.f32("rstd", rstd)
	if c.Err != nil {
		return c.Err
	}
	rows, dim, ok := opcheck.RMSNormGrads(&c.Checker, dxt, dwt, do, xt, w, rs)
	if !ok {
		return c.Err
	}
	if rows == 0 || dim == 0 {
		return nil
	}
	exit, err := b.enter()
	if err != nil {
		return err
	}
	defer exit()
	op := fmt.Sprintf("RMSNormBackward %s %v", xt.dt, xt.shape)
	if dwt != nil && b.rmsnormBwdV2 == "2" {
		if done, err := b.rmsnormBackwardFused(op, dxt, dwt, do, xt, w, rs, rows, dim); done || err != nil {
			return err
		}
	}
	// The weight gradient reads dOut and x only, so it may run before dx is
	// touched even when dx aliases dOut.
	if dwt != nil {
		if err := b.rmsnormWeightGrad(op, dwt, do, xt, rs, rows, dim); err != nil {
			return err
		}
	}
	return b.launch(op, "rmsnorm.cu", "rmsnorm_backward_input", dim3{rows, 1, 1}, rowBlock(dim), 0,
		dxt.ptr(), dt(dxt), do.ptr(), dt(do), xt.ptr(), dt(xt), w.ptr(), dt(w), rs.ptr(), int64(dim))
}

// RMSNormBwdV2Env=1 sums RMSNorm's weight gradient in two stages
// (kernels/rmsnorm.cu rmsnorm_backward_weight_partial and _final: per-tile
// f32 partials over chunks of rows, then a column sum over the chunks)
// instead of rmsnorm_backward_weight's one block per 32 columns walking
// every row (223 µs a call at 8192×2048 on an H100, 2026-12-07).
// RMSNormBwdV2Env=2 takes the partials from the input gradient's pass
// instead (rmsnorm_backward_fused: dOut and x read once for both), where
// the rows allow 16-byte accesses and dim ≤ 8192, else as =1. All are
// deterministic. =2 is the default since tools/gpu/train-speed (H200,
// 2026-12-07 18:05 UTC: the conformance cases at 8192×2048 and the training
// curves passed with it; RMSNormBackward 274 → 76 µs at 8192×2048 in bf16);
// =0 keeps the one-stage kernel.
const RMSNormBwdV2Env = "WHET_RMSNORM_BWD_V2"

// rmsnormBwdV2Mode reads RMSNormBwdV2Env (once per backend): "2" unless set.
func rmsnormBwdV2Mode() string {
	return envswitch.Choice(RMSNormBwdV2Env)
}

// rmsnormBackwardFused is RMSNormBackward through rmsnorm_backward_fused
// and rmsnorm_backward_weight_final; done is false (nothing launched)
// where the shapes or alignments do not allow it. The caller holds the
// backend (enter).
func (b *Backend) rmsnormBackwardFused(op string, dxt, dwt, do, xt, w, rs *Tensor, rows, dim int) (done bool, err error) {
	if dim%8 != 0 || dim/8 > 1024 {
		return false, nil
	}
	for _, t := range []*Tensor{dxt, do, xt, w} {
		if t.ptr()%16 != 0 {
			return false, nil
		}
	}
	blocks, blockRows := rmsnormFusedBlocks(rows, b.smCount)
	bytes := int64(4 * blocks * dim)
	if b.capturing && bytes > b.opScratchBytes {
		return false, nil
	}
	part, err := b.scratchFor(op, bytes)
	if err != nil {
		return true, err
	}
	if err := b.launch(op, "rmsnorm.cu", "rmsnorm_backward_fused", dim3{blocks, 1, 1}, rowBlock(dim), 0,
		dxt.ptr(), dt(dxt), part, do.ptr(), dt(do), xt.ptr(), dt(xt), w.ptr(), dt(w), rs.ptr(),
		int64(rows), int64(dim), int64(blockRows)); err != nil {
		return true, err
	}
	return true, b.launch(op, "rmsnorm.cu", "rmsnorm_backward_weight_final", dim3{(dim + 31) / 32, 1, 1}, dim3{32, 32, 1}, 0,
		dwt.ptr(), dt(dwt), part, int64(blocks), int64(dim))
}

// rmsnormFusedBlocks splits rows for rmsnorm_backward_fused: about 8
// blocks an SM, each taking blockRows rows in turn. It returns the number
// of blocks and the rows of each (the last may have fewer).
func rmsnormFusedBlocks(rows, sms int) (blocks, blockRows int) {
	blockRows = max(1, (rows+8*max(sms, 1)-1)/(8*max(sms, 1)))
	return (rows + blockRows - 1) / blockRows, blockRows
}

// rmsnormWeightGrad adds the column sums of dOut*x*rstd into dWeight. The
// caller holds the backend (enter).
func (b *Backend) rmsnormWeightGrad(op string, dwt, do, xt, rs *Tensor, rows, dim int) error {
	if b.rmsnormBwdV2 == "1" || b.rmsnormBwdV2 == "2" {
		chunks, chunkRows := rmsnormWeightChunks(rows, dim, b.smCount)
		bytes := int64(4 * chunks * dim)
		// Under graph capture the scratch cannot grow: the one-stage kernel
		// then serves.
		if !b.capturing || bytes <= b.opScratchBytes {
			part, err := b.scratchFor(op, bytes)
			if err != nil {
				return err
			}
			if err := b.launch(op, "rmsnorm.cu", "rmsnorm_backward_weight_partial", dim3{(dim + 255) / 256, chunks, 1}, dim3{32, 8, 1}, 0,
				part, do.ptr(), dt(do), xt.ptr(), dt(xt), rs.ptr(), int64(rows), int64(dim), int64(chunkRows)); err != nil {
				return err
			}
			return b.launch(op, "rmsnorm.cu", "rmsnorm_backward_weight_final", dim3{(dim + 31) / 32, 1, 1}, dim3{32, 8, 1}, 0,
				dwt.ptr(), dt(dwt), part, int64(chunks), int64(dim))
		}
	}
	return b.launch(op, "rmsnorm.cu", "rmsnorm_backward_weight", dim3{(dim + 31) / 32, 1, 1}, dim3{32, 8, 1}, 0,
		dwt.ptr(), dt(dwt), do.ptr(), dt(do), xt.ptr(), dt(xt), rs.ptr(), int64(rows), int64(dim))
}

// rmsnormWeightChunks splits rows for rmsnorm_backward_weight_partial:
// chunks of at least 64 rows (8 per thread row of the block), as many as
// keep about 8 blocks an SM busy with ceil(dim/256) tiles across. It
// returns the number of chunks and the rows of each (the last may have
// fewer).
func rmsnormWeightChunks(rows, dim, sms int) (chunks, chunkRows int) {
	tiles := (dim + 255) / 256
	want := max(1, 8*max(sms, 1)/tiles)
	chunks = min((rows+63)/64, want)
	chunks = max(chunks, 1)
	chunkRows = (rows + chunks - 1) / chunks
	return (rows + chunkRows - 1) / chunkRows, chunkRows
}

// RoPE rotates x in place (half-split layout); inverse turns back, which
// is the backward.
func (b *Backend) RoPE(x, positions, cos, sin engine.Tensor, nHeads, headDim int, inverse bool) error {
	return b.rope("RoPE", x, positions, cos, sin, nHeads, headDim, headDim, inverse)
}

// RoPEPartial (engine.PartialRoPE) is RoPE over the first rot =
// 2*Cols(cos) dimensions of each head; the others pass through.
func (b *Backend) RoPEPartial(x, positions, cos, sin engine.Tensor, nHeads, headDim int, inverse bool) error {
	return b.rope("RoPEPartial", x, positions, cos, sin, nHeads, headDim, 2*engine.Cols(cos), inverse)
}

// rope checks and launches kernels/rope.cu over rot dimensions of each head.
func (b *Backend) rope(op string, x, positions, cos, sin engine.Tensor, nHeads, headDim, rot int, inverse bool) error {
	c := b.check(op)
	xt := c.float("x", x)
	pt := c.intTensor("positions", positions)
	ct := c.float("cos", cos)
	st := c.float("sin", sin)
	if c.Err != nil {
		return c.Err
	}
	rows, maxPos, ok := c.RoPE(xt, pt, ct, st, nHeads, headDim, rot)
	if !ok {
		return c.Err
	}
	half := rot / 2
	exit, err := b.enter()
	if err != nil {
		return err
	}
	defer exit()
	if err := b.checkIndices(op, "positions", pt, maxPos, false, func(i int, v int32) error {
		return fmt.Errorf("cuda: %s: positions[%d] = %d is outside the %d rows of the cos/sin tables", op, i, v, maxPos)
	}); err != nil {
		return err
	}
	n := rows * nHeads * half
	if n == 0 {
		return nil
	}
	sign := float32(1)
	if inverse {
		sign = -1
	}
	return b.launch(fmt.Sprintf("%s %s %v heads %d dim %d rotary %d", op, xt.dt, xt.shape, nHeads, headDim, rot), "rope.cu", "rope", b.gridFor(n), block256, 0,
		xt.ptr(), dt(xt), pt.ptr(), ct.ptr(), dt(ct), st.ptr(), dt(st), int64(rows), int32(nHeads), int32(headDim), int32(rot), int64(maxPos), sign)
}

// SoftmaxCrossEntropy writes per-row losses and overwrites logits with
// gradScale*(softmax - onehot); rows labelled -100 get 0 and 0. Labels are
// checked before anything is written.
func (b *Backend) SoftmaxCrossEntropy(logits, labels, losses engine.Tensor, gradScale float32) error {
	c := b.check("SoftmaxCrossEntropy")
	lg := c.float("logits", logits)
	return b.crossEntropy(&c, lg, lg, labels, losses, gradScale, 0)
}

// SoftmaxCrossEntropyInto (engine.CrossEntropyInto) is SoftmaxCrossEntropy
// with the gradient written to grad, in grad's dtype, and logits kept.
func (b *Backend) SoftmaxCrossEntropyInto(grad, logits, labels, losses engine.Tensor, gradScale float32) error {
	c := b.check("SoftmaxCrossEntropyInto")
	gt := c.float("grad", grad)
	lg := c.float("logits", logits)
	if c.Err == nil {
		c.Matrix("grad", gt, engine.Rows(lg), engine.Cols(lg))
		c.disjoint("grad", gt, "logits", lg)
	}
	return b.crossEntropy(&c, gt, lg, labels, losses, gradScale, 0)
}

// SoftmaxCrossEntropyCapped (engine.CappedCrossEntropy) is the
// cross-entropy of the soft-capped logits capValue*tanh(x/capValue) with
// the gradient taken with respect to the raw logits x, written to grad
// (the logits themselves, or a separate tensor of any float dtype, the
// logits then left as they were): the cap, the loss and the cap's
// backward in one kernel, with no capped copy of the logits.
func (b *Backend) SoftmaxCrossEntropyCapped(grad, logits, labels, losses engine.Tensor, gradScale, capValue float32) error {
	return b.softmaxCrossEntropyCapped(grad, logits, labels, losses, gradScale, capValue)
}

// FusedSoftCap (engine.CappedCrossEntropy) says whether the decoder takes
// the fused op: only when WHET_FUSED_SOFTCAP_CE=1 (engine.FusedSoftCapOn),
// until softmax_cross_entropy_capped has run on a GPU; otherwise Gemma 2
// trains on SoftCap, the plain kernel and SoftCapBackward, as before.
func (b *Backend) FusedSoftCap() bool { return engine.FusedSoftCapOn(false) }

func (b *Backend) softmaxCrossEntropyCapped(grad, logits, labels, losses engine.Tensor, gradScale, capValue float32) error {
	c := b.check("SoftmaxCrossEntropyCapped")
	gt := c.float("grad", grad)
	lg := c.float("logits", logits)
	if c.Err == nil && !(capValue > 0) {
		c.Failf("cap %v must be positive", capValue)
	}
	if c.Err == nil {
		c.Matrix("grad", gt, engine.Rows(lg), engine.Cols(lg))
		if gt != lg {
			c.disjoint("grad", gt, "logits", lg)
		}
	}
	return b.crossEntropy(&c, gt, lg, labels, losses, gradScale, capValue)
}

// crossEntropy checks labels and losses and launches the kernel, which
// writes the gradient to gt (lg itself for the in-place op), soft-capping
// the logits on the fly when capValue > 0.
func (b *Backend) crossEntropy(c *checker, gt, lg *Tensor, labels, losses engine.Tensor, gradScale, capValue float32) error {
	lb := c.intTensor("labels", labels)
	ls := c.f32("losses", losses)
	if c.Err != nil {
		return c.Err
	}
	n, vocab, _ := c.CrossEntropy(lg, lb, ls)
	c.disjoint("losses", ls, "logits", lg)
	c.disjoint("losses", ls, "grad", gt)
	if c.Err != nil {
		return c.Err
	}
	exit, err := b.enter()
	if err != nil {
		return err
	}
	defer exit()
	if err := b.checkIndices(c.Op, "labels", lb, vocab, true, func(i int, y int32) error {
		return c.BadLabel(i, y, vocab, lg, ignoreLabel)
	}); err != nil {
		return err
	}
	if n == 0 {
		return nil
	}
	if capValue > 0 {
		return b.launch(fmt.Sprintf("%s %s %v into %s cap %g", c.Op, lg.dt, lg.shape, gt.dt, capValue), "crossentropy.cu", "softmax_cross_entropy_capped",
			dim3{n, 1, 1}, dim3{512, 1, 1}, 0, gt.ptr(), dt(gt), lg.ptr(), dt(lg), lb.ptr(), ls.ptr(), int64(vocab), gradScale, capValue)
	}
	return b.launch(fmt.Sprintf("%s %s %v into %s", c.Op, lg.dt, lg.shape, gt.dt), "crossentropy.cu", "softmax_cross_entropy",
		dim3{n, 1, 1}, dim3{512, 1, 1}, 0, gt.ptr(), dt(gt), lg.ptr(), dt(lg), lb.ptr(), ls.ptr(), int64(vocab), gradScale)
}
