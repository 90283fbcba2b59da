// crossentropy.cu: softmax cross-entropy over rows of logits [N, V].
//
// For a row with label y (not -100):
//   lse       = log(sum_v exp(x_v))     (after subtracting the row max)
//   losses[n] = lse - x_y               (overwrite losses, f32)
//   x_v      <- gradScale*(exp(x_v - lse) - [v == y])   (logits overwritten
//               with the gradient of gradScale*sum(losses))
// A row labelled -100 (ignored) gets loss 0 and gradient 0.
//
// One block per row. The first pass keeps a running (max, sum) per thread
// (online softmax, one read of the row), the block merges them, and the
// second pass writes the gradient over the logits. The host checks labels
// before launching.
#include "common.cuh"

#define IGNORE_LABEL (-100)

extern "C" __global__ void softmax_cross_entropy(void* logits, int ldt, const int* labels, float* losses, i64 vocab,
                                                 float gradScale) {
    __shared__ float sm[32];
    __shared__ float ss[32];
    i64 row = blockIdx.x;
    i64 base = row * vocab;
    int y = labels[row];
    if (y == IGNORE_LABEL || y < 0 || y >= vocab) {
        for (i64 v = threadIdx.x; v < vocab; v += blockDim.x) st(logits, ldt, base + v, 0.0f);
        if (threadIdx.x == 0) losses[row] = 0.0f;
        return;
    }
    float m = NEG_INF, s = 0.0f;
    for (i64 v = threadIdx.x; v < vocab; v += blockDim.x) {
        float x = ld(logits, ldt, base + v);
        if (x > m) {
            s = s * expf(m - x) + 1.0f;
            m = x;
        } else {
            s += expf(x - m);
        }
    }
    // Merge (m, s) pairs: first across the warp, then across warps.
    for (int o = 16; o > 0; o >>= 1) {
        float m2 = __shfl_xor_sync(0xffffffffu, m, o), s2 = __shfl_xor_sync(0xffffffffu, s, o);
        float mm = fmaxf(m, m2);
        s = (mm == NEG_INF) ? 0.0f : s * expf(m - mm) + s2 * expf(m2 - mm);
        m = mm;
    }
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
    if (lane == 0) {
        sm[warp] = m;
        ss[warp] = s;
    }
    __syncthreads();
    m = lane < nw ? sm[lane] : NEG_INF;
    s = lane < nw ? ss[lane] : 0.0f;
    for (int o = 16; o > 0; o >>= 1) {
        float m2 = __shfl_xor_sync(0xffffffffu, m, o), s2 = __shfl_xor_sync(0xffffffffu, s, o);
        float mm = fmaxf(m, m2);
        s = (mm == NEG_INF) ? 0.0f : s * expf(m - mm) + s2 * expf(m2 - mm);
        m = mm;
    }
    float lse = m + logf(s);
    float xy = ld(logits, ldt, base + y);
    __syncthreads(); // every thread has read x_y before anyone overwrites it
    if (threadIdx.x == 0) losses[row] = lse - xy;
    for (i64 v = threadIdx.x; v < vocab; v += blockDim.x) {
        float p = expf(ld(logits, ldt, base + v) - lse);
        st(logits, ldt, base + v, gradScale * (v == y ? p - 1.0f : p));
    }
}
