package cuda

import (
	"fmt"
	"math"

	"whet/engine"
	"whet/engine/envswitch"
	"whet/engine/opcheck"
)

// Llama 3.2 Vision's ops (engine.MllamaOps): LayerNorm is siglip.go's,
// exact GELU is kernels/gelu.cu, and attention under an additive bias is
// kernels/bias_attention.cu (a plain per-row implementation, as
// group_attention.cu). Only an Mllama model reaches them.
var _ engine.MllamaOps = (*Backend)(nil)

// GELU writes out = x*Phi(x) (torch's exact gelu); out may be x.
func (b *Backend) GELU(out, x engine.Tensor) error {
	return b.geluForward("GELU", geluExact, out, x)
}

// GELUBackward overwrites dx = dOut*gelu'(x); dx may be dOut, not x.
func (b *Backend) GELUBackward(dx, dOut, x engine.Tensor) error {
	return b.geluBackward("GELUBackward", geluExact, dx, dOut, x)
}

// BiasAttnQ8Env set to 1 runs BiasAttention's forward through
// bias_attention_forward_q8 (kernels/bias_attention.cu): eight queries of
// a head per block share every load of k and v, where the plain kernel
// reads them once per query (Llama 3.2 Vision's tower attends 6432 rows to
// 6432 per layer: its forward was 16 s of the 11B step on an H100). The
// same outputs; off until its conformance cases pass on a GPU
// (tools/gpu/mllama-bf16).
const BiasAttnQ8Env = "WHET_BIAS_ATTN_Q8"

// biasAttnQ8Rows is the queries a block of bias_attention_forward_q8
// takes (BA_QB there).
const biasAttnQ8Rows = 8

// biasGeometry is the checked shape of one BiasAttention call.
type biasGeometry struct {
	T, S, H, KVH, D int
	bias            *Tensor // nil: none
}

// biasGeometry checks q [T, H*D], k and v [S, KVH*D] and bias (F32
// [T, S], or nil) against p, as engine/cpu does; the head dim is at most
// the kernels' 256 threads.
func (c *checker) biasGeometry(q, k, v *Tensor, bias engine.Tensor, p engine.AttnParams) *biasGeometry {
	if c.Err != nil {
		return nil
	}
	if p.NHeads <= 0 || p.NKVHeads <= 0 || p.HeadDim <= 0 || p.NHeads%p.NKVHeads != 0 {
		c.Failf("heads %d, kv heads %d, head dim %d", p.NHeads, p.NKVHeads, p.HeadDim)
		return nil
	}
	if p.HeadDim > attnMaxHeadDim {
		c.Failf("head dim %d is above the kernels' %d", p.HeadDim, attnMaxHeadDim)
		return nil
	}
	if p.Window != 0 || p.SoftCap != 0 {
		c.Failf("window %d and soft-cap %v are not supported here", p.Window, p.SoftCap)
		return nil
	}
	g := &biasGeometry{T: engine.Rows(q), S: engine.Rows(k), H: p.NHeads, KVH: p.NKVHeads, D: p.HeadDim}
	c.Matrix("q", q, g.T, g.H*g.D)
	c.Matrix("k", k, g.S, g.KVH*g.D)
	c.Matrix("v", v, g.S, g.KVH*g.D)
	if !isNil(bias) {
		g.bias = c.f32("bias", bias)
		if c.Err == nil {
			c.Matrix("bias", g.bias, g.T, g.S)
		}
	}
	if c.Err != nil {
		return nil
	}
	return g
}

func (g *biasGeometry) biasPtr() uint64 {
	if g.bias == nil {
		return 0
	}
	return g.bias.ptr()
}

// BiasAttention writes out and lse (engine.MllamaOps).
func (b *Backend) BiasAttention(out, lse, q, k, v, bias engine.Tensor, p engine.AttnParams) error {
	c := b.check("BiasAttention")
	ot := c.float("out", out)
	lt := c.f32("lse", lse)
	qt, kt, vt := c.float("q", q), c.float("k", k), c.float("v", v)
	g := c.biasGeometry(qt, kt, vt, bias, p)
	if c.Err != nil {
		return c.Err
	}
	c.Matrix("out", ot, g.T, g.H*g.D)
	c.Length("lse", lt, g.H*g.T)
	inNames, ins := []string{"q", "k", "v"}, []*Tensor{qt, kt, vt}
	if g.bias != nil {
		inNames, ins = append(inNames, "bias"), append(ins, g.bias)
	}
	if !opcheck.Disjoint(&c.Checker, overlaps, []string{"out", "lse"}, []*Tensor{ot, lt}, inNames, ins) {
		return c.Err
	}
	if g.T == 0 {
		return nil
	}
	if g.S == 0 {
		// No key at all: every row is masked (out 0, lse -inf), as the
		// CPU backend writes it.
		return b.emptyBiasAttention(ot, lt)
	}
	exit, err := b.enter()
	if err != nil {
		return err
	}
	defer exit()
	desc := fmt.Sprintf("BiasAttention T=%d S=%d heads %d/%d dim %d", g.T, g.S, g.H, g.KVH, g.D)
	if ok, err := b.biasForwardTC(desc, ot, lt, qt, kt, vt, g, p); ok {
		return err
	}
	if envswitch.On(BiasAttnQ8Env) {
		return b.launch(desc+" q8", "bias_attention.cu", "bias_attention_forward_q8",
			dim3{(g.T + biasAttnQ8Rows - 1) / biasAttnQ8Rows, g.H, 1}, block256, 0,
			ot.ptr(), dt(ot), lt.ptr(), qt.ptr(), dt(qt), kt.ptr(), dt(kt), vt.ptr(), dt(vt), g.biasPtr(),
			int32(g.T), int32(g.S), int32(g.H), int32(g.KVH), int32(g.D), p.Scale)
	}
	return b.launch(desc,
		"bias_attention.cu", "bias_attention_forward", dim3{g.T, g.H, 1}, block256, 0,
		ot.ptr(), dt(ot), lt.ptr(), qt.ptr(), dt(qt), kt.ptr(), dt(kt), vt.ptr(), dt(vt), g.biasPtr(),
		int32(g.T), int32(g.S), int32(g.H), int32(g.KVH), int32(g.D), p.Scale)
}

