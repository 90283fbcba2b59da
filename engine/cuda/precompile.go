package cuda

import (
	"fmt"
	"runtime"
	"sort"
	"strings"
	"sync"
	"time"

	"whet/engine"
	"whet/engine/envswitch"
	"whet/kernels"
)

// Ahead-of-time kernel compiles (opt-in: PrecompileEnv, Options.Precompile).
//
// On a cold kernel cache (a user's first run of a whet version) the kernels
// used to be compiled one file at a time, lazily, on first use: Llama-3.2-1B
// LoRA's first `whet bench` step on an H100 waited more than 50 s, with
// nothing said. With the switch on, the backend starts, as it opens, one
// background compile per kernel file the cache lacks, GOMAXPROCS at a time,
// each stored into the cache as it finishes; function takes a file's
// cubin from there: it waits for a compile in flight, compiles a file still
// queued itself (first use never waits behind the queue), and returns a
// background compile's error, naming the file, at that file's first use.
//
// NVRTC compiles programs from several threads at once: before CUDA 11.5 it
// serialised concurrent compiles behind a global lock, and since 11.5 it
// holds per-stage locks so that the stages (parser, NVVM optimiser, PTX
// compiler) of different threads' programs run concurrently (NVIDIA's
// technical blog, "Reducing Application Build Times Using CUDA C++
// Compilation Aids", section "Concurrent compilation", CUDA 11.5). Each
// compile here has its own nvrtcProgram, which is never shared between
// threads; whet needs libnvrtc 12 or 13. Compiling needs no CUDA context:
// loading the module (cuModuleLoadData) stays in function, under the
// backend's lock.

// PrecompileEnv, set to 1, switches the ahead-of-time compile on
// (Options.Precompile). Opt-in until it has run on a GPU.
const PrecompileEnv = "WHET_CUDA_PRECOMPILE"

// kernelCompiler turns one kernel source into a cubin; nvrtc is the real
// one, tests drive the scheduling with a fake.
type kernelCompiler interface {
	compileWith(name, src string, headers map[string]string, arch string, opts []string) ([]byte, error)
}

var _ kernelCompiler = (*nvrtc)(nil)

// kernelJob is everything one kernel file's cubin depends on: the source,
// the headers, the architecture, the NVRTC options (compileOptions: the
// defines among them) and the cache key (which hashes those and the NVRTC
// version). kernelJob computes it for function and for the ahead-of-time
// compile alike; the options are read once, so the key describes the
// cubin even if WHET_NVRTC_DEFINES changes while a compile runs.
type kernelJob struct {
	file, src, arch, key string
	headers              map[string]string
	opts                 []string
}

// kernelJob is the job of kernel file (a kernels/*.cu name) on this backend.
func (b *Backend) kernelJob(file string) (kernelJob, error) {
	src, err := kernels.Source(file)
	if err != nil {
		return kernelJob{}, err
	}
	headers := kernels.Headers()
	arch := b.fileArch(file)
	opts := compileOptions(arch)
	return kernelJob{file: file, src: src, arch: arch, headers: headers, opts: opts,
		key: cacheKeyOpts(file, src, headers, arch, b.rtc.major, b.rtc.minor, opts)}, nil
}

// id names the job's cubin in one cache; compiles of the same id are shared.
func (j kernelJob) id(c kernelCache) string { return c.dir + "\x00" + j.file + "\x00" + j.key }

// buildState is where a build stands.
type buildState int

const (
	buildQueued  buildState = iota // waiting for a worker; the first user compiles it itself
	buildRunning                   // being compiled; users wait for it
	buildDone                      // cubin or err are set and done is closed
)

// build is one kernel file's compile, shared by whoever needs the file.
type build struct {
	state buildState
	done  chan struct{} // closed when state becomes buildDone
	cubin []byte
	err   error
	bg    bool // compiled by an ahead-of-time worker (its error says so)
}

// kernelBuilds tracks the compiles in flight in this process, so that no
// file is compiled twice at once (two backends on GPUs of one
// architecture share them too). A finished build stays until its first
// user takes it if it failed or its cubin could not be stored in the
// cache; a stored one is then read from the cache.
type kernelBuilds struct {
	mu     sync.Mutex
	builds map[string]*build
	// compiles counts the compiles started (for tests).
	compiles int
}

func newKernelBuilds() *kernelBuilds { return &kernelBuilds{builds: map[string]*build{}} }

// processBuilds is the process's kernelBuilds.
var processBuilds = newKernelBuilds()

// errBuildStopped finishes a queued build whose ahead-of-time run was
// stopped (its backend closed) before a worker took it; nobody waits on
// such a build, and it leaves the table.
var errBuildStopped = fmt.Errorf("cuda: the ahead-of-time kernel compile was stopped")

