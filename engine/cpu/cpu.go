// Package cpu is the float32 reference backend: every engine.Backend op
// written plainly in Go so that it can serve as the oracle the CUDA backend
// is checked against, and as a slow but complete fallback on machines
// without a GPU.
//
// Storage: F32 and BF16 tensors both hold float32 values; a BF16 tensor's
// values are rounded to bfloat16 (round to nearest even) whenever anything
// is written into it (Upload, Fill, Copy and every op output), so it holds
// exactly what a bf16 device buffer would hold and casts behave. I32
// tensors hold int32 values. Intermediate arithmetic is float32 or better
// (float64 for reductions such as softmax sums, norms and dot products of
// attention), so the oracle is at least as accurate as any device.
//
// Memory accounting (engine.MemoryReporter) counts device-equivalent bytes,
// DType.Size() per element (2 for BF16), so that it can be set against the
// engine's memory plan; the Go heap actually holds 4 bytes per element.
package cpu

import (
	"fmt"
	"math"
	"sync"

	"whet/engine"
	"whet/engine/gpuinfo"
	"whet/engine/opcheck"
)

// Backend is the CPU reference backend. It is safe for use by one goroutine
// at a time, like a device stream; ops use all cores internally.
type Backend struct {
	mu    sync.Mutex
	inUse int64
	peak  int64
	// hostInUse counts AllocHost's tensors; copies are the queued,
	// deferred host copies (offload.go).
	hostInUse int64
	copies    []pendingCopy
}

// New returns a CPU backend.
func New() *Backend { return &Backend{} }

var (
	_ engine.Backend            = (*Backend)(nil)
	_ engine.MemoryReporter     = (*Backend)(nil)
	_ engine.PeakResetter       = (*Backend)(nil)
	_ engine.FreeMemoryReporter = (*Backend)(nil)
	_ engine.GradScaleFolder    = (*Backend)(nil)
)

// Name identifies the backend in logs and reports.
func (b *Backend) Name() string { return "cpu" }

// PeakBytes is the largest InUseBytes seen since New.
func (b *Backend) PeakBytes() int64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.peak
}

// MemInfo reports the host's available and total RAM, which the CPU
// backend allocates from. Where the system does not say (no
// /proc/meminfo), the error wraps engine.ErrNotImplemented.
func (b *Backend) MemInfo() (free, total int64, err error) {
	total, free, err = gpuinfo.HostMemory()
	if err != nil {
		return 0, 0, fmt.Errorf("cpu: host memory: %v: %w", err, engine.ErrNotImplemented)
	}
	return free, total, nil
}

// ResetPeak starts PeakBytes again from the memory held now.
func (b *Backend) ResetPeak() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.peak = b.inUse
}

// InUseBytes is the device-equivalent size of the tensors allocated and not
// yet freed (views count nothing).
func (b *Backend) InUseBytes() int64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.inUse
}

// buffer is the memory behind one Alloc; views share it.
type buffer struct {
	f     []float32 // F32 and BF16
	i     []int32   // I32
	bytes int64     // what Alloc counted, returned on Free
	freed bool
}

// Tensor is a CPU tensor: a window [off, off+n) of a buffer with a shape.
type Tensor struct {
	buf   *buffer
	off   int
	n     int
	shape []int
	dt    engine.DType
	owner bool // false for views, which Free ignores
}

// Shape returns a copy of the dimensions.
func (t *Tensor) Shape() []int { return append([]int(nil), t.shape...) }

// DType is the element type.
func (t *Tensor) DType() engine.DType { return t.dt }

// Len is the number of elements.
func (t *Tensor) Len() int { return t.n }

// floats is the tensor's float32 storage (F32 and BF16 tensors).
func (t *Tensor) floats() []float32 { return t.buf.f[t.off : t.off+t.n : t.off+t.n] }

// ints is the tensor's int32 storage (I32 tensors).
func (t *Tensor) ints() []int32 { return t.buf.i[t.off : t.off+t.n : t.off+t.n] }

