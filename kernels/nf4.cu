// nf4.cu: expanding QLoRA's 4-bit NormalFloat weights (bitsandbytes'
// layout) for a matrix product.
//
//   out[i] = NF4_LEVELS[code(i)] * absmax[i / 64]      (overwrite out)
//
// The weight is stored row-major in blocks of 64 values; each value is a
// 4-bit index into the 16 NF4 levels, two to a byte with the first value in
// the high nibble, and the bytes packed little-endian four to an int32
// word. absmax holds one float32 scale per block. Each thread expands one
// word into 8 values (one 16-byte store for an aligned bf16 out), looking
// the levels up in shared memory. The level table is engine.NF4Levels, written with
// the same decimal literals so that both round to the same float32.
//
// matvec_nf4 multiplies one row by such a weight without expanding it
// (decoding a QLoRA model reads each weight once per token):
//   y[r] = sum_c x[c] * w(r, c) (+ y[r] when accumulate)     w [n, k]
// with w(r, c) = NF4_LEVELS[code] * absmax in float32, summed as
// absmax * sum(level * x) over each run of values sharing an absmax. (The
// expanded bf16 weight of dequantize_nf4 rounds each w to bf16 first; in
// float32 the two are the same numbers.) One warp per row, 8 rows per
// 256-thread block; with k a multiple of 32 and aligned codes and x each
// lane takes 16 bytes of codes (32 values of one absmax block) at a time,
// else one word. k must be a multiple of 8 (a word's 8 values then share a
// block). There is no backward (the weight is frozen and decoding takes
// no gradient).
//
// matvec_nf4_split is the same product laid out for memory bandwidth (opt-in,
// NF4MatVecEnv in engine/cuda/nf4matvec.go), for up to three weights that
// share x (q, k, v; gate, up) in one launch, their rows numbered one after
// the other:  y_j[r] = sum_c x[c] * w_j(r, c) (+ y_j[r])   r < n_j.
// A 256-thread block takes NF4V2_ROWS consecutive rows and splits k among
// all its threads: thread t reads word t, t + 256, ... (8 codes each) of
// every row, so a warp's code loads are 128 contiguous bytes and a thread
// keeps 2 * NF4V2_ROWS independent loads in flight. Each word's 8 x
// values are one 16-byte load, shared by the NF4V2_ROWS rows; x (8 to 28
// KB at 8B-model widths) stays in L1 across the blocks of an SM, so it is
// read from L2 once per SM rather than staged per block. The levels are a
// 16-float shared table: a warp's lookups hit at most 16 distinct words
// in 16 banks, one pass each (the 256-pair table of matvec_nf4 conflicts).
// A word's 8 values share one absmax, (r * k + 8 * word) / 64, loaded with
// the word. Each thread's per-row sums go through warp_sum and then the 8
// warps' partials through shared memory. k must be a multiple of 8 and
// n0 > 0; rows past the last weight's end read row 0 of w_0 and write
// nothing.
// matvec_nf4_split_wide is the same kernel with 8 rows a block (NF4V2_ROWS_WIDE:
// x loaded once for 8 rows, half the blocks), to compare on a GPU.
#include "common.cuh"

#define NF4_BLOCK 64

// Two floats in one 8-byte access (no CUDA header here).
struct __attribute__((aligned(8))) f32x2 {
    float x, y;
};

__constant__ float NF4_LEVELS[16] = {
    -1.0f, -0.6961928009986877f, -0.5250730514526367f, -0.39491748809814453f,
    -0.28444138169288635f, -0.18477343022823334f, -0.09105003625154495f, 0.0f,
    0.07958029955625534f, 0.16093020141124725f, 0.24611230194568634f, 0.33791524171829224f,
    0.44070982933044434f, 0.5626170039176941f, 0.7229568362236023f, 1.0f,
};

