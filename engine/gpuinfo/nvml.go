//go:build cgo && linux

package gpuinfo

import (
	"fmt"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
)

// nvmlDriver calls NVML through go-nvml, which opens libnvidia-ml.so.1 with
// dlopen at Init: the build needs no NVIDIA files, and a machine without
// the driver gets ERROR_LIBRARY_NOT_FOUND.
type nvmlDriver struct{}

func newDriver() driver { return nvmlDriver{} }

// nvmlError turns a non-success NVML return into an error naming the call.
func nvmlError(call string, ret nvml.Return) error {
	if ret == nvml.SUCCESS {
		return nil
	}
	return fmt.Errorf("%s: %s", call, nvml.ErrorString(ret))
}

func (nvmlDriver) open() error {
	switch ret := nvml.Init(); ret {
	case nvml.SUCCESS:
		return nil
	case nvml.ERROR_LIBRARY_NOT_FOUND:
		return fmt.Errorf("%w: libnvidia-ml.so.1 not found (no NVIDIA driver installed)", ErrNoDriver)
	case nvml.ERROR_DRIVER_NOT_LOADED:
		return fmt.Errorf("%w: the NVIDIA kernel driver is not loaded", ErrNoDriver)
	case nvml.ERROR_NO_PERMISSION:
		return fmt.Errorf("%w: no permission to open the GPU device files", ErrNoDriver)
	default:
		return nvmlError("nvmlInit", ret)
	}
}

func (nvmlDriver) close() { nvml.Shutdown() }

func (nvmlDriver) driverVersion() (string, error) {
	v, ret := nvml.SystemGetDriverVersion()
	return v, nvmlError("nvmlSystemGetDriverVersion", ret)
}

func (nvmlDriver) cudaVersion() (int, error) {
	v, ret := nvml.SystemGetCudaDriverVersion()
	return v, nvmlError("nvmlSystemGetCudaDriverVersion", ret)
}

func (nvmlDriver) deviceCount() (int, error) {
	n, ret := nvml.DeviceGetCount()
	return n, nvmlError("nvmlDeviceGetCount", ret)
}

func handle(index int) (nvml.Device, error) {
	dev, ret := nvml.DeviceGetHandleByIndex(index)
	return dev, nvmlError("nvmlDeviceGetHandleByIndex", ret)
}

func (nvmlDriver) device(index int) (GPU, error) {
	g := GPU{Index: index}
	dev, err := handle(index)
	if err != nil {
		return g, err
	}
	var ret nvml.Return
	if g.Name, ret = dev.GetName(); ret != nvml.SUCCESS {
		return g, nvmlError("nvmlDeviceGetName", ret)
	}
	if g.UUID, ret = dev.GetUUID(); ret != nvml.SUCCESS {
		return g, nvmlError("nvmlDeviceGetUUID", ret)
	}
	mem, ret := dev.GetMemoryInfo()
	if ret != nvml.SUCCESS {
		return g, nvmlError("nvmlDeviceGetMemoryInfo", ret)
	}
	g.MemoryTotal, g.MemoryFree, g.MemoryUsed = int64(mem.Total), int64(mem.Free), int64(mem.Used)
	if g.ComputeMajor, g.ComputeMinor, ret = dev.GetCudaComputeCapability(); ret != nvml.SUCCESS {
		return g, nvmlError("nvmlDeviceGetCudaComputeCapability", ret)
	}
	return g, nil
}

// sample reads the dashboard figures. Readings a board does not support
// (power on some laptop GPUs, memory on unified-memory systems) are left
// zero rather than failing the whole sample.
func (nvmlDriver) sample(index int) (Sample, error) {
	s := Sample{Index: index}
	dev, err := handle(index)
	if err != nil {
		return s, err
	}
	util, ret := dev.GetUtilizationRates()
	if ret != nvml.SUCCESS && ret != nvml.ERROR_NOT_SUPPORTED {
		return s, nvmlError("nvmlDeviceGetUtilizationRates", ret)
	}
	s.UtilGPU, s.UtilMemory = int(util.Gpu), int(util.Memory)
	if t, ret := dev.GetTemperature(nvml.TEMPERATURE_GPU); ret == nvml.SUCCESS {
		s.TemperatureC = int(t)
	}
	if mw, ret := dev.GetPowerUsage(); ret == nvml.SUCCESS {
		s.PowerW = float64(mw) / 1000
	}
	if mw, ret := dev.GetEnforcedPowerLimit(); ret == nvml.SUCCESS {
		s.PowerLimitW = float64(mw) / 1000
	}
	if c, ret := dev.GetClockInfo(nvml.CLOCK_SM); ret == nvml.SUCCESS {
		s.ClockSMMHz = int(c)
	}
	if c, ret := dev.GetClockInfo(nvml.CLOCK_MEM); ret == nvml.SUCCESS {
		s.ClockMemoryMHz = int(c)
	}
	if mem, ret := dev.GetMemoryInfo(); ret == nvml.SUCCESS {
		s.MemoryUsed, s.MemoryTotal = int64(mem.Used), int64(mem.Total)
	}
	return s, nil
}
