package cuda

import (
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"

	"whet/engine"
	"whet/kernels"
)

// fusedBackwardExpected reports whether an attention backward at head dim
// d with act inputs must take the fused Hopper kernel on b: the Hopper
// kernels on and not switched off, an sm_90 card, a head dim they have, bf16,
// and the fused kernel compiled and asked for without Deterministic.
func fusedBackwardExpected(b *Backend, act engine.DType, d int) bool {
	return act == engine.BF16 && b.attnHopper && b.arch == "sm_90" && attnHopperHeadDims[d] && b.useFusedBackward()
}

// checkFusedBackwardRan fails the test if the backward just run should
// have taken the fused Hopper kernel (WHET_NVRTC_DEFINES=HOP_BWD_FUSED=1)
// but did not (before: b.attnBwdFusedRuns before it), so that a silent fall
// back to the split kernels cannot pass for the fused kernel's success.
func checkFusedBackwardRan(t *testing.T, b *Backend, act engine.DType, d, before int) {
	t.Helper()
	if !fusedBackwardExpected(b, act, d) {
		return
	}
	if b.attnHopperOff != "" {
		t.Fatalf("the fused Hopper backward was asked for (%s) but the Hopper kernels were switched off: %s", AttnBwdFusedDefine, b.attnHopperOff)
	}
	if b.attnBwdFusedRuns == before {
		t.Fatalf("the fused Hopper backward was asked for (%s) but this backward did not run it", AttnBwdFusedDefine)
	}
	t.Logf("backward on the fused Hopper kernel (attention_backward_fused_hopper_d%d)", d)
}

// fusedBackends opens the conformance suite's backends and, after it,
// fails if the fused Hopper backward was asked for on an sm_90 card but no
// backward took it (or the Hopper kernels were switched off).
type fusedBackends struct {
	mu   sync.Mutex
	made []*Backend
}

func (f *fusedBackends) open() (engine.Backend, error) {
	b, err := New(Options{CacheDir: testCacheDir})
	if err != nil {
		return nil, err
	}
	f.mu.Lock()
	f.made = append(f.made, b)
	f.mu.Unlock()
	return b, nil
}

func (f *fusedBackends) check(t *testing.T) {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	asked, runs, hopperRuns := false, 0, 0
	for _, b := range f.made {
		if fusedBackwardExpected(b, engine.BF16, 64) {
			asked = true
			if b.attnHopperOff != "" {
				t.Errorf("the fused Hopper backward was asked for (%s) but the Hopper kernels were switched off: %s", AttnBwdFusedDefine, b.attnHopperOff)
			}
		}
		runs += b.attnBwdFusedRuns
		hopperRuns += b.attnBwdHopperRuns
	}
	switch {
	case asked && hopperRuns == 0:
		// A -run filter that leaves out the attention cases (the GPU batches
		// run the suite for one op at a time): nothing to hold the switch to.
		t.Logf("no attention backward of the suite took the Hopper kernels; the fused backward's use is not checked")
	case asked && runs == 0:
		t.Errorf("the fused Hopper backward was asked for (%s) but no attention backward of the suite ran it", AttnBwdFusedDefine)
	case asked:
		t.Logf("%d attention backwards of the suite ran on the fused Hopper kernel", runs)
	}
}

