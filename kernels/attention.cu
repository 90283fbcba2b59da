// attention.cu: causal multi-head attention over packed sequences, flash
// style: keys and values stream through shared memory in tiles, softmax is
// computed online, and no T x T score matrix ever exists in memory.
//
// Shapes: q and out [T, H*D]; k and v [T, KVH*D]; lse [H, T] f32.
// (attention_forward also serves decoding: Tq queries at positions
// qOffset.. over a cache of qOffset+Tq keys of one sequence, no lse.)
// Query head h reads key/value head h / (H/KVH) (grouped-query attention).
// Token i attends to key j when both lie in the same sequence of the
// packed batch (starts[s] <= j <= i < starts[s+1]) and, with a sliding
// window W > 0, i - j < W. Scores are x_ij = scale * q_i . k_j, or, with a
// soft-cap c > 0 (Gemma 2), s_ij = c * tanh(x_ij / c): the softmax sees the
// capped score and the backward multiplies dS by ds/dx = 1 - tanh^2, so
// dq, dk below stay "scale * sum dS' k" with dS' = dS * (1 - tanh^2).
// softcap <= 0 means no cap (the plain kernels' arithmetic, unchanged).
//
// Forward (one block: 16 queries of one head; each warp owns 4 queries,
// each lane one key of the current 32-key tile):
//   m_i, l_i running max and sum of exp(score - m_i); acc_i running sum of
//   exp(score - m_i) * v_j. Each tile rescales both by exp(m_old - m_new).
//   out_i = acc_i / l_i (overwrite), lse_i = m_i + log(l_i) (overwrite).
//
// Backward recomputes the probabilities from lse instead of storing them:
//   P_ij   = exp(s_ij - lse_i)
//   Delta_i = dOut_i . out_i                       (attention_backward_delta)
//   dS_ij  = P_ij * (dOut_i . v_j - Delta_i) * ds_ij/dx_ij
//   dq_i   = scale * sum_j dS_ij k_j               (attention_backward_dq)
//   dk_j   = scale * sum_{h in group, i} dS_ij q_i (attention_backward_dkv)
//   dv_j   = sum_{h in group, i} P_ij dOut_i
// dq, dk and dv are overwritten. dq is computed per query and dk, dv per
// key (walking the query heads of its group), so no two blocks write the
// same element and no atomics are needed: results are the same every run.
//
// Shared-memory rows are padded to D+1 floats so that 32 lanes reading 32
// different rows at the same column hit 32 different banks. Head dims up
// to 256 are supported (8 values per lane).
#include "common.cuh"

#define QPW 4            // queries (forward, dq) or keys (dkv) per warp
#define NWARPS 4         // warps per block
#define QB (QPW * NWARPS) // queries or keys per block
#define KT 32            // keys (or queries, in dkv) per shared-memory tile
#define MAXC 8           // head dim / 32, at most

// seq_bounds finds the sequence holding token i: the last s with
// starts[s] <= i. Empty sequences (equal starts) are skipped naturally.
__device__ __forceinline__ void seq_bounds(const int* starts, int nseq, int i, int* lo, int* hi) {
    int a = 0, b = nseq - 1;
    while (a < b) {
        int mid = (a + b + 1) >> 1;
        if (starts[mid] <= i) a = mid; else b = mid - 1;
    }
    *lo = starts[a];
    *hi = starts[a + 1];
}

// first_key is the first key that the query at position i sees. With no
// starts (decoding over a cache) everything is one sequence from 0.
__device__ __forceinline__ int first_key(const int* starts, int nseq, int i, int window) {
    int lo = 0, hi;
    if (starts != nullptr) seq_bounds(starts, nseq, i, &lo, &hi);
    if (window > 0 && i - window + 1 > lo) lo = i - window + 1;
    return lo;
}

// end_query is one past the last query that sees key j.
__device__ __forceinline__ int end_query(const int* starts, int nseq, int j, int window) {
    int lo, hi;
    seq_bounds(starts, nseq, j, &lo, &hi);
    if (window > 0 && j + window < hi) hi = j + window;
    return hi;
}

// cap_score turns the scaled dot product x into the score the softmax
// sees: x itself, or softcap * tanh(x / softcap) when softcap > 0. *dcap
// receives the derivative of the score by x (1 without a cap).
__device__ __forceinline__ float cap_score(float x, float softcap, float* dcap) {
    if (softcap <= 0.0f) {
        *dcap = 1.0f;
        return x;
    }
    const float t = tanhf(x / softcap);
    *dcap = 1.0f - t * t;
    return softcap * t;
}

// attention_forward serves training (qOffset 0, Tq = T, starts given) and
// decoding over a key/value cache (starts null: one sequence; query row r
// is position qOffset + r; lse null: nothing saved).
extern "C" __global__ void __launch_bounds__(128) attention_forward(
    void* out, int odt, float* lse, const void* q, int qdt, const void* k, int kdt, const void* v, int vdt,
    const int* starts, int nseq, int Tq, int qOffset, int H, int KVH, int D, float scale, int window, float softcap) {
    extern __shared__ float smem[];
    const int Dp = D + 1;
    float* Ks = smem;           // [KT][Dp]
    float* Vs = Ks + KT * Dp;   // [KT][Dp]
    float* Qs = Vs + KT * Dp;   // [QB][D]
    const int h = blockIdx.y, kvh = h / (H / KVH);
    const int q0 = blockIdx.x * QB;
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const i64 qStride = (i64)H * D, kvStride = (i64)KVH * D;

    for (int idx = tid; idx < QB * D; idx += blockDim.x) {
        int r = idx / D, c = idx % D, i = q0 + r;
        Qs[idx] = i < Tq ? ld(q, qdt, (i64)i * qStride + (i64)h * D + c) : 0.0f;
    }
    int qi[QPW], lo[QPW]; // query row, first key it sees
    float m[QPW], l[QPW], acc[QPW][MAXC];
#pragma unroll
    for (int qq = 0; qq < QPW; qq++) {
        qi[qq] = q0 + warp * QPW + qq;
        lo[qq] = qi[qq] < Tq ? first_key(starts, nseq, qOffset + qi[qq], window) : 0;
        m[qq] = NEG_INF;
        l[qq] = 0.0f;
#pragma unroll
        for (int c = 0; c < MAXC; c++) acc[qq][c] = 0.0f;
    }
    const int kEnd = qOffset + min(q0 + QB, Tq) - 1;
    const int kStart = first_key(starts, nseq, qOffset + q0, window);

    for (int kt = kStart; kt <= kEnd; kt += KT) {
        __syncthreads();
        for (int idx = tid; idx < KT * D; idx += blockDim.x) {
            int r = idx / D, c = idx % D, j = kt + r;
            float kv = 0.0f, vv = 0.0f;
            if (j <= kEnd) {
                i64 off = (i64)j * kvStride + (i64)kvh * D + c;
                kv = ld(k, kdt, off);
                vv = ld(v, vdt, off);
            }
            Ks[r * Dp + c] = kv;
            Vs[r * Dp + c] = vv;
        }
        __syncthreads();
        const int j = kt + lane;
#pragma unroll
        for (int qq = 0; qq < QPW; qq++) {
            if (qi[qq] >= Tq) continue;
            const int i = qOffset + qi[qq]; // position of the query
            if (kt > i || kt + KT - 1 < lo[qq]) continue; // warp-uniform
            const bool valid = j >= lo[qq] && j <= i;
            float s = NEG_INF;
            if (valid) {
                const float* qr = Qs + (warp * QPW + qq) * D;
                const float* kr = Ks + lane * Dp;
                float d = 0.0f;
                for (int c = 0; c < D; c++) d += qr[c] * kr[c];
                float dcap;
                s = cap_score(d * scale, softcap, &dcap);
            }
            const float mNew = fmaxf(m[qq], warp_max(s));
            const float corr = expf(m[qq] - mNew);
            const float p = valid ? expf(s - mNew) : 0.0f;
            l[qq] = l[qq] * corr + warp_sum(p);
#pragma unroll
            for (int c = 0; c < MAXC; c++) acc[qq][c] *= corr;
            for (int jj = 0; jj < KT; jj++) {
                const float pj = __shfl_sync(0xffffffffu, p, jj);
                if (pj == 0.0f) continue;
#pragma unroll
                for (int c = 0; c < MAXC; c++) {
                    int d = lane + 32 * c;
                    if (d < D) acc[qq][c] += pj * Vs[jj * Dp + d];
                }
            }
            m[qq] = mNew;
        }
    }
#pragma unroll
    for (int qq = 0; qq < QPW; qq++) {
        const int i = qi[qq];
        if (i >= Tq) continue;
        const float inv = 1.0f / l[qq];
#pragma unroll
        for (int c = 0; c < MAXC; c++) {
            int d = lane + 32 * c;
            if (d < D) st(out, odt, (i64)i * qStride + (i64)h * D + d, acc[qq][c] * inv);
        }
        if (lse != nullptr && lane == 0) lse[(i64)h * Tq + i] = m[qq] + logf(l[qq]);
    }
}

// attention_backward_delta: delta[h*T + i] = dOut_i . out_i, one warp per
// (token, head).
extern "C" __global__ void attention_backward_delta(float* delta, const void* dout, int dodt, const void* out, int odt,
                                                    int T, int H, int D) {
    const int lane = threadIdx.x & 31;
    const i64 warps = (i64)gridDim.x * (blockDim.x >> 5);
    for (i64 w = blockIdx.x * (i64)(blockDim.x >> 5) + (threadIdx.x >> 5); w < (i64)T * H; w += warps) {
        const i64 i = w / H, h = w % H;
        const i64 base = i * H * D + h * D;
        float s = 0.0f;
        for (int d = lane; d < D; d += 32) s += ld(dout, dodt, base + d) * ld(out, odt, base + d);
        s = warp_sum(s);
        if (lane == 0) delta[h * T + i] = s;
    }
}

