package cuda

import (
	"errors"
	"fmt"
	"math"
	"runtime"
	"sync"
	"unsafe"

	"whet/engine"
	"whet/engine/envswitch"
	"whet/engine/opcheck"
	"whet/engine/units"
)

// Options choose the device and where compiled kernels are cached.
type Options struct {
	Device int // CUDA device ordinal
	// CacheDir holds compiled cubins; "" means $XDG_CACHE_HOME/whet/kernels
	// or ~/.cache/whet/kernels. "-" turns the disk cache off.
	CacheDir string
	// SyncEachOp waits for the device after every kernel launch and GEMM so
	// that an asynchronous fault is reported by the op that caused it, with
	// its kernel and sizes, instead of at the next Sync. Slow; for
	// debugging. The environment variable WHET_CUDA_SYNC=1 sets it too.
	SyncEachOp bool
	// Profile times every kernel and matrix product with CUDA events
	// (ProfileReport gives the table; whet bench prints it). The
	// environment variable WHET_CUDA_PROFILE=1 sets it too.
	Profile bool
	// FusedAdamW steps every AdamW with the fused kernels (kernels/adamw.cu:
	// adamw_multi_fused, clipping's scale folded into the update, 16-byte
	// accesses). They are the default since they ran on an H100
	// (tools/gpu/full-optimizer, 2026-12-07: 1B full fine-tuning 2 % faster,
	// TestTrainingMatchesCPU passed with them), so the field changes
	// nothing now; the environment variable WHET_CUDA_FUSED_ADAMW=0
	// (FusedAdamWEnv) goes back to adamw_multi with the gradients scaled for
	// clipping in a pass of their own (scale_multi). bf16 master weights
	// take the fused kernels regardless.
	FusedAdamW bool
	// MMASyncAttention keeps training attention at head dims 64 and 128 on
	// an sm_90 card (H100, H200) on the mma.sync kernels instead of the
	// Hopper kernels of kernels/attention_hopper.cu (wgmma, compiled for
	// sm_90a), which are the default there since they passed the attention
	// tests on an H100 and ran 1.5x faster at head dim 128
	// (tools/gpu/attention-hopper, 2026-12-07; docs/performance.md). If the
	// Hopper kernels do not compile, the backend says why on standard error
	// once and keeps the mma.sync kernels. Both are deterministic (no
	// atomics: a rerun is bit-equal). The environment variable
	// WHET_ATTN_HOPPER=0 (AttnHopperEnv) sets it too.
	MMASyncAttention bool
	// Deterministic keeps to kernels whose results are bit-equal from run
	// to run: the attention backward then takes the split dq / dK-dV
	// kernels (no atomics) even where the fused Hopper backward, which adds
	// dq through fp32 atomics in an order that varies, is selected
	// (AttnBwdFusedDefine). Two other kernels still sum with atomics and
	// are not switched: the embedding gradient (kernels/embedding.cu, when
	// a token repeats; only full fine-tuning trains the embeddings) and the
	// gradient norm's float64 block sums (kernels/reduce.cu, last bits of a
	// float64).
	// The run file's train.deterministic sets it (SetDeterministic), and so
	// does the environment variable WHET_DETERMINISTIC=1 (DeterministicEnv).
	Deterministic bool
	// TuneGEMM times cuBLASLt's candidate algorithms on the first call of
	// each matrix product and keeps the fastest (gemmtune.go). It is the
	// default since it ran on an H100 (2026-12-07); the environment
	// variable WHET_GEMM_TUNE=0 (GEMMTuneEnv) turns it off. A tuned run is
	// not bit-equal to an untuned one, nor always to another tuned run, so
	// Deterministic turns tuning off.
	TuneGEMM bool
	// ComputeF32 keeps weights and activations in float32 instead of bf16
	// (slower, twice the memory): for checking the GPU against the CPU
	// reference without bf16 rounding, e.g. token-for-token generation.
	ComputeF32 bool
	// MemoryLimit caps the device memory the backend holds, in bytes: an
	// allocation past it fails as out of memory, and MemInfo reports the
	// cap as the card's size. 0 means engine.MemoryLimit()
	// (WHET_MEMORY_LIMIT), and no cap when that is unset.
	MemoryLimit int64
	// Precompile compiles, as the backend opens, every kernel file the
	// kernel cache lacks in background goroutines, in parallel, instead of
	// one file at a time on first use (precompile.go); PrecompileKernels
	// reports the progress. Not yet run on a GPU. The environment
	// variable WHET_CUDA_PRECOMPILE=1 (PrecompileEnv) sets it too.
	Precompile bool
}