// TestFusedBackwardSelection: the fused Hopper backward is taken by
// default (attnBwdFusedDefault) or when WHET_NVRTC_DEFINES names
// AttnBwdFusedDefine, not with AttnBwdFusedEnv=0 alone, and never when
// bit-equal reruns are asked for (Options.Deterministic, DeterministicEnv,
// SetDeterministic), and only where the Hopper kernels run.
func TestFusedBackwardSelection(t *testing.T) {
	// The forward's defaults are another test's (TestAttnFwdWSDefault).
	t.Setenv(AttnFwdWSEnv, "0")
	// With the default switched off, WHET_NVRTC_DEFINES alone decides.
	for _, c := range []struct {
		defines string
		want    bool
	}{
		{"", false}, {"HOP_BWD_FUSED=0", false}, {"HOP_BWD_FUSED=1", true}, {"HOP_FWD_OVERLAP=1, HOP_BWD_FUSED=1", true},
		{"HOP_BWD_FUSED=10", false}, {"XHOP_BWD_FUSED=1", false},
	} {
		t.Setenv(AttnBwdFusedEnv, "0")
		t.Setenv("WHET_NVRTC_DEFINES", c.defines)
		if got := nvrtcDefined(AttnBwdFusedDefine); got != c.want {
			t.Errorf("%s=0 WHET_NVRTC_DEFINES=%q: nvrtcDefined(%q) = %v, want %v", AttnBwdFusedEnv, c.defines, AttnBwdFusedDefine, got, c.want)
		}
	}
	// AttnBwdFusedEnv: 1, or unset (the default), adds attnBwdFusedDefines,
	// except the names WHET_NVRTC_DEFINES sets; 0 adds nothing.
	for _, c := range []struct {
		env, defines string
		want         []string
	}{
		{"", "", attnBwdFusedDefines},
		{"", "HOP_BWD_FUSED=0", append([]string{"HOP_BWD_FUSED=0"}, attnBwdFusedDefines[1:]...)},
		{"", "HOP_FWD_OVERLAP=1", append([]string{"HOP_FWD_OVERLAP=1"}, attnBwdFusedDefines...)},
		{"1", "", attnBwdFusedDefines},
		{"0", "", nil},
		{"0", "HOP_BWD_FUSED=1", []string{"HOP_BWD_FUSED=1"}},
		{"1", "HOP_BWD_FUSED=0", append([]string{"HOP_BWD_FUSED=0"}, attnBwdFusedDefines[1:]...)},
		{"1", "HOP_BWD_DQT=0, HOP_FWD_OVERLAP=1", []string{"HOP_BWD_DQT=0", "HOP_FWD_OVERLAP=1", "HOP_BWD_FUSED=1", "HOP_BWD_OVL=2", "HOP_BWD_DESC=1"}},
	} {
		t.Setenv(AttnBwdFusedEnv, c.env)
		t.Setenv("WHET_NVRTC_DEFINES", c.defines)
		if got := nvrtcDefines(); !slices.Equal(got, c.want) {
			t.Errorf("%s=%s WHET_NVRTC_DEFINES=%q: nvrtcDefines() = %q, want %q", AttnBwdFusedEnv, c.env, c.defines, got, c.want)
		}
		if got, want := nvrtcDefined(AttnBwdFusedDefine), slices.Contains(c.want, AttnBwdFusedDefine); got != want {
			t.Errorf("%s=%s WHET_NVRTC_DEFINES=%q: nvrtcDefined(%q) = %v, want %v", AttnBwdFusedEnv, c.env, c.defines, AttnBwdFusedDefine, got, want)
		}
		opts := compileOptions("sm_90a")
		for _, d := range c.want {
			if !slices.Contains(opts, "-D"+d) {
				t.Errorf("%s=%s WHET_NVRTC_DEFINES=%q: compileOptions %q lacks -D%s", AttnBwdFusedEnv, c.env, c.defines, opts, d)
			}
		}
	}
	// New sets attnBwdFused from nvrtcDefined(AttnBwdFusedDefine): on by
	// default, off with AttnBwdFusedEnv=0.
	t.Setenv("WHET_NVRTC_DEFINES", "")
	t.Setenv(DeterministicEnv, "")
	for _, c := range []struct {
		env  string
		want bool
	}{{"", true}, {"1", true}, {"0", false}} {
		t.Setenv(AttnBwdFusedEnv, c.env)
		b := &Backend{arch: "sm_90", attnHopper: true, attnBwdFused: nvrtcDefined(AttnBwdFusedDefine)}
		if b.useFusedBackward() != c.want {
			t.Errorf("%s=%q: the fused backward is used: %v, want %v", AttnBwdFusedEnv, c.env, b.useFusedBackward(), c.want)
		}
	}
	t.Setenv(AttnBwdFusedEnv, "0")
	b := &Backend{arch: "sm_90", attnHopper: true}
	if b.useFusedBackward() {
		t.Error("the fused backward is used though not compiled in")
	}
	b.attnBwdFused = true
	if !b.useFusedBackward() {
		t.Error("the fused backward is not used when asked for")
	}
	b.SetDeterministic(true)
	if b.useFusedBackward() || !b.Deterministic() {
		t.Error("the fused backward is used after SetDeterministic(true)")
	}
	b.SetDeterministic(false)
	if !b.useFusedBackward() || b.Deterministic() {
		t.Error("SetDeterministic(false) did not give the fused backward back")
	}
	t.Setenv(DeterministicEnv, "1")
	b.SetDeterministic(false)
	if b.useFusedBackward() {
		t.Errorf("%s=1 did not keep the deterministic kernels", DeterministicEnv)
	}
	if (&Backend{arch: "sm_90", attnHopper: true, attnBwdFused: true, deterministic: true}).useFusedBackward() {
		t.Error("Options.Deterministic does not keep the split backward")
	}
	// The fused kernel runs only where the Hopper kernels do.
	for _, b := range []*Backend{{arch: "sm_80", attnHopper: true, attnBwdFused: true}, {arch: "sm_90", attnHopper: false, attnBwdFused: true}} {
		if fusedBackwardExpected(b, engine.BF16, 64) {
			t.Errorf("the fused backward is expected on %s with the Hopper kernels %v", b.arch, b.attnHopper)
		}
	}
	if fusedBackwardExpected(&Backend{arch: "sm_90", attnHopper: true, attnBwdFused: true}, engine.BF16, 80) {
		t.Error("the fused backward is expected at head dim 80, which has no Hopper kernel")
	}
}

