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
	"regexp"
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

var (
	// kernelDecl matches a kernel declaration; a name built inside a macro
	// ends in ##PARAM (group 2).
	kernelDecl = regexp.MustCompile(`extern "C" __global__ void(?: __launch_bounds__\([^)]*\))?\s+(\w+?)(?:##(\w+))?\(`)
	macroDef   = regexp.MustCompile(`^#define (\w+)\((\w+)\)`)
	macroUse   = regexp.MustCompile(`^(\w+)\((\w+)\)\s*$`)
)

// Declared lists the kernels a source declares by the names the backend
// looks up: plain extern "C" kernels, and kernels declared inside a
// one-parameter macro (attention.cu's head-dim instantiations, e.g.
// attention_forward_tc_d##D) once per top-level use of that macro, with
// the argument pasted in (ATTN_TC_KERNELS(64) gives
// attention_forward_tc_d64).
func Declared(src string) []string {
	var names []string
	type macro struct {
		param    string
		prefixes []string
	}
	macros := map[string]*macro{}
	var cur *macro // the macro whose body is being read
	for _, line := range strings.Split(src, "\n") {
		if cur == nil {
			if m := macroDef.FindStringSubmatch(line); m != nil {
				cur = &macro{param: m[2]}
				macros[m[1]] = cur
			} else if m := macroUse.FindStringSubmatch(line); m != nil && macros[m[1]] != nil {
				for _, p := range macros[m[1]].prefixes {
					names = append(names, p+m[2])
				}
				continue
			}
		}
		for _, d := range kernelDecl.FindAllStringSubmatch(line, -1) {
			switch {
			case d[2] == "":
				names = append(names, d[1])
			case cur != nil && d[2] == cur.param:
				cur.prefixes = append(cur.prefixes, d[1])
			}
		}
		if cur != nil && !strings.HasSuffix(strings.TrimRight(line, " \t"), `\`) {
			cur = nil // the macro's last line
		}
	}
	return names
}