// Backend is the CUDA implementation of engine.Backend: bf16, f32 and i32
// tensors in plain device allocations, GEMM through cuBLASLt and every
// other op through the kernels of package kernels, compiled by NVRTC.
//
// Threading: a CUDA context is current per OS thread, and Go moves
// goroutines between threads. Every exported method therefore takes the
// backend's mutex, locks its goroutine to the current OS thread and makes
// the context current (cuCtxSetCurrent is a thread-local store, far cheaper
// than a kernel launch) before any CUDA call, and undoes the lock on
// return. This was chosen over one goroutine owning the context and
// serving a work queue: there is no channel hop per op (the model calls
// thousands per step), no goroutine to shut down, and errors and stack
// traces stay in the caller's goroutine. Ops are serialised by the mutex,
// like work on one stream.
type Backend struct {
	mu sync.Mutex

	drv    *driver
	rtc    *nvrtc
	lt     *cublasLt
	dev    int32
	ctx    uintptr
	stream uintptr
	closed bool

	computeF32            bool // Options.ComputeF32
	name                  string
	arch                  string // e.g. "sm_90"
	smCount, maxSmemOptin int
	cache                 kernelCache
	syncEachOp            bool
	attnTC256             bool      // AttnTC256Env: head dim 256 on the tensor-core attention kernels
	fusedAdamW            bool      // Options.FusedAdamW
	sumSquaresV2          bool      // the gradient norm's sums without atomics (the default; SumSquaresV2Env=0 goes back)
	rmsnormBwdV2          string    // rmsnormBwdV2Mode: "1" two-stage RMSNorm weight gradient, "2" fused with the input gradient (the default), "0" the one-stage kernel
	attnHopper            bool      // not Options.MMASyncAttention
	attnHopperOff         string    // why the Hopper attention kernels are not used after all ("" while they are)
	attnBwdFused          bool      // AttnBwdFusedDefine in nvrtcDefines (the default; AttnBwdFusedEnv=0 drops it): the fused Hopper backward is compiled and asked for
	attnBwdFusedRuns      int       // fused Hopper backwards launched (for tests)
	attnBwdHopperRuns     int       // attention backwards that took the Hopper kernels, fused or split (for tests)
	deterministic         bool      // Options.Deterministic, DeterministicEnv or SetDeterministic
	prof                  *profiler // nil unless profiling
	tuner                 *profiler // CUDA events for timing GEMM candidates; nil unless tuning (gemmtune.go)
	tuneLog               []tuneRecord

	modules map[string]uintptr   // kernel file -> CUmodule
	funcs   map[string]*function // kernel name -> function

	workspace     uint64 // cuBLASLt workspace
	workspaceSize int
	scratch       uint64 // 8 bytes for float64 reductions

	inUse, peak int64
	limit       int64 // Options.MemoryLimit; 0 = none
	live        map[*allocation]struct{}

	// opScratch is device memory that ops needing a temporary buffer on
	// every call (attention's backward) reuse, grown on demand and held
	// until Close, so that no cuMemFree (which waits for the device) sits
	// on the hot path.
	opScratch      uint64
	opScratchBytes int64
	attnOrder      attnOrder    // attention's block order table (attnorder.go)
	chunkTables    []chunkTable // multi-tensor kernels' chunk tables (multitensor.go)

	indexReads int // index tensors read back for checking (for tests)

	// capturing is set while Record captures the stream's work into a
	// graph (graph.go): ops that would wait for the device, move data
	// from or to the host, or take and free memory fail instead, and
	// same-dtype copies go onto the stream.
	capturing bool
	// gemvDisabled sends one-row products to cuBLASLt (GEMVEnv=0).
	gemvDisabled bool
	// decodeAttnV2 sends AttentionDecode to attention_decode_v2_d* where
	// it applies (DecodeAttnEnv=v2).
	decodeAttnV2 bool
	// decodeAttnV3 takes attention_decode_v3_d* on that path
	// (DecodeAttnEnv=v3).
	decodeAttnV3 bool
	// pdl launches the kernels of pdlKernels with programmatic dependent
	// launch (PDLEnv=1 on sm_90 and newer with cuLaunchKernelEx; pdl.go).
	pdl bool
	// decodeScratch holds AttentionDecode's partial results and per-head
	// counters (decode.go), grown outside a capture.
	decodeScratch      uint64
	decodeScratchBytes int64
	// argmaxScratch holds gemv_bf16_argmax's best key (u64) and ticket
	// counter (u32), zero between launches (decodeargmax.go), made
	// outside a capture.
	argmaxScratch uint64

	hc *hostCopier // pinned host memory and the copy stream (offload.go), made on first use

	aot *aotRun // the ahead-of-time kernel compile (precompile.go); nil when off
	// lazyReport, without aot, is told of each kernel file function
	// compiles on first use (PrecompileKernels); lazyCompiles counts them.
	lazyReport   func(engine.KernelProgress)
	lazyCompiles int

	// The tensor maps attention_hopper_tmap_store last wrote into the
	// module (HOP_WS_TMA, attention.go), so unchanged ones are not written again.
	hopTmaps    [3][16]uint64
	hopTmapsSet [3]bool
}