// emptyBiasAttention writes the outputs of attention over no keys.
func (b *Backend) emptyBiasAttention(out, lse *Tensor) error {
	if err := b.Fill(out, 0); err != nil {
		return err
	}
	return b.Fill(lse, float32(math.Inf(-1)))
}

// BiasAttentionBackward overwrites dq, dk and dv.
func (b *Backend) BiasAttentionBackward(dq, dk, dv, dOut, q, k, v, out, lse, bias engine.Tensor, p engine.AttnParams) error {
	c := b.check("BiasAttentionBackward")
	dqt, dkt, dvt := c.float("dq", dq), c.float("dk", dk), c.float("dv", dv)
	dot := c.float("dOut", dOut)
	ot := c.float("out", out)
	lt := c.f32("lse", lse)
	qt, kt, vt := c.float("q", q), c.float("k", k), c.float("v", v)
	g := c.biasGeometry(qt, kt, vt, bias, p)
	if c.Err != nil {
		return c.Err
	}
	c.Matrix("dq", dqt, g.T, g.H*g.D)
	c.Matrix("dk", dkt, g.S, g.KVH*g.D)
	c.Matrix("dv", dvt, g.S, g.KVH*g.D)
	c.Matrix("dOut", dot, g.T, g.H*g.D)
	c.Matrix("out", ot, g.T, g.H*g.D)
	c.Length("lse", lt, g.H*g.T)
	inNames, ins := []string{"dOut", "q", "k", "v", "out", "lse"}, []*Tensor{dot, qt, kt, vt, ot, lt}
	if g.bias != nil {
		inNames, ins = append(inNames, "bias"), append(ins, g.bias)
	}
	outs := []*Tensor{dqt, dkt, dvt}
	if !opcheck.Disjoint(&c.Checker, overlaps, []string{"dq", "dk", "dv"}, outs, inNames, ins) {
		return c.Err
	}
	if g.T == 0 || g.S == 0 {
		// Nothing attends: every gradient is zero.
		for _, o := range outs {
			if o.n > 0 {
				if err := b.Fill(o, 0); err != nil {
					return err
				}
			}
		}
		return nil
	}
	exit, err := b.enter()
	if err != nil {
		return err
	}
	defer exit()
	op := fmt.Sprintf("BiasAttentionBackward T=%d S=%d heads %d/%d dim %d", g.T, g.S, g.H, g.KVH, g.D)
	if ok, err := b.biasBackwardTC(op, dqt, dkt, dvt, dot, qt, kt, vt, ot, lt, g, p); ok {
		return err
	}
	if err := b.launch(op, "bias_attention.cu", "bias_attention_backward_dq", dim3{g.T, g.H, 1}, block256, 0,
		dqt.ptr(), dt(dqt), dot.ptr(), dt(dot), qt.ptr(), dt(qt), kt.ptr(), dt(kt), vt.ptr(), dt(vt), ot.ptr(), dt(ot),
		lt.ptr(), g.biasPtr(), int32(g.T), int32(g.S), int32(g.H), int32(g.KVH), int32(g.D), p.Scale); err != nil {
		return err
	}
	return b.launch(op, "bias_attention.cu", "bias_attention_backward_dkv", dim3{g.S, g.KVH, 1}, block256, 0,
		dkt.ptr(), dt(dkt), dvt.ptr(), dt(dvt), dot.ptr(), dt(dot), qt.ptr(), dt(qt), kt.ptr(), dt(kt), vt.ptr(), dt(vt),
		ot.ptr(), dt(ot), lt.ptr(), g.biasPtr(), int32(g.T), int32(g.S), int32(g.H), int32(g.KVH), int32(g.D), p.Scale)
}
