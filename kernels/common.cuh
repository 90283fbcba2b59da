// common.cuh: helpers shared by every kernel file.
//
// Tensors reach the kernels as untyped pointers plus a dtype code equal to
// engine.DType (0 f32, 1 bf16, 2 i32), and every element goes through
// ld/st below. The maths is always done in float32; bf16 is storage only.
// The dtype branch is uniform across a launch, so it costs a predicted
// branch per element, not divergence. This keeps one kernel per operation
// instead of one per combination of dtypes; specialised variants can come
// later where a profile asks for them.
//
// bf16 is handled as raw 16-bit words (the top half of a float32), with
// round-to-nearest-even on the way down, so no CUDA header is needed and
// NVRTC compiles these files with no include path at all.
#pragma once

#define DT_F32 0
#define DT_BF16 1
#define DT_I32 2

// Bits set in the backend's fault word by kernels that meet bad input
// they cannot report otherwise (the host reads the word at Sync).
#define FAULT_EMBEDDING_ID 1
#define FAULT_CE_LABEL 2
#define FAULT_ROPE_POSITION 4

typedef long long i64;

// Programmatic dependent launch (engine/cuda/pdl.go), compiled in only when
// the backend defines WHET_PDL (WHET_CUDA_PDL=1) and the target is sm_90 or
// newer. A kernel the backend may launch that way calls PDL_WAIT() before
// touching any memory another kernel writes (it returns once the kernel
// before it on the stream has finished and its writes are visible; without
// a programmatic launch it returns at once), and PDL_TRIGGER() only after
// that, to let the next kernel be scheduled while this one runs.
#if defined(WHET_PDL) && defined(__CUDA_ARCH__) && (__CUDA_ARCH__ >= 900)
#define PDL_WAIT() asm volatile("griddepcontrol.wait;" ::: "memory")
#define PDL_TRIGGER() asm volatile("griddepcontrol.launch_dependents;" ::: "memory")
#define PDL_ON 1
#else
#define PDL_WAIT() ((void)0)
#define PDL_TRIGGER() ((void)0)
#define PDL_ON 0
#endif

// Vector types for 8- and 16-byte memory accesses, declared here because
// NVRTC compiles with no CUDA header (the pointer must be aligned to the
// type's size).
struct __attribute__((aligned(16))) f32x4 {
    float x, y, z, w;
};
struct __attribute__((aligned(16))) u32x4 {
    unsigned int x, y, z, w;
};
struct __attribute__((aligned(8))) u32x2 {
    unsigned int x, y;
};

// -inf without <math.h>, which NVRTC does not ship.
#define NEG_INF __int_as_float(0xff800000)

__device__ __forceinline__ float bf16_to_f32(unsigned short h) {
    return __uint_as_float(((unsigned int)h) << 16);
}

__device__ __forceinline__ unsigned short f32_to_bf16(float f) {
    unsigned int u = __float_as_uint(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) {
        return (unsigned short)((u >> 16) | 0x0040u); // NaN stays a quiet NaN
    }
    u += 0x7fffu + ((u >> 16) & 1u); // round to nearest, ties to even
    return (unsigned short)(u >> 16);
}

__device__ __forceinline__ float ld(const void* p, int dt, i64 i) {
    if (dt == DT_BF16) return bf16_to_f32(((const unsigned short*)p)[i]);
    if (dt == DT_I32) return (float)((const int*)p)[i];
    return ((const float*)p)[i];
}

__device__ __forceinline__ void st(void* p, int dt, i64 i, float v) {
    if (dt == DT_BF16) {
        ((unsigned short*)p)[i] = f32_to_bf16(v);
    } else if (dt == DT_I32) {
        ((int*)p)[i] = __float2int_rn(v);
    } else {
        ((float*)p)[i] = v;
    }
}

// aligned16 reports whether a device pointer is 16-byte aligned: the
// condition, with a length that is a multiple of 8, for ld8/st8 below.
__device__ __forceinline__ bool aligned16(const void* p) { return ((unsigned long long)p & 15) == 0; }