// function is a loaded kernel and the dynamic shared memory it was opened to.
type function struct {
	name     string
	handle   uintptr
	smemMax  int
	carveout bool // the preferred shared-memory carveout was set to the maximum (preferMaxSmem)
}

// allocation is one cuMemAlloc; tensors and their views point at it.
type allocation struct {
	ptr   uint64
	bytes int64
	freed bool
	// known, for an I32 allocation, summarises values the host wrote last
	// (Upload, UploadInt32, Fill) so that ids, labels and positions can be
	// checked without reading them back from the device. Any other write
	// to the allocation clears it; no kernel writes I32 tensors.
	known *intSummary
}

// intSummary bounds the int32 values of bytes [off, off+4n) of an allocation.
type intSummary struct {
	off      int64
	n        int
	min, max int32 // over all values
	// lo and hi bound the values other than -100 (the ignored label);
	// others is false when every value is -100.
	lo, hi int32
	others bool
}

func summarise(off int64, v []int32) *intSummary {
	s := &intSummary{off: off, n: len(v), min: math.MaxInt32, max: math.MinInt32, lo: math.MaxInt32, hi: math.MinInt32}
	for _, x := range v {
		s.min, s.max = min(s.min, x), max(s.max, x)
		if x != ignoreLabel {
			s.lo, s.hi, s.others = min(s.lo, x), max(s.hi, x), true
		}
	}
	return s
}

// summary returns what is known of t's values, or nil. The caller holds
// the backend's lock.
func (t *Tensor) summary() *intSummary {
	k := t.alloc.known
	if k == nil || t.off < k.off || t.off+t.bytes() > k.off+4*int64(k.n) {
		return nil
	}
	return k
}