// TestFusedBackwardLayout: attnHopperFusedSmem follows the shared-memory
// layout of kernels/attention_hopper.cu's fused backward and fits an sm_90
// block (227 KiB), and the file declares the kernels fusedBackward launches.
func TestFusedBackwardLayout(t *testing.T) {
	src, err := kernels.Source(attnHopperFile)
	if err != nil {
		t.Fatal(err)
	}
	for _, rule := range []string{
		"KBYTES = BN * D * 2, QBYTES = BQ * D * 2, DSBYTES = BQ * BN * 2",
		"Ks = base, Vs = base + KBYTES, Qs = Vs + KBYTES, dOs = Qs + 2 * QBYTES",
		"dSs = dOs + 2 * QBYTES",
		"lseS = dSs + DSBYTES, deltaS = lseS + 2 * BQ * 4",
		"#define HOP_BT 64", "#define HOP_BM 128",
		"const unsigned int dQs = deltaS + 2 * BQ * 4;", fmt.Sprintf("#define HOP_DQ_ROW %d", attnDQRow),
		"dQs + wg * (BQ * HOP_DQ_ROW)", "const unsigned int xch = dQs + 2 * BQ * HOP_DQ_ROW;",
		"slot + wg * 8192 + ((dn & 3) * 4 + e) * 512",
	} {
		if !strings.Contains(src, rule) {
			t.Errorf("kernels/%s no longer says %q: update attnHopperFusedSmem", attnHopperFile, rule)
		}
	}
	// The default (attnBwdFusedDefines, HOP_BWD_DQT=1): the tiled dq
	// staging in place of the dQ rows and the exchange area.
	for d, want := range map[int]int{64: 1024 + 2*512*64 + 16384 + 1024 + attnDQTStaging, 128: 1024 + 2*512*128 + 16384 + 1024 + attnDQTStaging} {
		if got := attnHopperFusedSmem(d); got != want {
			t.Errorf("attnHopperFusedSmem(%d) = %d, want %d", d, got, want)
		}
		if got := attnHopperFusedSmem(d); got > 227*1024 {
			t.Errorf("attnHopperFusedSmem(%d) = %d bytes, more than an sm_90 block may have", d, got)
		}
	}
	// The earlier default (paired fp32 reductions, HOP_BWD_RED_V2): dQ rows
	// and the exchange area.
	t.Setenv(AttnBwdFusedEnv, "0")
	t.Setenv("WHET_NVRTC_DEFINES", "HOP_BWD_FUSED=1,HOP_BWD_ZINIT=1,HOP_BWD_RED_V2=1")
	for d, want := range map[int]int{64: 1024 + 2*512*64 + 16384 + 1024 + 2*64*272 + 16384, 128: 1024 + 2*512*128 + 16384 + 1024 + 2*64*272 + 16384} {
		if got := attnHopperFusedSmem(d); got != want {
			t.Errorf("with HOP_BWD_RED_V2 attnHopperFusedSmem(%d) = %d, want %d", d, got, want)
		}
	}
	// HOP_BWD_Q128: the d64 kernel's Q/dO tiles, dS, lse/delta and dQ staging
	// regions are sized for 128 queries (BQ = 2 * HOP_BT); d128 is unchanged.
	t.Setenv(AttnBwdFusedEnv, "0")
	t.Setenv("WHET_NVRTC_DEFINES", "HOP_BWD_FUSED=1,"+attnBwdQ128Define)
	if got, want := attnHopperFusedSmem(64), 1024+2*(256+512)*64+2*128*128+2*2*128*4+2*128*272+16384; got != want || got > 227*1024 {
		t.Errorf("with %s attnHopperFusedSmem(64) = %d, want %d (at most %d)", attnBwdQ128Define, got, want, 227*1024)
	}
	if got, want := attnHopperFusedSmem(128), 1024+2*512*128+16384+1024+2*64*272+16384; got != want {
		t.Errorf("with %s attnHopperFusedSmem(128) = %d, want %d", attnBwdQ128Define, got, want)
	}
	for _, rule := range []string{"BQ = splitM ? 2 * HOP_BT : HOP_BT", "constexpr bool splitM = D == 64 && HOP_BWD_Q128;"} {
		if !strings.Contains(src, rule) {
			t.Errorf("kernels/%s no longer says %q: update attnHopperFusedSmem", attnHopperFile, rule)
		}
	}
	// HOP_BWD_DQT: 64 KB of dQ staging after lse and delta in place of the
	// other regions, and a dq accumulator of 64-row tiles (T padded).
	for _, rule := range []string{
		"const unsigned int dQst = deltaS + 2 * BQ * 4; // HOP_BWD_DQT staging, 64 KB",
		"stg = dQst + (unsigned int)wg * 16384u + (unsigned int)(warp & 3) * 4096u + (unsigned int)lane * 16u;",
		"const int nRT = (T + 63) / 64;",
	} {
		if !strings.Contains(src, rule) {
			t.Errorf("kernels/%s no longer says %q: update attnHopperFusedSmem or attnFusedAccFloats", attnHopperFile, rule)
		}
	}
	if got, want := attnFusedAccFloats(100, 3, 64), int64(100*3*64); got != want {
		t.Errorf("attnFusedAccFloats(100, 3, 64) = %d, want %d", got, want)
	}
	t.Setenv("WHET_NVRTC_DEFINES", "HOP_BWD_FUSED=1,HOP_BWD_OVL=2,"+attnBwdDQTDefine)
	for d, want := range map[int]int{64: 1024 + 2*512*64 + 16384 + 1024 + 65536, 128: 1024 + 2*512*128 + 16384 + 1024 + 65536} {
		if got := attnHopperFusedSmem(d); got != want || got > 227*1024 {
			t.Errorf("with %s attnHopperFusedSmem(%d) = %d, want %d (at most %d)", attnBwdDQTDefine, d, got, want, 227*1024)
		}
	}
	if got, want := attnFusedAccFloats(100, 3, 128), int64(128*3*128); got != want {
		t.Errorf("with %s attnFusedAccFloats(100, 3, 128) = %d, want %d", attnBwdDQTDefine, got, want)
	}
	// HOP_BWD_WG1: 64 keys and 128 threads a block, one dS panel and one
	// warpgroup's staging (none at d128, whose dq then goes by red.global),
	// small enough for two blocks an SM (2 x (size + 1 KB) <= 228 KB).
	for _, rule := range []string{
		"constexpr int NWG = HOP_BWD_NWG(D), NT = 128 * NWG;", "constexpr int BN = 64 * NWG, BQ = HOP_BT;",
		"constexpr bool dqt = HOP_BWD_DQT && !(NWG == 1 && D == 128);",
		"const unsigned int slot = stg + (unsigned int)(nred & 1) * (NWG * 16384u);",
	} {
		if !strings.Contains(src, rule) {
			t.Errorf("kernels/%s no longer says %q: update attnHopperFusedSmem or attnFusedBlock", attnHopperFile, rule)
		}
	}
	t.Setenv("WHET_NVRTC_DEFINES", "HOP_BWD_FUSED=1,HOP_BWD_OVL=2,"+attnBwdDQTDefine+","+attnBwdWG1Define)
	for d, want := range map[int]int{64: 1024 + 2*384*64 + 8192 + 1024 + 32768, 128: 1024 + 2*384*128 + 8192 + 1024} {
		if got := attnHopperFusedSmem(d); got != want || 2*(got+1024) > 228*1024 {
			t.Errorf("with %s attnHopperFusedSmem(%d) = %d, want %d (two blocks an SM)", attnBwdWG1Define, d, got, want)
		}
	}
	for _, d := range []int{64, 128} {
		if threads, keys := attnFusedBlock(d); threads != 128 || keys != 64 {
			t.Errorf("with %s attnFusedBlock(%d) = %d threads, %d keys; want 128, 64", attnBwdWG1Define, d, threads, keys)
		}
	}
	if !attnFusedDQTiled(64) || attnFusedDQTiled(128) || attnFusedAccFloats(100, 3, 128) != 100*3*128 {
		t.Errorf("with %s and %s: dq tiled at d64 only", attnBwdWG1Define, attnBwdDQTDefine)
	}
	declared := kernels.Declared(src)
	for _, k := range []string{"attention_backward_fused_hopper_d64", "attention_backward_fused_hopper_d128", "attention_dq_zero_hopper", "attention_dq_convert_hopper", "attention_dq_convert_tiled_hopper"} {
		if !slices.Contains(declared, k) {
			t.Errorf("kernels/%s does not declare %s", attnHopperFile, k)
		}
	}
	if off := attnFusedAccOffset(4 * 3 * 100); off%256 != 0 || off < 1200 || off >= 1200+256 {
		t.Errorf("attnFusedAccOffset(1200) = %d, want the next multiple of 256", off)
	}
}

