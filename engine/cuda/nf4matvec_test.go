package cuda

import (
	"regexp"
	"strconv"
	"strings"
	"testing"

	"whet/kernels"
)

// TestNF4V2LaunchShape: matvec_nf4_v2's launch agrees with the kernel on
// the CPU. Its rows per block (NF4V2_ROWS) is the host's nf4V2Rows, the
// grid covers every row with no empty block, the block is the 256 threads
// of its __launch_bounds__ whose 8 warps fill the static partial[][8]
// table, and it loads no dynamic shared memory (launchNF4V2 passes 0).
func TestNF4V2LaunchShape(t *testing.T) {
	src, err := kernels.Source("nf4.cu")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^#define NF4V2_ROWS (\d+)$`).FindStringSubmatch(src)
	if m == nil {
		t.Fatal("kernels/nf4.cu: no #define NF4V2_ROWS")
	}
	if r, _ := strconv.Atoi(m[1]); r != nf4V2Rows {
		t.Errorf("kernels/nf4.cu NF4V2_ROWS = %d, engine/cuda nf4V2Rows = %d", r, nf4V2Rows)
	}
	i := strings.Index(src, "matvec_nf4_v2(")
	if i < 0 {
		t.Fatal("kernels/nf4.cu: no matvec_nf4_v2")
	}
	decl := src[strings.LastIndex(src[:i], "extern"):i]
	if !strings.Contains(decl, "__launch_bounds__(256)") || block256.x != 256 {
		t.Errorf("matvec_nf4_v2 is declared %q and launched with %d threads: want 256 and 256", decl, block256.x)
	}
	if !strings.Contains(src[i:], "__shared__ float partial[NF4V2_ROWS][8];") || strings.Contains(src[i:], "extern __shared__") {
		t.Errorf("matvec_nf4_v2's shared memory is no longer partial[NF4V2_ROWS][8] for 8 warps and no dynamic part")
	}
	for _, rows := range []int{1, 2, 3, 4, 5, 7, 8, 1023, 1024, 1025, 4096, 6144, 14336, 28672} {
		g := nf4V2Grid(rows)
		if g.y != 1 || g.z != 1 || g.x*nf4V2Rows < rows || (g.x-1)*nf4V2Rows >= rows {
			t.Errorf("%d rows: grid %v with %d rows a block", rows, g, nf4V2Rows)
		}
	}
}
