package cuda

import (
	"fmt"

	"whet/engine"
)

// The ops the 2025 families add to the Llama set (engine/backend.go's
// optional interfaces): Gemma's GELU-tanh gated MLP (kernels/geglu.cu),
// Gemma 2's final-logit soft-cap (kernels/softcap.cu) and Phi-3's partial
// rotary embedding (RoPEPartial, in layers.go). Attention-score soft-caps
// and sliding windows are parameters of the attention kernels.
var (
	_ engine.GELUTanhGLU = (*Backend)(nil)
	_ engine.SoftCapper  = (*Backend)(nil)
	_ engine.PartialRoPE = (*Backend)(nil)
)

// GeGLU writes out = gelu_tanh(gate)*up.
func (b *Backend) GeGLU(out, gate, up engine.Tensor) error {
	return b.gatedForward("GeGLU", actGELUTanh, out, gate, up)
}

// GeGLUBackward overwrites dGate and dUp (either may be the buffer of gate
// or up: each element is read before it is written).
func (b *Backend) GeGLUBackward(dGate, dUp, dOut, gate, up engine.Tensor) error {
	return b.gatedBackward("GeGLUBackward", actGELUTanh, dGate, dUp, dOut, gate, up)
}

// SoftCap sets x = c*tanh(x/c) in place.
func (b *Backend) SoftCap(x engine.Tensor, capValue float32) error {
	c := b.check("SoftCap")
	xt := c.float("x", x)
	checkCap(&c, capValue)
	return b.launchOver(&c, xt, func() error {
		return b.launch(fmt.Sprintf("SoftCap %s %v cap %g", xt.dt, xt.shape, capValue), "softcap.cu", "softcap_forward", b.gridFor(xt.n), block256, 0,
			xt.ptr(), dt(xt), int64(xt.n), capValue)
	})
}

// SoftCapBackward multiplies dx in place by 1 - (y/c)^2, y the capped
// values the forward wrote.
func (b *Backend) SoftCapBackward(dx, y engine.Tensor, capValue float32) error {
	c := b.check("SoftCapBackward")
	d := c.float("dx", dx)
	yt := c.float("y", y)
	c.SameLen("dx", d, "y", yt)
	checkCap(&c, capValue)
	return b.launchOver(&c, d, func() error {
		return b.launch(fmt.Sprintf("SoftCapBackward %s %v cap %g", d.dt, d.shape, capValue), "softcap.cu", "softcap_backward", b.gridFor(d.n), block256, 0,
			d.ptr(), dt(d), yt.ptr(), dt(yt), int64(d.n), capValue)
	})
}

// checkCap refuses a cap that is not a positive number (as engine/cpu does).
func checkCap(c *checker, capValue float32) {
	if c.Err == nil && !(capValue > 0) {
		c.Failf("cap %v must be positive", capValue)
	}
}
