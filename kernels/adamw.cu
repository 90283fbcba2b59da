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
//
// adamw_multi steps many tensors in one launch: block b takes chunk b of
// a table the host builds (engine/cuda/ops.go, AdamWAll), seven 64-bit
// words per chunk: param, grad, m, v, out (0: none) addresses of the
// chunk's first element, its length, and grad dtype | out dtype << 32.
// Where out is set it is overwritten with the updated param in its dtype
// (the compute copy of a master weight).
#include "common.cuh"

// adamw_element steps element i (and writes it to out, when not null).
__device__ __forceinline__ void adamw_element(float* param, const void* grad, int gdt, float* m, float* v, i64 i,
                                              float decay, float b1c, float b2, float b2c, float stepSize,
                                              float bc2Sqrt, float eps, void* out, int odt) {
    float g = ld(grad, gdt, i);
    float p = param[i] * decay;
    float mi = m[i] + b1c * (g - m[i]);
    float vi = b2 * v[i] + b2c * g * g;
    p -= stepSize * mi / (sqrtf(vi) / bc2Sqrt + eps);
    param[i] = p;
    m[i] = mi;
    v[i] = vi;
    if (out != nullptr) st(out, odt, i, p);
}

extern "C" __global__ void adamw(float* param, const void* grad, int gdt, float* m, float* v, i64 n,
                                 float decay, float b1c, float b2, float b2c, float stepSize, float bc2Sqrt, float eps) {
    for (i64 i = blockIdx.x * (i64)blockDim.x + threadIdx.x; i < n; i += (i64)gridDim.x * blockDim.x) {
        adamw_element(param, grad, gdt, m, v, i, decay, b1c, b2, b2c, stepSize, bc2Sqrt, eps, nullptr, 0);
    }
}

extern "C" __global__ void adamw_multi(const unsigned long long* table, float decay, float b1c, float b2, float b2c,
                                       float stepSize, float bc2Sqrt, float eps) {
    const unsigned long long* c = table + 7 * (i64)blockIdx.x;
    float* param = (float*)c[0];
    const void* grad = (const void*)c[1];
    float* m = (float*)c[2];
    float* v = (float*)c[3];
    void* out = (void*)c[4];
    const i64 n = (i64)c[5];
    const int gdt = (int)(c[6] & 0xffffffffull), odt = (int)(c[6] >> 32);
    for (i64 i = threadIdx.x; i < n; i += blockDim.x) {
        adamw_element(param, grad, gdt, m, v, i, decay, b1c, b2, b2c, stepSize, bc2Sqrt, eps, out, odt);
    }
}
