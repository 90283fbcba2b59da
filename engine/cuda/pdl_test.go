package cuda

import (
	"regexp"
	"strings"
	"testing"
	"unsafe"

	"whet/kernels"
)

// The launch structures must have CUDA's layout (cuda.h, 64-bit): a
// CUlaunchAttribute is 72 bytes (id, padding, a 64-byte value), a
// CUlaunchConfig 56 with the stream at 32, attrs at 40 and numAttrs at 48.
func TestLaunchConfigLayout(t *testing.T) {
	var a cuLaunchAttribute
	var c cuLaunchConfig
	for _, x := range []struct {
		what      string
		got, want uintptr
	}{
		{"sizeof CUlaunchAttribute", unsafe.Sizeof(a), 72},
		{"offsetof value", unsafe.Offsetof(a.value), 8},
		{"sizeof CUlaunchConfig", unsafe.Sizeof(c), 56},
		{"offsetof sharedMemBytes", unsafe.Offsetof(c.smem), 24},
		{"offsetof hStream", unsafe.Offsetof(c.stream), 32},
		{"offsetof attrs", unsafe.Offsetof(c.attrs), 40},
		{"offsetof numAttrs", unsafe.Offsetof(c.numAttrs), 48},
	} {
		if x.got != x.want {
			t.Errorf("%s = %d, want %d", x.what, x.got, x.want)
		}
	}
}

// Every kernel that may be launched with programmatic dependent launch
// must wait for its predecessor before it touches what that one writes:
// its body starts with PDL_WAIT() (only an L2 prefetch of weights may come
// first) and triggers its dependents only after it. A kernel in
// pdlKernels that no file defines is a stale entry.
func TestPDLKernelsWaitFirst(t *testing.T) {
	found := map[string]bool{}
	for _, file := range kernels.Names() {
		src, err := kernels.Source(file)
		if err != nil {
			t.Fatal(err)
		}
		for name := range pdlKernels {
			re := regexp.MustCompile(`extern "C" __global__ void[^\n]*\b` + name + `\(`)
			loc := re.FindStringIndex(src)
			if loc == nil {
				continue
			}
			found[name] = true
			body := src[loc[1]:]
			open := strings.Index(body, "{")
			end := strings.Index(body, "\n}\n")
			if open < 0 || end < open {
				t.Errorf("%s (%s): cannot find the body", name, file)
				continue
			}
			body = body[open:end]
			wait, trigger := strings.Index(body, "PDL_WAIT();"), strings.Index(body, "PDL_TRIGGER();")
			if wait < 0 || trigger < wait {
				t.Errorf("%s (%s): want PDL_WAIT(); and after it PDL_TRIGGER(); in the body", name, file)
				continue
			}
			// Before the wait: declarations, the row's arithmetic and
			// gemv_prefetch only; no load or store of another kernel's data.
			before := body[:wait]
			for _, bad := range []string{"ld(", "ld8(", "st(", "st8(", "pos[", "ids[", "atomic"} {
				if strings.Contains(before, bad) {
					t.Errorf("%s (%s): %q before PDL_WAIT()", name, file, bad)
				}
			}
		}
	}
	for name := range pdlKernels {
		if !found[name] {
			t.Errorf("pdlKernels names %s, which no kernels/*.cu file defines", name)
		}
	}
}

func TestPDLArch(t *testing.T) {
	for arch, want := range map[string]bool{"sm_80": false, "sm_89": false, "sm_90": true, "sm_100": true, "sm_121": true, "x": false} {
		if got := pdlArch(arch); got != want {
			t.Errorf("pdlArch(%q) = %v, want %v", arch, got, want)
		}
	}
}

// PDLEnv (1 or unset) adds the define that compiles the griddepcontrol
// instructions in and, on sm_90 and newer, pdlDefines (each unless
// WHET_NVRTC_DEFINES sets its name); 0 adds neither. Both change the kernel
// cache key.
func TestPDLCompileOption(t *testing.T) {
	t.Setenv(PDLEnv, "0")
	off := strings.Join(compileOptions("sm_90"), " ")
	if strings.Contains(off, "WHET_PDL") || strings.Contains(off, "GEMV_EARLY") || strings.Contains(off, "GEMV_PREFETCH") {
		t.Errorf("options with %s=0: %q", PDLEnv, off)
	}
	for _, v := range []string{"", "1"} {
		t.Setenv(PDLEnv, v)
		on := strings.Join(compileOptions("sm_90"), " ")
		if !strings.Contains(on, "-DWHET_PDL=1") || !strings.Contains(on, "-DGEMV_EARLY=1") || !strings.Contains(on, "-DGEMV_PREFETCH=0") {
			t.Errorf("options with %s=%q: %q", PDLEnv, v, on)
		}
		// Below sm_90 PDL does not run: the GEMVs keep their prefetch.
		if old := strings.Join(compileOptions("sm_89"), " "); strings.Contains(old, "GEMV_") {
			t.Errorf("sm_89 options with %s=%q: %q", PDLEnv, v, old)
		}
	}
	t.Setenv(PDLEnv, "")
	t.Setenv("WHET_NVRTC_DEFINES", "GEMV_PREFETCH=4096")
	if on := strings.Join(compileOptions("sm_90"), " "); !strings.Contains(on, "-DGEMV_PREFETCH=4096") || strings.Contains(on, "GEMV_PREFETCH=0") || !strings.Contains(on, "-DGEMV_EARLY=1") {
		t.Errorf("options with WHET_NVRTC_DEFINES=GEMV_PREFETCH=4096: %q", on)
	}
	t.Setenv("WHET_NVRTC_DEFINES", "")
	src, hdr := "x", map[string]string{}
	keyOn := cacheKey("a.cu", src, hdr, "sm_90", 13, 0)
	t.Setenv(PDLEnv, "0")
	if keyOff := cacheKey("a.cu", src, hdr, "sm_90", 13, 0); keyOn == keyOff {
		t.Error("the kernel cache key does not change with " + PDLEnv)
	}
}
