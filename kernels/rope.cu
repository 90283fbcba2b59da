// rope.cu: rotary position embedding, half-split layout (Hugging Face's
// rotate_half), over the first rot dimensions of each head (rot = headDim
// for RoPE; rot < headDim for partial rotary, Phi-3's
// partial_rotary_factor, whose other dimensions pass through untouched).
// Within each head of x [T, nHeads*headDim], with x1 = dims [0, rot/2) and
// x2 = dims [rot/2, rot), and c, s row positions[t] of the
// [maxPos, rot/2] cos and sin tables:
//   x1' = x1*c - x2*s
//   x2' = x2*c + x1*s
// x is rotated in place. The rotation is orthogonal, so its backward is the
// rotation by the negative angle: the same kernel with sign = -1.
// The host checks positions against the tables before launching. Heads
// whose rot/2 and headDim are multiples of 8 go 8 pairs a thread step
// (16-byte accesses).
#include "common.cuh"

extern "C" __global__ void rope(void* x, int xdt, const int* positions, const void* cosT, int cdt, const void* sinT,
                                int sdt, i64 tokens, int nHeads, int headDim, int rot, i64 maxPos, float sign) {
    const int half = rot / 2;
    const i64 stride = (i64)gridDim.x * blockDim.x;
    if ((half & 7) == 0 && (headDim & 7) == 0 && aligned16(x) && aligned16(cosT) && aligned16(sinT)) {
        // 8 pairs a thread step, 16-byte accesses.
        const int h8 = half / 8;
        const i64 n8 = tokens * nHeads * h8;
        for (i64 i = blockIdx.x * (i64)blockDim.x + threadIdx.x; i < n8; i += stride) {
            const i64 k = (i % h8) * 8, th = i / h8, t = th / nHeads;
            const int p = positions[t];
            if (p < 0 || p >= maxPos) continue;
            float c[8], s[8], x1[8], x2[8];
            ld8(cosT, cdt, (i64)p * half + k, c);
            ld8(sinT, sdt, (i64)p * half + k, s);
            const i64 base = th * headDim;
            ld8(x, xdt, base + k, x1);
            ld8(x, xdt, base + k + half, x2);
            float y1[8], y2[8];
#pragma unroll
            for (int e = 0; e < 8; e++) {
                y1[e] = x1[e] * c[e] - x2[e] * sign * s[e];
                y2[e] = x2[e] * c[e] + x1[e] * sign * s[e];
            }
            st8(x, xdt, base + k, y1);
            st8(x, xdt, base + k + half, y2);
        }
        return;
    }
    const i64 n = tokens * nHeads * half;
    for (i64 i = blockIdx.x * (i64)blockDim.x + threadIdx.x; i < n; i += stride) {
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
