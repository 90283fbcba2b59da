package dist

import (
	"errors"
	"fmt"
	"runtime"
	"sync"
	"unsafe"

	"github.com/ebitengine/purego"

	"whet/engine"
	"whet/engine/cuda"
)

// NCCL, bound at run time through purego like the rest of CUDA
// (libnccl.so.2, searched where engine/cuda searches its libraries,
// including the pip nvidia-nccl wheels' nvidia/nccl/lib). Each rank is a
// communicator on one CUDA backend's device; collectives are enqueued on
// that backend's stream, inside its lock, so they are ordered with the
// rank's compute exactly as another kernel would be; the gradient buckets'
// reductions instead go on a second stream of the rank (AsyncCollective),
// after an event of the compute stream, so they run beside the backward,
// and the compute stream waits for them only when the step needs the sums.

// ncclUniqueIDBytes is NCCL_UNIQUE_ID_BYTES.
const ncclUniqueIDBytes = 128

// UniqueID is the token rank 0 makes and every rank needs to join the
// communicator (ncclUniqueId), passed between nodes by the rendezvous.
type UniqueID [ncclUniqueIDBytes]byte

// NCCL's enums (nccl.h).
const (
	ncclInt32    = 2
	ncclFloat32  = 7
	ncclBfloat16 = 9
	ncclSum      = 0
)

// ncclLib is the bound library.
type ncclLib struct {
	path                                                        string
	getVersion, getUniqueID, commInitRank, commInitAll, destroy uintptr
	allReduce, reduceScatter, allGather, broadcast              uintptr
	getErrorString, commAbort                                   uintptr
	groupStart, groupEnd                                        uintptr
	version                                                     int
}

var (
	ncclOnce sync.Once
	ncclL    *ncclLib
	ncclErr  error
)

// ErrNoNCCL is wrapped by the error of every NCCL entry point when
// libnccl.so.2 cannot be opened.
var ErrNoNCCL = errors.New("NCCL (libnccl.so.2) not found")

// OpenNCCL binds libnccl.so.2 once and reports its path and version.
func OpenNCCL() (path string, version int, err error) {
	ncclOnce.Do(func() { ncclL, ncclErr = bindNCCL() })
	if ncclErr != nil {
		return "", 0, ncclErr
	}
	return ncclL.path, ncclL.version, nil
}

func bindNCCL() (*ncclLib, error) {
	h, path, err := cuda.OpenLibrary("NCCL", "libnccl.so.2", "libnccl.so")
	if err != nil {
		return nil, fmt.Errorf("%w: %v; install it (the pip wheel nvidia-nccl-cu12 or -cu13, which PyTorch brings, or the system package libnccl2) or use parallel.collective: ring", ErrNoNCCL, err)
	}
	l := &ncclLib{path: path}
	for name, dst := range map[string]*uintptr{
		"ncclGetVersion": &l.getVersion, "ncclGetUniqueId": &l.getUniqueID, "ncclCommInitRank": &l.commInitRank,
		"ncclCommInitAll": &l.commInitAll, "ncclCommDestroy": &l.destroy, "ncclAllReduce": &l.allReduce,
		"ncclReduceScatter": &l.reduceScatter, "ncclAllGather": &l.allGather, "ncclBroadcast": &l.broadcast,
		"ncclGetErrorString": &l.getErrorString, "ncclCommAbort": &l.commAbort,
		"ncclGroupStart": &l.groupStart, "ncclGroupEnd": &l.groupEnd,
	} {
		p, err := purego.Dlsym(h, name)
		if err != nil || p == 0 {
			return nil, fmt.Errorf("%w: %s has no symbol %s", ErrNoNCCL, path, name)
		}
		*dst = p
	}
	var v int32
	if err := l.call("ncclGetVersion", l.getVersion, uintptr(unsafe.Pointer(&v))); err != nil {
		return nil, err
	}
	l.version = int(v)
	return l, nil
}

// call runs an NCCL function and turns a non-zero ncclResult_t into an
// error naming the call.
func (l *ncclLib) call(name string, fn uintptr, args ...uintptr) error {
	r, _, _ := purego.SyscallN(fn, args...)
	code := int32(uint32(r))
	if code == 0 {
		return nil
	}
	msg := "?"
	if p, _, _ := purego.SyscallN(l.getErrorString, uintptr(code)); p != 0 {
		msg = goString(p)
	}
	return fmt.Errorf("%s: ncclResult %d (%s)", name, code, msg)
}

