// swiglu.cu: the gated activation of the Llama MLP.
//
// Forward:  out = silu(gate) * up,  silu(g) = g * sigmoid(g).  (overwrite out)
// Backward, with s = sigmoid(g):                                (overwrite both)
//   dUp   = dOut * silu(g)
//   dGate = dOut * up * s * (1 + g*(1 - s))
// Each element reads gate, up and dOut before writing, so dGate and dUp may
// be the very buffers of gate and up (in place).
#include "common.cuh"

__device__ __forceinline__ float sigmoidf_(float x) { return 1.0f / (1.0f + expf(-x)); }

extern "C" __global__ void swiglu_forward(void* out, int odt, const void* gate, int gdt, const void* up, int udt, i64 n) {
    for (i64 i = blockIdx.x * (i64)blockDim.x + threadIdx.x; i < n; i += (i64)gridDim.x * blockDim.x) {
        float g = ld(gate, gdt, i);
        st(out, odt, i, g * sigmoidf_(g) * ld(up, udt, i));
    }
}

extern "C" __global__ void swiglu_backward(void* dgate, int dgdt, void* dup, int dudt, const void* dout, int dodt,
                                           const void* gate, int gdt, const void* up, int udt, i64 n) {
    for (i64 i = blockIdx.x * (i64)blockDim.x + threadIdx.x; i < n; i += (i64)gridDim.x * blockDim.x) {
        float g = ld(gate, gdt, i), u = ld(up, udt, i), dy = ld(dout, dodt, i);
        float s = sigmoidf_(g);
        st(dup, dudt, i, dy * g * s);
        st(dgate, dgdt, i, dy * u * s * (1.0f + g * (1.0f - s)));
    }
}
