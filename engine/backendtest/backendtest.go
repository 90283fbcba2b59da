// Package backendtest is the conformance suite every engine.Backend runs:
// each op, forward and backward, on fresh seeded random inputs, compared
// with engine/cpu, the float32 oracle. A backend's test calls Run in one
// line:
//
//	func TestConformance(t *testing.T) {
//		backendtest.Run(t, func() (engine.Backend, error) { return New() }, backendtest.DefaultBF16())
//	}
//
// The backend under test gets its inputs in Tolerances.Act where a model
// would hold activations or frozen weights, and F32 for what is F32 by
// contract (fp32 master weights, their gradients, optimizer moments, saved
// statistics such as rstd and lse, losses). The oracle gets F32 tensors
// holding exactly the values the backend under test holds after its
// upload (so bf16 rounding of the inputs is not counted as error), and
// outputs are compared after Download.
//
// Every output starts out holding random values on both sides, so a backend
// that accumulates where the contract says overwrite, or the reverse, fails.
// An op a backend reports as engine.ErrNotImplemented is skipped, with the
// reason, rather than failed.
package backendtest

import (
	"errors"
	"fmt"
	"hash/fnv"
	"math"
	"math/rand/v2"
	"testing"

	"whet/engine"
	"whet/engine/cpu"
)

// Tol bounds one comparison: it passes when
//
//	max_i |got_i - want_i| <= Abs + Rel * max_i |want_i|
//
// The error is taken relative to the output's scale rather than element by
// element because reduced-precision kernels make errors proportional to
// the magnitudes summed, not to each result (which may cancel to near 0).
type Tol struct{ Abs, Rel float64 }

// Tolerances configures Run for one kind of backend.
type Tolerances struct {
	// Act is the dtype of activations and weights given to the backend
	// under test: engine.F32 or engine.BF16.
	Act engine.DType
	// Default bounds every comparison not named in PerOp.
	Default Tol
	// PerOp overrides Default for an op, keyed by its sub-test name
	// (for example "AttentionBackward").
	PerOp map[string]Tol
}

// DefaultF32 is for backends computing in float32 throughout: differences
// come only from summation order.
func DefaultF32() Tolerances {
	return Tolerances{Act: engine.F32, Default: Tol{Abs: 1e-6, Rel: 2e-5}}
}

// DefaultBF16 is for backends holding activations and weights in bf16 and
// accumulating in fp32. Outputs rounded to bf16 carry a relative error up
// to 2^-9; kernels that round intermediates (attention probabilities, the
// backward's dS) roughly double or triple that.
func DefaultBF16() Tolerances {
	return Tolerances{
		Act:     engine.BF16,
		Default: Tol{Abs: 1e-5, Rel: 8e-3},
		PerOp: map[string]Tol{
			"Attention":         {Abs: 1e-5, Rel: 1.5e-2},
			"AttentionBackward": {Abs: 1e-5, Rel: 3e-2},
			"AttentionKV":       {Abs: 1e-5, Rel: 1.5e-2},
		},
	}
}

func (tol Tolerances) forOp(op string) Tol {
	if x, ok := tol.PerOp[op]; ok {
		return x
	}
	return tol.Default
}

// Run runs the whole suite, one sub-test per op, on the backend that
// newBackend returns (called once; a backend that implements
// engine.Closer is closed at the end).
func Run(t *testing.T, newBackend func() (engine.Backend, error), tol Tolerances) {
	t.Helper()
	if tol.Act != engine.F32 && tol.Act != engine.BF16 {
		t.Fatalf("backendtest: Tolerances.Act is %s, want f32 or bf16", tol.Act)
	}
	dut, err := newBackend()
	if err != nil {
		t.Fatalf("backendtest: creating the backend under test: %v", err)
	}
	if c, ok := dut.(engine.Closer); ok {
		t.Cleanup(func() {
			if err := c.Close(); err != nil {
				t.Errorf("backendtest: closing %s: %v", dut.Name(), err)
			}
		})
	}
	for _, op := range suite {
		t.Run(op.name, func(t *testing.T) {
			h := &harness{t: t, op: op.name, dut: dut, ref: cpu.New(), tols: tol, tol: tol.forOp(op.name), act: tol.Act, rng: seeded(op.name)}
			t.Cleanup(h.free)
			op.run(h)
		})
	}
}

