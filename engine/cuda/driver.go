package cuda

import (
	"errors"
	"fmt"
	"unsafe"

	"github.com/ebitengine/purego"
)

// Error is a failed call into libcuda, NVRTC or cuBLASLt. Call names the
// library function; Op, when set, names the backend op and its sizes.
type Error struct {
	Op   string // backend op and sizes, e.g. "Alloc bf16 [4096 4096] (32 MiB)"
	Call string // library function, e.g. "cuMemAlloc_v2"
	Code int    // CUresult, nvrtcResult or cublasStatus_t
	Name string // symbolic name of Code
	Desc string // library's description of Code
}

func (e *Error) Error() string {
	s := fmt.Sprintf("%s: %s (%d)", e.Call, e.Name, e.Code)
	if e.Desc != "" && e.Desc != e.Name {
		s += ": " + e.Desc
	}
	if e.Op != "" {
		s = e.Op + ": " + s
	}
	return "cuda: " + s
}

// cudaErrorOutOfMemory is CUDA_ERROR_OUT_OF_MEMORY.
const cudaErrorOutOfMemory = 2

// IsOutOfMemory reports whether err is, or wraps, a device out-of-memory
// error from the driver (or cuBLASLt's allocation failure).
func IsOutOfMemory(err error) bool {
	var e *Error
	if !errors.As(err, &e) {
		return false
	}
	if e.Call == "cuMemAlloc_v2" && e.Code == cudaErrorOutOfMemory {
		return true
	}
	return e.Code == cublasStatusAllocFailed && len(e.Call) > 6 && e.Call[:6] == "cublas"
}

// withOp returns err with the backend op filled in, when it is an *Error
// that has none yet; other errors are wrapped with the op.
func withOp(op string, err error) error {
	if err == nil {
		return nil
	}
	var e *Error
	if errors.As(err, &e) && e.Op == "" {
		c := *e
		c.Op = op
		return &c
	}
	return fmt.Errorf("cuda: %s: %w", op, err)
}

// driver holds the entry points of libcuda.so.1 that the backend uses.
type driver struct {
	lib *library

	cuInit, cuDeviceGet, cuDeviceGetAttribute, cuDeviceGetName uintptr
	cuDevicePrimaryCtxRetain, cuDevicePrimaryCtxRelease        uintptr
	cuCtxSetCurrent                                            uintptr
	cuMemAlloc, cuMemFree, cuMemGetInfo                        uintptr
	cuMemcpyHtoD, cuMemcpyDtoH, cuMemcpyDtoD, cuMemsetD32      uintptr
	cuModuleLoadData, cuModuleUnload, cuModuleGetFunction      uintptr
	cuFuncSetAttribute, cuLaunchKernel                         uintptr
	cuStreamCreate, cuStreamDestroy, cuStreamSynchronize       uintptr
	cuGetErrorName, cuGetErrorString, cuDriverGetVersion       uintptr

	// Stream capture and graphs (graph.go), and a stream-ordered copy
	// for use while capturing; optional: 0 when the driver lacks them,
	// and Record then says so.
	cuStreamBeginCapture, cuStreamEndCapture   uintptr
	cuGraphInstantiateWithFlags, cuGraphLaunch uintptr
	cuGraphExecDestroy, cuGraphDestroy         uintptr
	cuMemcpyDtoDAsync                          uintptr

	// cuLaunchKernelEx (CUDA 12.0+), for programmatic dependent launch
	// (pdl.go); optional: 0 when the driver lacks it.
	cuLaunchKernelEx uintptr

	// cuFuncGetAttribute (optional): the warp-specialised Hopper forward
	// checks the registers ptxas gave it (attention.go, hopperWSCheck).
	cuFuncGetAttribute uintptr

	// cuTensorMapEncodeTiled (CUDA 12.0+; optional): TMA tensor maps for the
	// warp-specialised Hopper forward's HOP_WS_TMA=1 (attention.go).
	cuTensorMapEncodeTiled uintptr
}

