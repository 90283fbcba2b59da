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
	if got, want := p.String(), "compiling CUDA kernels for sm_90 and sm_90a: 7 of 23 files (once, then cached)"; got != want {
		t.Errorf("got  %q\nwant %q", got, want)
	}
	if got, want := p.CacheNote(), "CUDA kernels: the first run of this version on sm_90 and sm_90a compiles them into ~/.cache/whet/kernels; later runs load them from there"; got != want {
		t.Errorf("got  %q\nwant %q", got, want)
	}
	// The studio's header shows the line whole at 80 columns, for the
	// longest architecture names and counts of a compile ahead of first
	// use, and of one file at a time (the longest kernel file's name).
	for _, q := range []KernelProgress{{Arch: "sm_90 and sm_90a", Done: 22, Total: 23}, {Arch: "sm_90 and sm_90a", Done: 99, Total: 99, Elapsed: 999 * time.Second},
		{Arch: "sm_90a", Done: 98, File: "attention_hopper.cu"}, {Arch: "sm_121", Done: 98, File: "group_attention.cu"}} {
		if n := len(q.String()); n > 80 {
			t.Errorf("%q: %d columns, more than 80", q.String(), n)
		}
	}
	p = KernelProgress{Arch: "sm_80", Done: 23, Total: 23, Failed: 1, Failures: []string{"rope.cu"}, CacheDir: "/tmp/k", Elapsed: 14200 * time.Millisecond}
	if got, want := p.String(), "compiling CUDA kernels for sm_80: 23 of 23 files, done in 14.2 s; 1 failed (rope.cu): the error comes when the first kernel of a failed file is used"; got != want {
		t.Errorf("got  %q\nwant %q", got, want)
	}
	p = KernelProgress{Arch: "sm_90", Done: 6, File: "rope.cu", CacheDir: "/tmp/k"}
	if got, want := p.String(), "compiling CUDA kernels for sm_90 once, on first use: file 7, rope"; got != want {
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
	if len(lines) != 3 || lines[0] != steps[0].CacheNote() || !strings.Contains(lines[1], ": 0 of 5 files") || !strings.Contains(lines[2], "5 of 5 files, done") {
		t.Errorf("lines %q: want the cache note, the first and the last", lines)
	}
	// One file at a time (Total 0): the first line, then kernelLineEvery apart.
	lines = nil
	ReportKernelCompiles(precompilingBackend{steps: []KernelProgress{{Arch: "sm_90", File: "a.cu"}, {Arch: "sm_90", Done: 1, File: "b.cu"}}}, func(l string) { lines = append(lines, l) })
	if len(lines) != 2 || !strings.HasPrefix(lines[0], "CUDA kernels: the first run") || !strings.HasSuffix(lines[1], "file 1, a") {
		t.Errorf("lines %q: want the cache note and only the first", lines)
	}
	lines = nil
	ReportKernelCompiles(precompilingBackend{}, func(l string) { lines = append(lines, l) })
	type plain struct{ Backend }
	ReportKernelCompiles(plain{}, func(l string) { lines = append(lines, l) })
	if len(lines) != 0 {
		t.Errorf("no compile, yet lines %q", lines)
	}
}
