// gemv.cu: the matrix-vector product of decoding, one row of activations
// times a bf16 weight, read once at full memory bandwidth:
//   y[r] = alpha * sum_c x[c] * w[r, c] + beta * y[r]      r < n, c < k
// w is [n, k] row-major (an nn.Linear weight, out x in), x [k] bf16, y [n]
// bf16 or f32 (beta = 0 overwrites y without reading it). The float32 sum
// runs over each lane's 8-value pieces and then across the warp.
// One warp per row, 8 rows per 256-thread block; each lane reads 16 bytes
// of w and of x at a time, four pieces in flight. The host launches it
// only for k a multiple of 8 and 16-byte aligned w and x (cuBLASLt
// takes the rest); there is no backward (decoding only). gemv_bf16_multi
// does the same for up to three weights sharing x in one launch.
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

// gemv_row is one warp's row: y[row] = alpha * w[row, :] . x + beta * y[row].
__device__ __forceinline__ void gemv_row(void* y, int ydt, const unsigned short* x, const unsigned short* w, i64 row, i64 k, float alpha,
                                         float beta) {
    const int lane = threadIdx.x & 31;
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

// GEMV_PREFETCH is how many bytes at the start of its row each warp asks L2
// for before PDL_WAIT() when the kernels are built for programmatic
// dependent launch (common.cuh): the weights are read-only for the whole
// decoding step, so their fetch may overlap the previous kernel's tail.
// 0 turns it off (WHET_NVRTC_DEFINES=GEMV_PREFETCH=0).
#ifndef GEMV_PREFETCH
#define GEMV_PREFETCH 8192
#endif

__device__ __forceinline__ void gemv_prefetch(const unsigned short* w, i64 row, i64 k) {
#if PDL_ON
    const char* p = (const char*)(w + row * k);
    const i64 bytes = 2 * k < (i64)GEMV_PREFETCH ? 2 * k : (i64)GEMV_PREFETCH;
    for (i64 o = (i64)(threadIdx.x & 31) * 128; o < bytes; o += 32 * 128) asm volatile("prefetch.global.L2 [%0];" ::"l"(p + o));
#endif
}

extern "C" __global__ void __launch_bounds__(256) gemv_bf16(void* y, int ydt, const unsigned short* x, const unsigned short* w, i64 n, i64 k,
                                                            float alpha, float beta) {
    const i64 row = (i64)blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5);
    if (row < n) gemv_prefetch(w, row, k);
    PDL_WAIT();
    PDL_TRIGGER();
    if (row < n) gemv_row(y, ydt, x, w, row, k, alpha, beta);
}

// gemv_bf16_multi is gemv_bf16 (alpha 1) for up to three weights that
// share x (q, k and v; gate and up), their rows numbered one after the
// other across the grid: one launch instead of three.
extern "C" __global__ void __launch_bounds__(256) gemv_bf16_multi(const unsigned short* x, i64 k, int ydt, float beta, void* y0,
                                                                  const unsigned short* w0, i64 n0, void* y1, const unsigned short* w1,
                                                                  i64 n1, void* y2, const unsigned short* w2, i64 n2) {
    i64 row = (i64)blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5);
#if PDL_ON
    void* y = y0;
    const unsigned short* w = w0;
    if (row >= n0) {
        row -= n0, y = y1, w = w1;
        if (row >= n1) row -= n1, y = y2, w = w2, row = row < n2 ? row : -1;
    }
    if (row >= 0) gemv_prefetch(w, row, k);
    PDL_WAIT();
    PDL_TRIGGER();
    if (row >= 0) gemv_row(y, ydt, x, w, row, k, 1.0f, beta);
#else
    if (row < n0) {
        gemv_row(y0, ydt, x, w0, row, k, 1.0f, beta);
        return;
    }
    row -= n0;
    if (row < n1) {
        gemv_row(y1, ydt, x, w1, row, k, 1.0f, beta);
        return;
    }
    row -= n1;
    if (row < n2) gemv_row(y2, ydt, x, w2, row, k, 1.0f, beta);
#endif
}

