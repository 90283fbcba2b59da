// gemv.cu: the matrix-vector product of decoding, one row of activations
// times a bf16 weight, read once at full memory bandwidth:
//   y[r] = alpha * sum_c x[c] * w[r, c] + beta * y[r]      r < n, c < k
// w is [n, k] row-major (an nn.Linear weight, out x in), x [k] bf16, y [n]
// bf16 or f32 (beta = 0 overwrites y without reading it). The float32 sum
// runs over each lane's 8-value pieces and then across the warp.
// One warp per row, 8 rows per 256-thread block; each lane reads 16 bytes
// of w and of x at a time, four pieces in flight. The host launches it
// only for k a multiple of 8 and 16-byte aligned w and x (cuBLASLt
// takes the rest); there is no backward (decoding only).
#include "common.cuh"

__device__ __forceinline__ float dot8_bf16(u32x4 a, u32x4 b) {
    const unsigned int wa[4] = {a.x, a.y, a.z, a.w}, wb[4] = {b.x, b.y, b.z, b.w};
    float s = 0.0f;
#pragma unroll
    for (int e = 0; e < 4; e++) {
        s += __uint_as_float(wa[e] << 16) * __uint_as_float(wb[e] << 16);
        s += __uint_as_float(wa[e] & 0xffff0000u) * __uint_as_float(wb[e] & 0xffff0000u);
    }
    return s;
}

extern "C" __global__ void __launch_bounds__(256) gemv_bf16(void* y, int ydt, const unsigned short* x, const unsigned short* w, i64 n, i64 k,
                                                            float alpha, float beta) {
    const int lane = threadIdx.x & 31;
    const i64 row = (i64)blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5);
    if (row >= n) return;
    const u32x4* wr = (const u32x4*)(w + row * k);
    const u32x4* xv = (const u32x4*)x;
    const i64 k8 = k / 8;
    float acc = 0.0f;
    i64 i = lane;
    for (; i + 96 < k8; i += 128) {
        const u32x4 a0 = wr[i], a1 = wr[i + 32], a2 = wr[i + 64], a3 = wr[i + 96];
        const u32x4 b0 = xv[i], b1 = xv[i + 32], b2 = xv[i + 64], b3 = xv[i + 96];
        acc += dot8_bf16(a0, b0) + dot8_bf16(a1, b1) + dot8_bf16(a2, b2) + dot8_bf16(a3, b3);
    }
    for (; i < k8; i += 32) acc += dot8_bf16(wr[i], xv[i]);
    acc = warp_sum(acc);
    if (lane == 0) {
        float r = alpha * acc;
        if (beta != 0.0f) r += beta * ld(y, ydt, row);
        st(y, ydt, row, r);
    }
}
