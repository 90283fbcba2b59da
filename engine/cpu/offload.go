package cpu

import (
	"fmt"

	"whet/engine"
)

// Host memory for offloaded activation checkpoints (engine.HostOffloader).
// On the CPU host and "device" memory are the same RAM, so offloading
// saves nothing (OffloadSavesDevice is false and the automatic choice
// never takes it); it exists so that the engine's offload logic runs, and
// is tested, without a GPU.
//
// Copies are deferred: each runs at the latest moment the contract
// allows, when an AwaitCopies of its device tensor (or of one queued
// later), FreeHost, Free or Sync needs it, in the order they were queued.
// A copy the engine forgets to await therefore reads or leaves stale
// values and changes the results, where on a GPU it would only race.

// hostTensor is a tensor from AllocHost: not a cpu *Tensor, so no compute
// op accepts it.
type hostTensor struct {
	f     []float32 // F32 and BF16 (bf16 values held exactly, as in Tensor)
	i     []int32   // I32
	shape []int
	dt    engine.DType
	bytes int64
	freed bool
}

func (h *hostTensor) Shape() []int        { return append([]int(nil), h.shape...) }
func (h *hostTensor) DType() engine.DType { return h.dt }
func (h *hostTensor) Len() int {
	if h.dt == engine.I32 {
		return len(h.i)
	}
	return len(h.f)
}

// pendingCopy is one queued copy between a device tensor and a host one.
type pendingCopy struct {
	dev    *Tensor
	host   *hostTensor
	toHost bool
}

func (p pendingCopy) run() {
	n := p.dev.n
	if p.dev.dt == engine.I32 {
		if p.toHost {
			copy(p.host.i[:n], p.dev.ints())
		} else {
			copy(p.dev.ints(), p.host.i[:n])
		}
		return
	}
	if p.toHost {
		copy(p.host.f[:n], p.dev.floats())
	} else {
		copy(p.dev.floats(), p.host.f[:n])
	}
}

var _ engine.HostOffloader = (*Backend)(nil)

// AllocHost returns a zeroed host tensor, counted in HostBytes (not in
// the device-equivalent InUseBytes).
func (b *Backend) AllocHost(dt engine.DType, shape ...int) (engine.Tensor, error) {
	if dt != engine.F32 && dt != engine.BF16 && dt != engine.I32 {
		return nil, fmt.Errorf("cpu: AllocHost: unknown dtype %d", dt)
	}
	n, err := shapeLen(shape)
	if err != nil {
		return nil, fmt.Errorf("cpu: AllocHost %s: %w", dt, err)
	}
	h := &hostTensor{shape: append([]int(nil), shape...), dt: dt, bytes: int64(n) * int64(dt.Size())}
	if dt == engine.I32 {
		h.i = make([]int32, n)
	} else {
		h.f = make([]float32, n)
	}
	b.mu.Lock()
	b.hostInUse += h.bytes
	b.mu.Unlock()
	return h, nil
}

// FreeHost runs the copies queued so far and releases h.
func (b *Backend) FreeHost(t engine.Tensor) {
	h, ok := t.(*hostTensor)
	if !ok || h == nil || h.freed {
		return
	}
	b.flushCopies(len(b.copies))
	h.freed = true
	h.f, h.i = nil, nil
	b.mu.Lock()
	b.hostInUse -= h.bytes
	b.mu.Unlock()
}

// HostBytes is the host memory AllocHost holds now.
func (b *Backend) HostBytes() int64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.hostInUse
}

// OffloadSavesDevice is false: host and device memory are the same RAM.
func (b *Backend) OffloadSavesDevice() bool { return false }

func (b *Backend) queueCopy(op string, dev, host engine.Tensor, toHost bool) error {
	c := check(op)
	d := c.tensor("device tensor", dev)
	if c.Err != nil {
		return c.Err
	}
	h, ok := host.(*hostTensor)
	if !ok || h == nil {
		return fmt.Errorf("cpu: %s: host tensor is %T, not one from AllocHost", op, host)
	}
	if h.freed {
		return fmt.Errorf("cpu: %s: host tensor %v was freed", op, h.shape)
	}
	if h.dt != d.dt {
		return fmt.Errorf("cpu: %s: host %s %v and device %s %v differ in dtype", op, h.dt, h.shape, d.dt, d.shape)
	}
	if d.n > h.Len() {
		return fmt.Errorf("cpu: %s: device tensor %v (%d elements) is larger than host tensor %v", op, d.shape, d.n, h.shape)
	}
	b.copies = append(b.copies, pendingCopy{dev: d, host: h, toHost: toHost})
	return nil
}

// CopyToHost queues a copy of device tensor src into host tensor dst.
func (b *Backend) CopyToHost(dst, src engine.Tensor) error {
	return b.queueCopy("CopyToHost", src, dst, true)
}

// CopyFromHost queues a copy of host tensor src into device tensor dst.
func (b *Backend) CopyFromHost(dst, src engine.Tensor) error {
	return b.queueCopy("CopyFromHost", dst, src, false)
}

// AwaitCopies runs, in order, the queued copies up to the last one that
// touches t's memory.
func (b *Backend) AwaitCopies(t engine.Tensor) error {
	c := check("AwaitCopies")
	d := c.tensor("t", t)
	if c.Err != nil {
		return c.Err
	}
	last := -1
	for i, p := range b.copies {
		if p.dev.buf == d.buf {
			last = i
		}
	}
	b.flushCopies(last + 1)
	return nil
}

// flushCopies runs the first n queued copies.
func (b *Backend) flushCopies(n int) {
	for _, p := range b.copies[:n] {
		p.run()
	}
	b.copies = append(b.copies[:0], b.copies[n:]...)
}
