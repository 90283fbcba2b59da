package cuda

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"whet/engine/internal/cctest"
	"whet/kernels"
)

// Tests of the architecture rules (nvrtc.go): which cards are accepted,
// the override that stands in for a card one does not have, and that
// every kernel compiles for every target architecture.

func TestParseArch(t *testing.T) {
	for _, c := range []struct {
		in           string
		major, minor int
	}{{"sm_75", 7, 5}, {"sm_80", 8, 0}, {"sm_90", 9, 0}, {"sm_100", 10, 0}, {"sm_120", 12, 0}, {"sm_121", 12, 1}} {
		major, minor, err := parseArch(c.in)
		if err != nil || major != c.major || minor != c.minor {
			t.Errorf("parseArch(%q) = %d.%d, %v; want %d.%d", c.in, major, minor, err, c.major, c.minor)
		}
		if got := archName(c.major, c.minor); got != c.in {
			t.Errorf("archName(%d, %d) = %q, want %q", c.major, c.minor, got, c.in)
		}
	}
	for _, bad := range []string{"", "sm_", "sm_9", "sm_1210", "sm_90a", "compute_90", "9.0", "SM_90", "sm_x0"} {
		if _, _, err := parseArch(bad); err == nil {
			t.Errorf("parseArch(%q) accepted it", bad)
		}
	}
}

func TestDeviceArch(t *testing.T) {
	for _, c := range []struct {
		major, minor int
		override     string
		want         string // the architecture, or "" for an error
		errHas       []string
		unsupported  bool // the error wraps ErrUnsupportedArch
	}{
		{8, 0, "", "sm_80", nil, false},
		{8, 6, "", "sm_86", nil, false},
		{8, 9, "", "sm_89", nil, false},
		{9, 0, "", "sm_90", nil, false},
		{10, 0, "", "sm_100", nil, false},
		{12, 0, "", "sm_120", nil, false},
		{12, 1, "", "sm_121", nil, false},
		{7, 5, "", "", []string{"device 0 (Test GPU) is sm_75 (compute capability 7.5)", "sm_80 (Ampere) or newer", "backend: cpu"}, true},
		{6, 1, "", "", []string{"is sm_61", "sm_80 (Ampere) or newer"}, true},
		// The override stands in for an older card: refused as it would be.
		{9, 0, "sm_75", "", []string{"is sm_75 (compute capability 7.5 as WHET_CUDA_ARCH=sm_75 says; the device reports 9.0)", "sm_80 (Ampere) or newer"}, true},
		{12, 1, "sm_70", "", []string{"is sm_70"}, true},
		// ... or for an older card of the device's generation, which it runs.
		{8, 6, "sm_80", "sm_80", nil, false},
		{12, 1, "sm_120", "sm_120", nil, false},
		{9, 0, "sm_90", "sm_90", nil, false},
		// Code for a newer card or another generation would not load.
		{9, 0, "sm_100", "", []string{"WHET_CUDA_ARCH=sm_100", "device 0 (Test GPU, sm_90) cannot run code built for sm_100"}, false},
		{9, 0, "sm_80", "", []string{"cannot run code built for sm_80"}, false},
		{8, 0, "sm_86", "", []string{"cannot run code built for sm_86"}, false},
		{9, 0, "90", "", []string{"WHET_CUDA_ARCH", `"90" is not an architecture`}, false},
	} {
		got, err := deviceArch(0, "Test GPU", c.major, c.minor, c.override)
		name := archName(c.major, c.minor) + " override " + c.override
		if c.want != "" {
			if err != nil || got != c.want {
				t.Errorf("%s: got %q, %v; want %s", name, got, err, c.want)
			}
			continue
		}
		if err == nil {
			t.Errorf("%s: accepted as %q, want an error", name, got)
			continue
		}
		for _, s := range c.errHas {
			if !strings.Contains(err.Error(), s) {
				t.Errorf("%s: error %q does not say %q", name, err, s)
			}
		}
		if errors.Is(err, ErrUnsupportedArch) != c.unsupported {
			t.Errorf("%s: errors.Is(err, ErrUnsupportedArch) = %v, want %v (%v)", name, !c.unsupported, c.unsupported, err)
		}
		if errors.Is(err, ErrNoGPU) {
			t.Errorf("%s: an unsupported card is not ErrNoGPU (auto would pass over it silently): %v", name, err)
		}
	}
}

