package cuda

import (
	"fmt"

	"whet/engine"
	"whet/engine/opcheck"
)

// Gemma 3's vision ops (engine/siglip_ops.go): LayerNorm with a bias
// (kernels/layernorm.cu), the plain GELU-tanh (kernels/gelu_tanh.cu) and
// attention with bidirectional image groups (kernels/group_attention.cu,
// a plain per-row implementation, not the tiled flash kernels).
var (
	_ engine.LayerNormer    = (*Backend)(nil)
	_ engine.GELUTanhAct    = (*Backend)(nil)
	_ engine.GroupAttention = (*Backend)(nil)
)

// LayerNorm writes out = (x-mean)*rstd*weight + bias row by row and saves
// mean and rstd (f32, one per row).
func (b *Backend) LayerNorm(out, mean, rstd, x, weight, bias engine.Tensor, eps float32) error {
	c := b.check("LayerNorm")
	o := c.float("out", out)
	mt := c.f32("mean", mean)
	rs := c.f32("rstd", rstd)
	xt := c.float("x", x)
	w := c.float("weight", weight)
	bt := c.float("bias", bias)
	if c.Err != nil {
		return c.Err
	}
	rows, dim, ok := c.LayerNorm(o, mt, rs, xt, w, bt, eps)
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
	return b.launch(fmt.Sprintf("LayerNorm %s %v", xt.dt, xt.shape), "layernorm.cu", "layernorm_forward", dim3{rows, 1, 1}, rowBlock(dim), 0,
		o.ptr(), dt(o), mt.ptr(), rs.ptr(), xt.ptr(), dt(xt), w.ptr(), dt(w), bt.ptr(), dt(bt), int64(dim), eps)
}

// LayerNormBackward adds the input gradient into dx and the parameter
// gradients into dWeight and dBias; each may be nil.
func (b *Backend) LayerNormBackward(dx, dWeight, dBias, dOut, x, weight, mean, rstd engine.Tensor) error {
	c := b.check("LayerNormBackward")
	dxt := c.optFloat("dx", dx)
	dwt := c.optFloat("dWeight", dWeight)
	dbt := c.optFloat("dBias", dBias)
	do := c.float("dOut", dOut)
	xt := c.float("x", x)
	w := c.float("weight", weight)
	mt := c.f32("mean", mean)
	rs := c.f32("rstd", rstd)
	if c.Err != nil {
		return c.Err
	}
	rows, dim, ok := opcheck.LayerNormGrads(&c.Checker, dxt, dwt, dbt, do, xt, w, mt, rs)
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
	op := fmt.Sprintf("LayerNormBackward %s %v", xt.dt, xt.shape)
	// The parameter gradients read dOut and x only: they run before dx is
	// touched, even when dx aliases dOut.
	if dwt != nil || dbt != nil {
		var dwp, dbp uint64
		var dwd, dbd int32
		if dwt != nil {
			dwp, dwd = dwt.ptr(), dt(dwt)
		}
		if dbt != nil {
			dbp, dbd = dbt.ptr(), dt(dbt)
		}
		if err := b.launch(op, "layernorm.cu", "layernorm_backward_params", dim3{(dim + 31) / 32, 1, 1}, dim3{32, 8, 1}, 0,
			dwp, dwd, dbp, dbd, do.ptr(), dt(do), xt.ptr(), dt(xt), mt.ptr(), rs.ptr(), int64(rows), int64(dim)); err != nil {
			return err
		}
	}
	if dxt == nil {
		return nil
	}
	return b.launch(op, "layernorm.cu", "layernorm_backward_input", dim3{rows, 1, 1}, rowBlock(dim), 0,
		dxt.ptr(), dt(dxt), do.ptr(), dt(do), xt.ptr(), dt(xt), w.ptr(), dt(w), mt.ptr(), rs.ptr(), int64(dim))
}

// GELUTanh writes out = gelu_tanh(x).
func (b *Backend) GELUTanh(out, x engine.Tensor) error {
	return b.geluForward("GELUTanh", geluTanh, out, x)
}

