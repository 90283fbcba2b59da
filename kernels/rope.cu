// rope.cu: rotary position embedding, half-split layout (Hugging Face's
// rotate_half). Within each head of x [T, nHeads*headDim], with x1 the
// first half and x2 the second, and c, s row positions[t] of the
// [maxPos, headDim/2] cos and sin tables:
//   x1' = x1*c - x2*s
//   x2' = x2*c + x1*s
// x is rotated in place. The rotation is orthogonal, so its backward is the
// rotation by the negative angle: the same kernel with sign = -1.
// The host checks positions against the tables before launching.
#include "common.cuh"

extern "C" __global__ void rope(void* x, int xdt, const int* positions, const void* cosT, int cdt, const void* sinT,
                                int sdt, i64 tokens, int nHeads, int headDim, i64 maxPos, float sign) {
    int half = headDim / 2;
    i64 n = tokens * nHeads * half;
    for (i64 i = blockIdx.x * (i64)blockDim.x + threadIdx.x; i < n; i += (i64)gridDim.x * blockDim.x) {
        i64 k = i % half;
        i64 th = i / half; // token*nHeads + head
        i64 t = th / nHeads;
        int p = positions[t];
        if (p < 0 || p >= maxPos) continue;
        float c = ld(cosT, cdt, (i64)p * half + k);
        float s = sign * ld(sinT, sdt, (i64)p * half + k);
        i64 base = th * headDim;
        float x1 = ld(x, xdt, base + k), x2 = ld(x, xdt, base + k + half);
        st(x, xdt, base + k, x1 * c - x2 * s);
        st(x, xdt, base + k + half, x2 * c + x1 * s);
    }
}
