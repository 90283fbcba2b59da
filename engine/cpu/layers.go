package cpu

import (
	"math"

	"whet/engine"
	"whet/engine/opcheck"
)

// Embedding copies row ids[t] of table into row t of out.
func (b *Backend) Embedding(out, table, ids engine.Tensor) error {
	c := check("Embedding")
	o := c.float("out", out)
	tb := c.float("table", table)
	id := c.intTensor("ids", ids)
	if c.Err != nil {
		return c.Err
	}
	dim := engine.Cols(tb)
	c.Matrix("out", o, id.n, dim)
	c.validIDs(id, engine.Rows(tb))
	if c.Err != nil {
		return c.Err
	}
	od, td := o.floats(), tb.floats()
	for t, tok := range id.ints() {
		copy(od[t*dim:(t+1)*dim], td[int(tok)*dim:(int(tok)+1)*dim])
	}
	o.settle()
	return nil
}

// EmbeddingBackward adds row t of dOut into row ids[t] of dTable. Rows run
// in token order, so repeated ids accumulate deterministically.
func (b *Backend) EmbeddingBackward(dTable, dOut, ids engine.Tensor) error {
	c := check("EmbeddingBackward")
	dt := c.float("dTable", dTable)
	do := c.float("dOut", dOut)
	id := c.intTensor("ids", ids)
	if c.Err != nil {
		return c.Err
	}
	dim := engine.Cols(dt)
	c.Matrix("dOut", do, id.n, dim)
	c.validIDs(id, engine.Rows(dt))
	if c.Err != nil {
		return c.Err
	}
	od, td := do.floats(), dt.floats()
	for t, tok := range id.ints() {
		row := td[int(tok)*dim : (int(tok)+1)*dim]
		for j, g := range od[t*dim : (t+1)*dim] {
			row[j] += g
		}
	}
	dt.settle()
	return nil
}

func (c *checker) validIDs(ids *Tensor, vocab int) {
	if c.Err != nil {
		return
	}
	for t, tok := range ids.ints() {
		if tok < 0 || int(tok) >= vocab {
			c.Failf("ids[%d] = %d is outside the table's %d rows", t, tok, vocab)
			return
		}
	}
}

// RMSNorm writes out = x*rstd*weight row by row and saves rstd (f32, one
// per row) for the backward.
func (b *Backend) RMSNorm(out, rstd, x, weight engine.Tensor, eps float32) error {
	c := check("RMSNorm")
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
	od, rd, xd, wd := o.floats(), rs.floats(), xt.floats(), w.floats()
	parallelFor(rows, 64, func(lo, hi int) {
		for r := lo; r < hi; r++ {
			xr := xd[r*dim : (r+1)*dim]
			var ss float64
			for _, v := range xr {
				ss += float64(v) * float64(v)
			}
			inv := float32(1 / math.Sqrt(ss/float64(dim)+float64(eps)))
			rd[r] = inv
			or := od[r*dim : (r+1)*dim]
			for j, v := range xr {
				or[j] = v * inv * wd[j]
			}
		}
	})
	o.settle()
	return nil
}

// RMSNormBackward adds the input gradient into dx and, unless dWeight is
// nil, the weight gradient into dWeight. With y = x*r*w and
// r = (mean(x^2)+eps)^-1/2:
//
//	dx_j += r*w_j*dy_j - x_j * r^3/D * sum_k(w_k*dy_k*x_k)
//	dw_j += sum over rows of dy_j*x_j*r
func (b *Backend) RMSNormBackward(dx, dWeight, dOut, x, weight, rstd engine.Tensor) error {
	c := check("RMSNormBackward")
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
	dxd, dod, xd, wd, rd := dxt.floats(), do.floats(), xt.floats(), w.floats(), rs.floats()
	parallelFor(rows, 64, func(lo, hi int) {
		for r := lo; r < hi; r++ {
			xr, dor, dxr := xd[r*dim:(r+1)*dim], dod[r*dim:(r+1)*dim], dxd[r*dim:(r+1)*dim]
			inv := float64(rd[r])
			var dot float64
			for j := range xr {
				dot += float64(wd[j]) * float64(dor[j]) * float64(xr[j])
			}
			k := inv * inv * inv * dot / float64(dim)
			for j := range xr {
				dxr[j] += float32(inv*float64(wd[j])*float64(dor[j]) - k*float64(xr[j]))
			}
		}
	})
	dxt.settle()
	if dwt != nil {
		// Columns are independent, so split the columns over cores and
		// sum each over all rows in float64.
		dwd := dwt.floats()
		parallelFor(dim, 16, func(lo, hi int) {
			acc := make([]float64, hi-lo)
			for r := 0; r < rows; r++ {
				inv := float64(rd[r])
				for j := lo; j < hi; j++ {
					acc[j-lo] += float64(dod[r*dim+j]) * float64(xd[r*dim+j]) * inv
				}
			}
			for j := lo; j < hi; j++ {
				dwd[j] += float32(acc[j-lo])
			}
		})
		dwt.settle()
	}
	return nil
}

