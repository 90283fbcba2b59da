// elementwise.cu: the small ops that touch each element once.
//
//   fill:          t[i] = v                                   (overwrite t)
//   fill_multi:    the same over many tensors in one launch: block b fills
//                  chunk b of a host-built table of three 64-bit words per
//                  chunk (address of its first element, length, dtype)
//   cast_copy:     dst[i] = src[i], converted between dtypes  (overwrite dst)
//   scale:         t[i] *= s                                  (in place)
//   scale_multi:   the same over many tensors in one launch (table as
//                  fill_multi's)
//   add_scaled:    dst[i] += alpha*src[i]                     (accumulate dst)
//   add_bias:      out[r,c] += bias[c]                        (accumulate out)
//   bias_backward: dBias[c] += sum_r dOut[r,c]                (accumulate dBias)
//   dropout:       out[i] = keep(seed,i) ? x[i]/(1-p) : 0     (overwrite out)
//
// Loops are grid-strided so one launch shape serves any length. Element
// indices are 64-bit: a [tokens, vocab] logits chunk passes 2^31 easily.
// cast_copy and add_scaled move 8 elements a step (16-byte accesses) when
// the length is a multiple of 8 and the bases are 16-byte aligned.
//
// bias_backward gives each block 32 columns and walks all rows in a fixed
// order, so the column sums are the same on every run (no atomics).
//
// dropout's keep mask is the splitmix64 hash of (seed, index) that
// engine/cpu.DropoutUniform defines, so the CPU and GPU backends drop the
// same elements and a test can compare them exactly.
#include "common.cuh"

extern "C" __global__ void fill(void* t, int dt, i64 n, float v) {
    for (i64 i = blockIdx.x * (i64)blockDim.x + threadIdx.x; i < n; i += (i64)gridDim.x * blockDim.x) {
        st(t, dt, i, v);
    }
}

extern "C" __global__ void fill_multi(const unsigned long long* table, float v) {
    const unsigned long long* c = table + 3 * (i64)blockIdx.x;
    void* t = (void*)c[0];
    const i64 n = (i64)c[1];
    const int dt = (int)c[2];
    for (i64 i = threadIdx.x; i < n; i += blockDim.x) st(t, dt, i, v);
}

extern "C" __global__ void scale_multi(const unsigned long long* table, float v) {
    const unsigned long long* c = table + 3 * (i64)blockIdx.x;
    void* t = (void*)c[0];
    const i64 n = (i64)c[1];
    const int dt = (int)c[2];
    for (i64 i = threadIdx.x; i < n; i += blockDim.x) st(t, dt, i, ld(t, dt, i) * v);
}

extern "C" __global__ void cast_copy(void* dst, int ddt, const void* src, int sdt, i64 n) {
    const i64 stride = (i64)gridDim.x * blockDim.x;
    if ((n & 7) == 0 && aligned16(dst) && aligned16(src)) { // 8 elements a step, 16-byte accesses
        for (i64 c = blockIdx.x * (i64)blockDim.x + threadIdx.x; c < n / 8; c += stride) {
            float f[8];
            ld8(src, sdt, 8 * c, f);
            st8(dst, ddt, 8 * c, f);
        }
        return;
    }
    for (i64 i = blockIdx.x * (i64)blockDim.x + threadIdx.x; i < n; i += stride) {
        st(dst, ddt, i, ld(src, sdt, i));
    }
}

extern "C" __global__ void scale(void* t, int dt, i64 n, float s) {
    for (i64 i = blockIdx.x * (i64)blockDim.x + threadIdx.x; i < n; i += (i64)gridDim.x * blockDim.x) {
        st(t, dt, i, ld(t, dt, i) * s);
    }
}

extern "C" __global__ void add_scaled(void* dst, int ddt, const void* src, int sdt, i64 n, float alpha) {
    const i64 stride = (i64)gridDim.x * blockDim.x;
    if ((n & 7) == 0 && aligned16(dst) && aligned16(src)) {
        for (i64 c = blockIdx.x * (i64)blockDim.x + threadIdx.x; c < n / 8; c += stride) {
            float d[8], x[8];
            ld8(dst, ddt, 8 * c, d);
            ld8(src, sdt, 8 * c, x);
#pragma unroll
            for (int k = 0; k < 8; k++) d[k] += alpha * x[k];
            st8(dst, ddt, 8 * c, d);
        }
        return;
    }
    for (i64 i = blockIdx.x * (i64)blockDim.x + threadIdx.x; i < n; i += stride) {
        st(dst, ddt, i, ld(dst, ddt, i) + alpha * ld(src, sdt, i));
    }
}

extern "C" __global__ void add_bias(void* out, int odt, const void* bias, int bdt, i64 rows, i64 cols) {
    i64 n = rows * cols;
    for (i64 i = blockIdx.x * (i64)blockDim.x + threadIdx.x; i < n; i += (i64)gridDim.x * blockDim.x) {
        st(out, odt, i, ld(out, odt, i) + ld(bias, bdt, i % cols));
    }
}

// bias_backward: block (32, 8), grid.x = ceil(cols/32). Thread (x, y) sums
// rows y, y+8, ... of column blockIdx.x*32+x; the 8 partial sums are then
// added in shared memory in a fixed order.
extern "C" __global__ void bias_backward(void* dbias, int bdt, const void* dout, int odt, i64 rows, i64 cols) {
    __shared__ float part[8][33];
    i64 c = blockIdx.x * 32 + threadIdx.x;
    float acc = 0.0f;
    if (c < cols) {
        for (i64 r = threadIdx.y; r < rows; r += 8) acc += ld(dout, odt, r * cols + c);
    }
    part[threadIdx.y][threadIdx.x] = acc;
    __syncthreads();
    if (threadIdx.y == 0 && c < cols) {
        float s = 0.0f;
        for (int y = 0; y < 8; y++) s += part[y][threadIdx.x];
        st(dbias, bdt, c, ld(dbias, bdt, c) + s);
    }
}

// dropout_uniform is u in [0, 1) from the top 24 bits of splitmix64 after
// index+1 steps from seed (engine/cpu.DropoutUniform).
__device__ __forceinline__ float dropout_uniform(unsigned long long seed, unsigned long long index) {
    unsigned long long z = seed + (index + 1ull) * 0x9e3779b97f4a7c15ull;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    z ^= z >> 31;
    return (float)(z >> 40) * (1.0f / 16777216.0f);
}

// dropout: scale is 1/(1-p), or 0 when p == 1 (everything dropped).
extern "C" __global__ void dropout(void* out, int odt, const void* x, int xdt, i64 n, float p, float scale,
                                   unsigned long long seed) {
    for (i64 i = blockIdx.x * (i64)blockDim.x + threadIdx.x; i < n; i += (i64)gridDim.x * blockDim.x) {
        bool keep = dropout_uniform(seed, (unsigned long long)i) >= p;
        st(out, odt, i, keep ? ld(x, xdt, i) * scale : 0.0f);
    }
}
