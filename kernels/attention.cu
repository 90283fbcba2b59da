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
// window W > 0, i - j < W. Scores are scale * q_i . k_j.
//
// Forward (one block: 16 queries of one head; each warp owns 4 queries,
// each lane one key of the current 32-key tile):
//   m_i, l_i running max and sum of exp(score - m_i); acc_i running sum of
//   exp(score - m_i) * v_j. Each tile rescales both by exp(m_old - m_new).
//   out_i = acc_i / l_i (overwrite), lse_i = m_i + log(l_i) (overwrite).
//
// Backward recomputes the probabilities from lse instead of storing them:
//   P_ij   = exp(scale*q_i.k_j - lse_i)
//   Delta_i = dOut_i . out_i                       (attention_backward_delta)
//   dS_ij  = P_ij * (dOut_i . v_j - Delta_i)
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

// attention_forward serves training (qOffset 0, Tq = T, starts given) and
// decoding over a key/value cache (starts null: one sequence; query row r
// is position qOffset + r; lse null: nothing saved).
extern "C" __global__ void __launch_bounds__(128) attention_forward(
    void* out, int odt, float* lse, const void* q, int qdt, const void* k, int kdt, const void* v, int vdt,
    const int* starts, int nseq, int Tq, int qOffset, int H, int KVH, int D, float scale, int window) {
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
                s = d * scale;
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
    float scale, int window) {
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
                const float p = expf(sdot * scale - lq[qq]);
                ds = p * (pdot - dl[qq]);
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
    int D, float scale, int window) {
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
                    p = expf(sdot * scale - lseS[lane]);
                    ds = p * (pdot - deltaS[lane]);
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
// Tensor-core forward, for bf16 q, k and v with a head dim that is a
// multiple of 16 and at most 128 (every Llama, Qwen, Mistral and Gemma 2
// size up to 8B). Same maths and contract as attention_forward; the score
// and output products run on mma.sync m16n8k16 (bf16 in, f32 accumulate).
//
// A block holds 64 queries of one head, 16 per warp; keys stream through
// shared memory 64 at a time. Fragment layouts of m16n8k16, with g = lane/4
// and t = lane%4: A (16x16, row major) regs hold rows g and g+8 at columns
// 2t..2t+1 and 2t+8..2t+9; B (16x8, column major) regs hold rows 2t..2t+1
// and 2t+8..2t+9 of column g; C holds rows g and g+8 at columns 2t..2t+1.
// So each thread owns query rows g and g+8 of its warp's 16, and the
// score accumulators of two adjacent 8-key tiles are exactly the A
// fragment of P for the next product (P is rounded to bf16 there, as in
// FlashAttention; the row sums l use the unrounded values).
// Shared rows are padded by 8 bf16 so that the 32 lanes' 4-byte loads of
// a fragment fall in 32 different banks.

#define TC_QB 64
#define TC_KB 64
#define TC_MAXD 128

__device__ __forceinline__ void mma_bf16_16816(float* c, const unsigned int* a, const unsigned int* b) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}

// pack2 puts two bf16 values in one register, the lower column first.
__device__ __forceinline__ unsigned int pack2(unsigned short lo, unsigned short hi) {
    return (unsigned int)lo | ((unsigned int)hi << 16);
}

__device__ __forceinline__ unsigned int pack2f(float lo, float hi) { return pack2(f32_to_bf16(lo), f32_to_bf16(hi)); }

// ld2 reads two adjacent bf16 values of shared memory as one register.
__device__ __forceinline__ unsigned int ld2(const unsigned short* p) { return *(const unsigned int*)p; }

