package cpu

import (
	"math"

	"whet/engine"
)

var _ engine.KVAttention = (*Backend)(nil)

// AttentionKV is the cached, single-sequence form of Attention used while
// generating: query row i is the token at position qOffset+i and sees keys
// j <= qOffset+i (and qOffset+i-j < Window when a window is set). out is
// overwritten; nothing is saved for a backward.
func (b *Backend) AttentionKV(out, q, k, v engine.Tensor, qOffset int, p engine.AttnParams) error {
	c := check("AttentionKV")
	ot, qt, kt, vt := c.float("out", out), c.float("q", q), c.float("k", k), c.float("v", v)
	if c.Err != nil {
		return c.Err
	}
	Tq, _ := c.AttentionKV(ot, qt, kt, vt, qOffset, p, 0)
	Tk := qOffset + Tq
	H, KVH, D := p.NHeads, p.NKVHeads, p.HeadDim
	c.disjoint("out", ot, "q", qt)
	c.disjoint("out", ot, "k", kt)
	c.disjoint("out", ot, "v", vt)
	if c.Err != nil {
		return c.Err
	}
	od, qd, kd, vd := ot.floats(), qt.floats(), kt.floats(), vt.floats()
	g := attnGeometry{scale: float64(p.Scale), softCap: float64(p.SoftCap)}
	group := H / KVH
	parallelFor(H*Tq, 4, func(lo, hi int) {
		prob := make([]float64, Tk)
		acc := make([]float64, D)
		for r := lo; r < hi; r++ {
			h, i := r/Tq, r%Tq
			kvh, last := h/group, qOffset+i
			first := 0
			if p.Window > 0 && last-p.Window+1 > 0 {
				first = last - p.Window + 1
			}
			qi := qd[(i*H+h)*D : (i*H+h+1)*D]
			m := math.Inf(-1)
			for j := first; j <= last; j++ {
				s, _ := g.score(dot64(qi, kd[(j*KVH+kvh)*D:(j*KVH+kvh+1)*D]))
				prob[j] = s
				m = max(m, s)
			}
			var sum float64
			for j := first; j <= last; j++ {
				prob[j] = math.Exp(prob[j] - m)
				sum += prob[j]
			}
			clear(acc)
			for j := first; j <= last; j++ {
				w := prob[j] / sum
				for d, x := range vd[(j*KVH+kvh)*D : (j*KVH+kvh+1)*D] {
					acc[d] += w * float64(x)
				}
			}
			oi := od[(i*H+h)*D : (i*H+h+1)*D]
			for d := range oi {
				oi[d] = float32(acc[d])
			}
		}
	})
	ot.settle()
	return nil
}
