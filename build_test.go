package main

import (
	"os/exec"
	"strings"
	"testing"
)

// A cold `go run .` compiles every cgo package among the dependencies, and
// their C compilers' warnings land on the user's terminal (go-nvml printed
// some 150 lines). whet binds NVIDIA's libraries with purego instead; the
// one cgo package left, purego's own runtime shim, compiles cleanly.
func TestNoCgoDependencies(t *testing.T) {
	goCmd, err := exec.LookPath("go")
	if err != nil {
		t.Skip("the go command is not on PATH")
	}
	out, err := exec.Command(goCmd, "list", "-deps", "-test", "-f", "{{if and (not .Standard) .CgoFiles}}{{.ImportPath}}{{end}}", "./...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	allowed := map[string]bool{"github.com/ebitengine/purego/internal/cgo": true}
	for _, p := range strings.Fields(string(out)) {
		if !allowed[p] {
			t.Errorf("%s compiles C (cgo) on every cold build; bind the library at run time with purego instead", p)
		}
	}
}
