package cuda

import (
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"

	"whet/engine"
	"whet/engine/cpu"
	"whet/kernels"
)

// hopperWSVariants are the warp-specialised forward's define sets that
// tools/gpu/attention-fwd runs, all with the straight-line consumer loop
// (HOP_WS_NOSER=1), which ptxas must compile without serialising a wgmma
// (TestHopperAttentionWSCompiles fails otherwise): producer + 2 consumers
// (both head dims), with setmaxnreg, 3 consumers at d64, no pingpong, 3
// stages, no intra-warpgroup overlap, TMA copies.
var hopperWSVariants = []string{
	"HOP_FWD_WS=1,HOP_WS_NOSER=1",
	"HOP_FWD_WS=2,HOP_WS_NOSER=1",
	"HOP_FWD_WS=2,HOP_WS_NOSER=1,HOP_WS_PINGPONG=0",
	"HOP_FWD_WS=2,HOP_WS_NOSER=1,HOP_WS_STAGES=3",
	"HOP_FWD_WS=2,HOP_WS_NOSER=1,HOP_WS_INTRA=0",
	"HOP_FWD_WS=2,HOP_WS_NOSER=1,HOP_WS_TMA=1",
	// The default (attnFwdWSDefines) since tools/gpu/attn-fwd2's H100 run.
	"HOP_FWD_WS=1,HOP_WS_NOSER=1,HOP_WS_BN128=64,HOP_WS_STAGES=4,HOP_WS_TMA=1",
}

// hopperWSSerialVariants keep the first consumer loop (HOP_WS_NOSER=0),
// whose wgmma ptxas serialises (C7520, and C7518 without the intra
// overlap; the GPU run of tools/gpu/attention-fwd on an H100), or have
// three consumer warpgroups at d64 (HOP_WS_WG64=3), whose d64 forward ptxas
// serialises for want of registers (C7512, the H100 run of 2026-12-07):
// TestHopperAttentionWSCompiles compiles them and logs what ptxas says,
// for comparison, without failing on it.
// hopperWSNewVariants are the define sets of issue 20's second forward
// round (tools/gpu/attn-fwd2 compiles, checks and times them; not run on a
// GPU before that batch, and not compiled by TestHopperAttentionWSCompiles
// unless WHET_WS_COMPILE_DEFINES names them, which the batch does): 24/240
// registers with setmaxnreg, the first GPU run of TMA copies, no
// intra-warpgroup overlap at d128 only (HOP_WS_INTRA128=0), 64-key tiles
// (HOP_WS_BN64/BN128=64) with four stages, three consumers at d64 on 64-key
// tiles, P through shared memory (HOP_WS_PSMEM64/128=1). TestHopperWSConfig checks that each parses and fits.
var hopperWSNewVariants = []string{
	"HOP_FWD_WS=1,HOP_WS_NOSER=1,HOP_WS_INTRA128=0",
	"HOP_FWD_WS=2,HOP_WS_NOSER=1,HOP_WS_PREG2=24,HOP_WS_CREG2=240",
	"HOP_FWD_WS=1,HOP_WS_NOSER=1,HOP_WS_TMA=1",
	"HOP_FWD_WS=2,HOP_WS_NOSER=1,HOP_WS_TMA=1,HOP_WS_PREG2=24,HOP_WS_CREG2=240",
	"HOP_FWD_WS=1,HOP_WS_NOSER=1,HOP_WS_BN128=64,HOP_WS_STAGES=4",
	"HOP_FWD_WS=1,HOP_WS_NOSER=1,HOP_WS_BN128=64,HOP_WS_STAGES=4,HOP_WS_TMA=1",
	"HOP_FWD_WS=1,HOP_WS_NOSER=1,HOP_WS_BN64=64,HOP_WS_STAGES64=4",
	"HOP_FWD_WS=1,HOP_WS_NOSER=1,HOP_WS_WG64=3,HOP_WS_BN64=64,HOP_WS_STAGES64=4,HOP_WS_INTRA128=0",
	"HOP_FWD_WS=2,HOP_WS_NOSER=1,HOP_WS_WG64=3,HOP_WS_BN64=64,HOP_WS_STAGES64=4,HOP_WS_INTRA128=0",
	"HOP_FWD_WS=1,HOP_WS_NOSER=1,HOP_WS_PSMEM128=1",
	"HOP_FWD_WS=1,HOP_WS_NOSER=1,HOP_WS_WG64=3,HOP_WS_PSMEM64=1,HOP_WS_PSMEM128=1",
}

var hopperWSSerialVariants = []string{
	"HOP_FWD_WS=2",
	"HOP_FWD_WS=2,HOP_WS_INTRA=0",
	"HOP_FWD_WS=2,HOP_WS_NOSER=1,HOP_WS_WG64=3",
}

