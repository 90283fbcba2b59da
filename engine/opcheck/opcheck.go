// Package opcheck holds the argument rules that every backend applies to
// its ops — dtypes, lengths, matrix shapes, attention parameters and
// sequence layouts — so that engine/cpu and engine/cuda reject the same
// calls with the same words. A backend embeds Checker in its own checker
// and adds what depends on its storage: unwrapping its tensor type, freed
// buffers, and outputs that overlap inputs.
package opcheck

import (
	"fmt"
	"math"

	"whet/engine"
)

// Checker collects the first argument error of one op, so that the op can
// check all its arguments in a row and return once.
type Checker struct {
	Backend string // message prefix: "cpu", "cuda"
	Op      string // the op, e.g. "MatMul"
	Err     error
}

// Failf records an error unless one is already recorded.
func (c *Checker) Failf(format string, args ...any) {
	if c.Err == nil {
		c.Err = fmt.Errorf(c.Backend+": "+c.Op+": "+format, args...)
	}
}

// Float reports whether t is F32 or BF16, recording an error if not.
func (c *Checker) Float(name string, t engine.Tensor) bool {
	if c.Err == nil && t.DType() == engine.I32 {
		c.Failf("%s %v is i32, want a float tensor (f32 or bf16)", name, t.Shape())
	}
	return c.Err == nil
}

// DType reports whether t has dtype want (F32 for optimizer state and
// saved statistics, I32 for ids and labels), recording an error if not.
func (c *Checker) DType(name string, t engine.Tensor, want engine.DType) bool {
	if c.Err == nil && t.DType() != want {
		c.Failf("%s %v is %s, want %s", name, t.Shape(), t.DType(), want)
	}
	return c.Err == nil
}

// SameLen requires a and b to have the same number of elements.
func (c *Checker) SameLen(an string, a engine.Tensor, bn string, b engine.Tensor) {
	if c.Err == nil && a.Len() != b.Len() {
		c.Failf("%s %v (%d elements) and %s %v (%d elements) differ in length", an, a.Shape(), a.Len(), bn, b.Shape(), b.Len())
	}
}

// Matrix requires t, read as a matrix, to be rows x cols.
func (c *Checker) Matrix(name string, t engine.Tensor, rows, cols int) {
	if c.Err == nil && (engine.Rows(t) != rows || engine.Cols(t) != cols) {
		c.Failf("%s has shape %v (%dx%d), want %dx%d", name, t.Shape(), engine.Rows(t), engine.Cols(t), rows, cols)
	}
}

// Length requires t to hold n elements.
func (c *Checker) Length(name string, t engine.Tensor, n int) {
	if c.Err == nil && t.Len() != n {
		c.Failf("%s has shape %v (%d elements), want %d elements", name, t.Shape(), t.Len(), n)
	}
}

// ErrHeadDim is wrapped by the error for a head dim above a backend's
// limit; it is engine.ErrNotImplemented.
var ErrHeadDim = engine.ErrNotImplemented

// AttnParams checks attention's parameters: positive head counts with
// NHeads a multiple of NKVHeads, a head dim of at most maxHeadDim (0: no
// limit), a window that is not negative and a finite scale.
func (c *Checker) AttnParams(p engine.AttnParams, maxHeadDim int) bool {
	switch {
	case c.Err != nil:
	case p.NHeads <= 0 || p.NKVHeads <= 0 || p.HeadDim <= 0 || p.NHeads%p.NKVHeads != 0:
		c.Failf("NHeads %d, NKVHeads %d, HeadDim %d: all must be positive and NHeads a multiple of NKVHeads",
			p.NHeads, p.NKVHeads, p.HeadDim)
	case maxHeadDim > 0 && p.HeadDim > maxHeadDim:
		c.Failf("HeadDim %d is above the %d the attention kernels support: %w", p.HeadDim, maxHeadDim, ErrHeadDim)
	case p.Window < 0:
		c.Failf("Window %d is negative", p.Window)
	case math.IsNaN(float64(p.Scale)) || math.IsInf(float64(p.Scale), 0):
		c.Failf("Scale %g is not finite", p.Scale)
	case !(p.SoftCap >= 0) || math.IsInf(float64(p.SoftCap), 0):
		c.Failf("SoftCap %g must be a finite number, 0 or above", p.SoftCap)
	}
	return c.Err == nil
}

