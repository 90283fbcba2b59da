// bias_attention.cu: attention without the causal rule under an additive bias
// (engine.MllamaOps.BiasAttention): Llama 3.2 Vision's encoder attention over one image's
// tiles (the bias masks padding rows from each other) and the language model's
// cross-attention from text tokens to image tokens (the bias hides the tiles a token's
// cross-attention mask row leaves out).
//
// Every query t of q [T, H*D] sees every key s of k, v [S, KVH*D]; query head h reads kv
// head h / (H/KVH). Scores s_ts = scale*q_t.k_s + bias[t, s] (bias f32 [T, S], shared by
// the heads, null for none; -inf masks). lse [H, T] (f32).
// Forward: out_t = sum_s P_ts v_s with P = softmax_s(s_t.); lse_t = log sum_s exp s_ts.
//          A row whose every score is -inf gets out 0 and lse -inf.
// Backward, with P = exp(s - lse), delta_t = dOut_t.out_t, dS_ts = P_ts (dOut_t.v_s - delta_t):
//   dq_t = scale * sum_s dS_ts k_s ; dk_s = scale * sum_{h in group, t} dS_ts q_t ;
//   dv_s = sum_{h in group, t} P_ts dOut_t                     (all overwritten)
//   rows with lse -inf contribute nothing and get dq 0.
//
// A plain (not tiled) implementation, group_attention.cu's: one block of 256 threads per
// (query, head) for the forward and dq, per (key, kv head) for dk and dv; keys (queries) go
// through shared memory in chunks of 256, one per thread, with an online softmax in the
// forward; thread d < D owns output dimension d (D <= 256, checked by the caller).
// Memory: O(D + 256) shared floats per block, nothing T x S beyond the caller's bias.
#include "common.cuh"

#define BA_THREADS 256

extern "C" __global__ void bias_attention_forward(void* out, int odt, float* lse, const void* q, int qdt, const void* k,
                                                  int kdt, const void* v, int vdt, const float* bias, int T, int S, int H,
                                                  int KVH, int D, float scale) {
    __shared__ float qs[BA_THREADS];
    __shared__ float p[BA_THREADS];
    __shared__ float scratch[32];
    const int t = blockIdx.x, h = blockIdx.y, kvh = h / (H / KVH), tid = threadIdx.x;
    if (tid < D) qs[tid] = ld(q, qdt, ((i64)t * H + h) * D + tid);
    __syncthreads();
    float m = NEG_INF, l = 0.0f, acc = 0.0f;
    for (int c0 = 0; c0 < S; c0 += BA_THREADS) {
        const int j = c0 + tid;
        float s = NEG_INF;
        if (j < S) {
            const float b = bias ? bias[(i64)t * S + j] : 0.0f;
            if (b != NEG_INF) {
                float dot = 0.0f;
                for (int d = 0; d < D; d++) dot += qs[d] * ld(k, kdt, ((i64)j * KVH + kvh) * D + d);
                s = scale * dot + b;
            }
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
            const int n = min(BA_THREADS, S - c0);
            for (int jj = 0; jj < n; jj++) acc += p[jj] * ld(v, vdt, ((i64)(c0 + jj) * KVH + kvh) * D + tid);
        }
        __syncthreads();
    }
    const bool none = m == NEG_INF;
    if (tid < D) st(out, odt, ((i64)t * H + h) * D + tid, none ? 0.0f : acc / l);
    if (tid == 0) lse[(i64)h * T + t] = none ? NEG_INF : m + logf(l);
}

// bias_attention_forward_q8: the same forward (the same outputs, up to the order of the
// float32 sums over the head dimension, which is the same) for BA_QB consecutive queries of one
// head per block: grid (ceil(T/BA_QB), H). Each key's row of k and each value's row of v is read
// once for the block's BA_QB queries instead of once per query, dividing the loads that bound
// the forward at the vision tower's size (6432 queries x 6432 keys x 16 heads per layer) by
// BA_QB. Rows t >= T (the last block's) see no key and are not written. Opt-in
// (engine/cuda: WHET_BIAS_ATTN_Q8=1) until its conformance cases pass on a GPU.
// Memory: 2*BA_QB*256 + 32 shared floats (16.5 KB) per block; registers hold BA_QB running
// maxima, sums and accumulators per thread.
#define BA_QB 8

