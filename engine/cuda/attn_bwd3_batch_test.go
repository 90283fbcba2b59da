package cuda

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// TestAttnBwd3BatchSets: tools/gpu/attn-bwd3/run.sh runs what it says
// before it spends GPU time: its o2td set is today's default backward
// (attnBwdFusedDefines), w64td and w2td add attnBwdWG1D64Define and
// attnBwdWG1Define, and each fits an H100 block (two an SM where a head
// dim runs one warpgroup); FWD0 is today's default forward
// (attnFwdWSDefines) and FWD the same with HOP_WS_STAGES128=4 in place of
// HOP_WS_STAGES=4 (two stages of 128 keys at d64, four of 64 at d128); and
// every test its -test.run patterns name, and every benchmark of its
// -test.bench pattern, is declared in this package.
func TestAttnBwd3BatchSets(t *testing.T) {
	src, err := os.ReadFile("../../tools/gpu/attn-bwd3/run.sh")
	if err != nil {
		t.Fatal(err)
	}
	script := string(src)
	shell := map[string]string{}
	sets := map[string]string{}
	var names []string
	inVars := false
	for i, line := range strings.Split(script, "\n") {
		if k, v, ok := strings.Cut(line, "="); ok && (k == "D" || k == "FWD0" || k == "FWD") {
			shell[k] = v
		}
		if strings.HasPrefix(line, `VARS="`) {
			inVars, line = true, strings.TrimPrefix(line, `VARS="`)
		}
		if !inVars {
			continue
		}
		end := strings.HasSuffix(line, `"`)
		name, set, ok := strings.Cut(strings.TrimSuffix(line, `"`), ":")
		if !ok {
			t.Fatalf("run.sh:%d: VARS line %q is not name:defines", i+1, line)
		}
		sets[name] = strings.ReplaceAll(set, "$D", shell["D"])
		names = append(names, name)
		if end {
			inVars = false
		}
	}
	def := strings.Join(attnBwdFusedDefines, ",")
	if shell["D"] != def {
		t.Errorf("run.sh: D=%q, want today's default backward %q (attnBwdFusedDefines)", shell["D"], def)
	}
	want := map[string]string{"o2td": def, "w64td": def + "," + attnBwdWG1D64Define, "w2td": def + "," + attnBwdWG1Define}
	if !slices.Equal(names, []string{"o2td", "w64td", "w2td"}) {
		t.Errorf("run.sh: VARS names %q, want o2td, w64td, w2td", names)
	}
	for name, set := range want {
		if sets[name] != set {
			t.Errorf("run.sh: %s is %q, want %q", name, sets[name], set)
		}
		t.Setenv(AttnBwdFusedEnv, "0")
		t.Setenv("WHET_NVRTC_DEFINES", set)
		k := AttnKernelsFor("sm_90")
		for d := range attnHopperHeadDims {
			smem, limit := attnHopperFusedSmem(d), 227*1024
			if k.OneWarpgroup(d) {
				limit = 228*1024/2 - 1024 // two blocks an SM, 1 KB each reserved
			}
			if smem > limit {
				t.Errorf("%s at d%d: %d bytes of shared memory, more than %d", name, d, smem, limit)
			}
		}
	}

	if fwd0 := strings.Join(attnFwdWSDefines, ","); shell["FWD0"] != fwd0 {
		t.Errorf("run.sh: FWD0=%q, want today's default forward %q (attnFwdWSDefines)", shell["FWD0"], fwd0)
	}
	if fwd := strings.Replace(shell["FWD0"], "HOP_WS_STAGES=4", "HOP_WS_STAGES128=4", 1); shell["FWD"] != fwd || fwd == shell["FWD0"] {
		t.Errorf("run.sh: FWD=%q, want FWD0 with HOP_WS_STAGES128=4 for HOP_WS_STAGES=4 (%q)", shell["FWD"], fwd)
	}
	t.Setenv(AttnBwdFusedEnv, "")
	t.Setenv(AttnFwdWSEnv, "")
	t.Setenv("WHET_NVRTC_DEFINES", shell["FWD"])
	ws := hopperFwdWS()
	if ws.err != nil || ws.mode != 1 || ws.tma != 1 || ws.nstages(64) != 2 || ws.keys(64) != 128 || ws.nstages(128) != 4 || ws.keys(128) != 64 {
		t.Errorf("FWD %q: %+v (err %v), d64 %d stages of %d keys, d128 %d of %d; want 2 of 128, 4 of 64", shell["FWD"], ws, ws.err, ws.nstages(64), ws.keys(64), ws.nstages(128), ws.keys(128))
	}
	for d := range attnHopperHeadDims {
		if smem := attnHopperSmem("forward", d); smem > 227*1024 {
			t.Errorf("FWD at d%d: %d bytes of shared memory, over 227 KB", d, smem)
		}
	}

	// The tests and benchmarks the script names.
	declared := map[string]bool{}
	files, err := filepath.Glob("*_test.go")
	if err != nil {
		t.Fatal(err)
	}
	decl := regexp.MustCompile(`(?m)^func ((?:Test|Benchmark)\w+)\(`)
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range decl.FindAllStringSubmatch(string(b), -1) {
			declared[m[1]] = true
		}
	}
	runs := regexp.MustCompile(`-test\.run '([^']*)'`).FindAllStringSubmatch(script, -1)
	if len(runs) < 5 {
		t.Errorf("run.sh: %d -test.run patterns, want the compiles', the tests' and the benches' (5)", len(runs))
	}
	for _, m := range runs {
		if m[1] == "^$" || m[1] == `^\$` { // the benches' (and the summary's line for them)
			continue
		}
		for _, alt := range strings.Split(m[1], "|") {
			if name := strings.TrimSuffix(strings.TrimPrefix(alt, "^"), "$"); !declared[name] {
				t.Errorf("run.sh: -test.run '%s' names %s, which engine/cuda does not declare", m[1], name)
			}
		}
	}
	if !strings.Contains(script, `-test.bench "Attention$what(D128)?\$"`) {
		t.Error(`run.sh no longer benches "Attention$what(D128)?$": update this test`)
	}
	// bench NAME WHAT ENV... calls (commands: at a line's start, after
	// "do", ";" or "&&"), outside comments.
	var whats [][]string
	call := regexp.MustCompile(`(?:^|;|&&|\)|\bdo)\s*bench [\w$-]+ (\w+)\s`)
	for _, line := range strings.Split(script, "\n") {
		code, _, _ := strings.Cut(line, "#")
		whats = append(whats, call.FindAllStringSubmatch(code, -1)...)
	}
	if len(whats) < 5 {
		t.Errorf("run.sh: %d bench calls found, want the backward sets', o2td's again and the forward's (5)", len(whats))
	}
	for _, m := range whats {
		for _, name := range []string{"BenchmarkAttention" + m[1], "BenchmarkAttention" + m[1] + "D128"} {
			if !declared[name] {
				t.Errorf("run.sh benches %s, which engine/cuda does not declare", name)
			}
		}
	}
}
