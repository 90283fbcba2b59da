package cpu

import (
	"math"

	"whet/engine"
	"whet/engine/opcheck"
)

// Gemma 3's vision ops (engine/siglip_ops.go): LayerNorm with a bias and the
// plain GELU-tanh of the SigLIP tower, and attention with bidirectional
// image groups.

var (
	_ engine.LayerNormer    = (*Backend)(nil)
	_ engine.GELUTanhAct    = (*Backend)(nil)
	_ engine.GroupAttention = (*Backend)(nil)
)

// LayerNorm writes out = (x-mean)*rstd*weight + bias row by row, in
// float64 within a row, and saves mean and rstd (f32, one per row).
func (b *Backend) LayerNorm(out, mean, rstd, x, weight, bias engine.Tensor, eps float32) error {
	c := check("LayerNorm")
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
	od, md, rd, xd, wd, bd := o.floats(), mt.floats(), rs.floats(), xt.floats(), w.floats(), bt.floats()
	parallelFor(rows, 64, func(lo, hi int) {
		for r := lo; r < hi; r++ {
			xr := xd[r*dim : (r+1)*dim]
			var s float64
			for _, v := range xr {
				s += float64(v)
			}
			mu := s / float64(dim)
			var ss float64
			for _, v := range xr {
				d := float64(v) - mu
				ss += d * d
			}
			inv := 1 / math.Sqrt(ss/float64(dim)+float64(eps))
			md[r], rd[r] = float32(mu), float32(inv)
			or := od[r*dim : (r+1)*dim]
			for j, v := range xr {
				or[j] = float32((float64(v)-mu)*inv*float64(wd[j]) + float64(bd[j]))
			}
		}
	})
	o.settle()
	return nil
}

// LayerNormBackward adds the gradients. With xh = (x-mean)*r and
// g_j = w_j*dy_j:
//
//	dx_j += r * (g_j - mean_k(g_k) - xh_j * mean_k(g_k*xh_k))
//	dw_j += sum over rows of dy_j*xh_j ; db_j += sum over rows of dy_j
//
// dWeight and dBias may be nil (frozen).
func (b *Backend) LayerNormBackward(dx, dWeight, dBias, dOut, x, weight, mean, rstd engine.Tensor) error {
	c := check("LayerNormBackward")
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
	dod, xd, wd, md, rd := do.floats(), xt.floats(), w.floats(), mt.floats(), rs.floats()
	if dxt != nil {
		dxd := dxt.floats()
		parallelFor(rows, 64, func(lo, hi int) {
			for r := lo; r < hi; r++ {
				xr, dor, dxr := xd[r*dim:(r+1)*dim], dod[r*dim:(r+1)*dim], dxd[r*dim:(r+1)*dim]
				mu, inv := float64(md[r]), float64(rd[r])
				var sg, sgx float64
				for j := range xr {
					g := float64(wd[j]) * float64(dor[j])
					sg += g
					sgx += g * (float64(xr[j]) - mu) * inv
				}
				sg /= float64(dim)
				sgx /= float64(dim)
				for j := range xr {
					g := float64(wd[j]) * float64(dor[j])
					xh := (float64(xr[j]) - mu) * inv
					dxr[j] += float32(inv * (g - sg - xh*sgx))
				}
			}
		})
		dxt.settle()
	}
	if dwt != nil || dbt != nil {
		var dwd, dbd []float32
		if dwt != nil {
			dwd = dwt.floats()
		}
		if dbt != nil {
			dbd = dbt.floats()
		}
		parallelFor(dim, 16, func(lo, hi int) {
			accW := make([]float64, hi-lo)
			accB := make([]float64, hi-lo)
			for r := 0; r < rows; r++ {
				mu, inv := float64(md[r]), float64(rd[r])
				for j := lo; j < hi; j++ {
					d := float64(dod[r*dim+j])
					accW[j-lo] += d * (float64(xd[r*dim+j]) - mu) * inv
					accB[j-lo] += d
				}
			}
			for j := lo; j < hi; j++ {
				if dwd != nil {
					dwd[j] += float32(accW[j-lo])
				}
				if dbd != nil {
					dbd[j] += float32(accB[j-lo])
				}
			}
		})
		if dwt != nil {
			dwt.settle()
		}
		if dbt != nil {
			dbt.settle()
		}
	}
	return nil
}

// GELUTanh writes out = gelu_tanh(x) (transformers' gelu_pytorch_tanh).
func (b *Backend) GELUTanh(out, x engine.Tensor) error {
	return activationForward("GELUTanh", out, x, geluTanh)
}

// GELUTanhBackward overwrites dx = dOut*gelu_tanh'(x); dx may be dOut.
func (b *Backend) GELUTanhBackward(dx, dOut, x engine.Tensor) error {
	return activationBackward("GELUTanhBackward", dx, dOut, x, geluTanh)
}

// groupGeometry is attnGeometry with each token's group
// (attnGeometry.sees).
func (c *checker) groupGeometry(q, k, v engine.Tensor, groups engine.Tensor, seqs engine.SeqLayout, p engine.AttnParams) *attnGeometry {
	qt := c.float("q", q)
	kt := c.float("k", k)
	vt := c.float("v", v)
	gt := c.intTensor("groups", groups)
	g := c.attnGeometry(qt, kt, vt, seqs, p)
	if c.Err != nil {
		return nil
	}
	c.Length("groups", gt, g.T)
	if c.Err != nil {
		return nil
	}
	g.groups = gt.ints()
	return g
}

// AttentionGroups writes out and lse (engine.GroupAttention).
func (b *Backend) AttentionGroups(out, lse, q, k, v, groups engine.Tensor, seqs engine.SeqLayout, p engine.AttnParams) error {
	c := check("AttentionGroups")
	ot := c.float("out", out)
	lt := c.f32("lse", lse)
	g := c.groupGeometry(q, k, v, groups, seqs, p)
	if c.Err != nil {
		return c.Err
	}
	return c.attentionForward(g, ot, lt, q.(*Tensor), k.(*Tensor), v.(*Tensor))
}

// AttentionGroupsBackward overwrites dq, dk and dv: Attention's backward
// (attention.go) over the pairs sees admits.
func (b *Backend) AttentionGroupsBackward(dq, dk, dv, dOut, q, k, v, out, lse, groups engine.Tensor, seqs engine.SeqLayout, p engine.AttnParams) error {
	c := check("AttentionGroupsBackward")
	dqt := c.float("dq", dq)
	dkt := c.float("dk", dk)
	dvt := c.float("dv", dv)
	dot := c.float("dOut", dOut)
	ot := c.float("out", out)
	lt := c.f32("lse", lse)
	g := c.groupGeometry(q, k, v, groups, seqs, p)
	if c.Err != nil {
		return c.Err
	}
	return c.attentionBackward(g, dqt, dkt, dvt, dot, q.(*Tensor), k.(*Tensor), v.(*Tensor), ot, lt)
}