// TestHopperWSConfig: the launch shape attention.go derives from
// WHET_NVRTC_DEFINES for the warp-specialised Hopper forward (rows,
// threads, shared memory) agrees with kernels/attention_hopper.cu's
// defaults and formulas, fits an H100 block, leaves the default forward
// alone when the defines are absent, and a malformed define is an error
// that names it.
func TestHopperWSConfig(t *testing.T) {
	cu, err := kernels.Source(attnHopperFile)
	if err != nil {
		t.Fatal(err)
	}
	for _, rule := range []string{"#define HOP_FWD_WS 0", "#define HOP_WS_WG64 2", "#define HOP_WS_STAGES 2", "#define HOP_WS_INTRA 1", "#define HOP_WS_TMA 0",
		"#define HOP_WS_WG(D) ((D) == 64 ? HOP_WS_WG64 : 2)", "#define HOP_FWD_THREADS(D) (128 * (HOP_WS_WG(D) + 1))",
		"constexpr int BM = 64 * NC, BN = HOP_WS_BN(D), S = HOP_WS_STAGES_D(D);", "#define HOP_WS_BN64 128", "#define HOP_WS_BN128 128",
		"#define HOP_WS_BN(D) ((D) == 64 ? HOP_WS_BN64 : HOP_WS_BN128)", "#define HOP_WS_INTRA64 HOP_WS_INTRA", "#define HOP_WS_INTRA128 HOP_WS_INTRA",
		"#define HOP_WS_STAGES64 HOP_WS_STAGES", "#define HOP_WS_STAGES128 HOP_WS_STAGES", "#define HOP_WS_STAGES_D(D) ((D) == 64 ? HOP_WS_STAGES64 : HOP_WS_STAGES128)",
		"#define HOP_WS_PSMEM64 0", "#define HOP_WS_PSMEM128 0", "constexpr unsigned int PBYTES = HOP_WS_PSMEM_D(D) ? 64 * BN * 2 : 0;",
		"const unsigned int qFull = Ps + NC * PBYTES,",
		"#define HOP_WS_NOSER 0", "#define HOP_WS_PREG2 40", "#define HOP_WS_CREG2 232", "#define HOP_WS_PREG3 32", "#define HOP_WS_CREG3 160"} {
		if !strings.Contains(cu, rule) {
			t.Errorf("kernels/%s no longer says %q: update hopperFwdWS and attnHopperSmem", attnHopperFile, rule)
		}
	}
	// setmaxnreg's counts must add up to what a block of 384 (512) threads gets.
	if 40+2*232 != 3*(65536/384/8*8) || 32+3*160 != 4*(65536/512/8*8) {
		t.Error("HOP_WS_PREG/CREG no longer add up to the block's registers")
	}

	// The default warp-specialised forward switched off (AttnFwdWSEnv=0),
	// so that WHET_NVRTC_DEFINES alone configures it (TestAttnFwdWSDefault
	// checks the default).
	t.Setenv(AttnFwdWSEnv, "0")
	t.Setenv("WHET_NVRTC_DEFINES", "")
	if ws := hopperFwdWS(); ws.mode != 0 || ws.err != nil || ws.rows(64) != attnHopperRows || ws.threads(128) != 256 {
		t.Errorf("no defines: %+v, rows %d, threads %d; want the default forward", ws, ws.rows(64), ws.threads(128))
	}
	if got, want := attnHopperSmem("forward", 128), 1024+2*(attnHopperRows+4*attnHopperRows)*128; got != want {
		t.Errorf("no defines: forward shared memory %d, want %d", got, want)
	}

	for _, c := range []struct {
		defines             string
		rows64, threads64   int
		smem64, smem128     int
		mode, stages, wg64  int
		rows128, threads128 int
	}{
		{"HOP_FWD_WS=1", 128, 384, 1024 + 128*(128+512) + 128, 1024 + 256*(128+512) + 128, 1, 2, 2, 128, 384},
		{"HOP_FWD_WS=2,HOP_WS_WG64=3", 192, 512, 1024 + 128*(192+512) + 128, 1024 + 256*(128+512) + 128, 2, 2, 3, 128, 384},
		{" HOP_FWD_WS=2 , HOP_WS_STAGES=3", 128, 384, 1024 + 128*(128+768) + 128, 1024 + 256*(128+768) + 128, 2, 3, 2, 128, 384},
		{"HOP_FWD_WS=2,HOP_WS_TMA=1,HOP_WS_WG64=3", 192, 512, 1024 + 128*(192+512) + 128, 1024 + 256*(128+512) + 128, 2, 2, 3, 128, 384},
		// 64-key tiles at d128 (HOP_WS_BN128=64): half the K/V stage; four stages
		// need 8 + 32 * 4 bytes of mbarriers.
		{"HOP_FWD_WS=1,HOP_WS_NOSER=1,HOP_WS_BN128=64", 128, 384, 1024 + 128*(128+512) + 128, 1024 + 256*(128+256) + 128, 1, 2, 2, 128, 384},
		{"HOP_FWD_WS=1,HOP_WS_NOSER=1,HOP_WS_BN64=64,HOP_WS_BN128=64,HOP_WS_STAGES=4,HOP_WS_WG64=3", 192, 512, 1024 + 128*(192+512) + 136, 1024 + 256*(128+512) + 136, 1, 4, 3, 128, 384},
		// P tiles in shared memory (HOP_WS_PSMEM128=1): 2 consumers x 64 rows x 128 keys x 2 bytes at d128;
		// at d64 with three consumers on 64-key tiles, 3 x 64 x 64 x 2.
		{"HOP_FWD_WS=1,HOP_WS_NOSER=1,HOP_WS_PSMEM128=1", 128, 384, 1024 + 128*(128+512) + 128, 1024 + 256*(128+512) + 2*2*64*128 + 128, 1, 2, 2, 128, 384},
		{"HOP_FWD_WS=1,HOP_WS_NOSER=1,HOP_WS_PSMEM64=1,HOP_WS_WG64=3,HOP_WS_BN64=64", 192, 512, 1024 + 128*(192+256) + 2*3*64*64 + 128, 1024 + 256*(128+512) + 128, 1, 2, 3, 128, 384},
		// Stages per head dim: four of 64 keys at d64, the two of 128 at d128.
		{"HOP_FWD_WS=1,HOP_WS_NOSER=1,HOP_WS_BN64=64,HOP_WS_STAGES64=4,HOP_WS_WG64=3", 192, 512, 1024 + 128*(192+512) + 136, 1024 + 256*(128+512) + 128, 1, 2, 3, 128, 384},
	} {
		t.Setenv("WHET_NVRTC_DEFINES", c.defines)
		ws := hopperFwdWS()
		if ws.err != nil || ws.mode != c.mode || ws.stages != c.stages || ws.wg64 != c.wg64 {
			t.Errorf("%q: parsed %+v", c.defines, ws)
		}
		if ws.rows(64) != c.rows64 || ws.threads(64) != c.threads64 || ws.rows(128) != c.rows128 || ws.threads(128) != c.threads128 {
			t.Errorf("%q: d64 %d rows %d threads, d128 %d rows %d threads; want %d/%d, %d/%d", c.defines,
				ws.rows(64), ws.threads(64), ws.rows(128), ws.threads(128), c.rows64, c.threads64, c.rows128, c.threads128)
		}
		if got := attnHopperSmem("forward", 64); got != c.smem64 {
			t.Errorf("%q: d64 forward shared memory %d, want %d", c.defines, got, c.smem64)
		}
		if got := attnHopperSmem("forward", 128); got != c.smem128 {
			t.Errorf("%q: d128 forward shared memory %d, want %d", c.defines, got, c.smem128)
		}
	}
	for _, defines := range append(hopperWSVariants, hopperWSNewVariants...) {
		t.Setenv("WHET_NVRTC_DEFINES", defines)
		if ws := hopperFwdWS(); ws.err != nil {
			t.Errorf("%q: %v", defines, ws.err)
		}
		for d := range attnHopperHeadDims {
			if smem := attnHopperSmem("forward", d); smem > 227<<10 {
				t.Errorf("%q: the d%d forward needs %d bytes of shared memory, over 227 KB", defines, d, smem)
			}
		}
	}
	t.Setenv("WHET_NVRTC_DEFINES", "HOP_FWD_WS=1,HOP_WS_TMA=1")
	if ws := hopperFwdWS(); ws.err != nil || ws.tma != 1 {
		t.Errorf("HOP_FWD_WS=1,HOP_WS_TMA=1: %+v", ws)
	}
	t.Setenv("WHET_NVRTC_DEFINES", "HOP_FWD_WS=2,HOP_WS_NOSER=1")
	if ws := hopperFwdWS(); ws.err != nil || ws.noser != 1 || ws.mode != 2 {
		t.Errorf("HOP_FWD_WS=2,HOP_WS_NOSER=1: %+v", ws)
	}
	t.Setenv("WHET_NVRTC_DEFINES", "HOP_FWD_WS=2,HOP_WS_NOSER=1,HOP_WS_BN128=64,HOP_WS_TMA=1")
	if ws := hopperFwdWS(); ws.err != nil || ws.keys(128) != 64 || ws.keys(64) != 128 {
		t.Errorf("HOP_WS_BN128=64: %+v, keys %d at d128, %d at d64; want 64, 128", ws, ws.keys(128), ws.keys(64))
	}
	for _, bad := range []string{"HOP_FWD_WS=3", "HOP_FWD_WS=yes", "HOP_FWD_WS=1,HOP_WS_WG64=4", "HOP_FWD_WS=1,HOP_WS_STAGES=1", "HOP_WS_TMA=1", "HOP_FWD_WS=1,HOP_WS_TMA=2",
		"HOP_WS_NOSER=1", "HOP_FWD_WS=2,HOP_WS_NOSER=2", "HOP_FWD_WS=1,HOP_WS_STAGES=5", "HOP_FWD_WS=1,HOP_WS_STAGES128=1",
		"HOP_FWD_WS=1,HOP_WS_NOSER=1,HOP_WS_BN128=96", "HOP_FWD_WS=1,HOP_WS_PSMEM128=1", "HOP_FWD_WS=1,HOP_WS_NOSER=1,HOP_WS_PSMEM64=2", "HOP_FWD_WS=1,HOP_WS_NOSER=1,HOP_WS_BN64=32", "HOP_FWD_WS=1,HOP_WS_BN128=64", "HOP_WS_NOSER=0,HOP_FWD_WS=1,HOP_WS_BN64=64"} {
		t.Setenv("WHET_NVRTC_DEFINES", bad)
		ws := hopperFwdWS()
		name, _, _ := strings.Cut(bad[strings.LastIndex(bad, ",")+1:], "=")
		if ws.err == nil || ws.mode != 0 || !strings.Contains(ws.err.Error(), name) {
			t.Errorf("%q: %+v; want an error naming %s", bad, ws, name)
		}
	}
}

