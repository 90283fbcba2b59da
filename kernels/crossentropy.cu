// crossentropy.cu: softmax cross-entropy over rows of logits [N, V], the
// loss layer of the chunked LM head (engine/decoder.go headLossRange: for
// each chunk of C rows, logits = h·Wᵀ by the GEMM, this kernel, then
// dh = dlogits·W and dW += dlogitsᵀ·h by the GEMM; only [C, V] ever
// exists, C from engine.LogitsChunk).
//
// softmax_cross_entropy: for a row with label y (not -100):
//   lse       = log(sum_v exp(x_v))     (after subtracting the row max)
//   losses[n] = lse - x_y               (overwrite losses, f32)
//   grad_v    = gradScale*(exp(x_v - lse) - [v == y])   (overwrite grad)
// the gradient of gradScale*sum(losses). A row labelled -100 (ignored)
// gets loss 0 and gradient 0. grad may be the logits themselves (the
// in-place SoftmaxCrossEntropy) or a separate tensor of another dtype
// (SoftmaxCrossEntropyInto: bf16 gradient straight from f32 logits,
// with no cast pass after).
//
// softmax_cross_entropy_capped (engine.CappedCrossEntropy, Gemma 2's
// final_logit_softcapping c > 0) is the same with z_v = c*tanh(x_v/c) in
// place of x_v, and the gradient taken with respect to the raw x:
//   grad_v    = gradScale*(exp(z_v - lse) - [v == y]) * (1 - (z_v/c)^2)
// Memory contract: logits read once per pass (twice in all), grad written
// once, nothing else kept: z is recomputed from x in each pass (tanh), so
// no capped copy of the chunk is stored (the unfused path keeps one [C, V]
// fp32 copy and runs SoftCap and SoftCapBackward around the plain kernel).
// It is a separate kernel, not a flag of the plain one, so that the plain
// kernel, which has run on GPUs, stays as it was; the decoder uses the
// capped one only where engine.FusedSoftCapOn says so (on CUDA: opt-in by
// WHET_FUSED_SOFTCAP_CE=1 until it has run on a GPU).
//
// One block per row. The first pass keeps a running (max, sum) per thread
// (online softmax in base 2, one read of the row), the block merges them,
// and the second pass writes the gradient. Rows of f32 logits whose
// length is a multiple of 4 are read 16 bytes at a time. The host checks
// labels (and c > 0) before launching.
#include "common.cuh"

#define IGNORE_LABEL (-100)
#define CE_LOG2E 1.4426950408889634f
#define CE_LN2 0.6931471805599453f

__device__ __forceinline__ float ce_exp2(float x) {
    float y;
    asm("ex2.approx.ftz.f32 %0, %1;\n" : "=f"(y) : "f"(x));
    return y;
}

// ce_merge folds (m2, s2) into (m, s): s counts exp2(x - m) over the
// values seen, m their max (base-2 scaled).
__device__ __forceinline__ void ce_merge(float& m, float& s, float m2, float s2) {
    const float mm = fmaxf(m, m2);
    s = mm == NEG_INF ? 0.0f : s * ce_exp2(m - mm) + s2 * ce_exp2(m2 - mm);
    m = mm;
}

// ce_store writes gradient values v0..v3 at element i of a row (i a
// multiple of 4 on the vector path).
__device__ __forceinline__ void ce_store4(void* grad, int gdt, i64 i, float v0, float v1, float v2, float v3, bool vec) {
    if (vec && gdt == DT_F32) {
        f32x4 w;
        w.x = v0;
        w.y = v1;
        w.z = v2;
        w.w = v3;
        *(f32x4*)((float*)grad + i) = w;
    } else if (vec && gdt == DT_BF16) {
        u32x2 w;
        w.x = (unsigned int)f32_to_bf16(v0) | ((unsigned int)f32_to_bf16(v1) << 16);
        w.y = (unsigned int)f32_to_bf16(v2) | ((unsigned int)f32_to_bf16(v3) << 16);
        *(u32x2*)((unsigned short*)grad + i) = w;
    } else {
        st(grad, gdt, i, v0);
        st(grad, gdt, i + 1, v1);
        st(grad, gdt, i + 2, v2);
        st(grad, gdt, i + 3, v3);
    }
}