// TestFusedBackwardWG1D64: attnBwdWG1D64Define (HOP_BWD_WG1_D64=1) gives
// one-warpgroup blocks at head dim 64 only. Added to the default set
// (attnBwdFusedDefines), the d64 backward launches as with HOP_BWD_WG1=1
// (the set tools/gpu/attn-bwd2 measured at 216.3 TFLOP/s on an H100) and
// the d128 one as the default's (229.7): threads and keys a block, grid,
// shared memory, dq layout and the plan's scratch. The kernel decides the
// warpgroups a block in one place, HOP_BWD_NWG(D), which the launch bounds
// and every shape of attn_bwd_fused_ovl follow.
func TestFusedBackwardWG1D64(t *testing.T) {
	src := hopperSource(t)
	for _, rule := range []string{
		"#define HOP_BWD_NWG(D) (HOP_BWD_WG1 || (HOP_BWD_WG1_D64 && (D) == 64) ? 1 : 2)",
		"#define HOP_BWD_THREADS_D64 (128 * HOP_BWD_NWG(64))",
		"#define HOP_BWD_THREADS_D128 (128 * HOP_BWD_NWG(128))",
		"__launch_bounds__(HOP_BWD_THREADS_D64, HOP_BWD_MINB64) attention_backward_fused_hopper_d64(",
		"__launch_bounds__(HOP_BWD_THREADS_D128, 1) attention_backward_fused_hopper_d128(",
		"constexpr int NWG = HOP_BWD_NWG(D), NT = 128 * NWG;",
		"constexpr int BN = 64 * NWG, BQ = HOP_BT;",
		"constexpr bool splitN = D == 128 && NWG == 2;",
		"constexpr bool dqt = HOP_BWD_DQT && !(NWG == 1 && D == 128);",
		"const unsigned int slot = stg + (unsigned int)(nred & 1) * (NWG * 16384u);",
	} {
		if !strings.Contains(src, rule) {
			t.Errorf("kernels/%s no longer says %q: update attnFusedBlock, attnHopperFusedSmem and engine.AttnKernels.OneWarpgroup", attnHopperFile, rule)
		}
	}
	// No other line of code reads the two defines (an #if HOP_BWD_WG1 would
	// give the d64-only build the two-warpgroup code at d64, or the
	// one-warpgroup code at d128).
	allowed := map[string]bool{
		"#ifndef HOP_BWD_WG1": true, "#define HOP_BWD_WG1 0": true, "#ifndef HOP_BWD_WG1_D64": true, "#define HOP_BWD_WG1_D64 0": true,
		"#define HOP_BWD_NWG(D) (HOP_BWD_WG1 || (HOP_BWD_WG1_D64 && (D) == 64) ? 1 : 2)": true,
		"#if (HOP_BWD_WG1 || HOP_BWD_WG1_D64) && !HOP_BWD_OVL":                           true,
		`#error "HOP_BWD_WG1 and HOP_BWD_WG1_D64 need HOP_BWD_OVL"`:                      true,
	}
	for i, line := range strings.Split(src, "\n") {
		code, _, _ := strings.Cut(line, "//")
		if code = strings.TrimSpace(code); strings.Contains(code, "HOP_BWD_WG1") && !allowed[code] {
			t.Errorf("kernels/%s:%d reads HOP_BWD_WG1 outside HOP_BWD_NWG: %q", attnHopperFile, i+1, code)
		}
	}
	// HOP_BWD_NWG's table, which engine.AttnKernels.OneWarpgroup keeps.
	for _, c := range []struct {
		wg1, wg1d64   bool
		one64, one128 bool
	}{{false, false, false, false}, {true, false, true, true}, {false, true, true, false}, {true, true, true, true}} {
		k := engine.AttnKernels{WG1: c.wg1, WG1D64: c.wg1d64}
		if k.OneWarpgroup(64) != c.one64 || k.OneWarpgroup(128) != c.one128 {
			t.Errorf("WG1 %v, WG1D64 %v: one warpgroup at d64 %v, d128 %v; want %v, %v", c.wg1, c.wg1d64, k.OneWarpgroup(64), k.OneWarpgroup(128), c.one64, c.one128)
		}
	}

	// What the backend launches and plans with under each set.
	type config struct {
		grid, block  dim3
		smem         int
		tiled        bool
		acc, scratch int64
		kernels      engine.AttnKernels
	}
	const T, H, KVH = 4001, 32, 8
	launch := func(defines string, d int) config {
		t.Helper()
		t.Setenv(AttnBwdFusedEnv, "0")
		t.Setenv("WHET_NVRTC_DEFINES", defines)
		grid, block, err := attnFusedLaunch(T, KVH, d)
		if err != nil {
			t.Fatalf("%s: d%d: %v", defines, d, err)
		}
		k := AttnKernelsFor("sm_90")
		return config{grid, block, attnHopperFusedSmem(d), attnFusedDQTiled(d), attnFusedAccFloats(T, H, d), k.BackwardScratch(T, H, d, engine.BF16), k}
	}
	def := strings.Join(attnBwdFusedDefines, ",")
	for _, d := range []int{64, 128} {
		base, wg1, d64 := launch(def, d), launch(def+","+attnBwdWG1Define, d), launch(def+","+attnBwdWG1D64Define, d)
		if !d64.kernels.WG1D64 || d64.kernels.WG1 || !d64.kernels.TiledDQ {
			t.Errorf("with %s: AttnKernelsFor = %+v, want WG1D64 and TiledDQ", attnBwdWG1D64Define, d64.kernels)
		}
		// The plan's scratch is the backend's: delta, then the accumulator.
		if want := attnFusedAccOffset(int64(H)*T*4) + d64.acc*4; d64.scratch != want {
			t.Errorf("with %s at d%d: the plan's scratch %d bytes, the backend's %d", attnBwdWG1D64Define, d, d64.scratch, want)
		}
		d64.kernels, wg1.kernels, base.kernels = engine.AttnKernels{}, engine.AttnKernels{}, engine.AttnKernels{}
		same := base
		if d == 64 {
			same = wg1
		}
		if d64 != same {
			t.Errorf("with %s at d%d: %+v, want %+v (HOP_BWD_WG1's at d64, the default's at d128)", attnBwdWG1D64Define, d, d64, same)
		}
	}
	// The numbers: d64 128 threads, 64 keys a block (63 key blocks of 4001
	// tokens), one dS panel and one warpgroup's dq staging, small enough for
	// two blocks an SM; d128 256 threads, 128 keys (32 key blocks), the
	// default's 64 KB of staging; both tiled (T padded to 4032).
	for _, c := range []struct {
		d, threads, blocks, smem int
	}{{64, 128, 63, 1024 + 2*384*64 + 8192 + 1024 + attnDQTStaging/2}, {128, 256, 32, 1024 + 2*512*128 + 16384 + 1024 + attnDQTStaging}} {
		got := launch(def+","+attnBwdWG1D64Define, c.d)
		if got.block != (dim3{c.threads, 1, 1}) || got.grid != (dim3{KVH, c.blocks, 1}) || got.smem != c.smem || !got.tiled || got.acc != int64(4032*H*c.d) {
			t.Errorf("with %s at d%d: %+v; want %d threads, grid (%d, %d), %d bytes of shared memory, tiled accumulator of %d floats",
				attnBwdWG1D64Define, c.d, got, c.threads, KVH, c.blocks, c.smem, 4032*H*c.d)
		}
		if c.d == 64 && 2*(got.smem+1024) > 228*1024 {
			t.Errorf("with %s the d64 block takes %d bytes of shared memory: two do not fit an SM", attnBwdWG1D64Define, got.smem)
		}
	}
	// A grid of more than 65535 key blocks is refused: at d64 the 64-key
	// blocks halve the longest sequence, at d128 it stays the default's.
	t.Setenv("WHET_NVRTC_DEFINES", def+","+attnBwdWG1D64Define)
	if _, _, err := attnFusedLaunch(65535*64+1, KVH, 64); err == nil || !strings.Contains(err.Error(), "65535") {
		t.Errorf("d64 over %d tokens: error %v, want one naming the grid's 65535", 65535*64+1, err)
	}
	if _, _, err := attnFusedLaunch(65535*64+1, KVH, 128); err != nil {
		t.Errorf("d128 over %d tokens: %v", 65535*64+1, err)
	}
}

