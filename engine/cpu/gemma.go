package cpu

import (
	"math"

	"whet/engine"
)

// The ops the 2025 families add to the Llama set: Gemma's GELU-tanh gated
// MLP and Gemma 2's logit soft-cap (attention scores are capped inside
// Attention, see AttnParams.SoftCap), and Phi-3's partial rotary embedding.

var (
	_ engine.GELUTanhGLU = (*Backend)(nil)
	_ engine.SoftCapper  = (*Backend)(nil)
	_ engine.PartialRoPE = (*Backend)(nil)
)

// geluTanhC is sqrt(2/pi), the constant of the tanh approximation.
var geluTanhC = math.Sqrt(2 / math.Pi)

// geluTanh returns gelu_pytorch_tanh(x) and its derivative.
func geluTanh(x float64) (y, dy float64) {
	u := geluTanhC * (x + 0.044715*x*x*x)
	t := math.Tanh(u)
	y = 0.5 * x * (1 + t)
	dy = 0.5*(1+t) + 0.5*x*(1-t*t)*geluTanhC*(1+3*0.044715*x*x)
	return y, dy
}

// GeGLU writes out = gelu_tanh(gate)*up.
func (b *Backend) GeGLU(out, gate, up engine.Tensor) error {
	return gatedForward("GeGLU", out, gate, up, func(g, u float32) float32 {
		y, _ := geluTanh(float64(g))
		return float32(y * float64(u))
	})
}

// GeGLUBackward overwrites dGate = dOut*up*gelu_tanh'(g) and
// dUp = dOut*gelu_tanh(g); outputs may be the inputs' own tensors.
func (b *Backend) GeGLUBackward(dGate, dUp, dOut, gate, up engine.Tensor) error {
	return gatedBackward("GeGLUBackward", dGate, dUp, dOut, gate, up, geluTanh)
}

// SoftCap sets x = cap*tanh(x/cap) in place.
func (b *Backend) SoftCap(x engine.Tensor, capValue float32) error {
	c := check("SoftCap")
	xt := c.float("x", x)
	if c.Err == nil && !(capValue > 0) {
		c.Failf("cap %v must be positive", capValue)
	}
	if c.Err != nil {
		return c.Err
	}
	xd := xt.floats()
	cp := float64(capValue)
	parallelFor(len(xd), 1<<14, func(lo, hi int) {
		for i := lo; i < hi; i++ {
			xd[i] = float32(cp * math.Tanh(float64(xd[i])/cp))
		}
	})
	xt.settle()
	return nil
}

// SoftCapBackward multiplies dx in place by 1 - (y/cap)^2, the derivative
// of the cap at the capped value y.
func (b *Backend) SoftCapBackward(dx, y engine.Tensor, capValue float32) error {
	c := check("SoftCapBackward")
	dt := c.float("dx", dx)
	yt := c.float("y", y)
	c.SameLen("dx", dt, "y", yt)
	if c.Err == nil && !(capValue > 0) {
		c.Failf("cap %v must be positive", capValue)
	}
	if c.Err != nil {
		return c.Err
	}
	dd, yd := dt.floats(), yt.floats()
	cp := float64(capValue)
	parallelFor(len(dd), 1<<14, func(lo, hi int) {
		for i := lo; i < hi; i++ {
			r := float64(yd[i]) / cp
			dd[i] = float32(float64(dd[i]) * (1 - r*r))
		}
	})
	dt.settle()
	return nil
}