extern "C" __global__ void softmax_cross_entropy(void* grad, int gdt, const void* logits, int ldt, const int* labels,
                                                 float* losses, i64 vocab, float gradScale) {
    __shared__ float sm[32];
    __shared__ float ss[32];
    const i64 row = blockIdx.x;
    const i64 base = row * vocab;
    const int y = labels[row];
    if (y == IGNORE_LABEL || y < 0 || y >= vocab) {
        for (i64 v = threadIdx.x; v < vocab; v += blockDim.x) st(grad, gdt, base + v, 0.0f);
        if (threadIdx.x == 0) losses[row] = 0.0f;
        return;
    }
    // The vector path needs 16-byte rows of f32 logits and 8-byte (bf16)
    // or 16-byte (f32) rows of grad.
    const bool vec = ldt == DT_F32 && (gdt == DT_F32 || gdt == DT_BF16) && (vocab & 3) == 0 &&
                     ((unsigned long long)logits & 15) == 0 &&
                     ((unsigned long long)grad & (gdt == DT_F32 ? 15 : 7)) == 0;
    const i64 vend = vec ? vocab : 0; // elements handled four at a time
    const float* lf = (const float*)logits + base;
    float m = NEG_INF, s = 0.0f;
    for (i64 v = 4 * (i64)threadIdx.x; v < vend; v += 4 * (i64)blockDim.x) {
        const f32x4 x = *(const f32x4*)(lf + v);
        const float a = x.x * CE_LOG2E, b = x.y * CE_LOG2E, c = x.z * CE_LOG2E, d = x.w * CE_LOG2E;
        const float mn = fmaxf(m, fmaxf(fmaxf(a, b), fmaxf(c, d)));
        s = s * ce_exp2(m - mn) + ce_exp2(a - mn) + ce_exp2(b - mn) + ce_exp2(c - mn) + ce_exp2(d - mn);
        m = mn;
    }
    for (i64 v = vend + threadIdx.x; v < vocab; v += blockDim.x) {
        const float a = ld(logits, ldt, base + v) * CE_LOG2E;
        const float mn = fmaxf(m, a);
        s = s * ce_exp2(m - mn) + ce_exp2(a - mn);
        m = mn;
    }
    // Merge (m, s) pairs: first across the warp, then across warps.
    for (int o = 16; o > 0; o >>= 1) ce_merge(m, s, __shfl_xor_sync(0xffffffffu, m, o), __shfl_xor_sync(0xffffffffu, s, o));
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
    if (lane == 0) {
        sm[warp] = m;
        ss[warp] = s;
    }
    __syncthreads();
    m = lane < nw ? sm[lane] : NEG_INF;
    s = lane < nw ? ss[lane] : 0.0f;
    for (int o = 16; o > 0; o >>= 1) ce_merge(m, s, __shfl_xor_sync(0xffffffffu, m, o), __shfl_xor_sync(0xffffffffu, s, o));
    const float lse2 = m + log2f(s); // base-2 log-sum-exp of the scaled row
    const float xy = ld(logits, ldt, base + y);
    __syncthreads(); // every thread has read x_y before anyone overwrites it (in place)
    if (threadIdx.x == 0) losses[row] = lse2 * CE_LN2 - xy;
    for (i64 v = 4 * (i64)threadIdx.x; v < vend; v += 4 * (i64)blockDim.x) {
        const f32x4 x = *(const f32x4*)(lf + v);
        float p0 = ce_exp2(fmaf(x.x, CE_LOG2E, -lse2)), p1 = ce_exp2(fmaf(x.y, CE_LOG2E, -lse2));
        float p2 = ce_exp2(fmaf(x.z, CE_LOG2E, -lse2)), p3 = ce_exp2(fmaf(x.w, CE_LOG2E, -lse2));
        if (y >= v && y < v + 4) {
            p0 -= y == v ? 1.0f : 0.0f;
            p1 -= y == v + 1 ? 1.0f : 0.0f;
            p2 -= y == v + 2 ? 1.0f : 0.0f;
            p3 -= y == v + 3 ? 1.0f : 0.0f;
        }
        ce_store4(grad, gdt, base + v, gradScale * p0, gradScale * p1, gradScale * p2, gradScale * p3, true);
    }
    for (i64 v = vend + threadIdx.x; v < vocab; v += blockDim.x) {
        const float p = ce_exp2(fmaf(ld(logits, ldt, base + v), CE_LOG2E, -lse2));
        st(grad, gdt, base + v, gradScale * (v == y ? p - 1.0f : p));
    }
}

// ce_cap returns z = c*tanh(x/c) (x itself when c == 0, the no-cap case).
__device__ __forceinline__ float ce_cap(float x, float c, float inv) { return c > 0.0f ? c * tanhf(x * inv) : x; }

// ce_jac is dz/dx at the capped value z: 1 - (z/c)^2 (1 without a cap).
__device__ __forceinline__ float ce_jac(float z, float c, float inv) {
    if (c == 0.0f) return 1.0f;
    const float r = z * inv;
    return 1.0f - r * r;
}

