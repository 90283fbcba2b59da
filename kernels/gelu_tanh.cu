// gelu_tanh.cu: the plain (ungated) GELU with the tanh approximation of SigLIP's MLP
// (transformers' gelu_pytorch_tanh).
//
// With c = sqrt(2/pi), t = tanh(c*(x + 0.044715*x^3)):
// Forward:  out = 0.5*x*(1 + t)                                         (overwrite out)
// Backward: dx = dOut * (0.5*(1 + t) + 0.5*x*(1 - t^2)*c*(1 + 3*0.044715*x^2))   (overwrite dx)
// Elementwise, float32 maths for every storage dtype; dx may be dOut's buffer
// (each element is read before it is written), out may not alias x only when
// the caller needs x again (the backward reads x).
#include "common.cuh"

#define GELU_C 0.7978845608028654f // sqrt(2/pi)
#define GELU_K 0.044715f

extern "C" __global__ void gelu_tanh_forward(void* out, int odt, const void* x, int xdt, i64 n) {
    const i64 stride = (i64)gridDim.x * blockDim.x;
    for (i64 i = blockIdx.x * (i64)blockDim.x + threadIdx.x; i < n; i += stride) {
        float v = ld(x, xdt, i);
        float t = tanhf(GELU_C * (v + GELU_K * v * v * v));
        st(out, odt, i, 0.5f * v * (1.0f + t));
    }
}

extern "C" __global__ void gelu_tanh_backward(void* dx, int dxdt, const void* dout, int dodt, const void* x, int xdt, i64 n) {
    const i64 stride = (i64)gridDim.x * blockDim.x;
    for (i64 i = blockIdx.x * (i64)blockDim.x + threadIdx.x; i < n; i += stride) {
        float v = ld(x, xdt, i);
        float t = tanhf(GELU_C * (v + GELU_K * v * v * v));
        float d = 0.5f * (1.0f + t) + 0.5f * v * (1.0f - t * t) * GELU_C * (1.0f + 3.0f * GELU_K * v * v);
        st(dx, dxdt, i, ld(dout, dodt, i) * d);
    }
}
