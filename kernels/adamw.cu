// adamw.cu: one step of torch.optim.AdamW on the master weights.
//
//   g  = grad * gscale                         (clipping's coefficient, 1 without)
//   param *= 1 - lr*wd                         (decoupled weight decay)
//   m += (1-b1)*(g - m)                        (torch's lerp form)
//   v  = b2*v + (1-b2)*g^2
//   param -= stepSize * m / (sqrt(v)/bc2Sqrt + eps)
//
// with stepSize = lr/(1-b1^step) and bc2Sqrt = sqrt(1-b2^step) computed on
// the host in float64. m and v are f32 and updated in place; grad is f32
// or bf16 and only read.
//
// Two generations of the kernels live here:
//
// adamw and adamw_multi (the default until 2026-12-07; now only with
// WHET_CUDA_FUSED_ADAMW=0 and no gradient scale): param is an f32
// master, gscale is 1 (the trainer scales the gradients for clipping in a
// pass of their own, scale_multi). adamw_multi steps many tensors in one
// launch: block b takes chunk b of a table the host builds
// (engine/cuda/multitensor.go, AdamWAll), seven 64-bit words per chunk:
// param, grad, m, v, out (0: none) addresses of the chunk's first element,
// its length, and grad dtype | out dtype << 32. Where out is set it is
// overwritten with the updated param in its dtype (the compute copy of a
// master weight).
//
// adamw_fused and adamw_multi_fused (the default: run on an H100 on
// 2026-12-07 for bf16 and fp32 masters, conformance and training curves
// passed): g is grad * gscale rounded to f32
// before use (__fmul_rn: never contracted into what follows), so the step
// is bit-equal to scaling the gradients first; param is an f32 master, or
// a bf16 one (train.master_weights: bf16): then, with a rounding key (the
// tensor's, fixed over steps; 0: round to nearest), the updated value is
// rounded to bf16 stochastically, adding the top 16 bits of
// splitmix64(step_seed(key, step), index) to the 16 bits that bf16 drops
// (engine.RoundBF16Stochastic, StochasticBits and StepSeed). Memory: one
// read of grad, m, v and param and one write of m, v, param and the compute
// copy per element, with 16-byte accesses where every pointer allows: the
// whole optimizer step (clipping, update, refresh of the bf16 weights) is
// one pass. adamw_multi_fused's table has nine words per chunk: the seven
// above (with param dtype << 16 in the dtype word), the tensor's rounding
// key (0: none) and the chunk's first element's index in its tensor (the
// rounding's counter).
#include "common.cuh"


// adamw_element steps element i (and writes it to out, when not null).
__device__ __forceinline__ void adamw_element(float* param, const void* grad, int gdt, float* m, float* v, i64 i,
                                              float decay, float b1c, float b2, float b2c, float stepSize,
                                              float bc2Sqrt, float eps, void* out, int odt) {
    float g = ld(grad, gdt, i);
    float p = param[i] * decay;
    float mi = m[i] + b1c * (g - m[i]);
    float vi = b2 * v[i] + b2c * g * g;
    p -= stepSize * mi / (sqrtf(vi) / bc2Sqrt + eps);
    param[i] = p;
    m[i] = mi;
    v[i] = vi;
    if (out != nullptr) st(out, odt, i, p);
}

extern "C" __global__ void adamw(float* param, const void* grad, int gdt, float* m, float* v, i64 n,
                                 float decay, float b1c, float b2, float b2c, float stepSize, float bc2Sqrt, float eps) {
    for (i64 i = blockIdx.x * (i64)blockDim.x + threadIdx.x; i < n; i += (i64)gridDim.x * blockDim.x) {
        adamw_element(param, grad, gdt, m, v, i, decay, b1c, b2, b2c, stepSize, bc2Sqrt, eps, nullptr, 0);
    }
}

extern "C" __global__ void adamw_multi(const unsigned long long* table, float decay, float b1c, float b2, float b2c,
                                       float stepSize, float bc2Sqrt, float eps) {
    const unsigned long long* c = table + 7 * (i64)blockIdx.x;
    float* param = (float*)c[0];
    const void* grad = (const void*)c[1];
    float* m = (float*)c[2];
    float* v = (float*)c[3];
    void* out = (void*)c[4];
    const i64 n = (i64)c[5];
    const int gdt = (int)(c[6] & 0xffffffffull), odt = (int)(c[6] >> 32);
    for (i64 i = threadIdx.x; i < n; i += blockDim.x) {
        adamw_element(param, grad, gdt, m, v, i, decay, b1c, b2, b2c, stepSize, bc2Sqrt, eps, out, odt);
    }
}


struct AdamWHyper {
    float decay, b1c, b2, b2c, stepSize, bc2Sqrt, eps, gscale;
};