// geluKind picks a GELU's kernels: torch's exact one (kernels/gelu.cu,
// Mllama) or the tanh approximation (kernels/gelu_tanh.cu, SigLIP).
type geluKind int

const (
	geluExact geluKind = iota
	geluTanh
)

// geluForward checks and launches out = gelu(x); out may be x.
func (b *Backend) geluForward(op string, kind geluKind, out, x engine.Tensor) error {
	c := b.check(op)
	o := c.float("out", out)
	xt := c.float("x", x)
	c.SameLen("out", o, "x", xt)
	return b.launchOver(&c, xt, func() error {
		desc, grid, n := fmt.Sprintf("%s %s %v", op, xt.dt, xt.shape), b.gridFor(xt.n), int64(xt.n)
		if kind == geluTanh {
			return b.launch(desc, "gelu_tanh.cu", "gelu_tanh_forward", grid, block256, 0, o.ptr(), dt(o), xt.ptr(), dt(xt), n)
		}
		return b.launch(desc, "gelu.cu", "gelu_forward", grid, block256, 0, o.ptr(), dt(o), xt.ptr(), dt(xt), n)
	})
}

// geluBackward checks and launches dx = dOut*gelu'(x), overwritten; dx
// may be dOut, not x.
func (b *Backend) geluBackward(op string, kind geluKind, dx, dOut, x engine.Tensor) error {
	c := b.check(op)
	dxt := c.float("dx", dx)
	do := c.float("dOut", dOut)
	xt := c.float("x", x)
	c.SameLen("dx", dxt, "x", xt)
	c.SameLen("dOut", do, "x", xt)
	if c.Err != nil {
		return c.Err
	}
	c.disjoint("dx", dxt, "x", xt)
	return b.launchOver(&c, xt, func() error {
		desc, grid, n := fmt.Sprintf("%s %s %v", op, xt.dt, xt.shape), b.gridFor(xt.n), int64(xt.n)
		if kind == geluTanh {
			return b.launch(desc, "gelu_tanh.cu", "gelu_tanh_backward", grid, block256, 0,
				dxt.ptr(), dt(dxt), do.ptr(), dt(do), xt.ptr(), dt(xt), n)
		}
		return b.launch(desc, "gelu.cu", "gelu_backward", grid, block256, 0,
			dxt.ptr(), dt(dxt), do.ptr(), dt(do), xt.ptr(), dt(xt), n)
	})
}

// GELUTanhBackward overwrites dx = dOut*gelu_tanh'(x); dx may be dOut.
func (b *Backend) GELUTanhBackward(dx, dOut, x engine.Tensor) error {
	return b.geluBackward("GELUTanhBackward", geluTanh, dx, dOut, x)
}

// groupGeometry is attnGeometry plus the groups tensor.
func (c *checker) groupGeometry(q, k, v *Tensor, groups engine.Tensor, seqs engine.SeqLayout, p engine.AttnParams) (*attnGeometry, *Tensor) {
	gt := c.intTensor("groups", groups)
	g := c.attnGeometry(q, k, v, seqs, p)
	if c.Err != nil {
		return nil, nil
	}
	c.Length("groups", gt, g.T)
	return g, gt
}