// TestAttentionBackwardDeterministic (GPU): with Deterministic on, two
// backwards over the same inputs at head dims 64 and 128 give bit-equal dq,
// dk and dv and never take the fused kernel, even when WHET_NVRTC_DEFINES
// compiles it in. When it does, the fused backward then runs twice on the
// same inputs: it must run (checkFusedBackwardRan), agree with the
// deterministic result to bf16 tolerance, and the test logs whether its
// reruns were bit-equal (they need not be: dq is summed by atomics).
func TestAttentionBackwardDeterministic(t *testing.T) {
	b := newTestBackend(t)
	rng := rand.New(rand.NewPCG(3, 9))
	for _, d := range []int{64, 128} {
		t.Run(map[int]string{64: "d64", 128: "d128"}[d], func(t *testing.T) {
			starts := []int32{0, 600, 601, 1024}
			T, h, kvh := 1024, 8, 2
			p := engine.AttnParams{NHeads: h, NKVHeads: kvh, HeadDim: d, Scale: float32(1 / math.Sqrt(float64(d)))}
			alloc := func(dt engine.DType, shape ...int) engine.Tensor {
				x, err := b.Alloc(dt, shape...)
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { b.Free(x) })
				return x
			}
			in := map[string]engine.Tensor{}
			for name, n := range map[string]int{"q": h, "k": kvh, "v": kvh, "dOut": h} {
				in[name] = alloc(engine.BF16, T, n*d)
				if err := b.Upload(in[name], randVals(rng, T*n*d)); err != nil {
					t.Fatal(err)
				}
			}
			out, lse := alloc(engine.BF16, T, h*d), alloc(engine.F32, h, T)
			sd := alloc(engine.I32, len(starts))
			if err := b.UploadInt32(sd, starts); err != nil {
				t.Fatal(err)
			}
			seqs := engine.SeqLayout{Starts: starts, MaxLen: 600, Dev: sd}
			if err := b.Attention(out, lse, in["q"], in["k"], in["v"], seqs, p); err != nil {
				t.Fatal(err)
			}
			grads := func() map[string][]float32 {
				g := map[string]engine.Tensor{"dq": alloc(engine.BF16, T, h*d), "dk": alloc(engine.BF16, T, kvh*d), "dv": alloc(engine.BF16, T, kvh*d)}
				if err := b.AttentionBackward(g["dq"], g["dk"], g["dv"], in["dOut"], in["q"], in["k"], in["v"], out, lse, seqs, p); err != nil {
					t.Fatal(err)
				}
				host := map[string][]float32{}
				for name, x := range g {
					host[name] = make([]float32, x.Len())
					if err := b.Download(x, host[name]); err != nil {
						t.Fatal(err)
					}
				}
				return host
			}
			fusedAsked := fusedBackwardExpected(b, engine.BF16, d)
			b.SetDeterministic(true)
			before := b.attnBwdFusedRuns
			first, second := grads(), grads()
			if b.attnBwdFusedRuns != before {
				t.Fatal("with Deterministic on, the attention backward took the fused kernel")
			}
			for _, name := range []string{"dq", "dk", "dv"} {
				for i := range first[name] {
					if math.Float32bits(first[name][i]) != math.Float32bits(second[name][i]) {
						t.Fatalf("deterministic backward: %s[%d] is %g, then %g on a rerun", name, i, first[name][i], second[name][i])
					}
				}
			}
			t.Logf("deterministic backward (Hopper kernels: %v): two runs bit-equal", b.useHopperAttention(d, T, nil))
			b.SetDeterministic(false)
			if !fusedAsked {
				return
			}
			before = b.attnBwdFusedRuns
			f1 := grads()
			checkFusedBackwardRan(t, b, engine.BF16, d, before)
			f2 := grads()
			for _, name := range []string{"dq", "dk", "dv"} {
				var worst, scale, rerun float64
				for i, want := range first[name] {
					if math.IsNaN(float64(f1[name][i])) {
						t.Fatalf("fused backward: %s[%d] is NaN", name, i)
					}
					worst = max(worst, math.Abs(float64(f1[name][i]-want)))
					scale = max(scale, math.Abs(float64(want)))
					rerun = max(rerun, math.Abs(float64(f1[name][i]-f2[name][i])))
				}
				if worst > 3e-2*scale+1e-3 {
					t.Errorf("fused backward: %s differs from the deterministic one by up to %g (scale %g)", name, worst, scale)
				}
				t.Logf("fused backward: %s within %g of the deterministic one (scale %g); two fused runs differ by up to %g", name, worst, scale, rerun)
			}
		})
	}
}