extern "C" __global__ void __launch_bounds__(128) attention_backward_dq(
    void* dq, int dqdt, const void* dout, int dodt, const void* q, int qdt, const void* k, int kdt, const void* v,
    int vdt, const float* lse, const float* delta, const int* starts, int nseq, int T, int H, int KVH, int D,
    float scale, int window, float softcap) {
    extern __shared__ float smem[];
    const int Dp = D + 1;
    float* Ks = smem;            // [KT][Dp]
    float* Vs = Ks + KT * Dp;    // [KT][Dp]
    float* Qs = Vs + KT * Dp;    // [QB][D]
    float* dOs = Qs + QB * D;    // [QB][D]
    const int h = blockIdx.y, kvh = h / (H / KVH);
    const int q0 = blockIdx.x * QB;
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const i64 qStride = (i64)H * D, kvStride = (i64)KVH * D;

    for (int idx = tid; idx < QB * D; idx += blockDim.x) {
        int r = idx / D, c = idx % D, i = q0 + r;
        i64 off = (i64)i * qStride + (i64)h * D + c;
        Qs[idx] = i < T ? ld(q, qdt, off) : 0.0f;
        dOs[idx] = i < T ? ld(dout, dodt, off) : 0.0f;
    }
    int qi[QPW], lo[QPW];
    float lq[QPW], dl[QPW], acc[QPW][MAXC];
#pragma unroll
    for (int qq = 0; qq < QPW; qq++) {
        qi[qq] = q0 + warp * QPW + qq;
        const bool in = qi[qq] < T;
        lo[qq] = in ? first_key(starts, nseq, qi[qq], window) : 0;
        lq[qq] = in ? lse[(i64)h * T + qi[qq]] : 0.0f;
        dl[qq] = in ? delta[(i64)h * T + qi[qq]] : 0.0f;
#pragma unroll
        for (int c = 0; c < MAXC; c++) acc[qq][c] = 0.0f;
    }
    const int kEnd = min(q0 + QB, T) - 1;
    const int kStart = first_key(starts, nseq, q0, window);

    for (int kt = kStart; kt <= kEnd; kt += KT) {
        __syncthreads();
        for (int idx = tid; idx < KT * D; idx += blockDim.x) {
            int r = idx / D, c = idx % D, j = kt + r;
            float kv = 0.0f, vv = 0.0f;
            if (j <= kEnd) {
                i64 off = (i64)j * kvStride + (i64)kvh * D + c;
                kv = ld(k, kdt, off);
                vv = ld(v, vdt, off);
            }
            Ks[r * Dp + c] = kv;
            Vs[r * Dp + c] = vv;
        }
        __syncthreads();
        const int j = kt + lane;
#pragma unroll
        for (int qq = 0; qq < QPW; qq++) {
            const int i = qi[qq];
            if (i >= T || kt > i || kt + KT - 1 < lo[qq]) continue;
            const bool valid = j >= lo[qq] && j <= i;
            float ds = 0.0f;
            if (valid) {
                const float* qr = Qs + (warp * QPW + qq) * D;
                const float* dor = dOs + (warp * QPW + qq) * D;
                const float* kr = Ks + lane * Dp;
                const float* vr = Vs + lane * Dp;
                float sdot = 0.0f, pdot = 0.0f;
                for (int c = 0; c < D; c++) {
                    sdot += qr[c] * kr[c];
                    pdot += dor[c] * vr[c];
                }
                float dcap;
                const float p = expf(cap_score(sdot * scale, softcap, &dcap) - lq[qq]);
                ds = p * (pdot - dl[qq]) * dcap;
            }
            for (int jj = 0; jj < KT; jj++) {
                const float dsj = __shfl_sync(0xffffffffu, ds, jj);
                if (dsj == 0.0f) continue;
#pragma unroll
                for (int c = 0; c < MAXC; c++) {
                    int d = lane + 32 * c;
                    if (d < D) acc[qq][c] += dsj * Ks[jj * Dp + d];
                }
            }
        }
    }
#pragma unroll
    for (int qq = 0; qq < QPW; qq++) {
        const int i = qi[qq];
        if (i >= T) continue;
#pragma unroll
        for (int c = 0; c < MAXC; c++) {
            int d = lane + 32 * c;
            if (d < D) st(dq, dqdt, (i64)i * qStride + (i64)h * D + d, acc[qq][c] * scale);
        }
    }
}

// attention_backward_dkv: one block owns 16 keys of one key/value head;
// each warp owns 4 keys, each lane one query of the current 32-query tile.
extern "C" __global__ void __launch_bounds__(128) attention_backward_dkv(
    void* dk, int dkdt, void* dv, int dvdt, const void* dout, int dodt, const void* q, int qdt, const void* k, int kdt,
    const void* v, int vdt, const float* lse, const float* delta, const int* starts, int nseq, int T, int H, int KVH,
    int D, float scale, int window, float softcap) {
    extern __shared__ float smem[];
    const int Dp = D + 1;
    float* Qs = smem;              // [KT][Dp]
    float* dOs = Qs + KT * Dp;     // [KT][Dp]
    float* Kw = dOs + KT * Dp;     // [QB][D]
    float* Vw = Kw + QB * D;       // [QB][D]
    float* lseS = Vw + QB * D;     // [KT]
    float* deltaS = lseS + KT;     // [KT]
    const int g = blockIdx.y, group = H / KVH;
    const int j0 = blockIdx.x * QB;
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const i64 qStride = (i64)H * D, kvStride = (i64)KVH * D;

    for (int idx = tid; idx < QB * D; idx += blockDim.x) {
        int r = idx / D, c = idx % D, j = j0 + r;
        i64 off = (i64)j * kvStride + (i64)g * D + c;
        Kw[idx] = j < T ? ld(k, kdt, off) : 0.0f;
        Vw[idx] = j < T ? ld(v, vdt, off) : 0.0f;
    }
    int kj[QPW], ej[QPW];
    float accK[QPW][MAXC], accV[QPW][MAXC];
#pragma unroll
    for (int kk = 0; kk < QPW; kk++) {
        kj[kk] = j0 + warp * QPW + kk;
        ej[kk] = kj[kk] < T ? end_query(starts, nseq, kj[kk], window) : 0;
#pragma unroll
        for (int c = 0; c < MAXC; c++) {
            accK[kk][c] = 0.0f;
            accV[kk][c] = 0.0f;
        }
    }
    const int kLast = min(j0 + QB, T) - 1;
    const int qEnd = end_query(starts, nseq, kLast, window);

    for (int h = g * group; h < (g + 1) * group; h++) {
        for (int qt = j0; qt < qEnd; qt += KT) {
            __syncthreads();
            for (int idx = tid; idx < KT * D; idx += blockDim.x) {
                int r = idx / D, c = idx % D, i = qt + r;
                i64 off = (i64)i * qStride + (i64)h * D + c;
                Qs[r * Dp + c] = i < qEnd ? ld(q, qdt, off) : 0.0f;
                dOs[r * Dp + c] = i < qEnd ? ld(dout, dodt, off) : 0.0f;
            }
            if (tid < KT) {
                int i = qt + tid;
                lseS[tid] = i < qEnd ? lse[(i64)h * T + i] : 0.0f;
                deltaS[tid] = i < qEnd ? delta[(i64)h * T + i] : 0.0f;
            }
            __syncthreads();
            const int i = qt + lane;
#pragma unroll
            for (int kk = 0; kk < QPW; kk++) {
                const int j = kj[kk];
                if (j >= T || qt >= ej[kk] || qt + KT - 1 < j) continue; // warp-uniform
                const bool valid = i >= j && i < ej[kk];
                float p = 0.0f, ds = 0.0f;
                if (valid) {
                    const float* qr = Qs + lane * Dp;
                    const float* dor = dOs + lane * Dp;
                    const float* kr = Kw + (warp * QPW + kk) * D;
                    const float* vr = Vw + (warp * QPW + kk) * D;
                    float sdot = 0.0f, pdot = 0.0f;
                    for (int c = 0; c < D; c++) {
                        sdot += qr[c] * kr[c];
                        pdot += dor[c] * vr[c];
                    }
                    float dcap;
                    p = expf(cap_score(sdot * scale, softcap, &dcap) - lseS[lane]);
                    ds = p * (pdot - deltaS[lane]) * dcap;
                }
                for (int ii = 0; ii < KT; ii++) {
                    const float pi = __shfl_sync(0xffffffffu, p, ii);
                    const float dsi = __shfl_sync(0xffffffffu, ds, ii);
                    if (pi == 0.0f && dsi == 0.0f) continue;
#pragma unroll
                    for (int c = 0; c < MAXC; c++) {
                        int d = lane + 32 * c;
                        if (d < D) {
                            accV[kk][c] += pi * dOs[ii * Dp + d];
                            accK[kk][c] += dsi * Qs[ii * Dp + d];
                        }
                    }
                }
            }
        }
    }
#pragma unroll
    for (int kk = 0; kk < QPW; kk++) {
        const int j = kj[kk];
        if (j >= T) continue;
#pragma unroll
        for (int c = 0; c < MAXC; c++) {
            int d = lane + 32 * c;
            if (d < D) {
                i64 off = (i64)j * kvStride + (i64)g * D + d;
                st(dk, dkdt, off, accK[kk][c] * scale);
                st(dv, dvdt, off, accV[kk][c]);
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Tensor-core kernels, for bf16 q, k, v (and dOut) with a head dim D that
// has an instantiation below (16, 32, 64, 80, 96, 128: every Llama, Qwen
// and Mistral size; 256: Gemma 2 and 3, with smaller tiles and dK, dV in
// two launches) and 16-byte aligned rows. Same maths and contract as the
// float32 kernels above; other inputs take those. At head dim 256 every
// kernel takes 2 * (128 + 4*16) * 264 = 2 * (64 + 4*32) * 264 bytes =
// 99 KB of dynamic shared memory: the most sm_86/89/120 allow a block (one
// block an SM there and on sm_80, two on sm_90).
//
// Every product is mma.sync m16n8k16 (bf16 in, f32 accumulate). With
// g = lane/4 and t = lane%4, a thread holds rows g and g+8 of a 16-row
// accumulator at columns 2t, 2t+1 of each 8-column tile, so the score
// accumulators of two adjacent 8-key tiles are exactly the A fragment of P
// for the next product (P and dS are rounded to bf16 there, as in
// FlashAttention 2; row sums use the unrounded values). Fragments come
// from shared memory through ldmatrix (.trans where the product reduces
// along the stored rows, e.g. P V). Tiles move from global to shared memory
// with 16-byte cp.async into two buffers, so the next tile loads while the
// current one is multiplied. Shared rows are padded to D+8 bf16: the eight
// 16-byte row reads of one ldmatrix phase then fall in distinct banks.
// Softmax runs in base 2 (scores pre-multiplied by scale*log2(e), or, with
// a soft-cap, capped first by cap_tile and then multiplied by log2(e)); the
// saved lse stays in natural log.
//
// Blocks run 4 warps, 16 rows (queries or keys) per warp. Causal masking
// is applied only to tiles that reach past a row's first or last visible
// key. Block y takes the 64 rows order[y] (engine/cuda/attnorder.go: the
// heaviest blocks first, so the grid does not end on a few long ones); a
// forward with no order (decoding) takes its last query block first.

#define LOG2E 1.4426950408889634f
#define LN2 0.6931471805599453f

// smem_u32 is the shared-state-space address of a shared-memory pointer.
__device__ __forceinline__ unsigned int smem_u32(const void* p) {
    unsigned int a;
    asm("{ .reg .u64 t; cvta.to.shared.u64 t, %1; cvt.u32.u64 %0, t; }" : "=r"(a) : "l"(p));
    return a;
}

// cp_async16 copies 16 bytes from global to shared memory, or writes 16
// zero bytes when ok is false (src is then not read).
__device__ __forceinline__ void cp_async16(void* dst, const void* src, bool ok) {
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(smem_u32(dst)), "l"(src), "r"(ok ? 16 : 0));
}

// cp_async4 is cp_async16 for one 4-byte word.
__device__ __forceinline__ void cp_async4(void* dst, const void* src, bool ok) {
    asm volatile("cp.async.ca.shared.global [%0], [%1], 4, %2;\n" ::"r"(smem_u32(dst)), "l"(src), "r"(ok ? 4 : 0));
}

__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
__device__ __forceinline__ void cp_async_wait_all() { asm volatile("cp.async.wait_group 0;\n" ::: "memory"); }

// ldsm_x4 loads four 8x8 bf16 matrices; lane l gives the address of row
// l%8 of matrix l/8 and receives, of matrix i, row l/4 columns 2(l%4),
// 2(l%4)+1 in register i. ldsm_x4_t receives the transpose: rows 2(l%4),
// 2(l%4)+1 of column l/4.
__device__ __forceinline__ void ldsm_x4(unsigned int* r, const unsigned short* p) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(smem_u32(p)));
}

__device__ __forceinline__ void ldsm_x4_t(unsigned int* r, const unsigned short* p) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(smem_u32(p)));
}