extern "C" __global__ void dequantize_nf4(void* out, int odt, const unsigned int* packed, const float* absmax, i64 words) {
    // The lanes of a warp look up different levels at once, which the
    // constant cache would serialise; shared memory serves 16 distinct
    // words in one pass.
    __shared__ float levels[16];
    if (threadIdx.x < 16) levels[threadIdx.x] = NF4_LEVELS[threadIdx.x];
    __syncthreads();
    const bool vec = aligned16(out); // 8 values = one 16-byte bf16 store
    for (i64 w = blockIdx.x * (i64)blockDim.x + threadIdx.x; w < words; w += (i64)gridDim.x * blockDim.x) {
        const unsigned int word = packed[w];
        const float s = absmax[(8 * w) / NF4_BLOCK]; // a word's 8 values never straddle a block
        float v[8];
#pragma unroll
        for (int k = 0; k < 4; k++) {
            const unsigned int by = (word >> (8 * k)) & 0xffu;
            v[2 * k] = levels[by >> 4] * s;
            v[2 * k + 1] = levels[by & 15u] * s;
        }
        if (vec) {
            st8(out, odt, 8 * w, v);
        } else {
#pragma unroll
            for (int k = 0; k < 8; k++) st(out, odt, 8 * w + k, v[k]);
        }
    }
}

extern "C" __global__ void __launch_bounds__(256) matvec_nf4(void* y, int ydt, const void* x, int xdt, const unsigned int* packed,
                                                             const float* absmax, i64 n, i64 k, int accumulate) {
    // pair[b] holds the levels of both codes of byte b (high nibble first),
    // so each byte of codes costs one 8-byte shared load.
    __shared__ f32x2 pair[256];
    for (int b = threadIdx.x; b < 256; b += blockDim.x) {
        pair[b].x = NF4_LEVELS[b >> 4];
        pair[b].y = NF4_LEVELS[b & 15];
    }
    __syncthreads();
    const int lane = threadIdx.x & 31;
    const i64 row = (i64)blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5);
    if (row >= n) return;
    const i64 kw = k / 8; // words per row
    const unsigned int* pr = packed + row * kw;
    float acc = 0.0f;
    if ((k & 31) == 0 && aligned16(packed) && aligned16(x)) {
        const u32x4* pv = (const u32x4*)pr;
        for (i64 c = lane; c < kw / 4; c += 32) {
            const u32x4 q = pv[c];
            const float s = absmax[(row * k + c * 32) / NF4_BLOCK];
            const unsigned int words[4] = {q.x, q.y, q.z, q.w};
            float part = 0.0f; // sum of level * x over the 32 values, times s once
#pragma unroll
            for (int wi = 0; wi < 4; wi++) {
                float xv[8];
                ld8(x, xdt, c * 32 + wi * 8, xv);
#pragma unroll
                for (int b = 0; b < 4; b++) {
                    const f32x2 l = pair[(words[wi] >> (8 * b)) & 0xffu];
                    part += l.x * xv[2 * b] + l.y * xv[2 * b + 1];
                }
            }
            acc += s * part;
        }
    } else {
        for (i64 c = lane; c < kw; c += 32) {
            const unsigned int word = pr[c];
            const float s = absmax[(row * k + c * 8) / NF4_BLOCK];
            float part = 0.0f;
#pragma unroll
            for (int b = 0; b < 4; b++) {
                const f32x2 l = pair[(word >> (8 * b)) & 0xffu];
                part += l.x * ld(x, xdt, c * 8 + 2 * b) + l.y * ld(x, xdt, c * 8 + 2 * b + 1);
            }
            acc += s * part;
        }
    }
    acc = warp_sum(acc);
    if (lane == 0) {
        if (accumulate) acc += ld(y, ydt, row);
        st(y, ydt, row, acc);
    }
}

// Rows per block of matvec_nf4_split (nf4V2Rows in engine/cuda/nf4matvec.go);
// matvec_nf4_split_wide takes 8 (nf4V2RowsWide), to compare on a GPU.
#define NF4V2_ROWS 4
#define NF4V2_ROWS_WIDE 8

