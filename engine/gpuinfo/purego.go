//go:build linux

package gpuinfo

import (
	"bytes"
	"fmt"

	"github.com/ebitengine/purego"
)

// newDriver binds NVML with purego on Linux, in cgo and CGO_ENABLED=0
// builds alike. (go-nvml, used before, compiled its C bindings on every cold
// build and printed some 150 lines of compiler warnings; this driver reads
// the same figures and is tested against a fake libnvidia-ml.)
func newDriver() driver { return &puregoDriver{path: "libnvidia-ml.so.1"} }

// puregoDriver calls NVML without cgo: it opens libnvidia-ml.so.1 with
// purego's dlopen and binds the dozen functions this package reads, as
// nvml.h declares them:
//
//	nvmlReturn_t nvmlInit_v2(void)
//	nvmlReturn_t nvmlSystemGetDriverVersion(char *version, unsigned int length)
//	nvmlReturn_t nvmlDeviceGetMemoryInfo(nvmlDevice_t, nvmlMemory_t *)   // {u64 total, free, used}
//	nvmlReturn_t nvmlDeviceGetUtilizationRates(nvmlDevice_t, nvmlUtilization_t *) // {u32 gpu, memory}
//	...
type puregoDriver struct {
	path string
	lib  uintptr

	initV2            func() int32
	shutdown          func() int32
	errorString       func(int32) string
	driverVer         func(*byte, uint32) int32
	cudaVer           func(*int32) int32
	countV2           func(*uint32) int32
	handleByIndexV2   func(uint32, *uintptr) int32
	name              func(uintptr, *byte, uint32) int32
	uuid              func(uintptr, *byte, uint32) int32
	memoryInfo        func(uintptr, *nvmlMemory) int32
	computeCapability func(uintptr, *int32, *int32) int32
	utilization       func(uintptr, *nvmlUtilization) int32
	temperature       func(uintptr, int32, *uint32) int32
	powerUsage        func(uintptr, *uint32) int32
	powerLimit        func(uintptr, *uint32) int32
	clockInfo         func(uintptr, int32, *uint32) int32
}

// nvmlMemory and nvmlUtilization mirror nvml.h's nvmlMemory_t and
// nvmlUtilization_t.
type nvmlMemory struct{ Total, Free, Used uint64 }
type nvmlUtilization struct{ GPU, Memory uint32 }

// NVML return codes and enum values used here (nvml.h).
const (
	nvmlSuccess           = 0
	nvmlNotSupported      = 3
	nvmlNoPermission      = 4
	nvmlDriverNotLoaded   = 9
	nvmlTemperatureGPU    = 0
	nvmlClockSM           = 1
	nvmlClockMem          = 2
	nvmlStringBufferBytes = 96 // NVML_DEVICE_NAME_V2_BUFFER_SIZE, the largest string asked for
)

func (d *puregoDriver) open() error {
	lib, err := purego.Dlopen(d.path, purego.RTLD_NOW|purego.RTLD_GLOBAL)
	if err != nil {
		// The dlerror text only repeats the path; the reason users need is
		// that no driver is installed.
		return fmt.Errorf("%w: cannot load %s (no NVIDIA driver installed)", ErrNoDriver, d.path)
	}
	d.lib = lib
	for _, f := range []struct {
		fptr any
		name string
	}{
		{&d.initV2, "nvmlInit_v2"}, {&d.shutdown, "nvmlShutdown"}, {&d.errorString, "nvmlErrorString"},
		{&d.driverVer, "nvmlSystemGetDriverVersion"}, {&d.cudaVer, "nvmlSystemGetCudaDriverVersion"},
		{&d.countV2, "nvmlDeviceGetCount_v2"}, {&d.handleByIndexV2, "nvmlDeviceGetHandleByIndex_v2"},
		{&d.name, "nvmlDeviceGetName"}, {&d.uuid, "nvmlDeviceGetUUID"}, {&d.memoryInfo, "nvmlDeviceGetMemoryInfo"},
		{&d.computeCapability, "nvmlDeviceGetCudaComputeCapability"}, {&d.utilization, "nvmlDeviceGetUtilizationRates"},
		{&d.temperature, "nvmlDeviceGetTemperature"}, {&d.powerUsage, "nvmlDeviceGetPowerUsage"},
		{&d.powerLimit, "nvmlDeviceGetEnforcedPowerLimit"}, {&d.clockInfo, "nvmlDeviceGetClockInfo"},
	} {
		sym, err := purego.Dlsym(lib, f.name)
		if err != nil {
			purego.Dlclose(lib)
			d.lib = 0
			return fmt.Errorf("%s: %s missing (driver too old?): %w", d.path, f.name, err)
		}
		purego.RegisterFunc(f.fptr, sym)
	}
	switch ret := d.initV2(); ret {
	case nvmlSuccess:
		return nil
	case nvmlDriverNotLoaded:
		d.closeLib()
		return fmt.Errorf("%w: the NVIDIA kernel driver is not loaded", ErrNoDriver)
	case nvmlNoPermission:
		d.closeLib()
		return fmt.Errorf("%w: no permission to open the GPU device files", ErrNoDriver)
	default:
		err := d.check("nvmlInit_v2", ret)
		d.closeLib()
		return err
	}
}

