package cuda

import (
	"fmt"

	"whet/engine/envswitch"
)

// The round-parallel GEMVs of decoding (kernels/gemv.cu gemv_rr*): the
// same rows, bit for bit, as gemv_bf16, gemv_bf16_multi, gemv_bf16_add,
// gemv_bf16_norm_multi and gemv_bf16_swiglu_add, with each row's rounds of
// four 16-byte pieces a lane spread over warps instead of run in series by
// one, and the weight pieces loaded before the kernel's wait and
// prologue. Llama-3.2-1B's products are 2048 and 8192 wide: two and eight
// rounds a lane in series today, whose down projection (fused with SwiGLU)
// ran at about 1.6 TB/s on an H100
// (gpu-results decode-fast profile-device-fuse.txt: 21 us for 33.5 MB).

// DecodeGEMVEnv set to rr sends the one-row bf16 products whose k is a
// multiple of 1024 (at most 32768) to the round-parallel kernels; 0 (or
// anything else) keeps the four-piece kernels. Opt-in: on an H200
// (tools/gpu/decode-next, 2026-12-07) TestGEMVRR and the decoding tests
// passed with it, but Llama-3.2-1B decoded at 805 tok/s with it against
// 888 without (v2 attention and fused ops on both).
const DecodeGEMVEnv = "WHET_DECODE_GEMV"

// DecodeRRWarpsEnv, when set (1 to 32), is the warps a block of the
// round-parallel kernels aims at (rows a block = warps / rounds, at least
// one), in place of rrWarps, rrWarpsNorm and rrWarpsSwiGLU: for tuning on
// a GPU.
const DecodeRRWarpsEnv = "WHET_DECODE_RR_WARPS"

// Warps a block of the round-parallel kernels aims at: the plain products,
// the ones forming the RMSNorm first (a block forms it once for its rows:
// 512 threads keep the 8 rows a block gemv_bf16_norm_multi has at k 2048),
// and the ones forming SwiGLU first (k wide, so more rows a block share it).
const (
	rrWarps       = 8
	rrWarpsNorm   = 16
	rrWarpsSwiGLU = 32
)

// rrSmemStatic is the shared memory the kernels declare themselves: the
// round sums (32 warps of 32 floats) and the norm's warp sums.
const rrSmemStatic = 32*32*4 + 32*4

// rrOn reports whether DecodeGEMVEnv asks for the round-parallel kernels
// (read at each call, so a test can compare on one backend; a recording
// keeps the kernels it was made with).
func rrOn() bool { return envswitch.Choice(DecodeGEMVEnv) == "rr" }

// rrGeometry is the launch of a round-parallel kernel over k-wide rows
// for a block aiming at warps warps (DecodeRRWarpsEnv overrides it): R
// rounds a row, rows a block, threads a block; ok false when k is not a
// multiple of 1024 or too wide.
func rrGeometry(k, warps int) (R, rows, threads int, ok bool) {
	if v, ok := envswitch.Int(DecodeRRWarpsEnv); ok {
		warps = v
	}
	if k <= 0 || k%1024 != 0 || k/1024 > 32 {
		return 0, 0, 0, false
	}
	R = k / 1024
	rows = max(1, warps/R)
	return R, rows, 32 * rows * R, true
}

// rrPlan is rrGeometry for a kernel taking smem bytes of dynamic shared
// memory, with its grid over n rows and the op's description; ok false
// when the kernel does not take these rows (the four-piece kernels do).
func rrPlan(op string, n, k, warps, smem int) (what string, R int32, grid, block dim3, ok bool) {
	r, rows, threads, ok := rrGeometry(k, warps)
	if !ok || smem+rrSmemStatic > fusedSmemMax {
		return "", 0, dim3{}, dim3{}, false
	}
	return fmt.Sprintf("%s (rr: %d rounds, %d rows a block)", op, r, rows), int32(r), dim3{(n + rows - 1) / rows, 1, 1}, dim3{threads, 1, 1}, true
}
