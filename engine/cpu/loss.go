package cpu

import (
	"math"

	"whet/engine"
)

// IgnoreLabel marks a token that the loss skips (prompt tokens, padding),
// as in PyTorch's cross-entropy.
const IgnoreLabel = -100

var _ engine.CappedCrossEntropy = (*Backend)(nil)

// SoftmaxCrossEntropy writes losses[n] = logsumexp(logits[n]) - logits[n][label]
// and replaces logits with gradScale*(softmax - onehot); rows whose label is
// IgnoreLabel get loss 0 and gradient 0. The softmax subtracts the row's
// maximum first so large logits cannot overflow. Labels are checked before
// anything is written.
func (b *Backend) SoftmaxCrossEntropy(logits, labels, losses engine.Tensor, gradScale float32) error {
	c := check("SoftmaxCrossEntropy")
	lg := c.float("logits", logits)
	return crossEntropy(&c, lg, lg, labels, losses, gradScale, 0)
}

// SoftmaxCrossEntropyCapped (engine.CappedCrossEntropy) is the
// cross-entropy of the soft-capped logits y = cap*tanh(x/cap) with the
// gradient taken with respect to the raw logits x:
// gradScale*(softmax(y) - onehot)*(1 - (y/cap)^2), written to grad (the
// logits themselves, or a separate tensor, leaving logits as they were).
// y is rounded to float32 as a capped float32 logit would be; the
// gradient is rounded once.
func (b *Backend) SoftmaxCrossEntropyCapped(grad, logits, labels, losses engine.Tensor, gradScale, capValue float32) error {
	c := check("SoftmaxCrossEntropyCapped")
	gt := c.float("grad", grad)
	lg := c.float("logits", logits)
	if c.Err == nil && !(capValue > 0) {
		c.Failf("cap %v must be positive", capValue)
	}
	if c.Err == nil {
		c.Matrix("grad", gt, engine.Rows(lg), engine.Cols(lg))
		if gt != lg {
			c.disjoint("grad", gt, "logits", lg)
		}
	}
	return crossEntropy(&c, gt, lg, labels, losses, gradScale, float64(capValue))
}

// FusedSoftCap (engine.CappedCrossEntropy): the CPU backend always fuses.
func (b *Backend) FusedSoftCap() bool { return engine.FusedSoftCapOn(true) }

// crossEntropy checks the labels and losses and computes the loss of
// each row of lg (soft-capped first when cp > 0) and its gradient into gt,
// which is lg itself or disjoint from it.
func crossEntropy(c *checker, gt, lg *Tensor, labels, losses engine.Tensor, gradScale float32, cp float64) error {
	lb := c.intTensor("labels", labels)
	ls := c.f32("losses", losses)
	if c.Err != nil {
		return c.Err
	}
	n, vocab, _ := c.CrossEntropy(lg, lb, ls)
	c.disjoint("losses", ls, "logits", lg)
	c.disjoint("losses", ls, "grad", gt)
	if c.Err != nil {
		return c.Err
	}
	ld := lb.ints()
	for i, y := range ld {
		if y != IgnoreLabel && (y < 0 || int(y) >= vocab) {
			return c.BadLabel(i, y, vocab, lg, IgnoreLabel)
		}
	}
	xd, gd, lossd := lg.floats(), gt.floats(), ls.floats()
	scale := float64(gradScale)
	parallelFor(n, 4, func(lo, hi int) {
		var ys []float64 // the capped row
		if cp > 0 {
			ys = make([]float64, vocab)
		}
		for r := lo; r < hi; r++ {
			x, g := xd[r*vocab:(r+1)*vocab], gd[r*vocab:(r+1)*vocab]
			y := ld[r]
			if y == IgnoreLabel {
				lossd[r] = 0
				clear(g)
				continue
			}
			at := func(j int) float64 { return float64(x[j]) }
			if cp > 0 {
				for j, v := range x {
					ys[j] = float64(float32(cp * math.Tanh(float64(v)/cp)))
				}
				at = func(j int) float64 { return ys[j] }
			}
			m := math.Inf(-1)
			for j := range x {
				m = max(m, at(j))
			}
			var sum float64
			for j := range x {
				sum += math.Exp(at(j) - m)
			}
			lse := m + math.Log(sum)
			xy := at(int(y))
			lossd[r] = float32(lse - xy)
			for j := range x {
				p := math.Exp(at(j) - lse)
				if j == int(y) {
					// Subtract the one-hot in float64, before rounding p_y.
					p--
				}
				if cp > 0 {
					t := ys[j] / cp
					p *= 1 - t*t
				}
				g[j] = float32(scale * p)
			}
		}
	})
	gt.settle()
	return nil
}
