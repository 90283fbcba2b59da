package cuda

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"unsafe"

	"github.com/ebitengine/purego"

	"whet/engine/envswitch"
)

// nvrtc holds the entry points of libnvrtc that compile kernels at run
// time, for the exact architecture of the device in hand.
type nvrtc struct {
	lib          *library
	major, minor int

	nvrtcVersion, nvrtcGetErrorString          uintptr
	nvrtcCreateProgram, nvrtcDestroyProgram    uintptr
	nvrtcCompileProgram                        uintptr
	nvrtcGetProgramLogSize, nvrtcGetProgramLog uintptr
	nvrtcGetCUBINSize, nvrtcGetCUBIN           uintptr
	nvrtcGetNumSupportedArchs                  uintptr
	nvrtcGetSupportedArchs                     uintptr
}

func openNVRTC() (*nvrtc, error) {
	lib, err := openLibrary("NVRTC, the CUDA run-time compiler (libnvrtc)", "libnvrtc.so.13", "libnvrtc.so.12")
	if err != nil {
		return nil, err
	}
	n := &nvrtc{lib: lib}
	err = lib.bind(map[string]*uintptr{
		"nvrtcVersion":           &n.nvrtcVersion,
		"nvrtcGetErrorString":    &n.nvrtcGetErrorString,
		"nvrtcCreateProgram":     &n.nvrtcCreateProgram,
		"nvrtcDestroyProgram":    &n.nvrtcDestroyProgram,
		"nvrtcCompileProgram":    &n.nvrtcCompileProgram,
		"nvrtcGetProgramLogSize": &n.nvrtcGetProgramLogSize,
		"nvrtcGetProgramLog":     &n.nvrtcGetProgramLog,
		"nvrtcGetCUBINSize":      &n.nvrtcGetCUBINSize,
		"nvrtcGetCUBIN":          &n.nvrtcGetCUBIN,
		// Both since CUDA 11.2, so in every libnvrtc.so.12 and .13.
		"nvrtcGetNumSupportedArchs": &n.nvrtcGetNumSupportedArchs,
		"nvrtcGetSupportedArchs":    &n.nvrtcGetSupportedArchs,
	})
	if err != nil {
		return nil, err
	}
	var major, minor int32
	if err := n.call("nvrtcVersion", n.nvrtcVersion, uintptr(unsafe.Pointer(&major)), uintptr(unsafe.Pointer(&minor))); err != nil {
		return nil, err
	}
	n.major, n.minor = int(major), int(minor)
	return n, nil
}

//go:uintptrescapes
func (n *nvrtc) call(name string, fn uintptr, args ...uintptr) error {
	r, _, _ := purego.SyscallN(fn, args...)
	code := int(int32(uint32(r)))
	if code == 0 {
		return nil
	}
	desc := ""
	if s, _, _ := purego.SyscallN(n.nvrtcGetErrorString, uintptr(code)); s != 0 {
		desc = cString(*(**byte)(unsafe.Pointer(&s)))
	}
	return &Error{Call: name, Code: code, Name: desc}
}

// compileOptions are passed to every compilation; they are part of the
// cache key. PDLEnv=1 adds -DWHET_PDL=1. No fast-math: the kernels must match the float32 reference.
// WHET_NVRTC_DEFINES (comma-separated NAME=VALUE) adds -D options: a
// tuning knob for kernel constants that have a default in the source
// (e.g. ATTN_FWD_MINB, the blocks per SM attention's forward is compiled
// for), used to compare variants on a GPU without rebuilding whet;
// the defaults of the fused attention backward and the warp-specialised
// Hopper forward follow unless switched off or overridden (nvrtcDefines).
func compileOptions(arch string) []string {
	opts := []string{"--gpu-architecture=" + arch, "--std=c++17", "-default-device", "--fmad=true"}
	if pdlOn() {
		// The kernels' griddepcontrol instructions (pdl.go); they compile
		// to nothing below sm_90.
		opts = append(opts, "-DWHET_PDL=1")
	}
	defs := nvrtcDefines() // WHET_NVRTC_DEFINES, then the defaults it leaves
	for _, d := range defs {
		opts = append(opts, "-D"+d)
	}
	if pdlOn() && pdlArch(arch) {
		// The GEMVs' early loads go with PDL (pdlDefines), where it runs:
		// below sm_90 the kernels keep their L2 prefetch.
		for _, d := range pdlDefines {
			name, _, _ := strings.Cut(d, "=")
			if !slices.ContainsFunc(defs, func(s string) bool { k, _, _ := strings.Cut(s, "="); return k == name }) {
				opts = append(opts, "-D"+d)
			}
		}
	}
	return opts
}

