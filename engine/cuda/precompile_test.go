package cuda

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"whet/engine"
	"whet/kernels"
)

// fakeCompiler stands in for NVRTC in the scheduling tests (no GPU, no
// libnvrtc): it counts compiles per file, can hold a file's compile until
// released, fail it or panic in it.
type fakeCompiler struct {
	mu      sync.Mutex
	calls   map[string]int
	fail    map[string]error
	panicOn string
	gates   map[string]chan struct{}
	started chan string // each compile's file as it starts, if set
}

func newFake() *fakeCompiler {
	return &fakeCompiler{calls: map[string]int{}, fail: map[string]error{}, gates: map[string]chan struct{}{}}
}

// hold makes compiles of file wait until the returned function is called.
func (f *fakeCompiler) hold(file string) (release func()) {
	ch := make(chan struct{})
	f.mu.Lock()
	f.gates[file] = ch
	f.mu.Unlock()
	var once sync.Once
	return func() { once.Do(func() { close(ch) }) }
}

func (f *fakeCompiler) compileWith(name, src string, headers map[string]string, arch string, opts []string) ([]byte, error) {
	f.mu.Lock()
	f.calls[name]++
	gate, err, panics := f.gates[name], f.fail[name], f.panicOn == name
	started := f.started
	f.mu.Unlock()
	if started != nil {
		started <- name
	}
	if gate != nil {
		<-gate
	}
	if panics {
		panic("fake compiler: " + name)
	}
	if err != nil {
		return nil, err
	}
	return []byte("cubin of " + name + " for " + arch + " from " + src), nil
}

func (f *fakeCompiler) count(file string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls[file]
}

func fakeJobs(files ...string) []kernelJob {
	var out []kernelJob
	for _, f := range files {
		src := "// " + f
		opts := []string{"--gpu-architecture=sm_90"}
		out = append(out, kernelJob{file: f, src: src, arch: "sm_90", opts: opts, key: cacheKeyOpts(f, src, nil, "sm_90", 12, 8, opts)})
	}
	return out
}

// progressLog collects a run's reports.
type progressLog struct {
	mu  sync.Mutex
	all []engine.KernelProgress
}

func (p *progressLog) add(k engine.KernelProgress) {
	p.mu.Lock()
	p.all = append(p.all, k)
	p.mu.Unlock()
}

func (p *progressLog) last(t *testing.T) engine.KernelProgress {
	t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.all) == 0 {
		t.Fatal("no progress was reported")
	}
	return p.all[len(p.all)-1]
}

// TestPrecompileCompilesWhatTheCacheLacksOnce: files in the cache are
// skipped, the others compiled once each and stored, the progress ends at
// total of total, and a later user reads the stored cubin instead of
// compiling again.
func TestPrecompileCompilesWhatTheCacheLacksOnce(t *testing.T) {
	cache := kernelCache{dir: t.TempDir()}
	jobs := fakeJobs("a.cu", "b.cu", "c.cu", "d.cu")
	cache.store(jobs[1].file, jobs[1].key, []byte("cached b"))
	f, k := newFake(), newKernelBuilds()
	r := k.precompile(f, cache, jobs, 2)
	var log progressLog
	r.attach(log.add)
	r.wait()
	for _, j := range jobs {
		want := 1
		if j.file == "b.cu" {
			want = 0
		}
		if got := f.count(j.file); got != want {
			t.Errorf("%s compiled %d times, want %d", j.file, got, want)
		}
		if !cache.has(j.file, j.key) {
			t.Errorf("%s is not in the cache", j.file)
		}
	}
	p := log.last(t)
	if p.Done != 3 || p.Total != 3 || p.Failed != 0 || p.Arch != "sm_90" || p.CacheDir != cache.dir {
		t.Errorf("last progress %+v, want 3 of 3 files for sm_90 in %s", p, cache.dir)
	}
	if !strings.Contains(p.String(), "3 of 3 files, done in") {
		t.Errorf("last line %q does not say it is done", p.String())
	}
	for _, j := range jobs {
		cubin, fromCache, err := k.get(f, cache, j)
		if err != nil || !fromCache || len(cubin) == 0 {
			t.Errorf("%s after the run: %d bytes, from cache %v, err %v; want the cache's", j.file, len(cubin), fromCache, err)
		}
	}
	if got := f.count("a.cu"); got != 1 {
		t.Errorf("a.cu compiled %d times after its use, want 1", got)
	}
	if len(k.builds) != 0 {
		t.Errorf("%d builds left in the table", len(k.builds))
	}
}

