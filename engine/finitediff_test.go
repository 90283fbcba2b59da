package engine_test

import (
	"fmt"
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

// randomLoRAB sets every adapter's B to N(0, 0.3²) draws from rng (PEFT
// starts B at zero, where A's gradient vanishes and a wrong one would pass).
func randomLoRAB(t *testing.T, m *engine.Model, rng *rand.Rand) {
	t.Helper()
	for _, lin := range m.Linears() {
		v := make([]float32, lin.LoRA.B.W.Len())
		for i := range v {
			v[i] = float32(rng.NormFloat64() * 0.3)
		}
		if err := m.B.Upload(lin.LoRA.B.W, v); err != nil {
			t.Fatal(err)
		}
	}
}

// checkFiniteDiff compares one random element of each trainable
// parameter's gradient (grads, in TrainableParams order) with the central
// difference of lossAt, within 1e-3 + 2% (float32 on the CPU).
func checkFiniteDiff(t *testing.T, m *engine.Model, rng *rand.Rand, grads [][]float32, lossAt func() float64, what any) {
	t.Helper()
	checkFiniteDiffAt(t, m, rng, grads, lossAt, fmt.Sprintf("%+v ", what), fdStep{h: 3e-3, tol: 1e-3, coords: 1})
}

// fdStep is how a finite-difference check probes: the step h, the
// absolute tolerance (plus 2% of the difference) and how many random
// coordinates of each parameter.
type fdStep struct {
	h, tol float64
	coords int
}

// checkFiniteDiffAt compares step.coords random elements of each trainable
// parameter's gradient (grads, in TrainableParams order, read before any
// probe) with the central difference of lossAt, within step.tol + 2%;
// what prefixes each error.
func checkFiniteDiffAt(t *testing.T, m *engine.Model, rng *rand.Rand, grads [][]float32, lossAt func() float64, what string, step fdStep) {
	t.Helper()
	for pi, p := range m.TrainableParams() {
		w := make([]float32, p.W.Len())
		m.B.Download(p.W, w)
		for range step.coords {
			i := rng.IntN(len(w))
			orig := w[i]
			w[i] = orig + float32(step.h)
			m.B.Upload(p.W, w)
			lp := lossAt()
			w[i] = orig - float32(step.h)
			m.B.Upload(p.W, w)
			lm := lossAt()
			w[i] = orig
			m.B.Upload(p.W, w)
			fd := (lp - lm) / (2 * step.h)
			if g := float64(grads[pi][i]); math.Abs(fd-g) > step.tol+2e-2*math.Abs(fd) {
				t.Errorf("%s%s[%d]: analytic %.6g, finite difference %.6g", what, p.Name, i, g, fd)
			}
		}
	}
}
