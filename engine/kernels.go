package engine

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// KernelPrecompiler is a backend that compiles its GPU kernels at run time
// (engine/cuda with NVRTC) and can do so ahead of first use, in the
// background, as it opens.
type KernelPrecompiler interface {
	// PrecompileKernels sends the progress of the backend's kernel
	// compiles to report: while the files the kernel cache lacked compile
	// ahead, from other goroutines (the last call when all have finished);
	// with the ahead-of-time compile off, once per file compiled on first
	// use, from the goroutine of the op that needs it, under the
	// backend's lock (report must not call the backend). Nothing is
	// reported while every file comes from the cache.
	PrecompileKernels(report func(KernelProgress))
}

// KernelProgress is where a backend's ahead-of-time kernel compile stands.
type KernelProgress struct {
	Arch string // what the kernels are compiled for: "sm_90", "sm_90 and sm_90a"
	// Done files finished (compiled or failed) of the Total the cache
	// lacked. Total 0: files are compiled one at a time on first use (the
	// ahead-of-time compile is off), File is the one now compiling and
	// Done the files compiled before it.
	Done, Total int
	File        string
	Failed      int           // of Done, files whose compile failed
	Failures    []string      // their names (kernels/*.cu)
	CacheDir    string        // where the cubins are kept
	Elapsed     time.Duration // since the compile started
}

// KernelProgressPrefix starts every KernelProgress line.
const KernelProgressPrefix = "compiling CUDA kernels for "

// String is the progress line shown to the user, short enough for the
// studio's 80-column header with the count whole: "compiling CUDA kernels
// for sm_90 and sm_90a: 7 of 23 files (once, then cached)", when done
// "compiling CUDA kernels for sm_90: 23 of 23 files, done in 14.2 s"; one
// file at a time, "compiling CUDA kernels for sm_90 once, on first use:
// file 7, rope" (kernels/rope.cu). Where the cubins are kept is said once,
// before the first line, by CacheNote.
func (p KernelProgress) String() string {
	if p.Total == 0 {
		return fmt.Sprintf("%s%s once, on first use: file %d, %s", KernelProgressPrefix, p.Arch, p.Done+1, strings.TrimSuffix(p.File, ".cu"))
	}
	if p.Done < p.Total {
		return fmt.Sprintf("%s%s: %d of %d files (once, then cached)", KernelProgressPrefix, p.Arch, p.Done, p.Total)
	}
	s := fmt.Sprintf("%s%s: %d of %d files, done in %.1f s", KernelProgressPrefix, p.Arch, p.Done, p.Total, p.Elapsed.Seconds())
	if p.Failed > 0 {
		s += fmt.Sprintf("; %d failed (%s): the error comes when the first kernel of a failed file is used", p.Failed, strings.Join(p.Failures, ", "))
	}
	return s
}

// CacheNote is the line said once before a compile's progress lines (it
// goes to the log and the CLI's standard error, not the studio's header):
// why the kernels compile and where they are kept, e.g. "CUDA kernels:
// the first run of this version on sm_90 compiles them into
// ~/.cache/whet/kernels; later runs load them from there".
func (p KernelProgress) CacheNote() string {
	return fmt.Sprintf("CUDA kernels: the first run of this version on %s compiles them into %s; later runs load them from there", p.Arch, homeRelative(p.CacheDir))
}

// homeRelative writes a path under the home folder as ~/...
func homeRelative(p string) string {
	if home, err := os.UserHomeDir(); err == nil && home != "" {
		if rel, err := filepath.Rel(home, p); err == nil && rel != "." && !strings.HasPrefix(rel, "..") {
			return "~/" + filepath.ToSlash(rel)
		}
	}
	return p
}

// kernelLineEvery is the least time between two progress lines of a
// kernel compile (the first and the last always come).
const kernelLineEvery = 2 * time.Second

// ReportKernelCompiles passes the progress lines of b's kernel compiles
// (KernelPrecompiler; nothing for other backends) to line, possibly from
// other goroutines, one call at a time: the cache note (CacheNote) and the
// first, then at most one every kernelLineEvery, and the last of an
// ahead-of-time compile. line must not call b.
func ReportKernelCompiles(b Backend, line func(string)) {
	kp, ok := b.(KernelPrecompiler)
	if !ok {
		return
	}
	var mu sync.Mutex
	var last time.Time
	first := true
	kp.PrecompileKernels(func(p KernelProgress) {
		mu.Lock()
		defer mu.Unlock()
		now := time.Now()
		if !first && (p.Done < p.Total || p.Total == 0) && now.Sub(last) < kernelLineEvery {
			return
		}
		if first {
			line(p.CacheNote())
		}
		first, last = false, now
		line(p.String())
	})
}