// TestOldGPURefused opens the backend on the real device while
// WHET_CUDA_ARCH pretends it is a Turing card (sm_75): New must refuse it
// with its one message, before any context or kernel is made. Needs a GPU.
func TestOldGPURefused(t *testing.T) {
	if _, err := openDriver(); err != nil {
		t.Skipf("skipping: needs the NVIDIA driver and a GPU: %v", err)
	}
	t.Setenv(archOverrideEnv, "sm_75")
	b, err := New(Options{CacheDir: "-"})
	if err == nil {
		b.Close()
		t.Fatalf("New accepted the device as sm_75")
	}
	if errors.Is(err, ErrNoGPU) && os.Getenv("WHET_CUDA_REQUIRE") != "1" {
		t.Skipf("skipping: no usable GPU: %v", err)
	}
	if !errors.Is(err, ErrUnsupportedArch) {
		t.Fatalf("New's error is not ErrUnsupportedArch: %v", err)
	}
	for _, want := range []string{"is sm_75", "WHET_CUDA_ARCH=sm_75", "sm_80 (Ampere) or newer"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("New's error %q does not say %q", err, want)
		}
	}
	t.Logf("refused: %v", err)

	// The same device without the override opens.
	t.Setenv(archOverrideEnv, "")
	b, err = New(Options{CacheDir: "-"})
	if err != nil {
		t.Fatalf("without %s: %v", archOverrideEnv, err)
	}
	t.Logf("without the override: %s", b.Name())
	b.Close()
}

// TestOldGPURefusedByFakeDriver runs New in a child process whose loader
// finds testdata/fakecuda.c as libcuda.so.1 (a "Fake H100", compute
// capability 9.0), so the architecture check is tested through New on
// machines without a GPU: WHET_CUDA_ARCH=sm_75 is refused with the one
// message, while without the override (or with sm_90) New passes the check
// and stops at the fake's first context call.
func TestOldGPURefusedByFakeDriver(t *testing.T) {
	so := cctest.SharedLib(t, "fakecuda.c", "libcuda.so.1")
	for _, c := range []struct {
		override    string
		unsupported bool
		want        string
	}{
		{"sm_75", true, "cuda: device 0 (Fake H100) is sm_75 (compute capability 7.5 as WHET_CUDA_ARCH=sm_75 says; the device reports 9.0): GPU architecture not supported: whet's GPU kernels need sm_80 (Ampere) or newer"},
		{"sm_61", true, "device 0 (Fake H100) is sm_61"},
		{"", false, "cuDevicePrimaryCtxRetain: CUDA_ERROR_UNKNOWN (999)"},
		{"sm_90", false, "cuDevicePrimaryCtxRetain: CUDA_ERROR_UNKNOWN (999)"},
		{"sm_100", false, "WHET_CUDA_ARCH=sm_100: device 0 (Fake H100, sm_90) cannot run code built for sm_100"},
	} {
		cmd := exec.Command(os.Args[0], "-test.run=^TestFakeDriverChild$", "-test.count=1")
		cmd.Env = append(os.Environ(), "WHET_TEST_FAKE_CUDA=1", "LD_LIBRARY_PATH="+filepath.Dir(so), archOverrideEnv+"="+c.override)
		out, err := cmd.CombinedOutput()
		if err != nil && strings.Contains(err.Error(), "exec format error") {
			t.Skipf("cannot start the test binary again (%v): it runs under an emulator without binfmt", err)
		}
		if err != nil {
			t.Fatalf("override %q: the child failed: %v\n%s", c.override, err, out)
		}
		got := string(out)
		if !strings.Contains(got, "device 0: Fake H100") {
			t.Fatalf("override %q: the child did not open the fake driver:\n%s", c.override, got)
		}
		if !strings.Contains(got, c.want) {
			t.Errorf("override %q: New's error does not say %q:\n%s", c.override, c.want, got)
		}
		if strings.Contains(got, "ErrUnsupportedArch: true") != c.unsupported {
			t.Errorf("override %q: want errors.Is(err, ErrUnsupportedArch) %v:\n%s", c.override, c.unsupported, got)
		}
	}
}