// ptxasRegs maps each entry function in a ptxas -v log to its registers
// and spill-store bytes.
func ptxasRegs(log string) (regs, spills map[string]int) {
	regs, spills = map[string]int{}, map[string]int{}
	entry := regexp.MustCompile(`Compiling entry function '(\w+)'`)
	used := regexp.MustCompile(`Used (\d+) registers`)
	spill := regexp.MustCompile(`(\d+) bytes spill stores`)
	fn := ""
	for _, line := range strings.Split(log, "\n") {
		if m := entry.FindStringSubmatch(line); m != nil {
			fn = m[1]
		} else if m := spill.FindStringSubmatch(line); m != nil && fn != "" {
			spills[fn], _ = strconv.Atoi(m[1])
		} else if m := used.FindStringSubmatch(line); m != nil && fn != "" {
			regs[fn], _ = strconv.Atoi(m[1])
		}
	}
	return regs, spills
}

// ptxasSerialized maps each function of a ptxas -v log to the codes
// (C7515, C7518, C7520, ...) of its "wgmma.mma_async instructions are
// serialized" messages, one entry a message: ptxas then makes every wgmma
// of the function wait for the one before, so nothing overlaps them.
func ptxasSerialized(log string) map[string][]string {
	ser := map[string][]string{}
	re := regexp.MustCompile(`\((C\d+)\)[^\n]*wgmma\.mma_async instructions are serialized[^\n]*(?:in|for) the function '(\w+)'`)
	for _, m := range re.FindAllStringSubmatch(log, -1) {
		ser[m[2]] = append(ser[m[2]], m[1])
	}
	return ser
}

