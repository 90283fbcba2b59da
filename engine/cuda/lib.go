package cuda

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/ebitengine/purego"
)

// library is one shared object opened with dlopen, and the symbols bound
// from it. Symbols are looked up once, when the library is opened, so a
// missing symbol is reported at New rather than in the middle of a step.
type library struct {
	name   string // what the user would look for, e.g. "libnvrtc"
	path   string // what dlopen accepted
	handle uintptr
}

// libSearchDirs lists the folders that are searched, in order, after
// dlopen by bare name (which covers LD_LIBRARY_PATH, the runpath and
// ld.so.cache): the driver's usual homes, the CUDA toolkit folders, and the
// folders of pip's nvidia-* wheels inside every Python site-packages that
// can be found.
func libSearchDirs() []string {
	var dirs []string
	add := func(d string) {
		if d == "" {
			return
		}
		for _, seen := range dirs {
			if seen == d {
				return
			}
		}
		if st, err := os.Stat(d); err == nil && st.IsDir() {
			dirs = append(dirs, d)
		}
	}
	for _, env := range []string{"CUDA_HOME", "CUDA_PATH", "CUDA_ROOT"} {
		if v := os.Getenv(env); v != "" {
			add(filepath.Join(v, "lib64"))
			add(filepath.Join(v, "lib"))
		}
	}
	add("/usr/local/cuda/lib64")
	cudaDirs, _ := filepath.Glob("/usr/local/cuda-*/lib64")
	for i := len(cudaDirs) - 1; i >= 0; i-- { // newest first, roughly
		add(cudaDirs[i])
	}
	for _, d := range []string{
		"/usr/local/nvidia/lib64", "/usr/local/nvidia/lib",
		"/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu",
		"/usr/lib64", "/usr/lib", "/usr/lib/wsl/lib",
	} {
		add(d)
	}
	for _, sp := range sitePackages() {
		// CUDA 12 wheels: nvidia/<component>/lib; CUDA 13 wheels: nvidia/cu13/lib.
		libs, _ := filepath.Glob(filepath.Join(sp, "nvidia", "*", "lib"))
		for _, l := range libs {
			add(l)
		}
	}
	return dirs
}

// sitePackages finds Python package folders by globbing the usual prefixes
// (system, /usr/local, virtual environments, conda, user installs).
func sitePackages() []string {
	patterns := []string{
		"/usr/lib/python3*/dist-packages",
		"/usr/lib/python3*/site-packages",
		"/usr/local/lib/python3*/dist-packages",
		"/usr/local/lib/python3*/site-packages",
		"/opt/*/lib/python3*/site-packages",
		"/opt/*/.venv/lib/python3*/site-packages",
		"/opt/conda/lib/python3*/site-packages",
	}
	for _, env := range []string{"VIRTUAL_ENV", "CONDA_PREFIX"} {
		if v := os.Getenv(env); v != "" {
			patterns = append(patterns, filepath.Join(v, "lib", "python3*", "site-packages"))
		}
	}
	if home, err := os.UserHomeDir(); err == nil {
		patterns = append(patterns, filepath.Join(home, ".local", "lib", "python3*", "site-packages"))
	}
	var out []string
	for _, p := range patterns {
		m, _ := filepath.Glob(p)
		out = append(out, m...)
	}
	return out
}

// openLibrary tries each soname by bare name first, then in every search
// folder. The error lists every name and folder tried, and the loader's
// last complaint, so a user can see at once what to install or export.
func openLibrary(what string, sonames ...string) (*library, error) {
	var lastErr error
	for _, so := range sonames {
		h, err := purego.Dlopen(so, purego.RTLD_NOW|purego.RTLD_GLOBAL)
		if err == nil {
			return &library{name: what, path: so, handle: h}, nil
		}
		lastErr = err
	}
	dirs := libSearchDirs()
	for _, d := range dirs {
		for _, so := range sonames {
			p := filepath.Join(d, so)
			if _, err := os.Stat(p); err != nil {
				continue
			}
			h, err := purego.Dlopen(p, purego.RTLD_NOW|purego.RTLD_GLOBAL)
			if err == nil {
				return &library{name: what, path: p, handle: h}, nil
			}
			lastErr = err
		}
	}
	where := "no other folder exists"
	if len(dirs) > 0 {
		where = strings.Join(dirs, ", ")
	}
	return nil, fmt.Errorf("cannot open %s: tried %s through the loader's search path (LD_LIBRARY_PATH, ld.so.cache) and in %s: %v",
		what, strings.Join(sonames, " and "), where, lastErr)
}

// sym returns the address of a symbol, or an error naming library and symbol.
func (l *library) sym(name string) (uintptr, error) {
	p, err := purego.Dlsym(l.handle, name)
	if err != nil || p == 0 {
		return 0, fmt.Errorf("%s (%s) has no symbol %s: %v", l.name, l.path, name, err)
	}
	return p, nil
}

// bind fills each *uintptr in syms with the address of its symbol.
func (l *library) bind(syms map[string]*uintptr) error {
	for name, dst := range syms {
		p, err := l.sym(name)
		if err != nil {
			return err
		}
		*dst = p
	}
	return nil
}