// step_seed is engine.StepSeed: the splitmix64 finaliser of key ^ step·φ.
__device__ __forceinline__ unsigned long long step_seed(unsigned long long key, unsigned long long step) {
    unsigned long long x = key ^ (step * 0x9e3779b97f4a7c15ull);
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ull;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

// round_bf16_sr rounds x to bf16 (kept as an f32 with the low 16 bits 0)
// stochastically with the bits of (seed, index) when sr, else to nearest
// even.
__device__ __forceinline__ float round_bf16_sr(float x, bool sr, unsigned long long seed, unsigned long long index) {
    if (!sr) return bf16_to_f32(f32_to_bf16(x));
    unsigned int u = __float_as_uint(x);
    if ((u & 0x7f800000u) == 0x7f800000u) {
        return (u & 0x007fffffu) ? __uint_as_float(u | 0x00400000u) : x;
    }
    unsigned long long z = seed + (index + 1ull) * 0x9e3779b97f4a7c15ull;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    z ^= z >> 31;
    u += (unsigned int)(z >> 48);
    return __uint_as_float(u & 0xffff0000u);
}

// adamw_value steps one element: p the param, g the raw gradient; m and v
// are updated. Returns the new param in f32 (before any rounding to bf16).
__device__ __forceinline__ float adamw_value(float p, float g, float& m, float& v, const AdamWHyper& h) {
    g = __fmul_rn(g, h.gscale);
    p = p * h.decay;
    float mi = m + h.b1c * (g - m);
    float vi = h.b2 * v + h.b2c * g * g;
    p -= h.stepSize * mi / (sqrtf(vi) / h.bc2Sqrt + h.eps);
    m = mi;
    v = vi;
    return p;
}

extern "C" __global__ void adamw_fused(void* param, int pdt, const void* grad, int gdt, float* m, float* v, i64 n,
                                 float decay, float b1c, float b2, float b2c, float stepSize, float bc2Sqrt, float eps,
                                 float gscale, unsigned long long key, unsigned long long step) {
    const AdamWHyper h = {decay, b1c, b2, b2c, stepSize, bc2Sqrt, eps, gscale};
    const bool sr = key != 0ull;
    const unsigned long long seed = step_seed(key, step);
    for (i64 i = blockIdx.x * (i64)blockDim.x + threadIdx.x; i < n; i += (i64)gridDim.x * blockDim.x) {
        float mi = m[i], vi = v[i];
        float p = adamw_value(ld(param, pdt, i), ld(grad, gdt, i), mi, vi, h);
        m[i] = mi;
        v[i] = vi;
        if (pdt == DT_BF16 || sr) p = round_bf16_sr(p, sr, seed, (unsigned long long)i);
        st(param, pdt, i, p);
    }
}

extern "C" __global__ void adamw_multi_fused(const unsigned long long* table, float decay, float b1c, float b2, float b2c,
                                       float stepSize, float bc2Sqrt, float eps, float gscale, unsigned long long step) {
    const AdamWHyper h = {decay, b1c, b2, b2c, stepSize, bc2Sqrt, eps, gscale};
    const unsigned long long* c = table + 9 * (i64)blockIdx.x;
    void* param = (void*)c[0];
    const void* grad = (const void*)c[1];
    float* m = (float*)c[2];
    float* v = (float*)c[3];
    void* out = (void*)c[4];
    const i64 n = (i64)c[5];
    const int gdt = (int)(c[6] & 0xffffull), pdt = (int)((c[6] >> 16) & 0xffffull), odt = (int)(c[6] >> 32);
    const unsigned long long key = c[7], base = c[8];
    const bool sr = key != 0ull, round = pdt == DT_BF16 || sr;
    const unsigned long long seed = step_seed(key, step);
    // Eight elements a thread at a time with 16-byte accesses where every
    // pointer allows it, the rest one by one.
    i64 n8 = 0;
    if (aligned16(param) && aligned16(grad) && aligned16(m) && aligned16(v) && (out == nullptr || aligned16(out))) {
        n8 = n & ~(i64)7;
    }
    for (i64 i = 8 * (i64)threadIdx.x; i < n8; i += 8 * (i64)blockDim.x) {
        float p[8], g[8], mi[8], vi[8];
        ld8(param, pdt, i, p);
        ld8(grad, gdt, i, g);
        ld8(m, DT_F32, i, mi);
        ld8(v, DT_F32, i, vi);
#pragma unroll
        for (int k = 0; k < 8; k++) {
            p[k] = adamw_value(p[k], g[k], mi[k], vi[k], h);
            if (round) p[k] = round_bf16_sr(p[k], sr, seed, base + (unsigned long long)(i + k));
        }
        st8(m, DT_F32, i, mi);
        st8(v, DT_F32, i, vi);
        st8(param, pdt, i, p);
        if (out != nullptr) st8(out, odt, i, p);
    }
    for (i64 i = n8 + threadIdx.x; i < n; i += blockDim.x) {
        float mi = m[i], vi = v[i];
        float p = adamw_value(ld(param, pdt, i), ld(grad, gdt, i), mi, vi, h);
        m[i] = mi;
        v[i] = vi;
        if (round) p = round_bf16_sr(p, sr, seed, base + (unsigned long long)i);
        st(param, pdt, i, p);
        if (out != nullptr) st(out, odt, i, p);
    }
}