// seeded gives each op its own random stream, so that adding an op or
// running one alone does not change another's inputs.
func seeded(name string) *rand.Rand {
	f := fnv.New64a()
	f.Write([]byte(name))
	return rand.New(rand.NewPCG(f.Sum64(), 0x5eed))
}

// harness holds one op's sub-test: both backends and what it allocated.
type harness struct {
	t     *testing.T
	op    string
	dut   engine.Backend // the backend under test
	ref   *cpu.Backend   // the oracle
	tols  Tolerances     // all of them, for a case that borrows another op's
	tol   Tol            // this op's
	act   engine.DType
	rng   *rand.Rand
	owned []pair
}

// pair is one logical tensor, held by both backends with the same values.
type pair struct {
	dut, ref engine.Tensor
}

func (h *harness) free() {
	for _, p := range h.owned {
		h.dut.Free(p.dut)
		h.ref.Free(p.ref)
	}
	h.owned = nil
}

// check ends the sub-test on an error from the backend under test; an
// engine.ErrNotImplemented skips it instead.
func (h *harness) check(what string, err error) {
	h.t.Helper()
	if err == nil {
		return
	}
	if errors.Is(err, engine.ErrNotImplemented) {
		h.t.Skipf("%s: %s: %v", h.dut.Name(), what, err)
	}
	h.t.Fatalf("%s: %s: %v", h.dut.Name(), what, err)
}

// oracle ends the sub-test on an error from the CPU backend: the suite
// itself built a bad call.
func (h *harness) oracle(what string, err error) {
	h.t.Helper()
	if err != nil {
		h.t.Fatalf("oracle (cpu): %s: %v", what, err)
	}
}

// alloc allocates a pair: dt on the backend under test, the matching
// oracle dtype (F32 for floats, I32 for ints).
func (h *harness) alloc(dt engine.DType, shape ...int) pair {
	h.t.Helper()
	d, err := h.dut.Alloc(dt, shape...)
	h.check(fmt.Sprintf("Alloc %s %v", dt, shape), err)
	refDT := engine.F32
	if dt == engine.I32 {
		refDT = engine.I32
	}
	r, err := h.ref.Alloc(refDT, shape...)
	h.oracle("Alloc", err)
	p := pair{dut: d, ref: r}
	h.owned = append(h.owned, p)
	return p
}

// input makes a pair holding data: uploaded to the backend under test in
// dt, read back, and those exact values given to the oracle.
func (h *harness) input(dt engine.DType, data []float32, shape ...int) pair {
	h.t.Helper()
	p := h.alloc(dt, shape...)
	h.check(fmt.Sprintf("Upload %s %v", dt, shape), h.dut.Upload(p.dut, data))
	h.oracle("Upload", h.ref.Upload(p.ref, h.held(p.dut)))
	return p
}

// randn is an input of normal random values times scale.
func (h *harness) randn(dt engine.DType, scale float32, shape ...int) pair {
	h.t.Helper()
	n := 1
	for _, d := range shape {
		n *= d
	}
	x := make([]float32, n)
	for i := range x {
		x[i] = float32(h.rng.NormFloat64()) * scale
	}
	return h.input(dt, x, shape...)
}

// output is a pair prefilled with random values, so accumulate and
// overwrite differ visibly.
func (h *harness) output(dt engine.DType, shape ...int) pair {
	h.t.Helper()
	return h.randn(dt, 1, shape...)
}