// compile turns one kernel source (with the headers it includes) into a
// cubin for arch (e.g. "sm_90"). A compile error carries NVRTC's log.
func (n *nvrtc) compile(name, src string, headers map[string]string, arch string) ([]byte, error) {
	cubin, _, err := n.compileLog(name, src, headers, arch)
	return cubin, err
}

// compileLog is compile with extra NVRTC options after compileOptions (for
// tests: "--ptxas-options=-v" for register counts), returning NVRTC's log
// on success too (ptxas warnings, such as wgmma serialisation, land there).
func (n *nvrtc) compileLog(name, src string, headers map[string]string, arch string, extra ...string) ([]byte, string, error) {
	return n.compileOpts(name, src, headers, arch, append(compileOptions(arch), extra...))
}

// compileWith is compile with the options given (kernelJob's, computed
// once with its cache key, so a define changed meanwhile cannot make a
// cubin its key does not describe).
func (n *nvrtc) compileWith(name, src string, headers map[string]string, arch string, opts []string) ([]byte, error) {
	cubin, _, err := n.compileOpts(name, src, headers, arch, opts)
	return cubin, err
}

// compileOpts compiles with exactly opts (which name the architecture;
// arch is for the messages), returning NVRTC's log on success too.
func (n *nvrtc) compileOpts(name, src string, headers map[string]string, arch string, opts []string) ([]byte, string, error) {
	names := make([]string, 0, len(headers))
	for h := range headers {
		names = append(names, h)
	}
	sort.Strings(names)
	// Keep every C string reachable from Go pointers for the duration of the calls.
	srcC := cBytes(src)
	nameC := cBytes(name)
	hdrC := make([]*byte, len(names)+1)
	incC := make([]*byte, len(names)+1)
	for i, h := range names {
		body, inc := cBytes(headers[h]), cBytes(h)
		hdrC[i], incC[i] = &body[0], &inc[0]
	}
	var prog uintptr
	if err := n.call("nvrtcCreateProgram", n.nvrtcCreateProgram,
		uintptr(unsafe.Pointer(&prog)), uintptr(unsafe.Pointer(&srcC[0])), uintptr(unsafe.Pointer(&nameC[0])),
		uintptr(len(names)), uintptr(unsafe.Pointer(&hdrC[0])), uintptr(unsafe.Pointer(&incC[0]))); err != nil {
		return nil, "", err
	}
	defer purego.SyscallN(n.nvrtcDestroyProgram, uintptr(unsafe.Pointer(&prog)))

	optC := make([]*byte, len(opts))
	for i, o := range opts {
		b := cBytes(o)
		optC[i] = &b[0]
	}
	cerr := n.call("nvrtcCompileProgram", n.nvrtcCompileProgram, prog, uintptr(len(opts)), uintptr(unsafe.Pointer(&optC[0])))
	if cerr != nil {
		log := n.log(prog)
		return nil, log, fmt.Errorf("compiling kernels/%s for %s with NVRTC %d.%d: %w\n%s", name, arch, n.major, n.minor, cerr, log)
	}
	var size uintptr
	if err := n.call("nvrtcGetCUBINSize", n.nvrtcGetCUBINSize, prog, uintptr(unsafe.Pointer(&size))); err != nil {
		return nil, "", err
	}
	if size == 0 {
		return nil, "", fmt.Errorf("compiling kernels/%s for %s: NVRTC returned an empty cubin", name, arch)
	}
	cubin := make([]byte, size)
	if err := n.call("nvrtcGetCUBIN", n.nvrtcGetCUBIN, prog, uintptr(unsafe.Pointer(&cubin[0]))); err != nil {
		return nil, "", err
	}
	return cubin, n.log(prog), nil
}

func (n *nvrtc) log(prog uintptr) string {
	var size uintptr
	if n.call("nvrtcGetProgramLogSize", n.nvrtcGetProgramLogSize, prog, uintptr(unsafe.Pointer(&size))) != nil || size <= 1 {
		return ""
	}
	buf := make([]byte, size)
	if n.call("nvrtcGetProgramLog", n.nvrtcGetProgramLog, prog, uintptr(unsafe.Pointer(&buf[0]))) != nil {
		return ""
	}
	return strings.TrimRight(string(buf[:size-1]), "\n")
}

// kernelCache keeps compiled cubins on disk so that NVRTC runs once per
// source, architecture and compiler version. A cache that cannot be
// written is not an error: kernels are then compiled on every start.
type kernelCache struct{ dir string }

