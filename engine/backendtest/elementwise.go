package backendtest

import (
	"fmt"

	"whet/engine"
)

// The elementwise activations and gated MLPs (SwiGLU, GeGLU, GELU-tanh,
// exact GELU) share one test shape: random inputs of 9 rows by each of
// swigluCols, the op on both backends, every output compared.

// optional is the backend under test as the optional interface I, or
// skips the test; what names I and the model part that needs it.
func optional[I any](h *harness, what string) I {
	h.t.Helper()
	i, ok := h.dut.(I)
	if !ok {
		h.t.Skipf("%s does not implement %s", h.dut.Name(), what)
	}
	return i
}

// testActivation checks out = act(x) (op's name in messages).
func testActivation(h *harness, op string, dut, ref func(out, x engine.Tensor) error) {
	for _, cols := range swigluCols {
		h.sub(fmt.Sprintf("9x%d", cols), func(h *harness) {
			x := h.randn(h.act, 3, 9, cols)
			out := h.output(h.act, 9, cols)
			h.check(op, dut(out.dut, x.dut))
			h.oracle(op, ref(out.ref, x.ref))
			h.compare("out", out)
		})
	}
}

// testActivationBackward checks dx = dOut*act'(x), dx overwritten.
func testActivationBackward(h *harness, op string, dut, ref func(dx, dOut, x engine.Tensor) error) {
	for _, cols := range swigluCols {
		h.sub(fmt.Sprintf("9x%d", cols), func(h *harness) {
			x, dOut := h.randn(h.act, 3, 9, cols), h.randn(h.act, 1, 9, cols)
			dx := h.output(h.act, 9, cols)
			h.check(op, dut(dx.dut, dOut.dut, x.dut))
			h.oracle(op, ref(dx.ref, dOut.ref, x.ref))
			h.compare("dx (overwritten)", dx)
		})
	}
}

// testGated checks out = act(gate)*up.
func testGated(h *harness, op string, dut, ref func(out, gate, up engine.Tensor) error) {
	for _, cols := range swigluCols {
		h.sub(fmt.Sprintf("9x%d", cols), func(h *harness) {
			gate, up := h.randn(h.act, 3, 9, cols), h.randn(h.act, 1, 9, cols)
			out := h.output(h.act, 9, cols)
			h.check(op, dut(out.dut, gate.dut, up.dut))
			h.oracle(op, ref(out.ref, gate.ref, up.ref))
			h.compare("out", out)
		})
	}
}

// testGatedBackward checks the gated op's backward, dGate and dUp
// overwritten.
func testGatedBackward(h *harness, op string, dut, ref func(dGate, dUp, dOut, gate, up engine.Tensor) error) {
	for _, cols := range swigluCols {
		h.sub(fmt.Sprintf("9x%d", cols), func(h *harness) {
			gate, up, dOut := h.randn(h.act, 3, 9, cols), h.randn(h.act, 1, 9, cols), h.randn(h.act, 1, 9, cols)
			dGate, dUp := h.output(h.act, 9, cols), h.output(h.act, 9, cols)
			h.check(op, dut(dGate.dut, dUp.dut, dOut.dut, gate.dut, up.dut))
			h.oracle(op, ref(dGate.ref, dUp.ref, dOut.ref, gate.ref, up.ref))
			h.compare("dGate (overwritten)", dGate)
			h.compare("dUp (overwritten)", dUp)
		})
	}
}
