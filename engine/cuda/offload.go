package cuda

import (
	"fmt"
	"unsafe"

	"whet/engine"
	"whet/engine/units"
)

// Host memory for offloaded activation checkpoints (engine.HostOffloader):
// page-locked host buffers from cuMemHostAlloc, and copies on a second
// stream so that they run on the copy engines while the compute stream
// goes on. Each copy first makes the copy stream wait for an event
// recorded on the compute stream (so it sees, or may overwrite, what the
// work queued before it left), then records the device allocation's own
// event on the copy stream; AwaitCopies makes the compute stream wait for
// that event. One event per device allocation suffices because the copy
// stream runs its copies in order. The entry points are bound on first
// use, so a backend that never offloads needs none of them.

// hostCopier holds the copy stream and the driver's entry points for it.
type hostCopier struct {
	memHostAlloc, memFreeHost              uintptr
	memcpyDtoHAsync, memcpyHtoDAsync       uintptr
	eventCreate, eventRecord, eventDestroy uintptr
	eventSynchronize, streamWaitEvent      uintptr
	stream                                 uintptr
	computeDone                            uintptr // recorded on the compute stream before each copy
	events                                 map[*allocation]uintptr
	live                                   map[*hostTensor]struct{}
	inUse                                  int64
}

const (
	cuStreamNonBlocking   = 1 // CU_STREAM_NON_BLOCKING
	cuEventDisableTiming  = 2 // CU_EVENT_DISABLE_TIMING
	cuMemHostAllocDefault = 0
)

// hostTensor is a tensor in page-locked host memory.
type hostTensor struct {
	b     *Backend
	ptr   uintptr
	n     int
	shape []int
	dt    engine.DType
	freed bool
}

func (h *hostTensor) Shape() []int        { return append([]int(nil), h.shape...) }
func (h *hostTensor) DType() engine.DType { return h.dt }
func (h *hostTensor) Len() int            { return h.n }
func (h *hostTensor) bytes() int64        { return int64(h.n) * int64(h.dt.Size()) }

var _ engine.HostOffloader = (*Backend)(nil)

// copier binds the entry points and creates the copy stream on first use.
// The caller holds the context.
func (b *Backend) copier() (*hostCopier, error) {
	if b.hc != nil {
		return b.hc, nil
	}
	d := b.drv
	c := &hostCopier{events: map[*allocation]uintptr{}, live: map[*hostTensor]struct{}{}}
	if err := d.lib.bind(map[string]*uintptr{
		"cuMemHostAlloc":       &c.memHostAlloc,
		"cuMemFreeHost":        &c.memFreeHost,
		"cuMemcpyDtoHAsync_v2": &c.memcpyDtoHAsync,
		"cuMemcpyHtoDAsync_v2": &c.memcpyHtoDAsync,
		"cuEventCreate":        &c.eventCreate,
		"cuEventRecord":        &c.eventRecord,
		"cuEventDestroy_v2":    &c.eventDestroy,
		"cuEventSynchronize":   &c.eventSynchronize,
		"cuStreamWaitEvent":    &c.streamWaitEvent,
	}); err != nil {
		return nil, fmt.Errorf("cuda: offloading to host memory: %w", err)
	}
	if err := d.call("cuStreamCreate", d.cuStreamCreate, uintptr(unsafe.Pointer(&c.stream)), cuStreamNonBlocking); err != nil {
		return nil, withOp("copy stream", err)
	}
	if err := d.call("cuEventCreate", c.eventCreate, uintptr(unsafe.Pointer(&c.computeDone)), cuEventDisableTiming); err != nil {
		d.call("cuStreamDestroy_v2", d.cuStreamDestroy, c.stream)
		return nil, withOp("copy stream event", err)
	}
	b.hc = c
	return c, nil
}

// AllocHost returns a tensor in page-locked host memory (contents
// undefined until a copy writes them). It does not count against the
// device memory cap; HostBytes counts it.
func (b *Backend) AllocHost(dt engine.DType, shape ...int) (engine.Tensor, error) {
	if dt != engine.F32 && dt != engine.BF16 && dt != engine.I32 {
		return nil, fmt.Errorf("cuda: AllocHost: unknown dtype %d", dt)
	}
	n, err := shapeLen(shape)
	if err != nil {
		return nil, fmt.Errorf("cuda: AllocHost %s: %w", dt, err)
	}
	exit, err := b.enter()
	if err != nil {
		return nil, err
	}
	defer exit()
	c, err := b.copier()
	if err != nil {
		return nil, err
	}
	h := &hostTensor{b: b, n: n, shape: append([]int(nil), shape...), dt: dt}
	if err := b.drv.call("cuMemHostAlloc", c.memHostAlloc, uintptr(unsafe.Pointer(&h.ptr)), uintptr(max(h.bytes(), 4)), cuMemHostAllocDefault); err != nil {
		return nil, withOp(fmt.Sprintf("AllocHost %s %v (%s of pinned host memory, %s held)", dt, shape, units.Bytes(h.bytes()), units.Bytes(c.inUse)), err)
	}
	c.live[h] = struct{}{}
	c.inUse += h.bytes()
	return h, nil
}

// FreeHost waits for the copies queued so far and releases t.
func (b *Backend) FreeHost(t engine.Tensor) {
	h, ok := t.(*hostTensor)
	if !ok || h == nil || h.b != b || h.freed {
		return
	}
	exit, err := b.enter()
	if err != nil {
		return
	}
	defer exit()
	b.freeHost(h)
}

