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

// Tensors whose bases are 16-byte aligned and whose length is a multiple
// of 8 go 8 elements per thread step (16-byte bf16 accesses).

extern "C" __global__ void swiglu_forward(void* out, int odt, const void* gate, int gdt, const void* up, int udt, i64 n) {
    PDL_WAIT();
    PDL_TRIGGER();
    const i64 stride = (i64)gridDim.x * blockDim.x;
    if ((n & 7) == 0 && aligned16(out) && aligned16(gate) && aligned16(up)) {
        for (i64 c = blockIdx.x * (i64)blockDim.x + threadIdx.x; c < n / 8; c += stride) {
            float g[8], u[8], o[8];
            ld8(gate, gdt, 8 * c, g);
            ld8(up, udt, 8 * c, u);
#pragma unroll
            for (int k = 0; k < 8; k++) o[k] = g[k] * sigmoidf_(g[k]) * u[k];
            st8(out, odt, 8 * c, o);
        }
        return;
    }
    for (i64 i = blockIdx.x * (i64)blockDim.x + threadIdx.x; i < n; i += stride) {
        float g = ld(gate, gdt, i);
        st(out, odt, i, g * sigmoidf_(g) * ld(up, udt, i));
    }
}

extern "C" __global__ void swiglu_backward(void* dgate, int dgdt, void* dup, int dudt, const void* dout, int dodt,
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
                const float s = sigmoidf_(g[k]);
                du[k] = dy[k] * g[k] * s;
                dg[k] = dy[k] * u[k] * s * (1.0f + g[k] * (1.0f - s));
            }
            st8(dup, dudt, 8 * c, du);
            st8(dgate, dgdt, 8 * c, dg);
        }
        return;
    }
    for (i64 i = blockIdx.x * (i64)blockDim.x + threadIdx.x; i < n; i += stride) {
        float g = ld(gate, gdt, i), u = ld(up, udt, i), dy = ld(dout, dodt, i);
        float s = sigmoidf_(g);
        st(dup, dudt, i, dy * g * s);
        st(dgate, dgdt, i, dy * u * s * (1.0f + g * (1.0f - s)));
    }
}