// TestPrecompileWarmCacheReportsNothing: with every cubin in the cache
// nothing is compiled and nothing reported.
func TestPrecompileWarmCacheReportsNothing(t *testing.T) {
	cache := kernelCache{dir: t.TempDir()}
	jobs := fakeJobs("a.cu", "b.cu")
	for _, j := range jobs {
		cache.store(j.file, j.key, []byte("x"))
	}
	f, k := newFake(), newKernelBuilds()
	r := k.precompile(f, cache, jobs, 4)
	var log progressLog
	r.attach(log.add)
	r.wait()
	if len(log.all) != 0 || k.compiles != 0 {
		t.Errorf("warm cache: %d reports, %d compiles; want none", len(log.all), k.compiles)
	}
}

// TestGetWaitsForCompileInFlight: a user of a file being compiled in the
// background waits for that compile and gets its cubin; the file is
// compiled once.
func TestGetWaitsForCompileInFlight(t *testing.T) {
	cache := kernelCache{dir: t.TempDir()}
	jobs := fakeJobs("a.cu")
	f, k := newFake(), newKernelBuilds()
	f.started = make(chan string, 4)
	release := f.hold("a.cu")
	defer release()
	r := k.precompile(f, cache, jobs, 1)
	if got := <-f.started; got != "a.cu" {
		t.Fatalf("started %s", got)
	}
	type result struct {
		cubin     []byte
		fromCache bool
		err       error
	}
	got := make(chan result, 1)
	go func() {
		c, fc, err := k.get(f, cache, jobs[0])
		got <- result{c, fc, err}
	}()
	select {
	case res := <-got:
		t.Fatalf("get returned before the compile in flight finished: %+v", res)
	case <-time.After(50 * time.Millisecond):
	}
	release()
	res := <-got
	if res.err != nil || res.fromCache || !bytes.HasPrefix(res.cubin, []byte("cubin of a.cu")) {
		t.Errorf("get: %q, from cache %v, err %v; want the background compile's cubin", res.cubin, res.fromCache, res.err)
	}
	r.wait()
	if n := f.count("a.cu"); n != 1 {
		t.Errorf("a.cu compiled %d times, want 1", n)
	}
}

// TestGetCompilesQueuedFileItself: a file still waiting for a worker is
// compiled by its first user at once (first use never waits behind the
// queue), and the worker does not compile it again.
func TestGetCompilesQueuedFileItself(t *testing.T) {
	cache := kernelCache{dir: t.TempDir()}
	jobs := fakeJobs("a.cu", "b.cu")
	f, k := newFake(), newKernelBuilds()
	f.started = make(chan string, 4)
	release := f.hold("a.cu")
	defer release()
	r := k.precompile(f, cache, jobs, 1) // one worker, busy with a.cu
	<-f.started
	done := make(chan error, 1)
	go func() {
		_, _, err := k.get(f, cache, jobs[1])
		done <- err
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("get of a queued file waited for the worker busy with another")
	}
	release()
	r.wait()
	if n := f.count("b.cu"); n != 1 {
		t.Errorf("b.cu compiled %d times, want 1", n)
	}
}