// TestFakeDriverChild is TestOldGPURefusedByFakeDriver's child: it reports
// New's error. It does nothing when run on its own.
func TestFakeDriverChild(t *testing.T) {
	if os.Getenv("WHET_TEST_FAKE_CUDA") != "1" {
		t.Skip("run by TestOldGPURefusedByFakeDriver")
	}
	d, err := openDriver()
	if err != nil {
		t.Fatalf("opening the fake driver (does testdata/fakecuda.c define every symbol openDriver binds?): %v", err)
	}
	if err := d.call("cuInit", d.cuInit, 0); err != nil {
		t.Fatal(err)
	}
	name, err := d.deviceName(0)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Printf("driver %s, device 0: %s\n", d.lib.path, name)
	b, err := New(Options{CacheDir: "-"})
	if err == nil {
		b.Close()
		t.Fatal("New succeeded on the fake driver")
	}
	fmt.Printf("New: %v\nErrUnsupportedArch: %v\n", err, errors.Is(err, ErrUnsupportedArch))
}

// TestKernelsCompileForEveryArch compiles every kernel file with NVRTC for
// every target architecture, without running anything (NVRTC needs no
// such card, only a version that knows the architecture), and checks
// that each cubin is built for that architecture and holds every kernel
// the source declares. One subtest per architecture, so that runs can be
// split (-test.run 'TestKernelsCompileForEveryArch/^sm_121$'). Needs
// libnvrtc; skips without it (unless WHET_CUDA_REQUIRE=1).
func TestKernelsCompileForEveryArch(t *testing.T) {
	n := openNVRTCOrSkip(t)
	known, err := n.supportedArchs()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("NVRTC %d.%d (%s) compiles for %v", n.major, n.minor, n.lib.path, known)
	headers := kernels.Headers()
	for _, arch := range targetArchs {
		t.Run(arch, func(t *testing.T) {
			if err := n.checkArch(arch); err != nil {
				t.Fatal(err)
			}
			major, minor, _ := parseArch(arch)
			sm := major*10 + minor
			total := 0
			for _, file := range kernels.Names() {
				src, err := kernels.Source(file)
				if err != nil {
					t.Fatal(err)
				}
				cubin, err := n.compile(file, src, headers, arch)
				if err != nil {
					t.Errorf("%v", err)
					continue
				}
				flags, funcs, err := cubinInfo(cubin)
				if err != nil {
					t.Errorf("%s for %s: %v", file, arch, err)
					continue
				}
				// The ELF flags carry the SM number: in the low byte (ELF
				// ABI 7, sm_90's flags 0x5a055a) or the next (newer ABI).
				if flags&0xff != uint32(sm) && (flags>>8)&0xff != uint32(sm) {
					t.Errorf("%s for %s: the cubin's ELF flags %#x do not name sm %d", file, arch, flags, sm)
				}
				declared := kernels.Declared(src)
				for _, k := range declared {
					if !funcs[k] {
						t.Errorf("%s for %s: kernel %s is not in the cubin", file, arch, k)
					}
				}
				total += len(declared)
				t.Logf("%s %-16s %3d kernels, cubin %7d bytes, ELF flags %#x", arch, file, len(declared), len(cubin), flags)
			}
			t.Logf("%s: %d kernels in %d files compiled", arch, total, len(kernels.Names()))
		})
	}
}

// cubinInfo reads a cubin's ELF header flags and the names of the
// functions it defines.
func cubinInfo(cubin []byte) (flags uint32, funcs map[string]bool, err error) {
	if len(cubin) < 64 || string(cubin[:4]) != elf.ELFMAG || elf.Class(cubin[elf.EI_CLASS]) != elf.ELFCLASS64 {
		return 0, nil, errors.New("not an ELF64 file")
	}
	// NVIDIA writes its own version into the ELF version fields (ident
	// byte 6 and e_version, e.g. 118), which debug/elf refuses; a copy
	// with the standard version reads as any ELF.
	c := bytes.Clone(cubin)
	c[elf.EI_VERSION] = byte(elf.EV_CURRENT)
	order := binary.ByteOrder(binary.LittleEndian)
	if elf.Data(c[elf.EI_DATA]) == elf.ELFDATA2MSB {
		order = binary.BigEndian
	}
	order.PutUint32(c[20:24], uint32(elf.EV_CURRENT))
	flags = order.Uint32(c[48:52]) // e_flags, which debug/elf does not keep
	f, err := elf.NewFile(bytes.NewReader(c))
	if err != nil {
		return 0, nil, err
	}
	defer f.Close()
	const emCUDA = 190
	if f.Machine != emCUDA {
		return 0, nil, errors.New("not a CUDA ELF (machine " + f.Machine.String() + ")")
	}
	syms, err := f.Symbols()
	if err != nil {
		return 0, nil, err
	}
	funcs = map[string]bool{}
	for _, s := range syms {
		if elf.ST_TYPE(s.Info) == elf.STT_FUNC && s.Section != elf.SHN_UNDEF {
			funcs[s.Name] = true
		}
	}
	return flags, funcs, nil
}

