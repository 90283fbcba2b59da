// rmsnorm.cu: root-mean-square layer norm (Llama, Qwen, Mistral).
//
// Forward, per row of x [rows, dim]:
//   rstd = 1/sqrt(mean(x^2) + eps)       (saved, f32, one per row)
//   out  = x * rstd * weight             (overwrite out)
// Backward, with y = x*r*w and r = rstd:
//   dx_j += r*w_j*dy_j - x_j * r^3/dim * sum_k(w_k*dy_k*x_k)   (accumulate dx)
//   dw_j += sum over rows of dy_j*x_j*r                         (accumulate dWeight)
//
// One block per row for the forward and for dx (8 elements per thread step
// when the rows allow 16-byte accesses). dWeight is a column sum:
// each block owns 32 columns and walks every row in a fixed order, so it
// needs no atomics and gives the same bits on every run.
#include "common.cuh"

// Rows whose length is a multiple of 8, with 16-byte aligned bases, are
// read and written 8 elements at a time (rows_vec8).
__device__ __forceinline__ bool rows_vec8(i64 dim, const void* a, const void* b, const void* c, const void* d) {
    return (dim & 7) == 0 && aligned16(a) && aligned16(b) && aligned16(c) && aligned16(d);
}

extern "C" __global__ void rmsnorm_forward(void* out, int odt, float* rstd, const void* x, int xdt,
                                           const void* weight, int wdt, i64 dim, float eps) {
    PDL_WAIT();
    PDL_TRIGGER();
    __shared__ float scratch[32];
    const i64 row = blockIdx.x;
    const i64 base = row * dim;
    const bool vec = rows_vec8(dim, out, x, weight, x);
    float ss = 0.0f;
    if (vec) {
        for (i64 c = threadIdx.x; c < dim / 8; c += blockDim.x) {
            float v[8];
            ld8(x, xdt, base + 8 * c, v);
#pragma unroll
            for (int k = 0; k < 8; k++) ss += v[k] * v[k];
        }
    } else {
        for (i64 j = threadIdx.x; j < dim; j += blockDim.x) {
            float v = ld(x, xdt, base + j);
            ss += v * v;
        }
    }
    ss = block_sum(ss, scratch);
    float r = rsqrtf(ss / (float)dim + eps);
    if (threadIdx.x == 0) rstd[row] = r;
    if (vec) {
        for (i64 c = threadIdx.x; c < dim / 8; c += blockDim.x) {
            float v[8], w[8];
            ld8(x, xdt, base + 8 * c, v);
            ld8(weight, wdt, 8 * c, w);
#pragma unroll
            for (int k = 0; k < 8; k++) v[k] = v[k] * r * w[k];
            st8(out, odt, base + 8 * c, v);
        }
        return;
    }
    for (i64 j = threadIdx.x; j < dim; j += blockDim.x) {
        st(out, odt, base + j, ld(x, xdt, base + j) * r * ld(weight, wdt, j));
    }
}

extern "C" __global__ void rmsnorm_backward_input(void* dx, int dxdt, const void* dout, int dodt, const void* x, int xdt,
                                                  const void* weight, int wdt, const float* rstd, i64 dim) {
    __shared__ float scratch[32];
    const i64 row = blockIdx.x;
    const i64 base = row * dim;
    const bool vec = rows_vec8(dim, dx, dout, x, weight);
    float dot = 0.0f;
    if (vec) {
        for (i64 c = threadIdx.x; c < dim / 8; c += blockDim.x) {
            float w[8], dy[8], v[8];
            ld8(weight, wdt, 8 * c, w);
            ld8(dout, dodt, base + 8 * c, dy);
            ld8(x, xdt, base + 8 * c, v);
#pragma unroll
            for (int k = 0; k < 8; k++) dot += w[k] * dy[k] * v[k];
        }
    } else {
        for (i64 j = threadIdx.x; j < dim; j += blockDim.x) {
            dot += ld(weight, wdt, j) * ld(dout, dodt, base + j) * ld(x, xdt, base + j);
        }
    }
    dot = block_sum(dot, scratch);
    float r = rstd[row];
    float k3 = r * r * r * dot / (float)dim;
    if (vec) {
        for (i64 c = threadIdx.x; c < dim / 8; c += blockDim.x) {
            float w[8], dy[8], v[8], d[8];
            ld8(weight, wdt, 8 * c, w);
            ld8(dout, dodt, base + 8 * c, dy);
            ld8(x, xdt, base + 8 * c, v);
            ld8(dx, dxdt, base + 8 * c, d);
#pragma unroll
            for (int k = 0; k < 8; k++) d[k] += r * w[k] * dy[k] - k3 * v[k];
            st8(dx, dxdt, base + 8 * c, d);
        }
        return;
    }
    for (i64 j = threadIdx.x; j < dim; j += blockDim.x) {
        float g = r * ld(weight, wdt, j) * ld(dout, dodt, base + j) - k3 * ld(x, xdt, base + j);
        st(dx, dxdt, base + j, ld(dx, dxdt, base + j) + g);
    }
}

// rmsnorm_backward_weight: block (32, 8), grid.x = ceil(dim/32).
extern "C" __global__ void rmsnorm_backward_weight(void* dweight, int dwdt, const void* dout, int dodt, const void* x,
                                                   int xdt, const float* rstd, i64 rows, i64 dim) {
    __shared__ float part[8][33];
    i64 c = blockIdx.x * 32 + threadIdx.x;
    float acc = 0.0f;
    if (c < dim) {
        for (i64 r = threadIdx.y; r < rows; r += 8) {
            acc += ld(dout, dodt, r * dim + c) * ld(x, xdt, r * dim + c) * rstd[r];
        }
    }
    part[threadIdx.y][threadIdx.x] = acc;
    __syncthreads();
    if (threadIdx.y == 0 && c < dim) {
        float s = 0.0f;
        for (int y = 0; y < 8; y++) s += part[y][threadIdx.x];
        st(dweight, dwdt, c, ld(dweight, dwdt, c) + s);
    }
}
