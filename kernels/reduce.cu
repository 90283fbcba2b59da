// reduce.cu: whole-tensor reductions.
//
//   sum_squares: *out += sum_i t[i]^2, accumulated in float64 (out is one
//   double the host zeroes before the launch and reads after it).
//
// Each thread sums a grid-strided slice in float64, the block adds its
// threads' sums, and one atomicAdd per block lands in *out. float64
// matters: a gradient norm over a billion bf16 values loses digits in
// float32. The order of the per-block atomics varies between runs, which
// changes only the last bits of a float64 sum.
//
//   sum_squares_multi: the same over many tensors in one launch; block b
//   sums chunk b of a host-built table of three 64-bit words per chunk
//   (address of its first element, length, dtype).
#include "common.cuh"

// block_add_d adds acc over the block and atomically into *out.
__device__ __forceinline__ void block_add_d(double* out, double acc) {
    __shared__ double part[32];
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
    acc = warp_sum_d(acc);
    if (lane == 0) part[warp] = acc;
    __syncthreads();
    if (warp == 0) {
        acc = lane < nw ? part[lane] : 0.0;
        acc = warp_sum_d(acc);
        if (lane == 0) atomicAdd(out, acc);
    }
}

extern "C" __global__ void sum_squares(double* out, const void* t, int dt, i64 n) {
    double acc = 0.0;
    for (i64 i = blockIdx.x * (i64)blockDim.x + threadIdx.x; i < n; i += (i64)gridDim.x * blockDim.x) {
        double v = (double)ld(t, dt, i);
        acc += v * v;
    }
    block_add_d(out, acc);
}

extern "C" __global__ void sum_squares_multi(const unsigned long long* table, double* out) {
    const unsigned long long* c = table + 3 * (i64)blockIdx.x;
    const void* t = (const void*)c[0];
    const i64 n = (i64)c[1];
    const int dt = (int)c[2];
    double acc = 0.0;
    for (i64 i = threadIdx.x; i < n; i += blockDim.x) {
        double v = (double)ld(t, dt, i);
        acc += v * v;
    }
    block_add_d(out, acc);
}

// sum_squares_multi_partial + sum_squares_final (opt-in, WHET_SUMSQ_V2=1
// in engine/cuda): the same sum without atomics. Block b sums chunk b of
// sum_squares_multi's table (8 elements a step with 16-byte loads where
// the chunk allows) and writes its float64 sum to partials[b]; one block
// of 1024 threads then adds the partials in a fixed order and overwrites
// *out. sum_squares_multi's one atomicAdd per block lands tens of
// thousands of times on one address for a full model's gradients; and the
// fixed order makes the result the same on every run.
extern "C" __global__ void sum_squares_multi_partial(const unsigned long long* table, double* partials) {
    const unsigned long long* c = table + 3 * (i64)blockIdx.x;
    const void* t = (const void*)c[0];
    const i64 n = (i64)c[1];
    const int dt = (int)c[2];
    double acc = 0.0;
    i64 n8 = 0;
    if ((dt == DT_BF16 || dt == DT_F32) && aligned16(t)) n8 = n & ~(i64)7;
    for (i64 i = 8 * (i64)threadIdx.x; i < n8; i += 8 * (i64)blockDim.x) {
        float v[8];
        ld8(t, dt, i, v);
#pragma unroll
        for (int k = 0; k < 8; k++) acc += (double)v[k] * (double)v[k];
    }
    for (i64 i = n8 + threadIdx.x; i < n; i += blockDim.x) {
        double v = (double)ld(t, dt, i);
        acc += v * v;
    }
    __shared__ double part[32];
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
    acc = warp_sum_d(acc);
    if (lane == 0) part[warp] = acc;
    __syncthreads();
    if (warp == 0) {
        acc = lane < nw ? part[lane] : 0.0;
        acc = warp_sum_d(acc);
        if (lane == 0) partials[blockIdx.x] = acc;
    }
}

// sum_squares_final: one block (a multiple of 32 threads, at most 1024).
extern "C" __global__ void sum_squares_final(double* out, const double* partials, i64 n) {
    double acc = 0.0;
    for (i64 i = threadIdx.x; i < n; i += blockDim.x) acc += partials[i];
    __shared__ double part[32];
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
    acc = warp_sum_d(acc);
    if (lane == 0) part[warp] = acc;
    __syncthreads();
    if (warp == 0) {
        acc = lane < nw ? part[lane] : 0.0;
        acc = warp_sum_d(acc);
        if (lane == 0) *out = acc;
    }
}