// Attention checks q, k and v against p (q [T, NHeads*HeadDim], k and v
// [T, NKVHeads*HeadDim]) and the packed layout seqs (starts from 0 to T,
// never decreasing, MaxLen at least the longest sequence). It returns T.
func (c *Checker) Attention(q, k, v engine.Tensor, seqs engine.SeqLayout, p engine.AttnParams, maxHeadDim int) (T int, ok bool) {
	if !c.AttnParams(p, maxHeadDim) {
		return 0, false
	}
	T = engine.Rows(q)
	c.Matrix("q", q, T, p.NHeads*p.HeadDim)
	c.Matrix("k", k, T, p.NKVHeads*p.HeadDim)
	c.Matrix("v", v, T, p.NKVHeads*p.HeadDim)
	if c.Err != nil {
		return 0, false
	}
	st := seqs.Starts
	if len(st) < 2 || st[0] != 0 || int(st[len(st)-1]) != T {
		c.Failf("seqs.Starts %v must begin at 0 and end at T = %d (the rows of q %v)", st, T, q.Shape())
		return 0, false
	}
	longest := 0
	for s := 0; s+1 < len(st); s++ {
		if st[s+1] < st[s] {
			c.Failf("seqs.Starts %v decreases at index %d", st, s+1)
			return 0, false
		}
		longest = max(longest, int(st[s+1]-st[s]))
	}
	if seqs.MaxLen < longest {
		c.Failf("seqs.MaxLen %d is below the longest sequence (%d tokens) in Starts %v", seqs.MaxLen, longest, st)
		return 0, false
	}
	return T, true
}

// AttentionKV checks decode-time attention (engine.KVAttention): p as
// AttnParams does, q and out [Tq, NHeads*HeadDim], k and v [Tk,
// NKVHeads*HeadDim] with qOffset+Tq = Tk cached keys.
func (c *Checker) AttentionKV(out, q, k, v engine.Tensor, qOffset int, p engine.AttnParams, maxHeadDim int) (Tq int, ok bool) {
	if !c.AttnParams(p, maxHeadDim) {
		return 0, false
	}
	Tq, Tk := engine.Rows(q), engine.Rows(k)
	c.Matrix("q", q, Tq, p.NHeads*p.HeadDim)
	c.Matrix("out", out, Tq, p.NHeads*p.HeadDim)
	c.Matrix("k", k, Tk, p.NKVHeads*p.HeadDim)
	c.Matrix("v", v, Tk, p.NKVHeads*p.HeadDim)
	if c.Err == nil && (qOffset < 0 || qOffset+Tq != Tk) {
		c.Failf("qOffset %d + %d queries must equal the %d cached keys", qOffset, Tq, Tk)
	}
	return Tq, c.Err == nil
}

// AdamW checks one AdamW update: grad, m and v as long as param, and a
// step counted from 1.
func (c *Checker) AdamW(param, grad, m, v engine.Tensor, step int) bool {
	c.SameLen("param", param, "grad", grad)
	c.SameLen("param", param, "m", m)
	c.SameLen("param", param, "v", v)
	if c.Err == nil && step < 1 {
		c.Failf("Step %d: steps count from 1", step)
	}
	return c.Err == nil
}

// AttentionGrads checks the shapes of attention's backward beside a
// checked forward geometry (T tokens, H query heads, KVH key/value heads,
// head dim D): dq, dOut and out like q, dk and dv like k, lse [H, T].
func (c *Checker) AttentionGrads(T, H, KVH, D int, dq, dk, dv, dOut, out, lse engine.Tensor) bool {
	c.Matrix("dq", dq, T, H*D)
	c.Matrix("dk", dk, T, KVH*D)
	c.Matrix("dv", dv, T, KVH*D)
	c.Matrix("dOut", dOut, T, H*D)
	c.Matrix("out", out, T, H*D)
	c.Length("lse", lse, H*T)
	return c.Err == nil
}

