// decode.cu: one-token decoding steps whose position lives in device memory,
// so that a recorded step (a CUDA graph) serves every position. pos is an
// int32 of one element, read when the kernel runs; the host checks it
// against the cache before launching and the kernels clamp it anyway.
//
// kv_append: cache[pos, :] = x[0, :]                       (cache [rows, C])
//
// attention_decode: one query row q (H heads of D) at position p = pos[0]
// over keys and values 0..p of the caches k, v ([rows, KVH*D], GQA: query
// head h reads kv head h / (H/KVH)), with the training kernels' maths:
//   x_j = scale * q . k_j, capped to softcap * tanh(x_j / softcap) when
//   softcap > 0, over j in [first, p] where first = p - window + 1 when a
//   window is set (else 0);  out = sum_j softmax(x)_j v_j   (overwrite)
// Split over keys, flash-decoding style: block (h, s) of gridDim.y = S
// takes keys [s*chunk, (s+1)*chunk) of that range and writes its running
// max m, its sum l = sum exp(x_j - m) and acc = sum exp(x_j - m) v_j to
// part[(h*S + s)*(D+2) ..]; the last block of head h to finish (a ticket
// from count[h], which it resets to 0) combines them:
//   M = max_s m_s,  out = sum_s exp(m_s - M) acc_s / sum_s exp(m_s - M) l_s.
// With S = 1 the block writes out directly. Dynamic shared memory:
// (D + chunk + 256 + 32) floats. blockDim.x = 256.
//
// argmax: ids[0] = the index of the largest of logits[0..n), the lowest index
// on ties (as the host's greedy choice); NaNs are never chosen over a
// number. One block of 1024 threads.
//
// advance_position: pos[0] += 1 while the result stays below limit.
#include "common.cuh"

extern "C" __global__ void kv_append(void* cache, int cdt, const void* x, int xdt, const int* pos, i64 rows, i64 cols) {
    int p = pos[0];
    if (p < 0) p = 0;
    if (p >= rows) p = (int)rows - 1;
    const i64 base = (i64)p * cols;
    for (i64 i = blockIdx.x * (i64)blockDim.x + threadIdx.x; i < cols; i += (i64)gridDim.x * blockDim.x) {
        st(cache, cdt, base + i, ld(x, xdt, i));
    }
}