// freeHost releases h after the copy stream's work; the caller holds the context.
func (b *Backend) freeHost(h *hostTensor) {
	c := b.hc
	b.drv.call("cuStreamSynchronize", b.drv.cuStreamSynchronize, c.stream)
	b.drv.call("cuMemFreeHost", c.memFreeHost, h.ptr)
	h.freed = true
	delete(c.live, h)
	c.inUse -= h.bytes()
}

// HostBytes is the pinned host memory AllocHost holds now.
func (b *Backend) HostBytes() int64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.hc == nil {
		return 0
	}
	return b.hc.inUse
}

// OffloadSavesDevice is true: pinned host memory is not the card's.
func (b *Backend) OffloadSavesDevice() bool { return true }

// CopyToHost queues a copy of device tensor src into host tensor dst.
func (b *Backend) CopyToHost(dst, src engine.Tensor) error {
	return b.hostCopy("CopyToHost", src, dst, true)
}

// CopyFromHost queues a copy of host tensor src into device tensor dst.
func (b *Backend) CopyFromHost(dst, src engine.Tensor) error {
	return b.hostCopy("CopyFromHost", dst, src, false)
}

func (b *Backend) hostCopy(op string, dev, host engine.Tensor, toHost bool) error {
	ck := b.check(op)
	d := ck.tensor("device tensor", dev)
	if ck.Err != nil {
		return ck.Err
	}
	h, ok := host.(*hostTensor)
	if !ok || h == nil || h.b != b {
		return fmt.Errorf("cuda: %s: host tensor is %T, not one from this backend's AllocHost", op, host)
	}
	if h.freed {
		return fmt.Errorf("cuda: %s: host tensor %v was freed", op, h.shape)
	}
	if h.dt != d.dt || d.n > h.n {
		return fmt.Errorf("cuda: %s: device %s %v does not fit host %s %v", op, d.dt, d.shape, h.dt, h.shape)
	}
	if d.n == 0 {
		return nil
	}
	exit, err := b.enter()
	if err != nil {
		return err
	}
	defer exit()
	c := b.hc
	where := fmt.Sprintf("%s %s %v", op, d.dt, d.shape)
	drv := b.drv
	if err := drv.call("cuEventRecord", c.eventRecord, c.computeDone, b.stream); err != nil {
		return withOp(where, err)
	}
	if err := drv.call("cuStreamWaitEvent", c.streamWaitEvent, c.stream, c.computeDone, 0); err != nil {
		return withOp(where, err)
	}
	bytes := uintptr(d.bytes())
	if toHost {
		err = drv.call("cuMemcpyDtoHAsync_v2", c.memcpyDtoHAsync, h.ptr, uintptr(d.ptr()), bytes, c.stream)
	} else {
		d.alloc.known = nil
		err = drv.call("cuMemcpyHtoDAsync_v2", c.memcpyHtoDAsync, uintptr(d.ptr()), h.ptr, bytes, c.stream)
	}
	if err != nil {
		return withOp(where, err)
	}
	ev, ok := c.events[d.alloc]
	if !ok {
		if err := drv.call("cuEventCreate", c.eventCreate, uintptr(unsafe.Pointer(&ev)), cuEventDisableTiming); err != nil {
			return withOp(where, err)
		}
		c.events[d.alloc] = ev
	}
	if err := drv.call("cuEventRecord", c.eventRecord, ev, c.stream); err != nil {
		return withOp(where, err)
	}
	if b.syncEachOp {
		return withOp(where, drv.call("cuStreamSynchronize", drv.cuStreamSynchronize, c.stream))
	}
	return nil
}

// AwaitCopies makes the compute stream wait for the copies queued so far
// to or from t's allocation.
func (b *Backend) AwaitCopies(t engine.Tensor) error {
	ck := b.check("AwaitCopies")
	d := ck.tensor("t", t)
	if ck.Err != nil {
		return ck.Err
	}
	exit, err := b.enter()
	if err != nil {
		return err
	}
	defer exit()
	if b.hc == nil {
		return nil
	}
	ev, ok := b.hc.events[d.alloc]
	if !ok {
		return nil
	}
	return withOp("AwaitCopies", b.drv.call("cuStreamWaitEvent", b.hc.streamWaitEvent, b.stream, ev, 0))
}

// forgetCopies waits for the copies of a device allocation about to be
// freed and drops its event; the caller holds the context.
func (b *Backend) forgetCopies(a *allocation) {
	if b.hc == nil {
		return
	}
	if ev, ok := b.hc.events[a]; ok {
		b.drv.call("cuEventSynchronize", b.hc.eventSynchronize, ev)
		b.drv.call("cuEventDestroy_v2", b.hc.eventDestroy, ev)
		delete(b.hc.events, a)
	}
}

// releaseCopier frees the host buffers, events and copy stream; the
// caller holds the context.
func (b *Backend) releaseCopier() {
	c := b.hc
	if c == nil {
		return
	}
	b.drv.call("cuStreamSynchronize", b.drv.cuStreamSynchronize, c.stream)
	for h := range c.live {
		b.freeHost(h)
	}
	for a, ev := range c.events {
		b.drv.call("cuEventDestroy_v2", c.eventDestroy, ev)
		delete(c.events, a)
	}
	b.drv.call("cuEventDestroy_v2", c.eventDestroy, c.computeDone)
	b.drv.call("cuStreamDestroy_v2", b.drv.cuStreamDestroy, c.stream)
	b.hc = nil
}