// The fused decode GEMVs (WHET_DECODE_FUSE=1, engine.FusedMatVecs): each
// gives the bits of the unfused ops it replaces, for the operands the host
// lets through (bf16 weights, k a multiple of 8, 16-byte aligned vectors).
//
// gemv_dot is gemv_row's sum (the same pieces in the same order), returned
// to every lane; x may be in shared memory.
__device__ __forceinline__ float gemv_dot(const unsigned short* x, const unsigned short* w, i64 row, i64 k) {
    const int lane = threadIdx.x & 31;
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
    return warp_sum(acc);
}

// GEMV_EARLY=1 (WHET_NVRTC_DEFINES; opt-in, never run on a GPU before
// tools/gpu/decode-early): the fused decode GEMVs and the head's argmax
// GEMV load each lane's first round of its row (gemv_row's first four
// pieces) into registers before PDL_WAIT() and before their norm or SwiGLU
// prologue, and gemv_dot_early uses them for that round: the same sums in
// the same order. Under programmatic dependent launch (WHET_CUDA_PDL=1) a
// kernel's first weight loads then overlap the kernel before it (the
// weights are read-only during a decoding step; these kernels serve only
// decoding's products of model weights). decode-next measured the
// round-parallel kernels, which load so, 6 % faster with PDL than without,
// but slower than these kernels without PDL. 0 (the default) compiles the
// kernels as before.
#ifndef GEMV_EARLY
#define GEMV_EARLY 0
#endif

struct gemv_early {
    u32x4 a[4];
    bool ok;
};

// gemv_early_load loads this lane's first round of row (none for row < 0
// or a lane gemv_dot's main loop skips).
__device__ __forceinline__ void gemv_early_load(gemv_early& e, const unsigned short* w, i64 row, i64 k) {
#if GEMV_EARLY
    const int lane = threadIdx.x & 31;
    e.ok = row >= 0 && lane + 96 < k / 8;
    if (e.ok) {
        const u32x4* wr = (const u32x4*)(w + row * k);
        e.a[0] = wr[lane], e.a[1] = wr[lane + 32], e.a[2] = wr[lane + 64], e.a[3] = wr[lane + 96];
    }
#else
    e.ok = false;
#endif
}

// gemv_dot_early is gemv_dot with the first round from e when it holds it.
__device__ __forceinline__ float gemv_dot_early(const unsigned short* x, const unsigned short* w, i64 row, i64 k, const gemv_early& e) {
#if GEMV_EARLY
    const int lane = threadIdx.x & 31;
    const u32x4* wr = (const u32x4*)(w + row * k);
    const u32x4* xv = (const u32x4*)x;
    const i64 k8 = k / 8;
    float acc = 0.0f;
    i64 i = lane;
    if (e.ok) {
        const u32x4 b0 = xv[i], b1 = xv[i + 32], b2 = xv[i + 64], b3 = xv[i + 96];
        acc += dot8_bf16(e.a[0], b0) + dot8_bf16(e.a[1], b1) + dot8_bf16(e.a[2], b2) + dot8_bf16(e.a[3], b3);
        i += 128;
    }
    for (; i + 96 < k8; i += 128) {
        const u32x4 a0 = wr[i], a1 = wr[i + 32], a2 = wr[i + 64], a3 = wr[i + 96];
        const u32x4 b0 = xv[i], b1 = xv[i + 32], b2 = xv[i + 64], b3 = xv[i + 96];
        acc += dot8_bf16(a0, b0) + dot8_bf16(a1, b1) + dot8_bf16(a2, b2) + dot8_bf16(a3, b3);
    }
    for (; i < k8; i += 32) acc += dot8_bf16(wr[i], xv[i]);
    return warp_sum(acc);
#else
    return gemv_dot(x, w, row, k);
#endif
}

// gemv_bf16_add: y[r] = w[r, :] . x + res[r] (y and res [n]): the residual
// add of the o and down projections without the copy of res into y first
// (gemv_bf16 with beta 1 over y = res gives the same bits).
extern "C" __global__ void __launch_bounds__(256) gemv_bf16_add(void* y, int ydt, const unsigned short* x, const unsigned short* w,
                                                                const void* res, int rdt, i64 n, i64 k) {
    const i64 row = (i64)blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5);
    gemv_early e;
    gemv_early_load(e, w, row < n ? row : -1, k);
    if (row < n) gemv_prefetch(w, row, k);
    PDL_WAIT();
    PDL_TRIGGER();
    if (row >= n) return;
    const float acc = gemv_dot_early(x, w, row, k, e);
    if ((threadIdx.x & 31) == 0) st(y, ydt, row, acc + ld(res, rdt, row));
}

