// Package gpuinfo reports the NVIDIA GPUs of this machine through NVML:
// names, memory, compute capability, driver and CUDA versions for the fit
// check, and live utilisation, temperature, power and clocks for the
// training dashboard. NVML's functions are bound at run time with purego
// (no cgo), from libnvidia-ml.so.1, so building needs nothing from NVIDIA
// and compiles no C.
// Without a driver Detect reports CPU mode with the system RAM and the
// reason.
package gpuinfo

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"strconv"
	"strings"
)

// GPU is one device as NVML sees it.
type GPU struct {
	Index        int
	Name         string
	UUID         string
	MemoryTotal  int64 // bytes
	MemoryFree   int64 // bytes
	MemoryUsed   int64 // bytes
	ComputeMajor int
	ComputeMinor int
	// Unified is true where the GPU has no memory of its own and allocates
	// from the system's (DGX Spark's GB10, Jetson, integrated GPUs): one
	// pool the operating system and every process draw from. MemoryTotal,
	// MemoryFree and MemoryUsed are then the host's MemTotal, MemAvailable
	// and their difference, the memory really free for this process.
	// UnifiedReason says what showed it.
	Unified       bool
	UnifiedReason string

	// nvmlNoMemory is set by the driver when NVML answers "not supported"
	// for the device's memory, as it does on unified-memory systems.
	nvmlNoMemory bool
}

// ComputeCapability is "major.minor", e.g. "9.0" for Hopper.
func (g GPU) ComputeCapability() string { return fmt.Sprintf("%d.%d", g.ComputeMajor, g.ComputeMinor) }

// Report is what Detect found.
type Report struct {
	GPUs          []GPU
	DriverVersion string // e.g. "580.82.07"
	CUDAVersion   string // highest CUDA version the driver supports, e.g. "13.0"
	// CPUMode is true when no GPU can be used; Reason says why.
	CPUMode bool
	Reason  string
	// RAMTotal and RAMAvailable come from /proc/meminfo (bytes); zero
	// where it cannot be read.
	RAMTotal     int64
	RAMAvailable int64
}

// Sample is a live reading for the dashboard.
type Sample struct {
	Index          int
	UtilGPU        int // percent of time a kernel ran over the last sample period
	UtilMemory     int // percent of time device memory was read or written
	TemperatureC   int // GPU core, degrees Celsius
	PowerW         float64
	PowerLimitW    float64
	ClockSMMHz     int
	ClockMemoryMHz int
	MemoryUsed     int64 // bytes
	MemoryTotal    int64 // bytes
	// HostMemory: NVML reports no memory for this GPU (unified memory), so
	// MemoryUsed and MemoryTotal are the system's, from /proc/meminfo.
	HostMemory bool
}

// ErrNoDriver means NVML could not be loaded or initialised: no NVIDIA
// driver, no permission, or a system other than Linux.
var ErrNoDriver = errors.New("gpuinfo: NVIDIA driver not available")

// driver is the part of NVML this package uses; purego.go implements it
// on Linux, other.go for systems without NVML, and the tests with a fake.
type driver interface {
	// open initialises NVML; an error wrapping ErrNoDriver means no
	// driver at all (CPU mode), any other is a driver fault.
	open() error
	close()
	driverVersion() (string, error)
	cudaVersion() (int, error) // e.g. 12040 for 12.4
	deviceCount() (int, error)
	device(index int) (GPU, error)
	sample(index int) (Sample, error)
}

// cudaProber asks the CUDA driver which GPUs are integrated
// (CU_DEVICE_ATTRIBUTE_INTEGRATED: the device shares the host's memory),
// keyed by NVML's spelling of their UUID. cudaprobe.go implements it on
// Linux; tests use a fake.
type cudaProber interface {
	integrated() (map[string]bool, error)
}

// meminfoPath is read for the RAM figures; a variable so tests can point it
// at a fixture.
var meminfoPath = "/proc/meminfo"

// Detect lists the GPUs. Without a driver it returns a CPU-mode report and
// no error; an error means the driver is there but failed. A GPU that
// shares the system's memory is marked Unified, its memory figures the
// host's (see GPU.Unified).
func Detect() (Report, error) { return detect(newDriver(), newCUDAProber()) }

func detect(d driver, c cudaProber) (Report, error) {
	var r Report
	if total, avail, err := readMeminfo(meminfoPath); err == nil {
		r.RAMTotal, r.RAMAvailable = total, avail
	}
	if err := d.open(); err != nil {
		if errors.Is(err, ErrNoDriver) {
			r.CPUMode = true
			r.Reason = err.Error()
			return r, nil
		}
		return r, fmt.Errorf("gpuinfo: initialising NVML: %w", err)
	}
	defer d.close()
	var err error
	if r.DriverVersion, err = d.driverVersion(); err != nil {
		return r, fmt.Errorf("gpuinfo: driver version: %w", err)
	}
	cuda, err := d.cudaVersion()
	if err != nil {
		return r, fmt.Errorf("gpuinfo: CUDA driver version: %w", err)
	}
	r.CUDAVersion = fmt.Sprintf("%d.%d", cuda/1000, cuda%1000/10)
	n, err := d.deviceCount()
	if err != nil {
		return r, fmt.Errorf("gpuinfo: device count: %w", err)
	}
	for i := 0; i < n; i++ {
		g, err := d.device(i)
		if err != nil {
			return r, fmt.Errorf("gpuinfo: device %d: %w", i, err)
		}
		r.GPUs = append(r.GPUs, g)
	}
	if len(r.GPUs) == 0 {
		r.CPUMode = true
		r.Reason = "the NVIDIA driver reports no GPU"
		return r, nil
	}
	if err := markUnified(&r, c); err != nil {
		return r, err
	}
	return r, nil
}