extern "C" __global__ void softmax_cross_entropy_capped(void* grad, int gdt, const void* logits, int ldt, const int* labels,
                                                        float* losses, i64 vocab, float gradScale, float cap) {
    __shared__ float sm[32];
    __shared__ float ss[32];
    const i64 row = blockIdx.x;
    const i64 base = row * vocab;
    const int y = labels[row];
    if (y == IGNORE_LABEL || y < 0 || y >= vocab) {
        for (i64 v = threadIdx.x; v < vocab; v += blockDim.x) st(grad, gdt, base + v, 0.0f);
        if (threadIdx.x == 0) losses[row] = 0.0f;
        return;
    }
    // The vector path needs 16-byte rows of f32 logits and 8-byte (bf16)
    // or 16-byte (f32) rows of grad.
    const bool vec = ldt == DT_F32 && (gdt == DT_F32 || gdt == DT_BF16) && (vocab & 3) == 0 &&
                     ((unsigned long long)logits & 15) == 0 &&
                     ((unsigned long long)grad & (gdt == DT_F32 ? 15 : 7)) == 0;
    const i64 vend = vec ? vocab : 0; // elements handled four at a time
    const float* lf = (const float*)logits + base;
    const float inv = cap > 0.0f ? 1.0f / cap : 0.0f;
    float m = NEG_INF, s = 0.0f;
    for (i64 v = 4 * (i64)threadIdx.x; v < vend; v += 4 * (i64)blockDim.x) {
        const f32x4 x = *(const f32x4*)(lf + v);
        const float a = ce_cap(x.x, cap, inv) * CE_LOG2E, b = ce_cap(x.y, cap, inv) * CE_LOG2E;
        const float c = ce_cap(x.z, cap, inv) * CE_LOG2E, d = ce_cap(x.w, cap, inv) * CE_LOG2E;
        const float mn = fmaxf(m, fmaxf(fmaxf(a, b), fmaxf(c, d)));
        s = s * ce_exp2(m - mn) + ce_exp2(a - mn) + ce_exp2(b - mn) + ce_exp2(c - mn) + ce_exp2(d - mn);
        m = mn;
    }
    for (i64 v = vend + threadIdx.x; v < vocab; v += blockDim.x) {
        const float a = ce_cap(ld(logits, ldt, base + v), cap, inv) * CE_LOG2E;
        const float mn = fmaxf(m, a);
        s = s * ce_exp2(m - mn) + ce_exp2(a - mn);
        m = mn;
    }
    // Merge (m, s) pairs: first across the warp, then across warps.
    for (int o = 16; o > 0; o >>= 1) ce_merge(m, s, __shfl_xor_sync(0xffffffffu, m, o), __shfl_xor_sync(0xffffffffu, s, o));
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
    if (lane == 0) {
        sm[warp] = m;
        ss[warp] = s;
    }
    __syncthreads();
    m = lane < nw ? sm[lane] : NEG_INF;
    s = lane < nw ? ss[lane] : 0.0f;
    for (int o = 16; o > 0; o >>= 1) ce_merge(m, s, __shfl_xor_sync(0xffffffffu, m, o), __shfl_xor_sync(0xffffffffu, s, o));
    const float lse2 = m + log2f(s); // base-2 log-sum-exp of the scaled row
    const float xy = ce_cap(ld(logits, ldt, base + y), cap, inv);
    __syncthreads(); // every thread has read x_y before anyone overwrites it (in place)
    if (threadIdx.x == 0) losses[row] = lse2 * CE_LN2 - xy;
    for (i64 v = 4 * (i64)threadIdx.x; v < vend; v += 4 * (i64)blockDim.x) {
        const f32x4 x = *(const f32x4*)(lf + v);
        const float z0 = ce_cap(x.x, cap, inv), z1 = ce_cap(x.y, cap, inv);
        const float z2 = ce_cap(x.z, cap, inv), z3 = ce_cap(x.w, cap, inv);
        float p0 = ce_exp2(fmaf(z0, CE_LOG2E, -lse2)), p1 = ce_exp2(fmaf(z1, CE_LOG2E, -lse2));
        float p2 = ce_exp2(fmaf(z2, CE_LOG2E, -lse2)), p3 = ce_exp2(fmaf(z3, CE_LOG2E, -lse2));
        if (y >= v && y < v + 4) {
            p0 -= y == v ? 1.0f : 0.0f;
            p1 -= y == v + 1 ? 1.0f : 0.0f;
            p2 -= y == v + 2 ? 1.0f : 0.0f;
            p3 -= y == v + 3 ? 1.0f : 0.0f;
        }
        ce_store4(grad, gdt, base + v, gradScale * p0 * ce_jac(z0, cap, inv), gradScale * p1 * ce_jac(z1, cap, inv),
                  gradScale * p2 * ce_jac(z2, cap, inv), gradScale * p3 * ce_jac(z3, cap, inv), true);
    }
    for (i64 v = vend + threadIdx.x; v < vocab; v += blockDim.x) {
        const float z = ce_cap(ld(logits, ldt, base + v), cap, inv);
        const float p = ce_exp2(fmaf(z, CE_LOG2E, -lse2));
        st(grad, gdt, base + v, gradScale * (v == y ? p - 1.0f : p) * ce_jac(z, cap, inv));
    }
}
