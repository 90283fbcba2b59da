// group_attention.cu: attention with bidirectional groups (engine.GroupAttention): Gemma 3's
// image tokens seeing each other both ways inside the causal/sliding mask, and the SigLIP
// tower's unmasked attention (every token of an image in one group).
//
// Mask: query i sees key j of its sequence (starts) when j <= i or groups[i] = groups[j] >= 0,
// and (window <= 0 or j > i - window): transformers 5's AND(window, OR(causal, group)). Scores s = scale*q.k, capped at
// cap*tanh(s/cap) when cap > 0. Layout: q, out [T, H*D], k, v [T, KVH*D], lse [H, T] (f32),
// query head h reads kv head h / (H/KVH).
// Forward: out_i = sum_j P_ij v_j with P = softmax over the keys i sees; lse_i = log sum exp s_ij.
// Backward, with P = exp(s - lse), delta_i = dOut_i.out_i, dS_ij = P_ij (dOut_i.v_j - delta_i) s'_ij:
//   dq_i = scale * sum_j dS_ij k_j ; dk_j = scale * sum_{h in group, i} dS_ij q_i ;
//   dv_j = sum_{h in group, i} P_ij dOut_i                                 (all overwritten)
//
// A plain (not tiled) implementation: one block of 256 threads per (query, head) for the
// forward and dq, per (key, kv head) for dk and dv; keys (queries) go through shared memory in
// chunks of 256, one per thread, with an online softmax in the forward; thread d < D owns output
// dimension d (D <= 256). Memory: O(D + 256) shared floats per block, nothing T x T.
#include "common.cuh"

#define GA_THREADS 256

// ga_bounds finds the sequence holding token i: the last s with starts[s] <= i.
__device__ __forceinline__ void ga_bounds(const int* starts, int nseq, int i, int* lo, int* hi) {
    int a = 0, b = nseq - 1;
    while (a < b) {
        int mid = (a + b + 1) >> 1;
        if (starts[mid] <= i) a = mid; else b = mid - 1;
    }
    *lo = starts[a];
    *hi = starts[a + 1];
}

__device__ __forceinline__ bool ga_sees(const int* groups, int i, int j, int window) {
    if (window > 0 && j <= i - window) return false;
    int gi = groups[i];
    return j <= i || (gi >= 0 && gi == groups[j]);
}

__device__ __forceinline__ float ga_score(float dot, float scale, float cap, float* dsc) {
    float s = scale * dot;
    if (cap <= 0.0f) {
        *dsc = 1.0f;
        return s;
    }
    float t = tanhf(s / cap);
    *dsc = 1.0f - t * t;
    return cap * t;
}

extern "C" __global__ void group_attention_forward(void* out, int odt, float* lse, const void* q, int qdt, const void* k, int kdt,
                                                   const void* v, int vdt, const int* groups, const int* starts, int nseq, int T,
                                                   int H, int KVH, int D, float scale, int window, float cap) {
    __shared__ float qs[GA_THREADS];
    __shared__ float p[GA_THREADS];
    __shared__ float scratch[32];
    const int i = blockIdx.x, h = blockIdx.y, kvh = h / (H / KVH), tid = threadIdx.x;
    int lo, hi;
    ga_bounds(starts, nseq, i, &lo, &hi);
    if (tid < D) qs[tid] = ld(q, qdt, ((i64)i * H + h) * D + tid);
    __syncthreads();
    float m = NEG_INF, l = 0.0f, acc = 0.0f;
    for (int c0 = lo; c0 < hi; c0 += GA_THREADS) {
        const int j = c0 + tid;
        float s = NEG_INF, dsc;
        if (j < hi && ga_sees(groups, i, j, window)) {
            float dot = 0.0f;
            for (int d = 0; d < D; d++) dot += qs[d] * ld(k, kdt, ((i64)j * KVH + kvh) * D + d);
            s = ga_score(dot, scale, cap, &dsc);
        }
        const float cm = block_max(s, scratch);
        if (cm == NEG_INF) continue; // the same for every thread of the block
        const float mn = fmaxf(m, cm);
        const float corr = m == NEG_INF ? 0.0f : expf(m - mn);
        const float e = s == NEG_INF ? 0.0f : expf(s - mn);
        p[tid] = e;
        const float cs = block_sum(e, scratch); // its barriers also publish p
        l = l * corr + cs;
        acc *= corr;
        m = mn;
        if (tid < D) {
            const int n = min(GA_THREADS, hi - c0);
            for (int jj = 0; jj < n; jj++) acc += p[jj] * ld(v, vdt, ((i64)(c0 + jj) * KVH + kvh) * D + tid);
        }
        __syncthreads();
    }
    if (tid < D) st(out, odt, ((i64)i * H + h) * D + tid, acc / l);
    if (tid == 0) lse[(i64)h * T + i] = m + logf(l);
}