func (h *harness) ints(data []int32) pair {
	h.t.Helper()
	p := h.alloc(engine.I32, len(data))
	h.check("UploadInt32", h.dut.UploadInt32(p.dut, data))
	h.oracle("UploadInt32", h.ref.UploadInt32(p.ref, data))
	return p
}

// view makes the same view on both sides.
func (h *harness) view(p pair, offset int, shape ...int) pair {
	h.t.Helper()
	d, err := h.dut.View(p.dut, offset, shape...)
	h.check(fmt.Sprintf("View at %d as %v", offset, shape), err)
	r, err := h.ref.View(p.ref, offset, shape...)
	h.oracle("View", err)
	return pair{dut: d, ref: r}
}

// held downloads a tensor of the backend under test.
func (h *harness) held(x engine.Tensor) []float32 {
	h.t.Helper()
	h.check("Sync", h.dut.Sync())
	out := make([]float32, x.Len())
	h.check(fmt.Sprintf("Download %s %v", x.DType(), x.Shape()), h.dut.Download(x, out))
	return out
}

func (h *harness) refValues(x engine.Tensor) []float32 {
	h.t.Helper()
	out := make([]float32, x.Len())
	h.oracle("Download", h.ref.Download(x, out))
	return out
}

// compare checks a pair's values against the op's tolerance.
func (h *harness) compare(name string, p pair) {
	h.t.Helper()
	h.compareValues(name, h.held(p.dut), h.refValues(p.ref), h.tol)
}

// compareExact requires identical values (conversions, copies, masks).
func (h *harness) compareExact(name string, p pair) {
	h.t.Helper()
	h.compareValues(name, h.held(p.dut), h.refValues(p.ref), Tol{})
}

func (h *harness) compareValues(name string, got, want []float32, tol Tol) {
	h.t.Helper()
	if len(got) != len(want) {
		h.t.Fatalf("%s: %d values, oracle has %d", name, len(got), len(want))
	}
	var maxDiff, maxRef float64
	worst := 0
	for i := range want {
		g, w := float64(got[i]), float64(want[i])
		d := math.Abs(g - w)
		if math.IsNaN(g) != math.IsNaN(w) {
			h.t.Errorf("%s[%d] = %g, oracle %g", name, i, g, w)
			return
		}
		if math.IsInf(w, 0) && g != w {
			h.t.Errorf("%s[%d] = %g, oracle %g", name, i, g, w)
			return
		}
		if math.IsNaN(w) || math.IsInf(w, 0) {
			continue
		}
		if d > maxDiff {
			maxDiff, worst = d, i
		}
		maxRef = max(maxRef, math.Abs(w))
	}
	bound := tol.Abs + tol.Rel*maxRef
	if maxDiff > bound || math.IsNaN(maxDiff) {
		h.t.Errorf("%s: max error %.3g > %.3g (abs %g + rel %g × max|want| %.3g); worst [%d]: got %g, oracle %g",
			name, maxDiff, bound, tol.Abs, tol.Rel, maxRef, worst, got[worst], want[worst])
		return
	}
	h.t.Logf("%s: max error %.3g (bound %.3g)", name, maxDiff, bound)
}

// compareScalar checks one number with the op's tolerance relative to it.
func (h *harness) compareScalar(name string, got, want float64) {
	h.t.Helper()
	if d := math.Abs(got - want); d > h.tol.Abs+h.tol.Rel*math.Abs(want) || math.IsNaN(got) {
		h.t.Errorf("%s = %g, oracle %g (error %.3g)", name, got, want, d)
	}
}

// sub runs a named case of the op as a child test with its own harness.
func (h *harness) sub(name string, fn func(h *harness)) {
	h.t.Helper()
	h.t.Run(name, func(t *testing.T) {
		c := &harness{t: t, op: h.op, dut: h.dut, ref: h.ref, tols: h.tols, tol: h.tol, act: h.act, rng: h.rng}
		t.Cleanup(c.free)
		fn(c)
	})
}