// serializedSummary is ptxasSerialized's result in one line, functions in
// order, each with its codes counted ("none" when empty).
func serializedSummary(ser map[string][]string) string {
	if len(ser) == 0 {
		return "none"
	}
	var fns []string
	for fn := range ser {
		fns = append(fns, fn)
	}
	sort.Strings(fns)
	var parts []string
	for _, fn := range fns {
		n := map[string]int{}
		var codes []string
		for _, c := range ser[fn] {
			if n[c] == 0 {
				codes = append(codes, c)
			}
			n[c]++
		}
		sort.Strings(codes)
		for _, c := range codes {
			parts = append(parts, fmt.Sprintf("%s %s x%d", fn, c, n[c]))
		}
	}
	return strings.Join(parts, ", ")
}

// knownSerialized is the one serialisation checkNotSerialized logs
// without failing: ptxas's C7512 ("insufficient register resources") on the
// d128 warp-specialised forward with two consumer warpgroups (168
// registers, 216 bytes of spill stores), which the H100 run of
// tools/gpu/attention-fwd (2026-12-07 14:42 UTC,
// docs/bench/attention-fwd-2026-12-07-1442.txt) showed for every
// HOP_WS_NOSER=1 variant and which ptxasSerialized missed until then
// (its message says "for the function"). That forward, the default
// (attnFwdWSDefines), still measured 283.4 TFLOP/s against the first
// forward's 259.0. Any other code, or this one on another function, fails.
var knownSerialized = map[string]string{"attention_forward_hopper_d128": "C7512"}

// knownOnly reports whether every code of function fn's serialised wgmma
// is its knownSerialized one.
func knownOnly(fn string, codes []string) bool {
	known := knownSerialized[fn]
	return known != "" && len(codes) > 0 && !slices.ContainsFunc(codes, func(c string) bool { return c != known })
}

// checkNotSerialized fails t for each function of the ptxas -v log whose
// wgmma ptxas serialises, naming the function and the codes, except for
// knownSerialized, which it logs.
func checkNotSerialized(t *testing.T, what, log string) {
	t.Helper()
	ser := ptxasSerialized(log)
	t.Logf("%s: serialised wgmma: %s", what, serializedSummary(ser))
	for fn, codes := range ser {
		if knownOnly(fn, codes) {
			t.Logf("%s: ptxas serialises the wgmma.mma_async of %s (%s): known (knownSerialized), not failed", what, fn, strings.Join(codes, ", "))
			continue
		}
		t.Errorf("%s: ptxas serialises the wgmma.mma_async of %s (%s): every wgmma waits for the one before, no overlap with the softmax", what, fn, strings.Join(codes, ", "))
	}
}

func TestPtxasSerialized(t *testing.T) {
	log := `    hopper_ws_test.go:176: HOP_FWD_WS=2, ptxas -v:
        ptxas info    : (C7520) Potential Performance Loss: wgmma.mma_async instructions are serialized due to program dependence on compiler-inserted WG.AR in divergent path in the function 'attention_forward_hopper_d128'
        ptxas info    : (C7518) Potential Performance Loss: wgmma.mma_async instructions are serialized due to program dependence on compiler-inserted WG.DP in divergent path in the function 'attention_forward_hopper_d128'
        ptxas info    : (C7520) Potential Performance Loss: wgmma.mma_async instructions are serialized due to program dependence on compiler-inserted WG.AR in divergent path in the function 'attention_forward_hopper_d128'
        ptxas info    : (C7515) Potential Performance Loss: wgmma.mma_async instructions are serialized due to non wgmma instructions defining accumulator registers of a wgmma between start and end of the pipeline stage in the function 'attention_backward_fused_hopper_d128'
        ptxas info    : 1 bytes gmem
        ptxas info    : Compiling entry function 'attention_forward_hopper_d64' for 'sm_90a'
        ptxas info    : Used 168 registers, used 16 barriers`
	ser := ptxasSerialized(log)
	if len(ser) != 2 || strings.Join(ser["attention_forward_hopper_d128"], " ") != "C7520 C7518 C7520" ||
		strings.Join(ser["attention_backward_fused_hopper_d128"], " ") != "C7515" {
		t.Errorf("ptxasSerialized: %v", ser)
	}
	if got, want := serializedSummary(ser), "attention_backward_fused_hopper_d128 C7515 x1, attention_forward_hopper_d128 C7518 x1, attention_forward_hopper_d128 C7520 x2"; got != want {
		t.Errorf("serializedSummary: %q, want %q", got, want)
	}
	c7512 := "ptxas info    : (C7512) Potential Performance Loss: wgmma.mma_async instructions are serialized due to insufficient register resources for the function 'attention_forward_hopper_d128'"
	if ser := ptxasSerialized(c7512); strings.Join(ser["attention_forward_hopper_d128"], " ") != "C7512" || len(ser) != 1 {
		t.Errorf("ptxasSerialized of a C7512 message: %v", ser)
	}
	for _, c := range []struct {
		fn    string
		codes []string
		known bool
	}{
		{"attention_forward_hopper_d128", []string{"C7512"}, true},
		{"attention_forward_hopper_d128", []string{"C7512", "C7520"}, false},
		{"attention_forward_hopper_d64", []string{"C7512"}, false},
		{"attention_backward_fused_hopper_d128", []string{"C7515"}, false},
		{"attention_forward_hopper_d128", nil, false},
	} {
		if knownOnly(c.fn, c.codes) != c.known {
			t.Errorf("knownOnly(%s, %v) = %v, want %v", c.fn, c.codes, !c.known, c.known)
		}
	}
	if ser := ptxasSerialized("ptxas info    : Used 168 registers, used 16 barriers\nptxas info    : (C7509) Potential Performance Loss: setmaxnreg ignored"); len(ser) != 0 || serializedSummary(ser) != "none" {
		t.Errorf("a log without serialised wgmma: %v", ser)
	}
}

