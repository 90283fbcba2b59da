package cpu

import (
	"math"

	"whet/engine"
)

// The ops Llama 3.2 Vision adds (engine.MllamaOps): exact GELU and
// attention under an additive bias (LayerNorm is siglip.go's).

var _ engine.MllamaOps = (*Backend)(nil)

// gelu returns torch's exact gelu(x) and its derivative.
func gelu(x float64) (y, dy float64) {
	cdf := 0.5 * (1 + math.Erf(x/math.Sqrt2))
	return x * cdf, cdf + x*math.Exp(-x*x/2)/math.Sqrt(2*math.Pi)
}

// GELU writes out = gelu(x); out may be x.
func (b *Backend) GELU(out, x engine.Tensor) error {
	return activationForward("GELU", out, x, gelu)
}

// GELUBackward overwrites dx = dOut*gelu'(x); dx may be dOut.
func (b *Backend) GELUBackward(dx, dOut, x engine.Tensor) error {
	return activationBackward("GELUBackward", dx, dOut, x, gelu)
}

// biasAttn holds the checked geometry of one BiasAttention call.
type biasAttn struct {
	T, S, H, KVH, D int
	scale           float64
	bias            []float32 // nil: none
}

// biasAttnGeometry checks q, k, v and the bias (none when nil) against p.
func (c *checker) biasAttnGeometry(q, k, v *Tensor, biasT engine.Tensor, p engine.AttnParams) *biasAttn {
	var bias *Tensor
	if !isNil(biasT) {
		bias = c.f32("bias", biasT)
	}
	hasBias := bias != nil
	if c.Err != nil {
		return nil
	}
	if p.NHeads <= 0 || p.NKVHeads <= 0 || p.HeadDim <= 0 || p.NHeads%p.NKVHeads != 0 {
		c.Failf("heads %d, kv heads %d, head dim %d", p.NHeads, p.NKVHeads, p.HeadDim)
		return nil
	}
	if p.Window != 0 || p.SoftCap != 0 {
		c.Failf("window %d and soft-cap %v are not supported here", p.Window, p.SoftCap)
		return nil
	}
	g := &biasAttn{T: engine.Rows(q), S: engine.Rows(k), H: p.NHeads, KVH: p.NKVHeads, D: p.HeadDim, scale: float64(p.Scale)}
	c.Matrix("q", q, g.T, g.H*g.D)
	c.Matrix("k", k, g.S, g.KVH*g.D)
	c.Matrix("v", v, g.S, g.KVH*g.D)
	if hasBias {
		c.Matrix("bias", bias, g.T, g.S)
		if c.Err == nil {
			g.bias = bias.floats()
		}
	}
	if c.Err != nil {
		return nil
	}
	return g
}

// scores writes row t of head h's biased, scaled scores into s and
// returns their maximum (-Inf when every one is masked).
func (g *biasAttn) scores(s []float32, qd, kd []float32, h, t int) float64 {
	kh := h / (g.H / g.KVH)
	qr := qd[t*g.H*g.D+h*g.D : t*g.H*g.D+(h+1)*g.D]
	mx := math.Inf(-1)
	for j := 0; j < g.S; j++ {
		kr := kd[j*g.KVH*g.D+kh*g.D : j*g.KVH*g.D+(kh+1)*g.D]
		var dot float64
		for i, x := range qr {
			dot += float64(x) * float64(kr[i])
		}
		v := dot * g.scale
		if g.bias != nil {
			v += float64(g.bias[t*g.S+j])
		}
		s[j] = float32(v)
		if v > mx {
			mx = v
		}
	}
	return mx
}

// BiasAttention is full (non-causal) attention with an additive bias.
func (b *Backend) BiasAttention(out, lse, q, k, v, bias engine.Tensor, p engine.AttnParams) error {
	c := check("BiasAttention")
	o := c.float("out", out)
	lt := c.f32("lse", lse)
	qt, kt, vt := c.float("q", q), c.float("k", k), c.float("v", v)
	g := c.biasAttnGeometry(qt, kt, vt, bias, p)
	if c.Err != nil {
		return c.Err
	}
	c.Matrix("out", o, g.T, g.H*g.D)
	c.Length("lse", lt, g.H*g.T)
	c.disjoint("out", o, "q", qt)
	if c.Err != nil {
		return c.Err
	}
	od, ld, qd, kd, vd := o.floats(), lt.floats(), qt.floats(), kt.floats(), vt.floats()
	parallelFor(g.H*g.T, 4, func(lo, hi int) {
		s := make([]float32, g.S)
		acc := make([]float64, g.D)
		for ht := lo; ht < hi; ht++ {
			h, t := ht/g.T, ht%g.T
			kh := h / (g.H / g.KVH)
			mx := g.scores(s, qd, kd, h, t)
			or := od[t*g.H*g.D+h*g.D : t*g.H*g.D+(h+1)*g.D]
			if math.IsInf(mx, -1) {
				for i := range or {
					or[i] = 0
				}
				ld[h*g.T+t] = float32(math.Inf(-1))
				continue
			}
			clear(acc)
			var sum float64
			for j := 0; j < g.S; j++ {
				e := math.Exp(float64(s[j]) - mx)
				sum += e
				vr := vd[j*g.KVH*g.D+kh*g.D : j*g.KVH*g.D+(kh+1)*g.D]
				for i, x := range vr {
					acc[i] += e * float64(x)
				}
			}
			for i := range or {
				or[i] = float32(acc[i] / sum)
			}
			ld[h*g.T+t] = float32(mx + math.Log(sum))
		}
	})
	o.settle()
	return nil
}