// get returns j's cubin: a build in flight is waited for, a queued one is
// compiled here and now, a finished one is taken; else the cache's cubin
// (fromCache: the caller recompiles a damaged one), else j is compiled
// here, as a build others wait for. A compiled cubin is stored in the
// cache.
func (k *kernelBuilds) get(c kernelCompiler, cache kernelCache, j kernelJob) (cubin []byte, fromCache bool, err error) {
	id := j.id(cache)
	k.mu.Lock()
	bd, ok := k.builds[id]
	if !ok {
		k.mu.Unlock()
		if cubin := cache.load(j.file, j.key); cubin != nil {
			return cubin, true, nil
		}
		k.mu.Lock()
		if bd, ok = k.builds[id]; !ok {
			// A build that finished between the read above and the lock
			// stored its cubin before it left the table: read again, under
			// the lock, or the file is compiled a second time.
			if cubin := cache.load(j.file, j.key); cubin != nil {
				k.mu.Unlock()
				return cubin, true, nil
			}
			bd = &build{state: buildQueued, done: make(chan struct{})}
			k.builds[id] = bd
		}
	}
	if bd.state == buildQueued {
		bd.state, bd.bg = buildRunning, false // compiled here, not ahead
		k.compiles++
		k.mu.Unlock()
		k.run(c, cache, j, bd)
	} else {
		k.mu.Unlock()
		<-bd.done
	}
	k.mu.Lock()
	if k.builds[id] == bd {
		delete(k.builds, id) // taken: a later user reads the cache, or compiles again after an error
	}
	k.mu.Unlock()
	if bd.err != nil {
		if bd.bg {
			return nil, false, fmt.Errorf("kernels/%s (compiled ahead of first use, %s=1): %w", j.file, PrecompileEnv, bd.err)
		}
		return nil, false, bd.err
	}
	return bd.cubin, false, nil
}

// run compiles j for bd (whose state the caller set to buildRunning),
// stores the cubin in the cache and finishes bd. A panic in the compiler
// becomes bd's error.
func (k *kernelBuilds) run(c kernelCompiler, cache kernelCache, j kernelJob, bd *build) {
	var cubin []byte
	var err error
	func() {
		defer func() {
			if p := recover(); p != nil {
				err = fmt.Errorf("compiling kernels/%s for %s: the compiler panicked: %v", j.file, j.arch, p)
			}
		}()
		cubin, err = c.compileWith(j.file, j.src, j.headers, j.arch, j.opts)
	}()
	if err == nil && len(cubin) == 0 {
		err = fmt.Errorf("compiling kernels/%s for %s: the compiler returned no cubin", j.file, j.arch)
	}
	stored := err == nil && cache.store(j.file, j.key, cubin)
	k.mu.Lock()
	bd.cubin, bd.err, bd.state = cubin, err, buildDone
	close(bd.done)
	if stored && bd.bg && k.builds[j.id(cache)] == bd {
		// In the cache: nothing to keep in memory for a later user.
		delete(k.builds, j.id(cache))
	}
	k.mu.Unlock()
}

// aotRun is one backend's ahead-of-time compile.
type aotRun struct {
	k       *kernelBuilds
	arch    string // the architectures, e.g. "sm_90 and sm_90a"
	dir     string // the cache folder
	start   time.Time
	stopped chan struct{}
	workers sync.WaitGroup // the compiling goroutines
	watch   sync.WaitGroup // the goroutines that count finished builds

	mu             sync.Mutex
	stopOnce       sync.Once
	total          int // builds this run queued
	finished       int // of those, done (compiled or failed)
	failed         int
	failures       []string // the files that failed
	report         func(engine.KernelProgress)
	reportedFinish bool
}

// precompile queues a build for every job whose cubin the cache lacks and
// no one builds yet, and starts up to workers goroutines compiling them.
// It returns at once; the run's progress goes to the function attach
// gives it. With every cubin in the cache, the run has nothing to do and
// reports nothing.
func (k *kernelBuilds) precompile(c kernelCompiler, cache kernelCache, jobs []kernelJob, workers int) *aotRun {
	r := &aotRun{k: k, dir: cache.dir, start: time.Now(), stopped: make(chan struct{})}
	archs := map[string]bool{}
	type queued struct {
		j  kernelJob
		bd *build
	}
	var mine []queued
	for _, j := range jobs {
		if cache.has(j.file, j.key) {
			continue
		}
		id := j.id(cache)
		k.mu.Lock()
		if _, ok := k.builds[id]; ok {
			k.mu.Unlock()
			continue // another run or a user builds it
		}
		if cache.has(j.file, j.key) { // built and stored since the check above
			k.mu.Unlock()
			continue
		}
		bd := &build{state: buildQueued, done: make(chan struct{}), bg: true}
		k.builds[id] = bd
		k.mu.Unlock()
		mine = append(mine, queued{j, bd})
		archs[j.arch] = true
	}
	r.total = len(mine)
	names := make([]string, 0, len(archs))
	for a := range archs {
		names = append(names, a)
	}
	sort.Strings(names)
	r.arch = strings.Join(names, " and ")
	if len(mine) == 0 {
		return r
	}
	for _, q := range mine {
		r.watch.Add(1)
		go func(q queued) {
			defer r.watch.Done()
			<-q.bd.done
			if q.bd.err == errBuildStopped {
				return
			}
			r.mu.Lock()
			r.finished++
			if q.bd.err != nil {
				r.failed++
				r.failures = append(r.failures, q.j.file)
			}
			r.mu.Unlock()
			r.notify()
		}(q)
	}
	next := make(chan queued, len(mine))
	for _, q := range mine {
		next <- q
	}
	close(next)
	for range min(max(workers, 1), len(mine)) {
		r.workers.Add(1)
		go func() {
			defer r.workers.Done()
			for q := range next {
				k.mu.Lock()
				select {
				case <-r.stopped:
					// Closed: leave what no one took (a user arriving
					// later compiles it itself).
					if q.bd.state == buildQueued {
						q.bd.state, q.bd.err = buildDone, errBuildStopped
						close(q.bd.done)
						if id := q.j.id(cache); k.builds[id] == q.bd {
							delete(k.builds, id)
						}
					}
					k.mu.Unlock()
					continue
				default:
				}
				if q.bd.state != buildQueued {
					k.mu.Unlock()
					continue // its first user compiles it
				}
				q.bd.state = buildRunning
				k.compiles++
				k.mu.Unlock()
				k.run(c, cache, q.j, q.bd)
			}
		}()
	}
	return r
}