func TestPtxasRegs(t *testing.T) {
	log := `ptxas info    : Compiling entry function 'attention_forward_hopper_d64' for 'sm_90a'
ptxas info    : Function properties for attention_forward_hopper_d64
ptxas         .     0 bytes stack frame, 12 bytes spill stores, 8 bytes spill loads
ptxas info    : Used 128 registers, used 3 barriers
ptxas info    : Compiling entry function 'attention_forward_hopper_d128' for 'sm_90a'
ptxas info    : Function properties for attention_forward_hopper_d128
ptxas         .     0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads
ptxas info    : Used 168 registers, used 3 barriers`
	regs, spills := ptxasRegs(log)
	if regs["attention_forward_hopper_d64"] != 128 || regs["attention_forward_hopper_d128"] != 168 ||
		spills["attention_forward_hopper_d64"] != 12 || spills["attention_forward_hopper_d128"] != 0 {
		t.Errorf("ptxasRegs: %v %v", regs, spills)
	}
}

// TestHopperAttentionWSCompiles compiles kernels/attention_hopper.cu for
// sm_90a with each warp-specialised forward variant (needs NVRTC; skips
// without), logging ptxas -v, and fails when ptxas serialises the wgmma of
// any kernel (checkNotSerialized; hopperWSSerialVariants are only logged). With setmaxnreg (HOP_FWD_WS=2) the forward
// kernels must have exactly the registers the producer and consumers
// redistribute (168 a thread at 384 threads, 128 at 512), or
// setmaxnreg.inc would wait for ever; attention.go refuses such a kernel
// at run time too (hopperWSCheck).
func TestHopperAttentionWSCompiles(t *testing.T) {
	sets, err := wsCompileSets()
	if err != nil {
		t.Fatal(err)
	}
	n, src := openNVRTCOrSkip(t), hopperSource(t)
	// Each variant as it is, without the default defines under it.
	t.Setenv(AttnFwdWSEnv, "0")
	t.Setenv(AttnBwdFusedEnv, "0")
	if sets != nil {
		wsCompileReport(t, n, src, sets)
		return
	}
	for _, defines := range hopperWSVariants {
		t.Run(defines, func(t *testing.T) {
			t.Setenv("WHET_NVRTC_DEFINES", defines)
			ws := hopperFwdWS()
			t.Setenv("WHET_NVRTC_DEFINES", "") // compileOptions would add them a second time
			log := compileHopperVerbose(t, n, src, defines)
			t.Logf("%s, ptxas -v:\n%s", defines, log)
			checkNotSerialized(t, defines, log)
			regs, spills := ptxasRegs(log)
			for d := range attnHopperHeadDims {
				name := fmt.Sprintf("attention_forward_hopper_d%d", d)
				r, ok := regs[name]
				if !ok {
					t.Errorf("no register count for %s in the ptxas log", name)
					continue
				}
				t.Logf("%s: %d registers, %d bytes of spill stores (block of %d threads, %d rows)", name, r, spills[name], ws.threads(d), ws.rows(d))
				if want := 65536 / ws.threads(d) / 8 * 8; ws.mode == 2 && r != want {
					t.Errorf("%s has %d registers with setmaxnreg, want %d (the producer's and consumers' counts add up to that)", name, r, want)
				}
			}
		})
	}
	// The first consumer loop and 3 consumers at d64, for comparison: logged, not checked.
	for _, defines := range hopperWSSerialVariants {
		t.Run(defines, func(t *testing.T) {
			log := compileHopperVerbose(t, n, src, defines)
			t.Logf("%s (HOP_WS_NOSER=0), ptxas -v:\n%s", defines, log)
			t.Logf("%s: serialised wgmma: %s (known, see hopperWSSerialVariants; not checked)", defines, serializedSummary(ptxasSerialized(log)))
		})
	}
}