// nf4v2_dot8 adds sum_e level(code_e) * x[e] over the 8 codes of word,
// high nibble of each byte first.
__device__ __forceinline__ float nf4v2_dot8(const float* levels, unsigned int word, const float* xv) {
    float d = 0.0f;
#pragma unroll
    for (int b = 0; b < 4; b++) {
        d += levels[(word >> (8 * b + 4)) & 15u] * xv[2 * b];
        d += levels[(word >> (8 * b)) & 15u] * xv[2 * b + 1];
    }
    return d;
}

// nf4v2_row finds row g of the concatenated weights: its codes, absmax,
// output and row within its weight; false past the last one.
__device__ __forceinline__ bool nf4v2_row(i64 g, void* y0, const unsigned int* p0, const float* a0, i64 n0, void* y1,
                                          const unsigned int* p1, const float* a1, i64 n1, void* y2, const unsigned int* p2,
                                          const float* a2, i64 n2, void** y, const unsigned int** p, const float** a, i64* row) {
    if (g < n0) {
        *y = y0, *p = p0, *a = a0, *row = g;
        return true;
    }
    if ((g -= n0) < n1) {
        *y = y1, *p = p1, *a = a1, *row = g;
        return true;
    }
    if ((g -= n1) < n2) {
        *y = y2, *p = p2, *a = a2, *row = g;
        return true;
    }
    return false;
}

// nf4v2_matvec is matvec_nf4_split's body for ROWS rows a block.
template <int ROWS>
__device__ __forceinline__ void nf4v2_matvec(const void* x, int xdt, i64 k, int ydt, int accumulate, void* y0, const unsigned int* p0,
                                             const float* a0, i64 n0, void* y1, const unsigned int* p1, const float* a1, i64 n1,
                                             void* y2, const unsigned int* p2, const float* a2, i64 n2, float* levels, float (*partial)[8]) {
    if (threadIdx.x < 16) levels[threadIdx.x] = NF4_LEVELS[threadIdx.x];
    const int kw = (int)(k / 8); // words per row (the host keeps k below 2^31)
    // This block's rows: their codes, and absmax from the block holding
    // the row's first value, off values into it (k need not be a multiple
    // of 64). A row past the end reads row 0 of weight 0 (the host passes
    // n0 > 0) and writes nothing.
    const unsigned int* codes[ROWS];
    const float* scale[ROWS];
    int off[ROWS];
#pragma unroll
    for (int r = 0; r < ROWS; r++) {
        void* y;
        const unsigned int* p;
        const float* a;
        i64 g;
        if (!nf4v2_row((i64)blockIdx.x * ROWS + r, y0, p0, a0, n0, y1, p1, a1, n1, y2, p2, a2, n2, &y, &p, &a, &g)) p = p0, a = a0, g = 0;
        codes[r] = p + g * kw;
        scale[r] = a + ((g * k) >> 6);
        off[r] = (int)((g * k) & 63);
    }
    __syncthreads(); // levels
    float acc[ROWS];
#pragma unroll
    for (int r = 0; r < ROWS; r++) acc[r] = 0.0f;
    const bool vec = aligned16(x);
    int w = threadIdx.x;
    // Two words per row at a time: 2 * ROWS code loads in flight.
    for (; w + 256 < kw; w += 512) {
        unsigned int c0[ROWS], c1[ROWS];
        float s0[ROWS], s1[ROWS];
#pragma unroll
        for (int r = 0; r < ROWS; r++) {
            c0[r] = codes[r][w];
            c1[r] = codes[r][w + 256];
            s0[r] = scale[r][(off[r] + 8 * w) >> 6];
            s1[r] = scale[r][(off[r] + 8 * (w + 256)) >> 6];
        }
        float x0[8], x1[8];
        if (vec) {
            ld8(x, xdt, 8 * (i64)w, x0);
            ld8(x, xdt, 8 * (i64)(w + 256), x1);
        } else {
#pragma unroll
            for (int e = 0; e < 8; e++) x0[e] = ld(x, xdt, 8 * (i64)w + e), x1[e] = ld(x, xdt, 8 * (i64)(w + 256) + e);
        }
#pragma unroll
        for (int r = 0; r < ROWS; r++) acc[r] += s0[r] * nf4v2_dot8(levels, c0[r], x0) + s1[r] * nf4v2_dot8(levels, c1[r], x1);
    }
    if (w < kw) {
        unsigned int c0[ROWS];
        float s0[ROWS];
#pragma unroll
        for (int r = 0; r < ROWS; r++) {
            c0[r] = codes[r][w];
            s0[r] = scale[r][(off[r] + 8 * w) >> 6];
        }
        float x0[8];
        if (vec) {
            ld8(x, xdt, 8 * (i64)w, x0);
        } else {
#pragma unroll
            for (int e = 0; e < 8; e++) x0[e] = ld(x, xdt, 8 * (i64)w + e);
        }
#pragma unroll
        for (int r = 0; r < ROWS; r++) acc[r] += s0[r] * nf4v2_dot8(levels, c0[r], x0);
    }
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
#pragma unroll
    for (int r = 0; r < ROWS; r++) {
        const float v = warp_sum(acc[r]);
        if (lane == 0) partial[r][warp] = v;
    }
    __syncthreads();
    void* y;
    const unsigned int* p;
    const float* a;
    i64 row;
    if (threadIdx.x < ROWS &&
        nf4v2_row((i64)blockIdx.x * ROWS + threadIdx.x, y0, p0, a0, n0, y1, p1, a1, n1, y2, p2, a2, n2, &y, &p, &a, &row)) {
        float v = 0.0f;
#pragma unroll
        for (int i = 0; i < 8; i++) v += partial[threadIdx.x][i];
        if (accumulate) v += ld(y, ydt, row);
        st(y, ydt, row, v);
    }
}

