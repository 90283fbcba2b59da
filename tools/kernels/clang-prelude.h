// clang-prelude.h: declarations that stand in for the CUDA headers when
// clang's CUDA front end checks kernels/*.cu on a machine without the CUDA
// toolkit (tools/kernels/check.sh). NVRTC provides these itself; this file
// is never compiled into whet.
#define __global__ __attribute__((global))
#define __device__ __attribute__((device))
#define __shared__ __attribute__((shared))
#define __host__ __attribute__((host))
#define __constant__ __attribute__((constant))
#define __forceinline__ __inline__ __attribute__((always_inline))
#define __launch_bounds__(...) __attribute__((launch_bounds(__VA_ARGS__)))
#include <__clang_cuda_builtin_vars.h>
extern "C" __device__ float __int_as_float(int);
extern "C" __device__ float __uint_as_float(unsigned);
extern "C" __device__ unsigned __float_as_uint(float);
extern "C" __device__ int __float_as_int(float);
extern "C" __device__ int __float2int_rn(float);
extern "C" __device__ float expf(float);
extern "C" __device__ float exp2f(float);
extern "C" __device__ float logf(float);
extern "C" __device__ float log2f(float);
extern "C" __device__ float fmaxf(float,float);
extern "C" __device__ float fminf(float,float);
extern "C" __device__ float sqrtf(float);
extern "C" __device__ float __fmul_rn(float,float);
extern "C" __device__ float rsqrtf(float);
extern "C" __device__ float fabsf(float);
__device__ int min(int,int); __device__ int max(int,int);
__device__ long long min(long long,long long); __device__ long long max(long long,long long);
__device__ void __syncthreads();
typedef unsigned long size_t;
__device__ float __shfl_xor_sync(unsigned,float,int,int=32);

__device__ float __shfl_sync(unsigned,float,int,int=32);
__device__ float atomicAdd(float*,float);
__device__ unsigned atomicCAS(unsigned*,unsigned,unsigned);
__device__ unsigned __cvta_generic_to_shared(const void*);
extern "C" __device__ float log2f(float); __device__ float fmaf(float,float,float);
struct __attribute__((aligned(16))) float4 { float x, y, z, w; };
struct __attribute__((aligned(8))) uint2 { unsigned x, y; };
__device__ inline float4 make_float4(float a, float b, float c, float d) { float4 r; r.x=a; r.y=b; r.z=c; r.w=d; return r; }
__device__ double atomicAdd(double*,double); __device__ double __shfl_xor_sync(unsigned,double,int,int=32);
extern "C" __device__ float tanhf(float);
__device__ void __threadfence();
__device__ unsigned atomicAdd(unsigned*,unsigned);
__device__ int atomicMax(int*,int);
__device__ int atomicMin(int*,int);
__device__ int __shfl_xor_sync(unsigned,int,int,int=32);
extern "C" __device__ float erff(float);
