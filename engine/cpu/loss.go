package cpu

import (
	"math"

	"whet/engine"
)

// IgnoreLabel marks a token that the loss skips (prompt tokens, padding),
// as in PyTorch's cross-entropy.
const IgnoreLabel = -100

// SoftmaxCrossEntropy writes losses[n] = logsumexp(logits[n]) - logits[n][label]
// and replaces logits with gradScale*(softmax - onehot); rows whose label is
// IgnoreLabel get loss 0 and gradient 0. The softmax subtracts the row's
// maximum first so large logits cannot overflow. Labels are checked before
// anything is written.
func (b *Backend) SoftmaxCrossEntropy(logits, labels, losses engine.Tensor, gradScale float32) error {
	c := check("SoftmaxCrossEntropy")
	lg := c.float("logits", logits)
	lb := c.intTensor("labels", labels)
	ls := c.f32("losses", losses)
	if c.Err != nil {
		return c.Err
	}
	n, vocab := engine.Rows(lg), engine.Cols(lg)
	c.Length("labels", lb, n)
	c.Length("losses", ls, n)
	c.disjoint("losses", ls, "logits", lg)
	if c.Err != nil {
		return c.Err
	}
	ld := lb.ints()
	for i, y := range ld {
		if y != IgnoreLabel && (y < 0 || int(y) >= vocab) {
			c.Failf("labels[%d] = %d is outside the vocabulary of %d (logits %v); use %d to ignore a token",
				i, y, vocab, lg.shape, IgnoreLabel)
			return c.Err
		}
	}
	xd, lossd := lg.floats(), ls.floats()
	scale := float64(gradScale)
	parallelFor(n, 4, func(lo, hi int) {
		for r := lo; r < hi; r++ {
			x := xd[r*vocab : (r+1)*vocab]
			y := ld[r]
			if y == IgnoreLabel {
				lossd[r] = 0
				clear(x)
				continue
			}
			m := math.Inf(-1)
			for _, v := range x {
				m = max(m, float64(v))
			}
			var sum float64
			for _, v := range x {
				sum += math.Exp(float64(v) - m)
			}
			lse := m + math.Log(sum)
			xy := float64(x[y])
			lossd[r] = float32(lse - xy)
			for j, v := range x {
				x[j] = float32(scale * math.Exp(float64(v)-lse))
			}
			// Subtract the one-hot in float64, before rounding p_y.
			x[y] = float32(scale * (math.Exp(xy-lse) - 1))
		}
	})
	lg.settle()
	return nil
}