// fusedCompileVariants are the define sets TestHopperAttentionFusedCompiles
// compiles. strict: ptxas must not serialise the fused kernels' wgmma
// (the sets with HOP_BWD_ZINIT, meant to have no accumulator written
// outside a wgmma in a pipeline stage); the others only log it (the first
// GPU run found C7515 in attention_backward_fused_hopper_d128 for them).
var fusedCompileVariants = []struct {
	defines string
	strict  bool
}{
	{"HOP_BWD_FUSED=1", false},
	{"HOP_BWD_FUSED=1,HOP_BWD_STS=1", false},
	{"HOP_BWD_FUSED=1,HOP_BWD_RED_V2=1", false},
	{"HOP_BWD_FUSED=1,HOP_BWD_DQ_BULK=1", false},
	{"HOP_BWD_FUSED=1,HOP_BWD_DQ_XCHG=1,HOP_BWD_DQ_BULK=1", false},
	{"HOP_BWD_FUSED=1,HOP_BWD_ZINIT=1", true},
	{"HOP_BWD_FUSED=1,HOP_BWD_ZINIT=1,HOP_BWD_RED_V2=1", true},
	{"HOP_BWD_FUSED=1,HOP_BWD_ZINIT=1,HOP_BWD_RED_V2=1,HOP_BWD_DKV_WAIT=1", true},
	{"HOP_BWD_FUSED=1,HOP_BWD_ZINIT=1,HOP_BWD_RED_V2=1,HOP_BWD_DK_SS=1", true},
	{"HOP_BWD_FUSED=1,HOP_BWD_ZINIT=1,HOP_BWD_RED_V2=1,HOP_BWD_DK_SS=1,HOP_BWD_DKV_WAIT=1", true},
	{"HOP_BWD_FUSED=1,HOP_BWD_ZINIT=1,HOP_BWD_DQ_BULK=1", true},
	{"HOP_BWD_FUSED=1,HOP_BWD_ZINIT=1,HOP_BWD_DQ_XCHG=1,HOP_BWD_DQ_BULK=1", true},
	{"HOP_BWD_FUSED=1,HOP_BWD_ZINIT=1,HOP_BWD_DQ_XCHG=1,HOP_BWD_RED_V2=1,HOP_BWD_DK_SS=1", true},
	{"HOP_BWD_FUSED=1,HOP_BWD_ZINIT=1,HOP_BWD_RED_V4=1", true},
	{"HOP_BWD_FUSED=1,HOP_BWD_ZINIT=1,HOP_BWD_DQ_XCHG=1,HOP_BWD_RED_V4=1", true},
	{"HOP_BWD_FUSED=1,HOP_BWD_ZINIT=1,HOP_BWD_DQ_XCHG=1,HOP_BWD_RED_V4=1,HOP_BWD_DK_SS=1", true},
	{"HOP_BWD_FUSED=1,HOP_BWD_ZINIT=1,HOP_BWD_Q128=1,HOP_BWD_RED_V4=1", true},
	{"HOP_BWD_FUSED=1,HOP_BWD_ZINIT=1,HOP_BWD_Q128=1,HOP_BWD_RED_V4=1,HOP_BWD_DK_SS=1", true},
	// The default (attnBwdFusedDefines) since tools/gpu/attn-bwd2's H100 run.
	{"HOP_BWD_FUSED=1,HOP_BWD_OVL=2,HOP_BWD_DQT=1,HOP_BWD_DESC=1", true},
}

