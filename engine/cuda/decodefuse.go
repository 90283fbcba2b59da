package cuda

import (
	"fmt"

	"whet/engine"
)

// The fused one-row products of decoding (engine.FusedMatVecs, taken when
// engine.DecodeFuseEnv is 1): kernels/gemv.cu's gemv_bf16_add,
// gemv_bf16_norm_multi and gemv_bf16_swiglu_add. Each gives the bits of
// the unfused ops it replaces (Copy + GEMV with beta 1; RMSNorm + MatVecs;
// SwiGLU + that), so greedy tokens do not move; they take bf16 operands
// only (the GEMV kernels' rule), so float32 decoding never reaches them.

var _ engine.FusedMatVecs = (*Backend)(nil)

// fusedSmemMax bounds the vector a fused GEMV block forms in shared memory
// (2k bytes): the default 48 KiB a block may take without opting in.
const fusedSmemMax = 48 << 10

// gemvOperand reports whether a GEMV kernel takes t as its weight or its
// bf16 input vector: bf16, 16-byte aligned.
func gemvOperand(t *Tensor) bool { return t.dt == engine.BF16 && alignment(t.ptr()) >= 16 }

// MatVecAdd writes y [1, n] = x [1, k] @ w^T + r [1, n] in one launch.
func (b *Backend) MatVecAdd(y, x, w, r engine.Tensor) (bool, error) {
	c := b.check("MatVecAdd")
	yt, xt, wt, rt := c.float("y", y), c.float("x", x), c.float("w", w), c.float("r", r)
	if c.Err != nil {
		return false, c.Err
	}
	n, k := engine.Rows(wt), xt.n
	c.Matrix("x", xt, 1, k)
	c.Matrix("w", wt, n, k)
	c.Matrix("y", yt, 1, n)
	c.Matrix("r", rt, 1, n)
	c.disjoint("y", yt, "x", xt)
	c.disjoint("y", yt, "w", wt)
	if yt != nil && rt != nil && yt.ptr() != rt.ptr() {
		c.disjoint("y", yt, "r", rt)
	}
	if c.Err != nil {
		return false, c.Err
	}
	exit, err := b.enter()
	if err != nil {
		return false, err
	}
	defer exit()
	if b.gemvDisabled || k%8 != 0 || !gemvOperand(xt) || !gemvOperand(wt) || alignment(yt.ptr()) < yt.dt.Size() || alignment(rt.ptr()) < rt.dt.Size() {
		return false, nil
	}
	op := fmt.Sprintf("MatVecAdd %s [1 %d] = bf16 [1 %d] @ bf16 [%d %d]ᵀ + %s", yt.dt, n, k, n, k, rt.dt)
	if what, R, grid, block, ok := rrPlan(op, n, k, rrWarps, 0); ok && rrOn() {
		return true, b.launch(what, "gemv.cu", "gemv_rr_add", grid, block, 0,
			yt.ptr(), dt(yt), xt.ptr(), wt.ptr(), rt.ptr(), dt(rt), int64(n), int64(k), R)
	}
	return true, b.launch(op, "gemv.cu", "gemv_bf16_add", dim3{(n + rowsPerBlock - 1) / rowsPerBlock, 1, 1}, block256, 0,
		yt.ptr(), dt(yt), xt.ptr(), wt.ptr(), rt.ptr(), dt(rt), int64(n), int64(k))
}