__device__ __forceinline__ void mma_bf16_16816(float* c, const unsigned int* a, const unsigned int* b) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}

// pack_bf16 rounds two floats to bf16 (nearest even) into one register,
// lo in the lower half.
__device__ __forceinline__ unsigned int pack_bf16(float lo, float hi) {
    unsigned int r;
    asm("cvt.rn.bf16x2.f32 %0, %1, %2;\n" : "=r"(r) : "f"(hi), "f"(lo));
    return r;
}

// exp2_approx is ex2.approx: exp2(-inf) = 0, relative error ~2^-22.
__device__ __forceinline__ float exp2_approx(float x) {
    float y;
    asm("ex2.approx.ftz.f32 %0, %1;\n" : "=f"(y) : "f"(x));
    return y;
}

// Fragment addresses, per lane, inside a row-major bf16 tile with row
// stride DP (see ldsm_x4):
//   frag_a_addr: A fragment (16 rows x 16 columns) at (r0, c0).
//   frag_b2_addr: B fragments of two 8-row groups (rows r0..r0+15 as n,
//     columns c0..c0+15 as k): regs 0,1 serve n-tile r0, regs 2,3 n-tile r0+8.
//   frag_bt2_addr (with ldsm_x4_t): B fragments with rows r0..r0+15 as k
//     and columns c0..c0+15 as n: regs 0,1 serve columns c0.., regs 2,3 c0+8...
__device__ __forceinline__ const unsigned short* frag_a_addr(const unsigned short* tile, int DP, int r0, int c0, int lane) {
    return tile + (r0 + (lane & 15)) * DP + c0 + ((lane >> 4) << 3);
}
__device__ __forceinline__ const unsigned short* frag_b2_addr(const unsigned short* tile, int DP, int r0, int c0, int lane) {
    return tile + (r0 + (lane & 7) + ((lane >> 4) << 3)) * DP + c0 + (((lane >> 3) & 1) << 3);
}
__device__ __forceinline__ const unsigned short* frag_bt2_addr(const unsigned short* tile, int DP, int r0, int c0, int lane) {
    return tile + (r0 + (lane & 7) + (((lane >> 3) & 1) << 3)) * DP + c0 + ((lane >> 4) << 3);
}

// load_rows_async copies rows [r0, r0+R) of one head (column offset col0,
// row stride `stride` elements) into a [R][DP] tile; rows at or past
// rowEnd are zero-filled.
// With DD < D (a stored head dim padded up to the computed D, a multiple
// of 8) columns DD..D-1 are zero-filled too.
template <int D, int R, int DD = D>
__device__ __forceinline__ void load_rows_async(unsigned short* tile, const unsigned short* src, i64 stride, i64 col0,
                                                int r0, int rowEnd, int tid) {
    constexpr int DP = D + 8, CH = D / 8;
    for (int c = tid; c < R * CH; c += 128) {
        const int r = c / CH, col = (c % CH) * 8, i = r0 + r;
        const bool ok = i < rowEnd && (DD == D || col < DD);
        cp_async16(tile + r * DP + col, ok ? src + (i64)i * stride + col0 + col : src, ok);
    }
}

// softmax_tile turns the score accumulators of one tile (rows A = g,
// B = g+8 of the warp) into probabilities in place, updating the running
// max (base 2) and partial row sums of this thread. Masked scores are -inf.
template <int NT>
__device__ __forceinline__ void softmax_tile(float (*s)[4], float sl2, float& mA, float& mB, float& lA, float& lB,
                                             float& cA, float& cB) {
    float tA = NEG_INF, tB = NEG_INF;
#pragma unroll
    for (int nt = 0; nt < NT; nt++) {
        tA = fmaxf(tA, fmaxf(s[nt][0], s[nt][1]));
        tB = fmaxf(tB, fmaxf(s[nt][2], s[nt][3]));
    }
    tA = fmaxf(tA, __shfl_xor_sync(0xffffffffu, tA, 1));
    tA = fmaxf(tA, __shfl_xor_sync(0xffffffffu, tA, 2));
    tB = fmaxf(tB, __shfl_xor_sync(0xffffffffu, tB, 1));
    tB = fmaxf(tB, __shfl_xor_sync(0xffffffffu, tB, 2));
    const float nA = fmaxf(mA, tA * sl2), nB = fmaxf(mB, tB * sl2);
    // A row with no visible key so far keeps m = -inf: nothing to rescale,
    // and exp2 of its -inf scores must not see -inf - -inf.
    cA = nA == NEG_INF ? 1.0f : exp2_approx(mA - nA);
    cB = nB == NEG_INF ? 1.0f : exp2_approx(mB - nB);
    const float uA = nA == NEG_INF ? 0.0f : nA, uB = nB == NEG_INF ? 0.0f : nB;
    float sumA = 0.0f, sumB = 0.0f;
#pragma unroll
    for (int nt = 0; nt < NT; nt++) {
        s[nt][0] = exp2_approx(fmaf(s[nt][0], sl2, -uA));
        s[nt][1] = exp2_approx(fmaf(s[nt][1], sl2, -uA));
        s[nt][2] = exp2_approx(fmaf(s[nt][2], sl2, -uB));
        s[nt][3] = exp2_approx(fmaf(s[nt][3], sl2, -uB));
        sumA += s[nt][0] + s[nt][1];
        sumB += s[nt][2] + s[nt][3];
    }
    lA = lA * cA + sumA;
    lB = lB * cB + sumB;
    mA = nA;
    mB = nB;
}

// cap_tile replaces N accumulator tiles of raw dot products q.k by their
// capped scores softcap * tanh(scale * q.k / softcap). The backward reads
// the derivative back from the capped score y as 1 - (y/softcap)^2
// (cap_slope), so no second array of registers is needed.
template <int N>
__device__ __forceinline__ void cap_tile(float (*s)[4], float scale, float softcap) {
#pragma unroll
    for (int nt = 0; nt < N; nt++) {
#pragma unroll
        for (int e = 0; e < 4; e++) s[nt][e] = softcap * tanhf(s[nt][e] * scale / softcap);
    }
}

// cap_slope is d(capped score)/d(scaled score) at the capped score y.
__device__ __forceinline__ float cap_slope(float y, float softcap) {
    const float r = y / softcap;
    return 1.0f - r * r;
}

// store_pair writes two adjacent output values (one register's worth).
__device__ __forceinline__ void store_pair(void* p, int dt, i64 i, float a, float b) {
    if (dt == DT_BF16) {
        *(unsigned int*)((unsigned short*)p + i) = pack_bf16(a, b);
    } else {
        st(p, dt, i, a);
        st(p, dt, i + 1, b);
    }
}

// zero_acc clears N accumulator tiles.
template <int N>
__device__ __forceinline__ void zero_acc(float (*acc)[4]) {
#pragma unroll
    for (int i = 0; i < N; i++) acc[i][0] = acc[i][1] = acc[i][2] = acc[i][3] = 0.0f;
}