__device__ __forceinline__ float gemv_sigmoid(float x) { return 1.0f / (1.0f + expf(-x)); }

// gemv_bf16_swiglu_add: y[r] = w[r, :] . s + res[r] with s = silu(g) * u
// rounded to bf16, as swiglu_forward writes it (g and u [k], dtype gdt,
// 16-byte aligned). Each block forms all of s in shared memory (dynamic,
// 2k bytes) before its rows: the MLP's activation without its launch and
// without s going through memory.
extern "C" __global__ void __launch_bounds__(256) gemv_bf16_swiglu_add(void* y, int ydt, const void* g, const void* u, int gdt,
                                                                       const unsigned short* w, const void* res, int rdt, i64 n,
                                                                       i64 k) {
    extern __shared__ u32x4 gemv_smem[];
    unsigned short* s = (unsigned short*)gemv_smem;
    const i64 row = (i64)blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5);
    gemv_early e;
    gemv_early_load(e, w, row < n ? row : -1, k);
    if (row < n) gemv_prefetch(w, row, k);
    PDL_WAIT();
    PDL_TRIGGER();
    for (i64 c = threadIdx.x; c < k / 8; c += blockDim.x) {
        float gv[8], uv[8], o[8];
        ld8(g, gdt, 8 * c, gv);
        ld8(u, gdt, 8 * c, uv);
#pragma unroll
        for (int e = 0; e < 8; e++) o[e] = gv[e] * gemv_sigmoid(gv[e]) * uv[e];
        st8(s, DT_BF16, 8 * c, o);
    }
    __syncthreads();
    if (row >= n) return;
    const float acc = gemv_dot_early(s, w, row, k, e);
    if ((threadIdx.x & 31) == 0) st(y, ydt, row, acc + ld(res, rdt, row));
}

// gemv_bf16_norm_multi: gemv_bf16_multi (beta 0) of h = RMSNorm(x) * nw
// rounded to bf16, which each block forms in shared memory (dynamic, 2k
// bytes) from x [k] (16-byte aligned, dtype xdt) and the norm weight nw [k]:
// the norm before q/k/v or gate/up without its launch. The sum of squares
// is taken as rmsnorm_forward takes it with nt threads (the host passes
// its block size, at most 1024): each of the 256 threads here plays up to
// four of those threads and their warps are summed in the same tree, so
// rstd, and h, have the same bits.
extern "C" __global__ void __launch_bounds__(256) gemv_bf16_norm_multi(const void* x, int xdt, const void* nw, int nwdt, float eps, int nt,
                                                                       i64 k, int ydt, void* y0, const unsigned short* w0, i64 n0,
                                                                       void* y1, const unsigned short* w1, i64 n1, void* y2,
                                                                       const unsigned short* w2, i64 n2) {
    extern __shared__ u32x4 gemv_smem[];
    __shared__ float scratch[32];
    unsigned short* h = (unsigned short*)gemv_smem;
    i64 row = (i64)blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5);
    void* y = y0;
    const unsigned short* w = w0;
    if (row >= n0) {
        row -= n0, y = y1, w = w1;
        if (row >= n1) row -= n1, y = y2, w = w2, row = row < n2 ? row : -1;
    }
    gemv_early e;
    gemv_early_load(e, w, row, k);
    if (row >= 0) gemv_prefetch(w, row, k);
    PDL_WAIT();
    PDL_TRIGGER();
    const i64 k8 = k / 8;
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
#pragma unroll
    for (int v = 0; v < 4; v++) {
        // Thread j = threadIdx.x + 256 v of rmsnorm_forward's nt.
        const int j = threadIdx.x + 256 * v;
        float part = 0.0f;
        if (j < nt) {
            for (i64 c = j; c < k8; c += nt) {
                float xv[8];
                ld8(x, xdt, 8 * c, xv);
#pragma unroll
                for (int e = 0; e < 8; e++) part += xv[e] * xv[e];
            }
        }
        part = warp_sum(part);
        if (lane == 0 && 256 * v < nt) scratch[warp + 8 * v] = part;
    }
    __syncthreads();
    const int nwarps = nt >> 5;
    float ss = lane < nwarps ? scratch[lane] : 0.0f;
    ss = warp_sum(ss);
    const float r = rsqrtf(ss / (float)k + eps);
    for (i64 c = threadIdx.x; c < k8; c += blockDim.x) {
        float xv[8], wv[8];
        ld8(x, xdt, 8 * c, xv);
        ld8(nw, nwdt, 8 * c, wv);
#pragma unroll
        for (int e = 0; e < 8; e++) xv[e] = xv[e] * r * wv[e];
        st8(h, DT_BF16, 8 * c, xv);
    }
    __syncthreads();
    if (row < 0) return;
    const float acc = gemv_dot_early(h, w, row, k, e);
    if (lane == 0) st(y, ydt, row, acc);
}