// RoPE rotates x in place, half-split layout (Hugging Face rotate_half):
// within each head, with x1 the first half and x2 the second,
//
//	x1' = x1*cos - x2*sin
//	x2' = x2*cos + x1*sin
//
// where cos and sin are row positions[t] of the [maxPos, headDim/2]
// tables. inverse negates sin: the rotation back, which is also the
// backward because the rotation is orthogonal.
func (b *Backend) RoPE(x, positions, cos, sin engine.Tensor, nHeads, headDim int, inverse bool) error {
	return b.rope("RoPE", x, positions, cos, sin, nHeads, headDim, headDim, inverse)
}

// RoPEPartial is RoPE on the first rot = 2*Cols(cos) dimensions of each
// head (pairs (i, i+rot/2)); the others pass through unchanged.
func (b *Backend) RoPEPartial(x, positions, cos, sin engine.Tensor, nHeads, headDim int, inverse bool) error {
	return b.rope("RoPEPartial", x, positions, cos, sin, nHeads, headDim, 2*engine.Cols(cos), inverse)
}

func (b *Backend) rope(op string, x, positions, cos, sin engine.Tensor, nHeads, headDim, rot int, inverse bool) error {
	c := check(op)
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
	for t, p := range pt.ints() {
		if p < 0 || int(p) >= maxPos {
			c.Failf("positions[%d] = %d is outside the %d rows of the cos/sin tables", t, p, maxPos)
			return c.Err
		}
	}
	xd, pd, cd, sd := xt.floats(), pt.ints(), ct.floats(), st.floats()
	sign := float32(1)
	if inverse {
		sign = -1
	}
	parallelFor(rows, 64, func(lo, hi int) {
		for t := lo; t < hi; t++ {
			cr := cd[int(pd[t])*half : (int(pd[t])+1)*half]
			sr := sd[int(pd[t])*half : (int(pd[t])+1)*half]
			for h := 0; h < nHeads; h++ {
				head := xd[(t*nHeads+h)*headDim : (t*nHeads+h+1)*headDim]
				for i := 0; i < half; i++ {
					x1, x2 := head[i], head[i+half]
					s := sign * sr[i]
					head[i] = x1*cr[i] - x2*s
					head[i+half] = x2*cr[i] + x1*s
				}
			}
		}
	})
	xt.settle()
	return nil
}

// SwiGLU writes out = silu(gate)*up, silu(g) = g*sigmoid(g).
func (b *Backend) SwiGLU(out, gate, up engine.Tensor) error {
	return gatedForward("SwiGLU", out, gate, up, func(g, u float32) float32 { return silu(g) * u })
}

// gatedForward writes out = act(gate)*up, each element by product (which
// keeps the op's own precision: SwiGLU's in float32, GeGLU's in float64).
func gatedForward(name string, out, gate, up engine.Tensor, product func(g, u float32) float32) error {
	c := check(name)
	o := c.float("out", out)
	g := c.float("gate", gate)
	u := c.float("up", up)
	c.SameLen("out", o, "gate", g)
	c.SameLen("out", o, "up", u)
	if c.Err != nil {
		return c.Err
	}
	od, gd, ud := o.floats(), g.floats(), u.floats()
	parallelFor(len(od), 1<<14, func(lo, hi int) {
		for i := lo; i < hi; i++ {
			od[i] = product(gd[i], ud[i])
		}
	})
	o.settle()
	return nil
}

// activationForward writes out = act(x) for an activation returning its
// value and derivative (GELU, GELUTanh); out may be x.
func activationForward(name string, out, x engine.Tensor, act func(x float64) (y, dy float64)) error {
	c := check(name)
	o := c.float("out", out)
	xt := c.float("x", x)
	c.SameLen("out", o, "x", xt)
	if c.Err != nil {
		return c.Err
	}
	od, xd := o.floats(), xt.floats()
	parallelFor(len(od), 1<<14, func(lo, hi int) {
		for i := lo; i < hi; i++ {
			y, _ := act(float64(xd[i]))
			od[i] = float32(y)
		}
	})
	o.settle()
	return nil
}

