package cpu

import (
	"math"

	"whet/engine"
	"whet/engine/opcheck"
)

// Attention semantics (the contract engine/cuda must match):
//
//   - Token i of a packed batch attends to token j when both lie in the same
//     sequence of seqs.Starts and j <= i (causal).
//   - With p.Window = W > 0 it also needs j > i - W: a query sees itself and
//     the W-1 tokens before it. This is the test of transformers'
//     masking_utils.sliding_window_overlay (kv_idx > q_idx - sliding_window),
//     used by Mistral and Qwen2. W = 0 means no window.
//   - GQA: query head h reads key/value head h / (NHeads/NKVHeads).
//   - Scores are p.Scale * q·k, capped at SoftCap*tanh(s/SoftCap) when
//     p.SoftCap > 0 (Gemma 2); lse[h, i] is the natural log of the sum of
//     exp(score) over the keys row i sees, so exp(score - lse) is the
//     attention probability. The backward recomputes probabilities from it
//     rather than storing a T×T matrix, as flash attention does.
//
// Every row sees at least its own token, so no row is ever empty.

// attnGeometry is the checked shape of one attention call.
type attnGeometry struct {
	T, H, KVH, D, group, window int
	scale, softCap              float64
	seqStart, seqEnd            []int   // per token: bounds of its sequence
	maxLen                      int     // longest sequence
	groups                      []int32 // per token (AttentionGroups); nil: causal attention
}

// score is the attention score of q·k = dot: scaled, and capped when a
// soft-cap is set. dscore is its derivative by the raw scaled score
// (1 - (s/cap)^2), by which the backward multiplies.
func (g *attnGeometry) score(dot float64) (s, dscore float64) {
	s = g.scale * dot
	if g.softCap <= 0 {
		return s, 1
	}
	t := math.Tanh(s / g.softCap)
	return g.softCap * t, 1 - t*t
}

// firstKey is the first key token that query i sees.
func (g *attnGeometry) firstKey(i int) int {
	lo := g.seqStart[i]
	if g.window > 0 && i-g.window+1 > lo {
		lo = i - g.window + 1
	}
	return lo
}

// endQuery is one past the last query token that sees key j.
func (g *attnGeometry) endQuery(j int) int {
	hi := g.seqEnd[j]
	if g.window > 0 && j+g.window < hi {
		hi = j + g.window
	}
	return hi
}

// keys is the range [lo, hi) of the key tokens query i may see: causal
// attention's window of them, or with groups its whole sequence (sees
// says which).
func (g *attnGeometry) keys(i int) (lo, hi int) {
	if g.groups == nil {
		return g.firstKey(i), i + 1
	}
	return g.seqStart[i], g.seqEnd[i]
}

// queries is the range [lo, hi) of the query tokens that may see key j.
func (g *attnGeometry) queries(j int) (lo, hi int) {
	if g.groups == nil {
		return j, g.endQuery(j)
	}
	return g.seqStart[j], g.seqEnd[j]
}

// sees reports whether query i attends to key j within those ranges:
// always for causal attention; with groups, causal or in i's group, and
// within the window when one is set (engine.GroupAttention).
func (g *attnGeometry) sees(i, j int) bool {
	if g.groups == nil {
		return true
	}
	if g.window > 0 && j <= i-g.window {
		return false
	}
	gi := g.groups[i]
	return j <= i || (gi >= 0 && gi == g.groups[j])
}

// attnGeometry checks q, k, v against p and seqs (engine/opcheck's rules,
// which engine/cuda applies too) and fills in the geometry.
func (c *checker) attnGeometry(q, k, v *Tensor, seqs engine.SeqLayout, p engine.AttnParams) *attnGeometry {
	if c.Err != nil {
		return nil
	}
	T, ok := c.Attention(q, k, v, seqs, p, 0)
	if !ok {
		return nil
	}
	g := &attnGeometry{
		T: T, H: p.NHeads, KVH: p.NKVHeads, D: p.HeadDim,
		group: p.NHeads / p.NKVHeads, window: p.Window, scale: float64(p.Scale), softCap: float64(p.SoftCap),
	}
	st := seqs.Starts
	g.seqStart = make([]int, g.T)
	g.seqEnd = make([]int, g.T)
	for s := 0; s+1 < len(st); s++ {
		lo, hi := int(st[s]), int(st[s+1])
		g.maxLen = max(g.maxLen, hi-lo)
		for i := lo; i < hi; i++ {
			g.seqStart[i], g.seqEnd[i] = lo, hi
		}
	}
	return g
}