extern "C" __global__ void __launch_bounds__(128) attention_forward_tc(
    void* out, int odt, float* lse, const unsigned short* q, const unsigned short* k, const unsigned short* v,
    const int* starts, int nseq, int Tq, int qOffset, int H, int KVH, int D, float scale, int window) {
    extern __shared__ unsigned short sh[];
    const int Dp = D + 8;
    unsigned short* Qs = sh;               // [TC_QB][Dp]
    unsigned short* Ks = Qs + TC_QB * Dp;  // [TC_KB][Dp]
    unsigned short* Vs = Ks + TC_KB * Dp;  // [TC_KB][Dp]
    const int h = blockIdx.y, kvh = h / (H / KVH);
    const int q0 = blockIdx.x * TC_QB;
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5, g = lane >> 2, t = lane & 3;
    const i64 qStride = (i64)H * D, kvStride = (i64)KVH * D;

    for (int idx = tid; idx < TC_QB * D; idx += blockDim.x) {
        int r = idx / D, c = idx % D, i = q0 + r;
        Qs[r * Dp + c] = i < Tq ? q[(i64)i * qStride + (i64)h * D + c] : (unsigned short)0;
    }
    // Rows owned by this thread: A = warp row g, B = warp row g+8.
    const int rowA = q0 + warp * 16 + g, rowB = rowA + 8;
    const int posA = qOffset + rowA, posB = qOffset + rowB;
    const int loA = rowA < Tq ? first_key(starts, nseq, posA, window) : 0x7fffffff;
    const int loB = rowB < Tq ? first_key(starts, nseq, posB, window) : 0x7fffffff;
    const int warpRow0 = q0 + warp * 16;
    const int warpLastPos = qOffset + min(warpRow0 + 15, Tq - 1);
    const int warpLo = warpRow0 < Tq ? first_key(starts, nseq, qOffset + warpRow0, window) : 0;
    float mA = NEG_INF, mB = NEG_INF, lA = 0.0f, lB = 0.0f;
    float o[TC_MAXD / 8][4];
#pragma unroll
    for (int dn = 0; dn < TC_MAXD / 8; dn++) o[dn][0] = o[dn][1] = o[dn][2] = o[dn][3] = 0.0f;
    __syncthreads();
    unsigned int qa[TC_MAXD / 16][4];
#pragma unroll
    for (int kc = 0; kc < TC_MAXD / 16; kc++) {
        if (kc < D / 16) {
            const unsigned short* base = Qs + (warp * 16 + g) * Dp + kc * 16 + 2 * t;
            qa[kc][0] = ld2(base);
            qa[kc][1] = ld2(base + 8 * Dp);
            qa[kc][2] = ld2(base + 8);
            qa[kc][3] = ld2(base + 8 * Dp + 8);
        }
    }
    const int kEnd = qOffset + min(q0 + TC_QB, Tq) - 1;
    const int kStart = first_key(starts, nseq, qOffset + q0, window);

    for (int kt = kStart; kt <= kEnd; kt += TC_KB) {
        __syncthreads();
        for (int idx = tid; idx < TC_KB * D; idx += blockDim.x) {
            int r = idx / D, c = idx % D, j = kt + r;
            unsigned short kv = 0, vv = 0;
            if (j <= kEnd) {
                i64 off = (i64)j * kvStride + (i64)kvh * D + c;
                kv = k[off];
                vv = v[off];
            }
            Ks[r * Dp + c] = kv;
            Vs[r * Dp + c] = vv;
        }
        __syncthreads();
        if (warpRow0 >= Tq || kt > warpLastPos || kt + TC_KB - 1 < warpLo) continue; // warp-uniform

        float s[TC_KB / 8][4];
#pragma unroll
        for (int nt = 0; nt < TC_KB / 8; nt++) {
            s[nt][0] = s[nt][1] = s[nt][2] = s[nt][3] = 0.0f;
#pragma unroll
            for (int kc = 0; kc < TC_MAXD / 16; kc++) {
                if (kc < D / 16) {
                    const unsigned short* kb = Ks + (nt * 8 + g) * Dp + kc * 16 + 2 * t;
                    unsigned int b[2] = {ld2(kb), ld2(kb + 8)};
                    mma_bf16_16816(s[nt], qa[kc], b);
                }
            }
        }
        float tmA = NEG_INF, tmB = NEG_INF;
#pragma unroll
        for (int nt = 0; nt < TC_KB / 8; nt++) {
#pragma unroll
            for (int e = 0; e < 4; e++) {
                const int key = kt + nt * 8 + 2 * t + (e & 1);
                const bool isB = e >= 2;
                const bool valid = isB ? (key >= loB && key <= posB) : (key >= loA && key <= posA);
                s[nt][e] = valid ? s[nt][e] * scale : NEG_INF;
            }
            tmA = fmaxf(tmA, fmaxf(s[nt][0], s[nt][1]));
            tmB = fmaxf(tmB, fmaxf(s[nt][2], s[nt][3]));
        }
        // The four threads t = 0..3 of a group share rows g and g+8.
        tmA = fmaxf(tmA, __shfl_xor_sync(0xffffffffu, tmA, 1));
        tmA = fmaxf(tmA, __shfl_xor_sync(0xffffffffu, tmA, 2));
        tmB = fmaxf(tmB, __shfl_xor_sync(0xffffffffu, tmB, 1));
        tmB = fmaxf(tmB, __shfl_xor_sync(0xffffffffu, tmB, 2));
        const float nA = fmaxf(mA, tmA), nB = fmaxf(mB, tmB);
        // A row with no visible key so far keeps m = -inf: nothing to rescale.
        const float cA = nA == NEG_INF ? 1.0f : expf(mA - nA);
        const float cB = nB == NEG_INF ? 1.0f : expf(mB - nB);
        float sumA = 0.0f, sumB = 0.0f;
#pragma unroll
        for (int nt = 0; nt < TC_KB / 8; nt++) {
            s[nt][0] = s[nt][0] == NEG_INF ? 0.0f : expf(s[nt][0] - nA);
            s[nt][1] = s[nt][1] == NEG_INF ? 0.0f : expf(s[nt][1] - nA);
            s[nt][2] = s[nt][2] == NEG_INF ? 0.0f : expf(s[nt][2] - nB);
            s[nt][3] = s[nt][3] == NEG_INF ? 0.0f : expf(s[nt][3] - nB);
            sumA += s[nt][0] + s[nt][1];
            sumB += s[nt][2] + s[nt][3];
        }
        lA = lA * cA + sumA;
        lB = lB * cB + sumB;
        mA = nA;
        mB = nB;
#pragma unroll
        for (int dn = 0; dn < TC_MAXD / 8; dn++) {
            o[dn][0] *= cA;
            o[dn][1] *= cA;
            o[dn][2] *= cB;
            o[dn][3] *= cB;
        }
#pragma unroll
        for (int kc = 0; kc < TC_KB / 16; kc++) {
            unsigned int pa[4] = {pack2f(s[2 * kc][0], s[2 * kc][1]), pack2f(s[2 * kc][2], s[2 * kc][3]),
                                  pack2f(s[2 * kc + 1][0], s[2 * kc + 1][1]), pack2f(s[2 * kc + 1][2], s[2 * kc + 1][3])};
            const unsigned short* vb = Vs + (kc * 16 + 2 * t) * Dp + g;
#pragma unroll
            for (int dn = 0; dn < TC_MAXD / 8; dn++) {
                if (dn < D / 8) {
                    const unsigned short* c = vb + dn * 8;
                    unsigned int b[2] = {pack2(c[0], c[Dp]), pack2(c[8 * Dp], c[9 * Dp])};
                    mma_bf16_16816(o[dn], pa, b);
                }
            }
        }
    }
    lA += __shfl_xor_sync(0xffffffffu, lA, 1);
    lA += __shfl_xor_sync(0xffffffffu, lA, 2);
    lB += __shfl_xor_sync(0xffffffffu, lB, 1);
    lB += __shfl_xor_sync(0xffffffffu, lB, 2);
    const float iA = 1.0f / lA, iB = 1.0f / lB;
#pragma unroll
    for (int dn = 0; dn < TC_MAXD / 8; dn++) {
        if (dn < D / 8) {
            const int d = dn * 8 + 2 * t;
            if (rowA < Tq) {
                i64 base = (i64)rowA * qStride + (i64)h * D + d;
                st(out, odt, base, o[dn][0] * iA);
                st(out, odt, base + 1, o[dn][1] * iA);
            }
            if (rowB < Tq) {
                i64 base = (i64)rowB * qStride + (i64)h * D + d;
                st(out, odt, base, o[dn][2] * iB);
                st(out, odt, base + 1, o[dn][3] * iB);
            }
        }
    }
    if (lse != nullptr && t == 0) {
        if (rowA < Tq) lse[(i64)h * Tq + rowA] = mA + logf(lA);
        if (rowB < Tq) lse[(i64)h * Tq + rowB] = mB + logf(lB);
    }
}

