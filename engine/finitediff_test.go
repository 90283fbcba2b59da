package engine_test

import (
	"math"
	"math/rand/v2"
	"testing"

	"whet/engine"
)

// trainableGrads downloads every trainable parameter's gradient.
func trainableGrads(m *engine.Model) [][]float32 {
	var out [][]float32
	for _, p := range m.TrainableParams() {
		g := make([]float32, p.Grad.Len())
		m.B.Download(p.Grad, g)
		out = append(out, g)
	}
	return out
}

// checkFiniteDiff compares one random element of each trainable
// parameter's gradient (grads, in TrainableParams order) with the central
// difference of lossAt, within 1e-3 + 2% (float32 on the CPU).
func checkFiniteDiff(t *testing.T, m *engine.Model, rng *rand.Rand, grads [][]float32, lossAt func() float64, what any) {
	t.Helper()
	for pi, p := range m.TrainableParams() {
		w := make([]float32, p.W.Len())
		m.B.Download(p.W, w)
		i := rng.IntN(len(w))
		const h = 3e-3
		orig := w[i]
		w[i] = orig + h
		m.B.Upload(p.W, w)
		lp := lossAt()
		w[i] = orig - h
		m.B.Upload(p.W, w)
		lm := lossAt()
		w[i] = orig
		m.B.Upload(p.W, w)
		fd := (lp - lm) / (2 * h)
		if g := float64(grads[pi][i]); math.Abs(fd-g) > 1e-3+2e-2*math.Abs(fd) {
			t.Errorf("%+v %s[%d]: analytic %.6g, finite difference %.6g", what, p.Name, i, g, fd)
		}
	}
}
