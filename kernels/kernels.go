// Package kernels holds the CUDA C sources of the GPU backend, one layer per
// file with its forward and backward kernels together, embedded into the
// binary. engine/cuda compiles them with NVRTC for the exact architecture
// of the GPU in hand on first use and caches the cubins on disk, so nothing
// generated is committed and no CUDA toolkit is needed at build time.
//
// Every kernel is declared extern "C" so that its name in the cubin is the
// name written in the source. Tensors are passed as untyped pointers with
// a dtype code equal to engine.DType (see common.cuh).
package kernels

import (
	"embed"
	"fmt"
	"io/fs"
	"sort"
	"strings"
)

//go:embed *.cu *.cuh
var files embed.FS

// Source returns the text of one kernel file, e.g. "rmsnorm.cu".
func Source(name string) (string, error) {
	b, err := files.ReadFile(name)
	if err != nil {
		return "", fmt.Errorf("kernels: no source %q: %w", name, err)
	}
	return string(b), nil
}

// Headers returns every header (*.cuh) by the name the sources include it
// with; NVRTC receives them in memory, so no include path is needed.
func Headers() map[string]string {
	out := map[string]string{}
	entries, _ := fs.ReadDir(files, ".")
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), ".cuh") {
			b, _ := files.ReadFile(e.Name())
			out[e.Name()] = string(b)
		}
	}
	return out
}

// Names lists the kernel sources (*.cu), sorted.
func Names() []string {
	var out []string
	entries, _ := fs.ReadDir(files, ".")
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), ".cu") {
			out = append(out, e.Name())
		}
	}
	sort.Strings(out)
	return out
}