// TestPrecompileErrorSurfacesAtFirstUse: a background compile's error is
// counted and named in the progress, returned (naming the file, wrapping
// the compiler's error) to the file's first user, and not kept: the next
// user compiles again.
func TestPrecompileErrorSurfacesAtFirstUse(t *testing.T) {
	cache := kernelCache{dir: t.TempDir()}
	jobs := fakeJobs("a.cu", "bad.cu")
	f, k := newFake(), newKernelBuilds()
	boom := errors.New("compiling kernels/bad.cu for sm_90 with NVRTC 12.8: NVRTC_ERROR_COMPILATION")
	f.fail["bad.cu"] = boom
	r := k.precompile(f, cache, jobs, 2)
	var log progressLog
	r.attach(log.add)
	r.wait()
	p := log.last(t)
	if p.Done != 2 || p.Failed != 1 || len(p.Failures) != 1 || p.Failures[0] != "bad.cu" {
		t.Errorf("progress %+v, want 2 done, bad.cu failed", p)
	}
	if !strings.Contains(p.String(), "1 failed (bad.cu)") {
		t.Errorf("last line %q does not name the failure", p.String())
	}
	if cache.has("bad.cu", jobs[1].key) {
		t.Error("a failed compile left a cache entry")
	}
	_, _, err := k.get(f, cache, jobs[1])
	if !errors.Is(err, boom) || !strings.Contains(err.Error(), "kernels/bad.cu (compiled ahead of first use") {
		t.Fatalf("first use of bad.cu: %v; want the background error, named", err)
	}
	if _, _, err := k.get(f, cache, jobs[1]); !errors.Is(err, boom) {
		t.Errorf("second use: %v", err)
	}
	if n := f.count("bad.cu"); n != 2 {
		t.Errorf("bad.cu compiled %d times, want 2 (the background error is taken once)", n)
	}
	if _, _, err := k.get(f, cache, jobs[0]); err != nil {
		t.Errorf("a.cu: %v", err)
	}
}

// TestPrecompilePanicBecomesError: a panic in a background compile is the
// file's error, not the process's end.
func TestPrecompilePanicBecomesError(t *testing.T) {
	cache := kernelCache{dir: t.TempDir()}
	jobs := fakeJobs("p.cu")
	f, k := newFake(), newKernelBuilds()
	f.panicOn = "p.cu"
	r := k.precompile(f, cache, jobs, 1)
	r.wait()
	_, _, err := k.get(f, cache, jobs[0])
	if err == nil || !strings.Contains(err.Error(), "kernels/p.cu") || !strings.Contains(err.Error(), "panicked") {
		t.Errorf("get after a panicking compile: %v", err)
	}
}

// TestPrecompileStopLeavesTheRestToUsers: stopping a run (its backend
// closed) waits for the compile in flight, starts no other, and leaves no
// queued build that a later user would wait for forever.
func TestPrecompileStopLeavesTheRestToUsers(t *testing.T) {
	cache := kernelCache{dir: t.TempDir()}
	jobs := fakeJobs("a.cu", "b.cu", "c.cu")
	f, k := newFake(), newKernelBuilds()
	f.started = make(chan string, 8)
	release := f.hold("a.cu")
	r := k.precompile(f, cache, jobs, 1)
	<-f.started
	stopped := make(chan struct{})
	go func() { r.stop(); close(stopped) }()
	select {
	case <-stopped:
		t.Fatal("stop returned while a compile was running")
	case <-time.After(50 * time.Millisecond):
	}
	release()
	<-stopped
	r.wait()
	if f.count("b.cu") != 0 || f.count("c.cu") != 0 {
		t.Errorf("compiled after stop: b %d, c %d", f.count("b.cu"), f.count("c.cu"))
	}
	if len(k.builds) != 0 {
		t.Errorf("%d builds left after stop", len(k.builds))
	}
	if _, fromCache, err := k.get(f, cache, jobs[1]); err != nil || fromCache || f.count("b.cu") != 1 {
		t.Errorf("b.cu after stop: from cache %v, err %v, compiled %d times", fromCache, err, f.count("b.cu"))
	}
}

