package cuda

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"unsafe"

	"github.com/ebitengine/purego"
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
// cache key. No fast-math: the kernels must match the float32 reference.
// WHET_NVRTC_DEFINES (comma-separated NAME=VALUE) adds -D options: a
// tuning knob for kernel constants that have a default in the source
// (e.g. ATTN_FWD_MINB, the blocks per SM attention's forward is compiled
// for), used to compare variants on a GPU without rebuilding whet.
func compileOptions(arch string) []string {
	opts := []string{"--gpu-architecture=" + arch, "--std=c++17", "-default-device", "--fmad=true"}
	for _, d := range strings.Split(os.Getenv("WHET_NVRTC_DEFINES"), ",") {
		if d = strings.TrimSpace(d); d != "" {
			opts = append(opts, "-D"+d)
		}
	}
	return opts
}

// compile turns one kernel source (with the headers it includes) into a
// cubin for arch (e.g. "sm_90"). A compile error carries NVRTC's log.
func (n *nvrtc) compile(name, src string, headers map[string]string, arch string) ([]byte, error) {
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
		return nil, err
	}
	defer purego.SyscallN(n.nvrtcDestroyProgram, uintptr(unsafe.Pointer(&prog)))

	opts := compileOptions(arch)
	optC := make([]*byte, len(opts))
	for i, o := range opts {
		b := cBytes(o)
		optC[i] = &b[0]
	}
	cerr := n.call("nvrtcCompileProgram", n.nvrtcCompileProgram, prog, uintptr(len(opts)), uintptr(unsafe.Pointer(&optC[0])))
	if cerr != nil {
		log := n.log(prog)
		return nil, fmt.Errorf("compiling kernels/%s for %s with NVRTC %d.%d: %w\n%s", name, arch, n.major, n.minor, cerr, log)
	}
	var size uintptr
	if err := n.call("nvrtcGetCUBINSize", n.nvrtcGetCUBINSize, prog, uintptr(unsafe.Pointer(&size))); err != nil {
		return nil, err
	}
	if size == 0 {
		return nil, fmt.Errorf("compiling kernels/%s for %s: NVRTC returned an empty cubin", name, arch)
	}
	cubin := make([]byte, size)
	if err := n.call("nvrtcGetCUBIN", n.nvrtcGetCUBIN, prog, uintptr(unsafe.Pointer(&cubin[0]))); err != nil {
		return nil, err
	}
	return cubin, nil
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
	h := sha256.New()
	fmt.Fprintf(h, "%s\x00%s\x00nvrtc %d.%d\x00%s\x00", name, arch, nvrtcMajor, nvrtcMinor, strings.Join(compileOptions(arch), " "))
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

// store writes through a temporary file and a rename, so that two
// processes compiling at once never leave a torn cubin behind.
func (c kernelCache) store(name, key string, cubin []byte) {
	if c.dir == "" {
		return
	}
	if err := os.MkdirAll(c.dir, 0o755); err != nil {
		return
	}
	f, err := os.CreateTemp(c.dir, ".tmp-*")
	if err != nil {
		return
	}
	_, werr := f.Write(cubin)
	cerr := f.Close()
	if werr != nil || cerr != nil {
		os.Remove(f.Name())
		return
	}
	if os.Rename(f.Name(), c.path(name, key)) != nil {
		os.Remove(f.Name())
	}
}