// ---------------------------------------------------------------------------
// Tensor-core backward, for bf16 q, k, v and dOut under the same head-dim
// rule as the forward. Same maths and contract as the float32 backward
// (delta from attention_backward_delta; dq, dk, dv overwritten, no atomics).
//
// attention_backward_dkv_tc: a block owns 64 keys of one key/value head,
// 16 per warp, and walks the query heads of its group in 32-query tiles.
// With rows = keys it computes S^T = K Q^T and dP^T = V dO^T, so P^T and
// dS^T come out of the accumulators already laid out as A fragments for
// dV += P^T dO and dK += dS^T Q. attention_backward_dq_tc: a block owns 64
// queries of one head and walks 32-key tiles: S = Q K^T, dP = dO V^T,
// dq += dS K. Operands whose reduction runs along the stored rows (dO and
// Q for dV and dK, K for dq) are read as B fragments with two 16-bit
// shared loads per register. P and dS are rounded to bf16 for the
// products, as in FlashAttention 2.

#define TC_QT 32 // query tile of the dK/dV kernel, key tile of the dq kernel

// frag_a loads the A fragment of rows r0..r0+15, columns c0..c0+15 of a
// row-major bf16 tile with row stride Dp.
__device__ __forceinline__ void frag_a(unsigned int* a, const unsigned short* tile, int Dp, int r0, int c0, int g, int t) {
    const unsigned short* p = tile + (r0 + g) * Dp + c0 + 2 * t;
    a[0] = ld2(p);
    a[1] = ld2(p + 8 * Dp);
    a[2] = ld2(p + 8);
    a[3] = ld2(p + 8 * Dp + 8);
}