extern "C" __global__ void group_attention_backward_dq(void* dq, int dqdt, const void* dout, int dodt, const void* q, int qdt,
                                                       const void* k, int kdt, const void* v, int vdt, const void* out, int odt,
                                                       const float* lse, const int* groups, const int* starts, int nseq, int T,
                                                       int H, int KVH, int D, float scale, int window, float cap) {
    __shared__ float qs[GA_THREADS];
    __shared__ float dos[GA_THREADS];
    __shared__ float p[GA_THREADS];
    __shared__ float scratch[32];
    const int i = blockIdx.x, h = blockIdx.y, kvh = h / (H / KVH), tid = threadIdx.x;
    int lo, hi;
    ga_bounds(starts, nseq, i, &lo, &hi);
    float part = 0.0f;
    if (tid < D) {
        const i64 r = ((i64)i * H + h) * D + tid;
        qs[tid] = ld(q, qdt, r);
        dos[tid] = ld(dout, dodt, r);
        part = dos[tid] * ld(out, odt, r);
    }
    const float delta = block_sum(part, scratch);
    const float li = lse[(i64)h * T + i];
    float acc = 0.0f;
    for (int c0 = lo; c0 < hi; c0 += GA_THREADS) {
        const int j = c0 + tid;
        float ds = 0.0f;
        if (j < hi && ga_sees(groups, i, j, window)) {
            float dot = 0.0f, dp = 0.0f, dsc;
            for (int d = 0; d < D; d++) {
                const i64 r = ((i64)j * KVH + kvh) * D + d;
                dot += qs[d] * ld(k, kdt, r);
                dp += dos[d] * ld(v, vdt, r);
            }
            const float s = ga_score(dot, scale, cap, &dsc);
            ds = expf(s - li) * (dp - delta) * dsc;
        }
        p[tid] = ds;
        __syncthreads();
        if (tid < D) {
            const int n = min(GA_THREADS, hi - c0);
            for (int jj = 0; jj < n; jj++) acc += p[jj] * ld(k, kdt, ((i64)(c0 + jj) * KVH + kvh) * D + tid);
        }
        __syncthreads();
    }
    if (tid < D) st(dq, dqdt, ((i64)i * H + h) * D + tid, scale * acc);
}

extern "C" __global__ void group_attention_backward_dkv(void* dk, int dkdt, void* dv, int dvdt, const void* dout, int dodt,
                                                        const void* q, int qdt, const void* k, int kdt, const void* v, int vdt,
                                                        const void* out, int odt, const float* lse, const int* groups,
                                                        const int* starts, int nseq, int T, int H, int KVH, int D, float scale,
                                                        int window, float cap) {
    __shared__ float ks[GA_THREADS];
    __shared__ float vs[GA_THREADS];
    __shared__ float pp[GA_THREADS];
    __shared__ float pds[GA_THREADS];
    const int j = blockIdx.x, kvh = blockIdx.y, tid = threadIdx.x, group = H / KVH;
    int lo, hi;
    ga_bounds(starts, nseq, j, &lo, &hi);
    if (tid < D) {
        const i64 r = ((i64)j * KVH + kvh) * D + tid;
        ks[tid] = ld(k, kdt, r);
        vs[tid] = ld(v, vdt, r);
    }
    __syncthreads();
    float accK = 0.0f, accV = 0.0f;
    for (int h = kvh * group; h < (kvh + 1) * group; h++) {
        for (int c0 = lo; c0 < hi; c0 += GA_THREADS) {
            const int i = c0 + tid;
            float pr = 0.0f, ds = 0.0f;
            if (i < hi && ga_sees(groups, i, j, window)) {
                float dot = 0.0f, dp = 0.0f, delta = 0.0f, dsc;
                for (int d = 0; d < D; d++) {
                    const i64 r = ((i64)i * H + h) * D + d;
                    const float g = ld(dout, dodt, r);
                    dot += ld(q, qdt, r) * ks[d];
                    dp += g * vs[d];
                    delta += g * ld(out, odt, r);
                }
                const float s = ga_score(dot, scale, cap, &dsc);
                pr = expf(s - lse[(i64)h * T + i]);
                ds = pr * (dp - delta) * dsc;
            }
            pp[tid] = pr;
            pds[tid] = ds;
            __syncthreads();
            if (tid < D) {
                const int n = min(GA_THREADS, hi - c0);
                for (int ii = 0; ii < n; ii++) {
                    const i64 r = ((i64)(c0 + ii) * H + h) * D + tid;
                    accV += pp[ii] * ld(dout, dodt, r);
                    accK += pds[ii] * ld(q, qdt, r);
                }
            }
            __syncthreads();
        }
    }
    if (tid < D) {
        const i64 r = ((i64)j * KVH + kvh) * D + tid;
        st(dk, dkdt, r, scale * accK);
        st(dv, dvdt, r, accV);
    }
}

// vision_last writes last[i], the last key that query i can see under the groups: the last
// token of i's sequence in i's group, or i itself when that is later or i has no group; and,
// when first is not null, first[i], the first query that sees key i: the first token of its
// sequence in its group, or i. The tensor-core group kernels (attention_groups_*_tc_d*,
// kernels/attention.cu) read them to bound their tiles. One thread a token, scanning its
// sequence from the ends.
extern "C" __global__ void vision_last(int* last, int* first, const int* groups, const int* starts, int nseq, int T) {
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= T) return;
    int lo, hi;
    ga_bounds(starts, nseq, i, &lo, &hi);
    const int gi = groups[i];
    int r = i, f = i;
    if (gi >= 0) {
        for (int j = hi - 1; j > i; j--) {
            if (groups[j] == gi) {
                r = j;
                break;
            }
        }
        if (first != nullptr) {
            for (int j = lo; j < i; j++) {
                if (groups[j] == gi) {
                    f = j;
                    break;
                }
            }
        }
    }
    last[i] = r;
    if (first != nullptr) first[i] = f;
}