// Tensor is a device tensor: a window of an allocation with a shape.
type Tensor struct {
	b     *Backend
	alloc *allocation
	off   int64 // byte offset into alloc
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

// ptr is the device address of the first element.
func (t *Tensor) ptr() uint64 { return t.alloc.ptr + uint64(t.off) }

func (t *Tensor) bytes() int64 { return int64(t.n) * int64(t.dt.Size()) }

var (
	_ engine.Backend            = (*Backend)(nil)
	_ engine.MemoryReporter     = (*Backend)(nil)
	_ engine.PeakResetter       = (*Backend)(nil)
	_ engine.FreeMemoryReporter = (*Backend)(nil)
	_ engine.Closer             = (*Backend)(nil)
	_ engine.KVAttention        = (*Backend)(nil)
	_ engine.ComputeDTyper      = (*Backend)(nil)
	_ engine.CrossEntropyInto   = (*Backend)(nil)
	_ engine.CappedCrossEntropy = (*Backend)(nil)
)

// The program picks backends through engine's registry; importing this
// package makes "cuda" available there (New with default options).
func init() {
	engine.RegisterBackend("cuda", func() (engine.Backend, error) {
		b, err := New(Options{})
		if err != nil {
			return nil, err // never a typed nil inside the interface
		}
		return b, nil
	})
}

// ComputeDType is bf16: weights and activations live in bf16 on the GPU,
// with float32 accumulation (engine.ComputeDTyper).
func (b *Backend) ComputeDType() engine.DType {
	if b.computeF32 {
		return engine.F32
	}
	return engine.BF16
}

const (
	defaultWorkspace = 32 << 20 // cuBLASLt workspace, as NVIDIA advises for Hopper
	scratchBytes     = 256      // float64 reduction results
)

// SyncEnv set to 1 is Options.SyncEachOp; ProfileEnv set to 1 is
// Options.Profile.
const (
	SyncEnv    = "WHET_CUDA_SYNC"
	ProfileEnv = "WHET_CUDA_PROFILE"
)

// switchesErr refuses a value of a WHET_* switch that envswitch does not
// accept (WHET_DECODE_ATTN=v4), naming the variable and the accepted
// values, rather than letting the backend quietly take a default.
func switchesErr() error {
	if err := envswitch.Check(); err != nil {
		return fmt.Errorf("cuda: %w", err)
	}
	return nil
}

// New opens the driver, NVRTC and cuBLASLt, retains the device's primary
// context and creates a stream. It fails with a message naming what was
// looked for and where when a library or the GPU is missing; callers then
// fall back to the CPU backend.
func New(opts Options) (*Backend, error) {
	if err := switchesErr(); err != nil {
		return nil, err
	}
	limit := opts.MemoryLimit
	if limit == 0 {
		var err error
		if limit, err = engine.MemoryLimit(); err != nil {
			return nil, fmt.Errorf("cuda: %w", err)
		}
	}
	drv, err := openDriver()
	if err != nil {
		return nil, fmt.Errorf("cuda: %w: %v", ErrNoGPU, err)
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if err := drv.call("cuInit", drv.cuInit, 0); err != nil {
		return nil, fmt.Errorf("cuda: %w: the driver library %s loaded but %v", ErrNoGPU, drv.lib.path, err)
	}
	b := &Backend{
		drv: drv, dev: -1, modules: map[string]uintptr{}, funcs: map[string]*function{},
		live: map[*allocation]struct{}{}, syncEachOp: opts.SyncEachOp || envswitch.On(SyncEnv),
		computeF32: opts.ComputeF32, limit: limit, gemvDisabled: gemvOff(), decodeAttnV2: decodeAttnV2On(), decodeAttnV3: decodeAttnV3On(), attnTC256: envswitch.On(AttnTC256Env),
		fusedAdamW:   opts.FusedAdamW || envswitch.On(FusedAdamWEnv),
		rmsnormBwdV2: rmsnormBwdV2Mode(),
		sumSquaresV2: envswitch.On(SumSquaresV2Env),
	}
	// The environment's switches, as whet fit plans with them
	// (AttnKernelsFor).
	env := AttnKernelsFor("")
	b.attnHopper = !opts.MMASyncAttention && !env.NoHopper
	b.attnBwdFused = !env.NoFusedBackward
	b.deterministic = opts.Deterministic || env.Deterministic
	if err := b.open(opts); err != nil {
		b.release()
		return nil, err
	}
	if precompileOn(opts.Precompile) {
		if err := b.startPrecompile(); err != nil {
			b.release()
			return nil, err
		}
	}
	if opts.Profile || envswitch.On(ProfileEnv) {
		if b.prof, err = newProfiler(drv); err != nil {
			b.release()
			return nil, err
		}
	}
	if gemmTuneOn(opts.TuneGEMM) {
		if b.tuner, err = newProfiler(drv); err != nil {
			b.release()
			return nil, err
		}
	}
	return b, nil
}

func (b *Backend) open(opts Options) error {
	d := b.drv
	var dev int32
	if err := d.call("cuDeviceGet", d.cuDeviceGet, uintptr(unsafe.Pointer(&dev)), uintptr(opts.Device)); err != nil {
		return fmt.Errorf("cuda: %w: device %d: %v", ErrNoGPU, opts.Device, err)
	}
	b.dev = dev
	name, err := d.deviceName(dev)
	if err != nil {
		return withOp("New", err)
	}
	major, err := d.deviceAttr(dev, attrComputeCapabilityMajor)
	if err != nil {
		return withOp("New", err)
	}
	minor, err := d.deviceAttr(dev, attrComputeCapabilityMinor)
	if err != nil {
		return withOp("New", err)
	}
	if b.smCount, err = d.deviceAttr(dev, attrMultiprocessorCount); err != nil {
		return withOp("New", err)
	}
	if b.maxSmemOptin, err = d.deviceAttr(dev, attrMaxSharedPerBlockOptin); err != nil {
		return withOp("New", err)
	}
	b.name = name
	if b.arch, err = deviceArch(opts.Device, name, major, minor, envswitch.Choice(archOverrideEnv)); err != nil {
		return err
	}
	b.pdl = pdlOn() && pdlArch(b.arch) && d.cuLaunchKernelEx != 0
	if err := d.call("cuDevicePrimaryCtxRetain", d.cuDevicePrimaryCtxRetain, uintptr(unsafe.Pointer(&b.ctx)), uintptr(dev)); err != nil {
		return withOp("New", err)
	}
	if err := d.call("cuCtxSetCurrent", d.cuCtxSetCurrent, b.ctx); err != nil {
		return withOp("New", err)
	}
	if err := d.call("cuStreamCreate", d.cuStreamCreate, uintptr(unsafe.Pointer(&b.stream)), 0); err != nil {
		return withOp("New", err)
	}
	if b.rtc, err = openNVRTC(); err != nil {
		return fmt.Errorf("cuda: %w", err)
	}
	if err := b.rtc.checkArch(b.arch); err != nil {
		return fmt.Errorf("cuda: device %d (%s): %w", opts.Device, name, err)
	}
	if b.lt, err = openCublasLt(); err != nil {
		return fmt.Errorf("cuda: %w", err)
	}
	if err := b.lt.create(); err != nil {
		return withOp("New", err)
	}
	switch opts.CacheDir {
	case "":
		b.cache = kernelCache{dir: defaultCacheDir()}
	case "-":
		b.cache = kernelCache{}
	default:
		b.cache = kernelCache{dir: opts.CacheDir}
	}
	if b.workspace, err = b.rawAlloc(defaultWorkspace); err != nil {
		return withOp("New: cuBLASLt workspace (32 MiB)", err)
	}
	b.workspaceSize = defaultWorkspace
	if b.scratch, err = b.rawAlloc(scratchBytes); err != nil {
		return withOp("New: reduction scratch", err)
	}
	return nil
}

// release frees whatever open or Close set up, in reverse order.
func (b *Backend) release() {
	if b.aot != nil {
		b.aot.stop() // no more files; the ones compiling finish
	}
	d := b.drv
	if b.ctx != 0 {
		d.call("cuCtxSetCurrent", d.cuCtxSetCurrent, b.ctx)
	}
	if b.lt != nil {
		b.lt.destroy()
	}
	b.releaseCopier()
	for a := range b.live {
		b.rawFree(a.ptr, a.bytes)
		a.freed = true
		delete(b.live, a)
	}
	b.rawFree(b.opScratch, b.opScratchBytes)
	b.opScratch, b.opScratchBytes = 0, 0
	b.rawFree(b.decodeScratch, b.decodeScratchBytes)
	b.decodeScratch, b.decodeScratchBytes = 0, 0
	b.rawFree(b.argmaxScratch, argmaxScratchBytes)
	b.argmaxScratch = 0
	b.rawFree(b.attnOrder.ptr, b.attnOrder.bytes)
	b.attnOrder = attnOrder{}
	for _, t := range b.chunkTables {
		b.rawFree(t.ptr, t.bytes)
	}
	b.chunkTables = nil
	b.rawFree(b.workspace, int64(b.workspaceSize))
	b.rawFree(b.scratch, scratchBytes)
	b.workspace, b.scratch = 0, 0
	for name, m := range b.modules {
		d.call("cuModuleUnload", d.cuModuleUnload, m)
		delete(b.modules, name)
	}
	b.funcs = map[string]*function{}
	if b.stream != 0 {
		d.call("cuStreamDestroy_v2", d.cuStreamDestroy, b.stream)
		b.stream = 0
	}
	if b.ctx != 0 {
		d.call("cuDevicePrimaryCtxRelease_v2", d.cuDevicePrimaryCtxRelease, uintptr(b.dev))
		b.ctx = 0
	}
}

// Close frees every tensor still allocated, the kernels, the cuBLASLt
// handle and the stream, and releases the context. The backend is
// unusable afterwards.
func (b *Backend) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return nil
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	var err error
	if b.ctx != 0 && b.stream != 0 {
		if e := b.drv.call("cuCtxSetCurrent", b.drv.cuCtxSetCurrent, b.ctx); e == nil {
			err = withOp("Close", b.drv.call("cuStreamSynchronize", b.drv.cuStreamSynchronize, b.stream))
		}
	}
	b.release()
	b.closed = true
	return err
}

var errClosed = errors.New("cuda: backend is closed")

// ErrNoGPU is wrapped by New's error when there is no usable NVIDIA GPU:
// the driver library is missing, the driver does not start, or the device
// does not exist. Callers fall back to the CPU backend on it; any other
// error from New (NVRTC or cuBLASLt missing, say) is a broken install
// worth reporting as such.
var ErrNoGPU error = noGPUError{}

// noGPUError is ErrNoGPU: it is also engine.ErrNoDevice, so that "auto"
// falls back to the CPU without a CUDA warning the user never asked for.
type noGPUError struct{}

func (noGPUError) Error() string        { return "no usable NVIDIA GPU" }
func (noGPUError) Is(target error) bool { return target == engine.ErrNoDevice }

// enter serialises the op, pins the goroutine to its thread and makes the
// context current there; the returned func undoes it.
func (b *Backend) enter() (func(), error) {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil, errClosed
	}
	runtime.LockOSThread()
	if err := b.drv.call("cuCtxSetCurrent", b.drv.cuCtxSetCurrent, b.ctx); err != nil {
		runtime.UnlockOSThread()
		b.mu.Unlock()
		return nil, err
	}
	return func() {
		runtime.UnlockOSThread()
		b.mu.Unlock()
	}, nil
}