extern "C" __global__ void __launch_bounds__(256) matvec_nf4_split(const void* x, int xdt, i64 k, int ydt, int accumulate, void* y0,
                                                                const unsigned int* p0, const float* a0, i64 n0, void* y1,
                                                                const unsigned int* p1, const float* a1, i64 n1, void* y2,
                                                                const unsigned int* p2, const float* a2, i64 n2) {
    PDL_WAIT();
    PDL_TRIGGER();
    __shared__ float levels[16];
    __shared__ float partial[NF4V2_ROWS][8];
    nf4v2_matvec<NF4V2_ROWS>(x, xdt, k, ydt, accumulate, y0, p0, a0, n0, y1, p1, a1, n1, y2, p2, a2, n2, levels, partial);
}

extern "C" __global__ void __launch_bounds__(256) matvec_nf4_split_wide(const void* x, int xdt, i64 k, int ydt, int accumulate, void* y0,
                                                                   const unsigned int* p0, const float* a0, i64 n0, void* y1,
                                                                   const unsigned int* p1, const float* a1, i64 n1, void* y2,
                                                                   const unsigned int* p2, const float* a2, i64 n2) {
    PDL_WAIT();
    PDL_TRIGGER();
    __shared__ float levels[16];
    __shared__ float partial[NF4V2_ROWS_WIDE][8];
    nf4v2_matvec<NF4V2_ROWS_WIDE>(x, xdt, k, ydt, accumulate, y0, p0, a0, n0, y1, p1, a1, n1, y2, p2, a2, n2, levels, partial);
}