// frag_b_rows loads the B fragment (k = columns c0.., n = rows r0..r0+7)
// of a row-major tile: B(k, n) = tile[r0+n][c0+k].
__device__ __forceinline__ void frag_b_rows(unsigned int* b, const unsigned short* tile, int Dp, int r0, int c0, int g, int t) {
    const unsigned short* p = tile + (r0 + g) * Dp + c0 + 2 * t;
    b[0] = ld2(p);
    b[1] = ld2(p + 8);
}

// frag_b_cols loads the B fragment (k = rows r0..r0+15, n = columns
// c0..c0+7) of a row-major tile: B(k, n) = tile[r0+k][c0+n].
__device__ __forceinline__ void frag_b_cols(unsigned int* b, const unsigned short* tile, int Dp, int r0, int c0, int g, int t) {
    const unsigned short* p = tile + (r0 + 2 * t) * Dp + c0 + g;
    b[0] = pack2(p[0], p[Dp]);
    b[1] = pack2(p[8 * Dp], p[9 * Dp]);
}

extern "C" __global__ void __launch_bounds__(128) attention_backward_dkv_tc(
    void* dk, int dkdt, void* dv, int dvdt, const unsigned short* dout, const unsigned short* q, const unsigned short* k,
    const unsigned short* v, const float* lse, const float* delta, const int* starts, int nseq, int T, int H, int KVH,
    int D, float scale, int window) {
    extern __shared__ unsigned short sh[];
    const int Dp = D + 8;
    unsigned short* Ks = sh;                 // [TC_KB][Dp]
    unsigned short* Vs = Ks + TC_KB * Dp;    // [TC_KB][Dp]
    unsigned short* Qs = Vs + TC_KB * Dp;    // [TC_QT][Dp]
    unsigned short* dOs = Qs + TC_QT * Dp;   // [TC_QT][Dp]
    float* lseS = (float*)(dOs + TC_QT * Dp); // [TC_QT]
    float* deltaS = lseS + TC_QT;            // [TC_QT]
    const int kvh = blockIdx.y, group = H / KVH;
    const int j0 = blockIdx.x * TC_KB;
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5, g = lane >> 2, t = lane & 3;
    const i64 qStride = (i64)H * D, kvStride = (i64)KVH * D;

    for (int idx = tid; idx < TC_KB * D; idx += blockDim.x) {
        int r = idx / D, c = idx % D, j = j0 + r;
        i64 off = (i64)j * kvStride + (i64)kvh * D + c;
        Ks[r * Dp + c] = j < T ? k[off] : (unsigned short)0;
        Vs[r * Dp + c] = j < T ? v[off] : (unsigned short)0;
    }
    // Keys owned by this thread: A = warp row g, B = warp row g+8.
    const int keyA = j0 + warp * 16 + g, keyB = keyA + 8;
    const int endA = keyA < T ? end_query(starts, nseq, keyA, window) : 0;
    const int endB = keyB < T ? end_query(starts, nseq, keyB, window) : 0;
    const int warpKey0 = j0 + warp * 16;
    const int warpEnd = warpKey0 < T ? end_query(starts, nseq, min(warpKey0 + 15, T - 1), window) : 0;
    const int kLast = min(j0 + TC_KB, T) - 1;
    const int qEnd = end_query(starts, nseq, kLast, window);
    float dK[TC_MAXD / 8][4], dV[TC_MAXD / 8][4];
#pragma unroll
    for (int dn = 0; dn < TC_MAXD / 8; dn++) {
        dK[dn][0] = dK[dn][1] = dK[dn][2] = dK[dn][3] = 0.0f;
        dV[dn][0] = dV[dn][1] = dV[dn][2] = dV[dn][3] = 0.0f;
    }

    for (int h = kvh * group; h < (kvh + 1) * group; h++) {
        for (int qt = j0; qt < qEnd; qt += TC_QT) {
            __syncthreads();
            for (int idx = tid; idx < TC_QT * D; idx += blockDim.x) {
                int r = idx / D, c = idx % D, i = qt + r;
                i64 off = (i64)i * qStride + (i64)h * D + c;
                Qs[r * Dp + c] = i < qEnd ? q[off] : (unsigned short)0;
                dOs[r * Dp + c] = i < qEnd ? dout[off] : (unsigned short)0;
            }
            if (tid < TC_QT) {
                int i = qt + tid;
                lseS[tid] = i < qEnd ? lse[(i64)h * T + i] : 0.0f;
                deltaS[tid] = i < qEnd ? delta[(i64)h * T + i] : 0.0f;
            }
            __syncthreads();
            if (warpKey0 >= T || qt >= warpEnd || qt + TC_QT - 1 < warpKey0) continue; // warp-uniform

            float s[TC_QT / 8][4], dp[TC_QT / 8][4];
#pragma unroll
            for (int nt = 0; nt < TC_QT / 8; nt++) {
                s[nt][0] = s[nt][1] = s[nt][2] = s[nt][3] = 0.0f;
                dp[nt][0] = dp[nt][1] = dp[nt][2] = dp[nt][3] = 0.0f;
#pragma unroll
                for (int kc = 0; kc < TC_MAXD / 16; kc++) {
                    if (kc < D / 16) {
                        unsigned int a[4], b[2];
                        frag_a(a, Ks, Dp, warp * 16, kc * 16, g, t);
                        frag_b_rows(b, Qs, Dp, nt * 8, kc * 16, g, t);
                        mma_bf16_16816(s[nt], a, b);
                        frag_a(a, Vs, Dp, warp * 16, kc * 16, g, t);
                        frag_b_rows(b, dOs, Dp, nt * 8, kc * 16, g, t);
                        mma_bf16_16816(dp[nt], a, b);
                    }
                }
            }
            // s becomes P^T and dp becomes dS^T, element by element.
#pragma unroll
            for (int nt = 0; nt < TC_QT / 8; nt++) {
#pragma unroll
                for (int e = 0; e < 4; e++) {
                    const int col = nt * 8 + 2 * t + (e & 1);
                    const int i = qt + col;
                    const bool isB = e >= 2;
                    const int key = isB ? keyB : keyA;
                    const bool valid = i >= key && i < (isB ? endB : endA);
                    const float p = valid ? expf(s[nt][e] * scale - lseS[col]) : 0.0f;
                    s[nt][e] = p;
                    dp[nt][e] = p * (dp[nt][e] - deltaS[col]);
                }
            }
#pragma unroll
            for (int kc = 0; kc < TC_QT / 16; kc++) {
                unsigned int pa[4] = {pack2f(s[2 * kc][0], s[2 * kc][1]), pack2f(s[2 * kc][2], s[2 * kc][3]),
                                      pack2f(s[2 * kc + 1][0], s[2 * kc + 1][1]), pack2f(s[2 * kc + 1][2], s[2 * kc + 1][3])};
                unsigned int da[4] = {pack2f(dp[2 * kc][0], dp[2 * kc][1]), pack2f(dp[2 * kc][2], dp[2 * kc][3]),
                                      pack2f(dp[2 * kc + 1][0], dp[2 * kc + 1][1]), pack2f(dp[2 * kc + 1][2], dp[2 * kc + 1][3])};
#pragma unroll
                for (int dn = 0; dn < TC_MAXD / 8; dn++) {
                    if (dn < D / 8) {
                        unsigned int b[2];
                        frag_b_cols(b, dOs, Dp, kc * 16, dn * 8, g, t);
                        mma_bf16_16816(dV[dn], pa, b);
                        frag_b_cols(b, Qs, Dp, kc * 16, dn * 8, g, t);
                        mma_bf16_16816(dK[dn], da, b);
                    }
                }
            }
        }
    }
#pragma unroll
    for (int dn = 0; dn < TC_MAXD / 8; dn++) {
        if (dn < D / 8) {
            const int d = dn * 8 + 2 * t;
            if (keyA < T) {
                i64 off = (i64)keyA * kvStride + (i64)kvh * D + d;
                st(dk, dkdt, off, dK[dn][0] * scale);
                st(dk, dkdt, off + 1, dK[dn][1] * scale);
                st(dv, dvdt, off, dV[dn][0]);
                st(dv, dvdt, off + 1, dV[dn][1]);
            }
            if (keyB < T) {
                i64 off = (i64)keyB * kvStride + (i64)kvh * D + d;
                st(dk, dkdt, off, dK[dn][2] * scale);
                st(dk, dkdt, off + 1, dK[dn][3] * scale);
                st(dv, dvdt, off, dV[dn][2]);
                st(dv, dvdt, off + 1, dV[dn][3]);
            }
        }
    }
}