// defaultCacheDir is $XDG_CACHE_HOME/whet/kernels, else ~/.cache/whet/kernels.
func defaultCacheDir() string {
	if x := os.Getenv("XDG_CACHE_HOME"); x != "" {
		return filepath.Join(x, "whet", "kernels")
	}
	if home, err := os.UserHomeDir(); err == nil {
		return filepath.Join(home, ".cache", "whet", "kernels")
	}
	return ""
}

// cacheKey hashes everything that changes the cubin.
func cacheKey(name, src string, headers map[string]string, arch string, nvrtcMajor, nvrtcMinor int) string {
	return cacheKeyOpts(name, src, headers, arch, nvrtcMajor, nvrtcMinor, compileOptions(arch))
}

// cacheKeyOpts is cacheKey for a compile with options opts.
func cacheKeyOpts(name, src string, headers map[string]string, arch string, nvrtcMajor, nvrtcMinor int, opts []string) string {
	h := sha256.New()
	fmt.Fprintf(h, "%s\x00%s\x00nvrtc %d.%d\x00%s\x00", name, arch, nvrtcMajor, nvrtcMinor, strings.Join(opts, " "))
	names := make([]string, 0, len(headers))
	for k := range headers {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		fmt.Fprintf(h, "%s\x00%s\x00", k, headers[k])
	}
	h.Write([]byte(src))
	return hex.EncodeToString(h.Sum(nil))[:24]
}

func (c kernelCache) path(name, key string) string {
	return filepath.Join(c.dir, strings.TrimSuffix(name, ".cu")+"-"+key+".cubin")
}

func (c kernelCache) load(name, key string) []byte {
	if c.dir == "" {
		return nil
	}
	b, err := os.ReadFile(c.path(name, key))
	if err != nil || len(b) == 0 {
		return nil
	}
	return b
}

// has reports whether the cache holds a cubin for name and key (it may
// still be damaged: function then compiles afresh).
func (c kernelCache) has(name, key string) bool {
	if c.dir == "" {
		return false
	}
	fi, err := os.Stat(c.path(name, key))
	return err == nil && fi.Mode().IsRegular() && fi.Size() > 0
}

// store writes through a temporary file and a rename, so that two
// processes compiling at once never leave a torn cubin behind. It reports
// whether the cubin is in the cache now.
func (c kernelCache) store(name, key string, cubin []byte) bool {
	if c.dir == "" {
		return false
	}
	if err := os.MkdirAll(c.dir, 0o755); err != nil {
		return false
	}
	f, err := os.CreateTemp(c.dir, ".tmp-*")
	if err != nil {
		return false
	}
	_, werr := f.Write(cubin)
	cerr := f.Close()
	if werr != nil || cerr != nil {
		os.Remove(f.Name())
		return false
	}
	if os.Rename(f.Name(), c.path(name, key)) != nil {
		os.Remove(f.Name())
		return false
	}
	return true
}

// --- Architectures ---
//
// The rules for which cards the backend runs on live here, in one place:
// the oldest architecture it accepts, the ones its kernels are tested to
// compile for, the override that pretends the device is another one, and
// the check that the NVRTC found knows the device's architecture.

// minArch is the oldest compute capability the kernels are written for:
// Ampere (8.0) brought the bf16 tensor-core products (mma.sync m16n8k16
// with bf16 operands) and the bf16 arithmetic and conversions that every
// kernel's bf16 path uses; a Turing or older card has neither.
const minArchMajor, minArchMinor = 8, 0

// targetArchs are the architectures whet supports and tests: every kernel
// must compile for each (TestKernelsCompileForEveryArch, run on a machine
// whose NVRTC knows them all; NVRTC needs no such card). Ampere A100 and
// GeForce RTX 30, Ada RTX 40, Hopper H100/H200, Blackwell B200, GeForce
// RTX 50 and RTX PRO Blackwell, and the DGX Spark's GB10.
var targetArchs = []string{"sm_80", "sm_86", "sm_89", "sm_90", "sm_100", "sm_120", "sm_121"}

// archOverrideEnv names the environment variable that makes the backend
// take the device for another architecture, written as NVRTC spells it
// (sm_75, sm_80, sm_121). It exists to test what a card one does not have
// would get: an architecture older than minArch is refused exactly as
// such a card is, and an older one of the same generation as the device
// (sm_80 on an sm_86 card) has the kernels compiled for it, which the card
// runs. Anything the device could not run is refused with a message.
const archOverrideEnv = "WHET_CUDA_ARCH"

