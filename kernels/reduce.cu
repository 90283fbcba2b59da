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
#include "common.cuh"

extern "C" __global__ void sum_squares(double* out, const void* t, int dt, i64 n) {
    __shared__ double part[32];
    double acc = 0.0;
    for (i64 i = blockIdx.x * (i64)blockDim.x + threadIdx.x; i < n; i += (i64)gridDim.x * blockDim.x) {
        double v = (double)ld(t, dt, i);
        acc += v * v;
    }
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
