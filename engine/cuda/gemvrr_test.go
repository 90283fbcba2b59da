package cuda

import "testing"

// TestRRGeometry: the round-parallel GEMVs' launch shape: R = k/1024
// rounds, rows a block = warps/R (at least one), 32·rows·R threads (at
// most 1024), declined for k not a multiple of 1024 or past 32 rounds and
// where the dynamic shared memory would pass 48 KiB with the kernels' own;
// WHET_DECODE_RR_WARPS overrides the warps, out-of-range values ignored.
func TestRRGeometry(t *testing.T) {
	for _, c := range []struct {
		k, warps, R, rows, threads int
		ok                         bool
	}{
		{2048, rrWarps, 2, 4, 256, true},
		{2048, rrWarpsNorm, 2, 8, 512, true},
		{8192, rrWarpsSwiGLU, 8, 4, 1024, true},
		{8192, rrWarps, 8, 1, 256, true},
		{14336, rrWarps, 14, 1, 448, true},
		{1024, rrWarps, 1, 8, 256, true},
		{32768, rrWarps, 32, 1, 1024, true},
		{3072, rrWarps, 3, 2, 192, true},
		{33792, rrWarps, 0, 0, 0, false},
		{896, rrWarps, 0, 0, 0, false},
		{2880, rrWarps, 0, 0, 0, false},
		{0, rrWarps, 0, 0, 0, false},
	} {
		R, rows, threads, ok := rrGeometry(c.k, c.warps)
		if R != c.R || rows != c.rows || threads != c.threads || ok != c.ok {
			t.Errorf("rrGeometry(%d, %d) = %d, %d, %d, %v; want %d, %d, %d, %v", c.k, c.warps, R, rows, threads, ok, c.R, c.rows, c.threads, c.ok)
		}
		if ok && (threads > 1024 || threads%32 != 0 || rows*R*32 != threads) {
			t.Errorf("rrGeometry(%d, %d): %d threads for %d rows of %d rounds", c.k, c.warps, threads, rows, R)
		}
	}
	// The norm and SwiGLU kernels form a k-wide bf16 vector in shared memory.
	if _, _, _, _, ok := rrPlan("op", 100, 16384, rrWarpsNorm, 2*16384); !ok {
		t.Error("rrPlan declined k 16384 with 32 KiB of dynamic shared memory")
	}
	if _, _, _, _, ok := rrPlan("op", 100, 23552, rrWarpsNorm, 2*23552); ok {
		t.Error("rrPlan took 46 KiB of dynamic shared memory on top of its own 4 KiB")
	}
	what, R, grid, block, ok := rrPlan("gate up", 16384, 2048, rrWarpsNorm, 4096)
	if !ok || R != 2 || grid.x != 2048 || block.x != 512 || what == "" {
		t.Errorf("rrPlan(16384 rows, k 2048, norm) = %q, %d, %v, %v, %v", what, R, grid, block, ok)
	}
	for v, want := range map[string]int{"16": 512, "1": 64, "0": 256, "33": 256, "x": 256} {
		t.Setenv(DecodeRRWarpsEnv, v)
		if _, _, threads, _ := rrGeometry(2048, rrWarps); threads != want {
			t.Errorf("%s=%s: %d threads at k 2048, want %d", DecodeRRWarpsEnv, v, threads, want)
		}
	}
}
