// geglu.cu: the gated activation of the Gemma MLP, GELU with the tanh
// approximation (transformers' gelu_pytorch_tanh) in place of SwiGLU's silu.
//
// With c = sqrt(2/pi), u = c*(g + 0.044715*g^3) and t = tanh(u):
// Forward:  out = gelu(g) * up,  gelu(g) = 0.5*g*(1 + t).       (overwrite out)
// Backward:                                                      (overwrite both)
//   dUp   = dOut * gelu(g)
//   dGate = dOut * up * gelu'(g),
//   gelu'(g) = 0.5*(1 + t) + 0.5*g*(1 - t^2)*c*(1 + 3*0.044715*g^2)
// Each element reads gate, up and dOut before writing, so dGate and dUp may
// be the very buffers of gate and up (in place). The maths is float32 for
// every storage dtype; tensors whose bases are 16-byte aligned and whose
// length is a multiple of 8 go 8 elements per thread step.
#include "common.cuh"

#define GELU_C 0.7978845608028654f // sqrt(2/pi)
#define GELU_K 0.044715f

// gelu_tanh returns gelu_pytorch_tanh(g) and stores its derivative in *dy.
__device__ __forceinline__ float gelu_tanh(float g, float* dy) {
    const float t = tanhf(GELU_C * (g + GELU_K * g * g * g));
    *dy = 0.5f * (1.0f + t) + 0.5f * g * (1.0f - t * t) * GELU_C * (1.0f + 3.0f * GELU_K * g * g);
    return 0.5f * g * (1.0f + t);
}

extern "C" __global__ void geglu_forward(void* out, int odt, const void* gate, int gdt, const void* up, int udt, i64 n) {
    const i64 stride = (i64)gridDim.x * blockDim.x;
    float dy;
    if ((n & 7) == 0 && aligned16(out) && aligned16(gate) && aligned16(up)) {
        for (i64 c = blockIdx.x * (i64)blockDim.x + threadIdx.x; c < n / 8; c += stride) {
            float g[8], u[8], o[8];
            ld8(gate, gdt, 8 * c, g);
            ld8(up, udt, 8 * c, u);
#pragma unroll
            for (int k = 0; k < 8; k++) o[k] = gelu_tanh(g[k], &dy) * u[k];
            st8(out, odt, 8 * c, o);
        }
        return;
    }
    for (i64 i = blockIdx.x * (i64)blockDim.x + threadIdx.x; i < n; i += stride) {
        st(out, odt, i, gelu_tanh(ld(gate, gdt, i), &dy) * ld(up, udt, i));
    }
}

extern "C" __global__ void geglu_backward(void* dgate, int dgdt, void* dup, int dudt, const void* dout, int dodt,
                                          const void* gate, int gdt, const void* up, int udt, i64 n) {
    const i64 stride = (i64)gridDim.x * blockDim.x;
    if ((n & 7) == 0 && aligned16(dgate) && aligned16(dup) && aligned16(dout) && aligned16(gate) && aligned16(up)) {
        for (i64 c = blockIdx.x * (i64)blockDim.x + threadIdx.x; c < n / 8; c += stride) {
            float g[8], u[8], dy[8], dg[8], du[8];
            ld8(gate, gdt, 8 * c, g);
            ld8(up, udt, 8 * c, u);
            ld8(dout, dodt, 8 * c, dy);
#pragma unroll
            for (int k = 0; k < 8; k++) {
                float d;
                du[k] = dy[k] * gelu_tanh(g[k], &d);
                dg[k] = dy[k] * u[k] * d;
            }
            st8(dup, dudt, 8 * c, du);
            st8(dgate, dgdt, 8 * c, dg);
        }
        return;
    }
    for (i64 i = blockIdx.x * (i64)blockDim.x + threadIdx.x; i < n; i += stride) {
        const float g = ld(gate, gdt, i), u = ld(up, udt, i), dy = ld(dout, dodt, i);
        float d;
        const float y = gelu_tanh(g, &d);
        st(dup, dudt, i, dy * y);
        st(dgate, dgdt, i, dy * u * d);
    }
}