// SwiGLUGrads checks SwiGLU's backward: gate, up, dGate and dUp as long as
// dOut.
func (c *Checker) SwiGLUGrads(dGate, dUp, dOut, gate, up engine.Tensor) bool {
	c.SameLen("dOut", dOut, "gate", gate)
	c.SameLen("dOut", dOut, "up", up)
	c.SameLen("dOut", dOut, "dGate", dGate)
	c.SameLen("dOut", dOut, "dUp", dUp)
	return c.Err == nil
}

// LayerNorm checks LayerNorm's shapes (engine.LayerNormer): x [rows, dim],
// out like x, mean and rstd [rows] (the saved statistics), weight and bias
// [dim], and an eps that is not negative. It returns rows and dim.
func (c *Checker) LayerNorm(out, mean, rstd, x, weight, bias engine.Tensor, eps float32) (rows, dim int, ok bool) {
	rows, dim = engine.Rows(x), engine.Cols(x)
	c.Matrix("out", out, rows, dim)
	c.Length("mean", mean, rows)
	c.Length("rstd", rstd, rows)
	c.Length("weight", weight, dim)
	c.Length("bias", bias, dim)
	if c.Err == nil && !(eps >= 0) {
		c.Failf("eps %v must not be negative", eps)
	}
	return rows, dim, c.Err == nil
}

// LayerNormGrads checks LayerNorm's backward: dOut like x, weight [dim],
// mean and rstd [rows], and the optional gradients dx like x and dWeight,
// dBias [dim]. A gradient equal to T's zero value (a nil *Tensor) is
// absent and not checked. It returns rows and dim.
func LayerNormGrads[T interface {
	engine.Tensor
	comparable
}](c *Checker, dx, dWeight, dBias, dOut, x, weight, mean, rstd T) (rows, dim int, ok bool) {
	var absent T
	rows, dim = engine.Rows(x), engine.Cols(x)
	c.Matrix("dOut", dOut, rows, dim)
	c.Length("weight", weight, dim)
	c.Length("mean", mean, rows)
	c.Length("rstd", rstd, rows)
	if dx != absent {
		c.Matrix("dx", dx, rows, dim)
	}
	if dWeight != absent {
		c.Length("dWeight", dWeight, dim)
	}
	if dBias != absent {
		c.Length("dBias", dBias, dim)
	}
	return rows, dim, c.Err == nil
}

// Overlap records that output out shares memory with input in, which the
// op still reads after it starts writing; the backend decides overlapping
// from its own storage.
func (c *Checker) Overlap(outName string, out engine.Tensor, inName string, in engine.Tensor, overlapping bool) {
	if c.Err == nil && overlapping {
		c.Failf("output %s %v overlaps input %s %v", outName, out.Shape(), inName, in.Shape())
	}
}

// Disjoint requires every output to be disjoint from every input and from
// every other output (overlaps is the backend's storage test; outNames and
// inNames name outs and ins in order). It checks the outputs in order, each
// against the inputs and then the later outputs, and records the first
// overlap.
func Disjoint[T engine.Tensor](c *Checker, overlaps func(a, b T) bool, outNames []string, outs []T, inNames []string, ins []T) bool {
	if len(outNames) != len(outs) || len(inNames) != len(ins) {
		c.Failf("internal: Disjoint has %d names for %d outputs and %d names for %d inputs", len(outNames), len(outs), len(inNames), len(ins))
	}
	for i, o := range outs {
		for j, in := range ins {
			c.Overlap(outNames[i], o, inNames[j], in, c.Err == nil && overlaps(o, in))
		}
		for j := i + 1; j < len(outs); j++ {
			c.Overlap(outNames[i], o, outNames[j], outs[j], c.Err == nil && overlaps(o, outs[j]))
		}
	}
	return c.Err == nil
}

// RMSNorm checks RMSNorm's shapes: x [rows, dim], out like x, rstd [rows]
// and weight [dim]. It returns rows and dim.
func (c *Checker) RMSNorm(out, rstd, x, weight engine.Tensor) (rows, dim int, ok bool) {
	rows, dim = engine.Rows(x), engine.Cols(x)
	c.Matrix("out", out, rows, dim)
	c.Length("rstd", rstd, rows)
	c.Length("weight", weight, dim)
	return rows, dim, c.Err == nil
}