// gemv_bf16_argmax (WHET_DECODE_ARGMAX=1, engine.HeadArgmax): the LM head's
// gemv_bf16 (alpha 1, beta 0: y[r] = w[r, :] . x, the same sum, stored in
// ydt) with decode.cu's argmax folded in: ids[0] = the row of the largest
// stored y, the lowest on ties, a NaN never chosen over a number (all NaN:
// 0), as argmax over y would give. Each block finds its best row among its
// 8 and folds it into best[0] with one 64-bit atomic max of the key
//   (order(v) << 32) | (0xffffffff - row),
// order(v) the float's bits made to sort as unsigned (negative: all bits
// flipped, else the sign bit set; -0 taken as +0, which compare equal),
// so the largest key is the largest value and, among equal values, the
// lowest row; a NaN adds no key, and key 0 (no key) is below every number.
// The last block to finish (a ticket from count[0]) reads the key, writes
// ids[0] and resets best[0] and count[0] to 0 for the next step. n < 2^31.
__device__ __forceinline__ unsigned long long argmax_key(float v, unsigned int row) {
    if (v != v) return 0ull;
    unsigned int u = __float_as_uint(v == 0.0f ? 0.0f : v);
    u = (u & 0x80000000u) ? ~u : (u | 0x80000000u);
    return ((unsigned long long)u << 32) | (unsigned long long)(0xffffffffu - row);
}

extern "C" __global__ void __launch_bounds__(256) gemv_bf16_argmax(void* y, int ydt, const unsigned short* x, const unsigned short* w, i64 n,
                                                                   i64 k, int* ids, unsigned long long* best, unsigned int* count) {
    __shared__ unsigned long long keys[8];
    __shared__ int last;
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const i64 row = (i64)blockIdx.x * (blockDim.x >> 5) + warp;
    gemv_early e;
    gemv_early_load(e, w, row < n ? row : -1, k);
    PDL_WAIT();
    PDL_TRIGGER();
    unsigned long long key = 0ull;
    if (row < n) {
        const float acc = gemv_dot_early(x, w, row, k, e);
        if (lane == 0) {
            st(y, ydt, row, acc);
            key = argmax_key(ydt == DT_BF16 ? bf16_to_f32(f32_to_bf16(acc)) : acc, (unsigned int)row);
        }
    }
    if (lane == 0) keys[warp] = key;
    __syncthreads();
    if (threadIdx.x == 0) {
        unsigned long long b = 0ull;
        for (int i = 0; i < (int)(blockDim.x >> 5); i++) b = keys[i] > b ? keys[i] : b;
        if (b != 0ull) asm volatile("red.global.max.u64 [%0], %1;" ::"l"(best), "l"(b) : "memory");
        __threadfence();
        last = atomicAdd(count, 1u) == gridDim.x - 1;
    }
    __syncthreads();
    if (!last || threadIdx.x != 0) return;
    __threadfence();
    unsigned long long b;
    asm volatile("atom.global.exch.b64 %0, [%1], %2;" : "=l"(b) : "l"(best), "l"(0ull) : "memory");
    ids[0] = b == 0ull ? 0 : (int)(0xffffffffu - (unsigned int)(b & 0xffffffffull));
    count[0] = 0u;
}

