// nf4.cu: expanding QLoRA's 4-bit NormalFloat weights (bitsandbytes'
// layout) for a matrix product.
//
//   out[i] = NF4_LEVELS[code(i)] * absmax[i / 64]      (overwrite out)
//
// The weight is stored row-major in blocks of 64 values; each value is a
// 4-bit index into the 16 NF4 levels, two to a byte with the first value in
// the high nibble, and the bytes packed little-endian four to an int32
// word. absmax holds one float32 scale per block. Each thread expands one
// word into 8 values (one 16-byte store for an aligned bf16 out), looking
// the levels up in shared memory. The level table is engine.NF4Levels, written with
// the same decimal literals so that both round to the same float32.
#include "common.cuh"

#define NF4_BLOCK 64

__constant__ float NF4_LEVELS[16] = {
    -1.0f, -0.6961928009986877f, -0.5250730514526367f, -0.39491748809814453f,
    -0.28444138169288635f, -0.18477343022823334f, -0.09105003625154495f, 0.0f,
    0.07958029955625534f, 0.16093020141124725f, 0.24611230194568634f, 0.33791524171829224f,
    0.44070982933044434f, 0.5626170039176941f, 0.7229568362236023f, 1.0f,
};

extern "C" __global__ void dequantize_nf4(void* out, int odt, const unsigned int* packed, const float* absmax, i64 words) {
    // The lanes of a warp look up different levels at once, which the
    // constant cache would serialise; shared memory serves 16 distinct
    // words in one pass.
    __shared__ float levels[16];
    if (threadIdx.x < 16) levels[threadIdx.x] = NF4_LEVELS[threadIdx.x];
    __syncthreads();
    const bool vec = aligned16(out); // 8 values = one 16-byte bf16 store
    for (i64 w = blockIdx.x * (i64)blockDim.x + threadIdx.x; w < words; w += (i64)gridDim.x * blockDim.x) {
        const unsigned int word = packed[w];
        const float s = absmax[(8 * w) / NF4_BLOCK]; // a word's 8 values never straddle a block
        float v[8];
#pragma unroll
        for (int k = 0; k < 4; k++) {
            const unsigned int by = (word >> (8 * k)) & 0xffu;
            v[2 * k] = levels[by >> 4] * s;
            v[2 * k + 1] = levels[by & 15u] * s;
        }
        if (vec) {
            st8(out, odt, 8 * w, v);
        } else {
#pragma unroll
            for (int k = 0; k < 8; k++) st(out, odt, 8 * w + k, v[k]);
        }
    }
}
