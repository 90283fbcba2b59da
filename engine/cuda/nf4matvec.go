package cuda

import (
	"fmt"

	"whet/engine"
	"whet/engine/envswitch"
)

// NF4MatVecEnv picks the NF4 mat-vec kernel of decoding. By default (unset,
// or "v2") MatVecNF4 takes kernels/nf4.cu's matvec_nf4_split (a block of
// 256 threads over nf4V2Rows rows, k split among all its threads) and
// MatVecsNF4 (engine/decoder.go's q/k/v and gate/up) takes up to three NF4
// weights sharing x in one launch; "v1" keeps matvec_nf4 (a warp per row)
// and declines MatVecsNF4; "v2r8" takes matvec_nf4_split_wide
// (nf4V2RowsWide rows a block). The split kernel became the default after
// tools/gpu/nf4-matvec passed on an H100 (2026-12-07: TestNF4MatVecV2,
// TestGenerateNF4V2; 1.6-2.0x matvec_nf4's GB/s at Llama-3.1-8B's shapes,
// v2r8 between the two; docs/performance.md). It is read at each call, so
// a test can compare the kernels on one backend; a recording keeps the
// kernel it was made with.
const NF4MatVecEnv = "WHET_NF4_MATVEC"

// nf4V2 reports whether NF4MatVecEnv leaves matvec_nf4_split (or _r8) on:
// anything but "v1".
func nf4V2() bool { return envswitch.Choice(NF4MatVecEnv) != "v1" }

func nf4V2Wide() bool { return envswitch.Choice(NF4MatVecEnv) == "v2r8" }

// nf4V2Rows and nf4V2RowsWide are the rows per block of matvec_nf4_split and
// matvec_nf4_split_wide (NF4V2_ROWS and NF4V2_ROWS_WIDE in kernels/nf4.cu).
const (
	nf4V2Rows     = 4
	nf4V2RowsWide = 8
)

// nf4V2Grid is the grid for rows rows in all at perBlock rows a block,
// the last block partly empty.
func nf4V2Grid(rows, perBlock int) dim3 { return dim3{(rows + perBlock - 1) / perBlock, 1, 1} }

var _ engine.NF4MatVecs = (*Backend)(nil)

// NF4MatVecsOn reports whether MatVecsNF4 takes shared products now
// (NF4MatVecEnv is "v2" or "v2r8"; engine.NF4MatVecs).
func (b *Backend) NF4MatVecsOn() bool { return nf4V2() }

// nf4Operand is one NF4 weight of a mat-vec: its output, codes and scales.
type nf4Operand struct {
	y, packed, absmax *Tensor
}

// checkNF4Operands checks ys[i] [1, n_i] = x [1, k] @ W_i^T for the NF4
// weights (packed, absmax): matching counts, k a multiple of 8 (at most
// 2^30), every output disjoint from the inputs and the other outputs and
// of one dtype (the kernel takes one).
func checkNF4Operands(c *checker, ys []engine.Tensor, x engine.Tensor, packed, absmax []engine.Tensor) (*Tensor, []nf4Operand) {
	xt := c.float("x", x)
	if c.Err != nil {
		return nil, nil
	}
	if len(ys) == 0 || len(ys) != len(packed) || len(ys) != len(absmax) {
		c.Failf("%d outputs, %d packed and %d absmax tensors: want as many of each, at least one", len(ys), len(packed), len(absmax))
		return nil, nil
	}
	k := xt.n
	c.Matrix("x", xt, 1, k)
	if c.Err == nil && k > 1<<30 {
		c.Failf("x has %d columns: the kernels take at most 2^30", k)
	}
	var ops []nf4Operand
	for i := range ys {
		yn, pn, an := fmt.Sprintf("ys[%d]", i), fmt.Sprintf("packed[%d]", i), fmt.Sprintf("absmax[%d]", i)
		yt, pt, at := c.float(yn, ys[i]), c.intTensor(pn, packed[i]), c.f32(an, absmax[i])
		if c.Err != nil {
			return nil, nil
		}
		n := yt.n
		c.Matrix(yn, yt, 1, n)
		if c.Err != nil {
			return nil, nil
		}
		if k%8 != 0 || pt.n*8 != n*k || at.n*nf4Block != n*k {
			c.Failf("W%d [%d %d] needs in a multiple of 8, %d packed words and %d absmax values, got %d and %d", i, n, k, n*k/8, n*k/nf4Block, pt.n, at.n)
			return nil, nil
		}
		if len(ops) > 0 && yt.dt != ops[0].y.dt {
			c.Failf("%s is %s and ys[0] %s: want one dtype", yn, yt.dt, ops[0].y.dt)
			return nil, nil
		}
		c.disjoint(yn, yt, "x", xt)
		c.disjoint(yn, yt, pn, pt)
		c.disjoint(yn, yt, an, at)
		for j := range ops {
			c.disjoint(yn, yt, fmt.Sprintf("ys[%d]", j), ops[j].y)
		}
		ops = append(ops, nf4Operand{yt, pt, at})
	}
	return xt, ops
}

