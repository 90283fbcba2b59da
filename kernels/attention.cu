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
