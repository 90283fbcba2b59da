package cuda

import (
	"fmt"
	"runtime"
	"unsafe"
)

// dim3 is a CUDA grid or block shape.
type dim3 struct{ x, y, z int }

func (d dim3) String() string { return fmt.Sprintf("(%d,%d,%d)", d.x, d.y, d.z) }

// function returns the kernel name from file (a kernels/*.cu source),
// compiling the file with NVRTC on first use (or loading its cubin from the
// disk cache) and loading the module. The caller holds the context.
func (b *Backend) function(file, name string) (*function, error) {
	if f, ok := b.funcs[name]; ok {
		return f, nil
	}
	mod, ok := b.modules[file]
	if !ok {
		j, err := b.kernelJob(file)
		if err != nil {
			return nil, err
		}
		// The cache's cubin, or one compiled here or ahead of first use
		// (precompile.go: a compile in flight is waited for), stored in
		// the cache.
		b.reportLazyCompile(j)
		cubin, fromCache, err := processBuilds.get(b.rtc, b.cache, j)
		if err != nil {
			return nil, err
		}
		err = b.drv.call("cuModuleLoadData", b.drv.cuModuleLoadData, uintptr(unsafe.Pointer(&mod)), uintptr(unsafe.Pointer(&cubin[0])))
		if err != nil && fromCache {
			// A damaged cache entry: compile afresh and try once more.
			if cubin, err = b.rtc.compileWith(file, j.src, j.headers, j.arch, j.opts); err != nil {
				return nil, err
			}
			if err = b.drv.call("cuModuleLoadData", b.drv.cuModuleLoadData, uintptr(unsafe.Pointer(&mod)), uintptr(unsafe.Pointer(&cubin[0]))); err == nil {
				b.cache.store(file, j.key, cubin)
			}
		}
		if err != nil {
			return nil, fmt.Errorf("loading kernels/%s for %s: %w", file, j.arch, err)
		}
		b.modules[file] = mod
	}
	nameC := cBytes(name)
	f := &function{name: name}
	if err := b.drv.call("cuModuleGetFunction", b.drv.cuModuleGetFunction, uintptr(unsafe.Pointer(&f.handle)), mod, uintptr(unsafe.Pointer(&nameC[0]))); err != nil {
		return nil, fmt.Errorf("kernel %s in kernels/%s: %w", name, file, err)
	}
	b.funcs[name] = f
	return f, nil
}

// launch runs kernel name of file on the backend's stream. args are the
// kernel's parameters in order, each int32 (C int), int64 (long long),
// uint64 (pointers, seeds) or float32 (float). A failure names op, kernel,
// grid, block and shared memory. The caller holds the context.
func (b *Backend) launch(op, file, name string, grid, block dim3, smem int, args ...any) error {
	where := func() string {
		return fmt.Sprintf("%s: kernel %s grid %v block %v smem %d", op, name, grid, block, smem)
	}
	if grid.x == 0 || grid.y == 0 || grid.z == 0 {
		return nil // nothing to do
	}
	f, err := b.function(file, name)
	if err != nil {
		return withOp(op, err)
	}
	if smem > 48<<10 && smem > f.smemMax {
		if smem > b.maxSmemOptin {
			return fmt.Errorf("cuda: %s: needs %d bytes of shared memory per block; the device allows %d", where(), smem, b.maxSmemOptin)
		}
		if err := b.drv.call("cuFuncSetAttribute", b.drv.cuFuncSetAttribute, f.handle, funcAttrMaxDynamicSharedSize, uintptr(smem)); err != nil {
			return withOp(where(), err)
		}
		f.smemMax = smem
	}
	vals := make([]uint64, len(args))
	ptrs := make([]unsafe.Pointer, len(args))
	for i, a := range args {
		switch v := a.(type) {
		case int32:
			vals[i] = uint64(uint32(v))
		case int64:
			vals[i] = uint64(v)
		case uint64:
			vals[i] = v
		case float32:
			*(*float32)(unsafe.Pointer(&vals[i])) = v
		default:
			return fmt.Errorf("cuda: %s: argument %d has Go type %T, which no kernel parameter takes", where(), i, a)
		}
		ptrs[i] = unsafe.Pointer(&vals[i])
	}
	var params uintptr
	if len(ptrs) > 0 {
		params = uintptr(unsafe.Pointer(&ptrs[0]))
	}
	run := func() error {
		if b.pdl && pdlKernels[name] {
			return b.launchPDL(f, grid, block, smem, params)
		}
		return b.drv.call("cuLaunchKernel", b.drv.cuLaunchKernel, f.handle,
			uintptr(grid.x), uintptr(grid.y), uintptr(grid.z), uintptr(block.x), uintptr(block.y), uintptr(block.z),
			uintptr(smem), b.stream, params, 0)
	}
	if b.prof != nil {
		err = b.prof.around(b.drv, b.stream, name, run)
	} else {
		err = run()
	}
	// The driver copies the parameters during the call; keep them alive
	// until it returns (params is a plain integer to the collector).
	runtime.KeepAlive(ptrs)
	runtime.KeepAlive(vals)
	if err != nil {
		return withOp(where(), err)
	}
	if b.syncEachOp {
		if err := b.drv.call("cuStreamSynchronize", b.drv.cuStreamSynchronize, b.stream); err != nil {
			return withOp(where(), err)
		}
	}
	return nil
}

// gridFor sizes a grid-strided launch of n elements: enough blocks of 256
// threads to cover n, capped at a few waves of the device's SMs.
func (b *Backend) gridFor(n int) dim3 {
	blocks := (n + 255) / 256
	if limit := max(b.smCount, 1) * 16; blocks > limit {
		blocks = limit
	}
	return dim3{max(blocks, 1), 1, 1}
}

var block256 = dim3{256, 1, 1}
