package gpuinfo

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// TestDetectWithoutDriver runs on the CI machine, which has no NVIDIA
// driver: Detect must report CPU mode with a reason and the RAM, not fail.
// On a machine with a GPU it checks the report instead.
func TestDetectWithoutDriver(t *testing.T) {
	r, err := Detect()
	if err != nil {
		t.Fatalf("Detect: %v", err)
	}
	if !r.CPUMode {
		if len(r.GPUs) == 0 || r.GPUs[0].MemoryTotal <= 0 || r.DriverVersion == "" {
			t.Errorf("GPU mode report without a usable GPU: %+v", r)
		}
		t.Skipf("a GPU is present (%s): the no-driver path is covered by the fake driver tests", r.GPUs[0].Name)
	}
	if r.Reason == "" || len(r.GPUs) != 0 {
		t.Errorf("CPU-mode report %+v: want a reason and no GPUs", r)
	}
	if runtime.GOOS == "linux" && (r.RAMTotal <= 0 || r.RAMAvailable <= 0 || r.RAMAvailable > r.RAMTotal) {
		t.Errorf("RAM total %d available %d, want 0 < available ≤ total", r.RAMTotal, r.RAMAvailable)
	}
}

// fakeProber is a CUDA driver's answer about integrated GPUs.
type fakeProber struct {
	integ map[string]bool
	err   error
}

func (f fakeProber) integrated() (map[string]bool, error) { return f.integ, f.err }

type fakeDriver struct {
	openErr error
	gpus    []GPU
	cuda    int
	closed  bool
}

func (f *fakeDriver) open() error                    { return f.openErr }
func (f *fakeDriver) close()                         { f.closed = true }
func (f *fakeDriver) driverVersion() (string, error) { return "580.82.07", nil }
func (f *fakeDriver) cudaVersion() (int, error)      { return f.cuda, nil }
func (f *fakeDriver) deviceCount() (int, error)      { return len(f.gpus), nil }
func (f *fakeDriver) device(i int) (GPU, error) {
	if i >= len(f.gpus) {
		return GPU{}, fmt.Errorf("no device %d", i)
	}
	return f.gpus[i], nil
}
func (f *fakeDriver) sample(i int) (Sample, error) { return Sample{Index: i}, nil }

func TestDetectReportsGPUs(t *testing.T) {
	h100 := GPU{Index: 0, Name: "NVIDIA H100 80GB HBM3", MemoryTotal: 81559 << 20, MemoryFree: 81000 << 20, ComputeMajor: 9}
	f := &fakeDriver{gpus: []GPU{h100}, cuda: 12040}
	r, err := detect(f, nil)
	if err != nil {
		t.Fatal(err)
	}
	if r.CPUMode || len(r.GPUs) != 1 || r.GPUs[0].Name != h100.Name || r.CUDAVersion != "12.4" || r.DriverVersion != "580.82.07" {
		t.Errorf("report = %+v", r)
	}
	if r.GPUs[0].ComputeCapability() != "9.0" {
		t.Errorf("compute capability %s, want 9.0", r.GPUs[0].ComputeCapability())
	}
	if !f.closed {
		t.Error("detect left NVML open")
	}
	f.cuda = 13000
	if r, _ := detect(f, nil); r.CUDAVersion != "13.0" {
		t.Errorf("CUDA 13000 printed as %s, want 13.0", r.CUDAVersion)
	}
}

func TestDetectDriverStates(t *testing.T) {
	// No library: CPU mode, no error.
	r, err := detect(&fakeDriver{openErr: fmt.Errorf("%w: libnvidia-ml.so.1 not found", ErrNoDriver)}, nil)
	if err != nil || !r.CPUMode || !strings.Contains(r.Reason, "libnvidia-ml") {
		t.Errorf("no library: %+v, %v; want CPU mode naming the library", r, err)
	}
	// A driver that is present but fails is an error, not CPU mode.
	_, err = detect(&fakeDriver{openErr: errors.New("nvmlInit: Unknown Error")}, nil)
	if err == nil || !strings.Contains(err.Error(), "Unknown Error") {
		t.Errorf("failing driver: err = %v, want the NVML error", err)
	}
	// A driver with no GPU: CPU mode with that reason.
	r, err = detect(&fakeDriver{cuda: 12040}, nil)
	if err != nil || !r.CPUMode || !strings.Contains(r.Reason, "no GPU") {
		t.Errorf("no devices: %+v, %v", r, err)
	}
}

func TestParseMeminfo(t *testing.T) {
	total, avail, err := parseMeminfo(strings.NewReader("MemTotal:       131072000 kB\nMemFree:  1 kB\nMemAvailable:   65536000 kB\n"), "meminfo")
	if err != nil || total != 131072000<<10 || avail != 65536000<<10 {
		t.Errorf("parseMeminfo = %d, %d, %v", total, avail, err)
	}
	_, _, err = parseMeminfo(strings.NewReader("MemFree: 1 kB\nMemTotal: lots kB\n"), "meminfo")
	if err == nil || !strings.Contains(err.Error(), "meminfo line 2") {
		t.Errorf("bad MemTotal: err = %v, want one naming line 2", err)
	}
	_, _, err = parseMeminfo(strings.NewReader("MemFree: 1 kB\n"), "meminfo")
	if err == nil || !strings.Contains(err.Error(), "MemTotal") {
		t.Errorf("missing MemTotal: err = %v", err)
	}
}