// acc_to_a rounds the accumulators of 8-column tiles 2kc and 2kc+1 (a
// thread's rows g, g+8 at columns 2t, 2t+1 of each) to bf16: exactly the A
// fragment of the 16x16 block at columns 16kc.. for the next product.
__device__ __forceinline__ void acc_to_a(unsigned int* a, const float (*acc)[4], int kc) {
    a[0] = pack_bf16(acc[2 * kc][0], acc[2 * kc][1]);
    a[1] = pack_bf16(acc[2 * kc][2], acc[2 * kc][3]);
    a[2] = pack_bf16(acc[2 * kc + 1][0], acc[2 * kc + 1][1]);
    a[3] = pack_bf16(acc[2 * kc + 1][2], acc[2 * kc + 1][3]);
}

// mma_rows_t adds A (16 x 16) times the tile's N columns of rows r0..r0+15
// into acc[N/8]: the reduction runs along the tile's rows (P V, dS K, ...).
template <int N>
__device__ __forceinline__ void mma_rows_t(float (*acc)[4], const unsigned int* a, const unsigned short* tile, int DP,
                                           int r0, int lane) {
#pragma unroll
    for (int n2 = 0; n2 < N / 16; n2++) {
        unsigned int b[4];
        ldsm_x4_t(b, frag_bt2_addr(tile, DP, r0, n2 * 16, lane));
        mma_bf16_16816(acc[2 * n2], a, b);
        mma_bf16_16816(acc[2 * n2 + 1], a, b + 2);
    }
}

// mma_cols adds A (16 x 16, head-dim columns c0..c0+15) times the
// transpose of the tile's first N rows into acc[N/8]: the reduction runs
// along the head dim (Q K^T, dO V^T, ...).
template <int N>
__device__ __forceinline__ void mma_cols(float (*acc)[4], const unsigned int* a, const unsigned short* tile, int DP,
                                         int c0, int lane) {
#pragma unroll
    for (int np = 0; np < N / 16; np++) {
        unsigned int b[4];
        ldsm_x4(b, frag_b2_addr(tile, DP, np * 16, c0, lane));
        mma_bf16_16816(acc[2 * np], a, b);
        mma_bf16_16816(acc[2 * np + 1], a, b + 2);
    }
}

// score_pair computes, for the warp's 16 rows r0.. of the row-major tiles
// a1 and a2, s = a1 b1^T and dp = a2 b2^T against the first N rows of b1
// and b2, reducing over the head dim D (the backward's S and dP, or their
// transposes).
template <int D, int N>
__device__ __forceinline__ void score_pair(float (*s)[4], float (*dp)[4], const unsigned short* a1,
                                           const unsigned short* a2, int r0, const unsigned short* b1,
                                           const unsigned short* b2, int DP, int lane) {
    zero_acc<N / 8>(s);
    zero_acc<N / 8>(dp);
#pragma unroll
    for (int kc = 0; kc < D / 16; kc++) {
        unsigned int x[4], y[4];
        ldsm_x4(x, frag_a_addr(a1, DP, r0, kc * 16, lane));
        ldsm_x4(y, frag_a_addr(a2, DP, r0, kc * 16, lane));
        mma_cols<N>(s, x, b1, DP, kc * 16, lane);
        mma_cols<N>(dp, y, b2, DP, kc * 16, lane);
    }
}

// score_one is score_pair's first product alone: s = a1 b1^T.
template <int D, int N>
__device__ __forceinline__ void score_one(float (*s)[4], const unsigned short* a1, int r0, const unsigned short* b1,
                                          int DP, int lane) {
    zero_acc<N / 8>(s);
#pragma unroll
    for (int kc = 0; kc < D / 16; kc++) {
        unsigned int x[4];
        ldsm_x4(x, frag_a_addr(a1, DP, r0, kc * 16, lane));
        mma_cols<N>(s, x, b1, DP, kc * 16, lane);
    }
}

// store_acc writes a thread's rows A and B (below `rows`) of a [16, D]
// accumulator, row r at p + r*stride + col0, scaled by sA and sB.
// (Columns at or past DD, a padded head dim's, are not stored.)
template <int D, int DD = D>
__device__ __forceinline__ void store_acc(void* p, int dt, const float (*acc)[4], int rowA, int rowB, int rows,
                                          i64 stride, i64 col0, float sA, float sB, int t) {
#pragma unroll
    for (int dn = 0; dn < D / 8; dn++) {
        const int d = dn * 8 + 2 * t;
        if (DD != D && d >= DD) continue;
        if (rowA < rows) store_pair(p, dt, (i64)rowA * stride + col0 + d, acc[dn][0] * sA, acc[dn][1] * sA);
        if (rowB < rows) store_pair(p, dt, (i64)rowB * stride + col0 + d, acc[dn][2] * sB, acc[dn][3] * sB);
    }
}