// activationBackward overwrites dx = dOut*act'(x), the backward of
// activationForward; dx may be dOut, never x.
func activationBackward(name string, dx, dOut, x engine.Tensor, act func(x float64) (y, dy float64)) error {
	c := check(name)
	dxt := c.float("dx", dx)
	do := c.float("dOut", dOut)
	xt := c.float("x", x)
	c.SameLen("dx", dxt, "x", xt)
	c.SameLen("dOut", do, "x", xt)
	c.disjoint("dx", dxt, "x", xt)
	if c.Err != nil {
		return c.Err
	}
	dxd, dod, xd := dxt.floats(), do.floats(), xt.floats()
	parallelFor(len(xd), 1<<14, func(lo, hi int) {
		for i := lo; i < hi; i++ {
			_, dy := act(float64(xd[i]))
			dxd[i] = float32(float64(dod[i]) * dy)
		}
	})
	dxt.settle()
	return nil
}

// SwiGLUBackward overwrites dGate and dUp:
//
//	dUp   = dOut * silu(g)
//	dGate = dOut * up * sigmoid(g) * (1 + g*(1-sigmoid(g)))
func (b *Backend) SwiGLUBackward(dGate, dUp, dOut, gate, up engine.Tensor) error {
	return gatedBackward("SwiGLUBackward", dGate, dUp, dOut, gate, up, func(x float64) (y, dy float64) {
		sig := 1 / (1 + math.Exp(-x))
		return x * sig, sig * (1 + x*(1-sig))
	})
}

// gatedBackward is the backward of out = act(gate)*up for any activation
// act returning its value and derivative: dUp = dOut*act(g) and
// dGate = dOut*up*act'(g). Each index reads gate, up and dOut before
// writing dGate and dUp, so an output may be the very tensor of an input
// (in place).
func gatedBackward(name string, dGate, dUp, dOut, gate, up engine.Tensor, act func(x float64) (y, dy float64)) error {
	c := check(name)
	dg := c.float("dGate", dGate)
	du := c.float("dUp", dUp)
	do := c.float("dOut", dOut)
	g := c.float("gate", gate)
	u := c.float("up", up)
	c.SwiGLUGrads(dg, du, do, g, u)
	if c.Err != nil {
		return c.Err
	}
	dgd, dud, dod, gd, ud := dg.floats(), du.floats(), do.floats(), g.floats(), u.floats()
	parallelFor(len(dod), 1<<14, func(lo, hi int) {
		for i := lo; i < hi; i++ {
			y, dy := act(float64(gd[i]))
			d := float64(dod[i])
			dud[i] = float32(d * y)
			dgd[i] = float32(d * float64(ud[i]) * dy)
		}
	})
	dg.settle()
	du.settle()
	return nil
}

func silu(g float32) float32 {
	x := float64(g)
	return float32(x / (1 + math.Exp(-x)))
}

// Dropout writes out = x*keep/(1-p), keep being DropoutKeep(seed, i, p)
// for element i of the tensor. p = 0 copies x; p = 1 zeroes out. Running
// it with the same seed and p on dOut gives the backward.
func (b *Backend) Dropout(out, x engine.Tensor, p float32, seed uint64) error {
	c := check("Dropout")
	o := c.float("out", out)
	xt := c.float("x", x)
	c.SameLen("out", o, "x", xt)
	if c.Err == nil && !(p >= 0 && p <= 1) {
		c.Failf("probability %g is outside [0, 1]", p)
	}
	if c.Err != nil {
		return c.Err
	}
	od, xd := o.floats(), xt.floats()
	if p == 0 {
		copy(od, xd)
		o.settle()
		return nil
	}
	var scale float32
	if p < 1 {
		scale = 1 / (1 - p)
	}
	parallelFor(len(od), 1<<14, func(lo, hi int) {
		for i := lo; i < hi; i++ {
			if DropoutKeep(seed, uint64(i), p) {
				od[i] = xd[i] * scale
			} else {
				od[i] = 0
			}
		}
	})
	o.settle()
	return nil
}

// DropoutUniform is the counter-based random number behind Dropout: the
// splitmix64 output for state seed after index+1 steps, whose top 24 bits
// make a float32 u = bits/2^24 in [0, 1). Any backend computes the same
// mask from (seed, index) alone, in any order.
func DropoutUniform(seed, index uint64) float32 {
	z := seed + (index+1)*0x9e3779b97f4a7c15
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
	z = (z ^ (z >> 27)) * 0x94d049bb133111eb
	z ^= z >> 31
	return float32(z>>40) * (1.0 / (1 << 24))
}

// DropoutKeep reports whether Dropout keeps element index: u >= p.
func DropoutKeep(seed, index uint64, p float32) bool {
	return DropoutUniform(seed, index) >= p
}