extern "C" __global__ void __launch_bounds__(256) attention_decode(void* out, int odt, const void* q, int qdt, const void* k, const void* v,
                                                                   int kvdt, const int* pos, i64 rows, int H, int KVH, int D, float scale,
                                                                   int window, float softcap, int chunk, float* part, unsigned int* count) {
    extern __shared__ float sm[];
    float* qs = sm;               // [D]
    float* sc = sm + D;           // [chunk] scores, then their exponentials
    float* red = sc + chunk;      // [256] partial sums of the output
    float* tmp = red + 256;       // [32] block reductions
    __shared__ int last;
    const int h = blockIdx.x, s = blockIdx.y, S = gridDim.y, tid = threadIdx.x;
    int p = pos[0];
    if (p < 0) p = 0;
    if (p >= rows) p = (int)rows - 1;
    int first = 0;
    if (window > 0 && p - window + 1 > 0) first = p - window + 1;
    const int lo = max(first, s * chunk), hi = min(p + 1, (s + 1) * chunk);
    const int kvh = h / (H / KVH);
    const i64 ld_kv = (i64)KVH * D;
    const void* kh = (const char*)k + (i64)kvh * D * (kvdt == DT_BF16 ? 2 : 4);
    const void* vh = (const char*)v + (i64)kvh * D * (kvdt == DT_BF16 ? 2 : 4);
    for (int d = tid; d < D; d += blockDim.x) qs[d] = ld(q, qdt, (i64)h * D + d);
    __syncthreads();
    // Scores, one key per thread.
    const bool vec = (D & 7) == 0 && kvdt == DT_BF16 && aligned16(k) && (ld_kv & 7) == 0 && ((i64)kvh * D & 7) == 0;
    float mloc = NEG_INF;
    for (int j = lo + tid; j < hi; j += blockDim.x) {
        float dot = 0.0f;
        if (vec) {
            for (int d = 0; d < D; d += 8) {
                float kk[8];
                ld8(kh, kvdt, (i64)j * ld_kv + d, kk);
#pragma unroll
                for (int e = 0; e < 8; e++) dot += qs[d + e] * kk[e];
            }
        } else {
            for (int d = 0; d < D; d++) dot += qs[d] * ld(kh, kvdt, (i64)j * ld_kv + d);
        }
        float x = dot * scale;
        if (softcap > 0.0f) x = softcap * tanhf(x / softcap);
        sc[j - lo] = x;
        mloc = fmaxf(mloc, x);
    }
    const float m = block_max(mloc, tmp);
    float lloc = 0.0f;
    for (int j = lo + tid; j < hi; j += blockDim.x) {
        const float e = expf(sc[j - lo] - m);
        sc[j - lo] = e;
        lloc += e;
    }
    const float l = block_sum(lloc, tmp); // ends with __syncthreads before the sum's reads; sc is complete
    __syncthreads();
    // acc[d] over the block's keys: G groups of D threads, group g taking
    // keys lo+g, lo+g+G, ...; then the groups are added up.
    const int G = D <= (int)blockDim.x ? (int)blockDim.x / D : 1;
    for (int d0 = 0; d0 < D; d0 += (int)blockDim.x) { // one pass unless D > blockDim
        const int d = d0 + tid % D, g = tid / D;
        float acc = 0.0f;
        if (g < G && d < D) {
            for (int j = lo + g; j < hi; j += G) acc += sc[j - lo] * ld(vh, kvdt, (i64)j * ld_kv + d);
            red[g * D + (d - d0)] = acc;
        }
        __syncthreads();
        if (tid < D && d0 + tid < D) {
            float a = 0.0f;
            for (int gg = 0; gg < G; gg++) a += red[gg * D + tid];
            if (S == 1) {
                st(out, odt, (i64)h * D + d0 + tid, l > 0.0f ? a / l : 0.0f);
            } else {
                part[((i64)h * S + s) * (D + 2) + 2 + d0 + tid] = a;
            }
        }
        __syncthreads();
    }
    if (S == 1) return;
    if (tid == 0) {
        part[((i64)h * S + s) * (D + 2)] = m;
        part[((i64)h * S + s) * (D + 2) + 1] = l;
    }
    __threadfence();
    __syncthreads();
    if (tid == 0) last = atomicAdd(count + h, 1u) == (unsigned int)(S - 1);
    __syncthreads();
    if (!last) return;
    __threadfence();
    const volatile float* pv = part + (i64)h * S * (D + 2);
    float M = NEG_INF;
    for (int t = 0; t < S; t++) M = fmaxf(M, pv[t * (D + 2)]);
    float L = 0.0f;
    for (int t = 0; t < S; t++) {
        const float mt = pv[t * (D + 2)];
        if (mt != NEG_INF) L += expf(mt - M) * pv[t * (D + 2) + 1];
    }
    for (int d = tid; d < D; d += blockDim.x) {
        float a = 0.0f;
        for (int t = 0; t < S; t++) {
            const float mt = pv[t * (D + 2)];
            if (mt != NEG_INF) a += expf(mt - M) * pv[t * (D + 2) + 2 + d];
        }
        st(out, odt, (i64)h * D + d, L > 0.0f ? a / L : 0.0f);
    }
    if (tid == 0) count[h] = 0;
}

// better reports whether (v, i) beats (bv, bi): larger, or equal and earlier;
// a NaN never beats a number.
__device__ __forceinline__ bool better(float v, int i, float bv, int bi) {
    if (v != v) return false;
    if (bv != bv) return true;
    return v > bv || (v == bv && i < bi);
}

extern "C" __global__ void __launch_bounds__(1024) argmax(int* ids, const void* logits, int ldt, i64 n) {
    __shared__ float sv[32];
    __shared__ int si[32];
    float bv = NEG_INF;
    int bi = 0x7fffffff;
    for (i64 i = threadIdx.x; i < n; i += blockDim.x) {
        const float v = ld(logits, ldt, i);
        if (better(v, (int)i, bv, bi)) bv = v, bi = (int)i;
    }
    for (int o = 16; o > 0; o >>= 1) {
        const float ov = __shfl_xor_sync(0xffffffffu, bv, o);
        const int oi = __shfl_xor_sync(0xffffffffu, bi, o);
        if (better(ov, oi, bv, bi)) bv = ov, bi = oi;
    }
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
    if (lane == 0) sv[warp] = bv, si[warp] = bi;
    __syncthreads();
    if (warp == 0) {
        bv = lane < nw ? sv[lane] : NEG_INF;
        bi = lane < nw ? si[lane] : 0x7fffffff;
        for (int o = 16; o > 0; o >>= 1) {
            const float ov = __shfl_xor_sync(0xffffffffu, bv, o);
            const int oi = __shfl_xor_sync(0xffffffffu, bi, o);
            if (better(ov, oi, bv, bi)) bv = ov, bi = oi;
        }
        if (lane == 0) ids[0] = bi == 0x7fffffff ? 0 : bi;
    }
}

extern "C" __global__ void advance_position(int* pos, int limit) {
    if (blockIdx.x == 0 && threadIdx.x == 0 && pos[0] + 1 < limit) pos[0] = pos[0] + 1;
}
