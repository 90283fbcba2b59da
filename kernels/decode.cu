// decode.cu: one-token decoding steps whose position lives in device memory,
// so that a recorded step (a CUDA graph) serves every position. pos is an
// int32 of one element, read when the kernel runs; the host checks it
// against the cache and the rotary tables before launching and the kernels
// clamp it anyway.
//
// attention_decode: the attention of one new token at position p = pos[0]:
//   1. rotary embedding of its q (H heads of D) and new k (KVH heads) at
//      position p, as rope.cu does (half-split over the first rot dims of
//      each head, c and s row p of the [maxPos, rot/2] cos and sin tables),
//      each value rounded to its tensor's dtype as rope.cu's in-place
//      result would be;
//   2. the rotated k and the new v stored in row p of the caches k and v
//      ([rows, KVH*D]) by one block per kv head;
//   3. out = sum_j softmax(x)_j v_j over keys j in [first, p] (first =
//      p - window + 1 when a window is set, else 0), with the training
//      kernels' scores x_j = scale * q . k_j, capped to
//      softcap * tanh(x_j / softcap) when softcap > 0; GQA: query head h
//      reads kv head h / (H/KVH). Row p comes from the new k and v, not
//      the cache, so no block reads what another writes.
// Split over keys, flash-decoding style: block (h, s) of gridDim.y = S
// takes keys [s*chunk, (s+1)*chunk) of that range and writes its running
// max m, its sum l = sum exp(x_j - m) and acc = sum exp(x_j - m) v_j to
// part[(h*S + s)*(D+2) ..]; the last block of head h to finish (a ticket
// from count[h], which it resets to 0) combines them:
//   M = max_s m_s,  out = sum_s exp(m_s - M) acc_s / sum_s exp(m_s - M) l_s.
// With S = 1 the block writes out directly. Dynamic shared memory:
// (2*D + chunk + 256 + 32) floats. blockDim.x = 256. q, k and v (the new
// rows) are read only; out is overwritten.
//
// argmax: ids[0] = the index of the largest of logits[0..n), the lowest index
// on ties (as the host's greedy choice); NaNs are never chosen over a
// number. One block of 1024 threads.
//
// advance_position: pos[0] += 1 while the result stays below limit.
//
// attention_decode_v2_d{64,128,256} (opt-in, WHET_DECODE_ATTN=v2; bf16 or
// f32 caches whose base is 16-byte aligned): attention_decode's result and
// cache writes, laid out for latency. attention_decode spends its ~20 us a
// layer on chains of dependent loads (one key per thread, a 128-byte row
// read 16 bytes at a time in series, then the values read 2 bytes at a
// time over chunk/4 keys in series), not on bytes. Here a block of 128
// threads (4 warps) splits each key row into 16-byte pieces: L = D/8
// lanes share one key (8 elements each: one 16-byte load for bf16, two
// for f32), so a warp takes 32/L keys at once and a block NG = 4*32/L;
// each step loads the k and v pieces of two keys per lane group before
// using either. Each lane group keeps an online softmax (running max m,
// sum l, its 8 elements of acc); the groups meet in shared memory once.
// The keys [first, p] are split evenly among the gridDim.y blocks of a
// head from p itself (read on the device), so at a short cache no block
// sits idle on keys past p; the host picks gridDim.y from the cache's
// rows and the SM count. The combine is as attention_decode's (the last
// block of a head, by ticket), with the S weights computed once into
// shared memory. Row p (turned k, new v) comes from shared memory; the
// last block of the first query head of each kv head stores it.
#include "common.cuh"

// round_to is v as a tensor of dtype dt would hold it.
__device__ __forceinline__ float round_to(int dt, float v) { return dt == DT_BF16 ? bf16_to_f32(f32_to_bf16(v)) : v; }