// MatVecsNorm writes ys[i] = RMSNorm(x, normW, eps) @ ws[i]^T, the norm
// rounded to h's dtype (bf16) and kept in each block's shared memory, for
// up to three weights in one launch. h and no rstd are written.
func (b *Backend) MatVecsNorm(ys []engine.Tensor, h, x, normW engine.Tensor, eps float32, ws []engine.Tensor) (bool, error) {
	c := b.check("MatVecsNorm")
	ht, xt, nt := c.float("h", h), c.float("x", x), c.float("normW", normW)
	if c.Err != nil {
		return false, c.Err
	}
	if len(ys) != len(ws) || len(ws) == 0 {
		c.Failf("%d outputs for %d weights", len(ys), len(ws))
		return false, c.Err
	}
	k := xt.n
	c.Matrix("x", xt, 1, k)
	c.Matrix("h", ht, 1, k)
	c.Length("normW", nt, k)
	var yts, wts []*Tensor
	for i := range ws {
		wt, yt := c.float(fmt.Sprintf("ws[%d]", i), ws[i]), c.float(fmt.Sprintf("ys[%d]", i), ys[i])
		if c.Err != nil {
			return false, c.Err
		}
		n := engine.Rows(wt)
		c.Matrix(fmt.Sprintf("ws[%d]", i), wt, n, k)
		c.Matrix(fmt.Sprintf("ys[%d]", i), yt, 1, n)
		c.disjoint(fmt.Sprintf("ys[%d]", i), yt, "x", xt)
		c.disjoint(fmt.Sprintf("ys[%d]", i), yt, "normW", nt)
		c.disjoint(fmt.Sprintf("ys[%d]", i), yt, fmt.Sprintf("ws[%d]", i), wt)
		yts, wts = append(yts, yt), append(wts, wt)
	}
	if c.Err != nil {
		return false, c.Err
	}
	exit, err := b.enter()
	if err != nil {
		return false, err
	}
	defer exit()
	// The 16-byte alignment of x, normW and h is rmsnorm_forward's
	// condition for the order of sums the kernel reproduces.
	if b.gemvDisabled || len(ws) > 3 || k%8 != 0 || 2*k > fusedSmemMax || ht.dt != engine.BF16 || alignment(ht.ptr()) < 16 ||
		alignment(xt.ptr()) < 16 || alignment(nt.ptr()) < 16 {
		return false, nil
	}
	var yp, wp [3]uint64
	var np [3]int64
	rows := 0
	for i := range ws {
		yt, wt := yts[i], wts[i]
		if !gemvOperand(wt) || yt.dt != yts[0].dt || alignment(yt.ptr()) < yt.dt.Size() {
			return false, nil
		}
		rows += yt.n
		yp[i], wp[i], np[i] = yt.ptr(), wt.ptr(), int64(yt.n)
	}
	op := fmt.Sprintf("MatVecsNorm of %d weights, %d rows over %d", len(ws), rows, k)
	if what, R, grid, block, ok := rrPlan(op, rows, k, rrWarpsNorm, 2*k); ok && rrOn() {
		return true, b.launch(what, "gemv.cu", "gemv_rr_norm_multi", grid, block, 2*k,
			xt.ptr(), dt(xt), nt.ptr(), dt(nt), eps, int32(rowBlock(k).x), int64(k), R, dt(yts[0]),
			yp[0], wp[0], np[0], yp[1], wp[1], np[1], yp[2], wp[2], np[2])
	}
	return true, b.launch(op, "gemv.cu", "gemv_bf16_norm_multi", dim3{(rows + rowsPerBlock - 1) / rowsPerBlock, 1, 1}, block256, 2*k,
		xt.ptr(), dt(xt), nt.ptr(), dt(nt), eps, int32(rowBlock(k).x), int64(k), dt(yts[0]),
		yp[0], wp[0], np[0], yp[1], wp[1], np[1], yp[2], wp[2], np[2])
}

// MatVecSwiGLUAdd writes y [1, n] = s @ w^T + r with s = silu(g) * u
// rounded to s's dtype (bf16), formed in each block's shared memory; s is
// not written.
func (b *Backend) MatVecSwiGLUAdd(y, s, g, u, w, r engine.Tensor) (bool, error) {
	c := b.check("MatVecSwiGLUAdd")
	yt, st, gt, ut, wt, rt := c.float("y", y), c.float("s", s), c.float("g", g), c.float("u", u), c.float("w", w), c.float("r", r)
	if c.Err != nil {
		return false, c.Err
	}
	n, k := engine.Rows(wt), gt.n
	c.Matrix("g", gt, 1, k)
	c.Matrix("u", ut, 1, k)
	c.Matrix("s", st, 1, k)
	c.Matrix("w", wt, n, k)
	c.Matrix("y", yt, 1, n)
	c.Matrix("r", rt, 1, n)
	for _, in := range []struct {
		name string
		t    *Tensor
	}{{"g", gt}, {"u", ut}, {"w", wt}} {
		c.disjoint("y", yt, in.name, in.t)
	}
	if yt != nil && rt != nil && yt.ptr() != rt.ptr() {
		c.disjoint("y", yt, "r", rt)
	}
	if c.Err != nil {
		return false, c.Err
	}
	exit, err := b.enter()
	if err != nil {
		return false, err
	}
	defer exit()
	if b.gemvDisabled || k%8 != 0 || 2*k > fusedSmemMax || st.dt != engine.BF16 || gt.dt != ut.dt || alignment(gt.ptr()) < 16 ||
		alignment(ut.ptr()) < 16 || !gemvOperand(wt) || alignment(yt.ptr()) < yt.dt.Size() || alignment(rt.ptr()) < rt.dt.Size() {
		return false, nil
	}
	op := fmt.Sprintf("MatVecSwiGLUAdd %s [1 %d] = silu(g)*u [1 %d] @ bf16 [%d %d]ᵀ + %s", yt.dt, n, k, n, k, rt.dt)
	if what, R, grid, block, ok := rrPlan(op, n, k, rrWarpsSwiGLU, 2*k); ok && rrOn() {
		return true, b.launch(what, "gemv.cu", "gemv_rr_swiglu_add", grid, block, 2*k,
			yt.ptr(), dt(yt), gt.ptr(), ut.ptr(), dt(gt), wt.ptr(), rt.ptr(), dt(rt), int64(n), int64(k), R)
	}
	return true, b.launch(op, "gemv.cu", "gemv_bf16_swiglu_add", dim3{(n + rowsPerBlock - 1) / rowsPerBlock, 1, 1}, block256, 2*k,
		yt.ptr(), dt(yt), gt.ptr(), ut.ptr(), dt(gt), wt.ptr(), rt.ptr(), dt(rt), int64(n), int64(k))
}
