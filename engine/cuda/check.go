package cuda

import (
	"whet/engine"
	"whet/engine/opcheck"
)

// checker is the shared argument rules (engine/opcheck, messages prefixed
// "cuda:") plus what depends on this backend's storage: unwrapping its
// tensors, freed buffers, overlapping outputs.
type checker struct {
	opcheck.Checker
	b *Backend
}

// check starts the argument checks of one op.
func (b *Backend) check(op string) checker {
	return checker{Checker: opcheck.Checker{Backend: "cuda", Op: op}, b: b}
}

// tensor unwraps a live tensor of this backend, of any dtype.
func (c *checker) tensor(name string, t engine.Tensor) *Tensor {
	if c.Err != nil {
		return nil
	}
	ct, ok := t.(*Tensor)
	if !ok || ct == nil {
		c.Failf("%s is %T, not a cuda tensor", name, t)
		return nil
	}
	if ct.b != c.b {
		c.Failf("%s %v belongs to another cuda backend", name, ct.shape)
		return nil
	}
	if ct.alloc.freed {
		c.Failf("%s %v was freed", name, ct.shape)
		return nil
	}
	return ct
}

// float unwraps an F32 or BF16 tensor.
func (c *checker) float(name string, t engine.Tensor) *Tensor {
	if ct := c.tensor(name, t); ct != nil && c.Float(name, ct) {
		return ct
	}
	return nil
}

// optFloat unwraps an optional F32 or BF16 tensor (a frozen weight's
// gradient, say): nil when absent.
func (c *checker) optFloat(name string, t engine.Tensor) *Tensor {
	if isNil(t) {
		return nil
	}
	return c.float(name, t)
}

// f32 unwraps an F32 tensor (optimizer state, saved statistics).
func (c *checker) f32(name string, t engine.Tensor) *Tensor {
	if ct := c.tensor(name, t); ct != nil && c.DType(name, ct, engine.F32) {
		return ct
	}
	return nil
}

// intTensor unwraps an I32 tensor.
func (c *checker) intTensor(name string, t engine.Tensor) *Tensor {
	if ct := c.tensor(name, t); ct != nil && c.DType(name, ct, engine.I32) {
		return ct
	}
	return nil
}

// disjoint fails when an output shares memory with an input the op still
// reads after it starts writing.
func (c *checker) disjoint(outName string, out *Tensor, inName string, in *Tensor) {
	c.Overlap(outName, out, inName, in, c.Err == nil && overlaps(out, in))
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

// launchOver ends an elementwise op: it returns the first argument error
// c recorded, does nothing when t (the tensor whose length the op runs
// over; nil only after an error) is empty, and otherwise calls launch
// with the backend entered (b.enter). launch holds the op's b.launch call,
// so that launchargs_test.go still sees its kernel and arguments.
func (b *Backend) launchOver(c *checker, t *Tensor, launch func() error) error {
	if c.Err != nil {
		return c.Err
	}
	if t.n == 0 {
		return nil
	}
	exit, err := b.enter()
	if err != nil {
		return err
	}
	defer exit()
	return launch()
}
