package cuda

import (
	"regexp"
	"strconv"
	"strings"
	"testing"

	"whet/kernels"
)

// TestVisionTCKernelsMatchLaunches holds the tables of vision_attention.go
// to the kernels kernels/attention.cu instantiates, on the CPU, and guards
// two bugs of the first version of those kernels (found after their first
// GPU run, tools/gpu/vision-speed on 2026-12-07):
//   - attn_fwd_tc computes SigLIP's head dim 72 as 80 (DD = 72 stored
//     columns, D = 80 computed): its first key/value tile was loaded with
//     DD, its prefetches with D, so kv heads past the first read the wrong
//     columns and the last read past k and v. Every load_rows_async of
//     attn_fwd_tc must pass DD and a column offset in units of DD.
//   - the d256 kernels' dynamic shared memory is exactly the 99 KB that
//     sm_86/89/120 allow a block, so a static __shared__ variable in the
//     tensor-core templates (the vision modes had one for a block maximum)
//     makes their launch fail there.
func TestVisionTCKernelsMatchLaunches(t *testing.T) {
	src, err := kernels.Source("attention.cu")
	if err != nil {
		t.Fatal(err)
	}
	ints := func(s string) int {
		n, err := strconv.Atoi(s)
		if err != nil {
			t.Fatal(err)
		}
		return n
	}

	// The forwards: ATTN_TC_GROUPS_FWD(computed, stored) and ATTN_TC_BIAS_FWD(d).
	groups := map[int]int{}
	for _, m := range regexp.MustCompile(`(?m)^ATTN_TC_GROUPS_FWD\((\d+), (\d+)\)`).FindAllStringSubmatch(src, -1) {
		groups[ints(m[2])] = ints(m[1])
	}
	if len(groups) != len(groupsTCDims) {
		t.Errorf("attention.cu instantiates attention_groups_forward_tc at stored:computed head dims %v, vision_attention.go launches %v", groups, groupsTCDims)
	}
	for d, dc := range groupsTCDims {
		if groups[d] != dc {
			t.Errorf("head dim %d: groupsTCDims computes it at %d, attention.cu's attention_groups_forward_tc_d%d at %d", d, dc, d, groups[d])
		}
		// cp.async moves 16-byte pieces (8 bf16) of each row; the MMAs take 16 columns at a time.
		if d%8 != 0 || dc%16 != 0 || d > dc {
			t.Errorf("head dim %d computed at %d: want a multiple of 8 padded to a multiple of 16", d, dc)
		}
	}
	bias := map[int]bool{}
	for _, m := range regexp.MustCompile(`(?m)^ATTN_TC_BIAS_FWD\((\d+)\)`).FindAllStringSubmatch(src, -1) {
		bias[ints(m[1])] = true
	}
	if len(bias) != len(biasTCDims) {
		t.Errorf("attention.cu instantiates attention_bias_forward_tc at %v, vision_attention.go launches %v", bias, biasTCDims)
	}
	for d := range biasTCDims {
		if !bias[d] {
			t.Errorf("biasTCDims has head dim %d, attention.cu has no ATTN_TC_BIAS_FWD(%d)", d, d)
		}
	}
	// The backward passes.
	for _, want := range []string{
		"ATTN_TC_GROUPS_BWD_SPLIT(" + strconv.Itoa(groupsTCBwdDim) + ")",
		"ATTN_TC_BIAS_BWD(" + strconv.Itoa(biasTCBwdDim) + ")",
	} {
		if !regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(want)).MatchString(src) {
			t.Errorf("attention.cu has no %s, which vision_attention.go launches", want)
		}
	}

	// attn_fwd_tc's loads of a padded head dim.
	start := strings.Index(src, "__device__ __forceinline__ void attn_fwd_tc(")
	end := strings.Index(src, "// attn_dq_tc:")
	if start < 0 || end < start {
		t.Fatalf("attention.cu: attn_fwd_tc's body not found (before // attn_dq_tc:)")
	}
	loads := regexp.MustCompile(`load_rows_async<([^>]*)>\(([^;]*)\);`).FindAllStringSubmatch(src[start:end], -1)
	if len(loads) < 3 { // q, k, v
		t.Fatalf("attn_fwd_tc: %d calls of load_rows_async found, want the loads of q, k and v", len(loads))
	}
	for _, m := range loads {
		tmpl, args := strings.Fields(strings.ReplaceAll(m[1], ",", " ")), strings.Split(m[2], ",")
		if len(tmpl) != 3 || tmpl[2] != "DD" || len(args) < 4 || !strings.Contains(args[3], "* DD") {
			t.Errorf("attn_fwd_tc: %s reads rows of the computed head dim D: with a padded head dim (72 as 80) pass DD and a column offset in units of DD", m[0])
		}
	}

	// No static shared memory in the tensor-core templates, whose d256
	// launches take the most dynamic shared memory sm_86/89/120 allow.
	const sm86Smem = 99 << 10
	for _, k := range []string{"forward", "dq", "dk", "dv"} {
		if n := attnTCSmem(k, 256); n > sm86Smem {
			t.Errorf("attnTCSmem(%q, 256) = %d bytes, above sm_86's %d", k, n, sm86Smem)
		}
	}
	tc := strings.Index(src, "Tensor-core kernels")
	if tc < 0 {
		t.Fatal("attention.cu: the tensor-core section (\"Tensor-core kernels\") not found")
	}
	for i, line := range strings.Split(src[tc:], "\n") {
		code, _, _ := strings.Cut(line, "//")
		if strings.Contains(code, "__shared__") && !strings.Contains(code, "extern __shared__") {
			t.Errorf("attention.cu, tensor-core section line %d: static shared memory %q adds to the dynamic 99 KB of the d256 kernels", i+1, strings.TrimSpace(line))
		}
	}
}
