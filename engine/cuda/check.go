package cuda

import (
	"fmt"

	"whet/engine"
)

// checker collects the first argument error of an op so that the op can
// validate all its arguments in a row and return once. Messages follow
// engine/cpu's, with the "cuda:" prefix.
type checker struct {
	op  string
	b   *Backend
	err error
}

func (c *checker) failf(format string, args ...any) {
	if c.err == nil {
		c.err = fmt.Errorf("cuda: "+c.op+": "+format, args...)
	}
}

// tensor unwraps a live tensor of this backend, of any dtype.
func (c *checker) tensor(name string, t engine.Tensor) *Tensor {
	if c.err != nil {
		return nil
	}
	ct, ok := t.(*Tensor)
	if !ok || ct == nil {
		c.failf("%s is %T, not a cuda tensor", name, t)
		return nil
	}
	if ct.b != c.b {
		c.failf("%s %v belongs to another cuda backend", name, ct.shape)
		return nil
	}
	if ct.alloc.freed {
		c.failf("%s %v was freed", name, ct.shape)
		return nil
	}
	return ct
}

// float unwraps an F32 or BF16 tensor.
func (c *checker) float(name string, t engine.Tensor) *Tensor {
	ct := c.tensor(name, t)
	if ct != nil && ct.dt == engine.I32 {
		c.failf("%s %v is i32, want a float tensor (f32 or bf16)", name, ct.shape)
		return nil
	}
	return ct
}

// f32 unwraps an F32 tensor (optimizer state, saved statistics).
func (c *checker) f32(name string, t engine.Tensor) *Tensor {
	ct := c.tensor(name, t)
	if ct != nil && ct.dt != engine.F32 {
		c.failf("%s %v is %s, want f32", name, ct.shape, ct.dt)
		return nil
	}
	return ct
}

// intTensor unwraps an I32 tensor.
func (c *checker) intTensor(name string, t engine.Tensor) *Tensor {
	ct := c.tensor(name, t)
	if ct != nil && ct.dt != engine.I32 {
		c.failf("%s %v is %s, want i32", name, ct.shape, ct.dt)
		return nil
	}
	return ct
}

func (c *checker) sameLen(an string, a *Tensor, bn string, b *Tensor) {
	if c.err == nil && a.n != b.n {
		c.failf("%s %v (%d elements) and %s %v (%d elements) differ in length", an, a.shape, a.n, bn, b.shape, b.n)
	}
}

// matrix checks that t read as a matrix is rows x cols.
func (c *checker) matrix(name string, t *Tensor, rows, cols int) {
	if c.err == nil && (engine.Rows(t) != rows || engine.Cols(t) != cols) {
		c.failf("%s has shape %v (%dx%d), want %dx%d", name, t.shape, engine.Rows(t), engine.Cols(t), rows, cols)
	}
}

func (c *checker) length(name string, t *Tensor, n int) {
	if c.err == nil && t.n != n {
		c.failf("%s has shape %v (%d elements), want %d elements", name, t.shape, t.n, n)
	}
}

// disjoint fails when an output shares memory with an input the op still
// reads after it starts writing.
func (c *checker) disjoint(outName string, out *Tensor, inName string, in *Tensor) {
	if c.err == nil && overlaps(out, in) {
		c.failf("output %s %v overlaps input %s %v", outName, out.shape, inName, in.shape)
	}
}

// overlaps reports whether two tensors share any byte of device memory.
func overlaps(a, b *Tensor) bool {
	return a.alloc == b.alloc && a.off < b.off+b.bytes() && b.off < a.off+a.bytes()
}

// isNil reports an absent optional tensor, either a nil interface or a nil
// *Tensor inside one.
func isNil(t engine.Tensor) bool {
	if t == nil {
		return true
	}
	ct, ok := t.(*Tensor)
	return ok && ct == nil
}

// dt is the dtype code the kernels take (equal to engine.DType).
func dt(t *Tensor) int32 { return int32(t.dt) }
