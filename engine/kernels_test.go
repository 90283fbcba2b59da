package engine

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// precompilingBackend replays a kernel compile's progress to whoever asks.
type precompilingBackend struct {
	Backend
	steps []KernelProgress
}

func (b precompilingBackend) PrecompileKernels(report func(KernelProgress)) {
	for _, p := range b.steps {
		report(p)
	}
}

func TestKernelProgressLines(t *testing.T) {
	home, err := os.UserHomeDir()
	if err != nil {
		t.Skip(err)
	}
	dir := filepath.Join(home, ".cache", "whet", "kernels")
	p := KernelProgress{Arch: "sm_90 and sm_90a", Done: 7, Total: 23, CacheDir: dir}
	if got, want := p.String(), "compiling CUDA kernels for sm_90 and sm_90a: 7 of 23 files (first run of this version; cached in ~/.cache/whet/kernels)"; got != want {
		t.Errorf("got  %q\nwant %q", got, want)
	}
	p = KernelProgress{Arch: "sm_80", Done: 23, Total: 23, Failed: 1, Failures: []string{"rope.cu"}, CacheDir: "/tmp/k", Elapsed: 14200 * time.Millisecond}
	if got, want := p.String(), "compiling CUDA kernels for sm_80: 23 of 23 files, done in 14.2 s (cached in /tmp/k); 1 failed (rope.cu): the error comes when the first kernel of a failed file is used"; got != want {
		t.Errorf("got  %q\nwant %q", got, want)
	}
	p = KernelProgress{Arch: "sm_90", Done: 6, File: "rope.cu", CacheDir: "/tmp/k"}
	if got, want := p.String(), "compiling CUDA kernels for sm_90 as they are first used: file 7, kernels/rope.cu (first run of this version; cached in /tmp/k)"; got != want {
		t.Errorf("got  %q\nwant %q", got, want)
	}
	if !strings.HasPrefix(p.String(), KernelProgressPrefix) {
		t.Error("the line does not start with KernelProgressPrefix")
	}
}

// TestReportKernelCompilesThrottles: the first and last reports become
// lines, the ones between only kernelLineEvery apart; a backend that
// compiles nothing ahead gives no line.
func TestReportKernelCompilesThrottles(t *testing.T) {
	var steps []KernelProgress
	for i := 0; i <= 5; i++ {
		steps = append(steps, KernelProgress{Arch: "sm_90", Done: i, Total: 5, CacheDir: "/c"})
	}
	var lines []string
	ReportKernelCompiles(precompilingBackend{steps: steps}, func(l string) { lines = append(lines, l) })
	if len(lines) != 2 || !strings.Contains(lines[0], ": 0 of 5 files") || !strings.Contains(lines[1], "5 of 5 files, done") {
		t.Errorf("lines %q: want the first and the last", lines)
	}
	// One file at a time (Total 0): the first line, then kernelLineEvery apart.
	lines = nil
	ReportKernelCompiles(precompilingBackend{steps: []KernelProgress{{Arch: "sm_90", File: "a.cu"}, {Arch: "sm_90", Done: 1, File: "b.cu"}}}, func(l string) { lines = append(lines, l) })
	if len(lines) != 1 || !strings.Contains(lines[0], "file 1, kernels/a.cu") {
		t.Errorf("lines %q: want only the first", lines)
	}
	lines = nil
	ReportKernelCompiles(precompilingBackend{}, func(l string) { lines = append(lines, l) })
	type plain struct{ Backend }
	ReportKernelCompiles(plain{}, func(l string) { lines = append(lines, l) })
	if len(lines) != 0 {
		t.Errorf("no compile, yet lines %q", lines)
	}
}