func goString(p uintptr) string {
	var b []byte
	for i := uintptr(0); i < 4096; i++ {
		c := *(*byte)(unsafe.Add(unsafe.Pointer(nil), p+i)) //nolint:govet // C string from NCCL
		if c == 0 {
			break
		}
		b = append(b, c)
	}
	return string(b)
}

// NewUniqueID asks NCCL for a fresh communicator id (rank 0 does this).
func NewUniqueID() (UniqueID, error) {
	var id UniqueID
	if _, _, err := OpenNCCL(); err != nil {
		return id, err
	}
	return id, ncclL.call("ncclGetUniqueId", ncclL.getUniqueID, uintptr(unsafe.Pointer(&id)))
}

// NCCL is one rank's communicator on a CUDA backend.
type NCCL struct {
	rank, size int
	b          *cuda.Backend
	comm       uintptr
	side       uintptr // the rank's communication stream, made on first use
}

var (
	_ engine.Collective        = (*NCCL)(nil)
	_ engine.CollectiveAborter = (*NCCL)(nil)
	_ engine.AsyncCollective   = (*NCCL)(nil)
)

func init() {
	engine.RegisterCollective("nccl", func(bs []engine.Backend) ([]engine.Collective, error) {
		cs, err := NewLocalNCCL(bs)
		if err != nil {
			return nil, err
		}
		out := make([]engine.Collective, len(cs))
		for i, c := range cs {
			out[i] = c
		}
		return out, nil
	})
}

// cudaBackends checks that every backend is a CUDA one.
func cudaBackends(bs []engine.Backend) ([]*cuda.Backend, error) {
	out := make([]*cuda.Backend, len(bs))
	for i, b := range bs {
		cb, ok := b.(*cuda.Backend)
		if !ok {
			return nil, fmt.Errorf("nccl: rank %d is on backend %s; NCCL needs CUDA backends (use parallel.collective: ring)", i, b.Name())
		}
		out[i] = cb
	}
	return out, nil
}

// NewLocalNCCL makes a communicator of every backend's GPU in this
// process, one rank per backend (ncclCommInitAll, which needs no id).
func NewLocalNCCL(bs []engine.Backend) ([]*NCCL, error) {
	cbs, err := cudaBackends(bs)
	if err != nil {
		return nil, err
	}
	if _, _, err := OpenNCCL(); err != nil {
		return nil, err
	}
	devs := make([]int32, len(cbs))
	for i, b := range cbs {
		devs[i] = int32(b.Device())
	}
	comms := make([]uintptr, len(cbs))
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if err := ncclL.call("ncclCommInitAll", ncclL.commInitAll, uintptr(unsafe.Pointer(&comms[0])), uintptr(len(cbs)), uintptr(unsafe.Pointer(&devs[0]))); err != nil {
		return nil, fmt.Errorf("nccl: %w", err)
	}
	out := make([]*NCCL, len(cbs))
	for i, b := range cbs {
		out[i] = &NCCL{rank: i, size: len(cbs), b: b, comm: comms[i]}
	}
	return out, nil
}

// JoinNCCL makes this process's rank of a communicator of size ranks
// across processes or nodes, from the id rank 0 made (passed by the
// rendezvous). Every rank calls it at once; it returns when all joined.
func JoinNCCL(b engine.Backend, id UniqueID, rank, size int) (*NCCL, error) {
	cbs, err := cudaBackends([]engine.Backend{b})
	if err != nil {
		return nil, err
	}
	if _, _, err := OpenNCCL(); err != nil {
		return nil, err
	}
	c := &NCCL{rank: rank, size: size, b: cbs[0]}
	err = cbs[0].WithStream(func(uintptr) error {
		return ncclL.call("ncclCommInitRank", ncclL.commInitRank, initRankArgs(&c.comm, size, &id, rank)...)
	})
	if err != nil {
		return nil, fmt.Errorf("nccl: rank %d of %d: %w", rank, size, err)
	}
	return c, nil
}

// initRankArgs lays out ncclCommInitRank(comm*, nranks, ncclUniqueId id,
// rank) for purego, which passes only machine words: the 128-byte id goes
// by value. On amd64 (System V) a struct that large is passed in memory,
// on the stack, and the following int still takes the next integer
// register: so rdi, rsi, rdx = comm, nranks, rank, three unused registers,
// then the id's 16 words as stack arguments. On arm64 (AAPCS64) a composite
// over 16 bytes is passed as a pointer to a copy in the next register.
func initRankArgs(comm *uintptr, size int, id *UniqueID, rank int) []uintptr {
	if runtime.GOARCH == "arm64" {
		cp := *id
		return []uintptr{uintptr(unsafe.Pointer(comm)), uintptr(size), uintptr(unsafe.Pointer(&cp)), uintptr(rank)}
	}
	args := []uintptr{uintptr(unsafe.Pointer(comm)), uintptr(size), uintptr(rank), 0, 0, 0}
	for i := 0; i < ncclUniqueIDBytes; i += 8 {
		args = append(args, uintptr(*(*uint64)(unsafe.Pointer(&id[i]))))
	}
	return args
}