// AttentionGroups writes out and lse (engine.GroupAttention).
func (b *Backend) AttentionGroups(out, lse, q, k, v, groups engine.Tensor, seqs engine.SeqLayout, p engine.AttnParams) error {
	c := b.check("AttentionGroups")
	ot := c.float("out", out)
	lt := c.f32("lse", lse)
	qt, kt, vt := c.float("q", q), c.float("k", k), c.float("v", v)
	g, gt := c.groupGeometry(qt, kt, vt, groups, seqs, p)
	if c.Err != nil {
		return c.Err
	}
	c.Matrix("out", ot, g.T, g.H*g.D)
	c.Length("lse", lt, g.H*g.T)
	if !opcheck.Disjoint(&c.Checker, overlaps,
		[]string{"out", "lse"}, []*Tensor{ot, lt},
		[]string{"q", "k", "v"}, []*Tensor{qt, kt, vt}) {
		return c.Err
	}
	if g.T == 0 {
		return nil
	}
	exit, err := b.enter()
	if err != nil {
		return err
	}
	defer exit()
	op := fmt.Sprintf("AttentionGroups T=%d heads %d/%d dim %d window %d", g.T, g.H, g.KVH, g.D, p.Window)
	if ok, err := b.groupsForwardTC(op, ot, lt, qt, kt, vt, gt, g, p); ok {
		return err
	}
	return b.launch(op, "group_attention.cu", "group_attention_forward", dim3{g.T, g.H, 1}, block256, 0,
		ot.ptr(), dt(ot), lt.ptr(), qt.ptr(), dt(qt), kt.ptr(), dt(kt), vt.ptr(), dt(vt), gt.ptr(), g.starts.ptr(), int32(g.nseq),
		int32(g.T), int32(g.H), int32(g.KVH), int32(g.D), p.Scale, int32(p.Window), p.SoftCap)
}

// AttentionGroupsBackward overwrites dq, dk and dv.
func (b *Backend) AttentionGroupsBackward(dq, dk, dv, dOut, q, k, v, out, lse, groups engine.Tensor, seqs engine.SeqLayout, p engine.AttnParams) error {
	c := b.check("AttentionGroupsBackward")
	dqt, dkt, dvt := c.float("dq", dq), c.float("dk", dk), c.float("dv", dv)
	dot := c.float("dOut", dOut)
	ot := c.float("out", out)
	lt := c.f32("lse", lse)
	qt, kt, vt := c.float("q", q), c.float("k", k), c.float("v", v)
	g, gt := c.groupGeometry(qt, kt, vt, groups, seqs, p)
	if c.Err != nil {
		return c.Err
	}
	c.AttentionGrads(g.T, g.H, g.KVH, g.D, dqt, dkt, dvt, dot, ot, lt)
	if !opcheck.Disjoint(&c.Checker, overlaps,
		[]string{"dq", "dk", "dv"}, []*Tensor{dqt, dkt, dvt},
		[]string{"dOut", "q", "k", "v", "out", "lse"}, []*Tensor{dot, qt, kt, vt, ot, lt}) {
		return c.Err
	}
	if g.T == 0 {
		return nil
	}
	exit, err := b.enter()
	if err != nil {
		return err
	}
	defer exit()
	op := fmt.Sprintf("AttentionGroupsBackward T=%d heads %d/%d dim %d window %d", g.T, g.H, g.KVH, g.D, p.Window)
	if ok, err := b.groupsBackwardTC(op, dqt, dkt, dvt, dot, qt, kt, vt, ot, lt, gt, g, p); ok {
		return err
	}
	if err := b.launch(op, "group_attention.cu", "group_attention_backward_dq", dim3{g.T, g.H, 1}, block256, 0,
		dqt.ptr(), dt(dqt), dot.ptr(), dt(dot), qt.ptr(), dt(qt), kt.ptr(), dt(kt), vt.ptr(), dt(vt), ot.ptr(), dt(ot),
		lt.ptr(), gt.ptr(), g.starts.ptr(), int32(g.nseq), int32(g.T), int32(g.H), int32(g.KVH), int32(g.D),
		p.Scale, int32(p.Window), p.SoftCap); err != nil {
		return err
	}
	return b.launch(op, "group_attention.cu", "group_attention_backward_dkv", dim3{g.T, g.KVH, 1}, block256, 0,
		dkt.ptr(), dt(dkt), dvt.ptr(), dt(dvt), dot.ptr(), dt(dot), qt.ptr(), dt(qt), kt.ptr(), dt(kt), vt.ptr(), dt(vt),
		ot.ptr(), dt(ot), lt.ptr(), gt.ptr(), g.starts.ptr(), int32(g.nseq), int32(g.T), int32(g.H), int32(g.KVH), int32(g.D),
		p.Scale, int32(p.Window), p.SoftCap)
}
