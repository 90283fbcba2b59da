package kernels

import (
	"regexp"
	"strings"
	"testing"
)

var (
	// versioned matches llm.c-style variant names: kernel3, _v2, _2.
	versioned = regexp.MustCompile(`(kernel\d+|_v\d+|_\d+)$`)
)

// TestSourcesFollowTheHouseRules: every kernel file opens with a comment
// on its maths and memory contract, includes the shared header (the only
// one NVRTC is given), declares its kernels extern "C" so the backend can
// find them by name, and names no kernel with a version number.
func TestSourcesFollowTheHouseRules(t *testing.T) {
	names := Names()
	if len(names) < 10 {
		t.Fatalf("only %d kernel sources embedded: %v", len(names), names)
	}
	seen := map[string]string{}
	for _, name := range names {
		src, err := Source(name)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(src, "// "+name+":") {
			t.Errorf("%s does not open with a comment naming the file and its maths", name)
		}
		if !strings.Contains(src, `#include "common.cuh"`) {
			t.Errorf("%s does not include common.cuh", name)
		}
		decls := Declared(src)
		if len(decls) == 0 {
			t.Errorf("%s declares no extern \"C\" kernel", name)
		}
		for _, k := range decls {
			if versioned.MatchString(k) {
				t.Errorf("%s: kernel %s carries a number, which reads as a version", name, k)
			}
			if other, dup := seen[k]; dup {
				t.Errorf("kernel %s is declared in both %s and %s; the backend finds kernels by name", k, other, name)
			}
			seen[k] = name
		}
	}
	for _, k := range []string{"attention_forward_tc_d64", "attention_backward_dkv_tc_d128", "softmax_cross_entropy"} {
		if seen[k] == "" {
			t.Errorf("Declared does not find kernel %s", k)
		}
	}
	if _, ok := seen["__launch_bounds__"]; ok {
		t.Error("Declared took __launch_bounds__ for a kernel name")
	}
	if _, ok := Headers()["common.cuh"]; !ok {
		t.Error("common.cuh is not among the headers given to NVRTC")
	}
	if _, err := Source("missing.cu"); err == nil {
		t.Error("Source of a missing file returned no error")
	}
}