// settle rounds a BF16 tensor's values after an op wrote them in float32.
func (t *Tensor) settle() {
	if t.dt != engine.BF16 {
		return
	}
	roundSliceBF16(t.floats())
}

// overlaps reports whether two tensors share any element of memory.
func overlaps(a, b *Tensor) bool {
	return a.buf == b.buf && a.off < b.off+b.n && b.off < a.off+a.n
}

// shapeLen is opcheck.ShapeLen with the CPU backend's limit,
// math.MaxInt32*64 elements.
func shapeLen(shape []int) (int, error) { return opcheck.ShapeLen(shape, math.MaxInt32*64) }

// Alloc returns a zeroed tensor.
func (b *Backend) Alloc(dt engine.DType, shape ...int) (engine.Tensor, error) {
	if dt != engine.F32 && dt != engine.BF16 && dt != engine.I32 {
		return nil, fmt.Errorf("cpu: Alloc: unknown dtype %d", dt)
	}
	n, err := shapeLen(shape)
	if err != nil {
		return nil, fmt.Errorf("cpu: Alloc %s: %w", dt, err)
	}
	buf := &buffer{bytes: int64(n) * int64(dt.Size())}
	if dt == engine.I32 {
		buf.i = make([]int32, n)
	} else {
		buf.f = make([]float32, n)
	}
	b.mu.Lock()
	b.inUse += buf.bytes
	if b.inUse > b.peak {
		b.peak = b.inUse
	}
	b.mu.Unlock()
	return &Tensor{buf: buf, n: n, shape: append([]int(nil), shape...), dt: dt, owner: true}, nil
}

// View returns a tensor sharing t's memory from element offset on.
func (b *Backend) View(t engine.Tensor, offset int, shape ...int) (engine.Tensor, error) {
	c := check("View")
	src := c.tensor("t", t)
	if c.Err != nil {
		return nil, c.Err
	}
	n, err := shapeLen(shape)
	if err != nil {
		return nil, fmt.Errorf("cpu: View of %v: %w", src.shape, err)
	}
	if offset < 0 || offset+n > src.n {
		return nil, fmt.Errorf("cpu: View: offset %d with shape %v (%d elements) does not fit in a tensor of shape %v (%d elements)",
			offset, shape, n, src.shape, src.n)
	}
	return &Tensor{buf: src.buf, off: src.off + offset, n: n, shape: append([]int(nil), shape...), dt: src.dt}, nil
}

// Free releases a tensor from Alloc; freeing a view, nil or an already
// freed tensor does nothing.
func (b *Backend) Free(t engine.Tensor) {
	ct, ok := t.(*Tensor)
	if !ok || ct == nil || !ct.owner || ct.buf.freed {
		return
	}
	b.flushCopies(len(b.copies))
	ct.buf.freed = true
	ct.buf.f, ct.buf.i = nil, nil
	b.mu.Lock()
	b.inUse -= ct.buf.bytes
	b.mu.Unlock()
}

// Upload copies src into dst, converting to dst's dtype. An I32 tensor
// accepts only integral values.
func (b *Backend) Upload(dst engine.Tensor, src []float32) error {
	c := check("Upload")
	d := c.tensor("dst", dst)
	if c.Err != nil {
		return c.Err
	}
	if len(src) != d.n {
		return fmt.Errorf("cpu: Upload: %d values for dst %v (%d elements)", len(src), d.shape, d.n)
	}
	if d.dt == engine.I32 {
		out := d.ints()
		for i, v := range src {
			if v != float32(int32(v)) {
				return fmt.Errorf("cpu: Upload: value %g at index %d is not an int32 for I32 dst %v", v, i, d.shape)
			}
			out[i] = int32(v)
		}
		return nil
	}
	copy(d.floats(), src)
	d.settle()
	return nil
}

// UploadInt32 copies src into an I32 tensor.
func (b *Backend) UploadInt32(dst engine.Tensor, src []int32) error {
	c := check("UploadInt32")
	d := c.intTensor("dst", dst)
	if c.Err != nil {
		return c.Err
	}
	if len(src) != d.n {
		return fmt.Errorf("cpu: UploadInt32: %d values for dst %v (%d elements)", len(src), d.shape, d.n)
	}
	copy(d.ints(), src)
	return nil
}