// ErrUnsupportedArch is wrapped by New's error when the GPU is older than
// the kernels need (see minArch). It is not ErrNoGPU: "auto" reports it
// before it trains on the CPU, as the user has a GPU and would otherwise
// not know why it is unused.
var ErrUnsupportedArch = errors.New("GPU architecture not supported")

// parseArch reads "sm_XY" (the last digit is the minor version: sm_90 is
// 9.0, sm_121 is 12.1), as envswitch checks WHET_CUDA_ARCH.
func parseArch(s string) (major, minor int, err error) { return envswitch.ParseArch(s) }

// archName spells compute capability major.minor as NVRTC does.
func archName(major, minor int) string { return fmt.Sprintf("sm_%d%d", major, minor) }

// deviceArch picks the architecture kernels are compiled for on device
// ordinal dev (named name) of compute capability major.minor, after the
// override (the value of WHET_CUDA_ARCH, "" for none), and refuses a card
// older than minArch with one message that says what it needs.
func deviceArch(dev int, name string, major, minor int, override string) (string, error) {
	devArch := archName(major, minor)
	how := fmt.Sprintf("compute capability %d.%d", major, minor)
	if override != "" {
		omaj, omin, err := parseArch(override)
		if err != nil {
			return "", fmt.Errorf("cuda: %s: %w", archOverrideEnv, err)
		}
		if omaj >= minArchMajor && (omaj != major || omin > minor) {
			return "", fmt.Errorf("cuda: %s=%s: device %d (%s, %s) cannot run code built for %s; only an older architecture of its own generation (sm_%d0 to %s), or one older than sm_%d%d to see it refused, can stand in for it",
				archOverrideEnv, override, dev, name, devArch, override, major, devArch, minArchMajor, minArchMinor)
		}
		how = fmt.Sprintf("compute capability %d.%d as %s=%s says; the device reports %d.%d", omaj, omin, archOverrideEnv, override, major, minor)
		major, minor = omaj, omin
	}
	arch := archName(major, minor)
	if major < minArchMajor || (major == minArchMajor && minor < minArchMinor) {
		return "", fmt.Errorf("cuda: device %d (%s) is %s (%s): %w: whet's GPU kernels need sm_%d%d (Ampere) or newer, for bf16 tensor cores; train on the CPU backend (backend: cpu) or on a newer card",
			dev, name, arch, how, ErrUnsupportedArch, minArchMajor, minArchMinor)
	}
	return arch, nil
}

// supportedArchs lists the real architectures this NVRTC can compile for,
// as compute capability numbers (90 for sm_90, 121 for sm_121).
func (n *nvrtc) supportedArchs() ([]int, error) {
	var count int32
	if err := n.call("nvrtcGetNumSupportedArchs", n.nvrtcGetNumSupportedArchs, uintptr(unsafe.Pointer(&count))); err != nil {
		return nil, err
	}
	if count <= 0 {
		return nil, nil
	}
	archs := make([]int32, count)
	if err := n.call("nvrtcGetSupportedArchs", n.nvrtcGetSupportedArchs, uintptr(unsafe.Pointer(&archs[0]))); err != nil {
		return nil, err
	}
	out := make([]int, len(archs))
	for i, a := range archs {
		out[i] = int(a)
	}
	sort.Ints(out)
	return out, nil
}

// firstNVRTC is the first CUDA release whose NVRTC compiles for an
// architecture newer than CUDA 12.0 knew, for the message when the NVRTC
// found is too old.
var firstNVRTC = map[string]string{"sm_100": "12.8", "sm_120": "12.8", "sm_121": "12.9"}

// checkArch fails, naming the library and what would work, when this
// NVRTC cannot compile for arch: otherwise the first kernel's compile
// would fail with NVRTC's terse "invalid value for --gpu-architecture".
func (n *nvrtc) checkArch(arch string) error {
	major, minor, err := parseArch(arch)
	if err != nil {
		return err
	}
	archs, err := n.supportedArchs()
	if err != nil {
		return err
	}
	want := major*10 + minor
	for _, a := range archs {
		if a == want {
			return nil
		}
	}
	known := "none"
	if len(archs) > 0 {
		known = fmt.Sprintf("sm_%d to sm_%d", archs[0], archs[len(archs)-1])
	}
	need := "a newer CUDA"
	if v, ok := firstNVRTC[arch]; ok {
		need = "CUDA " + v + " or newer"
	}
	return fmt.Errorf("NVRTC %d.%d (%s) cannot compile kernels for %s (it knows %s): install the libnvrtc of %s (the CUDA toolkit, or pip's nvidia-cuda-nvrtc wheel) where whet looks for it",
		n.major, n.minor, n.lib.path, arch, known, need)
}