func (c *NCCL) Rank() int { return c.rank }
func (c *NCCL) Size() int { return c.size }

func ncclType(t engine.Tensor) (uintptr, error) {
	switch t.DType() {
	case engine.F32:
		return ncclFloat32, nil
	case engine.BF16:
		return ncclBfloat16, nil
	case engine.I32:
		return ncclInt32, nil
	}
	return 0, fmt.Errorf("nccl: no NCCL type for %s", t.DType())
}

// enqueue runs one collective on the rank's stream.
func (c *NCCL) enqueue(name string, t engine.Tensor, f func(ptr uint64, dt uintptr, stream uintptr) error) error {
	ptr, err := cuda.DevicePointer(t)
	if err != nil {
		return fmt.Errorf("nccl %s: %w", name, err)
	}
	dt, err := ncclType(t)
	if err != nil {
		return err
	}
	if err := c.b.WithStream(func(stream uintptr) error { return f(ptr, dt, stream) }); err != nil {
		return fmt.Errorf("nccl %s on rank %d: %w", name, c.rank, err)
	}
	return nil
}

// allReduce is ncclAllReduce of t in place on a stream.
func (c *NCCL) allReduce(t engine.Tensor) func(p uint64, dt, s uintptr) error {
	return func(p uint64, dt, s uintptr) error {
		return ncclL.call("ncclAllReduce", ncclL.allReduce, uintptr(p), uintptr(p), uintptr(t.Len()), dt, ncclSum, c.comm, s)
	}
}

func (c *NCCL) AllReduce(t engine.Tensor) error {
	return c.enqueue("AllReduce", t, c.allReduce(t))
}

func (c *NCCL) chunk(name string, t engine.Tensor) (int, error) {
	if t.Len()%c.size != 0 {
		return 0, fmt.Errorf("nccl %s: %d elements do not split into %d equal chunks", name, t.Len(), c.size)
	}
	return t.Len() / c.size, nil
}

// reduceScatter is ncclReduceScatter of t's n-element chunks in place:
// NCCL's in-place form has the receive buffer at the rank's chunk of the
// send buffer.
func (c *NCCL) reduceScatter(t engine.Tensor, n int) func(p uint64, dt, s uintptr) error {
	return func(p uint64, dt, s uintptr) error {
		recv := p + uint64(c.rank*n*t.DType().Size())
		return ncclL.call("ncclReduceScatter", ncclL.reduceScatter, uintptr(p), uintptr(recv), uintptr(n), dt, ncclSum, c.comm, s)
	}
}

func (c *NCCL) ReduceScatter(t engine.Tensor) error {
	n, err := c.chunk("ReduceScatter", t)
	if err != nil {
		return err
	}
	return c.enqueue("ReduceScatter", t, c.reduceScatter(t, n))
}

// AllGather in place: the send buffer is the rank's chunk of the receive
// buffer.
func (c *NCCL) AllGather(t engine.Tensor) error {
	n, err := c.chunk("AllGather", t)
	if err != nil {
		return err
	}
	return c.enqueue("AllGather", t, func(p uint64, dt, s uintptr) error {
		send := p + uint64(c.rank*n*t.DType().Size())
		return ncclL.call("ncclAllGather", ncclL.allGather, uintptr(send), uintptr(p), uintptr(n), dt, c.comm, s)
	})
}

func (c *NCCL) Broadcast(t engine.Tensor, root int) error {
	if root < 0 || root >= c.size {
		return fmt.Errorf("nccl Broadcast: root %d of %d ranks", root, c.size)
	}
	return c.enqueue("Broadcast", t, func(p uint64, dt, s uintptr) error {
		return ncclL.call("ncclBroadcast", ncclL.broadcast, uintptr(p), uintptr(p), uintptr(t.Len()), dt, uintptr(root), c.comm, s)
	})
}

// streamAPI is the part of the driver API the side stream needs, bound
// from libcuda.so.1 (already loaded by the CUDA backend).
type streamAPI struct {
	streamCreate, streamDestroy, eventCreate, eventRecord, eventDestroy, streamWaitEvent uintptr
}

var (
	streamOnce sync.Once
	streams    *streamAPI
	streamsErr error
)