// TestHopperForwardLongMatchesMMASync runs the Hopper forward as
// configured (the default one, or the warp-specialised one under
// HOP_FWD_WS) at sequence lengths the CPU comparison of
// TestAttentionMatchesCPU does not reach (up to 1,600 tokens: a dozen key
// tiles a block, so every stage of the pipeline is reused several times and
// the mbarrier phases wrap), packed sequences and a window (warpgroups that
// skip tiles), against the mma.sync forward on the same inputs: out and lse
// must agree to bf16 rounding. Needs an sm_90 card (skips elsewhere).
func TestHopperForwardLongMatchesMMASync(t *testing.T) {
	b := newTestBackend(t)
	if b.arch != "sm_90" || !b.attnHopper {
		t.Skipf("skipping: needs an sm_90 card with the Hopper kernels on (this is %s, on: %v)", b.arch, b.attnHopper)
	}
	ws := hopperFwdWS()
	rng := rand.New(rand.NewPCG(5, 9))
	for _, c := range []struct {
		name         string
		starts       []int32
		h, kvh, d, w int
	}{
		{"d64_gqa4x1_packed", []int32{0, 1000, 1001, 2600}, 8, 2, 64, 0},
		{"d64_window700", []int32{0, 1700}, 4, 2, 64, 700},
		{"d128_gqa4x1_packed", []int32{0, 1000, 1001, 2600}, 8, 2, 128, 0},
		{"d128_window333", []int32{0, 1111, 1650}, 4, 1, 128, 333},
	} {
		t.Run(c.name, func(t *testing.T) {
			T := int(c.starts[len(c.starts)-1])
			maxLen := 0
			for i := 0; i+1 < len(c.starts); i++ {
				maxLen = max(maxLen, int(c.starts[i+1]-c.starts[i]))
			}
			p := engine.AttnParams{NHeads: c.h, NKVHeads: c.kvh, HeadDim: c.d, Scale: float32(1 / math.Sqrt(float64(c.d))), Window: c.w}
			var free []engine.Tensor
			defer func() {
				for _, x := range free {
					b.Free(x)
				}
			}()
			alloc := func(dt engine.DType, vals []float32, shape ...int) engine.Tensor {
				x, err := b.Alloc(dt, shape...)
				if err != nil {
					t.Fatal(err)
				}
				free = append(free, x)
				if vals != nil {
					if err := b.Upload(x, vals); err != nil {
						t.Fatal(err)
					}
				}
				return x
			}
			bf := func(n int) []float32 {
				v := randVals(rng, n)
				for i := range v {
					v[i] = cpu.RoundBF16(v[i])
				}
				return v
			}
			q := alloc(engine.BF16, bf(T*c.h*c.d), T, c.h*c.d)
			k := alloc(engine.BF16, bf(T*c.kvh*c.d), T, c.kvh*c.d)
			v := alloc(engine.BF16, bf(T*c.kvh*c.d), T, c.kvh*c.d)
			sd, err := b.Alloc(engine.I32, len(c.starts))
			if err != nil {
				t.Fatal(err)
			}
			free = append(free, sd)
			if err := b.UploadInt32(sd, c.starts); err != nil {
				t.Fatal(err)
			}
			seqs := engine.SeqLayout{Starts: c.starts, MaxLen: maxLen, Dev: sd}
			run := func(hopper bool) (out, lse []float32) {
				defer func(was bool) { b.attnHopper = was }(b.attnHopper)
				b.attnHopper = hopper
				o := alloc(engine.BF16, nil, T, c.h*c.d)
				l := alloc(engine.F32, nil, c.h, T)
				if err := b.Attention(o, l, q, k, v, seqs, p); err != nil {
					t.Fatal(err)
				}
				if hopper && b.attnHopperOff != "" {
					t.Fatalf("the Hopper attention kernels were switched off: %s", b.attnHopperOff)
				}
				out, lse = make([]float32, o.Len()), make([]float32, l.Len())
				if err := b.Download(o, out); err != nil {
					t.Fatal(err)
				}
				if err := b.Download(l, lse); err != nil {
					t.Fatal(err)
				}
				return out, lse
			}
			gotO, gotL := run(true)
			if ws.mode != 0 {
				if n, err := b.hopperFwdBlock(c.d); err != nil || n != ws.threads(c.d) {
					t.Fatalf("HOP_FWD_WS=%d: the loaded forward kernel takes %d threads a block (%v), want the warp-specialised %d", ws.mode, n, err, ws.threads(c.d))
				}
				t.Logf("forward on the warp-specialised Hopper kernel (HOP_FWD_WS=%d: %d threads, %d rows a block, %d keys a tile, %d stages)", ws.mode, ws.threads(c.d), ws.rows(c.d), ws.keys(c.d), ws.nstages(c.d))
			}
			wantO, wantL := run(false)
			// Element by element: two bf16 roundings of out (0.4 % each)
			// and P rounded to bf16 at different rescale points, plus a
			// floor for outputs near 0. A misplaced tile or row moves
			// long-row outputs (of order 0.03 here) by their own size.
			for _, x := range []struct {
				name      string
				got, want []float32
				rel, abs  float64
			}{{"out", gotO, wantO, 1.6e-2, 2e-3}, {"lse", gotL, wantL, 1e-3, 1e-3}} {
				worst, at := 0.0, 0
				for i := range x.got {
					if math.IsNaN(float64(x.got[i])) {
						t.Fatalf("%s[%d] is NaN (mma.sync: %g)", x.name, i, x.want[i])
					}
					d := math.Abs(float64(x.got[i] - x.want[i]))
					if r := d / (x.rel*math.Abs(float64(x.want[i])) + x.abs); r > worst {
						worst, at = r, i
					}
				}
				t.Logf("%s: worst difference %.3g of the tolerance, at %d (got %g, mma.sync %g)", x.name, worst, at, x.got[at], x.want[at])
				if worst > 1 {
					row := at / (len(x.got) / T) // out is [T, h*d]
					if x.name == "lse" {
						row = at % T // lse is [h, T]
					}
					t.Errorf("%s: differs from the mma.sync forward by %.3g times the tolerance at %d (query row %d): got %g, want %g", x.name, worst, at, row, x.got[at], x.want[at])
				}
			}
		})
	}
}