// launchNF4V2 launches matvec_nf4_split (or _r8) over ops (at most three,
// the empty ones left out so that the first the kernel sees has rows).
// The caller holds the context.
func (b *Backend) launchNF4V2(op string, xt *Tensor, ops []nf4Operand, accumulate bool) error {
	var live []nf4Operand
	for _, o := range ops {
		if o.y.n > 0 {
			live = append(live, o)
		}
	}
	if len(live) == 0 {
		return nil
	}
	if len(live) > 3 {
		return fmt.Errorf("cuda: %s: %d weights in one launch, the kernel takes at most 3", op, len(live))
	}
	var y, p, a [3]uint64
	var n [3]int64
	rows := 0
	for i, o := range live {
		y[i], p[i], a[i], n[i] = o.y.ptr(), o.packed.ptr(), o.absmax.ptr(), int64(o.y.n)
		rows += o.y.n
	}
	acc := int32(0)
	if accumulate {
		acc = 1
	}
	if nf4V2Wide() {
		return b.launch(op, "nf4.cu", "matvec_nf4_split_wide", nf4V2Grid(rows, nf4V2RowsWide), block256, 0,
			xt.ptr(), dt(xt), int64(xt.n), dt(live[0].y), acc,
			y[0], p[0], a[0], n[0], y[1], p[1], a[1], n[1], y[2], p[2], a[2], n[2])
	}
	return b.launch(op, "nf4.cu", "matvec_nf4_split", nf4V2Grid(rows, nf4V2Rows), block256, 0,
		xt.ptr(), dt(xt), int64(xt.n), dt(live[0].y), acc,
		y[0], p[0], a[0], n[0], y[1], p[1], a[1], n[1], y[2], p[2], a[2], n[2])
}

// MatVecsNF4 multiplies the one row x by up to three NF4 weights that
// share it (q, k, v; gate, up) in one launch of matvec_nf4_split:
// ys[i] [1, n_i] = x [1, k] @ W_i^T (+ ys[i] when accumulate), W_i held as
// packed[i] and absmax[i] (as MatVecNF4 takes them). ok is false, with
// nothing done, unless NF4MatVecEnv is "v2" (or "v2r8") and there are at
// most three weights; operands that are wrong are an error.
func (b *Backend) MatVecsNF4(ys []engine.Tensor, x engine.Tensor, packed, absmax []engine.Tensor, accumulate bool) (bool, error) {
	c := b.check("MatVecsNF4")
	xt, ops := checkNF4Operands(&c, ys, x, packed, absmax)
	if c.Err != nil {
		return false, c.Err
	}
	if !nf4V2() || len(ops) > 3 {
		return false, nil
	}
	exit, err := b.enter()
	if err != nil {
		return false, err
	}
	defer exit()
	rows := 0
	for _, o := range ops {
		rows += o.y.n
	}
	op := fmt.Sprintf("MatVecsNF4 of %d weights, %d rows over %d (%s)", len(ops), rows, xt.n, xt.dt)
	return true, b.launchNF4V2(op, xt, ops, accumulate)
}

var _ engine.FusedNF4MatVecs = (*Backend)(nil)

// MatVecNF4Add writes y [1, n] = x [1, k] @ W^T + r [1, n] (W in NF4 as
// packed, absmax) in one launch of matvec_nf4_split_add: the rows of the
// split kernel with the residual added in place of Copy(y, r) and an
// accumulating product (engine.FusedNF4MatVecs). It declines (ok false)
// unless the split kernel is the one in use (NF4MatVecEnv unset or v2) and
// r has y's dtype.
func (b *Backend) MatVecNF4Add(y, x, packed, absmax, r engine.Tensor) (bool, error) {
	c := b.check("MatVecNF4Add")
	xt, ops := checkNF4Operands(&c, []engine.Tensor{y}, x, []engine.Tensor{packed}, []engine.Tensor{absmax})
	if c.Err != nil {
		return false, c.Err
	}
	rt := c.float("r", r)
	if c.Err != nil {
		return false, c.Err
	}
	o := ops[0]
	n, k := o.y.n, xt.n
	c.Matrix("r", rt, 1, n)
	if o.y.ptr() != rt.ptr() {
		c.disjoint("y", o.y, "r", rt)
	}
	if c.Err != nil {
		return false, c.Err
	}
	if !nf4V2() || nf4V2Wide() || rt.dt != o.y.dt || n == 0 {
		return false, nil
	}
	exit, err := b.enter()
	if err != nil {
		return false, err
	}
	defer exit()
	op := fmt.Sprintf("MatVecNF4Add %s [1 %d] = %s [1 %d] @ nf4 [%d %d]ᵀ + %s", o.y.dt, n, xt.dt, k, n, k, rt.dt)
	return true, b.launch(op, "nf4.cu", "matvec_nf4_split_add", nf4V2Grid(n, nf4V2Rows), block256, 0,
		xt.ptr(), dt(xt), int64(k), o.y.ptr(), dt(o.y), o.packed.ptr(), o.absmax.ptr(), int64(n), rt.ptr(), dt(rt))
}