// FuzzParseMeminfo: any input either fails with an error or yields a
// positive total and available memory.
func FuzzParseMeminfo(f *testing.F) {
	f.Add("MemTotal: 1024 kB\nMemAvailable: 512 kB\n")
	f.Add("MemTotal:\n")
	f.Add("MemAvailable: 9223372036854775807 kB\nMemTotal: 1 kB\n")
	f.Fuzz(func(t *testing.T, s string) {
		total, avail, err := parseMeminfo(strings.NewReader(s), "fuzz")
		if err == nil && (total <= 0 || avail <= 0) {
			t.Errorf("parseMeminfo(%q) = %d, %d without error", s, total, avail)
		}
	})
}

// Open's errors name the package once: "gpuinfo: NVIDIA driver not
// available: ...", not "gpuinfo: gpuinfo: ...".
func TestOpenErrorsSayGpuinfoOnce(t *testing.T) {
	for _, openErr := range []error{
		fmt.Errorf("%w: libnvidia-ml.so.1 not found", ErrNoDriver),
		errors.New("nvmlInit_v2: Unknown Error (NVML error 999)"),
	} {
		_, err := openMonitor(&fakeDriver{openErr: openErr})
		if err == nil || strings.Count(err.Error(), "gpuinfo:") != 1 || !errors.Is(err, openErr) {
			t.Errorf("open failing with %q: err %v, want it wrapped with one gpuinfo: prefix", openErr, err)
		}
	}
}

// TestDetectUnifiedMemory: a fake device report for each way a GPU can show
// that it shares the system's memory. Such a GPU is planned against the
// host's MemAvailable (really free for this process), not a device total.
func TestDetectUnifiedMemory(t *testing.T) {
	path := filepath.Join(t.TempDir(), "meminfo")
	if err := os.WriteFile(path, []byte("MemTotal: 128000000 kB\nMemAvailable: 96000000 kB\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	old := meminfoPath
	meminfoPath = path
	defer func() { meminfoPath = old }()

	gb10 := GPU{Name: "NVIDIA GB10", UUID: "GPU-a", ComputeMajor: 12, ComputeMinor: 1, nvmlNoMemory: true}
	h100 := GPU{Index: 1, Name: "NVIDIA H100", UUID: "GPU-b", MemoryTotal: 80 << 30, MemoryFree: 70 << 30, MemoryUsed: 10 << 30, ComputeMajor: 9}
	jetson := GPU{Index: 2, Name: "Orin", UUID: "GPU-c", MemoryTotal: 60 << 30, MemoryFree: 50 << 30, MemoryUsed: 10 << 30, ComputeMajor: 8, ComputeMinor: 7}
	for _, tc := range []struct {
		name   string
		gpu    GPU
		prober cudaProber
		unif   bool
		reason string
	}{
		{"NVML says not supported, no CUDA library", gb10, fakeProber{err: errors.New("no libcuda")}, true, "not supported"},
		{"both signs", gb10, fakeProber{integ: map[string]bool{"GPU-a": true}}, true, "integrated GPU; NVML"},
		{"CUDA says integrated, NVML reports memory", jetson, fakeProber{integ: map[string]bool{"GPU-c": true}}, true, "integrated"},
		{"discrete card", h100, fakeProber{integ: map[string]bool{"GPU-b": false}}, false, ""},
		{"discrete card, no prober", h100, nil, false, ""},
	} {
		r, err := detect(&fakeDriver{gpus: []GPU{tc.gpu}, cuda: 13000}, tc.prober)
		if err != nil {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		g := r.GPUs[0]
		if g.Unified != tc.unif || !strings.Contains(g.UnifiedReason, tc.reason) {
			t.Errorf("%s: unified %v (%q), want %v (%q)", tc.name, g.Unified, g.UnifiedReason, tc.unif, tc.reason)
		}
		wantFree, wantTotal := tc.gpu.MemoryFree, tc.gpu.MemoryTotal
		if tc.unif {
			wantFree, wantTotal = 96000000<<10, 128000000<<10
		}
		if g.MemoryFree != wantFree || g.MemoryTotal != wantTotal || g.MemoryUsed != wantTotal-wantFree {
			t.Errorf("%s: memory free %d total %d used %d, want %d of %d", tc.name, g.MemoryFree, g.MemoryTotal, g.MemoryUsed, wantFree, wantTotal)
		}
	}

	// Unified memory whose size cannot be read is an error naming the file.
	meminfoPath = filepath.Join(t.TempDir(), "missing")
	_, err := detect(&fakeDriver{gpus: []GPU{gb10}, cuda: 13000}, nil)
	if err == nil || !strings.Contains(err.Error(), "missing") || !strings.Contains(err.Error(), "shares the system's memory") {
		t.Errorf("unreadable meminfo: err = %v", err)
	}
}