// rope_row writes head hd of x (D values at x + hd*D, dtype xdt) turned by
// row p of the tables into dst[0..D), rounded to xdt.
__device__ __forceinline__ void rope_row(float* dst, const void* x, int xdt, i64 off, int D, int rot, const void* cosT,
                                         const void* sinT, int cdt, i64 p) {
    const int half = rot / 2;
    for (int d = threadIdx.x; d < D; d += blockDim.x) {
        float y = ld(x, xdt, off + d);
        if (d < rot) {
            const int i = d < half ? d : d - half;
            const float c = ld(cosT, cdt, p * half + i), sn = ld(sinT, cdt, p * half + i);
            const float x1 = ld(x, xdt, off + i), x2 = ld(x, xdt, off + i + half);
            y = d < half ? x1 * c - x2 * sn : x2 * c + x1 * sn;
        }
        dst[d] = round_to(xdt, y);
    }
}

extern "C" __global__ void __launch_bounds__(256) attention_decode(void* out, int odt, const void* q, int qdt, const void* kn, const void* vn, int ndt, void* k, void* v, int kvdt,
                     const int* pos, i64 rows, const void* cosT, const void* sinT, int cdt, int rot, i64 maxPos, int H, int KVH, int D,
                     float scale, int window, float softcap, int chunk, float* part, unsigned int* count) {
    PDL_WAIT();
    PDL_TRIGGER();
    extern __shared__ float sm[];
    float* qs = sm;          // [D] rotated q
    float* ks = qs + D;      // [D] rotated new k
    float* sc = ks + D;      // [chunk] scores, then their exponentials
    float* red = sc + chunk; // [256] partial sums of the output
    float* tmp = red + 256;  // [32] block reductions
    __shared__ int last;
    const int h = blockIdx.x, s = blockIdx.y, S = gridDim.y, tid = threadIdx.x;
    i64 p = pos[0];
    if (p < 0) p = 0;
    if (p >= rows) p = rows - 1;
    if (p >= maxPos) p = maxPos - 1;
    i64 first = 0;
    if (window > 0 && p - window + 1 > 0) first = p - window + 1;
    const i64 lo = max(first, (i64)s * chunk), hi = min(p + 1, (i64)(s + 1) * chunk);
    const int kvh = h / (H / KVH);
    const i64 ld_kv = (i64)KVH * D;
    const i64 hoff = (i64)kvh * D;
    rope_row(qs, q, qdt, (i64)h * D, D, rot, cosT, sinT, cdt, p);
    rope_row(ks, kn, ndt, hoff, D, rot, cosT, sinT, cdt, p);
    __syncthreads();
    if (s == 0 && h % (H / KVH) == 0) {
        for (int d = tid; d < D; d += blockDim.x) {
            st(k, kvdt, p * ld_kv + hoff + d, ks[d]);
            st(v, kvdt, p * ld_kv + hoff + d, ld(vn, ndt, hoff + d));
        }
    }
    // Scores, one key per thread.
    const bool vec = (D & 7) == 0 && kvdt == DT_BF16 && aligned16(k) && (ld_kv & 7) == 0 && (hoff & 7) == 0;
    float mloc = NEG_INF;
    for (i64 j = lo + tid; j < hi; j += blockDim.x) {
        float dot = 0.0f;
        if (j == p) {
            for (int d = 0; d < D; d++) dot += qs[d] * round_to(kvdt, ks[d]);
        } else if (vec) {
            for (int d = 0; d < D; d += 8) {
                float kk[8];
                ld8(k, kvdt, j * ld_kv + hoff + d, kk);
#pragma unroll
                for (int e = 0; e < 8; e++) dot += qs[d + e] * kk[e];
            }
        } else {
            for (int d = 0; d < D; d++) dot += qs[d] * ld(k, kvdt, j * ld_kv + hoff + d);
        }
        float x = dot * scale;
        if (softcap > 0.0f) x = softcap * tanhf(x / softcap);
        sc[j - lo] = x;
        mloc = fmaxf(mloc, x);
    }
    const float m = block_max(mloc, tmp);
    float lloc = 0.0f;
    for (i64 j = lo + tid; j < hi; j += blockDim.x) {
        const float e = expf(sc[j - lo] - m);
        sc[j - lo] = e;
        lloc += e;
    }
    const float l = block_sum(lloc, tmp);
    __syncthreads();
    // acc[d] over the block's keys: G groups of D threads, group g taking
    // keys lo+g, lo+g+G, ...; then the groups are added up.
    const int G = D <= (int)blockDim.x ? (int)blockDim.x / D : 1;
    for (int d0 = 0; d0 < D; d0 += (int)blockDim.x) { // one pass unless D > blockDim
        const int d = d0 + tid % D, g = tid / D;
        if (g < G && d < D) {
            float acc = 0.0f;
            for (i64 j = lo + g; j < hi; j += G) {
                const float vj = j == p ? round_to(kvdt, ld(vn, ndt, hoff + d)) : ld(v, kvdt, j * ld_kv + hoff + d);
                acc += sc[j - lo] * vj;
            }
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

// attn_decode_v2 is the body of attention_decode_v2_d<D> (see the top).
template <int D>
__device__ __forceinline__ void attn_decode_v2(void* out, int odt, const void* q, int qdt, const void* kn, const void* vn, int ndt,
                                               void* k, void* v, int kvdt, const int* pos, i64 rows, const void* cosT,
                                               const void* sinT, int cdt, int rot, i64 maxPos, int H, int KVH, float scale,
                                               int window, float softcap, float* part, unsigned int* count) {
    constexpr int L = D / 8;      // lanes per key
    constexpr int KPW = 32 / L;   // keys per warp
    constexpr int NG = 4 * KPW;   // lane groups (keys at once) per block of 4 warps
    __shared__ float qs[D], ks[D], vs[D];
    __shared__ float gm[NG], gl[NG], red[NG * D];
    __shared__ float wm[64], wl[64];
    __shared__ int last;
    const int h = blockIdx.x, s = blockIdx.y, S = gridDim.y, tid = threadIdx.x;
    const int lane = tid & 31, grp = lane / L, sub = lane % L, gid = (tid >> 5) * KPW + grp;
    i64 p = pos[0];
    if (p < 0) p = 0;
    if (p >= rows) p = rows - 1;
    if (p >= maxPos) p = maxPos - 1;
    i64 first = 0;
    if (window > 0 && p - window + 1 > 0) first = p - window + 1;
    const i64 chunk = (p + 1 - first + S - 1) / S;
    const i64 lo = first + (i64)s * chunk, hi = min(p + 1, lo + chunk);
    const int kvh = h / (H / KVH);
    const i64 ld_kv = (i64)KVH * D, hoff = (i64)kvh * D;
    rope_row(qs, q, qdt, (i64)h * D, D, rot, cosT, sinT, cdt, p);
    rope_row(ks, kn, ndt, hoff, D, rot, cosT, sinT, cdt, p);
    for (int d = tid; d < D; d += blockDim.x) { // the same threads as rope_row's
        ks[d] = round_to(kvdt, ks[d]);           // as the cache will hold it
        vs[d] = round_to(kvdt, ld(vn, ndt, hoff + d));
    }
    __syncthreads();
    if (s == S - 1 && h % (H / KVH) == 0) {
        for (int d = tid; d < D; d += blockDim.x) {
            st(k, kvdt, p * ld_kv + hoff + d, ks[d]);
            st(v, kvdt, p * ld_kv + hoff + d, vs[d]);
        }
    }
    float qr[8], acc[8];
#pragma unroll
    for (int e = 0; e < 8; e++) qr[e] = qs[sub * 8 + e], acc[e] = 0.0f;
    float m = NEG_INF, l = 0.0f;
    // Two keys per lane group a step, both loaded before either is used;
    // the loop bound is the block's, so every lane reaches the shuffles.
    for (i64 base = lo; base < hi; base += 2 * NG) {
        float kk[2][8], vv[2][8];
        bool ok[2];
#pragma unroll
        for (int u = 0; u < 2; u++) {
            const i64 j = base + u * NG + gid;
            ok[u] = j < hi;
            if (ok[u] && j == p) {
#pragma unroll
                for (int e = 0; e < 8; e++) kk[u][e] = ks[sub * 8 + e], vv[u][e] = vs[sub * 8 + e];
            } else if (ok[u]) {
                ld8(k, kvdt, j * ld_kv + hoff + sub * 8, kk[u]);
                ld8(v, kvdt, j * ld_kv + hoff + sub * 8, vv[u]);
            }
        }
#pragma unroll
        for (int u = 0; u < 2; u++) {
            float dot = 0.0f;
            if (ok[u]) {
#pragma unroll
                for (int e = 0; e < 8; e++) dot += qr[e] * kk[u][e];
            }
#pragma unroll
            for (int o = L / 2; o > 0; o >>= 1) dot += __shfl_xor_sync(0xffffffffu, dot, o);
            if (!ok[u]) continue;
            float x = dot * scale;
            if (softcap > 0.0f) x = softcap * tanhf(x / softcap);
            const float mn = fmaxf(m, x), c = expf(m - mn), ex = expf(x - mn);
            l = l * c + ex;
#pragma unroll
            for (int e = 0; e < 8; e++) acc[e] = acc[e] * c + ex * vv[u][e];
            m = mn;
        }
    }
    // The lane groups of the block meet: M = max m, acc and l rescaled.
    if (sub == 0) gm[gid] = m, gl[gid] = l;
    __syncthreads();
    float M = NEG_INF;
    for (int g = 0; g < NG; g++) M = fmaxf(M, gm[g]);
    float Lb = 0.0f;
    for (int g = 0; g < NG; g++)
        if (gm[g] != NEG_INF) Lb += expf(gm[g] - M) * gl[g];
    const float w = m == NEG_INF ? 0.0f : expf(m - M);
#pragma unroll
    for (int e = 0; e < 8; e++) red[gid * D + sub * 8 + e] = acc[e] * w;
    __syncthreads();
    float* mine = part + ((i64)h * S + s) * (D + 2);
    for (int d = tid; d < D; d += blockDim.x) {
        float a = 0.0f;
#pragma unroll
        for (int g = 0; g < NG; g++) a += red[g * D + d];
        if (S == 1) {
            st(out, odt, (i64)h * D + d, Lb > 0.0f ? a / Lb : 0.0f);
        } else {
            mine[2 + d] = a;
        }
    }
    if (S == 1) return;
    if (tid == 0) mine[0] = M, mine[1] = Lb;
    __threadfence();
    __syncthreads();
    if (tid == 0) last = atomicAdd(count + h, 1u) == (unsigned int)(S - 1);
    __syncthreads();
    if (!last) return;
    __threadfence();
    const volatile float* pv = part + (i64)h * S * (D + 2);
    if (tid < S) wm[tid] = pv[tid * (D + 2)], wl[tid] = pv[tid * (D + 2) + 1];
    __syncthreads();
    float MG = NEG_INF;
    for (int t = 0; t < S; t++) MG = fmaxf(MG, wm[t]);
    __syncthreads();
    float LG = 0.0f;
    if (tid < S) wm[tid] = wm[tid] == NEG_INF ? 0.0f : expf(wm[tid] - MG); // the weights
    __syncthreads();
    for (int t = 0; t < S; t++) LG += wm[t] * wl[t];
    for (int d = tid; d < D; d += blockDim.x) {
        float a = 0.0f;
        for (int t = 0; t < S; t++) a += wm[t] * pv[t * (D + 2) + 2 + d];
        st(out, odt, (i64)h * D + d, LG > 0.0f ? a / LG : 0.0f);
    }
    if (tid == 0) count[h] = 0;
}

extern "C" __global__ void __launch_bounds__(128) attention_decode_v2_d64(void* out, int odt, const void* q, int qdt, const void* kn, const void* vn, int ndt, void* k, void* v, int kvdt,
                     const int* pos, i64 rows, const void* cosT, const void* sinT, int cdt, int rot, i64 maxPos, int H, int KVH,
                     float scale, int window, float softcap, float* part, unsigned int* count) {
    PDL_WAIT();
    PDL_TRIGGER();
    attn_decode_v2<64>(out, odt, q, qdt, kn, vn, ndt, k, v, kvdt, pos, rows, cosT, sinT, cdt, rot, maxPos, H, KVH, scale, window, softcap, part, count);
}

extern "C" __global__ void __launch_bounds__(128) attention_decode_v2_d128(void* out, int odt, const void* q, int qdt, const void* kn, const void* vn, int ndt, void* k, void* v, int kvdt,
                     const int* pos, i64 rows, const void* cosT, const void* sinT, int cdt, int rot, i64 maxPos, int H, int KVH,
                     float scale, int window, float softcap, float* part, unsigned int* count) {
    PDL_WAIT();
    PDL_TRIGGER();
    attn_decode_v2<128>(out, odt, q, qdt, kn, vn, ndt, k, v, kvdt, pos, rows, cosT, sinT, cdt, rot, maxPos, H, KVH, scale, window, softcap, part, count);
}

extern "C" __global__ void __launch_bounds__(128) attention_decode_v2_d256(void* out, int odt, const void* q, int qdt, const void* kn, const void* vn, int ndt, void* k, void* v, int kvdt,
                     const int* pos, i64 rows, const void* cosT, const void* sinT, int cdt, int rot, i64 maxPos, int H, int KVH,
                     float scale, int window, float softcap, float* part, unsigned int* count) {
    PDL_WAIT();
    PDL_TRIGGER();
    attn_decode_v2<256>(out, odt, q, qdt, kn, vn, ndt, k, v, kvdt, pos, rows, cosT, sinT, cdt, rot, maxPos, H, KVH, scale, window, softcap, part, count);
}

// attention_decode_v3_d{64,128,256} (opt-in, WHET_DECODE_ATTN=v3; never
// run on a GPU before tools/gpu/decode-next): attention_decode_v2 with its
// loads pipelined. v2 waits for pos, then for the rotary inputs, then for
// each step's keys and values in turn; here the first step's k and v rows
// (they depend on p alone; row p itself comes from shared memory) are
// loaded before the rotary work, and each step loads the next step's rows
// before using its own. The arithmetic is v2's, in the same order, so the
// results are v2's bit for bit.
template <int D>
__device__ __forceinline__ void attn_v3_load(float (*kk)[8], float (*vv)[8], bool* ok, i64 base, i64 hi, i64 p, int gid, int sub,
                                             const void* k, const void* v, int kvdt, i64 ld_kv, i64 hoff) {
    constexpr int NG = 4 * (32 / (D / 8));
#pragma unroll
    for (int u = 0; u < 2; u++) {
        const i64 j = base + u * NG + gid;
        ok[u] = j < hi;
        if (ok[u] && j != p) {
            ld8(k, kvdt, j * ld_kv + hoff + sub * 8, kk[u]);
            ld8(v, kvdt, j * ld_kv + hoff + sub * 8, vv[u]);
        }
    }
}

template <int D>
__device__ __forceinline__ void attn_decode_v3(void* out, int odt, const void* q, int qdt, const void* kn, const void* vn, int ndt,
                                               void* k, void* v, int kvdt, const int* pos, i64 rows, const void* cosT,
                                               const void* sinT, int cdt, int rot, i64 maxPos, int H, int KVH, float scale,
                                               int window, float softcap, float* part, unsigned int* count) {
    constexpr int L = D / 8;      // lanes per key
    constexpr int KPW = 32 / L;   // keys per warp
    constexpr int NG = 4 * KPW;   // lane groups (keys at once) per block of 4 warps
    __shared__ float qs[D], ks[D], vs[D];
    __shared__ float gm[NG], gl[NG], red[NG * D];
    __shared__ float wm[64], wl[64];
    __shared__ int last;
    const int h = blockIdx.x, s = blockIdx.y, S = gridDim.y, tid = threadIdx.x;
    const int lane = tid & 31, grp = lane / L, sub = lane % L, gid = (tid >> 5) * KPW + grp;
    i64 p = pos[0];
    if (p < 0) p = 0;
    if (p >= rows) p = rows - 1;
    if (p >= maxPos) p = maxPos - 1;
    i64 first = 0;
    if (window > 0 && p - window + 1 > 0) first = p - window + 1;
    const i64 chunk = (p + 1 - first + S - 1) / S;
    const i64 lo = first + (i64)s * chunk, hi = min(p + 1, lo + chunk);
    const int kvh = h / (H / KVH);
    const i64 ld_kv = (i64)KVH * D, hoff = (i64)kvh * D;
    float kk[2][8], vv[2][8];
    bool ok[2];
    attn_v3_load<D>(kk, vv, ok, lo, hi, p, gid, sub, k, v, kvdt, ld_kv, hoff);
    rope_row(qs, q, qdt, (i64)h * D, D, rot, cosT, sinT, cdt, p);
    rope_row(ks, kn, ndt, hoff, D, rot, cosT, sinT, cdt, p);
    for (int d = tid; d < D; d += blockDim.x) { // the same threads as rope_row's
        ks[d] = round_to(kvdt, ks[d]);           // as the cache will hold it
        vs[d] = round_to(kvdt, ld(vn, ndt, hoff + d));
    }
    __syncthreads();
    if (s == S - 1 && h % (H / KVH) == 0) {
        for (int d = tid; d < D; d += blockDim.x) {
            st(k, kvdt, p * ld_kv + hoff + d, ks[d]);
            st(v, kvdt, p * ld_kv + hoff + d, vs[d]);
        }
    }
    float qr[8], acc[8];
#pragma unroll
    for (int e = 0; e < 8; e++) qr[e] = qs[sub * 8 + e], acc[e] = 0.0f;
    float m = NEG_INF, l = 0.0f;
    for (i64 base = lo; base < hi; base += 2 * NG) {
        float ck[2][8], cv[2][8];
        bool cok[2];
#pragma unroll
        for (int u = 0; u < 2; u++) {
            cok[u] = ok[u];
#pragma unroll
            for (int e = 0; e < 8; e++) ck[u][e] = kk[u][e], cv[u][e] = vv[u][e];
        }
        if (base + 2 * NG < hi) attn_v3_load<D>(kk, vv, ok, base + 2 * NG, hi, p, gid, sub, k, v, kvdt, ld_kv, hoff);
#pragma unroll
        for (int u = 0; u < 2; u++) {
            if (cok[u] && base + u * NG + gid == p) {
#pragma unroll
                for (int e = 0; e < 8; e++) ck[u][e] = ks[sub * 8 + e], cv[u][e] = vs[sub * 8 + e];
            }
        }
#pragma unroll
        for (int u = 0; u < 2; u++) {
            float dot = 0.0f;
            if (cok[u]) {
#pragma unroll
                for (int e = 0; e < 8; e++) dot += qr[e] * ck[u][e];
            }
#pragma unroll
            for (int o = L / 2; o > 0; o >>= 1) dot += __shfl_xor_sync(0xffffffffu, dot, o);
            if (!cok[u]) continue;
            float x = dot * scale;
            if (softcap > 0.0f) x = softcap * tanhf(x / softcap);
            const float mn = fmaxf(m, x), c = expf(m - mn), ex = expf(x - mn);
            l = l * c + ex;
#pragma unroll
            for (int e = 0; e < 8; e++) acc[e] = acc[e] * c + ex * cv[u][e];
            m = mn;
        }
    }
    // The lane groups of the block meet: M = max m, acc and l rescaled.
    if (sub == 0) gm[gid] = m, gl[gid] = l;
    __syncthreads();
    float M = NEG_INF;
    for (int g = 0; g < NG; g++) M = fmaxf(M, gm[g]);
    float Lb = 0.0f;
    for (int g = 0; g < NG; g++)
        if (gm[g] != NEG_INF) Lb += expf(gm[g] - M) * gl[g];
    const float w = m == NEG_INF ? 0.0f : expf(m - M);
#pragma unroll
    for (int e = 0; e < 8; e++) red[gid * D + sub * 8 + e] = acc[e] * w;
    __syncthreads();
    float* mine = part + ((i64)h * S + s) * (D + 2);
    for (int d = tid; d < D; d += blockDim.x) {
        float a = 0.0f;
#pragma unroll
        for (int g = 0; g < NG; g++) a += red[g * D + d];
        if (S == 1) {
            st(out, odt, (i64)h * D + d, Lb > 0.0f ? a / Lb : 0.0f);
        } else {
            mine[2 + d] = a;
        }
    }
    if (S == 1) return;
    if (tid == 0) mine[0] = M, mine[1] = Lb;
    __threadfence();
    __syncthreads();
    if (tid == 0) last = atomicAdd(count + h, 1u) == (unsigned int)(S - 1);
    __syncthreads();
    if (!last) return;
    __threadfence();
    const volatile float* pv = part + (i64)h * S * (D + 2);
    if (tid < S) wm[tid] = pv[tid * (D + 2)], wl[tid] = pv[tid * (D + 2) + 1];
    __syncthreads();
    float MG = NEG_INF;
    for (int t = 0; t < S; t++) MG = fmaxf(MG, wm[t]);
    __syncthreads();
    float LG = 0.0f;
    if (tid < S) wm[tid] = wm[tid] == NEG_INF ? 0.0f : expf(wm[tid] - MG); // the weights
    __syncthreads();
    for (int t = 0; t < S; t++) LG += wm[t] * wl[t];
    for (int d = tid; d < D; d += blockDim.x) {
        float a = 0.0f;
        for (int t = 0; t < S; t++) a += wm[t] * pv[t * (D + 2) + 2 + d];
        st(out, odt, (i64)h * D + d, LG > 0.0f ? a / LG : 0.0f);
    }
    if (tid == 0) count[h] = 0;
}

extern "C" __global__ void __launch_bounds__(128) attention_decode_v3_d64(void* out, int odt, const void* q, int qdt, const void* kn, const void* vn, int ndt, void* k, void* v, int kvdt,
                     const int* pos, i64 rows, const void* cosT, const void* sinT, int cdt, int rot, i64 maxPos, int H, int KVH,
                     float scale, int window, float softcap, float* part, unsigned int* count) {
    PDL_WAIT();
    PDL_TRIGGER();
    attn_decode_v3<64>(out, odt, q, qdt, kn, vn, ndt, k, v, kvdt, pos, rows, cosT, sinT, cdt, rot, maxPos, H, KVH, scale, window, softcap, part, count);
}

extern "C" __global__ void __launch_bounds__(128) attention_decode_v3_d128(void* out, int odt, const void* q, int qdt, const void* kn, const void* vn, int ndt, void* k, void* v, int kvdt,
                     const int* pos, i64 rows, const void* cosT, const void* sinT, int cdt, int rot, i64 maxPos, int H, int KVH,
                     float scale, int window, float softcap, float* part, unsigned int* count) {
    PDL_WAIT();
    PDL_TRIGGER();
    attn_decode_v3<128>(out, odt, q, qdt, kn, vn, ndt, k, v, kvdt, pos, rows, cosT, sinT, cdt, rot, maxPos, H, KVH, scale, window, softcap, part, count);
}

extern "C" __global__ void __launch_bounds__(128) attention_decode_v3_d256(void* out, int odt, const void* q, int qdt, const void* kn, const void* vn, int ndt, void* k, void* v, int kvdt,
                     const int* pos, i64 rows, const void* cosT, const void* sinT, int cdt, int rot, i64 maxPos, int H, int KVH,
                     float scale, int window, float softcap, float* part, unsigned int* count) {
    PDL_WAIT();
    PDL_TRIGGER();
    attn_decode_v3<256>(out, odt, q, qdt, kn, vn, ndt, k, v, kvdt, pos, rows, cosT, sinT, cdt, rot, maxPos, H, KVH, scale, window, softcap, part, count);
}

// better reports whether (v, i) beats (bv, bi): larger, or equal and earlier;
// a NaN never beats a number.
__device__ __forceinline__ bool better(float v, int i, float bv, int bi) {
    if (v != v) return false;
    if (bv != bv) return true;
    return v > bv || (v == bv && i < bi);
}

extern "C" __global__ void __launch_bounds__(1024) argmax(int* ids, const void* logits, int ldt, i64 n) {
    PDL_WAIT();
    PDL_TRIGGER();
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
    PDL_WAIT();
    PDL_TRIGGER();
    if (blockIdx.x == 0 && threadIdx.x == 0 && pos[0] + 1 < limit) pos[0] = pos[0] + 1;
}