// TestPrecompileConcurrentUsersCompileOnce: users asking for every file
// from many goroutines while two runs precompile them (two backends) get
// each file's cubin, and each file is compiled exactly once. Run with -race.
func TestPrecompileConcurrentUsersCompileOnce(t *testing.T) {
	cache := kernelCache{dir: t.TempDir()}
	var names []string
	for i := range 12 {
		names = append(names, fmt.Sprintf("k%02d.cu", i))
	}
	jobs := fakeJobs(names...)
	f, k := newFake(), newKernelBuilds()
	r1 := k.precompile(f, cache, jobs, 3)
	var wg sync.WaitGroup
	errs := make(chan error, 8*len(jobs))
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range jobs {
				j := jobs[(i+g)%len(jobs)]
				cubin, _, err := k.get(f, cache, j)
				if err == nil && !bytes.Contains(cubin, []byte(j.file)) {
					err = fmt.Errorf("%s: got %q", j.file, cubin)
				}
				if err != nil {
					errs <- err
				}
			}
		}()
	}
	r2 := k.precompile(f, cache, jobs, 3)
	wg.Wait()
	r1.wait()
	r2.wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	for _, n := range names {
		if c := f.count(n); c != 1 {
			t.Errorf("%s compiled %d times, want 1", n, c)
		}
	}
}

// TestPrecompileFilesAndJobsShareFunctionsKey: the ahead-of-time compile
// builds every kernel file (the Hopper one only where it is used) with
// function's job: the same source, headers, architecture (sm_90a for the
// Hopper file on sm_90) and key, which includes the defines.
func TestPrecompileFilesAndJobsShareFunctionsKey(t *testing.T) {
	b := &Backend{arch: "sm_90", attnHopper: true, rtc: &nvrtc{major: 12, minor: 8}}
	files := b.precompileFiles()
	if len(files) != len(kernels.Names()) {
		t.Errorf("sm_90 with Hopper attention: %d files, want all %d", len(files), len(kernels.Names()))
	}
	j, err := b.kernelJob(attnHopperFile)
	if err != nil {
		t.Fatal(err)
	}
	src, _ := kernels.Source(attnHopperFile)
	if j.arch != "sm_90a" || j.key != cacheKey(attnHopperFile, src, kernels.Headers(), "sm_90a", 12, 8) {
		t.Errorf("Hopper job: arch %s key %s", j.arch, j.key)
	}
	if !slices.Equal(j.opts, compileOptions("sm_90a")) {
		t.Errorf("Hopper job's options %q, want compileOptions(sm_90a) %q", j.opts, compileOptions("sm_90a"))
	}
	t.Setenv("WHET_NVRTC_DEFINES", "ATTN_FWD_MINB=2")
	j2, _ := b.kernelJob(attnHopperFile)
	if j2.key == j.key || !slices.Contains(j2.opts, "-DATTN_FWD_MINB=2") || slices.Contains(j.opts, "-DATTN_FWD_MINB=2") {
		t.Errorf("WHET_NVRTC_DEFINES: key %s -> %s, options %q -> %q", j.key, j2.key, j.opts, j2.opts)
	}
	for _, off := range []*Backend{{arch: "sm_90", rtc: b.rtc}, {arch: "sm_80", attnHopper: true, rtc: b.rtc}} {
		for _, f := range off.precompileFiles() {
			if f == attnHopperFile {
				t.Errorf("%s, Hopper attention %v: the Hopper file is compiled ahead", off.arch, off.attnHopper)
			}
		}
	}
}

