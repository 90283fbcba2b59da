//go:build linux

package gpuinfo

import (
	"fmt"

	"github.com/ebitengine/purego"
)

// newCUDAProber asks libcuda.so.1, the CUDA driver every NVIDIA driver
// installs beside NVML.
func newCUDAProber() cudaProber { return &puregoCUDA{path: "libcuda.so.1"} }

// puregoCUDA reads one device attribute from the CUDA driver API through
// purego (cuda.h):
//
//	CUresult cuInit(unsigned int flags)
//	CUresult cuDeviceGetCount(int *count)
//	CUresult cuDeviceGet(CUdevice *device, int ordinal)
//	CUresult cuDeviceGetAttribute(int *pi, CUdevice_attribute attrib, CUdevice dev)
//	CUresult cuDeviceGetUuid_v2(CUuuid *uuid, CUdevice dev)   // 16 bytes
//
// CUDA numbers devices its own way (CUDA_VISIBLE_DEVICES, ordering), so
// devices are matched to NVML's by UUID. cuInit creates no context and
// allocates no device memory.
type puregoCUDA struct{ path string }

// CUDA constants used here (cuda.h).
const (
	cudaSuccess                   = 0
	cudaErrorNoDevice             = 100
	cuDeviceAttrIntegrated        = 18 // CU_DEVICE_ATTRIBUTE_INTEGRATED
	cudaUUIDBytes                 = 16
	cudaInitFlags          uint32 = 0
)

func (p *puregoCUDA) integrated() (map[string]bool, error) {
	lib, err := purego.Dlopen(p.path, purego.RTLD_NOW|purego.RTLD_GLOBAL)
	if err != nil {
		return nil, fmt.Errorf("cannot load %s: %w", p.path, err)
	}
	// The library stays loaded: after cuInit the driver runs threads of
	// its own, and unloading it under them would crash the process (the
	// CUDA backend opens the same library later and shares this handle).
	var (
		cuInit               func(uint32) int32
		cuDeviceGetCount     func(*int32) int32
		cuDeviceGet          func(*int32, int32) int32
		cuDeviceGetAttribute func(*int32, int32, int32) int32
		cuDeviceGetUUID      func(*[cudaUUIDBytes]byte, int32) int32
	)
	for _, f := range []struct {
		fptr any
		name string
	}{
		{&cuInit, "cuInit"}, {&cuDeviceGetCount, "cuDeviceGetCount"}, {&cuDeviceGet, "cuDeviceGet"},
		{&cuDeviceGetAttribute, "cuDeviceGetAttribute"}, {&cuDeviceGetUUID, "cuDeviceGetUuid_v2"},
	} {
		sym, err := purego.Dlsym(lib, f.name)
		if err != nil {
			return nil, fmt.Errorf("%s: %s missing (driver too old?): %w", p.path, f.name, err)
		}
		purego.RegisterFunc(f.fptr, sym)
	}
	switch ret := cuInit(cudaInitFlags); ret {
	case cudaSuccess:
	case cudaErrorNoDevice:
		return map[string]bool{}, nil
	default:
		return nil, fmt.Errorf("cuInit: CUDA error %d", ret)
	}
	var n int32
	if ret := cuDeviceGetCount(&n); ret != cudaSuccess {
		return nil, fmt.Errorf("cuDeviceGetCount: CUDA error %d", ret)
	}
	out := map[string]bool{}
	for i := int32(0); i < n; i++ {
		var dev, v int32
		var uuid [cudaUUIDBytes]byte
		if ret := cuDeviceGet(&dev, i); ret != cudaSuccess {
			return nil, fmt.Errorf("cuDeviceGet(%d): CUDA error %d", i, ret)
		}
		if ret := cuDeviceGetAttribute(&v, cuDeviceAttrIntegrated, dev); ret != cudaSuccess {
			return nil, fmt.Errorf("cuDeviceGetAttribute(INTEGRATED, %d): CUDA error %d", i, ret)
		}
		if ret := cuDeviceGetUUID(&uuid, dev); ret != cudaSuccess {
			return nil, fmt.Errorf("cuDeviceGetUuid_v2(%d): CUDA error %d", i, ret)
		}
		out[nvmlUUID(uuid)] = v != 0
	}
	return out, nil
}

// nvmlUUID spells CUDA's 16 UUID bytes as NVML and nvidia-smi do:
// GPU-xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx.
func nvmlUUID(b [cudaUUIDBytes]byte) string {
	return fmt.Sprintf("GPU-%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}