// attn_fwd_tc: a block holds 64*MT queries of one head, 16*MT per warp
// (MT row tiles of 16, so that every K and V fragment read from shared
// memory feeds MT products); keys and values stream through shared memory
// BN at a time, double-buffered. out and lse are overwritten. Up to head
// dim 128 each warp keeps its Q fragments in registers; above, the output
// accumulators alone take D/2 registers a thread, so Q fragments are read
// from shared memory again for every key tile.
//
// MODE (default ATTN_CAUSAL) picks the mask; the other modes serve the
// vision models (engine/cuda/vision_attention.go) and take order = null:
//   ATTN_GROUPS: engine.GroupAttention's, query i sees key j of its
//     sequence (and window) when j <= i or groups[i] = groups[j] >= 0;
//     last[i] >= every key i sees (vision_last in group_attention.cu)
//     bounds the key tiles, and tiles past the causal diagonal test each
//     pair's groups.
//   ATTN_BIAS: engine.MllamaOps.BiasAttention's, every query row of q
//     sees all S keys of k, v (no starts, no window, no soft-cap), with
//     scale*q.k + bias[row, key] (bias f32 [Tq, S] or null; -inf masks;
//     scale > 0).
// DD is the stored head dim (row strides H*DD, KVH*DD) when D pads it up
// to an instantiated one (SigLIP's 72 computed as 80 with zero columns).
#define ATTN_CAUSAL 0
#define ATTN_GROUPS 1
#define ATTN_BIAS 2
template <int D, int MT, int BN, int MODE = ATTN_CAUSAL, int DD = D>
__device__ __forceinline__ void attn_fwd_tc(void* out, int odt, float* lse, const unsigned short* q,
                                            const unsigned short* k, const unsigned short* v, const int* starts,
                                            int nseq, const int* order, int Tq, int qOffset, int H, int KVH,
                                            float scale, int window, float softcap, const int* groups = nullptr,
                                            const int* last = nullptr, const float* bias = nullptr, int S = 0) {
    constexpr int BM = 64 * MT, DP = D + 8, WR = 16 * MT; // WR: rows per warp
    constexpr bool QREG = D <= 128;                        // Q fragments held in registers
    extern __shared__ __attribute__((aligned(16))) unsigned short sh[];
    unsigned short* Qs = sh;               // [BM][DP]
    unsigned short* Ks = Qs + BM * DP;     // [2][BN][DP]
    unsigned short* Vs = Ks + 2 * BN * DP; // [2][BN][DP]
    const int h = blockIdx.x, kvh = h / (H / KVH);
    const int q0 = (order != nullptr ? order[blockIdx.y] : gridDim.y - 1 - blockIdx.y) * BM;
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5, g = lane >> 2, t = lane & 3;
    const i64 qStride = (i64)H * DD, kvStride = (i64)KVH * DD;

    int kEnd, kStart; // last key any query of the block sees; the first
    if constexpr (MODE == ATTN_CAUSAL) {
        kEnd = qOffset + min(q0 + BM, Tq) - 1;
        kStart = first_key(starts, nseq, qOffset + q0, window);
    } else if constexpr (MODE == ATTN_GROUPS) {
        // The block's maximum in the second key buffer, which no load
        // writes before the loop's first barrier (a static __shared__ int
        // would take the d256 kernel past sm_86/89/120's 99 KB).
        int* blockLast = (int*)(Ks + BN * DP);
        if (tid == 0) *blockLast = -1;
        __syncthreads();
        if (tid < BM && q0 + tid < Tq) atomicMax(blockLast, last[q0 + tid]);
        __syncthreads();
        kEnd = *blockLast;
        kStart = first_key(starts, nseq, q0, window);
    } else {
        kEnd = S - 1;
        kStart = 0;
    }
    const int nTiles = kEnd >= kStart ? (kEnd - kStart) / BN + 1 : 0;
    // load_kv fills buffer nb with the key and value rows r0.. (the first
    // tile and every prefetch go through it: with DD < D each row is DD
    // wide in memory, at column kvh*DD, and columns DD..D-1 are zeros).
    auto load_kv = [&](int nb, int r0) {
        load_rows_async<D, BN, DD>(Ks + nb * BN * DP, k, kvStride, (i64)kvh * DD, r0, kEnd + 1, tid);
        load_rows_async<D, BN, DD>(Vs + nb * BN * DP, v, kvStride, (i64)kvh * DD, r0, kEnd + 1, tid);
    };
    load_rows_async<D, BM, DD>(Qs, q, qStride, (i64)h * DD, q0, Tq, tid);
    if (nTiles > 0) load_kv(0, kStart);
    cp_async_commit();

    // Rows of this thread in row tile mt: A = row g, B = row g+8 of the
    // tile (positions posA, posB; first visible keys loA, loB; rows past Tq
    // see nothing).
    // (ATTN_GROUPS: lastA, lastB and gA, gB the rows' last keys and
    // groups; ATTN_BIAS: every row sees keys 0..S-1, pos = S-1.)
    int rowA[MT], rowB[MT], posA[MT], posB[MT], loA[MT], loB[MT];
    int lastA[MT], lastB[MT], gA[MT], gB[MT];
#pragma unroll
    for (int mt = 0; mt < MT; mt++) {
        rowA[mt] = q0 + warp * WR + mt * 16 + g;
        rowB[mt] = rowA[mt] + 8;
        if constexpr (MODE == ATTN_BIAS) {
            posA[mt] = posB[mt] = S - 1;
            loA[mt] = rowA[mt] < Tq ? 0 : 0x7fffffff;
            loB[mt] = rowB[mt] < Tq ? 0 : 0x7fffffff;
        } else {
            posA[mt] = qOffset + rowA[mt];
            posB[mt] = qOffset + rowB[mt];
            loA[mt] = rowA[mt] < Tq ? first_key(starts, nseq, posA[mt], window) : 0x7fffffff;
            loB[mt] = rowB[mt] < Tq ? first_key(starts, nseq, posB[mt], window) : 0x7fffffff;
        }
        if constexpr (MODE == ATTN_GROUPS) {
            lastA[mt] = rowA[mt] < Tq ? last[rowA[mt]] : -1;
            lastB[mt] = rowB[mt] < Tq ? last[rowB[mt]] : -1;
            gA[mt] = rowA[mt] < Tq ? groups[rowA[mt]] : -1;
            gB[mt] = rowB[mt] < Tq ? groups[rowB[mt]] : -1;
        }
    }
    const int warpRow0 = q0 + warp * WR;
    const bool warpLive = warpRow0 < Tq;
    int warpFirstPos, warpLastPos, warpMinLo, warpMaxLo;
    if constexpr (MODE == ATTN_BIAS) {
        warpFirstPos = warpLastPos = S - 1;
        warpMinLo = warpMaxLo = 0;
    } else {
        warpFirstPos = qOffset + warpRow0;
        warpLastPos = qOffset + min(warpRow0 + WR - 1, Tq - 1);
        warpMinLo = warpLive ? first_key(starts, nseq, warpFirstPos, window) : 0;
        warpMaxLo = warpLive ? first_key(starts, nseq, warpLastPos, window) : 0;
    }
    if constexpr (MODE == ATTN_GROUPS) { // the last key any row of the warp sees
        int wl = -1;
#pragma unroll
        for (int mt = 0; mt < MT; mt++) wl = max(wl, max(lastA[mt], lastB[mt]));
#pragma unroll
        for (int o = 16; o > 0; o >>= 1) wl = max(wl, __shfl_xor_sync(0xffffffffu, wl, o));
        warpLastPos = max(warpLastPos, wl);
    }
    const bool capped = softcap > 0.0f;
    const float sl2 = capped ? LOG2E : scale * LOG2E; // capped scores are already scaled

    unsigned int qf[MT][QREG ? D / 16 : 1][4];
    float o[MT][D / 8][4];
    float mA[MT], mB[MT], lA[MT], lB[MT];
#pragma unroll
    for (int mt = 0; mt < MT; mt++) {
        zero_acc<D / 8>(o[mt]);
        mA[mt] = mB[mt] = NEG_INF;
        lA[mt] = lB[mt] = 0.0f;
    }

    for (int it = 0; it < nTiles; it++) {
        const int kt = kStart + it * BN;
        cp_async_wait_all();
        __syncthreads(); // tile `it` is in; every warp is done with tile it-1
        if (QREG && it == 0) {
#pragma unroll
            for (int mt = 0; mt < MT; mt++) {
#pragma unroll
                for (int kc = 0; kc < D / 16; kc++)
                    ldsm_x4(qf[mt][kc], frag_a_addr(Qs, DP, warp * WR + mt * 16, kc * 16, lane));
            }
        }
        if (it + 1 < nTiles) load_kv((it + 1) & 1, kt + BN);
        cp_async_commit();
        if (!warpLive || kt > warpLastPos || kt + BN - 1 < warpMinLo) continue; // warp-uniform
        const unsigned short* Kb = Ks + (it & 1) * BN * DP;
        const unsigned short* Vb = Vs + (it & 1) * BN * DP;

        float s[MT][BN / 8][4];
#pragma unroll
        for (int mt = 0; mt < MT; mt++) zero_acc<BN / 8>(s[mt]);
#pragma unroll
        for (int kc = 0; kc < D / 16; kc++) {
            unsigned int qa[MT][4];
            if (!QREG) {
#pragma unroll
                for (int mt = 0; mt < MT; mt++) ldsm_x4(qa[mt], frag_a_addr(Qs, DP, warp * WR + mt * 16, kc * 16, lane));
            }
#pragma unroll
            for (int np = 0; np < BN / 16; np++) {
                unsigned int b[4];
                ldsm_x4(b, frag_b2_addr(Kb, DP, np * 16, kc * 16, lane));
#pragma unroll
                for (int mt = 0; mt < MT; mt++) {
                    const unsigned int* a = QREG ? qf[mt][kc % (QREG ? D / 16 : 1)] : qa[mt];
                    mma_bf16_16816(s[mt][2 * np], a, b);
                    mma_bf16_16816(s[mt][2 * np + 1], a, b + 2);
                }
            }
        }
        const bool masked = kt < warpMaxLo || kt + BN - 1 > warpFirstPos; // some pair of this tile is masked
#pragma unroll
        for (int mt = 0; mt < MT; mt++) {
            if (capped) cap_tile<BN / 8>(s[mt], scale, softcap);
            if constexpr (MODE == ATTN_BIAS) {
                if (bias != nullptr) { // scale * (s + bias/scale) is the biased score
                    const float inv = 1.0f / scale;
#pragma unroll
                    for (int nt = 0; nt < BN / 8; nt++) {
#pragma unroll
                        for (int e = 0; e < 4; e++) {
                            const int key = kt + nt * 8 + 2 * t + (e & 1), row = e < 2 ? rowA[mt] : rowB[mt];
                            if (key < S && row < Tq) s[mt][nt][e] += bias[(i64)row * S + key] * inv;
                        }
                    }
                }
            }
            if (masked) {
#pragma unroll
                for (int nt = 0; nt < BN / 8; nt++) {
#pragma unroll
                    for (int e = 0; e < 4; e++) {
                        const int key = kt + nt * 8 + 2 * t + (e & 1);
                        bool valid = e < 2 ? (key >= loA[mt] && key <= posA[mt]) : (key >= loB[mt] && key <= posB[mt]);
                        if constexpr (MODE == ATTN_GROUPS) {
                            // Past the diagonal: the same group, up to the row's last key.
                            if (!valid && key < Tq) {
                                const int gr = e < 2 ? gA[mt] : gB[mt];
                                valid = (e < 2 ? key >= loA[mt] && key <= lastA[mt] : key >= loB[mt] && key <= lastB[mt]) &&
                                        gr >= 0 && groups[key] == gr;
                            }
                        }
                        if (!valid) s[mt][nt][e] = NEG_INF;
                    }
                }
            }
            float cA, cB;
            softmax_tile<BN / 8>(s[mt], sl2, mA[mt], mB[mt], lA[mt], lB[mt], cA, cB);
#pragma unroll
            for (int dn = 0; dn < D / 8; dn++) {
                o[mt][dn][0] *= cA;
                o[mt][dn][1] *= cA;
                o[mt][dn][2] *= cB;
                o[mt][dn][3] *= cB;
            }
        }
#pragma unroll
        for (int kc = 0; kc < BN / 16; kc++) {
            unsigned int pa[MT][4];
#pragma unroll
            for (int mt = 0; mt < MT; mt++) acc_to_a(pa[mt], s[mt], kc);
#pragma unroll
            for (int dn2 = 0; dn2 < D / 16; dn2++) {
                unsigned int b[4];
                ldsm_x4_t(b, frag_bt2_addr(Vb, DP, kc * 16, dn2 * 16, lane));
#pragma unroll
                for (int mt = 0; mt < MT; mt++) {
                    mma_bf16_16816(o[mt][2 * dn2], pa[mt], b);
                    mma_bf16_16816(o[mt][2 * dn2 + 1], pa[mt], b + 2);
                }
            }
        }
    }
    cp_async_wait_all();
#pragma unroll
    for (int mt = 0; mt < MT; mt++) {
        float la = lA[mt], lb = lB[mt];
        la += __shfl_xor_sync(0xffffffffu, la, 1);
        la += __shfl_xor_sync(0xffffffffu, la, 2);
        lb += __shfl_xor_sync(0xffffffffu, lb, 1);
        lb += __shfl_xor_sync(0xffffffffu, lb, 2);
        const float iA = la > 0.0f ? 1.0f / la : 0.0f, iB = lb > 0.0f ? 1.0f / lb : 0.0f;
        store_acc<D, DD>(out, odt, o[mt], rowA[mt], rowB[mt], Tq, qStride, (i64)h * DD, iA, iB, t);
        if (lse != nullptr && t == 0) {
            if (rowA[mt] < Tq) lse[(i64)h * Tq + rowA[mt]] = (mA[mt] + log2f(la)) * LN2;
            if (rowB[mt] < Tq) lse[(i64)h * Tq + rowB[mt]] = (mB[mt] + log2f(lb)) * LN2;
        }
    }
}