// Attention writes out and lse; see the semantics above.
func (b *Backend) Attention(out, lse, q, k, v engine.Tensor, seqs engine.SeqLayout, p engine.AttnParams) error {
	c := check("Attention")
	ot := c.float("out", out)
	lt := c.f32("lse", lse)
	qt := c.float("q", q)
	kt := c.float("k", k)
	vt := c.float("v", v)
	g := c.attnGeometry(qt, kt, vt, seqs, p)
	if c.Err != nil {
		return c.Err
	}
	return c.attentionForward(g, ot, lt, qt, kt, vt)
}

// attentionForward checks out and lse against g (and apart from q, k and
// v) and computes them over the pairs g admits.
func (c *checker) attentionForward(g *attnGeometry, ot, lt, qt, kt, vt *Tensor) error {
	c.Matrix("out", ot, g.T, g.H*g.D)
	c.Length("lse", lt, g.H*g.T)
	if !opcheck.Disjoint(&c.Checker, overlaps,
		[]string{"out", "lse"}, []*Tensor{ot, lt},
		[]string{"q", "k", "v"}, []*Tensor{qt, kt, vt}) {
		return c.Err
	}
	od, ld, qd, kd, vd := ot.floats(), lt.floats(), qt.floats(), kt.floats(), vt.floats()
	T, H, KVH, D := g.T, g.H, g.KVH, g.D
	parallelFor(H*T, 8, func(lo, hi int) {
		prob := make([]float64, g.maxLen)
		acc := make([]float64, D)
		for r := lo; r < hi; r++ {
			h, i := r/T, r%T
			kvh := h / g.group
			qi := qd[(i*H+h)*D : (i*H+h+1)*D]
			j0, j1 := g.keys(i)
			m := math.Inf(-1)
			for j := j0; j < j1; j++ {
				if !g.sees(i, j) {
					continue
				}
				s, _ := g.score(dot64(qi, kd[(j*KVH+kvh)*D:(j*KVH+kvh+1)*D]))
				prob[j-j0] = s
				m = max(m, s)
			}
			var sum float64
			for j := j0; j < j1; j++ {
				if g.sees(i, j) {
					e := math.Exp(prob[j-j0] - m)
					prob[j-j0] = e
					sum += e
				}
			}
			clear(acc)
			for j := j0; j < j1; j++ {
				if !g.sees(i, j) {
					continue
				}
				w := prob[j-j0] / sum
				for d, x := range vd[(j*KVH+kvh)*D : (j*KVH+kvh+1)*D] {
					acc[d] += w * float64(x)
				}
			}
			oi := od[(i*H+h)*D : (i*H+h+1)*D]
			for d := range oi {
				oi[d] = float32(acc[d])
			}
			ld[h*T+i] = float32(m + math.Log(sum))
		}
	})
	ot.settle()
	return nil
}

// AttentionBackward overwrites dq, dk and dv. With P = exp(score - lse),
// Delta_i = dOut_i·out_i and dS_ij = P_ij*(dOut_i·v_j - Delta_i):
//
//	dq_i = Scale * sum_j dS_ij k_j
//	dk_j = Scale * sum over query heads of the group and i of dS_ij q_i
//	dv_j = sum over query heads of the group and i of P_ij dOut_i
//
// dq is computed row by row (query, head) and dk, dv row by row (key, kv
// head), so both passes run in parallel without two goroutines ever
// writing the same element.
func (b *Backend) AttentionBackward(dq, dk, dv, dOut, q, k, v, out, lse engine.Tensor, seqs engine.SeqLayout, p engine.AttnParams) error {
	c := check("AttentionBackward")
	dqt := c.float("dq", dq)
	dkt := c.float("dk", dk)
	dvt := c.float("dv", dv)
	dot := c.float("dOut", dOut)
	qt := c.float("q", q)
	kt := c.float("k", k)
	vt := c.float("v", v)
	ot := c.float("out", out)
	lt := c.f32("lse", lse)
	g := c.attnGeometry(qt, kt, vt, seqs, p)
	if c.Err != nil {
		return c.Err
	}
	return c.attentionBackward(g, dqt, dkt, dvt, dot, qt, kt, vt, ot, lt)
}

