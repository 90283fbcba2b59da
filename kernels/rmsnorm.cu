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
//
// rmsnorm_backward_weight_partial + rmsnorm_backward_weight_final (opt-in,
// WHET_RMSNORM_BWD_V2=1 in engine/cuda): the same column sum in two
// stages. The first gives each block a tile of 256 columns by a chunk of
// rows (grid.y chunks), 8 columns a thread with 16-byte loads where the
// rows allow, and writes the tile's column sums in f32 to part[chunk, dim];
// the second adds the chunks' partials column by column, in chunk order,
// into dWeight. Every sum has a fixed order, so the result is the same on
// every run. The one-stage kernel above has ceil(dim/32) blocks (64 at
// dim 2048, fewer than an H100's SMs) each walking every row.
// rmsnorm_backward_fused (WHET_RMSNORM_BWD_V2=2) goes further: the
// partials come out of the input gradient's own pass (below).
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

// rmsnorm_backward_weight_partial: block (32, 8), grid (ceil(dim/256),
// chunks); chunk y covers rows [y*chunkRows, min(rows, (y+1)*chunkRows)).
// part is f32 [chunks, dim], overwritten.
extern "C" __global__ void rmsnorm_backward_weight_partial(float* part, const void* dout, int dodt, const void* x,
                                                           int xdt, const float* rstd, i64 rows, i64 dim,
                                                           i64 chunkRows) {
    __shared__ float tile[8][256 + 1];
    const int tx = threadIdx.x, ty = threadIdx.y;
    const i64 base = (i64)blockIdx.x * 256;
    const i64 r0 = (i64)blockIdx.y * chunkRows;
    const i64 r1 = r0 + chunkRows < rows ? r0 + chunkRows : rows;
    const bool vec = (dim & 7) == 0 && aligned16(dout) && aligned16(x);
    float acc[8];
#pragma unroll
    for (int k = 0; k < 8; k++) acc[k] = 0.0f;
    if (vec) {
        // Columns base + 8*tx .. +7: a warp reads 256 contiguous columns.
        const i64 c0 = base + 8 * tx;
        if (c0 < dim) {
            for (i64 r = r0 + ty; r < r1; r += 8) {
                float dy[8], v[8];
                ld8(dout, dodt, r * dim + c0, dy);
                ld8(x, xdt, r * dim + c0, v);
                const float rs = rstd[r];
#pragma unroll
                for (int k = 0; k < 8; k++) acc[k] += dy[k] * v[k] * rs;
            }
        }
#pragma unroll
        for (int k = 0; k < 8; k++) tile[ty][8 * tx + k] = acc[k];
    } else {
        // Columns base + tx + 32*k: a warp reads 32 contiguous columns.
        for (i64 r = r0 + ty; r < r1; r += 8) {
            const float rs = rstd[r];
#pragma unroll
            for (int k = 0; k < 8; k++) {
                const i64 c = base + tx + 32 * k;
                if (c < dim) acc[k] += ld(dout, dodt, r * dim + c) * ld(x, xdt, r * dim + c) * rs;
            }
        }
#pragma unroll
        for (int k = 0; k < 8; k++) tile[ty][tx + 32 * k] = acc[k];
    }
    __syncthreads();
    const int i = ty * 32 + tx; // this thread's column of the tile
    const i64 c = base + i;
    if (c < dim) {
        float s = 0.0f;
#pragma unroll
        for (int y = 0; y < 8; y++) s += tile[y][i];
        part[(i64)blockIdx.y * dim + c] = s;
    }
}

// rmsnorm_backward_weight_final: block (32, ny) with ny <= 32, grid.x =
// ceil(dim/32). dWeight[c] += sum over chunks of part[chunk, c], in a
// fixed order (lane y takes chunks y, y+ny, ...; then the lanes in order).
extern "C" __global__ void rmsnorm_backward_weight_final(void* dweight, int dwdt, const float* part, i64 chunks,
                                                         i64 dim) {
    __shared__ float sums[32][33];
    const i64 c = (i64)blockIdx.x * 32 + threadIdx.x;
    const int ny = blockDim.y;
    float acc = 0.0f;
    if (c < dim) {
        for (i64 k = threadIdx.y; k < chunks; k += ny) acc += part[k * dim + c];
    }
    sums[threadIdx.y][threadIdx.x] = acc;
    __syncthreads();
    if (threadIdx.y == 0 && c < dim) {
        float s = 0.0f;
        for (int y = 0; y < ny; y++) s += sums[y][threadIdx.x];
        st(dweight, dwdt, c, ld(dweight, dwdt, c) + s);
    }
}

// rmsnorm_backward_fused (opt-in, WHET_RMSNORM_BWD_V2=2): the input
// gradient of rmsnorm_backward_input and the weight gradient's partial
// column sums in one pass over dOut and x. Block b takes rows
// [b*blockRows, min(rows, (b+1)*blockRows)), one after another; thread t
// owns the 8 columns 8t..8t+7 (the host launches it only where dim is a
// multiple of 8, dim/8 <= blockDim.x and every base is 16-byte aligned),
// reads each row's dOut and x once, adds dx exactly as
// rmsnorm_backward_input does (the same bits), and sums dOut*x*rstd over
// its rows in registers; part[b, dim] (f32) gets those sums, which
// rmsnorm_backward_weight_final adds into dWeight.
extern "C" __global__ void rmsnorm_backward_fused(void* dx, int dxdt, float* part, const void* dout, int dodt,
                                                  const void* x, int xdt, const void* weight, int wdt,
                                                  const float* rstd, i64 rows, i64 dim, i64 blockRows) {
    __shared__ float scratch[32];
    const i64 c = threadIdx.x;
    const bool active = c < dim / 8;
    const i64 r0 = (i64)blockIdx.x * blockRows;
    const i64 r1 = r0 + blockRows < rows ? r0 + blockRows : rows;
    float w[8], acc[8];
#pragma unroll
    for (int k = 0; k < 8; k++) w[k] = 0.0f, acc[k] = 0.0f;
    if (active) ld8(weight, wdt, 8 * c, w);
    for (i64 row = r0; row < r1; row++) {
        const i64 base = row * dim;
        float dy[8], v[8];
        float dot = 0.0f;
        if (active) {
            ld8(dout, dodt, base + 8 * c, dy);
            ld8(x, xdt, base + 8 * c, v);
#pragma unroll
            for (int k = 0; k < 8; k++) dot += w[k] * dy[k] * v[k];
        }
        dot = block_sum(dot, scratch);
        const float r = rstd[row];
        const float k3 = r * r * r * dot / (float)dim;
        if (active) {
            float d[8];
            ld8(dx, dxdt, base + 8 * c, d);
#pragma unroll
            for (int k = 0; k < 8; k++) {
                d[k] += r * w[k] * dy[k] - k3 * v[k];
                acc[k] += dy[k] * v[k] * r;
            }
            st8(dx, dxdt, base + 8 * c, d);
        }
    }
    if (active) {
#pragma unroll
        for (int k = 0; k < 8; k++) part[(i64)blockIdx.x * dim + 8 * c + k] = acc[k];
    }
}