// attn_dq_tc: a block holds 64 queries of one head and walks key tiles of
// BN, double-buffered: S = Q K^T, dP = dO V^T, dS = P (dP - delta),
// dq = scale * dS K (overwritten).
// MODE and its arguments are attn_fwd_tc's (order null in the vision
// modes; ATTN_BIAS: S keys, rows with lse -inf get dq 0).
template <int D, int BN, int MODE = ATTN_CAUSAL>
__device__ __forceinline__ void attn_dq_tc(void* dq, int dqdt, const unsigned short* dout, const unsigned short* q,
                                           const unsigned short* k, const unsigned short* v, const float* lse,
                                           const float* delta, const int* starts, int nseq, const int* order, int T,
                                           int H, int KVH, float scale, int window, float softcap,
                                           const int* groups = nullptr, const int* last = nullptr,
                                           const float* bias = nullptr, int S = 0) {
    constexpr int BM = 64, DP = D + 8;
    extern __shared__ __attribute__((aligned(16))) unsigned short sh[];
    unsigned short* Qs = sh;                // [BM][DP]
    unsigned short* dOs = Qs + BM * DP;     // [BM][DP]
    unsigned short* Ks = dOs + BM * DP;     // [2][BN][DP]
    unsigned short* Vs = Ks + 2 * BN * DP;  // [2][BN][DP]
    const int h = blockIdx.x, kvh = h / (H / KVH);
    const int q0 = (MODE == ATTN_CAUSAL ? order[blockIdx.y] : (int)blockIdx.y) * BM;
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5, g = lane >> 2, t = lane & 3;
    const i64 qStride = (i64)H * D, kvStride = (i64)KVH * D;

    int kEnd, kStart;
    if constexpr (MODE == ATTN_CAUSAL) {
        kEnd = min(q0 + BM, T) - 1;
        kStart = first_key(starts, nseq, q0, window);
    } else if constexpr (MODE == ATTN_GROUPS) {
        int* blockLast = (int*)(Ks + BN * DP); // as in attn_fwd_tc: the second key buffer
        if (tid == 0) *blockLast = -1;
        __syncthreads();
        if (tid < BM && q0 + tid < T) atomicMax(blockLast, last[q0 + tid]);
        __syncthreads();
        kEnd = *blockLast;
        kStart = first_key(starts, nseq, q0, window);
    } else {
        kEnd = S - 1;
        kStart = 0;
    }
    const int nTiles = kEnd >= kStart ? (kEnd - kStart) / BN + 1 : 0;
    load_rows_async<D, BM>(Qs, q, qStride, (i64)h * D, q0, T, tid);
    load_rows_async<D, BM>(dOs, dout, qStride, (i64)h * D, q0, T, tid);
    if (nTiles > 0) {
        load_rows_async<D, BN>(Ks, k, kvStride, (i64)kvh * D, kStart, kEnd + 1, tid);
        load_rows_async<D, BN>(Vs, v, kvStride, (i64)kvh * D, kStart, kEnd + 1, tid);
    }
    cp_async_commit();

    const int rowA = q0 + warp * 16 + g, rowB = rowA + 8;
    int loA, loB, posA = rowA, posB = rowB, lastA = -1, lastB = -1, gA = -1, gB = -1;
    if constexpr (MODE == ATTN_BIAS) {
        loA = rowA < T ? 0 : 0x7fffffff;
        loB = rowB < T ? 0 : 0x7fffffff;
        posA = posB = S - 1;
    } else {
        loA = rowA < T ? first_key(starts, nseq, rowA, window) : 0x7fffffff;
        loB = rowB < T ? first_key(starts, nseq, rowB, window) : 0x7fffffff;
    }
    if constexpr (MODE == ATTN_GROUPS) {
        if (rowA < T) lastA = last[rowA], gA = groups[rowA];
        if (rowB < T) lastB = last[rowB], gB = groups[rowB];
    }
    const float lA2 = rowA < T ? lse[(i64)h * T + rowA] * LOG2E : 0.0f;
    const float lB2 = rowB < T ? lse[(i64)h * T + rowB] * LOG2E : 0.0f;
    const float dlA = rowA < T ? delta[(i64)h * T + rowA] : 0.0f, dlB = rowB < T ? delta[(i64)h * T + rowB] : 0.0f;
    const int warpRow0 = q0 + warp * 16;
    const bool warpLive = warpRow0 < T;
    int warpLast = min(warpRow0 + 15, T - 1);
    int warpMinLo = warpLive ? first_key(starts, nseq, warpRow0, window) : 0;
    int warpMaxLo = warpLive ? first_key(starts, nseq, warpLast, window) : 0;
    int warpDiag = warpRow0; // keys past it may be masked
    if constexpr (MODE == ATTN_BIAS) {
        warpLast = warpDiag = S - 1;
        warpMinLo = warpMaxLo = 0;
    } else if constexpr (MODE == ATTN_GROUPS) {
        int wl = max(lastA, lastB);
#pragma unroll
        for (int o = 16; o > 0; o >>= 1) wl = max(wl, __shfl_xor_sync(0xffffffffu, wl, o));
        warpLast = max(warpLast, wl);
    }
    const bool capped = softcap > 0.0f;
    const float sl2 = capped ? LOG2E : scale * LOG2E;
    float dQ[D / 8][4];
    zero_acc<D / 8>(dQ);

    for (int it = 0; it < nTiles; it++) {
        const int kt = kStart + it * BN;
        cp_async_wait_all();
        __syncthreads();
        if (it + 1 < nTiles) {
            const int nb = (it + 1) & 1;
            load_rows_async<D, BN>(Ks + nb * BN * DP, k, kvStride, (i64)kvh * D, kt + BN, kEnd + 1, tid);
            load_rows_async<D, BN>(Vs + nb * BN * DP, v, kvStride, (i64)kvh * D, kt + BN, kEnd + 1, tid);
        }
        cp_async_commit();
        if (!warpLive || kt > warpLast || kt + BN - 1 < warpMinLo) continue; // warp-uniform
        const unsigned short* Kb = Ks + (it & 1) * BN * DP;
        const unsigned short* Vb = Vs + (it & 1) * BN * DP;

        float s[BN / 8][4], dp[BN / 8][4];
        score_pair<D, BN>(s, dp, Qs, dOs, warp * 16, Kb, Vb, DP, lane);
        if (capped) cap_tile<BN / 8>(s, scale, softcap);
        const bool masked = kt < warpMaxLo || kt + BN - 1 > warpDiag;
#pragma unroll
        for (int nt = 0; nt < BN / 8; nt++) {
#pragma unroll
            for (int e = 0; e < 4; e++) {
                const int key = kt + nt * 8 + 2 * t + (e & 1);
                const bool isB = e >= 2;
                bool valid = !masked || (isB ? (key >= loB && key <= posB) : (key >= loA && key <= posA));
                if constexpr (MODE == ATTN_GROUPS) {
                    if (!valid && key < T) {
                        const int gr = isB ? gB : gA;
                        valid = (isB ? key >= loB && key <= lastB : key >= loA && key <= lastA) && gr >= 0 && groups[key] == gr;
                    }
                }
                if constexpr (MODE == ATTN_BIAS) {
                    // A row that sees no key (lse -inf) has no gradient.
                    valid = valid && (isB ? lB2 : lA2) != NEG_INF;
                    const int row = isB ? rowB : rowA;
                    if (valid && bias != nullptr && key < S && row < T) s[nt][e] += bias[(i64)row * S + key] / scale;
                }
                const float p = valid ? exp2_approx(fmaf(s[nt][e], sl2, -(isB ? lB2 : lA2))) : 0.0f;
                dp[nt][e] = p * (dp[nt][e] - (isB ? dlB : dlA)) * (capped ? cap_slope(s[nt][e], softcap) : 1.0f);
            }
        }
#pragma unroll
        for (int kc = 0; kc < BN / 16; kc++) {
            unsigned int da[4];
            acc_to_a(da, dp, kc);
            mma_rows_t<D>(dQ, da, Kb, DP, kc * 16, lane);
        }
    }
    cp_async_wait_all();
    store_acc<D>(dq, dqdt, dQ, rowA, rowB, T, qStride, (i64)h * D, scale, scale, t);
}