func (d *puregoDriver) closeLib() {
	if d.lib != 0 {
		purego.Dlclose(d.lib)
		d.lib = 0
	}
}

func (d *puregoDriver) close() {
	if d.lib != 0 {
		d.shutdown()
		d.closeLib()
	}
}

// check turns a non-success return into an error naming the call.
func (d *puregoDriver) check(call string, ret int32) error {
	if ret == nvmlSuccess {
		return nil
	}
	return fmt.Errorf("%s: %s (NVML error %d)", call, d.errorString(ret), ret)
}

// str calls an NVML function that fills a char buffer.
func (d *puregoDriver) str(call string, f func(*byte, uint32) int32) (string, error) {
	buf := make([]byte, nvmlStringBufferBytes)
	if err := d.check(call, f(&buf[0], uint32(len(buf)))); err != nil {
		return "", err
	}
	if i := bytes.IndexByte(buf, 0); i >= 0 {
		buf = buf[:i]
	}
	return string(buf), nil
}

func (d *puregoDriver) driverVersion() (string, error) {
	return d.str("nvmlSystemGetDriverVersion", d.driverVer)
}

func (d *puregoDriver) cudaVersion() (int, error) {
	var v int32
	return int(v), d.check("nvmlSystemGetCudaDriverVersion", d.cudaVer(&v))
}

func (d *puregoDriver) deviceCount() (int, error) {
	var n uint32
	return int(n), d.check("nvmlDeviceGetCount_v2", d.countV2(&n))
}

func (d *puregoDriver) handle(index int) (uintptr, error) {
	var h uintptr
	return h, d.check("nvmlDeviceGetHandleByIndex_v2", d.handleByIndexV2(uint32(index), &h))
}

func (d *puregoDriver) device(index int) (GPU, error) {
	g := GPU{Index: index}
	h, err := d.handle(index)
	if err != nil {
		return g, err
	}
	if g.Name, err = d.str("nvmlDeviceGetName", func(b *byte, n uint32) int32 { return d.name(h, b, n) }); err != nil {
		return g, err
	}
	if g.UUID, err = d.str("nvmlDeviceGetUUID", func(b *byte, n uint32) int32 { return d.uuid(h, b, n) }); err != nil {
		return g, err
	}
	var mem nvmlMemory
	switch ret := d.memoryInfo(h, &mem); ret {
	case nvmlNotSupported:
		// A unified-memory GPU (DGX Spark) has no memory of its own to
		// report; detect takes the system's figures instead.
		g.nvmlNoMemory = true
	default:
		if err := d.check("nvmlDeviceGetMemoryInfo", ret); err != nil {
			return g, err
		}
		g.MemoryTotal, g.MemoryFree, g.MemoryUsed = int64(mem.Total), int64(mem.Free), int64(mem.Used)
	}
	var major, minor int32
	if err := d.check("nvmlDeviceGetCudaComputeCapability", d.computeCapability(h, &major, &minor)); err != nil {
		return g, err
	}
	g.ComputeMajor, g.ComputeMinor = int(major), int(minor)
	return g, nil
}

// sample reads the dashboard figures. Readings a board does not support
// (power on some laptop GPUs, memory on unified-memory systems) are left
// zero rather than failing the whole sample.
func (d *puregoDriver) sample(index int) (Sample, error) {
	s := Sample{Index: index}
	h, err := d.handle(index)
	if err != nil {
		return s, err
	}
	var u nvmlUtilization
	if ret := d.utilization(h, &u); ret != nvmlSuccess && ret != nvmlNotSupported {
		return s, d.check("nvmlDeviceGetUtilizationRates", ret)
	}
	s.UtilGPU, s.UtilMemory = int(u.GPU), int(u.Memory)
	var v uint32
	if d.temperature(h, nvmlTemperatureGPU, &v) == nvmlSuccess {
		s.TemperatureC = int(v)
	}
	if d.powerUsage(h, &v) == nvmlSuccess {
		s.PowerW = float64(v) / 1000
	}
	if d.powerLimit(h, &v) == nvmlSuccess {
		s.PowerLimitW = float64(v) / 1000
	}
	if d.clockInfo(h, nvmlClockSM, &v) == nvmlSuccess {
		s.ClockSMMHz = int(v)
	}
	if d.clockInfo(h, nvmlClockMem, &v) == nvmlSuccess {
		s.ClockMemoryMHz = int(v)
	}
	var mem nvmlMemory
	if d.memoryInfo(h, &mem) == nvmlSuccess {
		s.MemoryUsed, s.MemoryTotal = int64(mem.Used), int64(mem.Total)
	}
	return s, nil
}