// TestPrecompileOnGPU (needs a GPU and libnvrtc; skips without them): a
// backend opened with Precompile on an empty cache compiles every file in
// the background, reports the progress to the end, and afterwards every
// declared kernel loads without a compile; the stored cubins of the
// Hopper and one plain file equal what a compile in function's way gives.
func TestPrecompileOnGPU(t *testing.T) {
	newTestBackend(t).Close() // skips without a GPU
	dir := t.TempDir()
	start := time.Now()
	b, err := New(Options{CacheDir: dir, Precompile: true})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if b.aot == nil {
		t.Fatal("Precompile did not start a compile")
	}
	var log progressLog
	b.PrecompileKernels(log.add)
	b.aot.wait()
	p := log.last(t)
	t.Logf("%d files for %s in %.1f s (GOMAXPROCS workers); last line: %s", p.Total, p.Arch, time.Since(start).Seconds(), p)
	if p.Done != p.Total || p.Failed != 0 || p.Total != len(b.precompileFiles()) {
		t.Fatalf("progress %+v: want all %d files compiled", p, len(b.precompileFiles()))
	}
	entries, _ := os.ReadDir(dir)
	t.Logf("%d cubins in the cache", len(entries))
	processBuilds.mu.Lock()
	before := processBuilds.compiles
	processBuilds.mu.Unlock()
	exit, err := b.enter()
	if err != nil {
		t.Fatal(err)
	}
	for _, file := range b.precompileFiles() {
		src, _ := kernels.Source(file)
		for _, name := range declaredKernels(src) {
			if _, err := b.function(file, name); err != nil {
				t.Errorf("%v", err)
			}
		}
	}
	exit()
	processBuilds.mu.Lock()
	after := processBuilds.compiles
	processBuilds.mu.Unlock()
	if after != before {
		t.Errorf("loading the kernels compiled %d files again", after-before)
	}
	for _, file := range []string{attnHopperFile, "rmsnorm.cu"} {
		if file == attnHopperFile && !(b.attnHopper && b.arch == "sm_90") {
			continue
		}
		j, err := b.kernelJob(file)
		if err != nil {
			t.Fatal(err)
		}
		want, err := b.rtc.compile(j.file, j.src, j.headers, j.arch) // as function compiled before precompile.go
		if err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(filepath.Join(dir, strings.TrimSuffix(file, ".cu")+"-"+j.key+".cubin"))
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("%s: the stored cubin (%d bytes, %v) differs from a fresh compile (%d bytes)", file, len(got), err, len(want))
		}
	}
}

// TestLazyCompilesAreReported: with the ahead-of-time compile off, each
// file function is about to compile on first use is reported (file
// number, name, architecture, cache); a file in the cache is not, nor is
// anything while an ahead-of-time run reports instead.
func TestLazyCompilesAreReported(t *testing.T) {
	b := &Backend{arch: "sm_80", cache: kernelCache{dir: t.TempDir()}, rtc: &nvrtc{major: 12, minor: 8}}
	var log progressLog
	b.PrecompileKernels(log.add)
	rms, err := b.kernelJob("rmsnorm.cu")
	if err != nil {
		t.Fatal(err)
	}
	rope, err := b.kernelJob("rope.cu")
	if err != nil {
		t.Fatal(err)
	}
	b.reportLazyCompile(rms)
	b.cache.store(rms.file, rms.key, []byte("cubin"))
	b.reportLazyCompile(rms) // now cached
	b.reportLazyCompile(rope)
	if len(log.all) != 2 {
		t.Fatalf("%d reports, want 2: %+v", len(log.all), log.all)
	}
	if p := log.all[1]; p.Done != 1 || p.Total != 0 || p.File != "rope.cu" || p.Arch != "sm_80" || p.CacheDir != b.cache.dir {
		t.Errorf("second report %+v, want file 2, rope.cu for sm_80", p)
	}
	b.aot = &aotRun{}
	b.reportLazyCompile(kernelJob{file: "other.cu", key: "k"})
	if len(log.all) != 2 {
		t.Errorf("reported a lazy compile while an ahead-of-time run reports")
	}
}