// Download copies src into dst as float32.
func (b *Backend) Download(src engine.Tensor, dst []float32) error {
	c := check("Download")
	s := c.tensor("src", src)
	if c.Err != nil {
		return c.Err
	}
	if len(dst) != s.n {
		return fmt.Errorf("cpu: Download: room for %d values, src %v has %d elements", len(dst), s.shape, s.n)
	}
	if s.dt == engine.I32 {
		for i, v := range s.ints() {
			dst[i] = float32(v)
		}
		return nil
	}
	copy(dst, s.floats())
	return nil
}

// Fill sets every element to v (rounded to the tensor's dtype; an I32
// tensor needs an integral v).
func (b *Backend) Fill(t engine.Tensor, v float32) error {
	c := check("Fill")
	d := c.tensor("t", t)
	if c.Err != nil {
		return c.Err
	}
	if d.dt == engine.I32 {
		if v != float32(int32(v)) {
			return fmt.Errorf("cpu: Fill: %g is not an int32 for I32 tensor %v", v, d.shape)
		}
		x := d.ints()
		for i := range x {
			x[i] = int32(v)
		}
		return nil
	}
	if d.dt == engine.BF16 {
		v = RoundBF16(v)
	}
	x := d.floats()
	for i := range x {
		x[i] = v
	}
	return nil
}

// Copy copies src into dst (same length; F32 and BF16 convert both ways,
// I32 copies only to I32).
func (b *Backend) Copy(dst, src engine.Tensor) error {
	c := check("Copy")
	d := c.tensor("dst", dst)
	s := c.tensor("src", src)
	c.SameLen("dst", d, "src", s)
	if c.Err != nil {
		return c.Err
	}
	if (d.dt == engine.I32) != (s.dt == engine.I32) {
		return fmt.Errorf("cpu: Copy: cannot copy %s %v into %s %v", s.dt, s.shape, d.dt, d.shape)
	}
	if d.dt == engine.I32 {
		copy(d.ints(), s.ints())
		return nil
	}
	copy(d.floats(), s.floats())
	d.settle()
	return nil
}

// Sync runs the queued host copies (offload.go); CPU ops are synchronous.
func (b *Backend) Sync() error {
	b.flushCopies(len(b.copies))
	return nil
}

// RoundBF16 rounds a float32 to the nearest bfloat16 value (ties to even),
// returned as a float32. NaN stays NaN.
func RoundBF16(f float32) float32 {
	bits := math.Float32bits(f)
	if bits&0x7f800000 == 0x7f800000 && bits&0x007fffff != 0 {
		return math.Float32frombits(bits | 0x00400000) // quiet NaN, payload kept
	}
	bits += 0x7fff + (bits>>16)&1
	return math.Float32frombits(bits & 0xffff0000)
}

func roundSliceBF16(x []float32) {
	for i, v := range x {
		x[i] = RoundBF16(v)
	}
}

// checker is the shared argument rules (engine/opcheck, messages prefixed
// "cpu:") plus what depends on this backend's storage: unwrapping its
// tensors, freed buffers, overlapping outputs.
type checker struct {
	opcheck.Checker
}

// check starts the argument checks of one op.
func check(op string) checker {
	return checker{opcheck.Checker{Backend: "cpu", Op: op}}
}

// tensor unwraps a live CPU tensor of any dtype.
func (c *checker) tensor(name string, t engine.Tensor) *Tensor {
	if c.Err != nil {
		return nil
	}
	ct, ok := t.(*Tensor)
	if !ok || ct == nil {
		c.Failf("%s is %T, not a cpu tensor", name, t)
		return nil
	}
	if ct.buf.freed {
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

// isNil reports an absent optional tensor, either a nil interface or a nil
// *Tensor inside one.
func isNil(t engine.Tensor) bool {
	if t == nil {
		return true
	}
	ct, ok := t.(*Tensor)
	return ok && ct == nil
}