// Name identifies the backend and its device.
func (b *Backend) Name() string { return fmt.Sprintf("cuda (%s, %s)", b.name, b.arch) }

// DeviceName is the GPU's marketing name, e.g. "NVIDIA H100 80GB HBM3".
func (b *Backend) DeviceName() string { return b.name }

// Arch is the compute architecture the kernels are compiled for, e.g. "sm_90".
func (b *Backend) Arch() string { return b.arch }

// Versions reports the NVRTC and cuBLASLt versions in use, and their paths.
func (b *Backend) Versions() string {
	return fmt.Sprintf("driver %s, NVRTC %d.%d (%s), cuBLASLt %d (%s)", b.drv.lib.path, b.rtc.major, b.rtc.minor, b.rtc.lib.path, b.lt.version(), b.lt.lib.path)
}

// PeakBytes is the most device memory this backend held at once (tensors,
// the cuBLASLt workspace and scratch) since New.
func (b *Backend) PeakBytes() int64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.peak
}

// ResetPeak starts PeakBytes again from the memory held now.
func (b *Backend) ResetPeak() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.peak = b.inUse
}

// InUseBytes is the device memory this backend holds now.
func (b *Backend) InUseBytes() int64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.inUse
}

// MemInfo returns the device's free and total memory as the driver sees
// them (other processes included).
func (b *Backend) MemInfo() (free, total int64, err error) {
	exit, err := b.enter()
	if err != nil {
		return 0, 0, err
	}
	defer exit()
	var f, t uint64
	if err := b.drv.call("cuMemGetInfo_v2", b.drv.cuMemGetInfo, uintptr(unsafe.Pointer(&f)), uintptr(unsafe.Pointer(&t))); err != nil {
		return 0, 0, err
	}
	free, total = int64(f), int64(t)
	if b.limit > 0 {
		// The card as the cap makes it: what is left under the cap, if
		// the device itself has that much free.
		free, total = min(free, max(b.limit-b.inUse, 0)), min(total, b.limit)
	}
	return free, total, nil
}