// RMSNormGrads checks RMSNorm's backward: dx and dOut like x, weight
// [dim], rstd [rows] and the optional dWeight [dim], absent when it equals
// T's zero value (a nil *Tensor). It returns rows and dim.
func RMSNormGrads[T interface {
	engine.Tensor
	comparable
}](c *Checker, dx, dWeight, dOut, x, weight, rstd T) (rows, dim int, ok bool) {
	var absent T
	rows, dim = engine.Rows(x), engine.Cols(x)
	c.Matrix("dx", dx, rows, dim)
	c.Matrix("dOut", dOut, rows, dim)
	c.Length("weight", weight, dim)
	c.Length("rstd", rstd, rows)
	if dWeight != absent {
		c.Length("dWeight", dWeight, dim)
	}
	return rows, dim, c.Err == nil
}

// MatMul checks c = op(a)@op(b): op(a) is m x k (a transposed when
// transA), op(b) is k x n, and c is m x n. It returns m, k and n.
func (c *Checker) MatMul(ct, a, b engine.Tensor, transA, transB bool) (m, k, n int, ok bool) {
	m, k = engine.Rows(a), engine.Cols(a)
	if transA {
		m, k = k, m
	}
	kb, n := engine.Rows(b), engine.Cols(b)
	if transB {
		kb, n = n, kb
	}
	if c.Err == nil && k != kb {
		c.Failf("inner dimensions differ: op(a) is %dx%d (a %v, transA=%v), op(b) is %dx%d (b %v, transB=%v)",
			m, k, a.Shape(), transA, kb, n, b.Shape(), transB)
	}
	c.Matrix("c", ct, m, n)
	return m, k, n, c.Err == nil
}

// ShapeLen is the number of elements of shape, refusing a negative
// dimension and a count above limit (the backend's largest tensor).
func ShapeLen(shape []int, limit int) (int, error) {
	n := 1
	for _, d := range shape {
		if d < 0 {
			return 0, fmt.Errorf("negative dimension in shape %v", shape)
		}
		if d != 0 && n > limit/d {
			return 0, fmt.Errorf("shape %v is too large", shape)
		}
		n *= d
	}
	return n, nil
}

// RoPE checks a rotary embedding over the first rot dimensions of each of
// nHeads heads of headDim: positive head counts and dims, headDim even,
// rot in (0, headDim]; x [rows, nHeads*headDim], positions [rows], cos
// and sin [maxPos, rot/2]. It returns rows and maxPos (the positions'
// values are the backend's to check: they live in its memory).
func (c *Checker) RoPE(x, positions, cos, sin engine.Tensor, nHeads, headDim, rot int) (rows, maxPos int, ok bool) {
	if c.Err == nil && (nHeads <= 0 || headDim <= 0 || headDim%2 != 0 || rot <= 0 || rot > headDim) {
		c.Failf("nHeads %d and headDim %d must be positive, headDim even, and the rotary dimensions %d in (0, headDim]", nHeads, headDim, rot)
	}
	if c.Err != nil {
		return 0, 0, false
	}
	half := rot / 2
	rows = engine.Rows(x)
	c.Matrix("x", x, rows, nHeads*headDim)
	c.Length("positions", positions, rows)
	maxPos = engine.Rows(cos)
	c.Matrix("cos", cos, maxPos, half)
	c.Matrix("sin", sin, maxPos, half)
	return rows, maxPos, c.Err == nil
}

// CrossEntropy checks a cross-entropy over the rows of logits [n, vocab]:
// labels and losses hold n values. It returns n and vocab.
func (c *Checker) CrossEntropy(logits, labels, losses engine.Tensor) (n, vocab int, ok bool) {
	n, vocab = engine.Rows(logits), engine.Cols(logits)
	c.Length("labels", labels, n)
	c.Length("losses", losses, n)
	return n, vocab, c.Err == nil
}

// BadLabel records that labels[i] = y is neither in [0, vocab) nor the
// ignore label, and returns the error.
func (c *Checker) BadLabel(i int, y int32, vocab int, logits engine.Tensor, ignore int32) error {
	c.Failf("labels[%d] = %d is outside the vocabulary of %d (logits %v); use %d to ignore a token",
		i, y, vocab, logits.Shape(), ignore)
	return c.Err
}