// fusedCompileSets returns the define sets TestHopperAttentionFusedCompiles
// compiles: fusedCompileVariants, or, when WHET_FUSED_COMPILE_DEFINES is
// set, its ';'-separated sets (each comma-separated NAME=VALUE, logged
// only, not strict), so that a GPU batch can compile just its variants
// (tools/gpu/attn-bwd2 and attn-bwd3 compile the HOP_BWD_OVL/_DQT/_WG1 sets this way;
// they stay out of fusedCompileVariants, which every full run of the
// package's tests compiles one after another).
func fusedCompileSets() ([]struct {
	defines string
	strict  bool
}, error) {
	env := os.Getenv("WHET_FUSED_COMPILE_DEFINES")
	if env == "" {
		return fusedCompileVariants, nil
	}
	var sets []struct {
		defines string
		strict  bool
	}
	for i, set := range strings.Split(env, ";") {
		set = strings.TrimSpace(set)
		if set == "" {
			continue
		}
		for _, d := range strings.Split(set, ",") {
			if name, _, ok := strings.Cut(d, "="); !ok || strings.TrimSpace(name) == "" {
				return nil, fmt.Errorf("WHET_FUSED_COMPILE_DEFINES: set %d (%q): %q is not NAME=VALUE", i+1, set, d)
			}
		}
		sets = append(sets, struct {
			defines string
			strict  bool
		}{set, false})
	}
	if len(sets) == 0 {
		return nil, fmt.Errorf("WHET_FUSED_COMPILE_DEFINES=%q names no define set", env)
	}
	return sets, nil
}

// ptxasNote is one of ptxas's numbered notes about a kernel: code (C7515),
// the function it names, and whether it says that wgmma are serialised.
type ptxasNote struct {
	code, kernel string
	serialized   bool
}

var ptxasNoteRE = regexp.MustCompile(`\((C\d{4})\)(.*)'(\w+)'`)

// ptxasNotes returns the numbered notes of a ptxas log that name a
// function, such as (C7515) "wgmma.mma_async instructions are serialized
// due to ... in the function 'attention_backward_fused_hopper_d128'" or
// (C7519) "warpgroup.arrive is injected ... in function '...'".
func ptxasNotes(log string) []ptxasNote {
	var notes []ptxasNote
	for _, line := range strings.Split(log, "\n") {
		if m := ptxasNoteRE.FindStringSubmatch(line); m != nil {
			notes = append(notes, ptxasNote{code: m[1], kernel: m[3], serialized: strings.Contains(m[2], "wgmma.mma_async instructions are serialized")})
		}
	}
	return notes
}

func TestPtxasNotes(t *testing.T) {
	log := `ptxas info    : (C7519) warpgroup.arrive is injected in around line 47178 by compiler to allow use of registers in GMMA in function 'attention_backward_fused_hopper_d128'
ptxas info    : (C7515) Potential Performance Loss: wgmma.mma_async instructions are serialized due to non wgmma instructions defining accumulator registers of a wgmma between start and end of the pipeline stage in the function 'attention_backward_fused_hopper_d128'
ptxas info    : (C7520) Potential Performance Loss: wgmma.mma_async instructions are serialized due to the presence of Extern calls in the function 'attention_forward_hopper_d64'
ptxas info    : Compiling entry function 'attention_backward_fused_hopper_d64' for 'sm_90a'
ptxas info    : Used 213 registers, used 1 barriers`
	got := ptxasNotes(log)
	want := []ptxasNote{
		{"C7519", "attention_backward_fused_hopper_d128", false},
		{"C7515", "attention_backward_fused_hopper_d128", true},
		{"C7520", "attention_forward_hopper_d64", true},
	}
	if !slices.Equal(got, want) {
		t.Errorf("ptxasNotes = %v, want %v", got, want)
	}
}