// attach sends the run's progress to report from now on (from the
// compiling goroutines), starting with where it stands if it has files to
// compile and has not finished.
func (r *aotRun) attach(report func(engine.KernelProgress)) {
	r.mu.Lock()
	r.report = report
	r.mu.Unlock()
	r.notify()
}

// notify reports the run's progress, once more after the last file.
func (r *aotRun) notify() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.report == nil || r.total == 0 || r.reportedFinish {
		return
	}
	if r.finished == r.total {
		r.reportedFinish = true
	}
	r.report(r.progressLocked())
}

func (r *aotRun) progressLocked() engine.KernelProgress {
	return engine.KernelProgress{Arch: r.arch, Done: r.finished, Failed: r.failed, Total: r.total,
		Failures: append([]string(nil), r.failures...), CacheDir: r.dir, Elapsed: time.Since(r.start)}
}

// stop keeps the workers from taking more files and waits for the
// compiles they are running (a second or two at most).
func (r *aotRun) stop() {
	r.stopOnce.Do(func() { close(r.stopped) })
	r.workers.Wait()
}

// wait waits for every build of the run (for tests).
func (r *aotRun) wait() {
	r.workers.Wait()
	r.watch.Wait()
}

// precompileOn reports whether Options.Precompile or PrecompileEnv ask
// for the ahead-of-time compile.
func precompileOn(opt bool) bool { return opt || envswitch.On(PrecompileEnv) }

// precompileFiles are the kernel files the ahead-of-time compile builds:
// every one, but the Hopper attention file only where it is used (an sm_90
// device with the Hopper kernels on).
func (b *Backend) precompileFiles() []string {
	var out []string
	for _, f := range kernels.Names() {
		if f == attnHopperFile && !(b.attnHopper && b.arch == "sm_90") {
			continue
		}
		out = append(out, f)
	}
	return out
}

// startPrecompile starts the ahead-of-time compile of the backend's
// kernel files into its cache. Without a cache folder there is nowhere to
// keep the cubins, and nothing starts.
func (b *Backend) startPrecompile() error {
	if b.cache.dir == "" {
		return nil
	}
	var jobs []kernelJob
	for _, f := range b.precompileFiles() {
		j, err := b.kernelJob(f)
		if err != nil {
			return fmt.Errorf("cuda: ahead-of-time kernel compile: %w", err)
		}
		jobs = append(jobs, j)
	}
	b.aot = processBuilds.precompile(b.rtc, b.cache, jobs, runtime.GOMAXPROCS(0))
	return nil
}

// PrecompileKernels sends the progress of the backend's kernel compiles
// to report (engine.KernelPrecompiler). With the ahead-of-time compile
// (PrecompileEnv): calls from other goroutines while the files the kernel
// cache lacked compile, the last when all have finished. Without it: a
// call (from the op's goroutine, before the compile) for each file
// compiled on its first use (Total 0: how many will come is not known).
// Nothing is reported while every file comes from the cache.
func (b *Backend) PrecompileKernels(report func(engine.KernelProgress)) {
	b.mu.Lock()
	r := b.aot
	if r == nil {
		b.lazyReport = report
	}
	b.mu.Unlock()
	if r != nil {
		r.attach(report)
	}
}

// reportLazyCompile tells lazyReport that function is about to compile
// j's file on its first use: no ahead-of-time compile, and the cache lacks
// it. The caller holds the backend's lock.
func (b *Backend) reportLazyCompile(j kernelJob) {
	if b.aot != nil || b.lazyReport == nil || b.cache.has(j.file, j.key) {
		return
	}
	b.lazyCompiles++
	b.lazyReport(engine.KernelProgress{Arch: j.arch, Done: b.lazyCompiles - 1, File: j.file, CacheDir: b.cache.dir})
}

var _ engine.KernelPrecompiler = (*Backend)(nil)