// markUnified finds the GPUs that share the system's memory, by either of
// two signs: the CUDA driver calls the device integrated, or NVML answers
// "not supported" for its memory (DGX Spark does both). For those the
// memory to plan against is the host's MemAvailable: the CPU, the
// operating system and other processes use the same pool, and NVML has no
// free figure of its own.
func markUnified(r *Report, c cudaProber) error {
	var integrated map[string]bool
	if c != nil {
		// Without a CUDA driver library (or with one that fails) there is
		// no evidence from it; NVML's answer below still counts.
		integrated, _ = c.integrated()
	}
	for i := range r.GPUs {
		g := &r.GPUs[i]
		var why []string
		if integrated[g.UUID] {
			why = append(why, "the CUDA driver reports an integrated GPU")
		}
		if g.nvmlNoMemory {
			why = append(why, `NVML reports its memory as "not supported"`)
		}
		if len(why) == 0 {
			continue
		}
		if r.RAMTotal <= 0 {
			return fmt.Errorf("gpuinfo: GPU %d (%s) shares the system's memory (%s), but %s could not be read for its size",
				g.Index, g.Name, strings.Join(why, "; "), meminfoPath)
		}
		g.Unified, g.UnifiedReason = true, strings.Join(why, "; ")
		g.MemoryTotal, g.MemoryFree = r.RAMTotal, r.RAMAvailable
		g.MemoryUsed = g.MemoryTotal - g.MemoryFree
	}
	return nil
}

// Monitor keeps NVML open for repeated samples (the dashboard polls once a
// second; initialising NVML each time would cost more than the reading).
type Monitor struct{ d driver }

// Open starts a monitor; close it with Close.
func Open() (*Monitor, error) { return openMonitor(newDriver()) }

func openMonitor(d driver) (*Monitor, error) {
	if err := d.open(); err != nil {
		if errors.Is(err, ErrNoDriver) {
			return nil, err // already says gpuinfo: and why
		}
		return nil, fmt.Errorf("gpuinfo: initialising NVML: %w", err)
	}
	return &Monitor{d: d}, nil
}

// Sample reads the live figures of GPU index. A GPU for which NVML
// reports no memory (unified memory) gets the system's from /proc/meminfo.
func (m *Monitor) Sample(index int) (Sample, error) {
	s, err := m.d.sample(index)
	if err != nil {
		return s, fmt.Errorf("gpuinfo: sampling GPU %d: %w", index, err)
	}
	if s.MemoryTotal == 0 {
		if total, avail, err := readMeminfo(meminfoPath); err == nil {
			s.MemoryTotal, s.MemoryUsed, s.HostMemory = total, total-avail, true
		}
	}
	return s, nil
}

// Close shuts NVML down.
func (m *Monitor) Close() { m.d.close() }

// ReadSample opens NVML, reads one sample of GPU index and closes it again;
// for a one-off reading. Use a Monitor to poll.
func ReadSample(index int) (Sample, error) {
	m, err := Open()
	if err != nil {
		return Sample{}, err
	}
	defer m.Close()
	return m.Sample(index)
}

// HostMemory returns this machine's RAM in bytes: MemTotal and
// MemAvailable of /proc/meminfo (an error where there is none).
func HostMemory() (total, available int64, err error) { return readMeminfo(meminfoPath) }

// readMeminfo returns MemTotal and MemAvailable in bytes.
func readMeminfo(path string) (total, available int64, err error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, 0, err
	}
	defer f.Close()
	return parseMeminfo(f, path)
}

// parseMeminfo reads the "Key:  value kB" lines of /proc/meminfo.
func parseMeminfo(r io.Reader, name string) (total, available int64, err error) {
	sc := bufio.NewScanner(r)
	line := 0
	for sc.Scan() {
		line++
		key, rest, ok := strings.Cut(sc.Text(), ":")
		if !ok || (key != "MemTotal" && key != "MemAvailable") {
			continue
		}
		fields := strings.Fields(rest)
		if len(fields) != 2 || fields[1] != "kB" {
			return 0, 0, fmt.Errorf("gpuinfo: %s line %d: %s: want \"<number> kB\", got %q", name, line, key, strings.TrimSpace(rest))
		}
		kb, err := strconv.ParseInt(fields[0], 10, 64)
		if err != nil {
			return 0, 0, fmt.Errorf("gpuinfo: %s line %d: %s: %w", name, line, key, err)
		}
		if kb < 0 || kb > math.MaxInt64>>10 {
			return 0, 0, fmt.Errorf("gpuinfo: %s line %d: %s: %d (in kB) is out of range", name, line, key, kb)
		}
		if key == "MemTotal" {
			total = kb << 10
		} else {
			available = kb << 10
		}
	}
	if err := sc.Err(); err != nil {
		return 0, 0, fmt.Errorf("gpuinfo: reading %s: %w", name, err)
	}
	if total == 0 {
		return 0, 0, fmt.Errorf("gpuinfo: %s has no MemTotal line", name)
	}
	if available == 0 {
		// Kernels before 3.14 lack MemAvailable; free memory is then
		// unknown and the total is the best bound.
		available = total
	}
	return total, available, nil
}