extern "C" __global__ void bias_attention_forward_q8(void* out, int odt, float* lse, const void* q, int qdt,
                                                     const void* k, int kdt, const void* v, int vdt, const float* bias,
                                                     int T, int S, int H, int KVH, int D, float scale) {
    __shared__ float qs[BA_QB][BA_THREADS];
    __shared__ float p[BA_QB][BA_THREADS];
    __shared__ float scratch[32];
    const int t0 = blockIdx.x * BA_QB, h = blockIdx.y, kvh = h / (H / KVH), tid = threadIdx.x;
#pragma unroll
    for (int i = 0; i < BA_QB; i++) {
        const int t = t0 + i;
        if (tid < D) qs[i][tid] = t < T ? ld(q, qdt, ((i64)t * H + h) * D + tid) : 0.0f;
    }
    __syncthreads();
    float m[BA_QB], l[BA_QB], acc[BA_QB];
#pragma unroll
    for (int i = 0; i < BA_QB; i++) {
        m[i] = NEG_INF;
        l[i] = 0.0f;
        acc[i] = 0.0f;
    }
    for (int c0 = 0; c0 < S; c0 += BA_THREADS) {
        const int j = c0 + tid;
        float s[BA_QB];
        bool any = false;
#pragma unroll
        for (int i = 0; i < BA_QB; i++) {
            const int t = t0 + i;
            s[i] = NEG_INF;
            if (j < S && t < T) s[i] = bias ? bias[(i64)t * S + j] : 0.0f; // the bias for now, -inf masks
            any = any || s[i] != NEG_INF;
        }
        if (any) {
            float dot[BA_QB];
#pragma unroll
            for (int i = 0; i < BA_QB; i++) dot[i] = 0.0f;
            for (int d = 0; d < D; d++) {
                const float kd = ld(k, kdt, ((i64)j * KVH + kvh) * D + d);
#pragma unroll
                for (int i = 0; i < BA_QB; i++) dot[i] += qs[i][d] * kd;
            }
#pragma unroll
            for (int i = 0; i < BA_QB; i++) {
                if (s[i] != NEG_INF) s[i] = scale * dot[i] + s[i];
            }
        }
#pragma unroll
        for (int i = 0; i < BA_QB; i++) {
            const float cm = block_max(s[i], scratch);
            if (cm == NEG_INF) { // the same for every thread of the block
                p[i][tid] = 0.0f;
                continue;
            }
            const float mn = fmaxf(m[i], cm);
            const float corr = m[i] == NEG_INF ? 0.0f : expf(m[i] - mn);
            const float e = s[i] == NEG_INF ? 0.0f : expf(s[i] - mn);
            p[i][tid] = e;
            l[i] = l[i] * corr + block_sum(e, scratch);
            acc[i] *= corr;
            m[i] = mn;
        }
        __syncthreads(); // publishes p
        if (tid < D) {
            const int n = min(BA_THREADS, S - c0);
            for (int jj = 0; jj < n; jj++) {
                const float vd = ld(v, vdt, ((i64)(c0 + jj) * KVH + kvh) * D + tid);
#pragma unroll
                for (int i = 0; i < BA_QB; i++) acc[i] += p[i][jj] * vd;
            }
        }
        __syncthreads();
    }
#pragma unroll
    for (int i = 0; i < BA_QB; i++) {
        const int t = t0 + i;
        if (t >= T) continue;
        const bool none = m[i] == NEG_INF;
        if (tid < D) st(out, odt, ((i64)t * H + h) * D + tid, none ? 0.0f : acc[i] / l[i]);
        if (tid == 0) lse[(i64)h * T + t] = none ? NEG_INF : m[i] + logf(l[i]);
    }
}