// The fused NF4 mat-vecs of decoding (WHET_DECODE_FUSE=1 on NF4 weights,
// engine.FusedNF4MatVecs): matvec_nf4_split's rows, bit for bit (the same
// sums, NF4V2_ROWS rows a block), with the op after them folded in.
//   matvec_nf4_split_add:    y[r] = sum_r + res[r]: the o and down
//                            projections' residual add without copying the
//                            residual into y first (the split kernel with
//                            accumulate over y = res gives the same bits);
//   matvec_nf4_split_swiglu: s[j] = silu(g_j) * u_j with g_j, u_j gate's and
//                            up's row j rounded to gdt, as MatVecsNF4 into g,
//                            u and then swiglu_forward give; a block takes
//                            rows 2b, 2b+1 of gate and of up, so g and u
//                            never go through memory and the activation
//                            needs no launch.
// nf4f_sum is nf4v2_matvec's sum for the block's rows (codes, scale, off
// as it sets them up), returned to threads 0..ROWS-1 (thread r: row r).
template <int ROWS>
__device__ __forceinline__ float nf4f_sum(const void* x, int xdt, i64 k, const unsigned int* const* codes, const float* const* scale,
                                          const int* off, float* levels, float (*partial)[8]) {
    const int kw = (int)(k / 8);
    __syncthreads(); // levels
    float acc[ROWS];
#pragma unroll
    for (int r = 0; r < ROWS; r++) acc[r] = 0.0f;
    const bool vec = aligned16(x);
    int w = threadIdx.x;
    for (; w + 256 < kw; w += 512) {
        unsigned int c0[ROWS], c1[ROWS];
        float s0[ROWS], s1[ROWS];
#pragma unroll
        for (int r = 0; r < ROWS; r++) {
            c0[r] = codes[r][w];
            c1[r] = codes[r][w + 256];
            s0[r] = scale[r][(off[r] + 8 * w) >> 6];
            s1[r] = scale[r][(off[r] + 8 * (w + 256)) >> 6];
        }
        float x0[8], x1[8];
        if (vec) {
            ld8(x, xdt, 8 * (i64)w, x0);
            ld8(x, xdt, 8 * (i64)(w + 256), x1);
        } else {
#pragma unroll
            for (int e = 0; e < 8; e++) x0[e] = ld(x, xdt, 8 * (i64)w + e), x1[e] = ld(x, xdt, 8 * (i64)(w + 256) + e);
        }
#pragma unroll
        for (int r = 0; r < ROWS; r++) acc[r] += s0[r] * nf4v2_dot8(levels, c0[r], x0) + s1[r] * nf4v2_dot8(levels, c1[r], x1);
    }
    if (w < kw) {
        unsigned int c0[ROWS];
        float s0[ROWS];
#pragma unroll
        for (int r = 0; r < ROWS; r++) {
            c0[r] = codes[r][w];
            s0[r] = scale[r][(off[r] + 8 * w) >> 6];
        }
        float x0[8];
        if (vec) {
            ld8(x, xdt, 8 * (i64)w, x0);
        } else {
#pragma unroll
            for (int e = 0; e < 8; e++) x0[e] = ld(x, xdt, 8 * (i64)w + e);
        }
#pragma unroll
        for (int r = 0; r < ROWS; r++) acc[r] += s0[r] * nf4v2_dot8(levels, c0[r], x0);
    }
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
#pragma unroll
    for (int r = 0; r < ROWS; r++) {
        const float v = warp_sum(acc[r]);
        if (lane == 0) partial[r][warp] = v;
    }
    __syncthreads();
    float v = 0.0f;
    if (threadIdx.x < ROWS) {
#pragma unroll
        for (int i = 0; i < 8; i++) v += partial[threadIdx.x][i];
    }
    return v;
}

// nf4f_setup points codes, scale and off at row g of one NF4 weight (p, a)
// of k columns, as nf4v2_matvec does.
__device__ __forceinline__ void nf4f_setup(const unsigned int* p, const float* a, i64 g, i64 k, const unsigned int** codes, const float** scale,
                                           int* off) {
    *codes = p + g * (k / 8);
    *scale = a + ((g * k) >> 6);
    *off = (int)((g * k) & 63);
}