// TestAttnFwdWSDefault: the warp-specialised Hopper forward
// (attnFwdWSDefines) is in nvrtcDefines by default and with AttnFwdWSEnv=1,
// out with AttnFwdWSEnv=0; hopperFwdWS, nvrtcDefine and attnHopperSmem see
// what nvrtcDefines gives the compiler; a define WHET_NVRTC_DEFINES sets
// wins, HOP_FWD_WS there (any value) or HOP_FWD_OVERLAP=1 choose the forward
// without the defaults (the kernel refuses HOP_WS_NOSER without HOP_FWD_WS,
// and HOP_FWD_WS with HOP_FWD_OVERLAP); a switch other than 0 or 1 is an
// error naming it.
func TestAttnFwdWSDefault(t *testing.T) {
	t.Setenv(AttnBwdFusedEnv, "0") // the backward's defaults are TestFusedBackwardSelection's
	wsSmem := func(d, rows, stages, keys int) int {
		return 1024 + 2*d*(rows+2*stages*keys) + max(128, 8+4*8*stages)
	}
	// The defaults after a define WHET_NVRTC_DEFINES sets first.
	rest := func(first ...string) []string {
		out := append([]string{}, first...)
		for _, d := range attnFwdWSDefines {
			name, _, _ := strings.Cut(d, "=")
			if !slices.ContainsFunc(first, func(f string) bool { return strings.HasPrefix(f, name+"=") }) {
				out = append(out, d)
			}
		}
		return out
	}
	for _, c := range []struct {
		env, defines      string
		want              []string
		mode, noser, stgs int
		keys128           int // keys per K/V tile at head dim 128
		overlap           bool
	}{
		{"", "", attnFwdWSDefines, 1, 1, 4, 64, false},
		{"1", "", attnFwdWSDefines, 1, 1, 4, 64, false},
		{"0", "", nil, 0, 0, 2, 128, false},
		{"", "HOP_WS_STAGES=3", rest("HOP_WS_STAGES=3"), 1, 1, 3, 64, false},
		{"", "HOP_WS_NOSER=0,HOP_WS_BN128=128", rest("HOP_WS_NOSER=0", "HOP_WS_BN128=128"), 1, 0, 4, 128, false},
		{"", "HOP_FWD_WS=2", []string{"HOP_FWD_WS=2"}, 2, 0, 2, 128, false},
		{"", "HOP_FWD_WS=0", []string{"HOP_FWD_WS=0"}, 0, 0, 2, 128, false},
		{"", "HOP_FWD_OVERLAP=1", []string{"HOP_FWD_OVERLAP=1"}, 0, 0, 2, 128, true},
		{"", " HOP_FWD_OVERLAP=0", rest("HOP_FWD_OVERLAP=0"), 1, 1, 4, 64, false},
		{"0", "HOP_FWD_WS=1,HOP_WS_NOSER=1", []string{"HOP_FWD_WS=1", "HOP_WS_NOSER=1"}, 1, 1, 2, 128, false},
	} {
		t.Setenv(AttnFwdWSEnv, c.env)
		t.Setenv("WHET_NVRTC_DEFINES", c.defines)
		what := fmt.Sprintf("%s=%q WHET_NVRTC_DEFINES=%q", AttnFwdWSEnv, c.env, c.defines)
		got := nvrtcDefines()
		if strings.Join(got, ",") != strings.Join(c.want, ",") {
			t.Errorf("%s: nvrtcDefines() = %q, want %q", what, got, c.want)
		}
		opts := compileOptions("sm_90a")
		for _, d := range c.want {
			if !strings.Contains(strings.Join(opts, " "), "-D"+d) {
				t.Errorf("%s: compileOptions %q lacks -D%s", what, opts, d)
			}
		}
		ws := hopperFwdWS()
		if ws.err != nil || ws.mode != c.mode || ws.noser != c.noser || ws.stages != c.stgs {
			t.Errorf("%s: hopperFwdWS() = %+v, want mode %d, noser %d, stages %d", what, ws, c.mode, c.noser, c.stgs)
		}
		if v, ok := nvrtcDefine("HOP_FWD_WS"); (c.mode != 0) && (!ok || v != strconv.Itoa(c.mode)) {
			t.Errorf("%s: nvrtcDefine(HOP_FWD_WS) = %q, %v; want %d", what, v, ok, c.mode)
		}
		if hopperOverlap() != c.overlap {
			t.Errorf("%s: hopperOverlap() = %v, want %v", what, hopperOverlap(), c.overlap)
		}
		for _, d := range []int{64, 128} {
			want := 1024 + 2*(attnHopperRows+4*attnHopperRows)*d
			switch {
			case c.mode != 0:
				keys := 128
				if d == 128 {
					keys = c.keys128
				}
				want = wsSmem(d, 128, c.stgs, keys)
			case c.overlap:
				want = 1024 + 2*(attnHopperRows+6*attnHopperRows)*d
			}
			if got := attnHopperSmem("forward", d); got != want {
				t.Errorf("%s: d%d forward shared memory %d, want %d", what, d, got, want)
			}
		}
		if c.mode == 1 && (ws.threads(64) != 384 || ws.threads(128) != 384 || ws.rows(64) != 128) {
			t.Errorf("%s: %d/%d threads, %d rows at d64; want the warp-specialised 384 and 128", what, ws.threads(64), ws.threads(128), ws.rows(64))
		}
	}
	// The default is the set tools/gpu/attn-fwd2's H100 run measured fastest
	// at d128 (2026-12-07 23:51 UTC): TMA copies, four stages, 64-key tiles
	// at d128.
	if !attnFwdWSDefault || strings.Join(attnFwdWSDefines, ",") != "HOP_FWD_WS=1,HOP_WS_NOSER=1,HOP_WS_BN128=64,HOP_WS_STAGES=4,HOP_WS_TMA=1" {
		t.Errorf("attnFwdWSDefault %v, attnFwdWSDefines %q", attnFwdWSDefault, attnFwdWSDefines)
	}
	for _, c := range []struct {
		env, value string
		bad        bool
	}{{AttnFwdWSEnv, "yes", true}, {AttnBwdFusedEnv, "2", true}, {AttnFwdWSEnv, "0", false}, {AttnBwdFusedEnv, "1", false}, {AttnFwdWSEnv, "", false}} {
		t.Setenv(AttnFwdWSEnv, "")
		t.Setenv(AttnBwdFusedEnv, "")
		t.Setenv(c.env, c.value)
		err := switchesErr()
		if (err != nil) != c.bad || (err != nil && !strings.Contains(err.Error(), c.env)) {
			t.Errorf("%s=%q: switchesErr() = %v, want an error naming it: %v", c.env, c.value, err, c.bad)
		}
	}
}

// wsCompileSets returns the ';'-separated define sets of
// WHET_WS_COMPILE_DEFINES (each comma-separated NAME=VALUE), or nil when it
// is unset: then TestHopperAttentionWSCompiles compiles hopperWSVariants
// and hopperWSSerialVariants as always; with it, only these sets
// (wsCompileReport), so that a GPU batch (tools/gpu/attn-fwd2) can compile
// just its variants, as WHET_FUSED_COMPILE_DEFINES does for the backward.
func wsCompileSets() ([]string, error) {
	env := os.Getenv("WHET_WS_COMPILE_DEFINES")
	if env == "" {
		return nil, nil
	}
	var sets []string
	for i, set := range strings.Split(env, ";") {
		set = strings.TrimSpace(set)
		if set == "" {
			continue
		}
		for _, d := range strings.Split(set, ",") {
			if name, _, ok := strings.Cut(d, "="); !ok || strings.TrimSpace(name) == "" {
				return nil, fmt.Errorf("WHET_WS_COMPILE_DEFINES: set %d (%q): %q is not NAME=VALUE", i+1, set, d)
			}
		}
		sets = append(sets, set)
	}
	if len(sets) == 0 {
		return nil, fmt.Errorf("WHET_WS_COMPILE_DEFINES=%q names no define set", env)
	}
	return sets, nil
}