// attn_dkv_tc: a block holds 64 keys of one key/value head, 16 per warp,
// and walks the query heads of its group in query tiles of BQ (q, dOut,
// lse and delta double-buffered). With rows = keys it computes
// S^T = K Q^T and dP^T = V dO^T, so P^T and dS^T come out of the
// accumulators as A fragments for dV += P^T dO and dK += dS^T Q.
// dk = scale * dK and dv = dV are overwritten.
// DK and DV choose what one launch computes: both up to head dim 128;
// above, the two [16, D] accumulators would not fit a thread's registers,
// so one launch computes dV (S^T, dV) and a second dK (S^T, dP^T, dK):
// five products instead of four. There the tiles' lse and delta live in
// the padding columns D..D+7 of the query tile's rows (bytes 0-3 and 4-7;
// ldmatrix never reads them), so that the shared memory is exactly
// 2 * (2*64 + 4*BQ) * (D+8) bytes.
// MODE is attn_fwd_tc's (order null in the vision modes): ATTN_GROUPS
// also reads first[j], the first query that sees key j (vision_last);
// ATTN_BIAS has S keys (rows of k, v, dk, dv) and T queries.
template <int D, int BQ, bool DK, bool DV, int MODE = ATTN_CAUSAL>
__device__ __forceinline__ void attn_dkv_tc(void* dk, int dkdt, void* dv, int dvdt, const unsigned short* dout,
                                            const unsigned short* q, const unsigned short* k, const unsigned short* v,
                                            const float* lse, const float* delta, const int* starts, int nseq,
                                            const int* order, int T, int H, int KVH, float scale, int window,
                                            float softcap, const int* groups = nullptr, const int* first = nullptr,
                                            const float* bias = nullptr, int S = 0) {
    constexpr int BN = 64, DP = D + 8;
    constexpr bool PAD = D > 128; // lse and delta in the query rows' padding
    extern __shared__ __attribute__((aligned(16))) unsigned short sh[];
    unsigned short* Ks = sh;                 // [BN][DP]
    unsigned short* Vs = Ks + BN * DP;       // [BN][DP]
    unsigned short* Qs = Vs + BN * DP;       // [2][BQ][DP]
    unsigned short* dOs = Qs + 2 * BQ * DP;  // [2][BQ][DP]
    float* lseS = (float*)(dOs + 2 * BQ * DP); // [2][BQ] (PAD: unused)
    float* deltaS = lseS + 2 * BQ;           // [2][BQ] (PAD: unused)
    // lse_at and delta_at address query `col` of buffer nb's lse, delta.
    auto lse_at = [&](int nb, int col) -> float* {
        return PAD ? (float*)(Qs + (nb * BQ + col) * DP + D) : lseS + nb * BQ + col;
    };
    auto delta_at = [&](int nb, int col) -> float* {
        return PAD ? (float*)(Qs + (nb * BQ + col) * DP + D + 2) : deltaS + nb * BQ + col;
    };
    const int kvh = blockIdx.x, group = H / KVH;
    const int j0 = (MODE == ATTN_CAUSAL ? order[blockIdx.y] : (int)blockIdx.y) * BN;
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5, g = lane >> 2, t = lane & 3;
    const i64 qStride = (i64)H * D, kvStride = (i64)KVH * D;
    const int KN = MODE == ATTN_BIAS ? S : T; // keys

    const int kLast = min(j0 + BN, KN) - 1;
    int qBeg = j0, qEnd; // the queries any key here sees: [qBeg, qEnd)
    if constexpr (MODE == ATTN_BIAS) {
        qBeg = 0;
        qEnd = T;
    } else {
        qEnd = end_query(starts, nseq, kLast, window);
    }
    if constexpr (MODE == ATTN_GROUPS) {
        // As in attn_fwd_tc, in the second query buffer (no static __shared__).
        int* blockFirst = (int*)(Qs + BQ * DP);
        if (tid == 0) *blockFirst = j0;
        __syncthreads();
        if (tid < BN && j0 + tid < T) atomicMin(blockFirst, first[j0 + tid]);
        __syncthreads();
        qBeg = *blockFirst;
    }
    const int nQT = qEnd > qBeg ? (qEnd - qBeg + BQ - 1) / BQ : 0;
    const int nTiles = nQT * group;
    // load_q fills buffer nb with query tile `it` (head, first query).
    auto load_q = [&](int nb, int it) {
        const int hq = kvh * group + it / nQT, qt = qBeg + (it % nQT) * BQ;
        load_rows_async<D, BQ>(Qs + nb * BQ * DP, q, qStride, (i64)hq * D, qt, qEnd, tid);
        load_rows_async<D, BQ>(dOs + nb * BQ * DP, dout, qStride, (i64)hq * D, qt, qEnd, tid);
        if (tid < BQ) {
            const int i = qt + tid;
            const bool ok = i < qEnd;
            cp_async4(lse_at(nb, tid), ok ? lse + (i64)hq * T + i : lse, ok);
            if (DK) cp_async4(delta_at(nb, tid), ok ? delta + (i64)hq * T + i : delta, ok);
        }
    };
    load_rows_async<D, BN>(Ks, k, kvStride, (i64)kvh * D, j0, KN, tid);
    if (DK) load_rows_async<D, BN>(Vs, v, kvStride, (i64)kvh * D, j0, KN, tid);
    if (nTiles > 0) load_q(0, 0);
    cp_async_commit();

    const int keyA = j0 + warp * 16 + g, keyB = keyA + 8;
    const int warpKey0 = j0 + warp * 16;
    const bool warpLive = warpKey0 < KN;
    const int warpKeyLast = min(warpKey0 + 15, KN - 1);
    int endA, endB, warpMinEnd, warpMaxEnd, warpQ0 = warpKey0, diag = warpKeyLast;
    int firstA = 0x7fffffff, firstB = 0x7fffffff, gA = -1, gB = -1;
    if constexpr (MODE == ATTN_BIAS) {
        endA = keyA < KN ? T : 0;
        endB = keyB < KN ? T : 0;
        warpMinEnd = warpMaxEnd = T;
        warpQ0 = diag = 0;
    } else {
        endA = keyA < T ? end_query(starts, nseq, keyA, window) : 0;
        endB = keyB < T ? end_query(starts, nseq, keyB, window) : 0;
        warpMinEnd = warpLive ? end_query(starts, nseq, warpKey0, window) : 0;
        warpMaxEnd = warpLive ? end_query(starts, nseq, warpKeyLast, window) : 0;
    }
    if constexpr (MODE == ATTN_GROUPS) {
        if (keyA < T) firstA = first[keyA], gA = groups[keyA];
        if (keyB < T) firstB = first[keyB], gB = groups[keyB];
        int wf = min(firstA, firstB);
#pragma unroll
        for (int o = 16; o > 0; o >>= 1) wf = min(wf, __shfl_xor_sync(0xffffffffu, wf, o));
        warpQ0 = min(warpQ0, wf);
    }
    const bool capped = softcap > 0.0f;
    const float sl2 = capped ? LOG2E : scale * LOG2E;
    float dK[D / 8][4], dV[D / 8][4]; // the compiler drops the one a launch does not compute
    zero_acc<D / 8>(dK);
    zero_acc<D / 8>(dV);

    for (int it = 0; it < nTiles; it++) {
        const int qt = qBeg + (it % nQT) * BQ;
        cp_async_wait_all();
        __syncthreads();
        if (it + 1 < nTiles) load_q((it + 1) & 1, it + 1);
        cp_async_commit();
        if (!warpLive || qt >= warpMaxEnd || qt + BQ - 1 < warpQ0) continue; // warp-uniform
        const int cb = it & 1;
        const unsigned short* Qb = Qs + cb * BQ * DP;
        const unsigned short* dOb = dOs + cb * BQ * DP;

        float s[BQ / 8][4], dp[BQ / 8][4];
        if (DK) {
            score_pair<D, BQ>(s, dp, Ks, Vs, warp * 16, Qb, dOb, DP, lane);
        } else {
            score_one<D, BQ>(s, Ks, warp * 16, Qb, DP, lane);
        }
        if (capped) cap_tile<BQ / 8>(s, scale, softcap);
        // Unmasked when every query of the tile comes at or after every key
        // of the warp and before the first key's end.
        const bool masked = qt < diag || qt + BQ > warpMinEnd;
#pragma unroll
        for (int nt = 0; nt < BQ / 8; nt++) {
#pragma unroll
            for (int e = 0; e < 4; e++) {
                const int col = nt * 8 + 2 * t + (e & 1);
                const int i = qt + col;
                const bool isB = e >= 2;
                bool valid;
                if constexpr (MODE == ATTN_BIAS) {
                    // Every query sees every key, but a query that sees none (lse -inf) adds nothing.
                    valid = (isB ? keyB : keyA) < KN && i < T && *lse_at(cb, col) != NEG_INF;
                    if (valid && bias != nullptr) s[nt][e] += bias[(i64)i * S + (isB ? keyB : keyA)] / scale;
                } else {
                    valid = !masked || (isB ? (i >= keyB && i < endB) : (i >= keyA && i < endA));
                }
                if constexpr (MODE == ATTN_GROUPS) {
                    // Before the key: a query of the key's group.
                    if (!valid && i < (isB ? keyB : keyA) && i >= (isB ? firstB : firstA)) {
                        const int gk = isB ? gB : gA;
                        valid = gk >= 0 && groups[i] == gk;
                    }
                }
                const float p = valid ? exp2_approx(fmaf(s[nt][e], sl2, -*lse_at(cb, col) * LOG2E)) : 0.0f;
                if (DK) {
                    const float slope = capped ? cap_slope(s[nt][e], softcap) : 1.0f;
                    dp[nt][e] = p * (dp[nt][e] - *delta_at(cb, col)) * slope;
                }
                s[nt][e] = p;
            }
        }
#pragma unroll
        for (int kc = 0; kc < BQ / 16; kc++) {
            unsigned int pa[4], da[4];
            if (DV) {
                acc_to_a(pa, s, kc);
                mma_rows_t<D>(dV, pa, dOb, DP, kc * 16, lane);
            }
            if (DK) {
                acc_to_a(da, dp, kc);
                mma_rows_t<D>(dK, da, Qb, DP, kc * 16, lane);
            }
        }
    }
    cp_async_wait_all();
    if (DK) store_acc<D>(dk, dkdt, dK, keyA, keyB, KN, kvStride, (i64)kvh * D, scale, scale, t);
    if (DV) store_acc<D>(dv, dvdt, dV, keyA, keyB, KN, kvStride, (i64)kvh * D, 1.0f, 1.0f, t);
}

// Blocks per SM each tensor-core kernel is compiled for (the second
// __launch_bounds__ argument, which caps registers per thread so that
// many blocks fit). The host can override them for tuning
// (WHET_NVRTC_DEFINES, engine/cuda/nvrtc.go). On an H200 the kernels run
// 2-3 blocks per SM as compiled (135, 168 and 226 registers at head dim
// 64); forcing 4/3/3 blocks changed the d64 forward by -1 % and backward
// by +10 % but cost the d128 kernels 25-35 % through spills, so no bound
// is set.
#ifndef ATTN_FWD_MINB
#define ATTN_FWD_MINB 1
#endif
#ifndef ATTN_DQ_MINB
#define ATTN_DQ_MINB 1
#endif
#ifndef ATTN_DKV_MINB
#define ATTN_DKV_MINB 1
#endif

// The tile of the dq kernel's keys and of the dK/dV kernel's queries:
// 64, or 32 above head dim 64 to keep the accumulators in registers, and
// 16 above head dim 128, where the 64-row tiles of q and dOut (dq) or k
// and v (dK/dV) plus two buffers of 16 rows fill 99 KB of shared memory,
// the most a block may have on sm_86/89/120 (2 * (128 + 64) * 264 bytes).
// engine/cuda/attention.go computes the same sizes for shared memory.
#define ATTN_BWD_TILE(D) ((D) <= 64 ? 64 : (D) <= 128 ? 32 : 16)

// Keys per tile of the forward: 64, or 32 above head dim 128 (then the
// 64 query rows and two buffers of 32 keys and values fill the same 99 KB).
#define ATTN_FWD_BN(D) ((D) <= 128 ? 64 : 32)

// Row tiles of 16 per warp in the forward: 2 up to head dim 64 (128-query
// blocks), 1 above, where two tiles' accumulators would spill registers.
// engine/cuda/attention.go (attnFwdRows) uses the same block sizes.
#define ATTN_FWD_MT(D) ((D) <= 64 ? 2 : 1)

// The tensor-core kernels of head dim D: ATTN_TC_FWD_DQ(D) the forward and
// dq kernels, and for dK and dV either ATTN_TC_DKV(D), one launch for both
// (head dims up to 128), or ATTN_TC_DK_DV(D), two launches writing one
// gradient each (attention_backward_dk_tc_d<D>, attention_backward_dv_tc_d<D>;
// above head dim 128, see attn_dkv_tc).
#define ATTN_TC_FWD_DQ(D)                                                                                              \
    extern "C" __global__ void __launch_bounds__(128, ATTN_FWD_MINB) attention_forward_tc_d##D(                        \
        void* out, int odt, float* lse, const unsigned short* q, const unsigned short* k, const unsigned short* v,     \
        const int* starts, int nseq, const int* order, int Tq, int qOffset, int H, int KVH, float scale,               \
        int window, float softcap) {                                                                                   \
        attn_fwd_tc<D, ATTN_FWD_MT(D), ATTN_FWD_BN(D)>(out, odt, lse, q, k, v, starts, nseq, order, Tq, qOffset, H,    \
                                                       KVH, scale, window, softcap);                                   \
    }                                                                                                                  \
    extern "C" __global__ void __launch_bounds__(128, ATTN_DQ_MINB) attention_backward_dq_tc_d##D(                     \
        void* dq, int dqdt, const unsigned short* dout, const unsigned short* q, const unsigned short* k,              \
        const unsigned short* v, const float* lse, const float* delta, const int* starts, int nseq, const int* order,  \
        int T, int H, int KVH, float scale, int window, float softcap) {                                               \
        attn_dq_tc<D, ATTN_BWD_TILE(D)>(dq, dqdt, dout, q, k, v, lse, delta, starts, nseq, order, T, H, KVH, scale,    \
                                        window, softcap);                                                              \
    }

