// gelu.cu: the exact (erf) GELU of Llama 3.2 Vision's encoder MLP (torch's "gelu",
// engine.MllamaOps). gelu_tanh.cu is the tanh approximation of SigLIP and Gemma.
//
// With Phi(x) = (1 + erf(x/sqrt 2))/2 and phi(x) = exp(-x^2/2)/sqrt(2 pi):
// Forward:  out = x * Phi(x)                                   (overwrite out)
// Backward: dx = dOut * (Phi(x) + x * phi(x))                   (overwrite dx)
// Elementwise, float32 maths for every storage dtype. out may be x's buffer
// (the model runs it in place), dx may be dOut's (each element is read before
// it is written); dx may not be x's, which the backward reads.
// Memory: nothing beyond the operands; grid-stride loops.
#include "common.cuh"

#define GELU_RSQRT2 0.7071067811865476f    // 1/sqrt(2)
#define GELU_RSQRT2PI 0.3989422804014327f  // 1/sqrt(2 pi)

extern "C" __global__ void gelu_forward(void* out, int odt, const void* x, int xdt, i64 n) {
    const i64 stride = (i64)gridDim.x * blockDim.x;
    for (i64 i = blockIdx.x * (i64)blockDim.x + threadIdx.x; i < n; i += stride) {
        const float v = ld(x, xdt, i);
        st(out, odt, i, v * 0.5f * (1.0f + erff(v * GELU_RSQRT2)));
    }
}

extern "C" __global__ void gelu_backward(void* dx, int dxdt, const void* dout, int dodt, const void* x, int xdt, i64 n) {
    const i64 stride = (i64)gridDim.x * blockDim.x;
    for (i64 i = blockIdx.x * (i64)blockDim.x + threadIdx.x; i < n; i += stride) {
        const float v = ld(x, xdt, i);
        const float d = 0.5f * (1.0f + erff(v * GELU_RSQRT2)) + v * expf(-0.5f * v * v) * GELU_RSQRT2PI;
        st(dx, dxdt, i, ld(dout, dodt, i) * d);
    }
}