// wsCompileReport compiles each define set for sm_90a with ptxas -v and
// logs one line per forward kernel that a batch can read:
//
//	ws-compile d128 regs=168 spill=0 serialised=none set=HOP_FWD_WS=1,...
//
// (serialised: ptxas's codes for that kernel's serialised wgmma, such as
// C7512, joined by '+'). It fails a set whose defines hopperFwdWS refuses,
// that does not compile, or whose setmaxnreg variant (HOP_FWD_WS=2) did not
// get the registers its producer and consumer counts add up to (the kernel
// would hang); serialised wgmma and spills are the batch's to judge per
// head dim, since one set may aim at one head dim only.
func wsCompileReport(t *testing.T, n *nvrtc, src string, sets []string) {
	for _, defines := range sets {
		t.Run(defines, func(t *testing.T) {
			t.Setenv("WHET_NVRTC_DEFINES", defines)
			ws := hopperFwdWS()
			t.Setenv("WHET_NVRTC_DEFINES", "")
			if ws.err != nil {
				t.Fatalf("%s: %v", defines, ws.err)
			}
			log := compileHopperVerbose(t, n, src, defines)
			t.Logf("%s, ptxas -v:\n%s", defines, log)
			ser := ptxasSerialized(log)
			regs, spills := ptxasRegs(log)
			for _, d := range []int{64, 128} {
				name := fmt.Sprintf("attention_forward_hopper_d%d", d)
				r, ok := regs[name]
				if !ok {
					t.Errorf("no register count for %s in the ptxas log", name)
					continue
				}
				codes := "none"
				if len(ser[name]) > 0 {
					codes = strings.Join(ser[name], "+")
				}
				t.Logf("ws-compile d%d regs=%d spill=%d serialised=%s set=%s (block of %d threads, %d rows, %d keys a tile, %d stages)",
					d, r, spills[name], codes, defines, ws.threads(d), ws.rows(d), ws.keys(d), ws.nstages(d))
				if want := 65536 / ws.threads(d) / 8 * 8; ws.mode == 2 && r != want {
					t.Errorf("%s has %d registers with setmaxnreg, want %d (the producer's and consumers' counts add up to that)", name, r, want)
				}
			}
		})
	}
}

// TestWSCompileSets: WHET_WS_COMPILE_DEFINES gives its ';'-separated sets,
// unset gives nil (the built-in lists), and a set with an entry that is
// not NAME=VALUE, or none at all, is an error naming the variable.
func TestWSCompileSets(t *testing.T) {
	t.Setenv("WHET_WS_COMPILE_DEFINES", "")
	if sets, err := wsCompileSets(); err != nil || sets != nil {
		t.Fatalf("unset: %v, %v; want nil, nil", sets, err)
	}
	t.Setenv("WHET_WS_COMPILE_DEFINES", " HOP_FWD_WS=1,HOP_WS_NOSER=1 ; HOP_FWD_WS=1,HOP_WS_NOSER=1,HOP_WS_BN128=64;")
	sets, err := wsCompileSets()
	if err != nil || len(sets) != 2 || sets[1] != "HOP_FWD_WS=1,HOP_WS_NOSER=1,HOP_WS_BN128=64" {
		t.Fatalf("two sets: got %q, %v", sets, err)
	}
	for _, bad := range []string{"HOP_FWD_WS=1,HOP_WS_NOSER", ";", "=1"} {
		t.Setenv("WHET_WS_COMPILE_DEFINES", bad)
		if _, err := wsCompileSets(); err == nil || !strings.Contains(err.Error(), "WHET_WS_COMPILE_DEFINES") {
			t.Errorf("%q: error %v, want one naming WHET_WS_COMPILE_DEFINES", bad, err)
		}
	}
}

// TestAttnFwd2BatchSets: every define set of tools/gpu/attn-fwd2/run.sh (its
// VARS lines, with $W and $W2 expanded) is one of hopperWSNewVariants, so
// that TestHopperWSConfig has checked that it parses and fits an H100 block
// before the batch spends GPU time on it, and every set there is run.
func TestAttnFwd2BatchSets(t *testing.T) {
	src, err := os.ReadFile("../../tools/gpu/attn-fwd2/run.sh")
	if err != nil {
		t.Fatal(err)
	}
	vars := map[string]string{}
	inVars := false
	var sets []string
	for _, line := range strings.Split(string(src), "\n") {
		if k, v, ok := strings.Cut(line, "="); ok && (k == "W" || k == "W2") {
			vars[k] = v
		}
		if strings.HasPrefix(line, "VARS=\"") {
			inVars, line = true, strings.TrimPrefix(line, "VARS=\"")
		}
		if !inVars {
			continue
		}
		end := strings.HasSuffix(line, "\"")
		line = strings.TrimSuffix(line, "\"")
		_, set, ok := strings.Cut(line, ":")
		if !ok {
			t.Fatalf("run.sh: VARS line %q is not name:defines", line)
		}
		set = strings.NewReplacer("$W2", vars["W2"], "$W", vars["W"]).Replace(set)
		sets = append(sets, set)
		if end {
			break
		}
	}
	if len(sets) == 0 || vars["W"] == "" || vars["W2"] == "" {
		t.Fatalf("run.sh: no VARS sets or no W/W2 (%d sets, %v)", len(sets), vars)
	}
	for _, set := range sets {
		if !slices.Contains(hopperWSNewVariants, set) {
			t.Errorf("tools/gpu/attn-fwd2 runs %q, which hopperWSNewVariants lacks", set)
		}
	}
	for _, set := range hopperWSNewVariants {
		if !slices.Contains(sets, set) {
			t.Errorf("hopperWSNewVariants has %q, which tools/gpu/attn-fwd2 does not run", set)
		}
	}
}