// attentionBackward checks the gradients against g (and apart from the
// inputs) and computes dq, dk and dv over the pairs g admits.
func (c *checker) attentionBackward(g *attnGeometry, dqt, dkt, dvt, dot, qt, kt, vt, ot, lt *Tensor) error {
	c.AttentionGrads(g.T, g.H, g.KVH, g.D, dqt, dkt, dvt, dot, ot, lt)
	if !opcheck.Disjoint(&c.Checker, overlaps,
		[]string{"dq", "dk", "dv"}, []*Tensor{dqt, dkt, dvt},
		[]string{"dOut", "q", "k", "v", "out", "lse"}, []*Tensor{dot, qt, kt, vt, ot, lt}) {
		return c.Err
	}
	T, H, KVH, D := g.T, g.H, g.KVH, g.D
	dqd, dkd, dvd := dqt.floats(), dkt.floats(), dvt.floats()
	dod, qd, kd, vd, od, ld := dot.floats(), qt.floats(), kt.floats(), vt.floats(), ot.floats(), lt.floats()
	row := func(x []float32, t, heads, h int) []float32 { return x[(t*heads+h)*D : (t*heads+h+1)*D] }

	delta := make([]float64, H*T) // [H, T]
	parallelFor(H*T, 64, func(lo, hi int) {
		for r := lo; r < hi; r++ {
			h, i := r/T, r%T
			delta[r] = dot64(row(dod, i, H, h), row(od, i, H, h))
		}
	})

	parallelFor(H*T, 8, func(lo, hi int) {
		acc := make([]float64, D)
		for r := lo; r < hi; r++ {
			h, i := r/T, r%T
			kvh := h / g.group
			qi, doi := row(qd, i, H, h), row(dod, i, H, h)
			lse := float64(ld[h*T+i])
			clear(acc)
			j0, j1 := g.keys(i)
			for j := j0; j < j1; j++ {
				if !g.sees(i, j) {
					continue
				}
				kj := row(kd, j, KVH, kvh)
				sc, dsc := g.score(dot64(qi, kj))
				pr := math.Exp(sc - lse)
				ds := pr * (dot64(doi, row(vd, j, KVH, kvh)) - delta[r]) * dsc
				for d, x := range kj {
					acc[d] += ds * float64(x)
				}
			}
			dqi := row(dqd, i, H, h)
			for d := range dqi {
				dqi[d] = float32(g.scale * acc[d])
			}
		}
	})

	parallelFor(KVH*T, 8, func(lo, hi int) {
		accK := make([]float64, D)
		accV := make([]float64, D)
		for r := lo; r < hi; r++ {
			kvh, j := r/T, r%T
			kj, vj := row(kd, j, KVH, kvh), row(vd, j, KVH, kvh)
			clear(accK)
			clear(accV)
			i0, i1 := g.queries(j)
			for h := kvh * g.group; h < (kvh+1)*g.group; h++ {
				for i := i0; i < i1; i++ {
					if !g.sees(i, j) {
						continue
					}
					qi, doi := row(qd, i, H, h), row(dod, i, H, h)
					sc, dsc := g.score(dot64(qi, kj))
					pr := math.Exp(sc - float64(ld[h*T+i]))
					ds := pr * (dot64(doi, vj) - delta[h*T+i]) * dsc
					for d := range accK {
						accV[d] += pr * float64(doi[d])
						accK[d] += ds * float64(qi[d])
					}
				}
			}
			dkj, dvj := row(dkd, j, KVH, kvh), row(dvd, j, KVH, kvh)
			for d := range dkj {
				dkj[d] = float32(g.scale * accK[d])
				dvj[d] = float32(accV[d])
			}
		}
	})
	dqt.settle()
	dkt.settle()
	dvt.settle()
	return nil
}

// dot64 is the dot product of two equal-length rows in float64.
func dot64(a, b []float32) float64 {
	var s float64
	for i, x := range a {
		s += float64(x) * float64(b[i])
	}
	return s
}
