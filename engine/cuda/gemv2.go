package cuda

import "whet/engine/envswitch"

// GEMV2Env set to 1 sends the one-row bf16 products that go to the GEMV
// kernels (gemv, MatVecs) to kernels/gemv2.cu's gemv2_bf16 and
// gemv2_bf16_multi, which keep eight 16-byte pieces a lane in flight
// instead of four. Off until TestGEMV2 passes on a GPU and whet bench
// shows it faster (tools/gpu/gemv2). Read at each call, like
// NF4MatVecEnv; a recording keeps the kernel it was made with.
const GEMV2Env = "WHET_CUDA_GEMV2"

// gemv2 reports whether GEMV2Env asks for kernels/gemv2.cu.
func gemv2() bool { return envswitch.On(GEMV2Env) }