// rawAlloc takes device memory for bytes (rounded up to whole 32-bit
// words, at least one, so that cuMemsetD32 can clear it) and counts the
// bytes asked for. The caller holds the context.
func (b *Backend) rawAlloc(bytes int64) (uint64, error) {
	if err := overLimit(b.inUse, bytes, b.limit); err != nil {
		return 0, err
	}
	var p uint64
	if err := b.drv.call("cuMemAlloc_v2", b.drv.cuMemAlloc, uintptr(unsafe.Pointer(&p)), uintptr(allocWords(bytes)*4)); err != nil {
		return 0, err
	}
	b.inUse += bytes
	if b.inUse > b.peak {
		b.peak = b.inUse
	}
	return p, nil
}

// overLimit refuses, as the driver's out-of-memory error (so that
// IsOutOfMemory and every caller treat it alike), an allocation of bytes
// that would take the memory held past the cap (0: none).
func overLimit(inUse, bytes, limit int64) error {
	if limit <= 0 || inUse+bytes <= limit {
		return nil
	}
	return &Error{Call: "cuMemAlloc_v2", Code: cudaErrorOutOfMemory, Name: "CUDA_ERROR_OUT_OF_MEMORY",
		Desc: fmt.Sprintf("over the memory limit of %s (%s): %s held, %s asked", units.Bytes(limit), engine.MemoryLimitEnv, units.Bytes(inUse), units.Bytes(bytes))}
}

// allocWords is the number of 32-bit words rawAlloc takes for bytes.
func allocWords(bytes int64) int64 { return max((bytes+3)/4, 1) }

func (b *Backend) rawFree(p uint64, bytes int64) {
	if p == 0 {
		return
	}
	b.drv.call("cuMemFree_v2", b.drv.cuMemFree, uintptr(p))
	b.inUse -= bytes
}

// shapeLen is opcheck.ShapeLen with the CUDA backend's limit, 1<<62
// elements.
func shapeLen(shape []int) (int, error) { return opcheck.ShapeLen(shape, 1<<62) }

// Alloc returns a zeroed tensor in its own device allocation. Out of
// memory is an error naming the dtype, shape, size and the device's free
// memory; nothing is held after it.
func (b *Backend) Alloc(dt engine.DType, shape ...int) (engine.Tensor, error) {
	if dt != engine.F32 && dt != engine.BF16 && dt != engine.I32 {
		return nil, fmt.Errorf("cuda: Alloc: unknown dtype %d", dt)
	}
	n, err := shapeLen(shape)
	if err != nil {
		return nil, fmt.Errorf("cuda: Alloc %s: %w", dt, err)
	}
	bytes := int64(n) * int64(dt.Size())
	exit, err := b.enter()
	if err != nil {
		return nil, err
	}
	defer exit()
	op := fmt.Sprintf("Alloc %s %v (%s)", dt, shape, units.Bytes(bytes))
	p, err := b.rawAlloc(bytes)
	if err != nil {
		if IsOutOfMemory(err) {
			var f, t uint64
			if b.drv.call("cuMemGetInfo_v2", b.drv.cuMemGetInfo, uintptr(unsafe.Pointer(&f)), uintptr(unsafe.Pointer(&t))) == nil {
				op += fmt.Sprintf(" with %s free of %s, %s held by this backend", units.Bytes(int64(f)), units.Bytes(int64(t)), units.Bytes(b.inUse))
			}
		}
		return nil, withOp(op, err)
	}
	if err := b.drv.call("cuMemsetD32_v2", b.drv.cuMemsetD32, uintptr(p), 0, uintptr(allocWords(bytes))); err != nil {
		b.rawFree(p, bytes)
		return nil, withOp(op, err)
	}
	a := &allocation{ptr: p, bytes: bytes}
	b.live[a] = struct{}{}
	return &Tensor{b: b, alloc: a, n: n, shape: append([]int(nil), shape...), dt: dt, owner: true}, nil
}

