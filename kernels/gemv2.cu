// gemv2.cu: gemv.cu's products (decoding's one row of activations times a
// bf16 weight) with twice the loads in flight, opt-in (GEMV2Env in
// engine/cuda/gemv2.go) until a GPU run measures it:
//   y[r] = alpha * sum_c x[c] * w[r, c] + beta * y[r]      r < n, c < k
// One warp per row, 8 rows per 256-thread block, as gemv_bf16; each lane
// issues eight 16-byte pieces of w (and of x, which L1 serves) before it
// sums them, so a row of k = 2048 (Llama-3.2-1B) is one round trip to
// memory instead of two, and k = 8192 four instead of eight: at 1B the
// products are short enough that the round trips, not the bytes, set
// their time. Then four, then one piece at a time for the tail. Same
// contract as gemv.cu: bf16 w and x, k a multiple of 8, 16-byte aligned
// w and x, y bf16 or f32 (beta = 0 overwrites y without reading it); no
// backward. gemv2_bf16_multi takes up to three weights sharing x.
#include "common.cuh"

__device__ __forceinline__ float gemv2_dot8(u32x4 a, u32x4 b) {
    const unsigned int wa[4] = {a.x, a.y, a.z, a.w}, wb[4] = {b.x, b.y, b.z, b.w};
    float s = 0.0f;
#pragma unroll
    for (int e = 0; e < 4; e++) {
        s += __uint_as_float(wa[e] << 16) * __uint_as_float(wb[e] << 16);
        s += __uint_as_float(wa[e] & 0xffff0000u) * __uint_as_float(wb[e] & 0xffff0000u);
    }
    return s;
}

__device__ __forceinline__ void gemv2_row(void* y, int ydt, const unsigned short* x, const unsigned short* w, i64 row, i64 k, float alpha,
                                          float beta) {
    const int lane = threadIdx.x & 31;
    const u32x4* wr = (const u32x4*)(w + row * k);
    const u32x4* xv = (const u32x4*)x;
    const i64 k8 = k / 8;
    float acc = 0.0f;
    i64 i = lane;
    for (; i + 224 < k8; i += 256) {
        u32x4 a[8], b[8];
#pragma unroll
        for (int j = 0; j < 8; j++) a[j] = wr[i + 32 * j];
#pragma unroll
        for (int j = 0; j < 8; j++) b[j] = xv[i + 32 * j];
#pragma unroll
        for (int j = 0; j < 8; j++) acc += gemv2_dot8(a[j], b[j]);
    }
    for (; i + 96 < k8; i += 128) {
        const u32x4 a0 = wr[i], a1 = wr[i + 32], a2 = wr[i + 64], a3 = wr[i + 96];
        const u32x4 b0 = xv[i], b1 = xv[i + 32], b2 = xv[i + 64], b3 = xv[i + 96];
        acc += gemv2_dot8(a0, b0) + gemv2_dot8(a1, b1) + gemv2_dot8(a2, b2) + gemv2_dot8(a3, b3);
    }
    for (; i < k8; i += 32) acc += gemv2_dot8(wr[i], xv[i]);
    acc = warp_sum(acc);
    if (lane == 0) {
        float r = alpha * acc;
        if (beta != 0.0f) r += beta * ld(y, ydt, row);
        st(y, ydt, row, r);
    }
}

extern "C" __global__ void __launch_bounds__(256) gemv2_bf16(void* y, int ydt, const unsigned short* x, const unsigned short* w, i64 n, i64 k,
                                                             float alpha, float beta) {
    PDL_WAIT();
    PDL_TRIGGER();
    const i64 row = (i64)blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5);
    if (row < n) gemv2_row(y, ydt, x, w, row, k, alpha, beta);
}

extern "C" __global__ void __launch_bounds__(256) gemv2_bf16_multi(const unsigned short* x, i64 k, int ydt, float beta, void* y0,
                                                                   const unsigned short* w0, i64 n0, void* y1, const unsigned short* w1,
                                                                   i64 n1, void* y2, const unsigned short* w2, i64 n2) {
    PDL_WAIT();
    PDL_TRIGGER();
    i64 row = (i64)blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5);
    if (row < n0) {
        gemv2_row(y0, ydt, x, w0, row, k, 1.0f, beta);
        return;
    }
    row -= n0;
    if (row < n1) {
        gemv2_row(y1, ydt, x, w1, row, k, 1.0f, beta);
        return;
    }
    row -= n1;
    if (row < n2) gemv2_row(y2, ydt, x, w2, row, k, 1.0f, beta);
}
