// softcap.cu: logit soft-capping (Gemma 2's final logits; its attention
// scores are capped inside attention.cu).
//
// Forward:  x = c * tanh(x / c), in place.
// Backward: dx *= 1 - (y / c)^2, in place, where y is the capped value the
//           forward wrote (d/dx c*tanh(x/c) = 1 - tanh^2(x/c) = 1 - (y/c)^2),
//           so the uncapped logits need not be kept.
// c > 0 (the host checks it). The maths is float32 for every storage
// dtype; aligned tensors whose length is a multiple of 8 go 8 elements per
// thread step.
#include "common.cuh"

extern "C" __global__ void softcap_forward(void* x, int xdt, i64 n, float c) {
    const i64 stride = (i64)gridDim.x * blockDim.x;
    const float inv = 1.0f / c;
    if ((n & 7) == 0 && aligned16(x)) {
        for (i64 b = blockIdx.x * (i64)blockDim.x + threadIdx.x; b < n / 8; b += stride) {
            float v[8];
            ld8(x, xdt, 8 * b, v);
#pragma unroll
            for (int k = 0; k < 8; k++) v[k] = c * tanhf(v[k] * inv);
            st8(x, xdt, 8 * b, v);
        }
        return;
    }
    for (i64 i = blockIdx.x * (i64)blockDim.x + threadIdx.x; i < n; i += stride) {
        st(x, xdt, i, c * tanhf(ld(x, xdt, i) * inv));
    }
}

extern "C" __global__ void softcap_backward(void* dx, int dxdt, const void* y, int ydt, i64 n, float c) {
    const i64 stride = (i64)gridDim.x * blockDim.x;
    const float inv = 1.0f / c;
    if ((n & 7) == 0 && aligned16(dx) && aligned16(y)) {
        for (i64 b = blockIdx.x * (i64)blockDim.x + threadIdx.x; b < n / 8; b += stride) {
            float d[8], v[8];
            ld8(dx, dxdt, 8 * b, d);
            ld8(y, ydt, 8 * b, v);
#pragma unroll
            for (int k = 0; k < 8; k++) {
                const float r = v[k] * inv;
                d[k] *= 1.0f - r * r;
            }
            st8(dx, dxdt, 8 * b, d);
        }
        return;
    }
    for (i64 i = blockIdx.x * (i64)blockDim.x + threadIdx.x; i < n; i += stride) {
        const float r = ld(y, ydt, i) * inv;
        st(dx, dxdt, i, ld(dx, dxdt, i) * (1.0f - r * r));
    }
}