// The round-parallel GEMVs (WHET_DECODE_GEMV=rr; never run on a GPU before
// tools/gpu/decode-next): the products above, bit for bit, with each row's
// rounds spread over warps. gemv_row's lane sums its row in rounds of four
// 16-byte pieces (i = lane + 128 j + {0, 32, 64, 96}), acc += ((p0 + p1) +
// p2) + p3 round after round, then across the warp; a row of k = 1024 R
// has exactly R rounds a lane and no tail. Here warp (j, r) of a block of
// rpb rows x R rounds (blockDim.x = 32 rpb R, at most 1024) loads round r
// of row j, adds its four pieces in that order into shared memory, and
// warp j then adds the R round sums of each lane in order from 0 and
// across the warp as gemv_row does: the same float operations in the same
// order. Every load of a row is in flight at once (a 2048-wide row is
// one round trip, an 8192-wide one too instead of eight in series), and the
// weight pieces are loaded before PDL_WAIT() and before the norm's or the
// activation's prologue (the weights are read-only during a decoding
// step; gemv_rr only when told so), so those overlap the first loads. The host passes R = k / 1024
// for k a multiple of 1024 (R <= 32) and takes the four-piece kernels
// otherwise.

// rr_load loads this lane's four pieces of round r of row row of w.
__device__ __forceinline__ void rr_load(u32x4* a, const unsigned short* w, i64 row, i64 k, int r) {
    const u32x4* wr = (const u32x4*)(w + row * k);
    const int i = (threadIdx.x & 31) + 128 * r;
    a[0] = wr[i], a[1] = wr[i + 32], a[2] = wr[i + 64], a[3] = wr[i + 96];
}

// rr_part is gemv_row's round r for this lane: ((p0 + p1) + p2) + p3.
__device__ __forceinline__ float rr_part(const u32x4* a, const unsigned short* x, int r) {
    const u32x4* xv = (const u32x4*)x;
    const int i = (threadIdx.x & 31) + 128 * r;
    const u32x4 b0 = xv[i], b1 = xv[i + 32], b2 = xv[i + 64], b3 = xv[i + 96];
    return dot8_bf16(a[0], b0) + dot8_bf16(a[1], b1) + dot8_bf16(a[2], b2) + dot8_bf16(a[3], b3);
}

// rr_sum is row j's sum from the round sums in red (warp w's lane l at
// red[32 w + l], warp w = j R + r): per lane acc += round r for r = 0..R-1,
// then warp_sum, to every lane.
__device__ __forceinline__ float rr_sum(const float* red, int j, int R) {
    const int lane = threadIdx.x & 31;
    float acc = 0.0f;
    for (int r = 0; r < R; r++) acc += red[32 * (j * R + r) + lane];
    return warp_sum(acc);
}

// rr_row3 finds row g of up to three weights numbered one after the other:
// its output, weight and row within it; row -1 past the last.
__device__ __forceinline__ i64 rr_row3(i64 g, void* y0, const unsigned short* w0, i64 n0, void* y1, const unsigned short* w1, i64 n1,
                                       void* y2, const unsigned short* w2, i64 n2, void** y, const unsigned short** w) {
    *y = y0, *w = w0;
    if (g < n0) return g;
    g -= n0, *y = y1, *w = w1;
    if (g < n1) return g;
    g -= n1, *y = y2, *w = w2;
    return g < n2 ? g : -1;
}

#define RR_MAX_WARPS 32

// gemv_rr is gemv_bf16 (alpha, beta) round-parallel. It serves any
// one-row product (MatMul), whose w another kernel may just have written,
// so it loads w before PDL_WAIT() only when the host says w is a weight
// (early = 1); the other rr kernels are decoding's products of weights.
extern "C" __global__ void __launch_bounds__(1024) gemv_rr(void* y, int ydt, const unsigned short* x, const unsigned short* w, i64 n, i64 k,
                                                           int R, float alpha, float beta, int early) {
    __shared__ float red[RR_MAX_WARPS * 32];
    const int warp = threadIdx.x >> 5, rpb = (int)(blockDim.x >> 5) / R, r = warp % R;
    const i64 row = (i64)blockIdx.x * rpb + warp / R;
    u32x4 a[4];
    if (early && row < n) rr_load(a, w, row, k, r);
    PDL_WAIT();
    PDL_TRIGGER();
    if (!early && row < n) rr_load(a, w, row, k, r);
    if (row < n) red[threadIdx.x] = rr_part(a, x, r);
    __syncthreads();
    const i64 out = (i64)blockIdx.x * rpb + warp;
    if (warp >= rpb || out >= n) return;
    const float acc = rr_sum(red, warp, R);
    if ((threadIdx.x & 31) == 0) {
        float v = alpha * acc;
        if (beta != 0.0f) v += beta * ld(y, ydt, out);
        st(y, ydt, out, v);
    }
}