// ld8 reads the 8 elements i..i+7 (i a multiple of 8, base aligned16) in
// one 16-byte load for bf16 or two for f32; st8 writes them back.
__device__ __forceinline__ void ld8(const void* p, int dt, i64 i, float* f) {
    if (dt == DT_BF16) {
        const u32x4 v = *(const u32x4*)((const unsigned short*)p + i);
        const unsigned int w[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
        for (int k = 0; k < 4; k++) {
            f[2 * k] = __uint_as_float(w[k] << 16);
            f[2 * k + 1] = __uint_as_float(w[k] & 0xffff0000u);
        }
    } else if (dt == DT_F32) {
        const f32x4 a = *(const f32x4*)((const float*)p + i), b = *(const f32x4*)((const float*)p + i + 4);
        f[0] = a.x, f[1] = a.y, f[2] = a.z, f[3] = a.w, f[4] = b.x, f[5] = b.y, f[6] = b.z, f[7] = b.w;
    } else {
#pragma unroll
        for (int k = 0; k < 8; k++) f[k] = ld(p, dt, i + k);
    }
}

__device__ __forceinline__ void st8(void* p, int dt, i64 i, const float* f) {
    if (dt == DT_BF16) {
        u32x4 v;
        v.x = (unsigned int)f32_to_bf16(f[0]) | ((unsigned int)f32_to_bf16(f[1]) << 16);
        v.y = (unsigned int)f32_to_bf16(f[2]) | ((unsigned int)f32_to_bf16(f[3]) << 16);
        v.z = (unsigned int)f32_to_bf16(f[4]) | ((unsigned int)f32_to_bf16(f[5]) << 16);
        v.w = (unsigned int)f32_to_bf16(f[6]) | ((unsigned int)f32_to_bf16(f[7]) << 16);
        *(u32x4*)((unsigned short*)p + i) = v;
    } else if (dt == DT_F32) {
        f32x4 a, b;
        a.x = f[0], a.y = f[1], a.z = f[2], a.w = f[3], b.x = f[4], b.y = f[5], b.z = f[6], b.w = f[7];
        *(f32x4*)((float*)p + i) = a;
        *(f32x4*)((float*)p + i + 4) = b;
    } else {
#pragma unroll
        for (int k = 0; k < 8; k++) st(p, dt, i + k, f[k]);
    }
}

// atomic_add adds v to element i. bf16 has no 16-bit atomic add that NVRTC
// can reach without headers, so it goes through a compare-and-swap on the
// aligned 32-bit word that holds the element.
__device__ __forceinline__ void atomic_add(void* p, int dt, i64 i, float v) {
    if (dt == DT_F32) {
        atomicAdd(((float*)p) + i, v);
        return;
    }
    unsigned short* h = ((unsigned short*)p) + i;
    unsigned int* word = (unsigned int*)((size_t)h & ~(size_t)3);
    bool high = ((size_t)h & 2) != 0;
    unsigned int old = *word, assumed;
    do {
        assumed = old;
        unsigned short cur = high ? (unsigned short)(assumed >> 16) : (unsigned short)(assumed & 0xffffu);
        unsigned short next = f32_to_bf16(bf16_to_f32(cur) + v);
        unsigned int repl = high ? ((assumed & 0x0000ffffu) | ((unsigned int)next << 16))
                                 : ((assumed & 0xffff0000u) | (unsigned int)next);
        old = atomicCAS(word, assumed, repl);
    } while (old != assumed);
}

__device__ __forceinline__ float warp_sum(float v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

__device__ __forceinline__ float warp_max(float v) {
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

__device__ __forceinline__ double warp_sum_d(double v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

// block_sum returns the sum of v over the block (blockDim.x a multiple of
// 32, at most 1024) to every thread. scratch holds 32 floats.
__device__ __forceinline__ float block_sum(float v, float* scratch) {
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
    v = warp_sum(v);
    __syncthreads();
    if (lane == 0) scratch[warp] = v;
    __syncthreads();
    v = lane < nw ? scratch[lane] : 0.0f;
    return warp_sum(v);
}

__device__ __forceinline__ float block_max(float v, float* scratch) {
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
    v = warp_max(v);
    __syncthreads();
    if (lane == 0) scratch[warp] = v;
    __syncthreads();
    v = lane < nw ? scratch[lane] : NEG_INF;
    return warp_max(v);
}