#define ATTN_TC_DKV(D)                                                                                                 \
    extern "C" __global__ void __launch_bounds__(128, ATTN_DKV_MINB) attention_backward_dkv_tc_d##D(                   \
        void* dk, int dkdt, void* dv, int dvdt, const unsigned short* dout, const unsigned short* q,                   \
        const unsigned short* k, const unsigned short* v, const float* lse, const float* delta, const int* starts,     \
        int nseq, const int* order, int T, int H, int KVH, float scale, int window, float softcap) {                   \
        attn_dkv_tc<D, ATTN_BWD_TILE(D), true, true>(dk, dkdt, dv, dvdt, dout, q, k, v, lse, delta, starts, nseq,      \
                                                     order, T, H, KVH, scale, window, softcap);                        \
    }

#define ATTN_TC_DK_DV(D)                                                                                               \
    extern "C" __global__ void __launch_bounds__(128, ATTN_DKV_MINB) attention_backward_dk_tc_d##D(                    \
        void* dk, int dkdt, const unsigned short* dout, const unsigned short* q, const unsigned short* k,              \
        const unsigned short* v, const float* lse, const float* delta, const int* starts, int nseq, const int* order,  \
        int T, int H, int KVH, float scale, int window, float softcap) {                                               \
        attn_dkv_tc<D, ATTN_BWD_TILE(D), true, false>(dk, dkdt, nullptr, 0, dout, q, k, v, lse, delta, starts, nseq,   \
                                                      order, T, H, KVH, scale, window, softcap);                       \
    }                                                                                                                  \
    extern "C" __global__ void __launch_bounds__(128, ATTN_DKV_MINB) attention_backward_dv_tc_d##D(                    \
        void* dv, int dvdt, const unsigned short* dout, const unsigned short* q, const unsigned short* k,              \
        const float* lse, const int* starts, int nseq, const int* order, int T, int H, int KVH, float scale,           \
        int window, float softcap) {                                                                                   \
        attn_dkv_tc<D, ATTN_BWD_TILE(D), false, true>(nullptr, 0, dv, dvdt, dout, q, k, nullptr, lse, nullptr, starts, \
                                                      nseq, order, T, H, KVH, scale, window, softcap);                 \
    }

ATTN_TC_FWD_DQ(16)
ATTN_TC_DKV(16)
ATTN_TC_FWD_DQ(32)
ATTN_TC_DKV(32)
ATTN_TC_FWD_DQ(64)
ATTN_TC_DKV(64)
ATTN_TC_FWD_DQ(80)
ATTN_TC_DKV(80)
ATTN_TC_FWD_DQ(96)
ATTN_TC_DKV(96)
ATTN_TC_FWD_DQ(128)
ATTN_TC_DKV(128)
ATTN_TC_FWD_DQ(256)
ATTN_TC_DK_DV(256)

// The vision models' forwards (see attn_fwd_tc's MODE): head dims 72
// (SigLIP, computed at 80) and 256 (Gemma 3's language model) with image
// groups, 80 (Mllama's tower) and 128 (its cross-attention) under a bias.
// Opt-in until they pass on a GPU (engine/cuda/vision_attention.go).
#define ATTN_TC_GROUPS_FWD(D, DD)                                                                                      \
    extern "C" __global__ void __launch_bounds__(128, ATTN_FWD_MINB) attention_groups_forward_tc_d##DD(                \
        void* out, int odt, float* lse, const unsigned short* q, const unsigned short* k, const unsigned short* v,     \
        const int* groups, const int* last, const int* starts, int nseq, int T, int H, int KVH, float scale,           \
        int window, float softcap) {                                                                                   \
        attn_fwd_tc<D, ATTN_FWD_MT(D), ATTN_FWD_BN(D), ATTN_GROUPS, DD>(out, odt, lse, q, k, v, starts, nseq, nullptr, \
                                                                        T, 0, H, KVH, scale, window, softcap, groups,  \
                                                                        last, nullptr, 0);                             \
    }
#define ATTN_TC_BIAS_FWD(D)                                                                                            \
    extern "C" __global__ void __launch_bounds__(128, ATTN_FWD_MINB) attention_bias_forward_tc_d##D(                   \
        void* out, int odt, float* lse, const unsigned short* q, const unsigned short* k, const unsigned short* v,     \
        const float* bias, int T, int S, int H, int KVH, float scale) {                                                \
        attn_fwd_tc<D, ATTN_FWD_MT(D), ATTN_FWD_BN(D), ATTN_BIAS, D>(out, odt, lse, q, k, v, nullptr, 0, nullptr, T, 0, \
                                                                     H, KVH, scale, 0, 0.0f, nullptr, nullptr, bias, S); \
    }

ATTN_TC_GROUPS_FWD(80, 72)
ATTN_TC_GROUPS_FWD(80, 80)
ATTN_TC_GROUPS_FWD(256, 256)
ATTN_TC_BIAS_FWD(80)
ATTN_TC_BIAS_FWD(128)

// The vision models' backward passes (opt-in, engine/cuda/vision_attention.go): Gemma 3's
// language model over image groups at head dim 256 (dk and dv in two launches, as
// ATTN_TC_DK_DV) and Mllama's cross-attention under its bias at 128.
#define ATTN_TC_GROUPS_BWD_SPLIT(D)                                                                                    \
    extern "C" __global__ void __launch_bounds__(128, ATTN_DQ_MINB) attention_groups_backward_dq_tc_d##D(              \
        void* dq, int dqdt, const unsigned short* dout, const unsigned short* q, const unsigned short* k,              \
        const unsigned short* v, const float* lse, const float* delta, const int* groups, const int* last,             \
        const int* starts, int nseq, int T, int H, int KVH, float scale, int window, float softcap) {                  \
        attn_dq_tc<D, ATTN_BWD_TILE(D), ATTN_GROUPS>(dq, dqdt, dout, q, k, v, lse, delta, starts, nseq, nullptr, T, H, \
                                                     KVH, scale, window, softcap, groups, last, nullptr, 0);           \
    }                                                                                                                  \
    extern "C" __global__ void __launch_bounds__(128, ATTN_DKV_MINB) attention_groups_backward_dk_tc_d##D(             \
        void* dk, int dkdt, const unsigned short* dout, const unsigned short* q, const unsigned short* k,              \
        const unsigned short* v, const float* lse, const float* delta, const int* groups, const int* first,            \
        const int* starts, int nseq, int T, int H, int KVH, float scale, int window, float softcap) {                  \
        attn_dkv_tc<D, ATTN_BWD_TILE(D), true, false, ATTN_GROUPS>(dk, dkdt, nullptr, 0, dout, q, k, v, lse, delta,    \
                                                                   starts, nseq, nullptr, T, H, KVH, scale, window,    \
                                                                   softcap, groups, first, nullptr, 0);                \
    }                                                                                                                  \
    extern "C" __global__ void __launch_bounds__(128, ATTN_DKV_MINB) attention_groups_backward_dv_tc_d##D(             \
        void* dv, int dvdt, const unsigned short* dout, const unsigned short* q, const unsigned short* k,              \
        const float* lse, const int* groups, const int* first, const int* starts, int nseq, int T, int H, int KVH,     \
        float scale, int window, float softcap) {                                                                      \
        attn_dkv_tc<D, ATTN_BWD_TILE(D), false, true, ATTN_GROUPS>(nullptr, 0, dv, dvdt, dout, q, k, nullptr, lse,     \
                                                                   nullptr, starts, nseq, nullptr, T, H, KVH, scale,   \
                                                                   window, softcap, groups, first, nullptr, 0);        \
    }
#define ATTN_TC_BIAS_BWD(D)                                                                                            \
    extern "C" __global__ void __launch_bounds__(128, ATTN_DQ_MINB) attention_bias_backward_dq_tc_d##D(                \
        void* dq, int dqdt, const unsigned short* dout, const unsigned short* q, const unsigned short* k,              \
        const unsigned short* v, const float* lse, const float* delta, const float* bias, int T, int S, int H,         \
        int KVH, float scale) {                                                                                        \
        attn_dq_tc<D, ATTN_BWD_TILE(D), ATTN_BIAS>(dq, dqdt, dout, q, k, v, lse, delta, nullptr, 0, nullptr, T, H, KVH, \
                                                   scale, 0, 0.0f, nullptr, nullptr, bias, S);                         \
    }                                                                                                                  \
    extern "C" __global__ void __launch_bounds__(128, ATTN_DKV_MINB) attention_bias_backward_dkv_tc_d##D(              \
        void* dk, int dkdt, void* dv, int dvdt, const unsigned short* dout, const unsigned short* q,                   \
        const unsigned short* k, const unsigned short* v, const float* lse, const float* delta, const float* bias,     \
        int T, int S, int H, int KVH, float scale) {                                                                   \
        attn_dkv_tc<D, ATTN_BWD_TILE(D), true, true, ATTN_BIAS>(dk, dkdt, dv, dvdt, dout, q, k, v, lse, delta, nullptr, \
                                                                0, nullptr, T, H, KVH, scale, 0, 0.0f, nullptr,        \
                                                                nullptr, bias, S);                                     \
    }

ATTN_TC_GROUPS_BWD_SPLIT(256)
ATTN_TC_BIAS_BWD(128)