extern "C" __global__ void __launch_bounds__(256) matvec_nf4_split_add(const void* x, int xdt, i64 k, void* y, int ydt, const unsigned int* p,
                                                                    const float* a, i64 n, const void* res, int rdt) {
    PDL_WAIT();
    PDL_TRIGGER();
    __shared__ float levels[16];
    __shared__ float partial[NF4V2_ROWS][8];
    if (threadIdx.x < 16) levels[threadIdx.x] = NF4_LEVELS[threadIdx.x];
    const unsigned int* codes[NF4V2_ROWS];
    const float* scale[NF4V2_ROWS];
    int off[NF4V2_ROWS];
#pragma unroll
    for (int r = 0; r < NF4V2_ROWS; r++) {
        const i64 g = (i64)blockIdx.x * NF4V2_ROWS + r;
        nf4f_setup(p, a, g < n ? g : 0, k, &codes[r], &scale[r], &off[r]);
    }
    float v = nf4f_sum<NF4V2_ROWS>(x, xdt, k, codes, scale, off, levels, partial);
    const i64 row = (i64)blockIdx.x * NF4V2_ROWS + threadIdx.x;
    if (threadIdx.x < NF4V2_ROWS && row < n) {
        v += ld(res, rdt, row);
        st(y, ydt, row, v);
    }
}

__device__ __forceinline__ float nf4f_sigmoid(float x) { return 1.0f / (1.0f + expf(-x)); }

extern "C" __global__ void __launch_bounds__(256) matvec_nf4_split_swiglu(const void* x, int xdt, i64 k, void* s, int sdt, int gdt,
                                                                       const unsigned int* pg, const float* ag, const unsigned int* pu,
                                                                       const float* au, i64 n) {
    PDL_WAIT();
    PDL_TRIGGER();
    __shared__ float levels[16];
    __shared__ float partial[NF4V2_ROWS][8];
    __shared__ float sums[NF4V2_ROWS];
    if (threadIdx.x < 16) levels[threadIdx.x] = NF4_LEVELS[threadIdx.x];
    // Rows 0, 1: gate's 2b, 2b+1; rows 2, 3: up's (NF4V2_ROWS is 4).
    const unsigned int* codes[4];
    const float* scale[4];
    int off[4];
#pragma unroll
    for (int r = 0; r < 4; r++) {
        const i64 j = 2 * (i64)blockIdx.x + (r & 1);
        if (j >= n) {
            nf4f_setup(pg, ag, 0, k, &codes[r], &scale[r], &off[r]);
        } else if (r < 2) {
            nf4f_setup(pg, ag, j, k, &codes[r], &scale[r], &off[r]);
        } else {
            nf4f_setup(pu, au, j, k, &codes[r], &scale[r], &off[r]);
        }
    }
    const float v = nf4f_sum<4>(x, xdt, k, codes, scale, off, levels, partial);
    if (threadIdx.x < 4) sums[threadIdx.x] = v;
    __syncthreads();
    const i64 j = 2 * (i64)blockIdx.x + threadIdx.x;
    if (threadIdx.x < 2 && j < n) {
        float g = sums[threadIdx.x], u = sums[threadIdx.x + 2];
        if (gdt == DT_BF16) g = bf16_to_f32(f32_to_bf16(g)), u = bf16_to_f32(f32_to_bf16(u));
        st(s, sdt, j, g * nf4f_sigmoid(g) * u);
    }
}