// MatVecsNF4SwiGLU writes s [1, n] = silu(g) * u with g = x @ Wg^T and
// u = x @ Wu^T (both NF4 [n, k]) rounded to g's dtype, in one launch of
// matvec_nf4_split_swiglu (engine.FusedNF4MatVecs): g and u are not
// written. It declines (ok false) unless the split kernel is the one in
// use, g and u are one float dtype and s is bf16 or float32.
func (b *Backend) MatVecsNF4SwiGLU(s, g, u, x, packedG, absmaxG, packedU, absmaxU engine.Tensor) (bool, error) {
	c := b.check("MatVecsNF4SwiGLU")
	xt, ops := checkNF4Operands(&c, []engine.Tensor{g, u}, x, []engine.Tensor{packedG, packedU}, []engine.Tensor{absmaxG, absmaxU})
	if c.Err != nil {
		return false, c.Err
	}
	st := c.float("s", s)
	if c.Err != nil {
		return false, c.Err
	}
	n, k := ops[0].y.n, xt.n
	if ops[1].y.n != n {
		c.Failf("gate has %d rows and up %d: want as many", n, ops[1].y.n)
		return false, c.Err
	}
	c.Matrix("s", st, 1, n)
	c.disjoint("s", st, "x", xt)
	if c.Err != nil {
		return false, c.Err
	}
	if !nf4V2() || nf4V2Wide() || n == 0 {
		return false, nil
	}
	exit, err := b.enter()
	if err != nil {
		return false, err
	}
	defer exit()
	op := fmt.Sprintf("MatVecsNF4SwiGLU %s [1 %d] = silu(%s) * %s of %s [1 %d] @ nf4 [%d %d]ᵀ", st.dt, n, ops[0].y.dt, ops[1].y.dt, xt.dt, k, n, k)
	return true, b.launch(op, "nf4.cu", "matvec_nf4_split_swiglu", dim3{(n + 1) / 2, 1, 1}, block256, 0,
		xt.ptr(), dt(xt), int64(k), st.ptr(), dt(st), dt(ops[0].y),
		ops[0].packed.ptr(), ops[0].absmax.ptr(), ops[1].packed.ptr(), ops[1].absmax.ptr(), int64(n))
}

// MatVecNF4AddNorm is MatVecNF4Add followed by RMSNorm(h, rstd, y, normW,
// eps) (rstd not written), in one launch of matvec_nf4_split_add_norm: the
// last block to finish forms h with rmsnorm_forward's bits
// (engine.FusedNF4MatVecs). It declines (ok false) where MatVecNF4Add does
// and unless y's width is a multiple of 8 with y, h and normW 16-byte
// aligned (rmsnorm_forward's 16-byte path).
func (b *Backend) MatVecNF4AddNorm(y, x, packed, absmax, r, h, normW engine.Tensor, eps float32) (bool, error) {
	c := b.check("MatVecNF4AddNorm")
	xt, ops := checkNF4Operands(&c, []engine.Tensor{y}, x, []engine.Tensor{packed}, []engine.Tensor{absmax})
	if c.Err != nil {
		return false, c.Err
	}
	rt, ht, nt := c.float("r", r), c.float("h", h), c.float("normW", normW)
	if c.Err != nil {
		return false, c.Err
	}
	o := ops[0]
	n, k := o.y.n, xt.n
	c.Matrix("r", rt, 1, n)
	c.Matrix("h", ht, 1, n)
	c.Length("normW", nt, n)
	if o.y.ptr() != rt.ptr() {
		c.disjoint("y", o.y, "r", rt)
	}
	c.disjoint("h", ht, "y", o.y)
	c.disjoint("h", ht, "x", xt)
	c.disjoint("h", ht, "r", rt)
	if c.Err != nil {
		return false, c.Err
	}
	if !nf4V2() || nf4V2Wide() || rt.dt != o.y.dt || n == 0 || n%8 != 0 || alignment(o.y.ptr()) < 16 || alignment(ht.ptr()) < 16 ||
		alignment(nt.ptr()) < 16 {
		return false, nil
	}
	exit, err := b.enter()
	if err != nil {
		return false, err
	}
	defer exit()
	op := fmt.Sprintf("MatVecNF4AddNorm %s [1 %d] = %s [1 %d] @ nf4 [%d %d]ᵀ + %s, then its RMSNorm into %s", o.y.dt, n, xt.dt, k, n, k, rt.dt, ht.dt)
	if err := b.ticketScratch(op); err != nil {
		return false, err
	}
	return true, b.launch(op, "nf4.cu", "matvec_nf4_split_add_norm", nf4V2Grid(n, nf4V2Rows), block256, 0,
		xt.ptr(), dt(xt), int64(k), o.y.ptr(), dt(o.y), o.packed.ptr(), o.absmax.ptr(), int64(n), rt.ptr(), dt(rt),
		ht.ptr(), dt(ht), nt.ptr(), dt(nt), eps, int32(rowBlock(n).x), b.argmaxScratch+normTicketOffset)
}