// hopperOnly are PTX instructions that Ampere and Ada lack. wgmma and
// setmaxnreg exist only on sm_90a (arch-specific: not even on sm_100 or
// sm_120); the bulk/tensor copies (TMA), their mbarrier transaction counts
// and thread-block clusters need sm_90 or newer.
var hopperOnly = []struct {
	re    *regexp.Regexp
	guard string // a macro the enclosing #if must test
}{
	{regexp.MustCompile(`\bwgmma\.`), "__CUDA_ARCH_FEAT_SM90_ALL"},
	{regexp.MustCompile(`\bsetmaxnreg\.`), "__CUDA_ARCH_FEAT_SM90_ALL"},
	{regexp.MustCompile(`\bcp\.(reduce\.)?async\.bulk\b`), "__CUDA_ARCH__"},
	{regexp.MustCompile(`\bmbarrier\.[a-z_.]*expect_tx\b`), "__CUDA_ARCH__"},
	{regexp.MustCompile(`\bbarrier\.cluster\b|%cluster_ctarank|\bmapa\.`), "__CUDA_ARCH__"},
	// stmatrix and vector fp32 reductions (the fused attention backward's)
	// need sm_90: __CUDA_ARCH__ >= 900 or the sm_90a feature macro.
	{regexp.MustCompile(`\bstmatrix\.`), "__CUDA_ARCH"},
	{regexp.MustCompile(`\bred\.[a-z:.]*\.v[24]\.f32\b`), "__CUDA_ARCH"},
}

// ungatedHopperCode lists the lines of src that use a Hopper-only
// instruction outside a preprocessor branch whose condition tests the
// macro that gates it (an #else or #elif branch of such a test does not
// count: it is the other architectures' side).
func ungatedHopperCode(src string) []string {
	var stack [][]string // per open #if: the conditions of its active branch
	var bad []string
	for i, line := range strings.Split(src, "\n") {
		trimmed := strings.TrimSpace(line)
		if d, ok := strings.CutPrefix(trimmed, "#"); ok {
			d = strings.TrimSpace(d)
			switch {
			case strings.HasPrefix(d, "ifdef"), strings.HasPrefix(d, "if"):
				stack = append(stack, []string{d})
			case strings.HasPrefix(d, "elif"), strings.HasPrefix(d, "else"):
				if len(stack) > 0 {
					stack[len(stack)-1] = []string{d} // the first branch's test no longer applies
				}
			case strings.HasPrefix(d, "endif"):
				if len(stack) > 0 {
					stack = stack[:len(stack)-1]
				}
			}
			continue
		}
		for _, h := range hopperOnly {
			if !h.re.MatchString(line) {
				continue
			}
			gated := false
			for _, conds := range stack {
				for _, c := range conds {
					if testsGuard(c, h.guard) {
						gated = true
					}
				}
			}
			if !gated {
				bad = append(bad, strings.TrimSpace(line)+" (line "+strconv.Itoa(i+1)+", needs #if on "+h.guard+")")
			}
		}
	}
	return bad
}

// testsGuard says whether a directive (without its #) opens a branch that
// only code built with guard (defined, or compared) compiles: #if or #elif
// on the macro, not #ifndef, #else or a negation.
func testsGuard(directive, guard string) bool {
	d := strings.ReplaceAll(directive, " ", "")
	if strings.HasPrefix(d, "ifndef") || strings.HasPrefix(d, "else") ||
		strings.Contains(d, "!defined("+guard) || strings.Contains(d, "!"+guard) {
		return false
	}
	return strings.Contains(d, guard)
}

