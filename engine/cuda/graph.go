package cuda

import (
	"errors"
	"fmt"
	"unsafe"

	"whet/engine"
)

var _ engine.StepRecorder = (*Backend)(nil)

// errCapturing is wrapped by the error of an op that cannot be part of a
// graph (a wait for the device, a host transfer, taking scratch memory)
// when it is called while Record captures.
var errCapturing = errors.New("not possible while recording a CUDA graph")

// captureModeRelaxed is CU_STREAM_CAPTURE_MODE_RELAXED: the capture does not
// forbid other threads' unsafe calls (the backend's own are refused by
// b.capturing instead, and a Go goroutine moves between threads).
const captureModeRelaxed = 2

// graphRecording is an instantiated CUDA graph of one captured sequence of
// ops.
type graphRecording struct {
	b           *Backend
	graph, exec uintptr
}

// Record captures the kernels and matrix products that f queues on the
// backend's stream into a CUDA graph, without running them, and
// instantiates it (engine.StepRecorder). Replay launches the whole graph
// with one call: every kernel reads and writes the same addresses with the
// same scalar arguments as when recorded, so what changes between replays
// must be in device memory (engine.DeviceDecoder). An op that needs the
// host while recording (Download, Upload, an index check that would read
// back, scratch memory) fails, and Record returns its error with nothing
// held. Ops queued by other goroutines meanwhile would be captured too;
// the caller records from the one goroutine using the backend.
func (b *Backend) Record(f func() error) (engine.Recording, error) {
	d := b.drv
	if d.cuStreamBeginCapture == 0 || d.cuStreamEndCapture == 0 || d.cuGraphInstantiateWithFlags == 0 ||
		d.cuGraphLaunch == 0 || d.cuGraphExecDestroy == 0 || d.cuGraphDestroy == 0 || d.cuMemcpyDtoDAsync == 0 {
		return nil, fmt.Errorf("cuda: Record: the driver library %s lacks the stream-capture and graph functions", d.lib.path)
	}
	if b.prof != nil || b.syncEachOp {
		return nil, errors.New("cuda: Record: not while profiling or synchronising after each op (WHET_CUDA_PROFILE, WHET_CUDA_SYNC)")
	}
	exit, err := b.enter()
	if err != nil {
		return nil, err
	}
	if b.capturing {
		exit()
		return nil, errors.New("cuda: Record: already recording")
	}
	if err := d.call("cuStreamBeginCapture_v2", d.cuStreamBeginCapture, b.stream, captureModeRelaxed); err != nil {
		exit()
		return nil, withOp("Record", err)
	}
	b.capturing = true
	exit()

	ferr := f()

	exit, err = b.enter()
	if err != nil {
		return nil, err
	}
	defer exit()
	b.capturing = false
	var graph uintptr
	eerr := d.call("cuStreamEndCapture", d.cuStreamEndCapture, b.stream, uintptr(unsafe.Pointer(&graph)))
	if ferr != nil || eerr != nil {
		if graph != 0 {
			d.call("cuGraphDestroy", d.cuGraphDestroy, graph)
		}
		if ferr != nil {
			return nil, fmt.Errorf("cuda: Record: %w", ferr)
		}
		return nil, withOp("Record", eerr)
	}
	r := &graphRecording{b: b, graph: graph}
	if err := d.call("cuGraphInstantiateWithFlags", d.cuGraphInstantiateWithFlags, uintptr(unsafe.Pointer(&r.exec)), graph, 0); err != nil {
		d.call("cuGraphDestroy", d.cuGraphDestroy, graph)
		return nil, withOp("Record: instantiate", err)
	}
	return r, nil
}

// Replay launches the recorded graph on the backend's stream.
func (r *graphRecording) Replay() error {
	b := r.b
	exit, err := b.enter()
	if err != nil {
		return err
	}
	defer exit()
	if r.exec == 0 {
		return errors.New("cuda: Replay of a freed recording")
	}
	if err := b.drv.call("cuGraphLaunch", b.drv.cuGraphLaunch, r.exec, b.stream); err != nil {
		return withOp("Replay", err)
	}
	return nil
}

// Free destroys the graph (after the work queued before it).
func (r *graphRecording) Free() {
	b := r.b
	exit, err := b.enter()
	if err != nil {
		return
	}
	defer exit()
	if r.exec != 0 {
		b.drv.call("cuStreamSynchronize", b.drv.cuStreamSynchronize, b.stream)
		b.drv.call("cuGraphExecDestroy", b.drv.cuGraphExecDestroy, r.exec)
		b.drv.call("cuGraphDestroy", b.drv.cuGraphDestroy, r.graph)
		r.exec, r.graph = 0, 0
	}
}
