// adamw.cu: one step of torch.optim.AdamW on fp32 master weights.
//
//   param *= 1 - lr*wd                         (decoupled weight decay)
//   m += (1-b1)*(g - m)                        (torch's lerp form)
//   v  = b2*v + (1-b2)*g^2
//   param -= stepSize * m / (sqrt(v)/bc2Sqrt + eps)
//
// with stepSize = lr/(1-b1^step) and bc2Sqrt = sqrt(1-b2^step) computed on
// the host in float64. param, m and v are f32 and updated in place; grad
// is f32 or bf16 and only read.
#include "common.cuh"

extern "C" __global__ void adamw(float* param, const void* grad, int gdt, float* m, float* v, i64 n,
                                 float decay, float b1c, float b2, float b2c, float stepSize, float bc2Sqrt, float eps) {
    for (i64 i = blockIdx.x * (i64)blockDim.x + threadIdx.x; i < n; i += (i64)gridDim.x * blockDim.x) {
        float g = ld(grad, gdt, i);
        float p = param[i] * decay;
        float mi = m[i] + b1c * (g - m[i]);
        float vi = b2 * v[i] + b2c * g * g;
        p -= stepSize * mi / (sqrtf(vi) / bc2Sqrt + eps);
        param[i] = p;
        m[i] = mi;
        v[i] = vi;
    }
}