// TestHopperAttentionFusedCompiles compiles kernels/attention_hopper.cu for
// sm_90a with each define set of fusedCompileVariants (the fused backward
// and its alternatives, selected at run time through WHET_NVRTC_DEFINES),
// logging ptxas -v (registers, spills) and a summary line per
// fused kernel; a strict set fails if ptxas says that a fused backward
// kernel's wgmma are serialised (C7515 and the like), naming kernel and
// code. Separate from TestHopperAttentionCompiles so that its failure is
// not taken for the default kernels'. Needs libnvrtc, not a GPU.
// WHET_FUSED_COMPILE_SHARD=i/n compiles only the sets k with k % n == i,
// so that a GPU batch can run n processes side by side (one NVRTC
// compilation at a time in each).
func TestHopperAttentionFusedCompiles(t *testing.T) {
	shard, shards := 0, 1
	if v := os.Getenv("WHET_FUSED_COMPILE_SHARD"); v != "" {
		if _, err := fmt.Sscanf(v, "%d/%d", &shard, &shards); err != nil || shards < 1 || shard < 0 || shard >= shards {
			t.Fatalf("WHET_FUSED_COMPILE_SHARD=%q: want i/n with 0 <= i < n", v)
		}
	}
	sets, err := fusedCompileSets()
	if err != nil {
		t.Fatal(err)
	}
	n, src := openNVRTCOrSkip(t), hopperSource(t)
	// compileOptions would add these a second time, and the default
	// defines on top.
	t.Setenv("WHET_NVRTC_DEFINES", "")
	t.Setenv(AttnBwdFusedEnv, "0")
	t.Setenv(AttnFwdWSEnv, "0")
	for k, v := range sets {
		if k%shards != shard {
			continue
		}
		t.Run(strings.ReplaceAll(v.defines, ",", "_"), func(t *testing.T) {
			log := compileHopperVerbose(t, n, src, v.defines)
			t.Logf("%s, ptxas -v:\n%s", v.defines, log)
			regs, spills := ptxasRegs(log)
			notes := ptxasNotes(log)
			for _, d := range []int{64, 128} {
				name := fmt.Sprintf("attention_backward_fused_hopper_d%d", d)
				var ser, other []string
				for _, nt := range notes {
					if nt.kernel != name {
						continue
					}
					if nt.serialized {
						ser = append(ser, nt.code)
					} else {
						other = append(other, nt.code)
					}
				}
				t.Logf("fused-summary %s %s: %d registers, %d bytes spilled, serialized %d %v, other notes %d %v",
					v.defines, name, regs[name], spills[name], len(ser), ser, len(other), other)
				if _, ok := regs[name]; !ok {
					t.Errorf("no register count for %s in the ptxas log", name)
				}
				if v.strict && len(ser) > 0 {
					t.Errorf("%s with %s: ptxas serialises its wgmma (%s)", name, v.defines, strings.Join(ser, ", "))
				}
			}
		})
	}
}

// TestAttnBwdFusedRunsReported: whet bench reads the fused backward's
// launch count through this method (cmd_bench.go's attn_bwd_fused).
func TestAttnBwdFusedRunsReported(t *testing.T) {
	var r interface{ AttnBwdFusedRuns() int } = &Backend{attnBwdFusedRuns: 3}
	if got := r.AttnBwdFusedRuns(); got != 3 {
		t.Errorf("AttnBwdFusedRuns() = %d, want 3", got)
	}
}

// TestFusedCompileSets: WHET_FUSED_COMPILE_DEFINES replaces
// fusedCompileVariants with its ';'-separated sets (not strict), and a set
// with an entry that is not NAME=VALUE, or none at all, is an error.
func TestFusedCompileSets(t *testing.T) {
	t.Setenv("WHET_FUSED_COMPILE_DEFINES", "")
	if sets, err := fusedCompileSets(); err != nil || len(sets) != len(fusedCompileVariants) {
		t.Fatalf("unset: %d sets, %v; want fusedCompileVariants", len(sets), err)
	}
	t.Setenv("WHET_FUSED_COMPILE_DEFINES", "HOP_BWD_FUSED=1,HOP_BWD_OVL=1; HOP_BWD_FUSED=1,HOP_BWD_OVL=2,HOP_BWD_DQT=1;")
	sets, err := fusedCompileSets()
	if err != nil || len(sets) != 2 || sets[1].defines != "HOP_BWD_FUSED=1,HOP_BWD_OVL=2,HOP_BWD_DQT=1" || sets[0].strict {
		t.Fatalf("two sets: got %+v, %v", sets, err)
	}
	for _, bad := range []string{"HOP_BWD_FUSED=1,HOP_BWD_OVL", ";", "=1"} {
		t.Setenv("WHET_FUSED_COMPILE_DEFINES", bad)
		if _, err := fusedCompileSets(); err == nil || !strings.Contains(err.Error(), "WHET_FUSED_COMPILE_DEFINES") {
			t.Errorf("%q: error %v, want one naming WHET_FUSED_COMPILE_DEFINES", bad, err)
		}
	}
}