extern "C" __global__ void bias_attention_backward_dq(void* dq, int dqdt, const void* dout, int dodt, const void* q, int qdt,
                                                      const void* k, int kdt, const void* v, int vdt, const void* out, int odt,
                                                      const float* lse, const float* bias, int T, int S, int H, int KVH,
                                                      int D, float scale) {
    __shared__ float qs[BA_THREADS];
    __shared__ float dos[BA_THREADS];
    __shared__ float p[BA_THREADS];
    __shared__ float scratch[32];
    const int t = blockIdx.x, h = blockIdx.y, kvh = h / (H / KVH), tid = threadIdx.x;
    const float lt = lse[(i64)h * T + t];
    if (lt == NEG_INF) { // a fully masked row: uniform over the block, before any barrier
        if (tid < D) st(dq, dqdt, ((i64)t * H + h) * D + tid, 0.0f);
        return;
    }
    float part = 0.0f;
    if (tid < D) {
        const i64 r = ((i64)t * H + h) * D + tid;
        qs[tid] = ld(q, qdt, r);
        dos[tid] = ld(dout, dodt, r);
        part = dos[tid] * ld(out, odt, r);
    }
    const float delta = block_sum(part, scratch);
    float acc = 0.0f;
    for (int c0 = 0; c0 < S; c0 += BA_THREADS) {
        const int j = c0 + tid;
        float ds = 0.0f;
        if (j < S) {
            const float b = bias ? bias[(i64)t * S + j] : 0.0f;
            if (b != NEG_INF) {
                float dot = 0.0f, dp = 0.0f;
                for (int d = 0; d < D; d++) {
                    const i64 r = ((i64)j * KVH + kvh) * D + d;
                    dot += qs[d] * ld(k, kdt, r);
                    dp += dos[d] * ld(v, vdt, r);
                }
                ds = expf(scale * dot + b - lt) * (dp - delta);
            }
        }
        p[tid] = ds;
        __syncthreads();
        if (tid < D) {
            const int n = min(BA_THREADS, S - c0);
            for (int jj = 0; jj < n; jj++) acc += p[jj] * ld(k, kdt, ((i64)(c0 + jj) * KVH + kvh) * D + tid);
        }
        __syncthreads();
    }
    if (tid < D) st(dq, dqdt, ((i64)t * H + h) * D + tid, scale * acc);
}

extern "C" __global__ void bias_attention_backward_dkv(void* dk, int dkdt, void* dv, int dvdt, const void* dout, int dodt,
                                                       const void* q, int qdt, const void* k, int kdt, const void* v, int vdt,
                                                       const void* out, int odt, const float* lse, const float* bias, int T,
                                                       int S, int H, int KVH, int D, float scale) {
    __shared__ float ks[BA_THREADS];
    __shared__ float vs[BA_THREADS];
    __shared__ float pp[BA_THREADS];
    __shared__ float pds[BA_THREADS];
    const int j = blockIdx.x, kvh = blockIdx.y, tid = threadIdx.x, group = H / KVH;
    if (tid < D) {
        const i64 r = ((i64)j * KVH + kvh) * D + tid;
        ks[tid] = ld(k, kdt, r);
        vs[tid] = ld(v, vdt, r);
    }
    __syncthreads();
    float accK = 0.0f, accV = 0.0f;
    for (int h = kvh * group; h < (kvh + 1) * group; h++) {
        for (int c0 = 0; c0 < T; c0 += BA_THREADS) {
            const int t = c0 + tid;
            float pr = 0.0f, ds = 0.0f;
            if (t < T) {
                const float b = bias ? bias[(i64)t * S + j] : 0.0f;
                const float lt = lse[(i64)h * T + t];
                if (b != NEG_INF && lt != NEG_INF) {
                    float dot = 0.0f, dp = 0.0f, delta = 0.0f;
                    for (int d = 0; d < D; d++) {
                        const i64 r = ((i64)t * H + h) * D + d;
                        const float g = ld(dout, dodt, r);
                        dot += ld(q, qdt, r) * ks[d];
                        dp += g * vs[d];
                        delta += g * ld(out, odt, r);
                    }
                    pr = expf(scale * dot + b - lt);
                    ds = pr * (dp - delta);
                }
            }
            pp[tid] = pr;
            pds[tid] = ds;
            __syncthreads();
            if (tid < D) {
                const int n = min(BA_THREADS, T - c0);
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