// matvec_nf4_split_add_norm: matvec_nf4_split_add, then h = RMSNorm(y) * nw
// as rmsnorm_forward gives it (16-byte path, nt threads: the host passes
// its block size) by the last block to finish (a ticket from count[0],
// which it resets): the o projection with the residual and the MLP's norm
// in one launch. Each block makes its y visible (__threadfence) before its
// ticket; the last block reads y from L2 (ld.global.cg: its L1 may hold
// lines of y from res when y is res) and plays rmsnorm_forward's threads
// j = threadIdx.x + 256 v, summed in the same tree, so h has its bits.
// The host passes n (the norm's width) a multiple of 8 with y, h and nw
// 16-byte aligned, y and h bf16 or f32.
__device__ __forceinline__ void ld8_cg(const void* p, int dt, i64 i, float* f) {
    if (dt == DT_BF16) {
        unsigned int w[4];
        asm volatile("ld.global.cg.v4.u32 {%0, %1, %2, %3}, [%4];"
                     : "=r"(w[0]), "=r"(w[1]), "=r"(w[2]), "=r"(w[3])
                     : "l"((const unsigned short*)p + i));
#pragma unroll
        for (int k = 0; k < 4; k++) {
            f[2 * k] = __uint_as_float(w[k] << 16);
            f[2 * k + 1] = __uint_as_float(w[k] & 0xffff0000u);
        }
    } else {
#pragma unroll
        for (int h = 0; h < 2; h++)
            asm volatile("ld.global.cg.v4.f32 {%0, %1, %2, %3}, [%4];"
                         : "=f"(f[4 * h]), "=f"(f[4 * h + 1]), "=f"(f[4 * h + 2]), "=f"(f[4 * h + 3])
                         : "l"((const float*)p + i + 4 * h));
    }
}

extern "C" __global__ void __launch_bounds__(256) matvec_nf4_split_add_norm(const void* x, int xdt, i64 k, void* y, int ydt,
                                                                         const unsigned int* p, const float* a, i64 n, const void* res,
                                                                         int rdt, void* h, int hdt, const void* nw, int nwdt, float eps,
                                                                         int nt, unsigned int* count) {
    PDL_WAIT();
    PDL_TRIGGER();
    __shared__ float levels[16];
    __shared__ float partial[NF4V2_ROWS][8];
    __shared__ float scratch[32];
    __shared__ int last;
    if (threadIdx.x < 16) levels[threadIdx.x] = NF4_LEVELS[threadIdx.x];
    const unsigned int* codes[NF4V2_ROWS];
    const float* scale[NF4V2_ROWS];
    int off[NF4V2_ROWS];
#pragma unroll
    for (int r = 0; r < NF4V2_ROWS; r++) {
        const i64 g = (i64)blockIdx.x * NF4V2_ROWS + r;
        nf4f_setup(p, a, g < n ? g : 0, k, &codes[r], &scale[r], &off[r]);
    }
    float v = nf4f_sum<NF4V2_ROWS>(x, xdt, k, codes, scale, off, levels, partial);
    const i64 row = (i64)blockIdx.x * NF4V2_ROWS + threadIdx.x;
    if (threadIdx.x < NF4V2_ROWS && row < n) {
        v += ld(res, rdt, row);
        st(y, ydt, row, v);
    }
    __threadfence();
    __syncthreads();
    if (threadIdx.x == 0) last = atomicAdd(count, 1u) == gridDim.x - 1;
    __syncthreads();
    if (!last) return;
    __threadfence();
    const i64 n8 = n / 8;
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
#pragma unroll
    for (int vv = 0; vv < 4; vv++) {
        const int j = threadIdx.x + 256 * vv; // thread j of rmsnorm_forward's nt
        float part = 0.0f;
        if (j < nt) {
            for (i64 c = j; c < n8; c += nt) {
                float xv[8];
                ld8_cg(y, ydt, 8 * c, xv);
#pragma unroll
                for (int e = 0; e < 8; e++) part += xv[e] * xv[e];
            }
        }
        part = warp_sum(part);
        if (lane == 0 && 256 * vv < nt) scratch[warp + 8 * vv] = part;
    }
    __syncthreads();
    float ss = lane < (nt >> 5) ? scratch[lane] : 0.0f;
    ss = warp_sum(ss);
    const float rs = rsqrtf(ss / (float)n + eps);
    for (i64 c = threadIdx.x; c < n8; c += blockDim.x) {
        float xv[8], wv[8];
        ld8_cg(y, ydt, 8 * c, xv);
        ld8(nw, nwdt, 8 * c, wv);
#pragma unroll
        for (int e = 0; e < 8; e++) xv[e] = xv[e] * rs * wv[e];
        st8(h, hdt, 8 * c, xv);
    }
    if (threadIdx.x == 0) count[0] = 0u;
}