func bindStreams() (*streamAPI, error) {
	streamOnce.Do(func() {
		h, _, err := cuda.OpenLibrary("the NVIDIA driver library libcuda", "libcuda.so.1", "libcuda.so")
		if err != nil {
			streamsErr = err
			return
		}
		a := &streamAPI{}
		for name, dst := range map[string]*uintptr{
			"cuStreamCreate": &a.streamCreate, "cuStreamDestroy_v2": &a.streamDestroy, "cuEventCreate": &a.eventCreate,
			"cuEventRecord": &a.eventRecord, "cuEventDestroy_v2": &a.eventDestroy, "cuStreamWaitEvent": &a.streamWaitEvent,
		} {
			p, err := purego.Dlsym(h, name)
			if err != nil || p == 0 {
				streamsErr = fmt.Errorf("libcuda has no %s", name)
				return
			}
			*dst = p
		}
		streams = a
	})
	return streams, streamsErr
}

// cu calls a driver function and names it in the error.
func cu(name string, fn uintptr, args ...uintptr) error {
	r, _, _ := purego.SyscallN(fn, args...)
	if code := int32(uint32(r)); code != 0 {
		return fmt.Errorf("%s: CUresult %d", name, code)
	}
	return nil
}

// CUDA flags (cuda.h).
const (
	cuStreamNonBlocking  = 1
	cuEventDisableTiming = 2
)

// after makes stream wait for the work queued on from so far (an event
// recorded there, released once the wait is queued: the driver frees it
// when done).
func after(a *streamAPI, stream, from uintptr) error {
	var ev uintptr
	if err := cu("cuEventCreate", a.eventCreate, uintptr(unsafe.Pointer(&ev)), cuEventDisableTiming); err != nil {
		return err
	}
	defer cu("cuEventDestroy", a.eventDestroy, ev)
	if err := cu("cuEventRecord", a.eventRecord, ev, from); err != nil {
		return err
	}
	return cu("cuStreamWaitEvent", a.streamWaitEvent, stream, ev, 0)
}

// async queues a collective on the side stream after everything queued
// on the compute stream so far; the returned wait makes the compute
// stream wait for it.
func (c *NCCL) async(name string, t engine.Tensor, f func(ptr uint64, dt uintptr, stream uintptr) error) (func() error, error) {
	a, err := bindStreams()
	if err != nil {
		return nil, fmt.Errorf("nccl %s: %w", name, err)
	}
	var ev uintptr
	err = c.enqueue(name, t, func(p uint64, dt, compute uintptr) error {
		if c.side == 0 {
			if err := cu("cuStreamCreate", a.streamCreate, uintptr(unsafe.Pointer(&c.side)), cuStreamNonBlocking); err != nil {
				return err
			}
		}
		if err := after(a, c.side, compute); err != nil {
			return err
		}
		if err := f(p, dt, c.side); err != nil {
			return err
		}
		if err := cu("cuEventCreate", a.eventCreate, uintptr(unsafe.Pointer(&ev)), cuEventDisableTiming); err != nil {
			return err
		}
		return cu("cuEventRecord", a.eventRecord, ev, c.side)
	})
	if err != nil {
		return nil, err
	}
	return func() error {
		return c.b.WithStream(func(compute uintptr) error {
			defer cu("cuEventDestroy", a.eventDestroy, ev)
			return cu("cuStreamWaitEvent", a.streamWaitEvent, compute, ev, 0)
		})
	}, nil
}

// AllReduceAsync is AllReduce on the side stream.
func (c *NCCL) AllReduceAsync(t engine.Tensor) (func() error, error) {
	return c.async("AllReduce", t, c.allReduce(t))
}

// ReduceScatterAsync is ReduceScatter on the side stream.
func (c *NCCL) ReduceScatterAsync(t engine.Tensor) (func() error, error) {
	n, err := c.chunk("ReduceScatter", t)
	if err != nil {
		return nil, err
	}
	return c.async("ReduceScatter", t, c.reduceScatter(t, n))
}

// Abort ends the communicator at once (ncclCommAbort), failing the other
// ranks' pending collectives, after an error on this rank.
func (c *NCCL) Abort(error) {
	if c.comm != 0 {
		ncclL.call("ncclCommAbort", ncclL.commAbort, c.comm)
		c.comm = 0
	}
}

// Close destroys the communicator.
func (c *NCCL) Close() error {
	if c.comm == 0 {
		return nil
	}
	err := c.b.WithStream(func(uintptr) error {
		if c.side != 0 && streams != nil {
			cu("cuStreamDestroy", streams.streamDestroy, c.side)
			c.side = 0
		}
		return ncclL.call("ncclCommDestroy", ncclL.destroy, c.comm)
	})
	c.comm = 0
	return err
}