// View returns a tensor sharing t's memory from element offset on.
func (b *Backend) View(t engine.Tensor, offset int, shape ...int) (engine.Tensor, error) {
	c := b.check("View")
	src := c.tensor("t", t)
	if c.Err != nil {
		return nil, c.Err
	}
	n, err := shapeLen(shape)
	if err != nil {
		return nil, fmt.Errorf("cuda: View of %v: %w", src.shape, err)
	}
	if offset < 0 || offset+n > src.n {
		return nil, fmt.Errorf("cuda: View: offset %d with shape %v (%d elements) does not fit in a tensor of shape %v (%d elements)",
			offset, shape, n, src.shape, src.n)
	}
	return &Tensor{b: b, alloc: src.alloc, off: src.off + int64(offset)*int64(src.dt.Size()), n: n,
		shape: append([]int(nil), shape...), dt: src.dt}, nil
}

// Free releases a tensor from Alloc; freeing a view, nil or an already
// freed tensor does nothing.
func (b *Backend) Free(t engine.Tensor) {
	ct, ok := t.(*Tensor)
	if !ok || ct == nil || !ct.owner || ct.b != b {
		return
	}
	exit, err := b.enter()
	if err != nil {
		return
	}
	defer exit()
	if ct.alloc.freed {
		return
	}
	b.forgetCopies(ct.alloc)
	ct.alloc.freed = true
	delete(b.live, ct.alloc)
	b.rawFree(ct.alloc.ptr, ct.alloc.bytes)
}

// Upload copies src into dst, converting to dst's dtype (round to nearest
// even for bf16). An I32 tensor accepts only integral values.
func (b *Backend) Upload(dst engine.Tensor, src []float32) error {
	c := b.check("Upload")
	d := c.tensor("dst", dst)
	if c.Err != nil {
		return c.Err
	}
	if len(src) != d.n {
		return fmt.Errorf("cuda: Upload: %d values for dst %v (%d elements)", len(src), d.shape, d.n)
	}
	if d.n == 0 {
		return nil
	}
	var host []byte
	switch d.dt {
	case engine.F32:
		host = unsafe.Slice((*byte)(unsafe.Pointer(&src[0])), 4*len(src))
	case engine.BF16:
		h := make([]uint16, len(src))
		toBF16(h, src)
		host = unsafe.Slice((*byte)(unsafe.Pointer(&h[0])), 2*len(h))
	case engine.I32:
		h := make([]int32, len(src))
		for i, v := range src {
			if v != float32(int32(v)) {
				return fmt.Errorf("cuda: Upload: value %g at index %d is not an int32 for I32 dst %v", v, i, d.shape)
			}
			h[i] = int32(v)
		}
		return b.htod("Upload", d, unsafe.Slice((*byte)(unsafe.Pointer(&h[0])), 4*len(h)), summarise(d.off, h))
	}
	return b.htod("Upload", d, host, nil)
}

// UploadInt32 copies src into an I32 tensor.
func (b *Backend) UploadInt32(dst engine.Tensor, src []int32) error {
	c := b.check("UploadInt32")
	d := c.intTensor("dst", dst)
	if c.Err != nil {
		return c.Err
	}
	if len(src) != d.n {
		return fmt.Errorf("cuda: UploadInt32: %d values for dst %v (%d elements)", len(src), d.shape, d.n)
	}
	if d.n == 0 {
		return nil
	}
	return b.htod("UploadInt32", d, unsafe.Slice((*byte)(unsafe.Pointer(&src[0])), 4*len(src)), summarise(d.off, src))
}

// htod copies host bytes into d; known, for I32 data, summarises them.
func (b *Backend) htod(op string, d *Tensor, host []byte, known *intSummary) error {
	exit, err := b.enter()
	if err != nil {
		return err
	}
	defer exit()
	if b.capturing {
		return fmt.Errorf("cuda: %s %s %v: %w", op, d.dt, d.shape, errCapturing)
	}
	d.alloc.known = nil
	if err := b.drv.call("cuMemcpyHtoD_v2", b.drv.cuMemcpyHtoD, uintptr(d.ptr()), uintptr(unsafe.Pointer(&host[0])), uintptr(len(host))); err != nil {
		return withOp(fmt.Sprintf("%s %s %v", op, d.dt, d.shape), err)
	}
	d.alloc.known = known
	return nil
}

