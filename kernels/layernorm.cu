// layernorm.cu: LayerNorm with a bias (torch.nn.LayerNorm; the SigLIP tower of Gemma 3).
//
// Forward, per row of x [rows, dim], in float32:
//   mean = sum(x)/dim ; var = sum((x-mean)^2)/dim (biased) ; rstd = 1/sqrt(var + eps)
//   out  = (x - mean)*rstd*weight + bias                     (overwrite out; mean, rstd saved, f32)
// Backward, with xh = (x-mean)*rstd and g = weight*dy:
//   dx_j += rstd*(g_j - mean_k(g_k) - xh_j*mean_k(g_k*xh_k))   (accumulate dx; skipped when dx is null)
//   dw_j += sum over rows of dy_j*xh_j ; db_j += sum over rows of dy_j   (accumulate; each may be null)
//
// Memory: one block per row for the forward and for dx (two block reductions
// each, the row read three times); the parameter gradients are column sums,
// each block owning 32 columns and walking every row in a fixed order (no
// atomics, the same bits every run).
#include "common.cuh"

extern "C" __global__ void layernorm_forward(void* out, int odt, float* mean, float* rstd, const void* x, int xdt,
                                             const void* weight, int wdt, const void* bias, int bdt, i64 dim, float eps) {
    __shared__ float scratch[32];
    const i64 base = (i64)blockIdx.x * dim;
    float s = 0.0f;
    for (i64 j = threadIdx.x; j < dim; j += blockDim.x) s += ld(x, xdt, base + j);
    const float mu = block_sum(s, scratch) / (float)dim;
    float ss = 0.0f;
    for (i64 j = threadIdx.x; j < dim; j += blockDim.x) {
        float d = ld(x, xdt, base + j) - mu;
        ss += d * d;
    }
    const float r = rsqrtf(block_sum(ss, scratch) / (float)dim + eps);
    if (threadIdx.x == 0) {
        mean[blockIdx.x] = mu;
        rstd[blockIdx.x] = r;
    }
    for (i64 j = threadIdx.x; j < dim; j += blockDim.x) {
        st(out, odt, base + j, (ld(x, xdt, base + j) - mu) * r * ld(weight, wdt, j) + ld(bias, bdt, j));
    }
}

extern "C" __global__ void layernorm_backward_input(void* dx, int dxdt, const void* dout, int dodt, const void* x, int xdt,
                                                    const void* weight, int wdt, const float* mean, const float* rstd, i64 dim) {
    __shared__ float scratch[32];
    const i64 base = (i64)blockIdx.x * dim;
    const float mu = mean[blockIdx.x], r = rstd[blockIdx.x];
    float sg = 0.0f, sgx = 0.0f;
    for (i64 j = threadIdx.x; j < dim; j += blockDim.x) {
        float g = ld(weight, wdt, j) * ld(dout, dodt, base + j);
        sg += g;
        sgx += g * (ld(x, xdt, base + j) - mu) * r;
    }
    sg = block_sum(sg, scratch) / (float)dim;
    sgx = block_sum(sgx, scratch) / (float)dim;
    for (i64 j = threadIdx.x; j < dim; j += blockDim.x) {
        float g = ld(weight, wdt, j) * ld(dout, dodt, base + j);
        float xh = (ld(x, xdt, base + j) - mu) * r;
        st(dx, dxdt, base + j, ld(dx, dxdt, base + j) + r * (g - sg - xh * sgx));
    }
}

// layernorm_backward_params: block (32, 8), grid.x = ceil(dim/32); dweight or dbias may be null.
extern "C" __global__ void layernorm_backward_params(void* dweight, int dwdt, void* dbias, int dbdt, const void* dout, int dodt,
                                                     const void* x, int xdt, const float* mean, const float* rstd, i64 rows, i64 dim) {
    __shared__ float pw[8][33], pb[8][33];
    const i64 c = (i64)blockIdx.x * 32 + threadIdx.x;
    float aw = 0.0f, ab = 0.0f;
    if (c < dim) {
        for (i64 r = threadIdx.y; r < rows; r += 8) {
            float d = ld(dout, dodt, r * dim + c);
            aw += d * (ld(x, xdt, r * dim + c) - mean[r]) * rstd[r];
            ab += d;
        }
    }
    pw[threadIdx.y][threadIdx.x] = aw;
    pb[threadIdx.y][threadIdx.x] = ab;
    __syncthreads();
    if (threadIdx.y == 0 && c < dim) {
        float sw = 0.0f, sb = 0.0f;
        for (int y = 0; y < 8; y++) {
            sw += pw[y][threadIdx.x];
            sb += pb[y][threadIdx.x];
        }
        if (dweight) st(dweight, dwdt, c, ld(dweight, dwdt, c) + sw);
        if (dbias) st(dbias, dbdt, c, ld(dbias, dbdt, c) + sb);
    }
}