// BiasAttentionBackward: with P = exp(s - lse), dP = dOut v^T and
// D = rowsum(dOut*out): dS = P*(dP - D), dq = scale*dS k,
// dk = scale*dS^T q, dv = P^T dOut (summed over the heads sharing a kv head).
func (b *Backend) BiasAttentionBackward(dq, dk, dv, dOut, q, k, v, out, lse, bias engine.Tensor, p engine.AttnParams) error {
	c := check("BiasAttentionBackward")
	dqt, dkt, dvt := c.float("dq", dq), c.float("dk", dk), c.float("dv", dv)
	do, ot := c.float("dOut", dOut), c.float("out", out)
	lt := c.f32("lse", lse)
	qt, kt, vt := c.float("q", q), c.float("k", k), c.float("v", v)
	g := c.biasAttnGeometry(qt, kt, vt, bias, p)
	if c.Err != nil {
		return c.Err
	}
	c.Matrix("dq", dqt, g.T, g.H*g.D)
	c.Matrix("dk", dkt, g.S, g.KVH*g.D)
	c.Matrix("dv", dvt, g.S, g.KVH*g.D)
	c.Matrix("dOut", do, g.T, g.H*g.D)
	c.Matrix("out", ot, g.T, g.H*g.D)
	c.Length("lse", lt, g.H*g.T)
	if c.Err != nil {
		return c.Err
	}
	dqd, dkd, dvd := dqt.floats(), dkt.floats(), dvt.floats()
	dod, od, ld, qd, kd, vd := do.floats(), ot.floats(), lt.floats(), qt.floats(), kt.floats(), vt.floats()
	group := g.H / g.KVH
	// One kv head per task: its heads' dk and dv rows are written by it alone.
	parallelFor(g.KVH, 1, func(lo, hi int) {
		s := make([]float32, g.S)
		ds := make([]float64, g.S)
		dkAcc := make([]float64, g.S*g.D)
		dvAcc := make([]float64, g.S*g.D)
		for kh := lo; kh < hi; kh++ {
			clear(dkAcc)
			clear(dvAcc)
			for h := kh * group; h < (kh+1)*group; h++ {
				for t := 0; t < g.T; t++ {
					dqr := dqd[t*g.H*g.D+h*g.D : t*g.H*g.D+(h+1)*g.D]
					l := float64(ld[h*g.T+t])
					if math.IsInf(l, -1) {
						clear(dqr)
						continue
					}
					g.scores(s, qd, kd, h, t)
					dor := dod[t*g.H*g.D+h*g.D : t*g.H*g.D+(h+1)*g.D]
					orow := od[t*g.H*g.D+h*g.D : t*g.H*g.D+(h+1)*g.D]
					var dsum float64
					for i := range dor {
						dsum += float64(dor[i]) * float64(orow[i])
					}
					for j := 0; j < g.S; j++ {
						pj := math.Exp(float64(s[j]) - l)
						vr := vd[j*g.KVH*g.D+kh*g.D : j*g.KVH*g.D+(kh+1)*g.D]
						var dp float64
						for i, x := range vr {
							dp += float64(dor[i]) * float64(x)
							dvAcc[j*g.D+i] += pj * float64(dor[i])
						}
						ds[j] = pj * (dp - dsum)
					}
					qr := qd[t*g.H*g.D+h*g.D : t*g.H*g.D+(h+1)*g.D]
					for i := range dqr {
						var a float64
						for j := 0; j < g.S; j++ {
							a += ds[j] * float64(kd[j*g.KVH*g.D+kh*g.D+i])
						}
						dqr[i] = float32(a * g.scale)
					}
					for j := 0; j < g.S; j++ {
						if ds[j] == 0 {
							continue
						}
						for i, x := range qr {
							dkAcc[j*g.D+i] += ds[j] * float64(x) * g.scale
						}
					}
				}
			}
			for j := 0; j < g.S; j++ {
				for i := 0; i < g.D; i++ {
					dkd[j*g.KVH*g.D+kh*g.D+i] = float32(dkAcc[j*g.D+i])
					dvd[j*g.KVH*g.D+kh*g.D+i] = float32(dvAcc[j*g.D+i])
				}
			}
		}
	})
	dqt.settle()
	dkt.settle()
	dvt.settle()
	return nil
}