extern "C" __global__ void __launch_bounds__(128) attention_backward_dq_tc(
    void* dq, int dqdt, const unsigned short* dout, const unsigned short* q, const unsigned short* k,
    const unsigned short* v, const float* lse, const float* delta, const int* starts, int nseq, int T, int H, int KVH,
    int D, float scale, int window) {
    extern __shared__ unsigned short sh[];
    const int Dp = D + 8;
    unsigned short* Qs = sh;               // [TC_QB][Dp]
    unsigned short* dOs = Qs + TC_QB * Dp; // [TC_QB][Dp]
    unsigned short* Ks = dOs + TC_QB * Dp; // [TC_QT][Dp]
    unsigned short* Vs = Ks + TC_QT * Dp;  // [TC_QT][Dp]
    const int h = blockIdx.y, kvh = h / (H / KVH);
    const int q0 = blockIdx.x * TC_QB;
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5, g = lane >> 2, t = lane & 3;
    const i64 qStride = (i64)H * D, kvStride = (i64)KVH * D;

    for (int idx = tid; idx < TC_QB * D; idx += blockDim.x) {
        int r = idx / D, c = idx % D, i = q0 + r;
        i64 off = (i64)i * qStride + (i64)h * D + c;
        Qs[r * Dp + c] = i < T ? q[off] : (unsigned short)0;
        dOs[r * Dp + c] = i < T ? dout[off] : (unsigned short)0;
    }
    const int rowA = q0 + warp * 16 + g, rowB = rowA + 8;
    const int loA = rowA < T ? first_key(starts, nseq, rowA, window) : 0x7fffffff;
    const int loB = rowB < T ? first_key(starts, nseq, rowB, window) : 0x7fffffff;
    const float lseA = rowA < T ? lse[(i64)h * T + rowA] : 0.0f, lseB = rowB < T ? lse[(i64)h * T + rowB] : 0.0f;
    const float dlA = rowA < T ? delta[(i64)h * T + rowA] : 0.0f, dlB = rowB < T ? delta[(i64)h * T + rowB] : 0.0f;
    const int warpRow0 = q0 + warp * 16;
    const int warpLast = min(warpRow0 + 15, T - 1);
    const int warpLo = warpRow0 < T ? first_key(starts, nseq, warpRow0, window) : 0;
    const int kEnd = min(q0 + TC_QB, T) - 1;
    const int kStart = first_key(starts, nseq, q0, window);
    float dQ[TC_MAXD / 8][4];
#pragma unroll
    for (int dn = 0; dn < TC_MAXD / 8; dn++) dQ[dn][0] = dQ[dn][1] = dQ[dn][2] = dQ[dn][3] = 0.0f;

    for (int kt = kStart; kt <= kEnd; kt += TC_QT) {
        __syncthreads();
        for (int idx = tid; idx < TC_QT * D; idx += blockDim.x) {
            int r = idx / D, c = idx % D, j = kt + r;
            i64 off = (i64)j * kvStride + (i64)kvh * D + c;
            Ks[r * Dp + c] = j <= kEnd ? k[off] : (unsigned short)0;
            Vs[r * Dp + c] = j <= kEnd ? v[off] : (unsigned short)0;
        }
        __syncthreads();
        if (warpRow0 >= T || kt > warpLast || kt + TC_QT - 1 < warpLo) continue; // warp-uniform

        float s[TC_QT / 8][4], dp[TC_QT / 8][4];
#pragma unroll
        for (int nt = 0; nt < TC_QT / 8; nt++) {
            s[nt][0] = s[nt][1] = s[nt][2] = s[nt][3] = 0.0f;
            dp[nt][0] = dp[nt][1] = dp[nt][2] = dp[nt][3] = 0.0f;
#pragma unroll
            for (int kc = 0; kc < TC_MAXD / 16; kc++) {
                if (kc < D / 16) {
                    unsigned int a[4], b[2];
                    frag_a(a, Qs, Dp, warp * 16, kc * 16, g, t);
                    frag_b_rows(b, Ks, Dp, nt * 8, kc * 16, g, t);
                    mma_bf16_16816(s[nt], a, b);
                    frag_a(a, dOs, Dp, warp * 16, kc * 16, g, t);
                    frag_b_rows(b, Vs, Dp, nt * 8, kc * 16, g, t);
                    mma_bf16_16816(dp[nt], a, b);
                }
            }
        }
#pragma unroll
        for (int nt = 0; nt < TC_QT / 8; nt++) {
#pragma unroll
            for (int e = 0; e < 4; e++) {
                const int key = kt + nt * 8 + 2 * t + (e & 1);
                const bool isB = e >= 2;
                const bool valid = isB ? (key >= loB && key <= rowB) : (key >= loA && key <= rowA);
                const float p = valid ? expf(s[nt][e] * scale - (isB ? lseB : lseA)) : 0.0f;
                dp[nt][e] = p * (dp[nt][e] - (isB ? dlB : dlA));
            }
        }
#pragma unroll
        for (int kc = 0; kc < TC_QT / 16; kc++) {
            unsigned int da[4] = {pack2f(dp[2 * kc][0], dp[2 * kc][1]), pack2f(dp[2 * kc][2], dp[2 * kc][3]),
                                  pack2f(dp[2 * kc + 1][0], dp[2 * kc + 1][1]), pack2f(dp[2 * kc + 1][2], dp[2 * kc + 1][3])};
#pragma unroll
            for (int dn = 0; dn < TC_MAXD / 8; dn++) {
                if (dn < D / 8) {
                    unsigned int b[2];
                    frag_b_cols(b, Ks, Dp, kc * 16, dn * 8, g, t);
                    mma_bf16_16816(dQ[dn], da, b);
                }
            }
        }
    }
#pragma unroll
    for (int dn = 0; dn < TC_MAXD / 8; dn++) {
        if (dn < D / 8) {
            const int d = dn * 8 + 2 * t;
            if (rowA < T) {
                i64 off = (i64)rowA * qStride + (i64)h * D + d;
                st(dq, dqdt, off, dQ[dn][0] * scale);
                st(dq, dqdt, off + 1, dQ[dn][1] * scale);
            }
            if (rowB < T) {
                i64 off = (i64)rowB * qStride + (i64)h * D + d;
                st(dq, dqdt, off, dQ[dn][2] * scale);
                st(dq, dqdt, off + 1, dQ[dn][3] * scale);
            }
        }
    }
}
