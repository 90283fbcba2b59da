//go:build linux

package gpuinfo

import (
	"errors"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// fakeNVML compiles testdata/fakenvml.c into a shared library.
func fakeNVML(t *testing.T) string {
	t.Helper()
	cc, err := exec.LookPath("gcc")
	if err != nil {
		t.Skip("gcc not found: cannot build the fake NVML library")
	}
	lib := filepath.Join(t.TempDir(), "libfakenvml.so")
	out, err := exec.Command(cc, "-shared", "-fPIC", "-O1", "-o", lib, filepath.Join("testdata", "fakenvml.c")).CombinedOutput()
	if err != nil {
		t.Fatalf("building the fake NVML: %v\n%s", err, out)
	}
	return lib
}

func TestPuregoDriverAgainstFakeNVML(t *testing.T) {
	d := &puregoDriver{path: fakeNVML(t)}
	r, err := detect(d)
	if err != nil {
		t.Fatal(err)
	}
	if r.CPUMode || len(r.GPUs) != 1 {
		t.Fatalf("report = %+v, want one GPU", r)
	}
	g := r.GPUs[0]
	if g.Name != "Fake H100" || g.UUID != "GPU-00000000-1111-2222-3333-444444444444" ||
		g.MemoryTotal != 80<<30 || g.MemoryUsed != 1<<30 || g.MemoryFree != 79<<30 || g.ComputeCapability() != "9.0" {
		t.Errorf("GPU = %+v", g)
	}
	if r.DriverVersion != "580.82.07" || r.CUDAVersion != "13.0" {
		t.Errorf("driver %q CUDA %q, want 580.82.07 and 13.0", r.DriverVersion, r.CUDAVersion)
	}

	m := &Monitor{d: d}
	if err := d.open(); err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	s, err := m.Sample(0)
	if err != nil {
		t.Fatal(err)
	}
	want := Sample{Index: 0, UtilGPU: 87, UtilMemory: 42, TemperatureC: 61, PowerW: 412.345, PowerLimitW: 700,
		ClockSMMHz: 1980, ClockMemoryMHz: 0, MemoryUsed: 1 << 30, MemoryTotal: 80 << 30}
	if s != want {
		t.Errorf("sample = %+v\nwant     %+v", s, want)
	}
	_, err = m.Sample(3)
	if err == nil || !strings.Contains(err.Error(), "Invalid Argument") || !strings.Contains(err.Error(), "nvmlDeviceGetHandleByIndex_v2") {
		t.Errorf("sample of a missing GPU: err = %v, want the NVML error naming the call", err)
	}
}

func TestPuregoDriverWithoutLibrary(t *testing.T) {
	d := &puregoDriver{path: filepath.Join(t.TempDir(), "libnvidia-ml.so.1")}
	err := d.open()
	if !errors.Is(err, ErrNoDriver) {
		t.Errorf("open of a missing library: %v, want ErrNoDriver", err)
	}
	r, err := detect(d)
	if err != nil || !r.CPUMode {
		t.Errorf("detect without the library = %+v, %v; want CPU mode", r, err)
	}
}

// Every Linux build, cgo or not, reads NVML through purego: no C is
// compiled for it, so a cold build prints no compiler warnings.
func TestLinuxBuildsUsePuregoDriver(t *testing.T) {
	d, ok := newDriver().(*puregoDriver)
	if !ok || d.path != "libnvidia-ml.so.1" {
		t.Errorf("newDriver() = %#v, want the purego driver of libnvidia-ml.so.1", newDriver())
	}
}
