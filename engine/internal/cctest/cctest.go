// Package cctest builds the small C shared libraries that tests load
// through purego in place of NVIDIA's (fake drivers, argument-passing
// checks), so that the bindings are tested on machines without a GPU.
package cctest

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// SharedLib compiles testdata/source (relative to the test's package) into
// a shared library with the file name so in a fresh temporary folder and
// returns its path. defines are -D options (NAME or NAME=VALUE). The
// compiler is $CC when set, else gcc: tools/arm64 sets the arm64 cross
// compiler, as the library must match the test binary's architecture. The
// test is skipped when the compiler is missing.
func SharedLib(t testing.TB, source, so string, defines ...string) string {
	t.Helper()
	name := os.Getenv("CC")
	if name == "" {
		name = "gcc"
	}
	cc, err := exec.LookPath(name)
	if err != nil {
		t.Skipf("%s not found: cannot build testdata/%s", name, source)
	}
	path := filepath.Join(t.TempDir(), so)
	args := []string{"-shared", "-fPIC", "-O1", "-o", path}
	for _, d := range defines {
		args = append(args, "-D"+d)
	}
	out, err := exec.Command(cc, append(args, filepath.Join("testdata", source))...).CombinedOutput()
	if err != nil {
		t.Fatalf("building testdata/%s: %v\n%s", source, err, out)
	}
	return path
}
