package cuda

import (
	"regexp"
	"strconv"
	"strings"
	"testing"

	"whet/kernels"
)

// TestNF4V2LaunchShape: the launches of matvec_nf4_split and _r8 agree with
// the kernels on the CPU. Rows per block (NF4V2_ROWS, NF4V2_ROWS_WIDE) are
// the host's nf4V2Rows and nf4V2RowsWide, the
// grid covers every row with no empty block, the block is the 256 threads
// of its __launch_bounds__ whose 8 warps fill the static partial[][8]
// table, and it loads no dynamic shared memory (launchNF4V2 passes 0).
func TestNF4V2LaunchShape(t *testing.T) {
	src, err := kernels.Source("nf4.cu")
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []struct {
		kernel, define string
		rows           int
	}{{"matvec_nf4_split", "NF4V2_ROWS", nf4V2Rows}, {"matvec_nf4_split_wide", "NF4V2_ROWS_WIDE", nf4V2RowsWide}} {
		m := regexp.MustCompile(`(?m)^#define ` + k.define + ` (\d+)$`).FindStringSubmatch(src)
		if m == nil {
			t.Fatalf("kernels/nf4.cu: no #define %s", k.define)
		}
		if r, _ := strconv.Atoi(m[1]); r != k.rows {
			t.Errorf("kernels/nf4.cu %s = %d, engine/cuda has %d", k.define, r, k.rows)
		}
		i := strings.Index(src, k.kernel+"(")
		if i < 0 {
			t.Fatalf("kernels/nf4.cu: no %s", k.kernel)
		}
		decl := src[strings.LastIndex(src[:i], "extern"):i]
		if !strings.Contains(decl, "__launch_bounds__(256)") || block256.x != 256 {
			t.Errorf("%s is declared %q and launched with %d threads: want 256 and 256", k.kernel, decl, block256.x)
		}
		body := src[i:]
		if j := strings.Index(body, "\n}\n"); j >= 0 {
			body = body[:j]
		}
		if !strings.Contains(body, "__shared__ float partial["+k.define+"][8];") || !strings.Contains(body, "nf4v2_matvec<"+k.define+">(") ||
			strings.Contains(body, "extern __shared__") {
			t.Errorf("%s's shared memory is no longer partial[%s][8] for 8 warps, passed to nf4v2_matvec<%s>, and no dynamic part:\n%s", k.kernel, k.define, k.define, body)
		}
		for _, rows := range []int{1, 2, 3, 4, 5, 7, 8, 9, 1023, 1024, 1025, 4096, 6144, 14336, 28672} {
			g := nf4V2Grid(rows, k.rows)
			if g.y != 1 || g.z != 1 || g.x*k.rows < rows || (g.x-1)*k.rows >= rows {
				t.Errorf("%s, %d rows: grid %v with %d rows a block", k.kernel, rows, g, k.rows)
			}
		}
	}
}
