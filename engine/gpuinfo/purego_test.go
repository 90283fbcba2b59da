//go:build linux

package gpuinfo

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"whet/engine/internal/cctest"
)

// fakeNVML compiles testdata/fakenvml.c into a shared library.
func fakeNVML(t *testing.T, defines ...string) string {
	t.Helper()
	return fakeLib(t, "fakenvml.c", defines...)
}

// fakeLib compiles one of testdata's fake driver libraries with the given
// -D defines (with $CC when set, else gcc: see cctest.SharedLib).
func fakeLib(t *testing.T, source string, defines ...string) string {
	t.Helper()
	return cctest.SharedLib(t, source, strings.TrimSuffix(source, ".c")+".so", defines...)
}

// withMeminfo points the RAM figures at a fixture for one test.
func withMeminfo(t *testing.T, text string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "meminfo")
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	old := meminfoPath
	meminfoPath = path
	t.Cleanup(func() { meminfoPath = old })
}

// A DGX Spark as the real libraries answer: NVML reports the GB10's memory
// as not supported and the CUDA driver calls it integrated. Both libraries
// are fakes compiled from testdata, loaded through purego as the real ones
// are; the memory to plan against is the system's MemAvailable.
func TestPuregoDetectsUnifiedMemory(t *testing.T) {
	withMeminfo(t, "MemTotal:       125000000 kB\nMemFree:  1000 kB\nMemAvailable:   100000000 kB\n")
	d := &puregoDriver{path: fakeNVML(t, "UNIFIED")}
	c := &puregoCUDA{path: fakeLib(t, "fakecuda.c", "INTEGRATED")}
	integrated, err := c.integrated()
	if err != nil || len(integrated) != 1 || !integrated["GPU-00000000-1111-2222-3333-444444444444"] {
		t.Fatalf("CUDA probe = %v, %v; want the one device, integrated, under NVML's UUID", integrated, err)
	}
	r, err := detect(d, c)
	if err != nil {
		t.Fatal(err)
	}
	g := r.GPUs[0]
	if !g.Unified || g.Name != "Fake GB10" || g.ComputeCapability() != "12.1" ||
		g.MemoryTotal != 125000000<<10 || g.MemoryFree != 100000000<<10 || g.MemoryUsed != 25000000<<10 {
		t.Errorf("GPU = %+v, want a unified GB10 with the system's memory", g)
	}
	for _, want := range []string{"integrated", "not supported"} {
		if !strings.Contains(g.UnifiedReason, want) {
			t.Errorf("reason %q does not say %q", g.UnifiedReason, want)
		}
	}
	// The dashboard's samples take the system's memory too.
	if err := d.open(); err != nil {
		t.Fatal(err)
	}
	m := &Monitor{d: d}
	defer m.Close()
	s, err := m.Sample(0)
	if err != nil || !s.HostMemory || s.MemoryTotal != 125000000<<10 || s.MemoryUsed != 25000000<<10 {
		t.Errorf("sample = %+v, %v; want the system's memory", s, err)
	}

	// A discrete card: the CUDA driver says not integrated, NVML reports
	// its memory, and nothing changes.
	r, err = detect(&puregoDriver{path: fakeNVML(t)}, &puregoCUDA{path: fakeLib(t, "fakecuda.c")})
	if err != nil || r.GPUs[0].Unified || r.GPUs[0].MemoryFree != 79<<30 {
		t.Errorf("discrete GPU = %+v, %v; want its own memory", r.GPUs, err)
	}
	// No CUDA library: NVML's answer alone still shows unified memory.
	r, err = detect(&puregoDriver{path: fakeNVML(t, "UNIFIED")}, &puregoCUDA{path: filepath.Join(t.TempDir(), "libcuda.so.1")})
	if err != nil || !r.GPUs[0].Unified || strings.Contains(r.GPUs[0].UnifiedReason, "integrated") {
		t.Errorf("unified GPU without libcuda = %+v, %v", r.GPUs, err)
	}
}

func TestPuregoDriverAgainstFakeNVML(t *testing.T) {
	d := &puregoDriver{path: fakeNVML(t)}
	r, err := detect(d, nil)
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
	r, err := detect(d, nil)
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

func TestNVMLUUID(t *testing.T) {
	b := [16]byte{0xde, 0xad, 0xbe, 0xef, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}
	if got, want := nvmlUUID(b), "GPU-deadbeef-0102-0304-0506-0708090a0b0c"; got != want {
		t.Errorf("nvmlUUID = %s, want %s", got, want)
	}
}