// gemv_rr_multi is gemv_bf16_multi round-parallel.
extern "C" __global__ void __launch_bounds__(1024) gemv_rr_multi(const unsigned short* x, i64 k, int R, int ydt, float beta, void* y0,
                                                                 const unsigned short* w0, i64 n0, void* y1, const unsigned short* w1,
                                                                 i64 n1, void* y2, const unsigned short* w2, i64 n2) {
    __shared__ float red[RR_MAX_WARPS * 32];
    const int warp = threadIdx.x >> 5, rpb = (int)(blockDim.x >> 5) / R, r = warp % R;
    void* y;
    const unsigned short* w;
    const i64 row = rr_row3((i64)blockIdx.x * rpb + warp / R, y0, w0, n0, y1, w1, n1, y2, w2, n2, &y, &w);
    u32x4 a[4];
    if (row >= 0) rr_load(a, w, row, k, r);
    PDL_WAIT();
    PDL_TRIGGER();
    if (row >= 0) red[threadIdx.x] = rr_part(a, x, r);
    __syncthreads();
    if (warp >= rpb) return;
    const i64 out = rr_row3((i64)blockIdx.x * rpb + warp, y0, w0, n0, y1, w1, n1, y2, w2, n2, &y, &w);
    if (out < 0) return;
    const float acc = rr_sum(red, warp, R);
    if ((threadIdx.x & 31) == 0) {
        float v = 1.0f * acc;
        if (beta != 0.0f) v += beta * ld(y, ydt, out);
        st(y, ydt, out, v);
    }
}

// gemv_rr_add is gemv_bf16_add round-parallel: y[r] = w[r, :] . x + res[r].
extern "C" __global__ void __launch_bounds__(1024) gemv_rr_add(void* y, int ydt, const unsigned short* x, const unsigned short* w,
                                                               const void* res, int rdt, i64 n, i64 k, int R) {
    __shared__ float red[RR_MAX_WARPS * 32];
    const int warp = threadIdx.x >> 5, rpb = (int)(blockDim.x >> 5) / R, r = warp % R;
    const i64 row = (i64)blockIdx.x * rpb + warp / R;
    u32x4 a[4];
    if (row < n) rr_load(a, w, row, k, r);
    PDL_WAIT();
    PDL_TRIGGER();
    if (row < n) red[threadIdx.x] = rr_part(a, x, r);
    __syncthreads();
    const i64 out = (i64)blockIdx.x * rpb + warp;
    if (warp >= rpb || out >= n) return;
    const float acc = rr_sum(red, warp, R);
    if ((threadIdx.x & 31) == 0) st(y, ydt, out, acc + ld(res, rdt, out));
}