// TestHopperOnlyInstructionsAreGated: the kernels serve every target with
// mma.sync; an instruction that only Hopper has must sit in a branch that
// the other architectures compile out. (TestKernelsCompileForEveryArch is
// the proof on the GPU machine; this catches it in CI.)
func TestHopperOnlyInstructionsAreGated(t *testing.T) {
	for _, file := range append(kernels.Names(), "common.cuh") {
		src, ok := kernels.Headers()[file]
		if !ok {
			var err error
			if src, err = kernels.Source(file); err != nil {
				t.Fatal(err)
			}
		}
		for _, l := range ungatedHopperCode(src) {
			t.Errorf("kernels/%s: Hopper-only instruction outside an architecture test: %s", file, l)
		}
	}
	// The scanner itself.
	gated := "#if defined(__CUDA_ARCH_FEAT_SM90_ALL)\nasm(\"wgmma.fence.sync.aligned;\");\n#else\nmma();\n#endif\n" +
		"#if __CUDA_ARCH__ >= 900\nasm(\"cp.async.bulk.tensor.2d.shared::cluster.global [%0], [%1];\");\n#endif\n" +
		"#if defined(__CUDA_ARCH_FEAT_SM90_ALL) && HOP_BWD_FUSED\nasm(\"stmatrix.sync.aligned.m8n8.x4.trans.shared.b16 [%0], {%1, %2, %3, %4};\");\n#endif\n" +
		"#if __CUDA_ARCH__ >= 900\nasm(\"red.global.add.v2.f32 [%0], {%1, %2};\");\n#endif\nasm(\"red.global.add.f32 [%0], %1;\");\n"
	if bad := ungatedHopperCode(gated); len(bad) != 0 {
		t.Errorf("gated code flagged: %v", bad)
	}
	for _, src := range []string{
		"asm(\"wgmma.mma_async.sync.aligned.m64n64k16.f32.bf16.bf16 ...\");\n",
		"#if defined(__CUDA_ARCH_FEAT_SM90_ALL)\nmma();\n#else\nasm(\"wgmma.fence.sync.aligned;\");\n#endif\n",
		"#if __CUDA_ARCH__ >= 900\nfoo();\n#endif\nasm(\"cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes [%0];\");\n",
		"#if __CUDA_ARCH__ >= 900\nasm(\"wgmma.fence.sync.aligned;\");\n#endif\n", // sm_90 is not sm_90a
		"#ifndef __CUDA_ARCH_FEAT_SM90_ALL\nasm(\"wgmma.fence.sync.aligned;\");\n#endif\n",
		"#if !defined(__CUDA_ARCH_FEAT_SM90_ALL)\nasm(\"wgmma.fence.sync.aligned;\");\n#endif\n",
		"asm(\"stmatrix.sync.aligned.m8n8.x4.trans.shared.b16 [%0], {%1, %2, %3, %4};\");\n",
		"#if HOP_BWD_FUSED\nasm(\"red.global.add.v2.f32 [%0], {%1, %2};\");\n#endif\n",
	} {
		if bad := ungatedHopperCode(src); len(bad) != 1 {
			t.Errorf("ungated code not flagged once (%v):\n%s", bad, src)
		}
	}
}

// openNVRTCOrSkip opens NVRTC for a compile test, which needs libnvrtc
// but no GPU: without it the test skips (fails with WHET_CUDA_REQUIRE=1).
func openNVRTCOrSkip(t *testing.T) *nvrtc {
	t.Helper()
	n, err := openNVRTC()
	if err != nil {
		if os.Getenv("WHET_CUDA_REQUIRE") == "1" {
			t.Fatal(err)
		}
		t.Skipf("skipping: needs NVRTC: %v", err)
	}
	return n
}

// hopperSource is kernels/attention_hopper.cu's source.
func hopperSource(t *testing.T) string {
	t.Helper()
	src, err := kernels.Source(attnHopperFile)
	if err != nil {
		t.Fatal(err)
	}
	return src
}

