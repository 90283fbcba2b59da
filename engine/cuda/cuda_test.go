package cuda

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"whet/engine"
	"whet/engine/backendtest"
	"whet/engine/cpu"
	"whet/engine/units"
	"whet/kernels"
)

// Tests that need a GPU skip, with the reason, where New reports ErrNoGPU
// (no driver library, no device). On the GPU machine WHET_CUDA_REQUIRE=1
// turns that skip into a failure, so a broken install cannot pass quietly.

// testCacheDir is a fresh kernel cache for this test process, so the first
// backend really compiles with NVRTC and later ones load from disk.
var testCacheDir string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "whet-kernels-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "creating the kernel cache folder:", err)
		os.Exit(2)
	}
	testCacheDir = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

func newTestBackend(t *testing.T) *Backend {
	t.Helper()
	b, err := New(Options{CacheDir: testCacheDir})
	if err != nil {
		if errors.Is(err, ErrNoGPU) && os.Getenv("WHET_CUDA_REQUIRE") != "1" {
			t.Skipf("skipping: the CUDA backend needs an NVIDIA GPU and driver: %v", err)
		}
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() {
		if err := b.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return b
}

// TestSmoke is the first check on a new machine: bindings, NVRTC, one
// kernel and one cuBLASLt product, against plain Go arithmetic.
func TestSmoke(t *testing.T) {
	b := newTestBackend(t)
	t.Logf("%s; %s", b.Name(), b.Versions())
	free, total, err := b.MemInfo()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("device memory: %s free of %s", units.Bytes(free), units.Bytes(total))

	const M, K, N = 33, 70, 19
	rng := rand.New(rand.NewPCG(1, 2))
	av, bv := randVals(rng, M*K), randVals(rng, K*N)
	a, _ := b.Alloc(engine.BF16, M, K)
	bm, _ := b.Alloc(engine.BF16, K, N)
	c, _ := b.Alloc(engine.F32, M, N)
	for _, x := range []struct {
		t engine.Tensor
		v []float32
	}{{a, av}, {bm, bv}} {
		if err := b.Upload(x.t, x.v); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.Fill(c, 1.5); err != nil {
		t.Fatal(err)
	}
	if err := b.MatMul(c, a, bm, false, false, 2, 0.5); err != nil {
		t.Fatal(err)
	}
	got := make([]float32, M*N)
	if err := b.Download(c, got); err != nil {
		t.Fatal(err)
	}
	var worst, scale float64
	for i := 0; i < M; i++ {
		for j := 0; j < N; j++ {
			var s float64
			for k := 0; k < K; k++ {
				s += float64(cpu.RoundBF16(av[i*K+k])) * float64(cpu.RoundBF16(bv[k*N+j]))
			}
			want := 2*s + 0.5*1.5
			worst = max(worst, math.Abs(float64(got[i*N+j])-want))
			scale = max(scale, math.Abs(want))
		}
	}
	if worst > 1e-4*scale {
		t.Errorf("bf16 MatMul into f32: worst error %g against a scale of %g", worst, scale)
	}
	ss, err := b.SumSquares(c)
	if err != nil {
		t.Fatal(err)
	}
	var want float64
	for _, v := range got {
		want += float64(v) * float64(v)
	}
	if math.Abs(ss-want) > 1e-9*want {
		t.Errorf("SumSquares = %g, want %g", ss, want)
	}
}

func randVals(rng *rand.Rand, n int) []float32 {
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(rng.NormFloat64())
	}
	return v
}

// declaredKernels lists the kernels a source declares (kernels.Declared).
func declaredKernels(src string) []string { return kernels.Declared(src) }

// TestCompileAllKernels compiles every kernel file with NVRTC and loads
// every kernel in it, so a compile error anywhere shows at once with the
// compiler's log.
func TestCompileAllKernels(t *testing.T) {
	b := newTestBackend(t)
	exit, err := b.enter()
	if err != nil {
		t.Fatal(err)
	}
	defer exit()
	for _, file := range kernels.Names() {
		src, _ := kernels.Source(file)
		for _, name := range declaredKernels(src) {
			if _, err := b.function(file, name); err != nil {
				t.Errorf("%v", err)
			}
		}
	}
}

// TestConformance runs the shared suite against engine/cpu with bf16
// activations.
func TestConformance(t *testing.T) {
	newTestBackend(t) // skips without a GPU
	var made fusedBackends
	backendtest.Run(t, made.open, backendtest.DefaultBF16())
	made.check(t)
}

// TestConformanceF32 runs the suite with f32 activations, which exercises
// the kernels' f32 paths and cuBLASLt's f32 product at float32 tolerance.
func TestConformanceF32(t *testing.T) {
	newTestBackend(t)
	backendtest.Run(t, func() (engine.Backend, error) { return New(Options{CacheDir: testCacheDir}) }, backendtest.DefaultF32())
}

// TestOutOfMemory asks for far more memory than any GPU has: the error
// must name the op and the size, hold nothing, and leave the backend
// working.
func TestOutOfMemory(t *testing.T) {
	b := newTestBackend(t)
	before := b.InUseBytes()
	const n = 1 << 40 // 2 TiB of bf16
	_, err := b.Alloc(engine.BF16, n)
	if err == nil {
		t.Fatal("Alloc of 2 TiB succeeded")
	}
	if !IsOutOfMemory(err) {
		t.Errorf("IsOutOfMemory(%v) = false", err)
	}
	for _, want := range []string{"Alloc bf16 [1099511627776]", "(2.00 TiB)", "cuMemAlloc_v2", "CUDA_ERROR_OUT_OF_MEMORY", "free of"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
	if got := b.InUseBytes(); got != before {
		t.Errorf("InUseBytes went from %d to %d across a failed Alloc", before, got)
	}
	x, err := b.Alloc(engine.F32, 1000)
	if err != nil {
		t.Fatalf("Alloc after the failure: %v", err)
	}
	defer b.Free(x)
	if err := b.Fill(x, 3); err != nil {
		t.Fatalf("Fill after the failure: %v", err)
	}
	ss, err := b.SumSquares(x)
	if err != nil || ss != 9000 {
		t.Fatalf("SumSquares after the failure = %g, %v; want 9000", ss, err)
	}
	if b.PeakBytes() < b.InUseBytes() {
		t.Errorf("PeakBytes %d below InUseBytes %d", b.PeakBytes(), b.InUseBytes())
	}
}

// TestBadIndices: ids, labels and positions out of range are errors that
// name the op and the index, and nothing breaks afterwards.
func TestBadIndices(t *testing.T) {
	b := newTestBackend(t)
	table, _ := b.Alloc(engine.BF16, 10, 8)
	out, _ := b.Alloc(engine.BF16, 3, 8)
	ids, _ := b.Alloc(engine.I32, 3)
	if err := b.UploadInt32(ids, []int32{1, 10, 2}); err != nil {
		t.Fatal(err)
	}
	err := b.Embedding(out, table, ids)
	if err == nil || !strings.Contains(err.Error(), "Embedding: ids[1] = 10") {
		t.Errorf("Embedding with id 10 of 10 rows: %v", err)
	}
	logits, _ := b.Alloc(engine.F32, 3, 10)
	losses, _ := b.Alloc(engine.F32, 3)
	if err := b.UploadInt32(ids, []int32{-100, 4, -1}); err != nil {
		t.Fatal(err)
	}
	err = b.SoftmaxCrossEntropy(logits, ids, losses, 1)
	if err == nil || !strings.Contains(err.Error(), "labels[2] = -1") {
		t.Errorf("SoftmaxCrossEntropy with label -1: %v", err)
	}
	x, _ := b.Alloc(engine.BF16, 3, 16)
	cos, _ := b.Alloc(engine.F32, 5, 4)
	sin, _ := b.Alloc(engine.F32, 5, 4)
	if err := b.UploadInt32(ids, []int32{0, 5, 1}); err != nil {
		t.Fatal(err)
	}
	err = b.RoPE(x, ids, cos, sin, 2, 8, false)
	if err == nil || !strings.Contains(err.Error(), "positions[1] = 5") {
		t.Errorf("RoPE with position 5 of 5: %v", err)
	}
	if err := b.Sync(); err != nil {
		t.Errorf("Sync after rejected calls: %v", err)
	}
}

// TestAttentionMatchesCPU covers geometries the shared suite does not: a
// head dim that is not a multiple of 32, the largest head dim, an empty
// sequence inside the packing, many key tiles, a window across tiles, and
// a block of queries that spans two sequences, and Gemma 2's shapes (head
// dim 256, windows, score soft-caps; with bf16 inputs on the head-dim-256
// tensor-core kernels, which this test turns on whatever WHET_ATTN_TC256
// says, over many of their tiles, with GQA and packing; a cap at head dim
// 128 too). With f32 inputs (the
// float32 kernels) the bound is float32 rounding; with bf16 inputs (the
// tensor-core forward where the head dim allows) it is bf16's.
func TestAttentionMatchesCPU(t *testing.T) {
	b := newTestBackend(t)
	ref := cpu.New()
	cases := []struct {
		name         string
		starts       []int32
		h, kvh, d, w int
		softCap      float32
	}{
		{"d80_gqa6x2_empty_seq", []int32{0, 37, 37, 150, 200}, 6, 2, 80, 0, 0},
		{"d80_window50", []int32{0, 37, 37, 150, 200}, 6, 2, 80, 50, 0},
		{"d256_mqa", []int32{0, 70}, 2, 1, 256, 0, 0},
		{"d32_window1", []int32{0, 40, 41}, 2, 2, 32, 1, 0},
		{"d128_gqa4x1_long", []int32{0, 300, 301, 450}, 4, 1, 128, 0, 0},
		{"d64_window100", []int32{0, 400}, 2, 2, 64, 100, 0},
		{"d48_two_seqs_in_one_block", []int32{0, 30, 90}, 3, 1, 48, 0, 0},
		{"d256_gemma2_window64_softcap", []int32{0, 150, 151, 300}, 8, 4, 256, 64, 0.5},
		{"d128_window70_softcap", []int32{0, 37, 37, 250}, 4, 2, 128, 70, 0.25},
		{"d16_softcap_window_longer", []int32{0, 90, 200}, 4, 1, 16, 400, 0.3},
		{"d256_gqa4x1_long", []int32{0, 300, 301, 450}, 4, 1, 256, 0, 0},
		{"d256_gemma3_gqa4x1_window130", []int32{0, 37, 37, 560}, 4, 1, 256, 130, 0},
		{"d256_gqa8x2_window300_softcap_long", []int32{0, 610}, 8, 2, 256, 300, 1},
		// Several 128-row query blocks and key tiles, sequences crossing them.
		{"d64_gqa8x2_packed", []int32{0, 130, 130, 385, 400, 700}, 8, 2, 64, 0, 0},
		{"d128_mqa_window200", []int32{0, 260, 520}, 4, 1, 128, 200, 0},
	}
	rng := rand.New(rand.NewPCG(7, 7))
	for _, c := range cases {
		for _, act := range []engine.DType{engine.F32, engine.BF16} {
			t.Run(c.name+"_"+act.String(), func(t *testing.T) {
				testAttentionCase(t, b, ref, rng, act, c.starts, c.h, c.kvh, c.d, c.w, c.softCap)
			})
		}
	}
}

func testAttentionCase(t *testing.T, b *Backend, ref *cpu.Backend, rng *rand.Rand, act engine.DType, starts []int32, h, kvh, d, w int, softCap float32) {
	T := int(starts[len(starts)-1])
	maxLen := 0
	for i := 0; i+1 < len(starts); i++ {
		maxLen = max(maxLen, int(starts[i+1]-starts[i]))
	}
	p := engine.AttnParams{NHeads: h, NKVHeads: kvh, HeadDim: d, Scale: float32(1 / math.Sqrt(float64(d))), Window: w, SoftCap: softCap}
	qn, kvn := T*h*d, T*kvh*d
	data := map[string][]float32{
		"q": randVals(rng, qn), "k": randVals(rng, kvn), "v": randVals(rng, kvn), "dOut": randVals(rng, qn),
	}
	shapes := map[string][]int{
		"q": {T, h * d}, "k": {T, kvh * d}, "v": {T, kvh * d}, "dOut": {T, h * d},
		"out": {T, h * d}, "lse": {h, T}, "dq": {T, h * d}, "dk": {T, kvh * d}, "dv": {T, kvh * d},
	}
	dev, host := map[string]engine.Tensor{}, map[string]engine.Tensor{}
	defer func() {
		for _, x := range dev {
			b.Free(x)
		}
	}()
	for name, shape := range shapes {
		dt := act
		if name == "lse" {
			dt = engine.F32
		}
		var err error
		if dev[name], err = b.Alloc(dt, shape...); err != nil {
			t.Fatal(err)
		}
		host[name], _ = ref.Alloc(engine.F32, shape...)
		if v, ok := data[name]; ok {
			if act == engine.BF16 {
				for i := range v {
					v[i] = cpu.RoundBF16(v[i])
				}
			}
			if err := b.Upload(dev[name], v); err != nil {
				t.Fatal(err)
			}
			ref.Upload(host[name], v)
		}
	}
	if act == engine.BF16 && d > attnTCSplitDim && attnTCHeadDims[d] {
		// On unless AttnTC256Env=0; this test always checks them.
		defer func(was bool) { b.attnTC256 = was }(b.attnTC256)
		b.attnTC256 = true
	}
	if act == engine.BF16 && attnTCHeadDims[d] {
		var outs []*Tensor
		for _, n := range []string{"out", "dq", "dk", "dv"} {
			outs = append(outs, dev[n].(*Tensor))
		}
		if !b.useTensorCores(d, T, outs, dev["q"].(*Tensor), dev["k"].(*Tensor), dev["v"].(*Tensor), dev["dOut"].(*Tensor)) {
			t.Fatalf("bf16 head dim %d does not take the tensor-core kernels", d)
		}
	}
	sd, _ := b.Alloc(engine.I32, len(starts))
	defer b.Free(sd)
	if err := b.UploadInt32(sd, starts); err != nil {
		t.Fatal(err)
	}
	seqs := engine.SeqLayout{Starts: starts, MaxLen: maxLen, Dev: sd}
	seqsRef := engine.SeqLayout{Starts: starts, MaxLen: maxLen}
	if err := b.Attention(dev["out"], dev["lse"], dev["q"], dev["k"], dev["v"], seqs, p); err != nil {
		t.Fatal(err)
	}
	if act == engine.BF16 && b.attnHopper && b.arch == "sm_90" && attnHopperHeadDims[d] {
		// On (the default on sm_90; AttnHopperEnv=0 turns it off): this case must have run the Hopper kernels.
		if b.attnHopperOff != "" {
			t.Fatalf("the Hopper attention kernels were switched off: %s", b.attnHopperOff)
		}
		t.Logf("forward and backward on the Hopper kernels (attention_*_hopper_d%d)", d)
		if ws := hopperFwdWS(); ws.mode != 0 {
			// The module must hold the warp-specialised forward (its launch
			// bounds say so), not a default one built without the defines.
			if n, err := b.hopperFwdBlock(d); err != nil || n != ws.threads(d) {
				t.Fatalf("HOP_FWD_WS=%d: the loaded forward kernel takes %d threads a block (%v), want the warp-specialised %d", ws.mode, n, err, ws.threads(d))
			}
			t.Logf("forward on the warp-specialised Hopper kernel (HOP_FWD_WS=%d: %d threads, %d rows a block, %d keys a tile, %d stages)", ws.mode, ws.threads(d), ws.rows(d), ws.keys(d), ws.nstages(d))
		}
	}
	if err := ref.Attention(host["out"], host["lse"], host["q"], host["k"], host["v"], seqsRef, p); err != nil {
		t.Fatal(err)
	}
	fusedBefore := b.attnBwdFusedRuns
	if err := b.AttentionBackward(dev["dq"], dev["dk"], dev["dv"], dev["dOut"], dev["q"], dev["k"], dev["v"], dev["out"], dev["lse"], seqs, p); err != nil {
		t.Fatal(err)
	}
	checkFusedBackwardRan(t, b, act, d, fusedBefore)
	if err := ref.AttentionBackward(host["dq"], host["dk"], host["dv"], host["dOut"], host["q"], host["k"], host["v"], host["out"], host["lse"], seqsRef, p); err != nil {
		t.Fatal(err)
	}
	// Inputs are of order 1, so an absolute term covers outputs that
	// cancel to 0 (a window of 1 gives dq = dk = 0).
	rel, abs := 1e-4, 1e-5
	if act == engine.BF16 {
		rel, abs = 3e-2, 1e-3
	}
	for _, name := range []string{"out", "lse", "dq", "dk", "dv"} {
		got, want := make([]float32, dev[name].Len()), make([]float32, host[name].Len())
		if err := b.Download(dev[name], got); err != nil {
			t.Fatal(err)
		}
		ref.Download(host[name], want)
		var worst, scale float64
		for i := range got {
			if math.IsNaN(float64(got[i])) {
				t.Fatalf("%s[%d] is NaN", name, i)
			}
			worst = max(worst, math.Abs(float64(got[i]-want[i])))
			scale = max(scale, math.Abs(float64(want[i])))
		}
		if worst > rel*scale+abs {
			t.Errorf("%s: worst error %g against a scale of %g", name, worst, scale)
		}
	}
}

// TestKernelCacheIsUsed: after the tests above compiled the kernels, the
// cache folder holds one cubin per kernel file, and a new backend loads
// them from there (it would fail to start kernels otherwise).
func TestKernelCacheIsUsed(t *testing.T) {
	b := newTestBackend(t)
	x, _ := b.Alloc(engine.BF16, 100)
	if err := b.Fill(x, 2); err != nil { // compiles elementwise.cu if nothing did yet
		t.Fatal(err)
	}
	cubins, _ := filepath.Glob(filepath.Join(testCacheDir, "elementwise-*.cubin"))
	if len(cubins) != 1 {
		t.Fatalf("cache %s holds %v, want one elementwise cubin", testCacheDir, cubins)
	}
	b2 := newTestBackend(t)
	y, _ := b2.Alloc(engine.BF16, 100)
	if err := b2.Fill(y, 2); err != nil {
		t.Fatalf("Fill through the cached cubin: %v", err)
	}
	got := make([]float32, 100)
	if err := b2.Download(y, got); err != nil || got[99] != 2 {
		t.Fatalf("Download after a cached kernel: %v, %v", got[99], err)
	}
}

// --- Tests that need no GPU (they run in CI). ---

// TestNoGPUErrorSaysWhereItLooked: on a machine without the driver, New
// fails with ErrNoGPU and names the library and the places searched.
func TestNoGPUErrorSaysWhereItLooked(t *testing.T) {
	b, err := New(Options{CacheDir: "-"})
	if err == nil {
		b.Close()
		t.Skip("a GPU is present; this test is for machines without one")
	}
	if !errors.Is(err, ErrNoGPU) {
		t.Skipf("the driver is present but New failed otherwise: %v", err)
	}
	if _, derr := openDriver(); derr == nil {
		t.Skipf("the driver library loads but reports no device: %v", err)
	}
	for _, want := range []string{"libcuda.so.1", "LD_LIBRARY_PATH", "no usable NVIDIA GPU"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("New's error %q does not mention %q", err, want)
		}
	}
}

func TestBF16RoundingMatchesCPU(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	vals := []float32{0, 1, -1, 1 + 1.0/256, 1 + 3.0/256, 1 + 1.0/512, 3.4e38, -3.4e38, 1e-40, float32(math.Inf(1)), float32(math.Inf(-1))}
	for range 10000 {
		vals = append(vals, math.Float32frombits(rng.Uint32()))
	}
	for _, v := range vals {
		got, want := bf16Value(bf16Bits(v)), cpu.RoundBF16(v)
		if math.IsNaN(float64(want)) {
			if !math.IsNaN(float64(got)) {
				t.Fatalf("bf16(%x) = %g, want NaN", math.Float32bits(v), got)
			}
			continue
		}
		if math.Float32bits(got) != math.Float32bits(want) {
			t.Fatalf("bf16(%g = %#x) = %g, cpu.RoundBF16 gives %g", v, math.Float32bits(v), got, want)
		}
	}
}

func TestAlignment(t *testing.T) {
	for _, c := range []struct {
		p    uint64
		want int
	}{{0x7f0000000000, 256}, {0x7f0000000002, 2}, {0x7f0000000010, 16}, {0x7f0000000106, 2}, {0x7f0000000180, 128}} {
		if got := alignment(c.p); got != c.want {
			t.Errorf("alignment(%#x) = %d, want %d", c.p, got, c.want)
		}
	}
}

func TestCacheKeyCoversItsInputs(t *testing.T) {
	h := map[string]string{"common.cuh": "x"}
	base := cacheKey("a.cu", "src", h, "sm_90", 13, 0)
	if base != cacheKey("a.cu", "src", map[string]string{"common.cuh": "x"}, "sm_90", 13, 0) {
		t.Error("the same inputs give different keys")
	}
	for name, k := range map[string]string{
		"source":  cacheKey("a.cu", "src2", h, "sm_90", 13, 0),
		"header":  cacheKey("a.cu", "src", map[string]string{"common.cuh": "y"}, "sm_90", 13, 0),
		"arch":    cacheKey("a.cu", "src", h, "sm_100", 13, 0),
		"version": cacheKey("a.cu", "src", h, "sm_90", 12, 8),
		"file":    cacheKey("b.cu", "src", h, "sm_90", 13, 0),
	} {
		if k == base {
			t.Errorf("changing the %s leaves the cache key unchanged", name)
		}
	}
}

func TestKernelCacheStoreLoad(t *testing.T) {
	c := kernelCache{dir: filepath.Join(t.TempDir(), "nested", "kernels")}
	if got := c.load("x.cu", "k1"); got != nil {
		t.Fatalf("empty cache returned %d bytes", len(got))
	}
	c.store("x.cu", "k1", []byte("cubin bytes"))
	if got := string(c.load("x.cu", "k1")); got != "cubin bytes" {
		t.Fatalf("load after store = %q", got)
	}
	if got := c.load("x.cu", "k2"); got != nil {
		t.Fatalf("another key returned %q", got)
	}
	if got := (kernelCache{}).load("x.cu", "k1"); got != nil {
		t.Fatal("a disabled cache returned data")
	}
}

// TestLaunchedKernelsExist reads this package's sources for every
// b.launch(..., "file.cu", "kernel", ...) and checks that the kernel is
// declared extern "C" in that file, so a misspelt name fails here rather
// than on the GPU.
func TestLaunchedKernelsExist(t *testing.T) {
	launch := regexp.MustCompile(`("\w+\.cu"|fileElementwise|fileReduce),\s*"(\w+)"`)
	consts := map[string]string{"fileElementwise": fileElementwise, "fileReduce": fileReduce}
	goFiles, _ := filepath.Glob("*.go")
	if len(goFiles) == 0 {
		t.Skip("the package's Go sources are not beside the test binary (it was built elsewhere)")
	}
	found := 0
	for _, f := range goFiles {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		src, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range launch.FindAllStringSubmatch(string(src), -1) {
			file := strings.Trim(m[1], `"`)
			if c, ok := consts[m[1]]; ok {
				file = c
			}
			cu, err := kernels.Source(file)
			if err != nil {
				t.Errorf("%s launches %s from %s: %v", f, m[2], file, err)
				continue
			}
			declared := false
			for _, d := range declaredKernels(cu) {
				declared = declared || d == m[2]
			}
			if !declared {
				t.Errorf("%s launches %s, which kernels/%s does not declare", f, m[2], file)
			}
			found++
		}
	}
	if found < 20 {
		t.Errorf("found only %d launches; the pattern no longer matches the code", found)
	}
}

// TestIndexSummaries: the bounds kept at upload cover exactly the range
// uploaded, and the ignored label is kept apart.
func TestIndexSummaries(t *testing.T) {
	s := summarise(8, []int32{5, -100, 2, 9})
	if s.min != -100 || s.max != 9 || s.lo != 2 || s.hi != 9 || !s.others || s.n != 4 {
		t.Errorf("summarise = %+v", *s)
	}
	if s := summarise(0, []int32{-100, -100}); s.others {
		t.Errorf("all-ignored labels report other values: %+v", *s)
	}
	a := &allocation{bytes: 64, known: summarise(8, []int32{1, 2, 3, 4})} // bytes 8..24
	for _, c := range []struct {
		off  int64
		n    int
		want bool
	}{{8, 4, true}, {12, 2, true}, {4, 2, false}, {16, 3, false}, {24, 1, false}} {
		tt := &Tensor{alloc: a, off: c.off, n: c.n, dt: engine.I32}
		if got := tt.summary() != nil; got != c.want {
			t.Errorf("summary of bytes [%d, %d) = %v, want %v", c.off, c.off+4*int64(c.n), got, c.want)
		}
	}
}

// TestIndexChecksNeedNoReadBack: ids the host uploaded are checked from
// what was known at upload; ids that came from a device copy are read back.
func TestIndexChecksNeedNoReadBack(t *testing.T) {
	b := newTestBackend(t)
	table, _ := b.Alloc(engine.BF16, 10, 8)
	out, _ := b.Alloc(engine.BF16, 3, 8)
	ids, _ := b.Alloc(engine.I32, 3)
	if err := b.UploadInt32(ids, []int32{1, 9, 0}); err != nil {
		t.Fatal(err)
	}
	if err := b.Embedding(out, table, ids); err != nil {
		t.Fatal(err)
	}
	if b.indexReads != 0 {
		t.Errorf("uploaded ids were read back %d times", b.indexReads)
	}
	copied, _ := b.Alloc(engine.I32, 3)
	if err := b.Copy(copied, ids); err != nil {
		t.Fatal(err)
	}
	if err := b.Embedding(out, table, copied); err != nil {
		t.Fatal(err)
	}
	if b.indexReads != 1 {
		t.Errorf("copied ids were read back %d times, want 1", b.indexReads)
	}
	// A Copy over uploaded ids forgets what the upload knew.
	bad, _ := b.Alloc(engine.I32, 3)
	b.UploadInt32(bad, []int32{0, 10, 0})
	if err := b.Copy(ids, bad); err != nil {
		t.Fatal(err)
	}
	if err := b.Embedding(out, table, ids); err == nil || !strings.Contains(err.Error(), "ids[1] = 10") {
		t.Errorf("Embedding after copying a bad id over checked ids: %v", err)
	}
}

// TestDequantizeNF4MatchesCPU expands random NF4 words on both backends;
// both multiply the same float32 level by the same float32 scale, so the
// results must be equal bit for bit (after the same bf16 rounding).
func TestDequantizeNF4MatchesCPU(t *testing.T) {
	b := newTestBackend(t)
	type dequantizer interface {
		DequantizeNF4(out, packed, absmax engine.Tensor) error
	}
	ref, ok := any(cpu.New()).(dequantizer)
	if !ok {
		t.Skip("engine/cpu has no DequantizeNF4 to compare with")
	}
	rng := rand.New(rand.NewPCG(5, 6))
	const rows, cols = 24, 128
	n := rows * cols
	words := make([]int32, n/8)
	for i := range words {
		words[i] = int32(rng.Uint32())
	}
	scales := make([]float32, n/nf4Block)
	for i := range scales {
		scales[i] = float32(rng.ExpFloat64())
	}
	for _, odt := range []engine.DType{engine.F32, engine.BF16} {
		t.Run(odt.String(), func(t *testing.T) {
			var got, want []float32
			for _, be := range []engine.Backend{b, ref.(engine.Backend)} {
				out, _ := be.Alloc(odt, rows, cols)
				packed, _ := be.Alloc(engine.I32, n/8)
				absmax, _ := be.Alloc(engine.F32, n/nf4Block)
				if err := be.UploadInt32(packed, words); err != nil {
					t.Fatal(err)
				}
				if err := be.Upload(absmax, scales); err != nil {
					t.Fatal(err)
				}
				if err := be.(dequantizer).DequantizeNF4(out, packed, absmax); err != nil {
					t.Fatalf("%s: %v", be.Name(), err)
				}
				vals := make([]float32, n)
				if err := be.Download(out, vals); err != nil {
					t.Fatal(err)
				}
				if be == engine.Backend(b) {
					got = vals
				} else {
					want = vals
				}
				be.Free(out)
				be.Free(packed)
				be.Free(absmax)
			}
			for i := range got {
				if got[i] != want[i] {
					t.Fatalf("element %d: cuda %g, cpu %g", i, got[i], want[i])
				}
			}
		})
	}
}

// TestTensorCoreAttentionInstantiated: every head dim that attention.go
// sends to the tensor-core kernels has its kernels instantiated in
// kernels/attention.cu (launched by names built at run time, which
// TestLaunchedKernelsExist cannot see).
func TestTensorCoreAttentionInstantiated(t *testing.T) {
	cu, err := kernels.Source("attention.cu")
	if err != nil {
		t.Fatal(err)
	}
	declared := map[string]bool{}
	for _, name := range declaredKernels(cu) {
		declared[name] = true
	}
	for d := range attnTCHeadDims {
		kvNames := []string{"attention_backward_dkv_tc_d%d"}
		if d > attnTCSplitDim {
			kvNames = []string{"attention_backward_dk_tc_d%d", "attention_backward_dv_tc_d%d"}
		}
		for _, n := range append([]string{"attention_forward_tc_d%d", "attention_backward_dq_tc_d%d"}, kvNames...) {
			if !declared[fmt.Sprintf(n, d)] {
				t.Errorf("head dim %d takes the tensor-core kernels, but kernels/attention.cu has no %s", d, fmt.Sprintf(n, d))
			}
		}
		if want, rule := attnTCBwdTile(d), map[bool]int{true: 64, false: 32}[d <= 64]; d <= 128 && want != rule || d > 128 && want != 16 {
			t.Errorf("head dim %d: backward tile %d disagrees with ATTN_BWD_TILE", d, want)
		}
		if keys := attnFwdKeys(d); (d <= 128) != (keys == 64) {
			t.Errorf("head dim %d: forward key tile %d disagrees with ATTN_FWD_BN", d, keys)
		}
		if rows := attnFwdRows(d); (d <= 64) != (rows == 128) {
			t.Errorf("head dim %d: forward block of %d rows disagrees with ATTN_FWD_MT", d, rows)
		}
		// Every kernel must fit the 99 KB a block may have on sm_86/89/120.
		for _, k := range []string{"forward", "dq", "dkv", "dk", "dv"} {
			if (k == "dkv") == (d > attnTCSplitDim) {
				continue
			}
			if smem := attnTCSmem(k, d); smem > 99<<10 {
				t.Errorf("head dim %d: %s kernel needs %d bytes of shared memory, over 99 KB", d, k, smem)
			}
		}
	}
	// attention.go mirrors these rules in attnTCBwdTile, attnFwdKeys and attnFwdRows.
	for _, rule := range []string{"#define ATTN_BWD_TILE(D) ((D) <= 64 ? 64 : (D) <= 128 ? 32 : 16)",
		"#define ATTN_FWD_BN(D) ((D) <= 128 ? 64 : 32)", "#define ATTN_FWD_MT(D) ((D) <= 64 ? 2 : 1)",
		"constexpr bool PAD = D > 128;"} {
		if !strings.Contains(cu, rule) {
			t.Errorf("kernels/attention.cu no longer says %q: update attention.go's block sizes with it", rule)
		}
	}
	for _, name := range []string{"attention_forward_tc_d", "attention_backward_dq_tc_d", "attention_backward_dkv_tc_d",
		"attention_backward_dk_tc_d", "attention_backward_dv_tc_d"} {
		if !strings.Contains(cu, name+"##D(") {
			t.Errorf("kernels/attention.cu does not define %s<D> in ATTN_TC_FWD_DQ, ATTN_TC_DKV or ATTN_TC_DK_DV", name)
		}
	}
}

// TestHopperAttentionInstantiated: every head dim attention.go sends to
// the Hopper forward has its kernel in kernels/attention_hopper.cu, the
// block sizes agree, its shared memory fits an H100 block (227 KB), and
// only that file is compiled for sm_90a, and only on sm_90 devices.
func TestHopperAttentionInstantiated(t *testing.T) {
	cu, err := kernels.Source(attnHopperFile)
	if err != nil {
		t.Fatal(err)
	}
	declared := map[string]bool{}
	for _, name := range declaredKernels(cu) {
		declared[name] = true
	}
	for d := range attnHopperHeadDims {
		for _, kind := range []string{"forward", "backward_dq", "backward_dkv"} {
			if name := fmt.Sprintf("attention_%s_hopper_d%d", kind, d); !declared[name] {
				t.Errorf("head dim %d takes the Hopper kernels, but kernels/%s has no %s", d, attnHopperFile, name)
			}
		}
		for _, overlap := range []string{"", "HOP_FWD_OVERLAP=1"} {
			t.Setenv("WHET_NVRTC_DEFINES", overlap)
			if hopperOverlap() != (overlap != "") {
				t.Errorf("WHET_NVRTC_DEFINES=%q: hopperOverlap() = %v", overlap, hopperOverlap())
			}
			for _, k := range []string{"forward", "dq", "dkv"} {
				if smem := attnHopperSmem(k, d); smem > 227<<10 {
					t.Errorf("head dim %d (defines %q): the Hopper %s kernel needs %d bytes of shared memory, over 227 KB", d, overlap, k, smem)
				}
			}
		}
		if !attnTCHeadDims[d] {
			t.Errorf("head dim %d has a Hopper forward but no mma.sync kernels to fall back on", d)
		}
	}
	for _, rule := range []string{fmt.Sprintf("#define HOP_BM %d", attnHopperRows), fmt.Sprintf("#define HOP_BN %d", attnHopperRows),
		fmt.Sprintf("#define HOP_BT %d", attnHopperTile), "#if HOP_FWD_OVERLAP", "(j % 3)"} {
		if !strings.Contains(cu, rule) {
			t.Errorf("kernels/%s no longer says %q: update attnHopperRows and attnHopperSmem", attnHopperFile, rule)
		}
	}
	for _, c := range []struct{ arch, file, want string }{
		{"sm_90", attnHopperFile, "sm_90a"}, {"sm_90", "attention.cu", "sm_90"},
		{"sm_80", attnHopperFile, "sm_80"}, {"sm_100", attnHopperFile, "sm_100"}, {"sm_120", attnHopperFile, "sm_120"},
	} {
		if got := (&Backend{arch: c.arch}).fileArch(c.file); got != c.want {
			t.Errorf("on %s, kernels/%s compiles for %s, want %s", c.arch, c.file, got, c.want)
		}
	}
	off := &Backend{arch: "sm_90", attnHopper: false}
	if off.useHopperAttention(128, 4096, nil) {
		t.Error("the Hopper forward is used without being asked for")
	}
	for _, b := range []*Backend{{arch: "sm_80", attnHopper: true}, {arch: "sm_90", attnHopper: true, attnHopperOff: "no"}} {
		if b.useHopperAttention(128, 4096, nil) {
			t.Errorf("the Hopper forward is used on %s (switched off: %q)", b.arch, b.attnHopperOff)
		}
	}
	if (&Backend{arch: "sm_90", attnHopper: true}).useHopperAttention(80, 4096, nil) {
		t.Error("the Hopper forward is used at head dim 80, which has no kernel")
	}
	if !(&Backend{arch: "sm_90", attnHopper: true}).useHopperAttention(128, 4096, nil) {
		t.Error("the Hopper forward is not used at head dim 128 on sm_90 when asked for")
	}
}

// ErrNoGPU is engine.ErrNoDevice too: "auto" falls back to the CPU without
// a warning on machines that have no NVIDIA GPU.
func TestErrNoGPUIsNoDevice(t *testing.T) {
	err := fmt.Errorf("cuda: %w: libcuda.so.1 not found", ErrNoGPU)
	if !errors.Is(err, engine.ErrNoDevice) || !errors.Is(err, ErrNoGPU) {
		t.Errorf("%v: errors.Is ErrNoDevice %v, ErrNoGPU %v; want both", err, errors.Is(err, engine.ErrNoDevice), errors.Is(err, ErrNoGPU))
	}
	if errors.Is(errors.New("cuda: libnvrtc.so.13 missing"), ErrNoGPU) {
		t.Error("an unrelated error matched ErrNoGPU")
	}
}