// Download copies src into dst as float32. It waits for the work queued
// before it.
func (b *Backend) Download(src engine.Tensor, dst []float32) error {
	c := b.check("Download")
	s := c.tensor("src", src)
	if c.Err != nil {
		return c.Err
	}
	if len(dst) != s.n {
		return fmt.Errorf("cuda: Download: room for %d values, src %v has %d elements", len(dst), s.shape, s.n)
	}
	if s.n == 0 {
		return nil
	}
	exit, err := b.enter()
	if err != nil {
		return err
	}
	defer exit()
	op := fmt.Sprintf("Download %s %v", s.dt, s.shape)
	switch s.dt {
	case engine.F32:
		return withOp(op, b.dtoh(unsafe.Pointer(&dst[0]), s.ptr(), 4*s.n))
	case engine.BF16:
		h := make([]uint16, s.n)
		if err := b.dtoh(unsafe.Pointer(&h[0]), s.ptr(), 2*s.n); err != nil {
			return withOp(op, err)
		}
		for i, v := range h {
			dst[i] = bf16Value(v)
		}
	case engine.I32:
		h := make([]int32, s.n)
		if err := b.dtoh(unsafe.Pointer(&h[0]), s.ptr(), 4*s.n); err != nil {
			return withOp(op, err)
		}
		for i, v := range h {
			dst[i] = float32(v)
		}
	}
	return nil
}

// dtoh copies device memory to host memory after the stream's work.
func (b *Backend) dtoh(dst unsafe.Pointer, src uint64, bytes int) error {
	if b.capturing {
		return fmt.Errorf("reading %d bytes back: %w", bytes, errCapturing)
	}
	if err := b.drv.call("cuStreamSynchronize", b.drv.cuStreamSynchronize, b.stream); err != nil {
		return err
	}
	return b.drv.call("cuMemcpyDtoH_v2", b.drv.cuMemcpyDtoH, uintptr(dst), uintptr(src), uintptr(bytes))
}

// downloadInt32 reads an I32 tensor (for checking ids and labels).
func (b *Backend) downloadInt32(t *Tensor) ([]int32, error) {
	h := make([]int32, t.n)
	if t.n == 0 {
		return h, nil
	}
	return h, b.dtoh(unsafe.Pointer(&h[0]), t.ptr(), 4*t.n)
}

// Sync waits for all queued work and reports any asynchronous failure.
func (b *Backend) Sync() error {
	exit, err := b.enter()
	if err != nil {
		return err
	}
	defer exit()
	if err := b.drv.call("cuStreamSynchronize", b.drv.cuStreamSynchronize, b.stream); err != nil {
		return withOp("Sync", err)
	}
	if b.hc != nil {
		if err := b.drv.call("cuStreamSynchronize", b.drv.cuStreamSynchronize, b.hc.stream); err != nil {
			return withOp("Sync: copy stream", err)
		}
	}
	if b.prof != nil {
		return withOp("Sync", b.prof.collect(b.drv))
	}
	return nil
}

// bf16Bits rounds a float32 to bfloat16 (nearest, ties to even) as
// engine/cpu.RoundBF16 does; NaN stays a quiet NaN.
func bf16Bits(f float32) uint16 {
	u := math.Float32bits(f)
	if u&0x7fffffff > 0x7f800000 {
		return uint16(u>>16) | 0x40
	}
	u += 0x7fff + (u>>16)&1
	return uint16(u >> 16)
}

func bf16Value(h uint16) float32 {
	return math.Float32frombits(uint32(h) << 16)
}

// toBF16 rounds src into dst, on every CPU for a large tensor (a model's
// weights: converting 8 billion values on one core takes seconds).
func toBF16(dst []uint16, src []float32) {
	const chunk = 1 << 20
	if len(src) <= chunk {
		for i, v := range src {
			dst[i] = bf16Bits(v)
		}
		return
	}
	var wg sync.WaitGroup
	sem := make(chan struct{}, runtime.NumCPU())
	for c0 := 0; c0 < len(src); c0 += chunk {
		wg.Add(1)
		sem <- struct{}{}
		go func(c0 int) {
			defer wg.Done()
			defer func() { <-sem }()
			c1 := min(c0+chunk, len(src))
			for i, v := range src[c0:c1] {
				dst[c0+i] = bf16Bits(v)
			}
		}(c0)
	}
	wg.Wait()
}