// compileHopperVerbose compiles src as attention_hopper.cu for sm_90a with
// ptxas -v and -D for each of the comma-separated defines, and returns
// NVRTC's log (registers, spills, serialised wgmma); a failed compile
// fails the test.
func compileHopperVerbose(t *testing.T, n *nvrtc, src, defines string) string {
	t.Helper()
	opts := []string{"--ptxas-options=-v"}
	for _, d := range strings.Split(defines, ",") {
		opts = append(opts, "-D"+d)
	}
	_, log, err := n.compileLog(attnHopperFile, src, kernels.Headers(), "sm_90a", opts...)
	if err != nil {
		t.Fatal(err)
	}
	return log
}

// TestHopperAttentionCompiles compiles kernels/attention_hopper.cu for
// sm_90a, as the backend does on an sm_90 card with AttnHopperEnv set and
// the default defines (nvrtcDefines: the fused backward's and the
// warp-specialised forward's, unless switched off in the environment)
// (TestKernelsCompileForEveryArch builds it for plain sm_90, where the
// kernels are traps), checks that its kernels are in the cubin, and logs
// NVRTC's messages and, from a second compile with ptxas -v, the
// registers and spills of each kernel; it fails when ptxas serialises the
// wgmma of any kernel ("wgmma.mma_async instructions are serialized",
// C75xx: checkNotSerialized). Needs libnvrtc, not a GPU; skips
// without it (unless WHET_CUDA_REQUIRE=1).
func TestHopperAttentionCompiles(t *testing.T) {
	n, src := openNVRTCOrSkip(t), hopperSource(t)
	cubin, log, err := n.compileLog(attnHopperFile, src, kernels.Headers(), "sm_90a")
	if err != nil {
		t.Fatal(err) // carries NVRTC's whole log
	}
	if log != "" {
		t.Logf("NVRTC %d.%d log for %s (sm_90a):\n%s", n.major, n.minor, attnHopperFile, log)
	}
	flags, funcs, err := cubinInfo(cubin)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range kernels.Declared(src) {
		if !funcs[k] {
			t.Errorf("kernel %s is not in the sm_90a cubin", k)
		}
	}
	t.Logf("%s for sm_90a: cubin %d bytes, ELF flags %#x", attnHopperFile, len(cubin), flags)
	// For plain sm_90 the kernels are traps; if sm_90a gave no more code,
	// NVRTC did not define __CUDA_ARCH_FEAT_SM90_ALL and every kernel traps.
	if plain, err := n.compile(attnHopperFile, src, kernels.Headers(), "sm_90"); err != nil {
		t.Errorf("compiling for plain sm_90 (the trap kernels): %v", err)
	} else if len(cubin) < 4*len(plain) {
		t.Errorf("the sm_90a cubin (%d bytes) is not much larger than the plain sm_90 one of trap kernels (%d bytes): the wgmma branch (#if defined(__CUDA_ARCH_FEAT_SM90_ALL)) was not compiled", len(cubin), len(plain))
	} else {
		t.Logf("sm_90 cubin of trap kernels: %d bytes", len(plain))
	}
	if _, vlog, err := n.compileLog(attnHopperFile, src, kernels.Headers(), "sm_90a", "--ptxas-options=-v"); err != nil {
		t.Errorf("compile with ptxas -v (register counts, serialised wgmma): %v", err)
	} else {
		t.Logf("ptxas -v:\n%s", vlog)
		checkNotSerialized(t, "default defines", vlog)
	}
}

// TestHopperAttentionOverlapCompiles compiles the experimental overlapped
// Hopper forward (-DHOP_FWD_OVERLAP=1, selected at run time through
// WHET_NVRTC_DEFINES) for sm_90a, logging ptxas -v. A separate test so that
// its failure is not taken for the default Hopper kernels'.
func TestHopperAttentionOverlapCompiles(t *testing.T) {
	n, src := openNVRTCOrSkip(t), hopperSource(t)
	// Without the default defines: the kernel refuses HOP_FWD_WS with
	// HOP_FWD_OVERLAP (nvrtcDefines leaves it out when WHET_NVRTC_DEFINES
	// asks for the overlap; here -D asks).
	t.Setenv(AttnFwdWSEnv, "0")
	t.Setenv(AttnBwdFusedEnv, "0")
	_, log, err := n.compileLog(attnHopperFile, src, kernels.Headers(), "sm_90a", "-DHOP_FWD_OVERLAP=1", "--ptxas-options=-v")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("HOP_FWD_OVERLAP=1, ptxas -v:\n%s", log)
}