func openDriver() (*driver, error) {
	lib, err := openLibrary("the NVIDIA driver library libcuda", "libcuda.so.1", "libcuda.so")
	if err != nil {
		return nil, err
	}
	d := &driver{lib: lib}
	err = lib.bind(map[string]*uintptr{
		"cuInit":                       &d.cuInit,
		"cuDriverGetVersion":           &d.cuDriverGetVersion,
		"cuDeviceGet":                  &d.cuDeviceGet,
		"cuDeviceGetAttribute":         &d.cuDeviceGetAttribute,
		"cuDeviceGetName":              &d.cuDeviceGetName,
		"cuDevicePrimaryCtxRetain":     &d.cuDevicePrimaryCtxRetain,
		"cuDevicePrimaryCtxRelease_v2": &d.cuDevicePrimaryCtxRelease,
		"cuCtxSetCurrent":              &d.cuCtxSetCurrent,
		"cuMemAlloc_v2":                &d.cuMemAlloc,
		"cuMemFree_v2":                 &d.cuMemFree,
		"cuMemGetInfo_v2":              &d.cuMemGetInfo,
		"cuMemcpyHtoD_v2":              &d.cuMemcpyHtoD,
		"cuMemcpyDtoH_v2":              &d.cuMemcpyDtoH,
		"cuMemcpyDtoD_v2":              &d.cuMemcpyDtoD,
		"cuMemsetD32_v2":               &d.cuMemsetD32,
		"cuModuleLoadData":             &d.cuModuleLoadData,
		"cuModuleUnload":               &d.cuModuleUnload,
		"cuModuleGetFunction":          &d.cuModuleGetFunction,
		"cuFuncSetAttribute":           &d.cuFuncSetAttribute,
		"cuLaunchKernel":               &d.cuLaunchKernel,
		"cuStreamCreate":               &d.cuStreamCreate,
		"cuStreamDestroy_v2":           &d.cuStreamDestroy,
		"cuStreamSynchronize":          &d.cuStreamSynchronize,
		"cuGetErrorName":               &d.cuGetErrorName,
		"cuGetErrorString":             &d.cuGetErrorString,
	})
	if err != nil {
		return nil, err
	}
	for name, dst := range map[string]*uintptr{
		"cuStreamBeginCapture_v2":     &d.cuStreamBeginCapture,
		"cuStreamEndCapture":          &d.cuStreamEndCapture,
		"cuGraphInstantiateWithFlags": &d.cuGraphInstantiateWithFlags,
		"cuGraphLaunch":               &d.cuGraphLaunch,
		"cuGraphExecDestroy":          &d.cuGraphExecDestroy,
		"cuGraphDestroy":              &d.cuGraphDestroy,
		"cuMemcpyDtoDAsync_v2":        &d.cuMemcpyDtoDAsync,
		"cuLaunchKernelEx":            &d.cuLaunchKernelEx,
		"cuFuncGetAttribute":          &d.cuFuncGetAttribute,
		"cuTensorMapEncodeTiled":      &d.cuTensorMapEncodeTiled,
	} {
		*dst, _ = lib.sym(name) // optional
	}
	return d, nil
}

// call runs one driver function and turns a non-zero CUresult into an
// *Error naming the function.
//
//go:uintptrescapes
func (d *driver) call(name string, fn uintptr, args ...uintptr) error {
	r, _, _ := purego.SyscallN(fn, args...)
	code := int(int32(uint32(r)))
	if code == 0 {
		return nil
	}
	return &Error{Call: name, Code: code, Name: d.errName(code), Desc: d.errString(code)}
}

func (d *driver) errName(code int) string {
	var s *byte
	r, _, _ := purego.SyscallN(d.cuGetErrorName, uintptr(code), uintptr(unsafe.Pointer(&s)))
	if r != 0 || s == nil {
		return "CUDA_ERROR_UNKNOWN_CODE"
	}
	return cString(s)
}

func (d *driver) errString(code int) string {
	var s *byte
	r, _, _ := purego.SyscallN(d.cuGetErrorString, uintptr(code), uintptr(unsafe.Pointer(&s)))
	if r != 0 || s == nil {
		return ""
	}
	return cString(s)
}

// cString copies a NUL-terminated C string owned by a library.
func cString(p *byte) string {
	if p == nil {
		return ""
	}
	var b []byte
	for q := unsafe.Pointer(p); *(*byte)(q) != 0; q = unsafe.Add(q, 1) {
		b = append(b, *(*byte)(q))
	}
	return string(b)
}

// cBytes is s as a NUL-terminated byte slice, for passing as char*.
func cBytes(s string) []byte {
	b := make([]byte, len(s)+1)
	copy(b, s)
	return b
}

// CUDA device attributes used here (CUdevice_attribute).
const (
	attrMultiprocessorCount      = 16
	attrComputeCapabilityMajor   = 75
	attrComputeCapabilityMinor   = 76
	attrMaxSharedPerBlockOptin   = 97
	funcAttrMaxDynamicSharedSize = 8 // CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES
	funcAttrPreferredCarveout    = 9 // CU_FUNC_ATTRIBUTE_PREFERRED_SHARED_MEMORY_CARVEOUT (percent)
	funcAttrNumRegs              = 4 // CU_FUNC_ATTRIBUTE_NUM_REGS
	funcAttrMaxThreadsPerBlock   = 0 // CU_FUNC_ATTRIBUTE_MAX_THREADS_PER_BLOCK
)

func (d *driver) deviceAttr(dev int32, attr int) (int, error) {
	var v int32
	if err := d.call("cuDeviceGetAttribute", d.cuDeviceGetAttribute, uintptr(unsafe.Pointer(&v)), uintptr(attr), uintptr(dev)); err != nil {
		return 0, err
	}
	return int(v), nil
}

func (d *driver) deviceName(dev int32) (string, error) {
	buf := make([]byte, 256)
	if err := d.call("cuDeviceGetName", d.cuDeviceGetName, uintptr(unsafe.Pointer(&buf[0])), uintptr(len(buf)), uintptr(dev)); err != nil {
		return "", err
	}
	return cString(&buf[0]), nil
}