// gemv_rr_swiglu_add is gemv_bf16_swiglu_add round-parallel: the block
// forms s = silu(g) * u in shared memory (dynamic, 2k bytes) as that
// kernel does, with its weight pieces already in flight.
extern "C" __global__ void __launch_bounds__(1024) gemv_rr_swiglu_add(void* y, int ydt, const void* g, const void* u, int gdt,
                                                                      const unsigned short* w, const void* res, int rdt, i64 n, i64 k,
                                                                      int R) {
    extern __shared__ u32x4 gemv_smem[];
    __shared__ float red[RR_MAX_WARPS * 32];
    unsigned short* s = (unsigned short*)gemv_smem;
    const int warp = threadIdx.x >> 5, rpb = (int)(blockDim.x >> 5) / R, r = warp % R;
    const i64 row = (i64)blockIdx.x * rpb + warp / R;
    u32x4 a[4];
    if (row < n) rr_load(a, w, row, k, r);
    PDL_WAIT();
    PDL_TRIGGER();
    for (i64 c = threadIdx.x; c < k / 8; c += blockDim.x) {
        float gv[8], uv[8], o[8];
        ld8(g, gdt, 8 * c, gv);
        ld8(u, gdt, 8 * c, uv);
#pragma unroll
        for (int e = 0; e < 8; e++) o[e] = gv[e] * gemv_sigmoid(gv[e]) * uv[e];
        st8(s, DT_BF16, 8 * c, o);
    }
    __syncthreads();
    if (row < n) red[threadIdx.x] = rr_part(a, s, r);
    __syncthreads();
    const i64 out = (i64)blockIdx.x * rpb + warp;
    if (warp >= rpb || out >= n) return;
    const float acc = rr_sum(red, warp, R);
    if ((threadIdx.x & 31) == 0) st(y, ydt, out, acc + ld(res, rdt, out));
}

// gemv_rr_norm_multi is gemv_bf16_norm_multi round-parallel: the block
// forms h = RMSNorm(x) * nw in shared memory (dynamic, 2k bytes) with
// rmsnorm_forward's sum order for its nt threads (each thread here plays
// threads t, t + blockDim.x, ... of those), its weight pieces in flight.
extern "C" __global__ void __launch_bounds__(1024) gemv_rr_norm_multi(const void* x, int xdt, const void* nw, int nwdt, float eps, int nt,
                                                                      i64 k, int R, int ydt, void* y0, const unsigned short* w0, i64 n0,
                                                                      void* y1, const unsigned short* w1, i64 n1, void* y2,
                                                                      const unsigned short* w2, i64 n2) {
    extern __shared__ u32x4 gemv_smem[];
    __shared__ float red[RR_MAX_WARPS * 32];
    __shared__ float scratch[32];
    unsigned short* h = (unsigned short*)gemv_smem;
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, rpb = (int)(blockDim.x >> 5) / R, r = warp % R;
    void* y;
    const unsigned short* w;
    const i64 row = rr_row3((i64)blockIdx.x * rpb + warp / R, y0, w0, n0, y1, w1, n1, y2, w2, n2, &y, &w);
    u32x4 a[4];
    if (row >= 0) rr_load(a, w, row, k, r);
    PDL_WAIT();
    PDL_TRIGGER();
    const i64 k8 = k / 8;
    for (int v = 0; (int)blockDim.x * v < nt; v++) {
        // Thread j = threadIdx.x + blockDim.x v of rmsnorm_forward's nt;
        // a warp here holds the 32 threads of its warp j / 32.
        const int j = threadIdx.x + (int)blockDim.x * v;
        float part = 0.0f;
        if (j < nt) {
            for (i64 c = j; c < k8; c += nt) {
                float xv[8];
                ld8(x, xdt, 8 * c, xv);
#pragma unroll
                for (int e = 0; e < 8; e++) part += xv[e] * xv[e];
            }
        }
        part = warp_sum(part);
        if (lane == 0 && j < nt) scratch[j >> 5] = part;
    }
    __syncthreads();
    const int nwarps = nt >> 5;
    float ss = lane < nwarps ? scratch[lane] : 0.0f;
    ss = warp_sum(ss);
    const float rs = rsqrtf(ss / (float)k + eps);
    for (i64 c = threadIdx.x; c < k8; c += blockDim.x) {
        float xv[8], wv[8];
        ld8(x, xdt, 8 * c, xv);
        ld8(nw, nwdt, 8 * c, wv);
#pragma unroll
        for (int e = 0; e < 8; e++) xv[e] = xv[e] * rs * wv[e];
        st8(h, DT_BF16, 8 * c, xv);
    }
    __syncthreads();
    if (row >= 0) red[threadIdx.x] = rr_part(a, h, r);
    __syncthreads();
    if (warp >= rpb) return;
    const i64 out = rr_row3((i64)blockIdx.x * rpb + warp, y0, w0, n0, y1, w1, n1, y2, w2, n2, &y, &w);
    if (out < 0) return;
    const float acc = rr_sum(red, warp, R);
    if (lane == 0) st(y, ydt, out, acc);
}
