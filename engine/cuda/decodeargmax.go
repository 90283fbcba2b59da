package cuda

import (
	"fmt"

	"whet/engine"
)

// The LM head with the greedy argmax folded in (engine.HeadArgmax, taken
// when engine.DecodeArgmaxEnv is 1): kernels/gemv.cu's gemv_bf16_argmax.
// The head's product is gemv_bf16's, row for row, and the chosen id is
// decode.cu's argmax over the logits it stores, so greedy tokens do not
// move; it saves the one-block argmax over the vocabulary (about 56 us a
// token on an H100 at 128,256 logits: docs/bench/profile-decode-1b-2026-12-07.txt)
// and its launch.

var _ engine.HeadArgmax = (*Backend)(nil)

// argmaxScratchBytes is Backend.argmaxScratch: gemv_bf16_argmax's best key
// (8 bytes) and ticket counter (4), then matvec_nf4_split_add_norm's ticket
// counter (4, at normTicketOffset).
const (
	argmaxScratchBytes = 16
	normTicketOffset   = 12
)

// ticketScratch makes Backend.argmaxScratch (zeroed) if it is not there
// yet; the kernels leave it zeroed. It fails while recording, which the
// generator's first, direct step avoids. The caller holds the context.
func (b *Backend) ticketScratch(op string) error {
	if b.argmaxScratch != 0 {
		return nil
	}
	if b.capturing {
		return fmt.Errorf("cuda: %s: scratch: %w", op, errCapturing)
	}
	p, err := b.rawAlloc(argmaxScratchBytes)
	if err != nil {
		return withOp(op+": scratch", err)
	}
	if err := b.drv.call("cuMemsetD32_v2", b.drv.cuMemsetD32, uintptr(p), 0, uintptr(argmaxScratchBytes/4)); err != nil {
		b.rawFree(p, argmaxScratchBytes)
		return withOp(op, err)
	}
	b.argmaxScratch = p
	return nil
}

// MatVecArgmax writes logits [1, V] = h [1, k] @ w^T (w [V, k]) and ids[0]
// = the column of the largest logit, the lowest on ties, in one launch. It
// declines (ok false) what the GEMV kernels do not take: other dtypes, k
// not a multiple of 8, unaligned operands, the GEMV kernels turned off.
func (b *Backend) MatVecArgmax(ids, logits, h, w engine.Tensor) (bool, error) {
	c := b.check("MatVecArgmax")
	it, lt, ht, wt := c.intTensor("ids", ids), c.float("logits", logits), c.float("h", h), c.float("w", w)
	if c.Err != nil {
		return false, c.Err
	}
	V, k := engine.Rows(wt), ht.n
	c.Length("ids", it, 1)
	c.Matrix("h", ht, 1, k)
	c.Matrix("w", wt, V, k)
	c.Matrix("logits", lt, 1, V)
	c.disjoint("logits", lt, "h", ht)
	c.disjoint("logits", lt, "w", wt)
	if c.Err != nil {
		return false, c.Err
	}
	if V == 0 || V > 1<<31-1 {
		c.Failf("%d logits: want 1 to 2^31-1", V)
		return false, c.Err
	}
	exit, err := b.enter()
	if err != nil {
		return false, err
	}
	defer exit()
	if b.gemvDisabled || k%8 != 0 || !gemvOperand(ht) || !gemvOperand(wt) || alignment(lt.ptr()) < lt.dt.Size() {
		return false, nil
	}
	op := fmt.Sprintf("MatVecArgmax %s [1 %d] = bf16 [1 %d] @ bf16 [%d %d]ᵀ", lt.dt, V, k, V, k)
	if err := b.ticketScratch(op); err != nil {
		return false, err
	}
	if err := b.launch(op, "gemv.cu", "gemv_bf16_argmax", dim3{(V + rowsPerBlock - 1) / rowsPerBlock, 1, 1}, block256, 0,
		lt.ptr(), dt(lt), ht.ptr(), wt.ptr(), int64(V), int64(k), it.ptr(), b.argmaxScratch, b.argmaxScratch+8); err != nil {
		return true, err
	}
	bound(it, V)
	return true, nil
}
