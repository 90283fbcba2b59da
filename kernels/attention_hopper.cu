// attention_hopper.cu: training attention of attention.cu (same maths,
// masks and outputs: causal over packed sequences, sliding window,
// soft-cap, grouped-query heads; out, lse, dq, dk and dv overwritten) on
// Hopper's warpgroup instructions (sm_90a only): wgmma mma_async with
// operands read from shared memory through matrix descriptors, or the
// left operand (P, dS) from registers.
//
// Opt-in (WHET_ATTN_HOPPER=1, engine/cuda Options.AttnHopper) and compiled
// for sm_90a only: on any other architecture the kernels below compile to a
// trap, and engine/cuda never launches them there. The mma.sync kernels of
// attention.cu stay the default. Like them, these add no atomics: every
// output element is written by one thread, so reruns are bit-equal.
//
// Forward, one block: 128 queries of one head, two warpgroups of 64 rows
// (256 threads). Keys and values stream through shared memory in tiles of
// 128 rows, double-buffered with cp.async (every thread copies; no
// producer warp yet). Per key tile and warpgroup:
//   S = Q K^T           head dim / 16 wgmma m64n128k16, both from shared memory
//   mask, online softmax (base 2, as attention.cu), rescale O
//   O += P V            8 wgmma m64n<D>k16, P from registers (bf16)
// Backward: attention_backward_dq_hopper (128 queries a block, 64-key
// tiles: S, dP = dO V^T, dS, dQ += dS K) and attention_backward_dkv_hopper
// (128 keys a block, 64-query tiles of every query head of the group: S^T,
// dP^T, dV += P^T dO, dK += dS^T Q), as attention.cu splits them.
//
// The accumulator layout of wgmma m64nNk16 is, per warp of the
// warpgroup, the mma.sync m16n8 layout repeated over N/8 column tiles: a
// thread holds rows g = lane/4 and g+8 of its warp's 16, columns 8j+2t and
// 8j+2t+1 (t = lane%4) in registers 4j..4j+3. So the softmax and masking
// below are attention.cu's, and the A fragments of P and dS are packed
// from the accumulators exactly as there.
//
// Shared-memory tiles use the 128-byte swizzle of wgmma descriptors: a tile
// of R rows and D columns is D/64 panels of R rows x 128 bytes (64 bf16),
// panels 1024-byte aligned; 16-byte chunk c of row r is stored at chunk
// c ^ (r % 8). A tile whose rows are the product's M or N rows is read
// K-major (64-column panels along the head dim, which is the reduction);
// one whose rows are the reduction (V in P V, K in dS K, dO and Q in the
// dK/dV products) is read N-major: 16 rows a step (2048 bytes), panels
// R * 128 bytes apart (the descriptor's leading byte offset). The same
// physical layout serves both.
#include "common.cuh"

#define LOG2E 1.4426950408889634f
#define LN2 0.6931471805599453f

// Queries per block and keys per tile.
#define HOP_BM 128
#define HOP_BN 128

// The warp-specialised forward's knobs (HOP_FWD_WS, see attn_fwd_hopper_ws;
// engine/cuda/attention.go mirrors them): consumer warpgroups at head dim
// 64 (128 is always 2), K/V stages, pingpong, setmaxnreg's registers.
#ifndef HOP_FWD_WS
#define HOP_FWD_WS 0
#endif
#ifndef HOP_WS_WG64
#define HOP_WS_WG64 2
#endif
#ifndef HOP_WS_STAGES
#define HOP_WS_STAGES 2
#endif
#ifndef HOP_WS_INTRA
#define HOP_WS_INTRA 1
#endif
#ifndef HOP_WS_TMA
#define HOP_WS_TMA 0
#endif
#ifndef HOP_WS_PINGPONG
#define HOP_WS_PINGPONG 1
#endif
// HOP_WS_NOSER=1: the consumers' straight-line loop (see attn_fwd_hopper_ws),
// which ptxas compiles without serialising the wgmma (C75xx warnings).
#ifndef HOP_WS_NOSER
#define HOP_WS_NOSER 0
#endif
#define HOP_WS_WG(D) ((D) == 64 ? HOP_WS_WG64 : 2)
// HOP_WS_BN64, HOP_WS_BN128 (with HOP_WS_NOSER=1 only): keys per K/V tile,
// and so per stage and per S = Q K^T, of the warp-specialised forward at
// head dim 64 and 128: 128 (the default) or 64. A 64-key tile halves S and P
// in the consumers' registers (32 + 16 instead of 64 + 32 a thread), which
// at d128 (O is 64 registers) or with three consumers at d64 (128 registers
// a thread) is what ptxas lacked when it serialised the wgmma (C7512), at
// the price of twice the barriers and O rescales per key.
#ifndef HOP_WS_BN64
#define HOP_WS_BN64 128
#endif
#ifndef HOP_WS_BN128
#define HOP_WS_BN128 128
#endif
#define HOP_WS_BN(D) ((D) == 64 ? HOP_WS_BN64 : HOP_WS_BN128)
#if (HOP_WS_BN64 != 128 && HOP_WS_BN64 != 64) || (HOP_WS_BN128 != 128 && HOP_WS_BN128 != 64)
#error "HOP_WS_BN64 and HOP_WS_BN128 are 64 or 128 (keys per tile)"
#endif
#if (HOP_WS_BN64 != 128 || HOP_WS_BN128 != 128) && !HOP_WS_NOSER
#error "HOP_WS_BN64 and HOP_WS_BN128 are knobs of the straight-line consumer loop: set HOP_WS_NOSER=1 (and HOP_FWD_WS) too"
#endif
// HOP_WS_STAGES64, HOP_WS_STAGES128: HOP_WS_STAGES for one head dim (each
// defaults to it; 2 to 4), so that 64-key tiles can take four stages at one
// head dim while the other keeps two of 128 keys in its shared memory.
#ifndef HOP_WS_STAGES64
#define HOP_WS_STAGES64 HOP_WS_STAGES
#endif
#ifndef HOP_WS_STAGES128
#define HOP_WS_STAGES128 HOP_WS_STAGES
#endif
#define HOP_WS_STAGES_D(D) ((D) == 64 ? HOP_WS_STAGES64 : HOP_WS_STAGES128)
// HOP_WS_PSMEM64, HOP_WS_PSMEM128 (with HOP_WS_NOSER=1 only; default 0):
// at that head dim each consumer writes P (bf16, 64 rows x the tile's keys)
// to its own 128-byte-swizzled tile in shared memory and O += P V reads it
// from there (wgmma with both operands in shared memory) instead of from
// registers, so P's 32 registers (16 with 64-key tiles) are free while
// P V runs beside the next S and its softmax: O and S alone fit the 168
// registers of two consumers at d128. The price: 32 (16) 4-byte shared
// stores a thread, a proxy fence and a barrier of the warpgroup per tile,
// and 16 KB (8 KB) of shared memory per consumer.
#ifndef HOP_WS_PSMEM64
#define HOP_WS_PSMEM64 0
#endif
#ifndef HOP_WS_PSMEM128
#define HOP_WS_PSMEM128 0
#endif
#define HOP_WS_PSMEM_D(D) ((D) == 64 ? HOP_WS_PSMEM64 : HOP_WS_PSMEM128)
#if (HOP_WS_PSMEM64 || HOP_WS_PSMEM128) && !HOP_WS_NOSER
#error "HOP_WS_PSMEM64 and HOP_WS_PSMEM128 are knobs of the straight-line consumer loop: set HOP_WS_NOSER=1 (and HOP_FWD_WS) too"
#endif
// HOP_WS_INTRA64, HOP_WS_INTRA128 (with HOP_WS_NOSER=1 only): HOP_WS_INTRA
// for one head dim (each defaults to HOP_WS_INTRA), so that one define set
// can overlap P V with the softmax at d64 and not at d128, whose S, O and P
// do not fit the registers of two consumers together (C7512).
#ifndef HOP_WS_INTRA64
#define HOP_WS_INTRA64 HOP_WS_INTRA
#endif
#ifndef HOP_WS_INTRA128
#define HOP_WS_INTRA128 HOP_WS_INTRA
#endif
#define HOP_WS_INTRA_D(D) ((D) == 64 ? HOP_WS_INTRA64 : HOP_WS_INTRA128)
#if (HOP_WS_INTRA64 != HOP_WS_INTRA || HOP_WS_INTRA128 != HOP_WS_INTRA) && !HOP_WS_NOSER
#error "HOP_WS_INTRA64 and HOP_WS_INTRA128 are knobs of the straight-line consumer loop: set HOP_WS_NOSER=1 (and HOP_FWD_WS) too"
#endif
// setmaxnreg (HOP_FWD_WS=2) for 2 and 3 consumer warpgroups: a block of
// 384 threads is compiled for 168 registers each, of 512 for 128, and
// producer + consumers must add up to that: 40 + 2 * 232 = 3 * 168,
// 32 + 3 * 160 = 4 * 128.
#ifndef HOP_WS_PREG2
#define HOP_WS_PREG2 40
#endif
#ifndef HOP_WS_CREG2
#define HOP_WS_CREG2 232
#endif
#ifndef HOP_WS_PREG3
#define HOP_WS_PREG3 32
#endif
#ifndef HOP_WS_CREG3
#define HOP_WS_CREG3 160
#endif
// The forward kernels' block sizes (no parentheses inside __launch_bounds__:
// kernels.Declared reads the declarations).
#if HOP_FWD_WS
#define HOP_FWD_THREADS(D) (128 * (HOP_WS_WG(D) + 1))
#else
#define HOP_FWD_THREADS(D) 256
#endif
#define HOP_FWD_THREADS_D64 HOP_FWD_THREADS(64)
#define HOP_FWD_THREADS_D128 HOP_FWD_THREADS(128)

// seq_bounds, first_key: as in attention.cu (the last s with starts[s] <=
// i; the first key position i sees).
__device__ __forceinline__ void seq_bounds(const int* starts, int nseq, int i, int* lo, int* hi) {
    int a = 0, b = nseq - 1;
    while (a < b) {
        int mid = (a + b + 1) >> 1;
        if (starts[mid] <= i) a = mid; else b = mid - 1;
    }
    *lo = starts[a];
    *hi = starts[a + 1];
}

__device__ __forceinline__ int first_key(const int* starts, int nseq, int i, int window) {
    int lo = 0, hi;
    if (starts != nullptr) seq_bounds(starts, nseq, i, &lo, &hi);
    if (window > 0 && i - window + 1 > lo) lo = i - window + 1;
    return lo;
}

// end_query is one past the last query that sees key j (attention.cu's).
__device__ __forceinline__ int end_query(const int* starts, int nseq, int j, int window) {
    int lo, hi;
    seq_bounds(starts, nseq, j, &lo, &hi);
    if (window > 0 && j + window < hi) hi = j + window;
    return hi;
}

#if defined(__CUDA_ARCH_FEAT_SM90_ALL)

__device__ __forceinline__ unsigned int smem_u32(const void* p) {
    unsigned int a;
    asm("{ .reg .u64 t; cvta.to.shared.u64 t, %1; cvt.u32.u64 %0, t; }" : "=r"(a) : "l"(p));
    return a;
}

// cp_async16 copies 16 bytes from global memory to shared address dst, or
// writes 16 zero bytes when ok is false (src is then not read).
__device__ __forceinline__ void cp_async16(unsigned int dst, const void* src, bool ok) {
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(src), "r"(ok ? 16 : 0));
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
__device__ __forceinline__ void cp_async_wait_all() { asm volatile("cp.async.wait_group 0;\n" ::: "memory"); }

// fence_async_smem makes this thread's shared-memory writes (cp.async,
// generic proxy) visible to wgmma's operand reads (async proxy); a barrier
// after it publishes them to the other threads' wgmma.
__device__ __forceinline__ void fence_async_smem() { asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory"); }

__device__ __forceinline__ void wgmma_fence() { asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory"); }
__device__ __forceinline__ void wgmma_commit() { asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory"); }
__device__ __forceinline__ void wgmma_wait_all() { asm volatile("wgmma.wait_group.sync.aligned 0;\n" ::: "memory"); }

// hold_regs keeps the compiler from moving reads of accumulators that a
// wgmma writes asynchronously above the wgmma_wait_all that completes them.
template <int N>
__device__ __forceinline__ void hold_regs(float* r) {
#pragma unroll
    for (int i = 0; i < N; i++) asm volatile("" : "+f"(r[i])::"memory");
}

// smem_desc is the wgmma matrix descriptor of a 128-byte-swizzled operand at
// shared address addr: start address (bits 0-13, in 16-byte units), leading
// byte offset lbo (bits 16-29: unused for K-major swizzled operands; the
// distance between 64-column panels for N-major ones), stride byte offset
// 1024 (bits 32-45: between groups of 8 rows, or of 8 K rows for N-major),
// base offset 0 (panels are 1024-byte aligned), swizzle mode 1 = 128 bytes
// (bits 62-63).
__device__ __forceinline__ unsigned long long smem_desc(unsigned int addr, unsigned int lbo) {
    return (unsigned long long)((addr & 0x3ffff) >> 4) | ((unsigned long long)((lbo & 0x3ffff) >> 4) << 16) |
           ((unsigned long long)(1024 >> 4) << 32) | (1ull << 62);
}

__device__ __forceinline__ unsigned int pack_bf16(float lo, float hi) {
    unsigned int r;
    asm("cvt.rn.bf16x2.f32 %0, %1, %2;\n" : "=r"(r) : "f"(hi), "f"(lo));
    return r;
}

__device__ __forceinline__ float exp2_approx(float x) {
    float y;
    asm("ex2.approx.ftz.f32 %0, %1;\n" : "=f"(y) : "f"(x));
    return y;
}

// wgmma_ss_n128: d[0..64) += A B, A (64 x 16) and B (16 x 128) both in shared memory
// (descriptors da, db), both K-major.
__device__ __forceinline__ void wgmma_ss_n128(float* d, unsigned long long da, unsigned long long db) {
    asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %66, 0;\n"
                 "wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16 {"
                 "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, "
                 "%16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, "
                 "%32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, "
                 "%48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63"
                 "}, %64, %65, p, 1, 1, 0, 0;\n}\n"
                 : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]),
                   "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]),
                   "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]),
                   "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]),
                   "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]),
                   "+f"(d[40]), "+f"(d[41]), "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]),
                   "+f"(d[48]), "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]),
                   "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63])
                 : "l"(da), "l"(db), "r"(1));
}

// wgmma_ss_n64: d[0..32) += A B, A (64 x 16) and B (16 x 64) both in shared memory
// (descriptors da, db), both K-major.
__device__ __forceinline__ void wgmma_ss_n64(float* d, unsigned long long da, unsigned long long db) {
    asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %34, 0;\n"
                 "wgmma.mma_async.sync.aligned.m64n64k16.f32.bf16.bf16 {"
                 "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, "
                 "%16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31"
                 "}, %32, %33, p, 1, 1, 0, 0;\n}\n"
                 : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]),
                   "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]),
                   "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]),
                   "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31])
                 : "l"(da), "l"(db), "r"(1));
}

// wgmma_rs_n64: d[0..32) += A B, A (64 x 16) in registers a[0..4) (the mma.sync
// A fragment of each warp's 16 rows), B (16 x 64) in shared memory, N-major (descriptor db).
__device__ __forceinline__ void wgmma_rs_n64(float* d, const unsigned int* a, unsigned long long db) {
    asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %37, 0;\n"
                 "wgmma.mma_async.sync.aligned.m64n64k16.f32.bf16.bf16 {"
                 "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, "
                 "%16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31"
                 "}, {%32, %33, %34, %35}, %36, p, 1, 1, 1;\n}\n"
                 : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]),
                   "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]),
                   "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]),
                   "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(db), "r"(1));
}

// wgmma_rs_n128: d[0..64) += A B, A (64 x 16) in registers a[0..4) (the mma.sync
// A fragment of each warp's 16 rows), B (16 x 128) in shared memory, N-major (descriptor db).
__device__ __forceinline__ void wgmma_rs_n128(float* d, const unsigned int* a, unsigned long long db) {
    asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %69, 0;\n"
                 "wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16 {"
                 "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, "
                 "%16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, "
                 "%32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, "
                 "%48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63"
                 "}, {%64, %65, %66, %67}, %68, p, 1, 1, 1;\n}\n"
                 : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]),
                   "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]),
                   "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]),
                   "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]),
                   "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]),
                   "+f"(d[40]), "+f"(d[41]), "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]),
                   "+f"(d[48]), "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]),
                   "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(db), "r"(1));
}


// load_tile copies (NT threads, tid one of them) rows [r0, r0+R) of one head (column offset col0, row
// stride `stride` elements, D columns) into the swizzled tile at shared
// address tile (see the head of this file); rows at or past rowEnd are
// zero-filled, so that masked keys never meet stale values (0 * inf).
template <int D, int R, int NT = 256>
__device__ __forceinline__ void load_tile(unsigned int tile, const unsigned short* src, i64 stride, i64 col0, int r0,
                                          int rowEnd, int tid) {
    constexpr int CH = D / 8; // 16-byte chunks a row

    for (int c = tid; c < R * CH; c += NT) {
        const int r = c / CH, ch = c % CH, i = r0 + r;
        const bool ok = i < rowEnd;
        const unsigned int dst = tile + (unsigned int)((ch >> 3) * (R * 128) + r * 128 + (((ch & 7) ^ (r & 7)) << 4));
        cp_async16(dst, ok ? src + (i64)i * stride + col0 + ch * 8 : src, ok);
    }
}

// softmax_tile is attention.cu's: the score accumulators of one tile (rows
// A = g, B = g+8 of the warp) become probabilities in place, updating the
// running max (base 2) and this thread's partial row sums; cA, cB receive
// the factors that rescale the output accumulators. Masked scores are -inf.
template <int NT>
__device__ __forceinline__ void softmax_tile(float (*s)[4], float sl2, float& mA, float& mB, float& lA, float& lB,
                                             float& cA, float& cB) {
    float tA = NEG_INF, tB = NEG_INF;
#pragma unroll
    for (int nt = 0; nt < NT; nt++) {
        tA = fmaxf(tA, fmaxf(s[nt][0], s[nt][1]));
        tB = fmaxf(tB, fmaxf(s[nt][2], s[nt][3]));
    }
    tA = fmaxf(tA, __shfl_xor_sync(0xffffffffu, tA, 1));
    tA = fmaxf(tA, __shfl_xor_sync(0xffffffffu, tA, 2));
    tB = fmaxf(tB, __shfl_xor_sync(0xffffffffu, tB, 1));
    tB = fmaxf(tB, __shfl_xor_sync(0xffffffffu, tB, 2));
    const float nA = fmaxf(mA, tA * sl2), nB = fmaxf(mB, tB * sl2);
    cA = nA == NEG_INF ? 1.0f : exp2_approx(mA - nA);
    cB = nB == NEG_INF ? 1.0f : exp2_approx(mB - nB);
    const float uA = nA == NEG_INF ? 0.0f : nA, uB = nB == NEG_INF ? 0.0f : nB;
    float sumA = 0.0f, sumB = 0.0f;
#pragma unroll
    for (int nt = 0; nt < NT; nt++) {
        s[nt][0] = exp2_approx(fmaf(s[nt][0], sl2, -uA));
        s[nt][1] = exp2_approx(fmaf(s[nt][1], sl2, -uA));
        s[nt][2] = exp2_approx(fmaf(s[nt][2], sl2, -uB));
        s[nt][3] = exp2_approx(fmaf(s[nt][3], sl2, -uB));
        sumA += s[nt][0] + s[nt][1];
        sumB += s[nt][2] + s[nt][3];
    }
    lA = lA * cA + sumA;
    lB = lB * cB + sumB;
    mA = nA;
    mB = nB;
}

// store_pair writes two adjacent output values (one register's worth).
__device__ __forceinline__ void store_pair(void* p, int dt, i64 i, float a, float b) {
    if (dt == DT_BF16) {
        *(unsigned int*)((unsigned short*)p + i) = pack_bf16(a, b);
    } else {
        st(p, dt, i, a);
        st(p, dt, i + 1, b);
    }
}

// attn_fwd_hopper: see the head of this file. Block y takes query block
// gridDim.y-1-y (the last, heaviest, first).
template <int D>
__device__ __forceinline__ void attn_fwd_hopper(void* out, int odt, float* lse, const unsigned short* q,
                                                const unsigned short* k, const unsigned short* v, const int* starts,
                                                int nseq, int Tq, int qOffset, int H, int KVH, float scale, int window,
                                                float softcap) {
    constexpr int BM = HOP_BM, BN = HOP_BN;
    constexpr unsigned int QBYTES = BM * D * 2, KVBYTES = BN * D * 2;
    extern __shared__ __attribute__((aligned(16))) unsigned char hop_smem[];
    // Swizzled panels need 1024-byte alignment; the launch adds 1024 bytes for it.
    const unsigned int base = (smem_u32(hop_smem) + 1023u) & ~1023u;
    const unsigned int Qs = base, Ks = base + QBYTES, Vs = Ks + 2 * KVBYTES; // K, V: two stages each
    const int h = blockIdx.x, kvh = h / (H / KVH);
    const int q0 = (gridDim.y - 1 - blockIdx.y) * BM;
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5, wg = warp >> 2, g = lane >> 2, t = lane & 3;
    const i64 qStride = (i64)H * D, kvStride = (i64)KVH * D;

    const int kEnd = qOffset + min(q0 + BM, Tq) - 1; // last key any query of the block sees
    const int kStart = first_key(starts, nseq, qOffset + q0, window);
    const int nTiles = kEnd >= kStart ? (kEnd - kStart) / BN + 1 : 0;
    load_tile<D, BM>(Qs, q, qStride, (i64)h * D, q0, Tq, tid);
    if (nTiles > 0) {
        load_tile<D, BN>(Ks, k, kvStride, (i64)kvh * D, kStart, kEnd + 1, tid);
        load_tile<D, BN>(Vs, v, kvStride, (i64)kvh * D, kStart, kEnd + 1, tid);
    }
    cp_async_commit();

    // This thread's rows A and B (positions, first visible keys; rows past
    // Tq see nothing), and its warpgroup's 64 rows.
    const int rowA = q0 + 64 * wg + 16 * (warp & 3) + g, rowB = rowA + 8;
    const int posA = qOffset + rowA, posB = qOffset + rowB;
    const int loA = rowA < Tq ? first_key(starts, nseq, posA, window) : 0x7fffffff;
    const int loB = rowB < Tq ? first_key(starts, nseq, posB, window) : 0x7fffffff;
    const int wgRow0 = q0 + 64 * wg;
    const bool wgLive = wgRow0 < Tq;
    const int wgFirstPos = qOffset + wgRow0;
    const int wgLastPos = qOffset + min(wgRow0 + 63, Tq - 1);
    const int wgMinLo = wgLive ? first_key(starts, nseq, wgFirstPos, window) : 0;
    const int wgMaxLo = wgLive ? first_key(starts, nseq, wgLastPos, window) : 0;
    const bool capped = softcap > 0.0f;
    const float sl2 = capped ? LOG2E : scale * LOG2E; // capped scores are already scaled
    const unsigned int qRows = Qs + 64 * wg * 128;    // this warpgroup's rows in each Q panel

    float o[D / 8][4];
#pragma unroll
    for (int i = 0; i < D / 8; i++) o[i][0] = o[i][1] = o[i][2] = o[i][3] = 0.0f;
    float mA = NEG_INF, mB = NEG_INF, lA = 0.0f, lB = 0.0f;

    for (int it = 0; it < nTiles; it++) {
        const int kt = kStart + it * BN;
        cp_async_wait_all();
        fence_async_smem();
        __syncthreads(); // tile `it` is in; every warpgroup is done with tile it-1
        if (it + 1 < nTiles) {
            const unsigned int nb = ((it + 1) & 1) * KVBYTES;
            load_tile<D, BN>(Ks + nb, k, kvStride, (i64)kvh * D, kt + BN, kEnd + 1, tid);
            load_tile<D, BN>(Vs + nb, v, kvStride, (i64)kvh * D, kt + BN, kEnd + 1, tid);
        }
        cp_async_commit();
        if (!wgLive || kt > wgLastPos || kt + BN - 1 < wgMinLo) continue; // warpgroup-uniform
        const unsigned int Kb = Ks + (it & 1) * KVBYTES, Vb = Vs + (it & 1) * KVBYTES;

        // S = Q K^T: head dim / 16 steps of 16 columns, 4 per 64-column panel
        // (32 bytes apart inside the swizzled rows).
        float s[BN / 8][4];
#pragma unroll
        for (int i = 0; i < BN / 8; i++) s[i][0] = s[i][1] = s[i][2] = s[i][3] = 0.0f;
        wgmma_fence();
#pragma unroll
        for (int kc = 0; kc < D / 16; kc++) {
            const unsigned int col = (kc & 3) * 32;
            wgmma_ss_n128(&s[0][0], smem_desc(qRows + (kc >> 2) * (BM * 128) + col, 16),
                          smem_desc(Kb + (kc >> 2) * (BN * 128) + col, 16));
        }
        wgmma_commit();
        wgmma_wait_all();
        hold_regs<BN / 2>(&s[0][0]);

        if (capped) {
#pragma unroll
            for (int nt = 0; nt < BN / 8; nt++) {
#pragma unroll
                for (int e = 0; e < 4; e++) s[nt][e] = softcap * tanhf(s[nt][e] * scale / softcap);
            }
        }
        if (kt < wgMaxLo || kt + BN - 1 > wgFirstPos) { // some pair of this tile is masked
#pragma unroll
            for (int nt = 0; nt < BN / 8; nt++) {
#pragma unroll
                for (int e = 0; e < 4; e++) {
                    const int key = kt + nt * 8 + 2 * t + (e & 1);
                    const bool valid = e < 2 ? (key >= loA && key <= posA) : (key >= loB && key <= posB);
                    if (!valid) s[nt][e] = NEG_INF;
                }
            }
        }
        float cA, cB;
        softmax_tile<BN / 8>(s, sl2, mA, mB, lA, lB, cA, cB);
#pragma unroll
        for (int dn = 0; dn < D / 8; dn++) {
            o[dn][0] *= cA;
            o[dn][1] *= cA;
            o[dn][2] *= cB;
            o[dn][3] *= cB;
        }
        // P's A fragments for the 16-key steps: the accumulators of column
        // tiles 2kc and 2kc+1, rounded to bf16.
        unsigned int pa[BN / 16][4];
#pragma unroll
        for (int kc = 0; kc < BN / 16; kc++) {
            pa[kc][0] = pack_bf16(s[2 * kc][0], s[2 * kc][1]);
            pa[kc][1] = pack_bf16(s[2 * kc][2], s[2 * kc][3]);
            pa[kc][2] = pack_bf16(s[2 * kc + 1][0], s[2 * kc + 1][1]);
            pa[kc][3] = pack_bf16(s[2 * kc + 1][2], s[2 * kc + 1][3]);
        }
        // O += P V: V's rows are the reduction (16 keys = 2048 bytes a step),
        // its 64-column panels BN * 128 bytes apart (the leading byte offset).
        wgmma_fence();
#pragma unroll
        for (int kc = 0; kc < BN / 16; kc++) {
            const unsigned long long dv = smem_desc(Vb + kc * 2048, BN * 128);
            if constexpr (D == 64) {
                wgmma_rs_n64(&o[0][0], pa[kc], dv);
            } else {
                wgmma_rs_n128(&o[0][0], pa[kc], dv);
            }
        }
        wgmma_commit();
        wgmma_wait_all();
        hold_regs<D / 2>(&o[0][0]);
    }
    cp_async_wait_all();
    lA += __shfl_xor_sync(0xffffffffu, lA, 1);
    lA += __shfl_xor_sync(0xffffffffu, lA, 2);
    lB += __shfl_xor_sync(0xffffffffu, lB, 1);
    lB += __shfl_xor_sync(0xffffffffu, lB, 2);
    const float iA = lA > 0.0f ? 1.0f / lA : 0.0f, iB = lB > 0.0f ? 1.0f / lB : 0.0f;
    const i64 col0 = (i64)h * D;
#pragma unroll
    for (int dn = 0; dn < D / 8; dn++) {
        const int d = dn * 8 + 2 * t;
        if (rowA < Tq) store_pair(out, odt, (i64)rowA * qStride + col0 + d, o[dn][0] * iA, o[dn][1] * iA);
        if (rowB < Tq) store_pair(out, odt, (i64)rowB * qStride + col0 + d, o[dn][2] * iB, o[dn][3] * iB);
    }
    if (lse != nullptr && t == 0) {
        if (rowA < Tq) lse[(i64)h * Tq + rowA] = (mA + log2f(lA)) * LN2;
        if (rowB < Tq) lse[(i64)h * Tq + rowB] = (mB + log2f(lB)) * LN2;
    }
}

// wgmma_rs_d adds A (registers) times the N-major tile of D columns at
// descriptor db into d[0..D/2).
template <int D>
__device__ __forceinline__ void wgmma_rs_d(float* d, const unsigned int* a, unsigned long long db) {
    if constexpr (D == 64) {
        wgmma_rs_n64(d, a, db);
    } else {
        wgmma_rs_n128(d, a, db);
    }
}

// cp_async4 copies one 4-byte word, or writes a zero word when ok is false.
__device__ __forceinline__ void cp_async4(unsigned int dst, const void* src, bool ok) {
    asm volatile("cp.async.ca.shared.global [%0], [%1], 4, %2;\n" ::"r"(dst), "l"(src), "r"(ok ? 4 : 0));
}

// store_rows writes a thread's rows A and B (below `rows`) of a [64, D]
// warpgroup accumulator, row r at p + r*stride + col0, times sc.
template <int D>
__device__ __forceinline__ void store_rows(void* p, int dt, const float (*acc)[4], int rowA, int rowB, int rows,
                                           i64 stride, i64 col0, float sc, int t) {
#pragma unroll
    for (int dn = 0; dn < D / 8; dn++) {
        const int d = dn * 8 + 2 * t;
        if (rowA < rows) store_pair(p, dt, (i64)rowA * stride + col0 + d, acc[dn][0] * sc, acc[dn][1] * sc);
        if (rowB < rows) store_pair(p, dt, (i64)rowB * stride + col0 + d, acc[dn][2] * sc, acc[dn][3] * sc);
    }
}

// Backward (attention.cu's maths: P = exp(s - lse), dS = P (dO.v - delta)
// ds/dx; delta from attention_backward_delta). Key or query tiles here
// are 64 rows (HOP_BT).
#define HOP_BT 64

// attn_dq_hopper: a block holds 128 queries of one head (two warpgroups of
// 64) and walks key tiles of 64, double-buffered: S = Q K^T and dP = dO V^T
// (both operands in shared memory, K-major), dS in registers, then
// dQ += dS K with K read N-major. dq = scale * dQ (overwritten). Block y
// takes query block gridDim.y-1-y.
template <int D>
__device__ __forceinline__ void attn_dq_hopper(void* dq, int dqdt, const unsigned short* dout,
                                               const unsigned short* q, const unsigned short* k,
                                               const unsigned short* v, const float* lse, const float* delta,
                                               const int* starts, int nseq, int T, int H, int KVH, float scale,
                                               int window, float softcap) {
    constexpr int BM = HOP_BM, BN = HOP_BT;
    constexpr unsigned int QBYTES = BM * D * 2, KVBYTES = BN * D * 2;
    extern __shared__ __attribute__((aligned(16))) unsigned char hop_smem[];
    const unsigned int base = (smem_u32(hop_smem) + 1023u) & ~1023u;
    const unsigned int Qs = base, dOs = base + QBYTES, Ks = dOs + QBYTES, Vs = Ks + 2 * KVBYTES;
    const int h = blockIdx.x, kvh = h / (H / KVH);
    const int q0 = (gridDim.y - 1 - blockIdx.y) * BM;
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5, wg = warp >> 2, g = lane >> 2, t = lane & 3;
    const i64 qStride = (i64)H * D, kvStride = (i64)KVH * D;

    const int kEnd = min(q0 + BM, T) - 1;
    const int kStart = first_key(starts, nseq, q0, window);
    const int nTiles = kEnd >= kStart ? (kEnd - kStart) / BN + 1 : 0;
    load_tile<D, BM>(Qs, q, qStride, (i64)h * D, q0, T, tid);
    load_tile<D, BM>(dOs, dout, qStride, (i64)h * D, q0, T, tid);
    if (nTiles > 0) {
        load_tile<D, BN>(Ks, k, kvStride, (i64)kvh * D, kStart, kEnd + 1, tid);
        load_tile<D, BN>(Vs, v, kvStride, (i64)kvh * D, kStart, kEnd + 1, tid);
    }
    cp_async_commit();

    const int rowA = q0 + 64 * wg + 16 * (warp & 3) + g, rowB = rowA + 8;
    const int loA = rowA < T ? first_key(starts, nseq, rowA, window) : 0x7fffffff;
    const int loB = rowB < T ? first_key(starts, nseq, rowB, window) : 0x7fffffff;
    const float lA2 = rowA < T ? lse[(i64)h * T + rowA] * LOG2E : 0.0f;
    const float lB2 = rowB < T ? lse[(i64)h * T + rowB] * LOG2E : 0.0f;
    const float dlA = rowA < T ? delta[(i64)h * T + rowA] : 0.0f, dlB = rowB < T ? delta[(i64)h * T + rowB] : 0.0f;
    const int wgRow0 = q0 + 64 * wg;
    const bool wgLive = wgRow0 < T;
    const int wgLast = min(wgRow0 + 63, T - 1);
    const int wgMinLo = wgLive ? first_key(starts, nseq, wgRow0, window) : 0;
    const int wgMaxLo = wgLive ? first_key(starts, nseq, wgLast, window) : 0;
    const bool capped = softcap > 0.0f;
    const float sl2 = capped ? LOG2E : scale * LOG2E;
    const unsigned int qRows = Qs + 64 * wg * 128, dORows = dOs + 64 * wg * 128;

    float dQ[D / 8][4];
#pragma unroll
    for (int i = 0; i < D / 8; i++) dQ[i][0] = dQ[i][1] = dQ[i][2] = dQ[i][3] = 0.0f;

    for (int it = 0; it < nTiles; it++) {
        const int kt = kStart + it * BN;
        cp_async_wait_all();
        fence_async_smem();
        __syncthreads();
        if (it + 1 < nTiles) {
            const unsigned int nb = ((it + 1) & 1) * KVBYTES;
            load_tile<D, BN>(Ks + nb, k, kvStride, (i64)kvh * D, kt + BN, kEnd + 1, tid);
            load_tile<D, BN>(Vs + nb, v, kvStride, (i64)kvh * D, kt + BN, kEnd + 1, tid);
        }
        cp_async_commit();
        if (!wgLive || kt > wgLast || kt + BN - 1 < wgMinLo) continue; // warpgroup-uniform
        const unsigned int Kb = Ks + (it & 1) * KVBYTES, Vb = Vs + (it & 1) * KVBYTES;

        float s[BN / 8][4], dp[BN / 8][4];
#pragma unroll
        for (int i = 0; i < BN / 8; i++) {
            s[i][0] = s[i][1] = s[i][2] = s[i][3] = 0.0f;
            dp[i][0] = dp[i][1] = dp[i][2] = dp[i][3] = 0.0f;
        }
        wgmma_fence();
#pragma unroll
        for (int kc = 0; kc < D / 16; kc++) {
            const unsigned int col = (kc >> 2) * (BM * 128) + (kc & 3) * 32;
            const unsigned int kcol = (kc >> 2) * (BN * 128) + (kc & 3) * 32;
            wgmma_ss_n64(&s[0][0], smem_desc(qRows + col, 16), smem_desc(Kb + kcol, 16));
            wgmma_ss_n64(&dp[0][0], smem_desc(dORows + col, 16), smem_desc(Vb + kcol, 16));
        }
        wgmma_commit();
        wgmma_wait_all();
        hold_regs<BN / 2>(&s[0][0]);
        hold_regs<BN / 2>(&dp[0][0]);

        if (capped) {
#pragma unroll
            for (int nt = 0; nt < BN / 8; nt++) {
#pragma unroll
                for (int e = 0; e < 4; e++) s[nt][e] = softcap * tanhf(s[nt][e] * scale / softcap);
            }
        }
        const bool masked = kt < wgMaxLo || kt + BN - 1 > wgRow0;
        unsigned int da[BN / 16][4];
#pragma unroll
        for (int nt = 0; nt < BN / 8; nt++) {
#pragma unroll
            for (int e = 0; e < 4; e++) {
                const int key = kt + nt * 8 + 2 * t + (e & 1);
                const bool isB = e >= 2;
                const bool valid = !masked || (isB ? (key >= loB && key <= rowB) : (key >= loA && key <= rowA));
                const float p = valid ? exp2_approx(fmaf(s[nt][e], sl2, -(isB ? lB2 : lA2))) : 0.0f;
                float slope = 1.0f;
                if (capped) {
                    const float r = s[nt][e] / softcap;
                    slope = 1.0f - r * r;
                }
                dp[nt][e] = p * (dp[nt][e] - (isB ? dlB : dlA)) * slope;
            }
        }
#pragma unroll
        for (int kc = 0; kc < BN / 16; kc++) {
            da[kc][0] = pack_bf16(dp[2 * kc][0], dp[2 * kc][1]);
            da[kc][1] = pack_bf16(dp[2 * kc][2], dp[2 * kc][3]);
            da[kc][2] = pack_bf16(dp[2 * kc + 1][0], dp[2 * kc + 1][1]);
            da[kc][3] = pack_bf16(dp[2 * kc + 1][2], dp[2 * kc + 1][3]);
        }
        wgmma_fence();
#pragma unroll
        for (int kc = 0; kc < BN / 16; kc++) wgmma_rs_d<D>(&dQ[0][0], da[kc], smem_desc(Kb + kc * 2048, BN * 128));
        wgmma_commit();
        wgmma_wait_all();
        hold_regs<D / 2>(&dQ[0][0]);
    }
    cp_async_wait_all();
    store_rows<D>(dq, dqdt, dQ, rowA, rowB, T, qStride, (i64)h * D, scale, t);
}

// attn_dkv_hopper: a block holds 128 keys of one key/value head (two
// warpgroups of 64) and walks the query heads of its group in query tiles
// of 64 (q, dOut, lse and delta double-buffered). With rows = keys:
// S^T = K Q^T and dP^T = V dO^T (K-major operands in shared memory), P^T
// and dS^T in registers, then dV += P^T dO and dK += dS^T Q with dO and Q
// read N-major. dk = scale * dK and dv = dV (overwritten). Block y takes
// key block y (the first keys of a sequence, which every later query
// sees, come first).
template <int D>
__device__ __forceinline__ void attn_dkv_hopper(void* dk, int dkdt, void* dv, int dvdt, const unsigned short* dout,
                                                const unsigned short* q, const unsigned short* k,
                                                const unsigned short* v, const float* lse, const float* delta,
                                                const int* starts, int nseq, int T, int H, int KVH, float scale,
                                                int window, float softcap) {
    constexpr int BN = HOP_BM, BQ = HOP_BT;
    constexpr unsigned int KBYTES = BN * D * 2, QBYTES = BQ * D * 2;
    extern __shared__ __attribute__((aligned(16))) unsigned char hop_smem[];
    const unsigned int base = (smem_u32(hop_smem) + 1023u) & ~1023u;
    const unsigned int Ks = base, Vs = base + KBYTES, Qs = Vs + KBYTES, dOs = Qs + 2 * QBYTES;
    const unsigned int lseS = dOs + 2 * QBYTES, deltaS = lseS + 2 * BQ * 4; // [2][BQ] floats each
    // The same arrays as generic pointers, for reading.
    const float* lseP = (const float*)(hop_smem + (lseS - smem_u32(hop_smem)));
    const float* deltaP = (const float*)(hop_smem + (deltaS - smem_u32(hop_smem)));
    const int kvh = blockIdx.x, group = H / KVH;
    const int j0 = blockIdx.y * BN;
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5, wg = warp >> 2, g = lane >> 2, t = lane & 3;
    const i64 qStride = (i64)H * D, kvStride = (i64)KVH * D;

    const int kLast = min(j0 + BN, T) - 1;
    const int qEnd = end_query(starts, nseq, kLast, window); // one past the last query any key here sees
    const int nQT = qEnd > j0 ? (qEnd - j0 + BQ - 1) / BQ : 0;
    const int nTiles = nQT * group;
    // load_q fills stage nb with query tile `it` (head, first query).
    auto load_q = [&](int nb, int it) {
        const int hq = kvh * group + it / nQT, qt = j0 + (it % nQT) * BQ;
        load_tile<D, BQ>(Qs + nb * QBYTES, q, qStride, (i64)hq * D, qt, qEnd, tid);
        load_tile<D, BQ>(dOs + nb * QBYTES, dout, qStride, (i64)hq * D, qt, qEnd, tid);
        if (tid < 2 * BQ) {
            const int c = tid & (BQ - 1), i = qt + c;
            const bool ok = i < qEnd;
            const float* src = tid < BQ ? lse : delta;
            const unsigned int dst = (tid < BQ ? lseS : deltaS) + (nb * BQ + c) * 4;
            cp_async4(dst, ok ? src + (i64)hq * T + i : src, ok);
        }
    };
    load_tile<D, BN>(Ks, k, kvStride, (i64)kvh * D, j0, T, tid);
    load_tile<D, BN>(Vs, v, kvStride, (i64)kvh * D, j0, T, tid);
    if (nTiles > 0) load_q(0, 0);
    cp_async_commit();

    const int keyA = j0 + 64 * wg + 16 * (warp & 3) + g, keyB = keyA + 8;
    const int endA = keyA < T ? end_query(starts, nseq, keyA, window) : 0;
    const int endB = keyB < T ? end_query(starts, nseq, keyB, window) : 0;
    const int wgKey0 = j0 + 64 * wg;
    const bool wgLive = wgKey0 < T;
    const int wgKeyLast = min(wgKey0 + 63, T - 1);
    const int wgMinEnd = wgLive ? end_query(starts, nseq, wgKey0, window) : 0;
    const int wgMaxEnd = wgLive ? end_query(starts, nseq, wgKeyLast, window) : 0;
    const bool capped = softcap > 0.0f;
    const float sl2 = capped ? LOG2E : scale * LOG2E;
    const unsigned int kRows = Ks + 64 * wg * 128, vRows = Vs + 64 * wg * 128;

    float dK[D / 8][4], dV[D / 8][4];
#pragma unroll
    for (int i = 0; i < D / 8; i++) {
        dK[i][0] = dK[i][1] = dK[i][2] = dK[i][3] = 0.0f;
        dV[i][0] = dV[i][1] = dV[i][2] = dV[i][3] = 0.0f;
    }

    for (int it = 0; it < nTiles; it++) {
        const int qt = j0 + (it % nQT) * BQ;
        cp_async_wait_all();
        fence_async_smem();
        __syncthreads();
        if (it + 1 < nTiles) load_q((it + 1) & 1, it + 1);
        cp_async_commit();
        if (!wgLive || qt >= wgMaxEnd || qt + BQ - 1 < wgKey0) continue; // warpgroup-uniform
        const int cb = it & 1;
        const unsigned int Qb = Qs + cb * QBYTES, dOb = dOs + cb * QBYTES;

        float s[BQ / 8][4], dp[BQ / 8][4];
#pragma unroll
        for (int i = 0; i < BQ / 8; i++) {
            s[i][0] = s[i][1] = s[i][2] = s[i][3] = 0.0f;
            dp[i][0] = dp[i][1] = dp[i][2] = dp[i][3] = 0.0f;
        }
        wgmma_fence();
#pragma unroll
        for (int kc = 0; kc < D / 16; kc++) {
            const unsigned int col = (kc >> 2) * (BN * 128) + (kc & 3) * 32;
            const unsigned int qcol = (kc >> 2) * (BQ * 128) + (kc & 3) * 32;
            wgmma_ss_n64(&s[0][0], smem_desc(kRows + col, 16), smem_desc(Qb + qcol, 16));
            wgmma_ss_n64(&dp[0][0], smem_desc(vRows + col, 16), smem_desc(dOb + qcol, 16));
        }
        wgmma_commit();
        wgmma_wait_all();
        hold_regs<BQ / 2>(&s[0][0]);
        hold_regs<BQ / 2>(&dp[0][0]);

        if (capped) {
#pragma unroll
            for (int nt = 0; nt < BQ / 8; nt++) {
#pragma unroll
                for (int e = 0; e < 4; e++) s[nt][e] = softcap * tanhf(s[nt][e] * scale / softcap);
            }
        }
        // Unmasked when every query of the tile comes at or after every key
        // of the warpgroup and before the first key's end.
        const bool masked = qt < wgKeyLast || qt + BQ > wgMinEnd;
        const float* lseB = lseP + cb * BQ;
        const float* deltaB = deltaP + cb * BQ;
#pragma unroll
        for (int nt = 0; nt < BQ / 8; nt++) {
#pragma unroll
            for (int e = 0; e < 4; e++) {
                const int col = nt * 8 + 2 * t + (e & 1);
                const int i = qt + col;
                const bool isB = e >= 2;
                const bool valid = !masked || (isB ? (i >= keyB && i < endB) : (i >= keyA && i < endA));
                const float p = valid ? exp2_approx(fmaf(s[nt][e], sl2, -lseB[col] * LOG2E)) : 0.0f;
                float slope = 1.0f;
                if (capped) {
                    const float r = s[nt][e] / softcap;
                    slope = 1.0f - r * r;
                }
                dp[nt][e] = p * (dp[nt][e] - deltaB[col]) * slope;
                s[nt][e] = p;
            }
        }
        unsigned int pa[BQ / 16][4], da[BQ / 16][4];
#pragma unroll
        for (int kc = 0; kc < BQ / 16; kc++) {
            pa[kc][0] = pack_bf16(s[2 * kc][0], s[2 * kc][1]);
            pa[kc][1] = pack_bf16(s[2 * kc][2], s[2 * kc][3]);
            pa[kc][2] = pack_bf16(s[2 * kc + 1][0], s[2 * kc + 1][1]);
            pa[kc][3] = pack_bf16(s[2 * kc + 1][2], s[2 * kc + 1][3]);
            da[kc][0] = pack_bf16(dp[2 * kc][0], dp[2 * kc][1]);
            da[kc][1] = pack_bf16(dp[2 * kc][2], dp[2 * kc][3]);
            da[kc][2] = pack_bf16(dp[2 * kc + 1][0], dp[2 * kc + 1][1]);
            da[kc][3] = pack_bf16(dp[2 * kc + 1][2], dp[2 * kc + 1][3]);
        }
        wgmma_fence();
#pragma unroll
        for (int kc = 0; kc < BQ / 16; kc++) {
            wgmma_rs_d<D>(&dV[0][0], pa[kc], smem_desc(dOb + kc * 2048, BQ * 128));
            wgmma_rs_d<D>(&dK[0][0], da[kc], smem_desc(Qb + kc * 2048, BQ * 128));
        }
        wgmma_commit();
        wgmma_wait_all();
        hold_regs<D / 2>(&dK[0][0]);
        hold_regs<D / 2>(&dV[0][0]);
    }
    cp_async_wait_all();
    store_rows<D>(dk, dkdt, dK, keyA, keyB, T, kvStride, (i64)kvh * D, scale, t);
    store_rows<D>(dv, dvdt, dV, keyA, keyB, T, kvStride, (i64)kvh * D, 1.0f, t);
}

// Fused backward (FlashAttention 3's; opt-in with HOP_BWD_FUSED=1 in
// WHET_NVRTC_DEFINES, engine/cuda AttnBwdFusedEnv; not yet run on a GPU):
// attention_backward_fused_hopper_d<D> is attn_dkv_hopper (a block holds 128
// keys of one key/value head, two warpgroups of 64, and walks the query
// heads of its group in 64-query tiles) plus dQ: per tile, each warpgroup
// stores its dS^T transposed into shared memory (dS, 64 queries x 128 keys,
// two 128-byte-swizzled panels of 64 keys, panel w from warpgroup w) and
//   D = 64:  warpgroup w adds dS[:, its keys] K[its keys, :] (64 x 64),
//   D = 128: warpgroup w adds dS[:, all 128 keys] K[:, 64w..64w+63],
// both as m64n64 wgmma from shared memory (dS K-major, K N-major), and adds
// the result into dqAcc (fp32, [T][H*D], zeroed before) with red.global.add.
// 5 matrix products instead of the split's 7 (S and dP are computed once),
// one kernel instead of two; the order of the fp32 additions into dqAcc
// varies from run to run, so dq is not bit-equal across reruns (the split
// kernels stay the deterministic path). attention_dq_convert_hopper then
// writes dq = scale * dqAcc.
//   HOP_BWD_STS=1     stores dS with 16-bit st.shared instead of stmatrix.trans
//   HOP_BWD_RED_V2=1  adds pairs with red.global.add.v2.f32 (sm_90) instead of two scalar reds
//   HOP_BWD_DQ_BULK=1 stages each warpgroup's 64 x 64 dQ in shared memory (rows 272 bytes
//                     apart) and adds it row by row with bulk async reductions (256 bytes an
//                     operation, issued by the warpgroup's first warp) instead of red.global
//   HOP_BWD_DQ_XCHG=1 at D = 64: the warpgroups swap halves of their dQ (each over its own
//                     keys) through shared memory, and each adds the sum of its 32 columns,
//                     so dqAcc takes one addition per element and key block instead of two
//   HOP_BWD_RED_V4=1  adds four floats a red.global.add.v4.f32 (sm_90): lanes t and t^1 of a
//                     quad swap one pair (shfl.xor 1), so the even lane holds 4 columns of
//                     its row A and the odd one 4 of its row B; a quarter of the scalar
//                     reductions (dqAcc's reductions bound the d64 kernel: v2 gave +25 %)
//   HOP_BWD_Q128=1    at D = 64: 128-query tiles (FlashAttention 3's d64 shape): S^T and dP^T
//                     are 64 keys x 128 queries a warpgroup (m64n128), dK/dV take 8 k-steps a
//                     tile, and warpgroup w computes dQ for the tile's query rows 64w..64w+63
//                     over all 128 keys (both dS panels, a barrier of the block), so each dqAcc
//                     element takes one addition per key block and the per-tile barriers and
//                     waits are spread over twice the work; not with HOP_BWD_DQ_BULK / _XCHG
//   HOP_BWD_ZINIT=1   no zeroing of S, dP and dQ: their first wgmma has scale-d = 0 (writes
//                     A B instead of adding it), so no non-wgmma instruction defines an
//                     accumulator while the dK/dV wgmma are in flight (ptxas C7515/C7519 at
//                     D = 128: it serialised the wgmma); P and dS's packed registers are
//                     pinned before wgmma.fence (hold_regs_u)
//   HOP_BWD_DKV_WAIT=1 waits for the dK/dV wgmma before the dQ wgmma: their register
//                     operands (P, dS: 32 registers) are free before dQ's 32 accumulators
//                     are live (register pressure at D = 128, 76 bytes spilled)
//   HOP_BWD_DK_SS=1   dK = dS^T Q reads dS^T from the warpgroup's dS panel in shared memory
//                     (M-major A, after a barrier of the warpgroup) instead of registers:
//                     16 fewer registers live during the dK/dV wgmma
#ifndef HOP_BWD_FUSED
#define HOP_BWD_FUSED 0
#endif
#ifndef HOP_BWD_STS
#define HOP_BWD_STS 0
#endif
#ifndef HOP_BWD_RED_V2
#define HOP_BWD_RED_V2 0
#endif
#ifndef HOP_BWD_DQ_BULK
#define HOP_BWD_DQ_BULK 0
#endif
#ifndef HOP_BWD_DQ_XCHG
#define HOP_BWD_DQ_XCHG 0
#endif
#ifndef HOP_BWD_ZINIT
#define HOP_BWD_ZINIT 0
#endif
#ifndef HOP_BWD_RED_V4
#define HOP_BWD_RED_V4 0
#endif
#ifndef HOP_BWD_Q128
#define HOP_BWD_Q128 0
#endif
#if HOP_BWD_Q128 && (HOP_BWD_DQ_BULK || HOP_BWD_DQ_XCHG)
#error "HOP_BWD_Q128 does not combine with HOP_BWD_DQ_BULK or HOP_BWD_DQ_XCHG"
#endif
#ifndef HOP_BWD_DKV_WAIT
#define HOP_BWD_DKV_WAIT 0
#endif
#ifndef HOP_BWD_DK_SS
#define HOP_BWD_DK_SS 0
#endif
// One-warpgroup blocks of the reordered kernel (attn_bwd_fused_ovl):
// HOP_BWD_WG1=1 at every head dim, HOP_BWD_WG1_D64=1 at D = 64 only (the
// d128 kernel keeps two warpgroups: one-warpgroup blocks measured faster at
// d64 and slower at d128, tools/gpu/attn-bwd2). A separate name rather than
// a value of HOP_BWD_WG1, so that every test of HOP_BWD_WG1 keeps meaning
// "all head dims". HOP_BWD_NWG(D) is the one rule for the warpgroups a
// block at head dim D; the kernels' block size (HOP_BWD_THREADS_D64/_D128)
// and every shape of attn_bwd_fused_ovl follow it.
#ifndef HOP_BWD_WG1
#define HOP_BWD_WG1 0
#endif
#ifndef HOP_BWD_WG1_D64
#define HOP_BWD_WG1_D64 0
#endif
#define HOP_BWD_NWG(D) (HOP_BWD_WG1 || (HOP_BWD_WG1_D64 && (D) == 64) ? 1 : 2)
// HOP_DQ_ROW: the byte stride of the dQ staging rows (HOP_BWD_DQ_BULK).
#define HOP_DQ_ROW 272
#if HOP_BWD_FUSED

// wgmma_ss_n64_bt: d[0..32) += A B, A (64 x 16) K-major and B (16 x 64)
// N-major, both in shared memory (descriptors da, db).
__device__ __forceinline__ void wgmma_ss_n64_bt(float* d, unsigned long long da, unsigned long long db) {
    asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %34, 0;\n"
                 "wgmma.mma_async.sync.aligned.m64n64k16.f32.bf16.bf16 {"
                 "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, "
                 "%16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31"
                 "}, %32, %33, p, 1, 1, 0, 1;\n}\n"
                 : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]),
                   "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]),
                   "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]),
                   "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31])
                 : "l"(da), "l"(db), "r"(1));
}

// wgmma_ss_n64_z: wgmma_ss_n64 with scale-d: accum 0 writes d = A B
// without reading d (HOP_BWD_ZINIT), 1 adds.
__device__ __forceinline__ void wgmma_ss_n64_z(float* d, unsigned long long da, unsigned long long db, int accum) {
    asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %34, 0;\n"
                 "wgmma.mma_async.sync.aligned.m64n64k16.f32.bf16.bf16 {"
                 "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, "
                 "%16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31"
                 "}, %32, %33, p, 1, 1, 0, 0;\n}\n"
                 : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]),
                   "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]),
                   "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]),
                   "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31])
                 : "l"(da), "l"(db), "r"(accum));
}

// wgmma_ss_n128_z: wgmma_ss_n128 with scale-d (see wgmma_ss_n64_z).
__device__ __forceinline__ void wgmma_ss_n128_z(float* d, unsigned long long da, unsigned long long db, int accum) {
    asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %66, 0;\n"
                 "wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16 {"
                 "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, "
                 "%16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, "
                 "%32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, "
                 "%48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63"
                 "}, %64, %65, p, 1, 1, 0, 0;\n}\n"
                 : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]),
                   "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]),
                   "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]),
                   "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]),
                   "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]),
                   "+f"(d[40]), "+f"(d[41]), "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]),
                   "+f"(d[48]), "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]),
                   "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63])
                 : "l"(da), "l"(db), "r"(accum));
}

// wgmma_ss_nq_z: the S^T / dP^T product of the fused backward, N = BQ
// (64 or 128 queries), with scale-d.
template <int BQ>
__device__ __forceinline__ void wgmma_ss_nq_z(float* d, unsigned long long da, unsigned long long db, int accum) {
    if constexpr (BQ == 128) {
        wgmma_ss_n128_z(d, da, db, accum);
    } else {
        wgmma_ss_n64_z(d, da, db, accum);
    }
}

// wgmma_ss_n64_bt_z: wgmma_ss_n64_bt with scale-d (see wgmma_ss_n64_z).
__device__ __forceinline__ void wgmma_ss_n64_bt_z(float* d, unsigned long long da, unsigned long long db, int accum) {
    asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %34, 0;\n"
                 "wgmma.mma_async.sync.aligned.m64n64k16.f32.bf16.bf16 {"
                 "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, "
                 "%16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31"
                 "}, %32, %33, p, 1, 1, 0, 1;\n}\n"
                 : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]),
                   "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]),
                   "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]),
                   "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31])
                 : "l"(da), "l"(db), "r"(accum));
}

// wgmma_ss_tn_d: d[0..D/2) += A B with A (64 x 16) M-major and B (16 x D)
// N-major, both in shared memory (descriptors da, db): dK = dS^T Q from the
// dS panel (HOP_BWD_DK_SS).
template <int D>
__device__ __forceinline__ void wgmma_ss_tn_d(float* d, unsigned long long da, unsigned long long db) {
    if constexpr (D == 64) {
        asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %34, 0;\n"
                     "wgmma.mma_async.sync.aligned.m64n64k16.f32.bf16.bf16 {"
                     "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, "
                     "%16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31"
                     "}, %32, %33, p, 1, 1, 1, 1;\n}\n"
                     : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]),
                       "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]),
                       "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]),
                       "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31])
                     : "l"(da), "l"(db), "r"(1));
    } else {
        asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %66, 0;\n"
                     "wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16 {"
                     "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, "
                     "%16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, "
                     "%32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, "
                     "%48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63"
                     "}, %64, %65, p, 1, 1, 1, 1;\n}\n"
                     : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]),
                       "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]),
                       "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]),
                       "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]),
                       "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]),
                       "+f"(d[40]), "+f"(d[41]), "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]),
                       "+f"(d[48]), "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]),
                       "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63])
                     : "l"(da), "l"(db), "r"(1));
    }
}

// hold_regs_u pins the definitions of r[0..N) (wgmma register operands)
// before the next volatile asm: pack_bf16 is a plain asm, which the
// compiler may otherwise sink past wgmma_fence to its wgmma, where ptxas
// injects a warpgroup.arrive (C7519) and may serialise (HOP_BWD_ZINIT).
template <int N>
__device__ __forceinline__ void hold_regs_u(unsigned int* r) {
#pragma unroll
    for (int i = 0; i < N; i++) asm volatile("" : "+r"(r[i])::"memory");
}

// bar_sync_n waits at named barrier id (1..15; __syncthreads is 0) for n
// threads, a multiple of 32.
__device__ __forceinline__ void bar_sync_n(int id, int n) {
    asm volatile("bar.sync %0, %1;\n" ::"r"(id), "r"(n) : "memory");
}

// stmatrix_x4_trans stores four 8x8 bf16 matrices, transposed: register
// r[i] of lane l holds row l/4, columns 2(l%4), 2(l%4)+1 of matrix i, which
// become column l/4 of rows 2(l%4), 2(l%4)+1 at the 16-byte rows whose
// addresses lanes 8i..8i+7 give (row j of matrix i from lane 8i+j).
__device__ __forceinline__ void stmatrix_x4_trans(unsigned int addr, const unsigned int* r) {
    asm volatile("stmatrix.sync.aligned.m8n8.x4.trans.shared.b16 [%0], {%1, %2, %3, %4};\n" ::"r"(addr), "r"(r[0]),
                 "r"(r[1]), "r"(r[2]), "r"(r[3])
                 : "memory");
}

// st_shared_bf16 stores v, rounded to bf16 as pack_bf16 rounds, at shared address addr.
__device__ __forceinline__ void st_shared_bf16(unsigned int addr, float v) {
    unsigned short h;
    asm("cvt.rn.bf16.f32 %0, %1;\n" : "=h"(h) : "f"(v));
    asm volatile("st.shared.b16 [%0], %1;\n" ::"r"(addr), "h"(h) : "memory");
}

// red_add2 adds a and b into p[0] and p[1] (global memory, fp32).
__device__ __forceinline__ void red_add2(float* p, float a, float b) {
#if HOP_BWD_RED_V2
    asm volatile("red.global.add.v2.f32 [%0], {%1, %2};\n" ::"l"(p), "f"(a), "f"(b) : "memory");
#else
    asm volatile("red.global.add.f32 [%0], %1;\n" ::"l"(p), "f"(a) : "memory");
    asm volatile("red.global.add.f32 [%0], %1;\n" ::"l"(p + 1), "f"(b) : "memory");
#endif
}

// red_add4 adds a, b, c, d into p[0..3] (global memory, fp32, 16-byte aligned).
__device__ __forceinline__ void red_add4(float* p, float a, float b, float c, float d) {
    asm volatile("red.global.add.v4.f32 [%0], {%1, %2, %3, %4};\n" ::"l"(p), "f"(a), "f"(b), "f"(c), "f"(d) : "memory");
}

#if HOP_BWD_DQ_BULK && __CUDA_ARCH__ >= 900
// bulk_reduce_add adds bytes (a multiple of 16) of fp32 at shared address src
// into global p (16-byte aligned), asynchronously (bulk async-group).
__device__ __forceinline__ void bulk_reduce_add(float* p, unsigned int src, unsigned int bytes) {
    asm volatile("cp.reduce.async.bulk.global.shared::cta.bulk_group.add.f32 [%0], [%1], %2;\n" ::"l"(p), "r"(src),
                 "r"(bytes)
                 : "memory");
}
__device__ __forceinline__ void bulk_commit() { asm volatile("cp.async.bulk.commit_group;\n" ::: "memory"); }
// bulk_wait_read waits until this thread's bulk reductions have read their
// shared-memory source; bulk_wait_all until they are done.
__device__ __forceinline__ void bulk_wait_read() { asm volatile("cp.async.bulk.wait_group.read 0;\n" ::: "memory"); }
__device__ __forceinline__ void bulk_wait_all() { asm volatile("cp.async.bulk.wait_group 0;\n" ::: "memory"); }
#endif

// st_shared_f32 / ld_shared_f32 store and load one float at shared address addr.
__device__ __forceinline__ void st_shared_f32(unsigned int addr, float a) {
    asm volatile("st.shared.f32 [%0], %1;\n" ::"r"(addr), "f"(a) : "memory");
}
__device__ __forceinline__ float ld_shared_f32(unsigned int addr) {
    float a;
    asm volatile("ld.shared.f32 %0, [%1];\n" : "=f"(a) : "r"(addr) : "memory");
    return a;
}

// st_shared_f32x2 stores a and b at shared address addr (8-byte aligned).
__device__ __forceinline__ void st_shared_f32x2(unsigned int addr, float a, float b) {
    asm volatile("st.shared.v2.f32 [%0], {%1, %2};\n" ::"r"(addr), "f"(a), "f"(b) : "memory");
}

#ifndef HOP_BWD_OVL
#define HOP_BWD_OVL 0
#endif
#ifndef HOP_BWD_DQT
#define HOP_BWD_DQT 0
#endif
#ifndef HOP_BWD_LATEDV
#define HOP_BWD_LATEDV 0
#endif
#if (HOP_BWD_WG1 || HOP_BWD_WG1_D64) && !HOP_BWD_OVL
#error "HOP_BWD_WG1 and HOP_BWD_WG1_D64 need HOP_BWD_OVL"
#endif
#if HOP_BWD_DQT && (HOP_BWD_Q128 || HOP_BWD_DQ_BULK || HOP_BWD_DQ_XCHG)
#error "HOP_BWD_DQT does not combine with HOP_BWD_Q128, _DQ_BULK or _DQ_XCHG"
#endif
#if HOP_BWD_OVL && (HOP_BWD_Q128 || HOP_BWD_DQ_BULK || HOP_BWD_DQ_XCHG || HOP_BWD_DK_SS || HOP_BWD_STS || HOP_BWD_DKV_WAIT || HOP_BWD_RED_V4)
#error "HOP_BWD_OVL does not combine with HOP_BWD_Q128, _DQ_BULK, _DQ_XCHG, _DK_SS, _STS, _DKV_WAIT or _RED_V4"
#endif

#if HOP_BWD_DQT && __CUDA_ARCH__ >= 900
__device__ __forceinline__ void dqt_reduce_add(float* p, unsigned int src, unsigned int bytes) {
    asm volatile("cp.reduce.async.bulk.global.shared::cta.bulk_group.add.f32 [%0], [%1], %2;\n" ::"l"(p), "r"(src),
                 "r"(bytes)
                 : "memory");
}
__device__ __forceinline__ void dqt_commit() { asm volatile("cp.async.bulk.commit_group;\n" ::: "memory"); }
// dqt_wait_read1: all but this thread's most recent bulk group have read their source.
__device__ __forceinline__ void dqt_wait_read1() { asm volatile("cp.async.bulk.wait_group.read 1;\n" ::: "memory"); }
__device__ __forceinline__ void dqt_wait_all() { asm volatile("cp.async.bulk.wait_group 0;\n" ::: "memory"); }
#endif

#if HOP_BWD_OVL || HOP_BWD_DQT
// ld_shared_f32x2 loads the two floats at shared address addr (8-byte aligned).
__device__ __forceinline__ void ld_shared_f32x2(unsigned int addr, float& a, float& b) {
    asm volatile("ld.shared.v2.f32 {%0, %1}, [%2];\n" : "=f"(a), "=f"(b) : "r"(addr) : "memory");
}

// syncwarp_all: __syncwarp() of the whole warp (memory ordering among its lanes).
__device__ __forceinline__ void syncwarp_all() { asm volatile("bar.warp.sync 0xffffffff;\n" ::: "memory"); }

// OVL_DESC(base, off, lbo) is smem_desc(base + off, lbo). HOP_BWD_DESC=1
// writes it as smem_desc(base, lbo) plus off / 16 in the start-address
// field (off a constant multiple of 16; shared addresses stay below 2^18,
// so the 14-bit field cannot carry): one 64-bit add a wgmma operand in
// place of the masking, shifting and or-ing, with the base descriptors
// shared by all k-steps.
#ifndef HOP_BWD_DESC
#define HOP_BWD_DESC 0
#endif
#if HOP_BWD_DESC
#define OVL_DESC(base, off, lbo) (smem_desc((base), (lbo)) + (unsigned long long)((unsigned int)(off) >> 4))
#else
#define OVL_DESC(base, off, lbo) smem_desc((base) + (off), (lbo))
#endif

// ovl_ds: dS = P (dP - delta) in place of dP (no soft-cap), P in s, this
// thread's delta pairs at shared address deltaB + nt * 32.
template <int BQ>
__device__ __forceinline__ void ovl_ds(float (*s)[4], float (*dp)[4], unsigned int deltaB) {
#pragma unroll
    for (int nt = 0; nt < BQ / 8; nt++) {
        float dx, dy;
        ld_shared_f32x2(deltaB + nt * 32, dx, dy);
        dp[nt][0] = s[nt][0] * (dp[nt][0] - dx);
        dp[nt][1] = s[nt][1] * (dp[nt][1] - dy);
        dp[nt][2] = s[nt][2] * (dp[nt][2] - dx);
        dp[nt][3] = s[nt][3] * (dp[nt][3] - dy);
    }
}

__device__ __forceinline__ void st_shared_f32x4(unsigned int addr, float a, float b, float c, float d) {
    asm volatile("st.shared.v4.f32 [%0], {%1, %2, %3, %4};\n" ::"r"(addr), "f"(a), "f"(b), "f"(c), "f"(d) : "memory");
}
#endif

// attn_bwd_fused_hopper: see above. Block y takes key block y.
template <int D>
__device__ __forceinline__ void attn_bwd_fused_hopper(float* dqAcc, void* dk, int dkdt, void* dv, int dvdt,
                                                      const unsigned short* dout, const unsigned short* q,
                                                      const unsigned short* k, const unsigned short* v,
                                                      const float* lse, const float* delta, const int* starts,
                                                      int nseq, int T, int H, int KVH, float scale, int window,
                                                      float softcap) {
    // HOP_BWD_Q128 at D = 64: 128-query tiles, dQ split by query rows (splitM).
    constexpr bool splitM = D == 64 && HOP_BWD_Q128;
    constexpr int BN = HOP_BM, BQ = splitM ? 2 * HOP_BT : HOP_BT;
    constexpr unsigned int KBYTES = BN * D * 2, QBYTES = BQ * D * 2, DSBYTES = BQ * BN * 2;
    // D = 128: dQ's columns split between the warpgroups (both read all of
    // dS, a barrier of the block); D = 64: its keys (each warpgroup reads
    // its own panel, a barrier of the warpgroup; twice the additions).
    constexpr bool splitN = D == 128;
    // xchg (HOP_BWD_DQ_XCHG, D = 64): the warpgroups swap halves of dQ.
    constexpr bool xchg = !splitN && HOP_BWD_DQ_XCHG;
    extern __shared__ __attribute__((aligned(16))) unsigned char hop_smem[];
    const unsigned int base = (smem_u32(hop_smem) + 1023u) & ~1023u;
    const unsigned int Ks = base, Vs = base + KBYTES, Qs = Vs + KBYTES, dOs = Qs + 2 * QBYTES;
    const unsigned int dSs = dOs + 2 * QBYTES;
    const unsigned int lseS = dSs + DSBYTES, deltaS = lseS + 2 * BQ * 4; // [2][BQ] floats each
    // dQ staging (HOP_BWD_DQ_BULK): [2 warpgroups][64 rows] of HOP_DQ_ROW bytes.
    const unsigned int dQs = deltaS + 2 * BQ * 4;
    // dQ halves swapped (HOP_BWD_DQ_XCHG): [2 warpgroups][16 values][128 threads] floats.
    const unsigned int xch = dQs + 2 * BQ * HOP_DQ_ROW;
    const float* lseP = (const float*)(hop_smem + (lseS - smem_u32(hop_smem)));
    const float* deltaP = (const float*)(hop_smem + (deltaS - smem_u32(hop_smem)));
    const int kvh = blockIdx.x, group = H / KVH;
    const int j0 = blockIdx.y * BN;
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5, wg = warp >> 2, g = lane >> 2, t = lane & 3;
    const i64 qStride = (i64)H * D, kvStride = (i64)KVH * D;

    const int kLast = min(j0 + BN, T) - 1;
    const int qEnd = end_query(starts, nseq, kLast, window);
    const int nQT = qEnd > j0 ? (qEnd - j0 + BQ - 1) / BQ : 0;
    const int nTiles = nQT * group;
    auto load_q = [&](int nb, int it) {
        const int hq = kvh * group + it / nQT, qt = j0 + (it % nQT) * BQ;
        load_tile<D, BQ>(Qs + nb * QBYTES, q, qStride, (i64)hq * D, qt, qEnd, tid);
        load_tile<D, BQ>(dOs + nb * QBYTES, dout, qStride, (i64)hq * D, qt, qEnd, tid);
        if (tid < 2 * BQ) {
            const int c = tid & (BQ - 1), i = qt + c;
            const bool ok = i < qEnd;
            const float* src = tid < BQ ? lse : delta;
            const unsigned int dst = (tid < BQ ? lseS : deltaS) + (nb * BQ + c) * 4;
            cp_async4(dst, ok ? src + (i64)hq * T + i : src, ok);
        }
    };
    load_tile<D, BN>(Ks, k, kvStride, (i64)kvh * D, j0, T, tid);
    load_tile<D, BN>(Vs, v, kvStride, (i64)kvh * D, j0, T, tid);
    if (nTiles > 0) load_q(0, 0);
    cp_async_commit();

    const int keyA = j0 + 64 * wg + 16 * (warp & 3) + g, keyB = keyA + 8;
    const int endA = keyA < T ? end_query(starts, nseq, keyA, window) : 0;
    const int endB = keyB < T ? end_query(starts, nseq, keyB, window) : 0;
    const int wgKey0 = j0 + 64 * wg;
    const int wgKeyLast = min(wgKey0 + 63, T - 1);
    const int wgMinEnd = wgKey0 < T ? end_query(starts, nseq, wgKey0, window) : 0;
    // One past the last query that any key of warpgroup 0 or 1 sees (0: no keys).
    const int maxEnd0 = end_query(starts, nseq, min(j0 + 63, T - 1), window);
    const int maxEnd1 = j0 + 64 < T ? end_query(starts, nseq, min(j0 + 127, T - 1), window) : 0;
    const bool capped = softcap > 0.0f;
    const float sl2 = capped ? LOG2E : scale * LOG2E;
    const unsigned int kRows = Ks + 64 * wg * 128, vRows = Vs + 64 * wg * 128;
    // This thread's stmatrix row address (kc = 0) in its warpgroup's dS panel.
    const int si = lane >> 3, sj = lane & 7;
    const unsigned int stAddr = dSs + wg * (BQ * 128) + (8 * (si >> 1) + sj) * 128 + (((2 * (warp & 3) + (si & 1)) ^ sj) << 4);

#if HOP_BWD_DQT
    // HOP_BWD_DQT (see attn_bwd_fused_ovl): this lane's float4 in its warp's
    // staging slot 0 at dQs ([slot][warpgroup][warp] of 4 KB), the tiled
    // accumulator's row tiles.
    const int nRT = (T + 63) / 64;
    const unsigned int stg = dQs + (unsigned int)wg * 16384u + (unsigned int)(warp & 3) * 4096u + (unsigned int)lane * 16u;
    int nred = 0;
#endif
    float dK[D / 8][4], dV[D / 8][4];
#pragma unroll
    for (int i = 0; i < D / 8; i++) {
        dK[i][0] = dK[i][1] = dK[i][2] = dK[i][3] = 0.0f;
        dV[i][0] = dV[i][1] = dV[i][2] = dV[i][3] = 0.0f;
    }

    for (int it = 0; it < nTiles; it++) {
        const int hq = kvh * group + it / nQT, qt = j0 + (it % nQT) * BQ;
        cp_async_wait_all();
        fence_async_smem();
        __syncthreads();
        if (it + 1 < nTiles) load_q((it + 1) & 1, it + 1);
        cp_async_commit();
        // Whether a query of the tile sees a key of warpgroup 0 or 1 (block-uniform).
        const bool live0 = qt < maxEnd0 && qt + BQ - 1 >= j0;
        const bool live1 = qt < maxEnd1 && qt + BQ - 1 >= j0 + 64;
        const bool mine = wg ? live1 : live0;
        if (splitN || splitM || xchg ? !(live0 || live1) : !mine) continue; // block- or warpgroup-uniform
        const int cb = it & 1;
        const unsigned int Qb = Qs + cb * QBYTES, dOb = dOs + cb * QBYTES;

        if (mine) { // warpgroup-uniform
            float s[BQ / 8][4], dp[BQ / 8][4];
#if !HOP_BWD_ZINIT
#pragma unroll
            for (int i = 0; i < BQ / 8; i++) {
                s[i][0] = s[i][1] = s[i][2] = s[i][3] = 0.0f;
                dp[i][0] = dp[i][1] = dp[i][2] = dp[i][3] = 0.0f;
            }
#endif
            wgmma_fence();
#pragma unroll
            for (int kc = 0; kc < D / 16; kc++) {
                const unsigned int col = (kc >> 2) * (BN * 128) + (kc & 3) * 32;
                const unsigned int qcol = (kc >> 2) * (BQ * 128) + (kc & 3) * 32;
                const int accum = !HOP_BWD_ZINIT || kc > 0;
                wgmma_ss_nq_z<BQ>(&s[0][0], smem_desc(kRows + col, 16), smem_desc(Qb + qcol, 16), accum);
                wgmma_ss_nq_z<BQ>(&dp[0][0], smem_desc(vRows + col, 16), smem_desc(dOb + qcol, 16), accum);
            }
            wgmma_commit();
            wgmma_wait_all();
            hold_regs<BQ / 2>(&s[0][0]);
            hold_regs<BQ / 2>(&dp[0][0]);

            if (capped) {
#pragma unroll
                for (int nt = 0; nt < BQ / 8; nt++) {
#pragma unroll
                    for (int e = 0; e < 4; e++) s[nt][e] = softcap * tanhf(s[nt][e] * scale / softcap);
                }
            }
            const bool masked = qt < wgKeyLast || qt + BQ > wgMinEnd;
            const float* lseB = lseP + cb * BQ;
            const float* deltaB = deltaP + cb * BQ;
#pragma unroll
            for (int nt = 0; nt < BQ / 8; nt++) {
#pragma unroll
                for (int e = 0; e < 4; e++) {
                    const int col = nt * 8 + 2 * t + (e & 1);
                    const int i = qt + col;
                    const bool isB = e >= 2;
                    const bool valid = !masked || (isB ? (i >= keyB && i < endB) : (i >= keyA && i < endA));
                    const float p = valid ? exp2_approx(fmaf(s[nt][e], sl2, -lseB[col] * LOG2E)) : 0.0f;
                    float slope = 1.0f;
                    if (capped) {
                        const float r = s[nt][e] / softcap;
                        slope = 1.0f - r * r;
                    }
                    dp[nt][e] = p * (dp[nt][e] - deltaB[col]) * slope;
                    s[nt][e] = p;
                }
            }
            unsigned int pa[BQ / 16][4], da[BQ / 16][4];
#pragma unroll
            for (int kc = 0; kc < BQ / 16; kc++) {
                pa[kc][0] = pack_bf16(s[2 * kc][0], s[2 * kc][1]);
                pa[kc][1] = pack_bf16(s[2 * kc][2], s[2 * kc][3]);
                pa[kc][2] = pack_bf16(s[2 * kc + 1][0], s[2 * kc + 1][1]);
                pa[kc][3] = pack_bf16(s[2 * kc + 1][2], s[2 * kc + 1][3]);
                da[kc][0] = pack_bf16(dp[2 * kc][0], dp[2 * kc][1]);
                da[kc][1] = pack_bf16(dp[2 * kc][2], dp[2 * kc][3]);
                da[kc][2] = pack_bf16(dp[2 * kc + 1][0], dp[2 * kc + 1][1]);
                da[kc][3] = pack_bf16(dp[2 * kc + 1][2], dp[2 * kc + 1][3]);
            }
            // dS^T (rows: this warp's 16 keys) into the panel as dS (rows: queries).
#if HOP_BWD_STS
#pragma unroll
            for (int nt = 0; nt < BQ / 8; nt++) {
#pragma unroll
                for (int e = 0; e < 4; e++) {
                    const int qr = nt * 8 + 2 * t + (e & 1), kl = 16 * (warp & 3) + g + 8 * (e >> 1);
                    st_shared_bf16(dSs + wg * (BQ * 128) + qr * 128 + ((((kl >> 3) ^ (qr & 7)) << 4) | ((kl & 7) << 1)),
                                   dp[nt][e]);
                }
            }
#else
#pragma unroll
            for (int kc = 0; kc < BQ / 16; kc++) stmatrix_x4_trans(stAddr + kc * (16 * 128), da[kc]);
#endif
#if HOP_BWD_ZINIT
            hold_regs_u<BQ / 4>(&pa[0][0]);
#if !HOP_BWD_DK_SS
            hold_regs_u<BQ / 4>(&da[0][0]);
#endif
#endif
            fence_async_smem();
#if HOP_BWD_DK_SS
            bar_sync_n(6 + wg, 128); // the warpgroup's dS panel is written (dK reads it)
#endif
            wgmma_fence();
#pragma unroll
            for (int kc = 0; kc < BQ / 16; kc++) {
                wgmma_rs_d<D>(&dV[0][0], pa[kc], smem_desc(dOb + kc * 2048, BQ * 128));
#if HOP_BWD_DK_SS
                // A = dS^T: rows kc*16.. of the panel are queries (K), its 64 keys (M) contiguous.
                wgmma_ss_tn_d<D>(&dK[0][0], smem_desc(dSs + wg * (BQ * 128) + kc * 2048, BQ * 128),
                                 smem_desc(Qb + kc * 2048, BQ * 128));
#else
                wgmma_rs_d<D>(&dK[0][0], da[kc], smem_desc(Qb + kc * 2048, BQ * 128));
#endif
            }
            wgmma_commit();
#if HOP_BWD_DKV_WAIT
            wgmma_wait_all();
            hold_regs<D / 2>(&dK[0][0]);
            hold_regs<D / 2>(&dV[0][0]);
#endif
        }
#if HOP_BWD_DQ_BULK && __CUDA_ARCH__ >= 900
        if ((warp & 3) == 0) bulk_wait_read(); // the previous tile's reductions have read the staging
#endif
#if HOP_BWD_DQT && __CUDA_ARCH__ >= 900
        if (lane == 0) dqt_wait_read1(); // this warp's slot below was read by its reduction two tiles ago
#endif
        if (splitN || splitM) {
            bar_sync_n(1, 256);
        } else if (mine) { // always, unless xchg
            bar_sync_n(1 + wg, 128);
        }

        // HOP_BWD_ZINIT: dQ is not zeroed; its first wgmma writes it (at
        // D = 128 the first of warpgroup 0's keys if live0, else of 1's; every
        // tile that gets here has one). A thread of a warpgroup with no
        // work (D = 64, xchg) then holds no dQ of its own (see below).
        float dQ[8][4];
#if !HOP_BWD_ZINIT
#pragma unroll
        for (int i = 0; i < 8; i++) dQ[i][0] = dQ[i][1] = dQ[i][2] = dQ[i][3] = 0.0f;
#endif
        wgmma_fence();
        if (splitN) {
            const unsigned int kp = Ks + wg * (BN * 128); // K's columns 64wg..64wg+63
            if (live0) {
#pragma unroll
                for (int kc = 0; kc < 4; kc++)
                    wgmma_ss_n64_bt_z(&dQ[0][0], smem_desc(dSs + kc * 32, 16), smem_desc(kp + kc * 2048, BN * 128),
                                      !HOP_BWD_ZINIT || kc > 0);
            }
            if (live1) {
#pragma unroll
                for (int kc = 4; kc < 8; kc++)
                    wgmma_ss_n64_bt_z(&dQ[0][0], smem_desc(dSs + BQ * 128 + (kc & 3) * 32, 16),
                                      smem_desc(kp + kc * 2048, BN * 128), !HOP_BWD_ZINIT || live0 || kc > 4);
            }
        } else if (splitM) {
            // Query rows 64wg..64wg+63 of the tile over all 128 keys: panel p
            // holds keys 64p..64p+63 (written only if that warpgroup had work).
            const unsigned int rows = dSs + wg * (64 * 128);
            if (live0) {
#pragma unroll
                for (int kc = 0; kc < 4; kc++)
                    wgmma_ss_n64_bt_z(&dQ[0][0], smem_desc(rows + kc * 32, 16), smem_desc(Ks + kc * 2048, BN * 128),
                                      !HOP_BWD_ZINIT || kc > 0);
            }
            if (live1) {
#pragma unroll
                for (int kc = 4; kc < 8; kc++)
                    wgmma_ss_n64_bt_z(&dQ[0][0], smem_desc(rows + BQ * 128 + (kc & 3) * 32, 16),
                                      smem_desc(Ks + kc * 2048, BN * 128), !HOP_BWD_ZINIT || live0 || kc > 4);
            }
        } else if (mine) {
#pragma unroll
            for (int kc = 0; kc < 4; kc++)
                wgmma_ss_n64_bt_z(&dQ[0][0], smem_desc(dSs + wg * (BQ * 128) + kc * 32, 16),
                                  smem_desc(kRows + kc * 2048, BN * 128), !HOP_BWD_ZINIT || kc > 0);
        }
        wgmma_commit();
        wgmma_wait_all();
        hold_regs<32>(&dQ[0][0]);
        hold_regs<D / 2>(&dK[0][0]);
        hold_regs<D / 2>(&dV[0][0]);
        // own(dn): whether column tile dn is this thread's to add into dqAcc.
        auto own = [&](int dn) { return !xchg || (dn >> 2) == wg; };
        if (xchg) {
            // Thread i of warpgroup w leaves its 16 values of the other half at
            // xch + w*8192 + v*512 + 4i; thread i of the other warpgroup holds the
            // same rows and columns and adds them to its half.
            const unsigned int slot = xch + (unsigned int)(tid & 127) * 4;
            if (mine) {
#pragma unroll
                for (int dn = 0; dn < 8; dn++)
#pragma unroll
                    for (int e = 0; e < 4; e++)
                        if (!own(dn)) st_shared_f32(slot + wg * 8192 + ((dn & 3) * 4 + e) * 512, dQ[dn][e]);
            }
            bar_sync_n(5, 256);
            if (wg ? live0 : live1) {
#pragma unroll
                for (int dn = 0; dn < 8; dn++)
#pragma unroll
                    for (int e = 0; e < 4; e++)
                        if (own(dn)) {
                            const float x = ld_shared_f32(slot + (wg ^ 1) * 8192 + ((dn & 3) * 4 + e) * 512);
                            // HOP_BWD_ZINIT: without work of its own, dQ was never written.
                            dQ[dn][e] = HOP_BWD_ZINIT && !mine ? x : dQ[dn][e] + x;
                        }
            }
        }

        float* acc = dqAcc + (i64)hq * D + (splitN ? 64 * wg : 0);
#if HOP_BWD_DQ_BULK && __CUDA_ARCH__ >= 900
        {
            const unsigned int st = dQs + wg * (BQ * HOP_DQ_ROW) + (16 * (warp & 3) + g) * HOP_DQ_ROW + 8 * t;
#pragma unroll
            for (int dn = 0; dn < 8; dn++) {
                if (!own(dn)) continue;
                st_shared_f32x2(st + dn * 32, dQ[dn][0], dQ[dn][1]);
                st_shared_f32x2(st + 8 * HOP_DQ_ROW + dn * 32, dQ[dn][2], dQ[dn][3]);
            }
            fence_async_smem();
            bar_sync_n(3 + wg, 128);
            if ((warp & 3) == 0) { // lane l adds rows 2l and 2l+1 (xchg: their 32 columns of this warpgroup)
                const unsigned int c0 = xchg ? 128 * wg : 0, bytes = xchg ? 128 : 256;
#pragma unroll
                for (int r = 2 * lane; r < 2 * lane + 2; r++)
                    if (qt + r < qEnd)
                        bulk_reduce_add(acc + (i64)(qt + r) * qStride + c0 / 4,
                                        dQs + wg * (BQ * HOP_DQ_ROW) + r * HOP_DQ_ROW + c0, bytes);
                bulk_commit();
            }
        }
#elif HOP_BWD_DQT && __CUDA_ARCH__ >= 900
        {
            const unsigned int slot = stg + (unsigned int)(nred & 1) * 32768u;
#pragma unroll
            for (int dn = 0; dn < 8; dn++) st_shared_f32x4(slot + dn * 512, dQ[dn][0], dQ[dn][1], dQ[dn][2], dQ[dn][3]);
            fence_async_smem();
            syncwarp_all();
            if (lane == 0) {
                float* blk = dqAcc + ((i64)(hq * nRT + qt / 64) * (D / 64) + (splitN ? wg : 0)) * 4096 + (warp & 3) * 1024;
                dqt_reduce_add(blk, slot, 4096);
                dqt_commit();
            }
            nred++;
        }
#else
        const int qrA = qt + (splitM ? 64 * wg : 0) + 16 * (warp & 3) + g, qrB = qrA + 8;
#pragma unroll
        for (int dn = 0; dn < 8; dn++) {
            const int c = dn * 8 + 2 * t;
            if (!own(dn)) continue; // warp-uniform
#if HOP_BWD_RED_V4
            // The even lane of a pair sends its row-B pair, the odd one its row-A pair.
            const bool odd = t & 1;
            const float r0 = __shfl_xor_sync(0xffffffffu, odd ? dQ[dn][0] : dQ[dn][2], 1);
            const float r1 = __shfl_xor_sync(0xffffffffu, odd ? dQ[dn][1] : dQ[dn][3], 1);
            if (!odd) { // row A, columns c..c+3
                if (qrA < qEnd) red_add4(acc + (i64)qrA * qStride + c, dQ[dn][0], dQ[dn][1], r0, r1);
            } else { // row B, columns c-2..c+1
                if (qrB < qEnd) red_add4(acc + (i64)qrB * qStride + c - 2, r0, r1, dQ[dn][2], dQ[dn][3]);
            }
#else
            if (qrA < qEnd) red_add2(acc + (i64)qrA * qStride + c, dQ[dn][0], dQ[dn][1]);
            if (qrB < qEnd) red_add2(acc + (i64)qrB * qStride + c, dQ[dn][2], dQ[dn][3]);
#endif
        }
#endif
    }
#if HOP_BWD_DQ_BULK && __CUDA_ARCH__ >= 900
    if ((warp & 3) == 0) bulk_wait_all();
#endif
#if HOP_BWD_DQT && __CUDA_ARCH__ >= 900
    if (lane == 0) dqt_wait_all();
#endif
    cp_async_wait_all();
    store_rows<D>(dk, dkdt, dK, keyA, keyB, T, kvStride, (i64)kvh * D, scale, t);
    store_rows<D>(dv, dvdt, dV, keyA, keyB, T, kvStride, (i64)kvh * D, 1.0f, t);
}

// ---------------------------------------------------------------------------
// HOP_BWD_OVL (opt-in, WHET_NVRTC_DEFINES; needs HOP_BWD_FUSED=1): the fused
// backward above with the products of a tile reordered so that the tensor
// cores and the rest of the warpgroup overlap (FlashAttention 3's order),
// instead of S^T and dP^T followed by a full wait:
//   S^T (commit), dP^T (commit); wait_group 1: P from S^T while dP^T runs;
//   dV += P^T dO (commit); wait_group 1: dS from dP^T while dV runs;
//   stmatrix dS, then
//   HOP_BWD_OVL=1: dK += dS^T Q (commit) before the barrier of the dS panels,
//                  dQ = dS K (commit), wait_group 0, add dQ into dqAcc;
//   HOP_BWD_OVL=2: the barrier, dQ (commit), dK (commit), wait_group 1 (dQ
//                  done) and dQ's additions while dK runs, wait_group 0 last.
// Always scale-d = 0 for the first wgmma of S, dP and dQ (HOP_BWD_ZINIT's
// rule: no accumulator is defined outside a wgmma while others are in
// flight). With a soft-cap the kernel takes a second instance (CAP) that
// waits for dP^T before P (the slope needs the capped scores).
// lse and delta are read as pairs (float2). dq additions: red.global as
// HOP_BWD_RED_V2 says, or, with HOP_BWD_DQT=1, FlashAttention 3's: dqAcc is
// tiled ([H][ceil(T/64)][D/64] blocks of 64 x 64 floats, each block in the
// order of the warpgroup's accumulators: warp w's 4 KB at w*1024 floats,
// column tile dn's 512 bytes at dn*128, lane l's float4 at 4l: rows
// 16w+l/4 and +8, columns 8dn+2(l%4) and +1); each warp stores its dQ into
// a staging slot of shared memory (st.shared.v4, two slots a warp, used in
// turn) and its lane 0 adds the 4 KB with one bulk reduction (add.f32);
// attention_dq_convert_tiled_hopper then writes dq. No other define of the
// fused backward combines with HOP_BWD_OVL; HOP_BWD_DQT also applies to
// attn_bwd_fused_hopper (not with _Q128, _DQ_BULK, _DQ_XCHG). HOP_BWD_LATEDV=1: FlashAttention 3's
// exact order, dS computed (wait_group 0) before dV is issued, which keeps
// fewer registers live (P's packed copy not beside P, dP and dS).
// HOP_BWD_WG1=1: blocks of one warpgroup (64 keys), see attn_bwd_fused_ovl;
// HOP_BWD_WG1_D64=1: the same at D = 64 only (HOP_BWD_NWG).
#if HOP_BWD_OVL

// wgmma_ss_n128_bt_z: d[0..64) = (accum ? d : 0) + A B, A (64 x 16) K-major and
// B (16 x 128) N-major (two 64-column panels, the descriptor's leading byte
// offset apart), both in shared memory: dQ = dS K over all 128 columns (HOP_BWD_WG1).
__device__ __forceinline__ void wgmma_ss_n128_bt_z(float* d, unsigned long long da, unsigned long long db, int accum) {
    asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %66, 0;\n"
                 "wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16 {"
                 "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, "
                 "%16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, "
                 "%32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, "
                 "%48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63"
                 "}, %64, %65, p, 1, 1, 0, 1;\n}\n"
                 : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]),
                   "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]),
                   "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]),
                   "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]),
                   "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]),
                   "+f"(d[40]), "+f"(d[41]), "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]),
                   "+f"(d[48]), "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]),
                   "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63])
                 : "l"(da), "l"(db), "r"(accum));
}

template <int N>
__device__ __forceinline__ void wgmma_wait_n() {
    asm volatile("wgmma.wait_group.sync.aligned %0;\n" ::"n"(N) : "memory");
}

// attn_bwd_fused_ovl: see above; the shapes, shared-memory layout and
// masks are attn_bwd_fused_hopper's (64-query tiles). The dQ staging of
// HOP_BWD_DQT ([2 slots][2 warpgroups][4 warps] of 4 KB) starts where
// attn_bwd_fused_hopper's dQ staging does.
template <int D, bool CAP>
__device__ __forceinline__ void attn_bwd_fused_ovl(float* dqAcc, void* dk, int dkdt, void* dv, int dvdt,
                                                   const unsigned short* dout, const unsigned short* q,
                                                   const unsigned short* k, const unsigned short* v,
                                                   const float* lse, const float* delta, const int* starts,
                                                   int nseq, int T, int H, int KVH, float scale, int window,
                                                   float softcap) {
    // HOP_BWD_WG1 (HOP_BWD_WG1_D64 at D = 64): one warpgroup (64 keys) a
    // block; dQ over its own keys and all D columns. Every shape below
    // follows NWG, so the d64 kernel with HOP_BWD_WG1_D64 is the d64 kernel
    // of HOP_BWD_WG1 and its d128 kernel the two-warpgroup one.
    constexpr int NWG = HOP_BWD_NWG(D), NT = 128 * NWG;
    constexpr int BN = 64 * NWG, BQ = HOP_BT;
    constexpr unsigned int KBYTES = BN * D * 2, QBYTES = BQ * D * 2, DSBYTES = BQ * BN * 2;
    constexpr bool splitN = D == 128 && NWG == 2;
    constexpr int DQN = splitN ? 64 : D; // dQ columns a warpgroup computes
    // dQ through the tiled accumulator (not at D = 128 with one warpgroup:
    // its staging would keep two blocks from sharing an SM).
    constexpr bool dqt = HOP_BWD_DQT && !(NWG == 1 && D == 128);
    extern __shared__ __attribute__((aligned(16))) unsigned char hop_smem[];
    const unsigned int base = (smem_u32(hop_smem) + 1023u) & ~1023u;
    const unsigned int Ks = base, Vs = base + KBYTES, Qs = Vs + KBYTES, dOs = Qs + 2 * QBYTES;
    const unsigned int dSs = dOs + 2 * QBYTES;
    const unsigned int lseS = dSs + DSBYTES, deltaS = lseS + 2 * BQ * 4;
    const unsigned int dQst = deltaS + 2 * BQ * 4; // HOP_BWD_DQT staging, 64 KB (WG1: 32 KB)
    const int kvh = blockIdx.x, group = H / KVH;
    const int j0 = blockIdx.y * BN;
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5, wg = warp >> 2, g = lane >> 2, t = lane & 3;
    const i64 qStride = (i64)H * D, kvStride = (i64)KVH * D;

    const int kLast = min(j0 + BN, T) - 1;
    const int qEnd = end_query(starts, nseq, kLast, window);
    const int nQT = qEnd > j0 ? (qEnd - j0 + BQ - 1) / BQ : 0;
    const int nTiles = nQT * group;
    auto load_q = [&](int nb, int it) {
        const int hq = kvh * group + it / nQT, qt = j0 + (it % nQT) * BQ;
        load_tile<D, BQ, NT>(Qs + nb * QBYTES, q, qStride, (i64)hq * D, qt, qEnd, tid);
        load_tile<D, BQ, NT>(dOs + nb * QBYTES, dout, qStride, (i64)hq * D, qt, qEnd, tid);
        if (tid < 2 * BQ) {
            const int c = tid & (BQ - 1), i = qt + c;
            const bool ok = i < qEnd;
            const float* src = tid < BQ ? lse : delta;
            const unsigned int dst = (tid < BQ ? lseS : deltaS) + (nb * BQ + c) * 4;
            cp_async4(dst, ok ? src + (i64)hq * T + i : src, ok);
        }
    };
    load_tile<D, BN, NT>(Ks, k, kvStride, (i64)kvh * D, j0, T, tid);
    load_tile<D, BN, NT>(Vs, v, kvStride, (i64)kvh * D, j0, T, tid);
    if (nTiles > 0) load_q(0, 0);
    cp_async_commit();

    const int keyA = j0 + 64 * wg + 16 * (warp & 3) + g, keyB = keyA + 8;
    const int endA = keyA < T ? end_query(starts, nseq, keyA, window) : 0;
    const int endB = keyB < T ? end_query(starts, nseq, keyB, window) : 0;
    const int wgKey0 = j0 + 64 * wg;
    const int wgKeyLast = min(wgKey0 + 63, T - 1);
    const int wgMinEnd = wgKey0 < T ? end_query(starts, nseq, wgKey0, window) : 0;
    const int maxEnd0 = end_query(starts, nseq, min(j0 + 63, T - 1), window);
    const int maxEnd1 = NWG == 2 && j0 + 64 < T ? end_query(starts, nseq, min(j0 + 127, T - 1), window) : 0;
    const float sl2 = CAP ? LOG2E : scale * LOG2E;
    const unsigned int kRows = Ks + 64 * wg * 128, vRows = Vs + 64 * wg * 128;
    const int si = lane >> 3, sj = lane & 7;
    const unsigned int stAddr = dSs + wg * (BQ * 128) + (8 * (si >> 1) + sj) * 128 + (((2 * (warp & 3) + (si & 1)) ^ sj) << 4);
#if HOP_BWD_DQT
    const int nRT = (T + 63) / 64;
    // This lane's float4 in its warp's staging slot 0 ([slot][warpgroup][warp]
    // of 4 KB: slot 1 is 32 KB on, WG1 16 KB).
    const unsigned int stg = dQst + (unsigned int)wg * 16384u + (unsigned int)(warp & 3) * 4096u + (unsigned int)lane * 16u;
    int nred = 0;
#endif

    float dK[D / 8][4], dV[D / 8][4];
#pragma unroll
    for (int i = 0; i < D / 8; i++) {
        dK[i][0] = dK[i][1] = dK[i][2] = dK[i][3] = 0.0f;
        dV[i][0] = dV[i][1] = dV[i][2] = dV[i][3] = 0.0f;
    }

    for (int it = 0; it < nTiles; it++) {
        const int hq = kvh * group + it / nQT, qt = j0 + (it % nQT) * BQ;
        cp_async_wait_all();
        fence_async_smem();
        __syncthreads();
        if (it + 1 < nTiles) load_q((it + 1) & 1, it + 1);
        cp_async_commit();
        const bool live0 = qt < maxEnd0 && qt + BQ - 1 >= j0;
        const bool live1 = qt < maxEnd1 && qt + BQ - 1 >= j0 + 64;
        const bool mine = wg ? live1 : live0;
        if (splitN ? !(live0 || live1) : !mine) continue; // block- or warpgroup-uniform
        const int cb = it & 1;
        const unsigned int Qb = Qs + cb * QBYTES, dOb = dOs + cb * QBYTES;

        unsigned int da[BQ / 16][4];
        if (mine) { // warpgroup-uniform
            float s[BQ / 8][4], dp[BQ / 8][4];
            wgmma_fence();
#pragma unroll
            for (int kc = 0; kc < D / 16; kc++) {
                const unsigned int col = (kc >> 2) * (BN * 128) + (kc & 3) * 32;
                const unsigned int qcol = (kc >> 2) * (BQ * 128) + (kc & 3) * 32;
                wgmma_ss_n64_z(&s[0][0], OVL_DESC(kRows, col, 16), OVL_DESC(Qb, qcol, 16), kc > 0);
            }
            wgmma_commit();
#pragma unroll
            for (int kc = 0; kc < D / 16; kc++) {
                const unsigned int col = (kc >> 2) * (BN * 128) + (kc & 3) * 32;
                const unsigned int qcol = (kc >> 2) * (BQ * 128) + (kc & 3) * 32;
                wgmma_ss_n64_z(&dp[0][0], OVL_DESC(vRows, col, 16), OVL_DESC(dOb, qcol, 16), kc > 0);
            }
            wgmma_commit();
            if constexpr (CAP) {
                wgmma_wait_n<0>();
                hold_regs<BQ / 2>(&dp[0][0]);
            } else {
                wgmma_wait_n<1>();
            }
            hold_regs<BQ / 2>(&s[0][0]);

            const bool masked = qt < wgKeyLast || qt + BQ > wgMinEnd;
            // This thread's lse and delta pairs: columns nt*8 + 2t, +1.
            const unsigned int lseB = lseS + (unsigned int)(cb * BQ + 2 * t) * 4u;
            const unsigned int deltaB = deltaS + (unsigned int)(cb * BQ + 2 * t) * 4u;
            // P (in s, fp32); with CAP also dS (in dp). Tiles that need no
            // mask (all but the diagonal and sequence ends) take a loop
            // without the per-element tests: same values, fewer instructions.
            if (masked || CAP) {
#pragma unroll
                for (int nt = 0; nt < BQ / 8; nt++) {
                    float lx, ly, dx = 0.0f, dy = 0.0f;
                    ld_shared_f32x2(lseB + nt * 32, lx, ly);
                    if constexpr (CAP) ld_shared_f32x2(deltaB + nt * 32, dx, dy);
#pragma unroll
                    for (int e = 0; e < 4; e++) {
                        const int i = qt + nt * 8 + 2 * t + (e & 1);
                        const bool isB = e >= 2;
                        const bool valid = !masked || (isB ? (i >= keyB && i < endB) : (i >= keyA && i < endA));
                        float x = s[nt][e];
                        if constexpr (CAP) x = softcap * tanhf(x * scale / softcap);
                        const float p = valid ? exp2_approx(fmaf(x, sl2, -((e & 1) ? ly : lx) * LOG2E)) : 0.0f;
                        if constexpr (CAP) {
                            const float r = x / softcap;
                            dp[nt][e] = p * (dp[nt][e] - ((e & 1) ? dy : dx)) * (1.0f - r * r);
                        }
                        s[nt][e] = p;
                    }
                }
            } else {
#pragma unroll
                for (int nt = 0; nt < BQ / 8; nt++) {
                    float lx, ly;
                    ld_shared_f32x2(lseB + nt * 32, lx, ly);
                    const float nx = -lx * LOG2E, ny = -ly * LOG2E;
                    s[nt][0] = exp2_approx(fmaf(s[nt][0], sl2, nx));
                    s[nt][1] = exp2_approx(fmaf(s[nt][1], sl2, ny));
                    s[nt][2] = exp2_approx(fmaf(s[nt][2], sl2, nx));
                    s[nt][3] = exp2_approx(fmaf(s[nt][3], sl2, ny));
                }
            }
#if HOP_BWD_LATEDV
            if constexpr (!CAP) {
                wgmma_wait_n<0>(); // dP^T done
                hold_regs<BQ / 2>(&dp[0][0]);
                ovl_ds<BQ>(s, dp, deltaB);
            }
#endif
            unsigned int pa[BQ / 16][4];
#pragma unroll
            for (int kc = 0; kc < BQ / 16; kc++) {
                pa[kc][0] = pack_bf16(s[2 * kc][0], s[2 * kc][1]);
                pa[kc][1] = pack_bf16(s[2 * kc][2], s[2 * kc][3]);
                pa[kc][2] = pack_bf16(s[2 * kc + 1][0], s[2 * kc + 1][1]);
                pa[kc][3] = pack_bf16(s[2 * kc + 1][2], s[2 * kc + 1][3]);
            }
            hold_regs_u<BQ / 4>(&pa[0][0]);
            wgmma_fence();
#pragma unroll
            for (int kc = 0; kc < BQ / 16; kc++) wgmma_rs_d<D>(&dV[0][0], pa[kc], OVL_DESC(dOb, kc * 2048, BQ * 128));
            wgmma_commit();
#if !HOP_BWD_LATEDV
            if constexpr (!CAP) {
                wgmma_wait_n<1>(); // dP^T done; dV may run on
                hold_regs<BQ / 2>(&dp[0][0]);
                ovl_ds<BQ>(s, dp, deltaB);
            }
#endif
#pragma unroll
            for (int kc = 0; kc < BQ / 16; kc++) {
                da[kc][0] = pack_bf16(dp[2 * kc][0], dp[2 * kc][1]);
                da[kc][1] = pack_bf16(dp[2 * kc][2], dp[2 * kc][3]);
                da[kc][2] = pack_bf16(dp[2 * kc + 1][0], dp[2 * kc + 1][1]);
                da[kc][3] = pack_bf16(dp[2 * kc + 1][2], dp[2 * kc + 1][3]);
            }
#pragma unroll
            for (int kc = 0; kc < BQ / 16; kc++) stmatrix_x4_trans(stAddr + kc * (16 * 128), da[kc]);
            hold_regs_u<BQ / 4>(&da[0][0]);
            fence_async_smem();
#if HOP_BWD_OVL == 1
            wgmma_fence();
#pragma unroll
            for (int kc = 0; kc < BQ / 16; kc++) wgmma_rs_d<D>(&dK[0][0], da[kc], OVL_DESC(Qb, kc * 2048, BQ * 128));
            wgmma_commit();
#endif
        }
#if HOP_BWD_DQT && __CUDA_ARCH__ >= 900
        // The staging slot this warp fills below was last read by its
        // reduction two tiles ago; lane 0 waits for that before the barrier.
        if (dqt && lane == 0) dqt_wait_read1();
#endif
        if (splitN) {
            bar_sync_n(1, 256);
        } else {
            bar_sync_n(1 + wg, 128);
        }

        float dQ[DQN / 8][4];
        wgmma_fence();
        if (splitN) {
            const unsigned int kp = Ks + wg * (BN * 128); // K's columns 64wg..64wg+63
            if (live0) {
#pragma unroll
                for (int kc = 0; kc < 4; kc++)
                    wgmma_ss_n64_bt_z(&dQ[0][0], OVL_DESC(dSs, kc * 32, 16), OVL_DESC(kp, kc * 2048, BN * 128), kc > 0);
            }
            if (live1) {
#pragma unroll
                for (int kc = 4; kc < 8; kc++)
                    wgmma_ss_n64_bt_z(&dQ[0][0], OVL_DESC(dSs, BQ * 128 + (kc & 3) * 32, 16),
                                      OVL_DESC(kp, kc * 2048, BN * 128), live0 || kc > 4);
            }
        } else if constexpr (DQN == 64) {
#pragma unroll
            for (int kc = 0; kc < 4; kc++)
                wgmma_ss_n64_bt_z(&dQ[0][0], OVL_DESC(dSs + wg * (BQ * 128), kc * 32, 16),
                                  OVL_DESC(kRows, kc * 2048, BN * 128), kc > 0);
        } else { // WG1 at D = 128: all 128 columns (K's two panels, BN * 128 apart)
#pragma unroll
            for (int kc = 0; kc < 4; kc++)
                wgmma_ss_n128_bt_z(&dQ[0][0], OVL_DESC(dSs, kc * 32, 16), OVL_DESC(kRows, kc * 2048, BN * 128), kc > 0);
        }
        wgmma_commit();
#if HOP_BWD_OVL == 2
        if (mine) {
#pragma unroll
            for (int kc = 0; kc < BQ / 16; kc++) wgmma_rs_d<D>(&dK[0][0], da[kc], OVL_DESC(Qb, kc * 2048, BQ * 128));
        }
        wgmma_commit(); // empty when !mine, so that wait_group 1 below always means dQ
        wgmma_wait_n<1>();
#else
        wgmma_wait_n<0>();
        hold_regs<D / 2>(&dK[0][0]);
#endif
        hold_regs<DQN / 2>(&dQ[0][0]);
        hold_regs<D / 2>(&dV[0][0]);

#if HOP_BWD_DQT && __CUDA_ARCH__ >= 900
        if constexpr (dqt) {
            const unsigned int slot = stg + (unsigned int)(nred & 1) * (NWG * 16384u);
#pragma unroll
            for (int dn = 0; dn < 8; dn++) st_shared_f32x4(slot + dn * 512, dQ[dn][0], dQ[dn][1], dQ[dn][2], dQ[dn][3]);
            fence_async_smem();
            syncwarp_all();
            if (lane == 0) {
                float* blk = dqAcc + ((i64)(hq * nRT + qt / 64) * (D / 64) + (splitN ? wg : 0)) * 4096 + (warp & 3) * 1024;
                dqt_reduce_add(blk, slot, 4096);
                dqt_commit();
            }
            nred++;
        }
#endif
        if constexpr (!dqt) {
            float* acc = dqAcc + (i64)hq * D + (splitN ? 64 * wg : 0);
            const int qrA = qt + 16 * (warp & 3) + g, qrB = qrA + 8;
#pragma unroll
            for (int dn = 0; dn < DQN / 8; dn++) {
                const int c = dn * 8 + 2 * t;
                if (qrA < qEnd) red_add2(acc + (i64)qrA * qStride + c, dQ[dn][0], dQ[dn][1]);
                if (qrB < qEnd) red_add2(acc + (i64)qrB * qStride + c, dQ[dn][2], dQ[dn][3]);
            }
        }
#if HOP_BWD_OVL == 2
        wgmma_wait_n<0>();
        hold_regs<D / 2>(&dK[0][0]);
#endif
    }
#if HOP_BWD_DQT && __CUDA_ARCH__ >= 900
    if (dqt && lane == 0) dqt_wait_all();
#endif
    cp_async_wait_all();
    store_rows<D>(dk, dkdt, dK, keyA, keyB, T, kvStride, (i64)kvh * D, scale, t);
    store_rows<D>(dv, dvdt, dV, keyA, keyB, T, kvStride, (i64)kvh * D, 1.0f, t);
}
#endif // HOP_BWD_OVL
#endif // HOP_BWD_FUSED

// hop_probe checks the building blocks alone (engine/cuda
// TestHopperWgmmaProbe): one warpgroup computes S = Q K^T (64 x 128, Q
// [64][D] and K [128][D] from swizzled shared memory, K-major) into sOut
// [64][128], then O = bf16(S) V (V [128][D] read N-major) into oOut [64][D].
template <int D>
__device__ __forceinline__ void hop_probe(float* sOut, float* oOut, const unsigned short* q, const unsigned short* k,
                                          const unsigned short* v) {
    extern __shared__ __attribute__((aligned(16))) unsigned char hop_smem[];
    const unsigned int base = (smem_u32(hop_smem) + 1023u) & ~1023u;
    const unsigned int Qs = base, Ks = Qs + 64 * D * 2, Vs = Ks + 128 * D * 2;
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5, g = lane >> 2, t = lane & 3;
    load_tile<D, 64>(Qs, q, D, 0, 0, 64, tid);
    load_tile<D, 128>(Ks, k, D, 0, 0, 128, tid);
    load_tile<D, 128>(Vs, v, D, 0, 0, 128, tid);
    cp_async_commit();
    cp_async_wait_all();
    fence_async_smem();
    __syncthreads();
    if (warp >= 4) return; // the first warpgroup computes
    float s[16][4];
#pragma unroll
    for (int i = 0; i < 16; i++) s[i][0] = s[i][1] = s[i][2] = s[i][3] = 0.0f;
    wgmma_fence();
#pragma unroll
    for (int kc = 0; kc < D / 16; kc++) {
        const unsigned int col = (kc & 3) * 32;
        wgmma_ss_n128(&s[0][0], smem_desc(Qs + (kc >> 2) * (64 * 128) + col, 16),
                      smem_desc(Ks + (kc >> 2) * (128 * 128) + col, 16));
    }
    wgmma_commit();
    wgmma_wait_all();
    hold_regs<64>(&s[0][0]);
    const int rowA = 16 * warp + g, rowB = rowA + 8;
#pragma unroll
    for (int nt = 0; nt < 16; nt++) {
        const int c = nt * 8 + 2 * t;
        sOut[rowA * 128 + c] = s[nt][0];
        sOut[rowA * 128 + c + 1] = s[nt][1];
        sOut[rowB * 128 + c] = s[nt][2];
        sOut[rowB * 128 + c + 1] = s[nt][3];
    }
    unsigned int pa[8][4];
#pragma unroll
    for (int kc = 0; kc < 8; kc++) {
        pa[kc][0] = pack_bf16(s[2 * kc][0], s[2 * kc][1]);
        pa[kc][1] = pack_bf16(s[2 * kc][2], s[2 * kc][3]);
        pa[kc][2] = pack_bf16(s[2 * kc + 1][0], s[2 * kc + 1][1]);
        pa[kc][3] = pack_bf16(s[2 * kc + 1][2], s[2 * kc + 1][3]);
    }
    float o[D / 8][4];
#pragma unroll
    for (int i = 0; i < D / 8; i++) o[i][0] = o[i][1] = o[i][2] = o[i][3] = 0.0f;
    wgmma_fence();
#pragma unroll
    for (int kc = 0; kc < 8; kc++) wgmma_rs_d<D>(&o[0][0], pa[kc], smem_desc(Vs + kc * 2048, 128 * 128));
    wgmma_commit();
    wgmma_wait_all();
    hold_regs<D / 2>(&o[0][0]);
#pragma unroll
    for (int dn = 0; dn < D / 8; dn++) {
        const int c = dn * 8 + 2 * t;
        oOut[rowA * D + c] = o[dn][0];
        oOut[rowA * D + c + 1] = o[dn][1];
        oOut[rowB * D + c] = o[dn][2];
        oOut[rowB * D + c + 1] = o[dn][3];
    }
}

#define HOP_PROBE_BODY(D) hop_probe<D>(sOut, oOut, q, k, v)

// HOP_FWD_OVERLAP=1 (WHET_NVRTC_DEFINES, engine/cuda/nvrtc.go) selects the
// forward below instead of attn_fwd_hopper: an experiment, compiled only
// when asked for, so that an error in it cannot cost the other kernels.
#ifndef HOP_FWD_OVERLAP
#define HOP_FWD_OVERLAP 0
#endif

#if HOP_FWD_OVERLAP
__device__ __forceinline__ void wgmma_wait_one() { asm volatile("wgmma.wait_group.sync.aligned 1;\n" ::: "memory"); }

// hop_softmax_step turns the raw scores s of the key tile at kt into
// probabilities (cap, mask, online softmax; attn_fwd_hopper's steps).
template <int BN>
__device__ __forceinline__ void hop_softmax_step(float (*s)[4], int kt, int t, int loA, int loB, int posA, int posB,
                                                 bool masked, bool capped, float scale, float softcap, float sl2,
                                                 float& mA, float& mB, float& lA, float& lB, float& cA, float& cB) {
    if (capped) {
#pragma unroll
        for (int nt = 0; nt < BN / 8; nt++) {
#pragma unroll
            for (int e = 0; e < 4; e++) s[nt][e] = softcap * tanhf(s[nt][e] * scale / softcap);
        }
    }
    if (masked) {
#pragma unroll
        for (int nt = 0; nt < BN / 8; nt++) {
#pragma unroll
            for (int e = 0; e < 4; e++) {
                const int key = kt + nt * 8 + 2 * t + (e & 1);
                const bool valid = e < 2 ? (key >= loA && key <= posA) : (key >= loB && key <= posB);
                if (!valid) s[nt][e] = NEG_INF;
            }
        }
    }
    softmax_tile<BN / 8>(s, sl2, mA, mB, lA, lB, cA, cB);
}

// hop_load_kv fills stage j % 3 (of 2 * 128 * D bytes each: K, then V,
// from shared address st0) with key tile j of the block.
template <int D>
__device__ __forceinline__ void hop_load_kv(unsigned int st0, const unsigned short* k, const unsigned short* v,
                                            i64 kvStride, i64 col0, int kStart, int kEnd, int j, int tid) {
    const unsigned int st = st0 + (unsigned int)(j % 3) * (2 * HOP_BN * D * 2);
    load_tile<D, HOP_BN>(st, k, kvStride, col0, kStart + j * HOP_BN, kEnd + 1, tid);
    load_tile<D, HOP_BN>(st + HOP_BN * D * 2, v, kvStride, col0, kStart + j * HOP_BN, kEnd + 1, tid);
}

// hop_issue_s starts S = Q K^T (no commit) of the warpgroup's Q rows at
// qRows against the K tile at Kb into s.
template <int D>
__device__ __forceinline__ void hop_issue_s(float (*s)[4], unsigned int qRows, unsigned int Kb) {
#pragma unroll
    for (int kc = 0; kc < D / 16; kc++) {
        const unsigned int col = (kc & 3) * 32;
        wgmma_ss_n128(&s[0][0], smem_desc(qRows + (kc >> 2) * (HOP_BM * 128) + col, 16),
                      smem_desc(Kb + (kc >> 2) * (HOP_BN * 128) + col, 16));
    }
}

// attn_fwd_hopper_ov: attn_fwd_hopper with FlashAttention-3's overlap
// inside a warpgroup: while P(j) V(j) runs on the tensor cores, the
// warpgroup takes the softmax of tile j+1, whose S = Q K(j+1)^T was issued
// just before. Three stages of K and V (tile j+2 loads while j and j+1 are
// in use): 1024 + 2 * (128 + 6 * 128) * D bytes of shared memory.
template <int D>
__device__ __forceinline__ void attn_fwd_hopper_ov(void* out, int odt, float* lse, const unsigned short* q,
                                                   const unsigned short* k, const unsigned short* v,
                                                   const int* starts, int nseq, int Tq, int qOffset, int H, int KVH,
                                                   float scale, int window, float softcap) {
    constexpr int BM = HOP_BM, BN = HOP_BN;
    constexpr unsigned int QBYTES = BM * D * 2, KVBYTES = BN * D * 2, STAGE = 2 * KVBYTES; // K, then V
    extern __shared__ __attribute__((aligned(16))) unsigned char hop_smem[];
    const unsigned int base = (smem_u32(hop_smem) + 1023u) & ~1023u;
    const unsigned int Qs = base, St = base + QBYTES;
    const int h = blockIdx.x, kvh = h / (H / KVH);
    const int q0 = (gridDim.y - 1 - blockIdx.y) * BM;
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5, wg = warp >> 2, g = lane >> 2, t = lane & 3;
    const i64 qStride = (i64)H * D, kvStride = (i64)KVH * D;

    const int kEnd = qOffset + min(q0 + BM, Tq) - 1;
    const int kStart = first_key(starts, nseq, qOffset + q0, window);
    const int nTiles = kEnd >= kStart ? (kEnd - kStart) / BN + 1 : 0;
    load_tile<D, BM>(Qs, q, qStride, (i64)h * D, q0, Tq, tid);
    if (nTiles > 0) hop_load_kv<D>(St, k, v, kvStride, (i64)kvh * D, kStart, kEnd, 0, tid);
    cp_async_commit();
    if (nTiles > 1) hop_load_kv<D>(St, k, v, kvStride, (i64)kvh * D, kStart, kEnd, 1, tid);
    cp_async_commit();

    const int rowA = q0 + 64 * wg + 16 * (warp & 3) + g, rowB = rowA + 8;
    const int posA = qOffset + rowA, posB = qOffset + rowB;
    const int loA = rowA < Tq ? first_key(starts, nseq, posA, window) : 0x7fffffff;
    const int loB = rowB < Tq ? first_key(starts, nseq, posB, window) : 0x7fffffff;
    const int wgRow0 = q0 + 64 * wg;
    const bool wgLive = wgRow0 < Tq;
    const int wgFirstPos = qOffset + wgRow0;
    const int wgLastPos = qOffset + min(wgRow0 + 63, Tq - 1);
    const int wgMinLo = wgLive ? first_key(starts, nseq, wgFirstPos, window) : 0;
    const int wgMaxLo = wgLive ? first_key(starts, nseq, wgLastPos, window) : 0;
    const bool capped = softcap > 0.0f;
    const float sl2 = capped ? LOG2E : scale * LOG2E;
    const unsigned int qRows = Qs + 64 * wg * 128;

    float o[D / 8][4], s[BN / 8][4];
    unsigned int pa[BN / 16][4];
#pragma unroll
    for (int i = 0; i < D / 8; i++) o[i][0] = o[i][1] = o[i][2] = o[i][3] = 0.0f;
    float mA = NEG_INF, mB = NEG_INF, lA = 0.0f, lB = 0.0f;
    bool haveP = false; // pa holds P of the current tile

    for (int j = 0; j < nTiles; j++) {
        const int kt = kStart + j * BN;
        cp_async_wait_all();
        fence_async_smem();
        __syncthreads(); // tiles j and j+1 are in; every warpgroup is done with tile j-1 (stage (j+2) % 3)
        if (j + 2 < nTiles) hop_load_kv<D>(St, k, v, kvStride, (i64)kvh * D, kStart, kEnd, j + 2, tid);
        cp_async_commit();
        // The tiles this warpgroup sees form one run.
        if (!wgLive || kt > wgLastPos || kt + BN - 1 < wgMinLo) continue; // warpgroup-uniform
        const int kn = kt + BN;
        const bool next = j + 1 < nTiles && kn <= wgLastPos && kn + BN - 1 >= wgMinLo;
        float cA, cB;
        if (!haveP) { // the warpgroup's first tile: S and softmax without overlap
#pragma unroll
            for (int i = 0; i < BN / 8; i++) s[i][0] = s[i][1] = s[i][2] = s[i][3] = 0.0f;
            wgmma_fence();
            hop_issue_s<D>(s, qRows, St + (unsigned int)(j % 3) * STAGE);
            wgmma_commit();
            wgmma_wait_all();
            hold_regs<BN / 2>(&s[0][0]);
            hop_softmax_step<BN>(s, kt, t, loA, loB, posA, posB, kt < wgMaxLo || kt + BN - 1 > wgFirstPos, capped,
                                 scale, softcap, sl2, mA, mB, lA, lB, cA, cB);
#pragma unroll
            for (int kc = 0; kc < BN / 16; kc++) {
                pa[kc][0] = pack_bf16(s[2 * kc][0], s[2 * kc][1]);
                pa[kc][1] = pack_bf16(s[2 * kc][2], s[2 * kc][3]);
                pa[kc][2] = pack_bf16(s[2 * kc + 1][0], s[2 * kc + 1][1]);
                pa[kc][3] = pack_bf16(s[2 * kc + 1][2], s[2 * kc + 1][3]);
            }
            haveP = true; // o is still zero: nothing to rescale
        }
        if (next) {
#pragma unroll
            for (int i = 0; i < BN / 8; i++) s[i][0] = s[i][1] = s[i][2] = s[i][3] = 0.0f;
        }
        wgmma_fence();
        if (next) {
            hop_issue_s<D>(s, qRows, St + (unsigned int)((j + 1) % 3) * STAGE);
            wgmma_commit();
        }
        const unsigned int Vb = St + (unsigned int)(j % 3) * STAGE + KVBYTES;
#pragma unroll
        for (int kc = 0; kc < BN / 16; kc++) wgmma_rs_d<D>(&o[0][0], pa[kc], smem_desc(Vb + kc * 2048, BN * 128));
        wgmma_commit();
        if (next) {
            wgmma_wait_one(); // S of tile j+1 is in; P(j) V(j) may still run
            hold_regs<BN / 2>(&s[0][0]);
            hop_softmax_step<BN>(s, kn, t, loA, loB, posA, posB, kn < wgMaxLo || kn + BN - 1 > wgFirstPos, capped,
                                 scale, softcap, sl2, mA, mB, lA, lB, cA, cB);
        }
        wgmma_wait_all();
        hold_regs<D / 2>(&o[0][0]);
        if (next) {
#pragma unroll
            for (int dn = 0; dn < D / 8; dn++) {
                o[dn][0] *= cA;
                o[dn][1] *= cA;
                o[dn][2] *= cB;
                o[dn][3] *= cB;
            }
#pragma unroll
            for (int kc = 0; kc < BN / 16; kc++) {
                pa[kc][0] = pack_bf16(s[2 * kc][0], s[2 * kc][1]);
                pa[kc][1] = pack_bf16(s[2 * kc][2], s[2 * kc][3]);
                pa[kc][2] = pack_bf16(s[2 * kc + 1][0], s[2 * kc + 1][1]);
                pa[kc][3] = pack_bf16(s[2 * kc + 1][2], s[2 * kc + 1][3]);
            }
        } else {
            haveP = false;
        }
    }
    cp_async_wait_all();
    lA += __shfl_xor_sync(0xffffffffu, lA, 1);
    lA += __shfl_xor_sync(0xffffffffu, lA, 2);
    lB += __shfl_xor_sync(0xffffffffu, lB, 1);
    lB += __shfl_xor_sync(0xffffffffu, lB, 2);
    const float iA = lA > 0.0f ? 1.0f / lA : 0.0f, iB = lB > 0.0f ? 1.0f / lB : 0.0f;
#pragma unroll
    for (int dn = 0; dn < D / 8; dn++) {
        o[dn][0] *= iA;
        o[dn][1] *= iA;
        o[dn][2] *= iB;
        o[dn][3] *= iB;
    }
    store_rows<D>(out, odt, o, rowA, rowB, Tq, qStride, (i64)h * D, 1.0f, t);
    if (lse != nullptr && t == 0) {
        if (rowA < Tq) lse[(i64)h * Tq + rowA] = (mA + log2f(lA)) * LN2;
        if (rowB < Tq) lse[(i64)h * Tq + rowB] = (mB + log2f(lB)) * LN2;
    }
}
#endif

// HOP_FWD_WS=1 or 2 (WHET_NVRTC_DEFINES; engine/cuda/attention.go reads
// the same defines for the launch) selects the warp-specialised forward
// below instead of attn_fwd_hopper: an experiment, compiled only when asked
// for. FlashAttention 3's structure on cp.async instead of TMA:
//   warpgroup 0, the producer, copies Q once and then K and V tiles of
//   128 keys into HOP_WS_STAGES stages with cp.async; each copy signals
//   its stage's "full" mbarrier on completion
//   (cp.async.mbarrier.arrive.noinc), so no thread waits for its own copies;
//   warpgroups 1..NC, the consumers, hold 64 query rows each (NC = 2, or
//   HOP_WS_WG64 at head dim 64: 128 or 192 rows a block) and never copy:
//   they wait on the full barriers and give a stage back through its
//   "empty" mbarrier (one arrival per consumer warp) once their wgmma has
//   read it. There is no block-wide barrier in the loop.
// Per key tile j a consumer issues S(j) = Q K(j)^T and P(j-1) V(j-1)
// together, then takes the softmax of S(j) while P(j-1) V(j-1) runs
// (the intra-warpgroup overlap of attn_fwd_hopper_ov), and with
// HOP_WS_PINGPONG=1 (the default) the consumers take turns issuing through
// named barriers 1..NC (a ring), so one warpgroup's softmax runs while
// another's products use the tensor cores (the inter-warpgroup pingpong).
// HOP_WS_INTRA=0 (an experiment) does P(j) V(j) right after the softmax of
// S(j) instead, waiting for it, outside the turns.
// HOP_FWD_WS=2 also moves registers from the producer to the consumers
// with setmaxnreg (HOP_WS_PREG2/CREG2 for 2 consumers, PREG3/CREG3 for 3;
// producer + NC consumers must add up to what ptxas gave every thread of the
// block times NC + 1, or setmaxnreg.inc waits for registers that never come).
// Every consumer waits for and gives back every tile of the block, also the
// ones its rows do not see, and takes a turn for each, so that the barrier
// counts hold whatever the mask.
#if HOP_WS_TMA && !HOP_FWD_WS
#error "HOP_WS_TMA is a knob of the warp-specialised forward: set HOP_FWD_WS too"
#endif
#if HOP_WS_NOSER && !HOP_FWD_WS
#error "HOP_WS_NOSER is a knob of the warp-specialised forward: set HOP_FWD_WS too"
#endif
#if HOP_FWD_WS
#if HOP_FWD_OVERLAP
#error "HOP_FWD_WS and HOP_FWD_OVERLAP are two different forwards: set one"
#endif

__device__ __forceinline__ void mbar_init(unsigned int bar, unsigned int count) {
    asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;\n" ::"r"(bar), "r"(count) : "memory");
}

// mbar_wait returns once the phase of the mbarrier at bar with parity
// `parity` has completed (acquire: the writes released into it are visible).
// With HOP_WS_WATCHDOG (the default) a wait that lasts 2^22 polls (a tenth
// of a second at the least; every real wait here is microseconds) traps, so
// that a barrier that never completes fails the launch instead of hanging.
#ifndef HOP_WS_WATCHDOG
#define HOP_WS_WATCHDOG 1
#endif
__device__ __forceinline__ void mbar_wait(unsigned int bar, unsigned int parity) {
    unsigned int done;
#if HOP_WS_WATCHDOG
    unsigned int polls = 0;
#endif
    do {
        asm volatile("{\n.reg .pred p;\nmbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2;\nselp.u32 %0, 1, 0, p;\n}\n"
                     : "=r"(done)
                     : "r"(bar), "r"(parity)
                     : "memory");
#if HOP_WS_WATCHDOG
        if (!done && ++polls == (1u << 22)) asm volatile("trap;");
#endif
    } while (!done);
}

__device__ __forceinline__ void mbar_arrive(unsigned int bar) {
    asm volatile("{\n.reg .b64 st;\nmbarrier.arrive.shared::cta.b64 st, [%0];\n}\n" ::"r"(bar) : "memory");
}

// cp_async_mbar_arrive makes the mbarrier at bar receive one arrival once
// every cp.async this thread issued before has landed (the arrival is one
// of the barrier's expected count: .noinc).
__device__ __forceinline__ void cp_async_mbar_arrive(unsigned int bar) {
    asm volatile("cp.async.mbarrier.arrive.noinc.shared::cta.b64 [%0];\n" ::"r"(bar) : "memory");
}

__device__ __forceinline__ void named_sync(int id, int threads) {
    asm volatile("bar.sync %0, %1;\n" ::"r"(id), "r"(threads) : "memory");
}
__device__ __forceinline__ void named_arrive(int id, int threads) {
    asm volatile("bar.arrive %0, %1;\n" ::"r"(id), "r"(threads) : "memory");
}

__device__ __forceinline__ void wgmma_wait_one_ws() { asm volatile("wgmma.wait_group.sync.aligned 1;\n" ::: "memory"); }

#if HOP_WS_NOSER
// wgmma_ss_n128_first: d[0..64) = A B (scale-d = 0: the old values of d
// are neither read nor kept), A (64 x 16) and B (16 x 128) K-major in
// shared memory. The first step of S = Q K^T: no instruction zeroes the
// accumulators between wgmma.fence and the wgmma (which ptxas would
// answer by serialising), and the compiler sees d as written here only,
// so the last tile's probabilities are not operands of this wgmma.
__device__ __forceinline__ void wgmma_ss_n128_first(float* d, unsigned long long da, unsigned long long db) {
    asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %66, 0;\n"
                 "wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16 {"
                 "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, "
                 "%16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, "
                 "%32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, "
                 "%48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63"
                 "}, %64, %65, p, 1, 1, 0, 0;\n}\n"
                 : "=f"(d[0]), "=f"(d[1]), "=f"(d[2]), "=f"(d[3]), "=f"(d[4]), "=f"(d[5]), "=f"(d[6]), "=f"(d[7]),
                   "=f"(d[8]), "=f"(d[9]), "=f"(d[10]), "=f"(d[11]), "=f"(d[12]), "=f"(d[13]), "=f"(d[14]), "=f"(d[15]),
                   "=f"(d[16]), "=f"(d[17]), "=f"(d[18]), "=f"(d[19]), "=f"(d[20]), "=f"(d[21]), "=f"(d[22]), "=f"(d[23]),
                   "=f"(d[24]), "=f"(d[25]), "=f"(d[26]), "=f"(d[27]), "=f"(d[28]), "=f"(d[29]), "=f"(d[30]), "=f"(d[31]),
                   "=f"(d[32]), "=f"(d[33]), "=f"(d[34]), "=f"(d[35]), "=f"(d[36]), "=f"(d[37]), "=f"(d[38]), "=f"(d[39]),
                   "=f"(d[40]), "=f"(d[41]), "=f"(d[42]), "=f"(d[43]), "=f"(d[44]), "=f"(d[45]), "=f"(d[46]), "=f"(d[47]),
                   "=f"(d[48]), "=f"(d[49]), "=f"(d[50]), "=f"(d[51]), "=f"(d[52]), "=f"(d[53]), "=f"(d[54]), "=f"(d[55]),
                   "=f"(d[56]), "=f"(d[57]), "=f"(d[58]), "=f"(d[59]), "=f"(d[60]), "=f"(d[61]), "=f"(d[62]), "=f"(d[63])
                 : "l"(da), "l"(db), "r"(0));
}

// wgmma_ss_n64_first is wgmma_ss_n128_first for a 64-key tile (HOP_WS_BN64
// or HOP_WS_BN128 = 64): d[0..32) = A B, B (16 x 64).
__device__ __forceinline__ void wgmma_ss_n64_first(float* d, unsigned long long da, unsigned long long db) {
    asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %34, 0;\n"
                 "wgmma.mma_async.sync.aligned.m64n64k16.f32.bf16.bf16 {"
                 "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, "
                 "%16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31"
                 "}, %32, %33, p, 1, 1, 0, 0;\n}\n"
                 : "=f"(d[0]), "=f"(d[1]), "=f"(d[2]), "=f"(d[3]), "=f"(d[4]), "=f"(d[5]), "=f"(d[6]), "=f"(d[7]),
                   "=f"(d[8]), "=f"(d[9]), "=f"(d[10]), "=f"(d[11]), "=f"(d[12]), "=f"(d[13]), "=f"(d[14]), "=f"(d[15]),
                   "=f"(d[16]), "=f"(d[17]), "=f"(d[18]), "=f"(d[19]), "=f"(d[20]), "=f"(d[21]), "=f"(d[22]), "=f"(d[23]),
                   "=f"(d[24]), "=f"(d[25]), "=f"(d[26]), "=f"(d[27]), "=f"(d[28]), "=f"(d[29]), "=f"(d[30]), "=f"(d[31])
                 : "l"(da), "l"(db), "r"(0));
}

// hold_u32 is hold_regs for 32-bit registers (the A fragments of P): their
// last definition is an asm volatile, which the compiler keeps on its side
// of the wgmma.fence (asm volatile too), so the packing of P never lands
// between the fence and the wgmma that reads it.
template <int N>
__device__ __forceinline__ void hold_u32(unsigned int* r) {
#pragma unroll
    for (int i = 0; i < N; i++) asm volatile("" : "+r"(r[i])::"memory");
}

// named_arrive_if and mbar_arrive_if are named_arrive and mbar_arrive as
// predicated instructions (no branch): they sit between a wgmma's issue and
// its wait, where the consumer loop keeps the control flow straight.
__device__ __forceinline__ void named_arrive_if(int id, int threads, bool cond) {
    asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %2, 0;\n@p bar.arrive %0, %1;\n}\n" ::"r"(id), "r"(threads),
                 "r"((int)cond)
                 : "memory");
}
__device__ __forceinline__ void mbar_arrive_if(unsigned int bar, bool cond) {
    asm volatile("{\n.reg .pred p;\n.reg .b64 st;\nsetp.ne.b32 p, %1, 0;\n@p mbarrier.arrive.shared::cta.b64 st, [%0];\n}\n" ::"r"(bar),
                 "r"((int)cond)
                 : "memory");
}

// ws_issue_s issues S = Q K^T (no commit) of the warpgroup's Q rows at
// qRows (in Q panels of BM rows) against the K tile of BN keys at Kb into
// s, the first step with scale-d = 0.
template <int D, int BM, int BN = HOP_BN>
__device__ __forceinline__ void ws_issue_s(float (*s)[4], unsigned int qRows, unsigned int Kb) {
    if constexpr (BN == 64) {
        wgmma_ss_n64_first(&s[0][0], smem_desc(qRows, 16), smem_desc(Kb, 16));
    } else {
        wgmma_ss_n128_first(&s[0][0], smem_desc(qRows, 16), smem_desc(Kb, 16));
    }
#pragma unroll
    for (int kc = 1; kc < D / 16; kc++) {
        const unsigned int col = (kc & 3) * 32;
        if constexpr (BN == 64) {
            wgmma_ss_n64(&s[0][0], smem_desc(qRows + (kc >> 2) * (BM * 128) + col, 16),
                         smem_desc(Kb + (kc >> 2) * (BN * 128) + col, 16));
        } else {
            wgmma_ss_n128(&s[0][0], smem_desc(qRows + (kc >> 2) * (BM * 128) + col, 16),
                          smem_desc(Kb + (kc >> 2) * (BN * 128) + col, 16));
        }
    }
}

// ws_softmax turns the raw scores s of the key tile at kt into
// probabilities: soft-cap, mask (when `masked`: some pair of the tile is
// outside a row's keys), online softmax; the loop's steps of the same names.
template <int BN>
__device__ __forceinline__ void ws_softmax(float (*s)[4], int kt, int t, int loA, int loB, int posA, int posB,
                                           bool masked, bool capped, float scale, float softcap, float sl2, float& mA,
                                           float& mB, float& lA, float& lB, float& cA, float& cB) {
    if (capped) {
#pragma unroll
        for (int nt = 0; nt < BN / 8; nt++) {
#pragma unroll
            for (int e = 0; e < 4; e++) s[nt][e] = softcap * tanhf(s[nt][e] * scale / softcap);
        }
    }
    if (masked) {
#pragma unroll
        for (int nt = 0; nt < BN / 8; nt++) {
#pragma unroll
            for (int e = 0; e < 4; e++) {
                const int key = kt + nt * 8 + 2 * t + (e & 1);
                const bool valid = e < 2 ? (key >= loA && key <= posA) : (key >= loB && key <= posB);
                if (!valid) s[nt][e] = NEG_INF;
            }
        }
    }
    softmax_tile<BN / 8>(s, sl2, mA, mB, lA, lB, cA, cB);
}

// ws_pack_p packs P's A fragments for the 16-key steps: the accumulators
// of column tiles 2kc and 2kc+1, rounded to bf16.
template <int BN>
__device__ __forceinline__ void ws_pack_p(unsigned int (*pa)[4], const float (*s)[4]) {
#pragma unroll
    for (int kc = 0; kc < BN / 16; kc++) {
        pa[kc][0] = pack_bf16(s[2 * kc][0], s[2 * kc][1]);
        pa[kc][1] = pack_bf16(s[2 * kc][2], s[2 * kc][3]);
        pa[kc][2] = pack_bf16(s[2 * kc + 1][0], s[2 * kc + 1][1]);
        pa[kc][3] = pack_bf16(s[2 * kc + 1][2], s[2 * kc + 1][3]);
    }
}

// wgmma_ss_n64_tb, wgmma_ss_n128_tb: d[0..N/2) += A B, A (64 x 16) K-major
// and B (16 x N) N-major (transposed), both in shared memory: O += P V with
// P from shared memory (HOP_WS_PSMEM64/128).
__device__ __forceinline__ void wgmma_ss_n64_tb(float* d, unsigned long long da, unsigned long long db) {
    asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %34, 0;\n"
                 "wgmma.mma_async.sync.aligned.m64n64k16.f32.bf16.bf16 {"
                 "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, "
                 "%16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31"
                 "}, %32, %33, p, 1, 1, 0, 1;\n}\n"
                 : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]),
                   "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]),
                   "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]),
                   "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31])
                 : "l"(da), "l"(db), "r"(1));
}
__device__ __forceinline__ void wgmma_ss_n128_tb(float* d, unsigned long long da, unsigned long long db) {
    asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %66, 0;\n"
                 "wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16 {"
                 "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, "
                 "%16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, "
                 "%32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, "
                 "%48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63"
                 "}, %64, %65, p, 1, 1, 0, 1;\n}\n"
                 : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]),
                   "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]),
                   "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]),
                   "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]),
                   "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]),
                   "+f"(d[40]), "+f"(d[41]), "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]),
                   "+f"(d[48]), "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]),
                   "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63])
                 : "l"(da), "l"(db), "r"(1));
}

// ws_issue_pv issues O += P V (no commit) over the BN keys of the V tile at
// Vb: P from registers (pa), or with PSM from this warpgroup's P tile at Pw
// (64 rows, K-major, BN / 64 panels of 64 rows x 128 bytes).
template <int D, int BN, bool PSM>
__device__ __forceinline__ void ws_issue_pv(float (*o)[4], unsigned int (*pa)[4], unsigned int Pw, unsigned int Vb) {
#pragma unroll
    for (int kc = 0; kc < BN / 16; kc++) {
        if constexpr (PSM) {
            const unsigned long long dp = smem_desc(Pw + (kc >> 2) * (64 * 128) + (kc & 3) * 32, 16);
            if constexpr (D == 64) {
                wgmma_ss_n64_tb(&o[0][0], dp, smem_desc(Vb + kc * 2048, BN * 128));
            } else {
                wgmma_ss_n128_tb(&o[0][0], dp, smem_desc(Vb + kc * 2048, BN * 128));
            }
        } else {
            wgmma_rs_d<D>(&o[0][0], pa[kc], smem_desc(Vb + kc * 2048, BN * 128));
        }
    }
}

// ws_hold_p pins P's registers before a wgmma.fence when P V reads them
// (not with PSM: they are dead once P is in shared memory).
template <int BN, bool PSM>
__device__ __forceinline__ void ws_hold_p(unsigned int (*pa)[4]) {
    if constexpr (!PSM) hold_u32<BN / 4>(&pa[0][0]);
}

// ws_store_p (PSM) writes P's A fragments (ws_pack_p) into this
// warpgroup's P tile at Pw in the swizzled K-major layout of the head of
// this file: warp w4 (of 4) holds rows 16 w4 + g and + 8, keys 16 kc + 2t
// (+ 8) in pa[kc][0..3]; then makes the writes visible to wgmma (proxy
// fence) and waits for the warpgroup's 128 threads on named barrier bar.
template <int BN>
__device__ __forceinline__ void ws_store_p(unsigned int Pw, const unsigned int (*pa)[4], int w4, int g, int t, int bar) {
    const unsigned int rA = Pw + (unsigned int)((16 * w4 + g) * 128 + 4 * t), rB = rA + 8 * 128;
#pragma unroll
    for (int kc = 0; kc < BN / 16; kc++) {
        const unsigned int panel = (kc >> 2) * (64 * 128);
        const unsigned int c0 = (unsigned int)((((2 * kc) & 7) ^ g) << 4), c1 = (unsigned int)((((2 * kc + 1) & 7) ^ g) << 4);
        asm volatile("st.shared.b32 [%0], %1;\n" ::"r"(rA + panel + c0), "r"(pa[kc][0]) : "memory");
        asm volatile("st.shared.b32 [%0], %1;\n" ::"r"(rB + panel + c0), "r"(pa[kc][1]) : "memory");
        asm volatile("st.shared.b32 [%0], %1;\n" ::"r"(rA + panel + c1), "r"(pa[kc][2]) : "memory");
        asm volatile("st.shared.b32 [%0], %1;\n" ::"r"(rB + panel + c1), "r"(pa[kc][3]) : "memory");
    }
    fence_async_smem();
    named_sync(bar, 128);
}

// ws_pv_alone does O += P V for the V tile in stage st (waiting for it,
// parity par) and gives the stage back: issue, wait, release, with nothing
// else in flight. P from registers, or with PSM from the P tile at Pw.
template <int D, int BN = HOP_BN, bool PSM = false>
__device__ __forceinline__ void ws_pv_alone(float (*o)[4], unsigned int (*pa)[4], unsigned int Vs, unsigned int vFull,
                                            unsigned int vEmpty, int st, unsigned int par, int lane, unsigned int Pw = 0) {
    const unsigned int Vb = Vs + (unsigned int)st * (BN * D * 2);
    mbar_wait(vFull + 8 * st, par);
    fence_async_smem();
    hold_regs<D / 2>(&o[0][0]);
    ws_hold_p<BN, PSM>(pa);
    wgmma_fence();
    ws_issue_pv<D, BN, PSM>(o, pa, Pw, Vb);
    wgmma_commit();
    wgmma_wait_all();
    hold_regs<D / 2>(&o[0][0]);
    mbar_arrive_if(vEmpty + 8 * st, lane == 0); // done with V
}

// ws_skip_tile is a consumer's part in key tile j when none of its rows
// sees it: wait for K(j), take the pingpong turn (consumer c of NC), give
// K(j) back, wait for V(j) and give it back.
template <int S>
__device__ __forceinline__ void ws_skip_tile(int j, int nTiles, unsigned int kFull, unsigned int vFull,
                                             unsigned int kEmpty, unsigned int vEmpty, int lane, int c, int NC) {
    const int st = j % S;
    const unsigned int par = (j / S) & 1;
    mbar_wait(kFull + 8 * st, par);
#if HOP_WS_PINGPONG
    named_sync(1 + c, 256);
    named_arrive_if(1 + (c + 1) % NC, 256, !(c == NC - 1 && j == nTiles - 1));
#endif
    mbar_arrive_if(kEmpty + 8 * st, lane == 0);
    mbar_wait(vFull + 8 * st, par);
    mbar_arrive_if(vEmpty + 8 * st, lane == 0);
}
#endif

// ws_load_tile is load_tile for the producer's 128 threads (ptid 0..127).
template <int D, int R>
__device__ __forceinline__ void ws_load_tile(unsigned int tile, const unsigned short* src, i64 stride, i64 col0, int r0,
                                             int rowEnd, int ptid) {
    constexpr int CH = D / 8;
#pragma unroll 4
    for (int c = ptid; c < R * CH; c += 128) {
        const int r = c / CH, ch = c % CH, i = r0 + r;
        const bool ok = i < rowEnd;
        const unsigned int dst = tile + (unsigned int)((ch >> 3) * (R * 128) + r * 128 + (((ch & 7) ^ (r & 7)) << 4));
        cp_async16(dst, ok ? src + (i64)i * stride + col0 + ch * 8 : src, ok);
    }
}

#if HOP_WS_TMA && __CUDA_ARCH__ >= 900
// HOP_WS_TMA=1: the producer copies with TMA (cp.async.bulk.tensor) instead
// of cp.async. Its tensor maps (Q, K, V: 3-D bf16 maps of [rows][heads][D]
// with 64-column boxes and the 128-byte swizzle, encoded on the host by
// cuTensorMapEncodeTiled) live in this module's global memory, written
// before the forward by attention_hopper_tmap_store in stream order.
__device__ __attribute__((aligned(64))) unsigned long long hop_tmaps[3][16];

__device__ __forceinline__ void tmap_acquire(unsigned long long tmap) {
    asm volatile("fence.proxy.tensormap::generic.acquire.gpu [%0], 128;\n" ::"l"(tmap) : "memory");
}

__device__ __forceinline__ void mbar_expect_tx(unsigned int bar, unsigned int bytes) {
    asm volatile("{\n.reg .b64 st;\nmbarrier.arrive.expect_tx.shared::cta.b64 st, [%0], %1;\n}\n" ::"r"(bar), "r"(bytes)
                 : "memory");
}

// tma_load_3d copies the box at coordinates (c0 = column, c1 = head, c2 =
// first row) of the tensor map at tmap to shared address dst; rows past
// the tensor's end arrive as zeros. Completes tx bytes on the mbarrier bar.
__device__ __forceinline__ void tma_load_3d(unsigned int dst, unsigned long long tmap, int c0, int c1, int c2,
                                            unsigned int bar) {
    asm volatile("cp.async.bulk.tensor.3d.shared::cluster.global.tile.mbarrier::complete_tx::bytes [%0], [%1, {%2, %3, "
                 "%4}], [%5];\n" ::"r"(dst),
                 "l"(tmap), "r"(c0), "r"(c1), "r"(c2), "r"(bar)
                 : "memory");
}
#endif

template <int D, int NC>
__device__ __forceinline__ void attn_fwd_hopper_ws(void* out, int odt, float* lse, const unsigned short* q,
                                                   const unsigned short* k, const unsigned short* v,
                                                   const int* starts, int nseq, int Tq, int qOffset, int H, int KVH,
                                                   float scale, int window, float softcap) {
    constexpr int BM = 64 * NC, BN = HOP_WS_BN(D), S = HOP_WS_STAGES_D(D);
    constexpr unsigned int QBYTES = BM * D * 2, KVBYTES = BN * D * 2;
    // Arrivals that complete a full barrier: every producer thread's
    // cp.async, or the one thread that issues the TMA copies.
    constexpr unsigned int FULL = HOP_WS_TMA ? 1 : 128;
    extern __shared__ __attribute__((aligned(16))) unsigned char hop_smem[];
    const unsigned int base = (smem_u32(hop_smem) + 1023u) & ~1023u;
    const unsigned int Qs = base, Ks = Qs + QBYTES, Vs = Ks + S * KVBYTES;
    // HOP_WS_PSMEM64/128: the consumers' P tiles (64 rows x BN keys each) after V.
    constexpr unsigned int PBYTES = HOP_WS_PSMEM_D(D) ? 64 * BN * 2 : 0;
    const unsigned int Ps = Vs + S * KVBYTES;
    // mbarriers (8 bytes each): Q full, then K full, V full, K empty, V empty [S] each.
    const unsigned int qFull = Ps + NC * PBYTES, kFull = qFull + 8, vFull = kFull + 8 * S, kEmpty = vFull + 8 * S,
                       vEmpty = kEmpty + 8 * S;
    const int h = blockIdx.x, kvh = h / (H / KVH);
    const int q0 = (gridDim.y - 1 - blockIdx.y) * BM;
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5, wg = warp >> 2;
#if HOP_WS_NOSER
    // The warpgroup index, broadcast from lane 0 so that ptxas knows it (and
    // what follows from it) is the same across the warp.
    const int wgU = __shfl_sync(0xffffffffu, wg, 0);
#else
    const int wgU = wg;
#endif
    const i64 qStride = (i64)H * D, kvStride = (i64)KVH * D;

    const int kEnd = qOffset + min(q0 + BM, Tq) - 1; // last key any query of the block sees
    const int kStart = first_key(starts, nseq, qOffset + q0, window);
    const int nTiles = kEnd >= kStart ? (kEnd - kStart) / BN + 1 : 0;

    if (tid == 0) {
        mbar_init(qFull, FULL);
        for (int s = 0; s < S; s++) {
            mbar_init(kFull + 8 * s, FULL);
            mbar_init(vFull + 8 * s, FULL);
            mbar_init(kEmpty + 8 * s, 4 * NC);
            mbar_init(vEmpty + 8 * s, 4 * NC);
        }
        asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
    }
    __syncthreads();

    if (wgU == 0) { // the producer
#if HOP_FWD_WS == 2
        asm volatile("setmaxnreg.dec.sync.aligned.u32 %0;\n" ::"n"(NC == 3 ? HOP_WS_PREG3 : HOP_WS_PREG2));
#endif
        const int ptid = tid;
#if HOP_WS_TMA && __CUDA_ARCH__ >= 900
        // One thread issues every copy: Q once, then K and V per tile, each
        // 64-column panel one TMA box (the tensor maps swizzle as the
        // descriptors expect); the full barrier expects the bytes.
        if (ptid == 0) {
            const unsigned long long tq = (unsigned long long)&hop_tmaps[0][0], tk = (unsigned long long)&hop_tmaps[1][0],
                                     tv = (unsigned long long)&hop_tmaps[2][0];
            tmap_acquire(tq);
            tmap_acquire(tk);
            tmap_acquire(tv);
            mbar_expect_tx(qFull, QBYTES);
#pragma unroll
            for (int p = 0; p < D / 64; p++) tma_load_3d(Qs + p * (BM * 128), tq, 64 * p, h, q0, qFull);
            for (int j = 0; j < nTiles; j++) {
                const int st = j % S, kt = kStart + j * BN;
                const unsigned int par = ((j / S) & 1) ^ 1; // the consumers' release of tile j - S
                if (j >= S) mbar_wait(kEmpty + 8 * st, par);
                mbar_expect_tx(kFull + 8 * st, KVBYTES);
#pragma unroll
                for (int p = 0; p < D / 64; p++)
                    tma_load_3d(Ks + st * KVBYTES + p * (BN * 128), tk, 64 * p, kvh, kt, kFull + 8 * st);
                if (j >= S) mbar_wait(vEmpty + 8 * st, par);
                mbar_expect_tx(vFull + 8 * st, KVBYTES);
#pragma unroll
                for (int p = 0; p < D / 64; p++)
                    tma_load_3d(Vs + st * KVBYTES + p * (BN * 128), tv, 64 * p, kvh, kt, vFull + 8 * st);
            }
        }
        return;
#endif
        const i64 kvCol = (i64)kvh * D;
        ws_load_tile<D, BM>(Qs, q, qStride, (i64)h * D, q0, Tq, ptid);
        cp_async_mbar_arrive(qFull);
        for (int j = 0; j < nTiles; j++) {
            const int st = j % S, kt = kStart + j * BN;
            const unsigned int par = ((j / S) & 1) ^ 1; // the consumers' release of tile j - S
            if (j >= S) mbar_wait(kEmpty + 8 * st, par);
            ws_load_tile<D, BN>(Ks + st * KVBYTES, k, kvStride, kvCol, kt, kEnd + 1, ptid);
            cp_async_mbar_arrive(kFull + 8 * st);
            if (j >= S) mbar_wait(vEmpty + 8 * st, par);
            ws_load_tile<D, BN>(Vs + st * KVBYTES, v, kvStride, kvCol, kt, kEnd + 1, ptid);
            cp_async_mbar_arrive(vFull + 8 * st);
        }
        cp_async_wait_all();
        return;
    }

#if HOP_FWD_WS == 2
    asm volatile("setmaxnreg.inc.sync.aligned.u32 %0;\n" ::"n"(NC == 3 ? HOP_WS_CREG3 : HOP_WS_CREG2));
#endif
    const int c = wgU - 1, g = lane >> 2, t = lane & 3; // consumer c: rows 64c..64c+63 of the block
    const int rowA = q0 + 64 * c + 16 * (warp & 3) + g, rowB = rowA + 8;
    const int posA = qOffset + rowA, posB = qOffset + rowB;
    const int loA = rowA < Tq ? first_key(starts, nseq, posA, window) : 0x7fffffff;
    const int loB = rowB < Tq ? first_key(starts, nseq, posB, window) : 0x7fffffff;
    const int wgRow0 = q0 + 64 * c;
    const bool wgLive = wgRow0 < Tq;
    const int wgFirstPos = qOffset + wgRow0;
    const int wgLastPos = qOffset + min(wgRow0 + 63, Tq - 1);
    const int wgMinLo = wgLive ? first_key(starts, nseq, wgFirstPos, window) : 0;
    const int wgMaxLo = wgLive ? first_key(starts, nseq, wgLastPos, window) : 0;
    const bool capped = softcap > 0.0f;
    const float sl2 = capped ? LOG2E : scale * LOG2E; // capped scores are already scaled
    const unsigned int qRows = Qs + 64 * c * 128;     // this warpgroup's rows in each Q panel
#if HOP_WS_PINGPONG
    const int myTurn = 1 + c, nextTurn = 1 + (c + 1) % NC;
    if (c == NC - 1 && nTiles > 0) named_arrive(1, 256); // consumer 0 goes first
#endif

    float o[D / 8][4], s[BN / 8][4];
    unsigned int pa[BN / 16][4];
#pragma unroll
    for (int i = 0; i < D / 8; i++) o[i][0] = o[i][1] = o[i][2] = o[i][3] = 0.0f;
    float mA = NEG_INF, mB = NEG_INF, lA = 0.0f, lB = 0.0f;
    if (nTiles > 0) {
        mbar_wait(qFull, 0);
        fence_async_smem();
    }
#if HOP_WS_NOSER
    // HOP_WS_NOSER=1: the same steps and order of arithmetic as the loop
    // below, but no wgmma, wgmma.fence, commit or wait sits under a
    // condition inside the loop, nor does any instruction that writes a
    // wgmma operand between a fence and its wgmma: ptxas then has nothing
    // to guard with its own WG.AR / WG.DP (warpgroup arrive / wait) in a
    // path it cannot prove uniform, which it answers by serialising every
    // wgmma of the kernel (ptxas's C7518/C7520; tools/gpu/attention-fwd
    // found them in the loop below). The tiles this warpgroup sees form one
    // run [jLo, jHi); the tiles before and after it are only waited for,
    // given back and given their pingpong turn (ws_skip_tile), so the
    // barrier counts hold as below. In the run: S(jLo) alone, then per tile
    // j S(j) and P(j-1) V(j-1) issued together, the softmax of S(j) after
    // wait_group 1, the rescale of O and the packing of P(j) after
    // wait_group 0, and P(jHi-1) V(jHi-1) after the loop. S's first step
    // has scale-d = 0 instead of zeroed accumulators; O and P are pinned
    // (hold_regs, hold_u32) before each wgmma.fence.
    // HOP_WS_INTRA64/128 choose the overlap per head dim (HOP_WS_INTRA_D),
    // HOP_WS_BN64/128 the keys per tile (BN, above).
    // HOP_WS_PSMEM64/128 (PSM): this warpgroup's P tile is Ps + c * PBYTES,
    // its named barrier 1 + NC + c (the pingpong takes 1..NC).
    constexpr bool INTRA = HOP_WS_INTRA_D(D), PSM = HOP_WS_PSMEM_D(D);
    int jLo = 0, jHi = 0;
    if (wgLive) { // kStart <= wgMinLo <= wgLastPos <= kEnd
        jLo = (wgMinLo - kStart) / BN;
        jHi = max(jLo, min(nTiles, (wgLastPos - kStart) / BN + 1));
    }
    for (int j = 0; j < jLo; j++) ws_skip_tile<S>(j, nTiles, kFull, vFull, kEmpty, vEmpty, lane, c, NC);
    if (jLo < jHi) {
        { // S(jLo), its softmax and P(jLo); o is still zero
            const int j = jLo, st = j % S, kt = kStart + j * BN;
            const unsigned int par = (j / S) & 1;
            mbar_wait(kFull + 8 * st, par);
            fence_async_smem();
#if HOP_WS_PINGPONG
            named_sync(myTurn, 256);
#endif
            wgmma_fence();
            ws_issue_s<D, BM, BN>(s, qRows, Ks + st * KVBYTES);
            wgmma_commit();
#if HOP_WS_PINGPONG
            named_arrive_if(nextTurn, 256, !(c == NC - 1 && j == nTiles - 1));
#endif
            wgmma_wait_all();
            hold_regs<BN / 2>(&s[0][0]);
            mbar_arrive_if(kEmpty + 8 * st, lane == 0); // done with K(j)
            float cA, cB;
            ws_softmax<BN>(s, kt, t, loA, loB, posA, posB, kt < wgMaxLo || kt + BN - 1 > wgFirstPos, capped, scale,
                           softcap, sl2, mA, mB, lA, lB, cA, cB);
            ws_pack_p<BN>(pa, s);
            if constexpr (PSM) ws_store_p<BN>(Ps + c * PBYTES, pa, warp & 3, g, t, 1 + NC + c);
            if constexpr (!INTRA) ws_pv_alone<D, BN, PSM>(o, pa, Vs, vFull, vEmpty, st, par, lane, Ps + c * PBYTES);
        }
        for (int j = jLo + 1; j < jHi; j++) {
            const int st = j % S, kt = kStart + j * BN;
            const unsigned int par = (j / S) & 1;
            mbar_wait(kFull + 8 * st, par);
            const int pst = (j + S - 1) % S; // tile j-1's stage (with INTRA)
            const unsigned int ppar = ((j - 1) / S) & 1;
            if constexpr (INTRA) mbar_wait(vFull + 8 * pst, ppar);
            fence_async_smem();
            hold_regs<D / 2>(&o[0][0]);
            ws_hold_p<BN, PSM>(pa);
#if HOP_WS_PINGPONG
            named_sync(myTurn, 256);
#endif
            wgmma_fence();
            ws_issue_s<D, BM, BN>(s, qRows, Ks + st * KVBYTES);
            wgmma_commit();
            if constexpr (INTRA) {
                const unsigned int Vb = Vs + pst * KVBYTES;
                if constexpr (PSM) {
                    ws_issue_pv<D, BN, true>(o, pa, Ps + c * PBYTES, Vb);
                } else {
#pragma unroll
                    for (int kc = 0; kc < BN / 16; kc++) wgmma_rs_d<D>(&o[0][0], pa[kc], smem_desc(Vb + kc * 2048, BN * 128));
                }
                wgmma_commit();
            }
#if HOP_WS_PINGPONG
            named_arrive_if(nextTurn, 256, !(c == NC - 1 && j == nTiles - 1));
#endif
            if constexpr (INTRA) {
                wgmma_wait_one_ws(); // S(j) is in; P(j-1) V(j-1) may still run
            } else {
                wgmma_wait_all();
            }
            hold_regs<BN / 2>(&s[0][0]);
            mbar_arrive_if(kEmpty + 8 * st, lane == 0); // done with K(j)
            float cA, cB;
            ws_softmax<BN>(s, kt, t, loA, loB, posA, posB, kt < wgMaxLo || kt + BN - 1 > wgFirstPos, capped, scale,
                           softcap, sl2, mA, mB, lA, lB, cA, cB);
            if constexpr (INTRA) {
                wgmma_wait_all(); // P(j-1) V(j-1) is in
                hold_regs<D / 2>(&o[0][0]);
                hold_regs<BN / 2>(&s[0][0]);
                mbar_arrive_if(vEmpty + 8 * pst, lane == 0); // done with V(j-1)
            }
#pragma unroll
            for (int dn = 0; dn < D / 8; dn++) {
                o[dn][0] *= cA;
                o[dn][1] *= cA;
                o[dn][2] *= cB;
                o[dn][3] *= cB;
            }
            ws_pack_p<BN>(pa, s);
            if constexpr (PSM) ws_store_p<BN>(Ps + c * PBYTES, pa, warp & 3, g, t, 1 + NC + c);
            if constexpr (!INTRA) ws_pv_alone<D, BN, PSM>(o, pa, Vs, vFull, vEmpty, st, par, lane, Ps + c * PBYTES);
        }
        if constexpr (INTRA) { // P(jHi-1) V(jHi-1)
            const int j = jHi - 1, st = j % S;
            ws_pv_alone<D, BN, PSM>(o, pa, Vs, vFull, vEmpty, st, (j / S) & 1, lane, Ps + c * PBYTES);
        }
    }
    for (int j = jHi; j < nTiles; j++) ws_skip_tile<S>(j, nTiles, kFull, vFull, kEmpty, vEmpty, lane, c, NC);
#else
    bool haveP = false; // pa holds P of tile j-1, whose P V is still to do

    for (int j = 0; j < nTiles; j++) {
        const int st = j % S, kt = kStart + j * BN;
        const unsigned int par = (j / S) & 1;
        const bool vis = wgLive && kt <= wgLastPos && kt + BN - 1 >= wgMinLo; // warpgroup-uniform
        const int pst = (j + S - 1) % S;                                         // tile j-1's stage
        const unsigned int ppar = ((j - 1) / S) & 1;
        mbar_wait(kFull + 8 * st, par);
        if (haveP) mbar_wait(vFull + 8 * pst, ppar);
        fence_async_smem();
        if (vis) {
#pragma unroll
            for (int i = 0; i < BN / 8; i++) s[i][0] = s[i][1] = s[i][2] = s[i][3] = 0.0f;
        }
#if HOP_WS_PINGPONG
        named_sync(myTurn, 256);
#endif
        if (vis || haveP) wgmma_fence();
        if (vis) {
            const unsigned int Kb = Ks + st * KVBYTES;
#pragma unroll
            for (int kc = 0; kc < D / 16; kc++) {
                const unsigned int col = (kc & 3) * 32;
                wgmma_ss_n128(&s[0][0], smem_desc(qRows + (kc >> 2) * (BM * 128) + col, 16),
                              smem_desc(Kb + (kc >> 2) * (BN * 128) + col, 16));
            }
            wgmma_commit();
        }
        if (haveP) {
            const unsigned int Vb = Vs + pst * KVBYTES;
#pragma unroll
            for (int kc = 0; kc < BN / 16; kc++) wgmma_rs_d<D>(&o[0][0], pa[kc], smem_desc(Vb + kc * 2048, BN * 128));
            wgmma_commit();
        }
#if HOP_WS_PINGPONG
        if (!(c == NC - 1 && j == nTiles - 1)) named_arrive(nextTurn, 256);
#endif
        float cA = 1.0f, cB = 1.0f;
        if (vis) {
            if (haveP) {
                wgmma_wait_one_ws(); // S(j) is in; P(j-1) V(j-1) may still run
            } else {
                wgmma_wait_all();
            }
            hold_regs<BN / 2>(&s[0][0]);
        }
        if (lane == 0) mbar_arrive(kEmpty + 8 * st); // done with K(j)
        if (vis) {
            if (capped) {
#pragma unroll
                for (int nt = 0; nt < BN / 8; nt++) {
#pragma unroll
                    for (int e = 0; e < 4; e++) s[nt][e] = softcap * tanhf(s[nt][e] * scale / softcap);
                }
            }
            if (kt < wgMaxLo || kt + BN - 1 > wgFirstPos) { // some pair of this tile is masked
#pragma unroll
                for (int nt = 0; nt < BN / 8; nt++) {
#pragma unroll
                    for (int e = 0; e < 4; e++) {
                        const int key = kt + nt * 8 + 2 * t + (e & 1);
                        const bool valid = e < 2 ? (key >= loA && key <= posA) : (key >= loB && key <= posB);
                        if (!valid) s[nt][e] = NEG_INF;
                    }
                }
            }
            softmax_tile<BN / 8>(s, sl2, mA, mB, lA, lB, cA, cB);
        }
        if (haveP) {
            wgmma_wait_all();
            hold_regs<D / 2>(&o[0][0]);
            if (lane == 0) mbar_arrive(vEmpty + 8 * pst); // done with V(j-1)
        }
        if (vis) {
#pragma unroll
            for (int dn = 0; dn < D / 8; dn++) {
                o[dn][0] *= cA;
                o[dn][1] *= cA;
                o[dn][2] *= cB;
                o[dn][3] *= cB;
            }
#pragma unroll
            for (int kc = 0; kc < BN / 16; kc++) {
                pa[kc][0] = pack_bf16(s[2 * kc][0], s[2 * kc][1]);
                pa[kc][1] = pack_bf16(s[2 * kc][2], s[2 * kc][3]);
                pa[kc][2] = pack_bf16(s[2 * kc + 1][0], s[2 * kc + 1][1]);
                pa[kc][3] = pack_bf16(s[2 * kc + 1][2], s[2 * kc + 1][3]);
            }
        } else {
            // Rows that do not see tile j: give its V back once it is in.
            mbar_wait(vFull + 8 * st, par);
            if (lane == 0) mbar_arrive(vEmpty + 8 * st);
        }
        haveP = vis;
#if !HOP_WS_INTRA
        if (vis) { // HOP_WS_INTRA=0: P(j) V(j) at once, not overlapped with the softmax of S(j+1)
            mbar_wait(vFull + 8 * st, par);
            fence_async_smem();
            wgmma_fence();
            const unsigned int Vb = Vs + st * KVBYTES;
#pragma unroll
            for (int kc = 0; kc < BN / 16; kc++) wgmma_rs_d<D>(&o[0][0], pa[kc], smem_desc(Vb + kc * 2048, BN * 128));
            wgmma_commit();
            wgmma_wait_all();
            hold_regs<D / 2>(&o[0][0]);
            if (lane == 0) mbar_arrive(vEmpty + 8 * st);
            haveP = false;
        }
#endif
    }
    if (haveP) { // P V of the last tile
        const int pst = (nTiles - 1) % S;
        mbar_wait(vFull + 8 * pst, ((nTiles - 1) / S) & 1);
        fence_async_smem();
        const unsigned int Vb = Vs + pst * KVBYTES;
        wgmma_fence();
#pragma unroll
        for (int kc = 0; kc < BN / 16; kc++) wgmma_rs_d<D>(&o[0][0], pa[kc], smem_desc(Vb + kc * 2048, BN * 128));
        wgmma_commit();
        wgmma_wait_all();
        hold_regs<D / 2>(&o[0][0]);
    }
#endif // HOP_WS_NOSER
    lA += __shfl_xor_sync(0xffffffffu, lA, 1);
    lA += __shfl_xor_sync(0xffffffffu, lA, 2);
    lB += __shfl_xor_sync(0xffffffffu, lB, 1);
    lB += __shfl_xor_sync(0xffffffffu, lB, 2);
    const float iA = lA > 0.0f ? 1.0f / lA : 0.0f, iB = lB > 0.0f ? 1.0f / lB : 0.0f;
#pragma unroll
    for (int dn = 0; dn < D / 8; dn++) {
        o[dn][0] *= iA;
        o[dn][1] *= iA;
        o[dn][2] *= iB;
        o[dn][3] *= iB;
    }
    store_rows<D>(out, odt, o, rowA, rowB, Tq, qStride, (i64)h * D, 1.0f, t);
    if (lse != nullptr && t == 0) {
        if (rowA < Tq) lse[(i64)h * Tq + rowA] = (mA + log2f(lA)) * LN2;
        if (rowB < Tq) lse[(i64)h * Tq + rowB] = (mB + log2f(lB)) * LN2;
    }
}
#endif

#if HOP_FWD_WS
#define HOP_FWD_BODY(D)                                                                                                \
    attn_fwd_hopper_ws<D, HOP_WS_WG(D)>(out, odt, lse, q, k, v, starts, nseq, Tq, qOffset, H, KVH, scale, window,    \
                                        softcap)
#elif HOP_FWD_OVERLAP
#define HOP_FWD_BODY(D)                                                                                                \
    attn_fwd_hopper_ov<D>(out, odt, lse, q, k, v, starts, nseq, Tq, qOffset, H, KVH, scale, window, softcap)
#else
#define HOP_FWD_BODY(D)                                                                                                \
    attn_fwd_hopper<D>(out, odt, lse, q, k, v, starts, nseq, Tq, qOffset, H, KVH, scale, window, softcap)
#endif
#define HOP_DQ_BODY(D)                                                                                                 \
    attn_dq_hopper<D>(dq, dqdt, dout, q, k, v, lse, delta, starts, nseq, T, H, KVH, scale, window, softcap)
#define HOP_DKV_BODY(D)                                                                                                \
    attn_dkv_hopper<D>(dk, dkdt, dv, dvdt, dout, q, k, v, lse, delta, starts, nseq, T, H, KVH, scale, window, softcap)

#else // not sm_90a: the kernels exist (every file declares the same kernels on every architecture) but trap.

#define HOP_FWD_BODY(D) asm volatile("trap;")
#define HOP_DQ_BODY(D) asm volatile("trap;")
#define HOP_DKV_BODY(D) asm volatile("trap;")
#define HOP_PROBE_BODY(D) asm volatile("trap;")

#endif

// attention_forward_hopper_d<D>: grid (H, ceil(Tq / 128)), 256 threads,
// dynamic shared memory 1024 + 2 * (128 + 4 * 128) * D bytes
// (engine/cuda/attention.go, attnHopperSmem). With HOP_FWD_WS: grid
// (H, ceil(Tq / (64 * HOP_WS_WG(D)))), HOP_FWD_THREADS_D<D> threads, 1024 +
// 2 * D * (64 * HOP_WS_WG(D) + 2 * HOP_WS_STAGES_D(D) * HOP_WS_BN(D)) +
// max(128, 8 + 32 * HOP_WS_STAGES_D(D)) bytes.
extern "C" __global__ void __launch_bounds__(HOP_FWD_THREADS_D64, 1) attention_forward_hopper_d64(
    void* out, int odt, float* lse, const unsigned short* q, const unsigned short* k, const unsigned short* v,
    const int* starts, int nseq, int Tq, int qOffset, int H, int KVH, float scale, int window, float softcap) {
    HOP_FWD_BODY(64);
}

extern "C" __global__ void __launch_bounds__(HOP_FWD_THREADS_D128, 1) attention_forward_hopper_d128(
    void* out, int odt, float* lse, const unsigned short* q, const unsigned short* k, const unsigned short* v,
    const int* starts, int nseq, int Tq, int qOffset, int H, int KVH, float scale, int window, float softcap) {
    HOP_FWD_BODY(128);
}

// attention_hopper_tmap_store (HOP_WS_TMA=1 only; a trap otherwise, and
// never launched then): one thread writes the 16 words w0..w15 of tensor map
// `slot` (0 Q, 1 K, 2 V; engine/cuda/attention.go encodes them) into this
// module's hop_tmaps, in stream order before the forward that reads them.
extern "C" __global__ void attention_hopper_tmap_store(int slot, unsigned long long w0, unsigned long long w1,
                                                       unsigned long long w2, unsigned long long w3,
                                                       unsigned long long w4, unsigned long long w5,
                                                       unsigned long long w6, unsigned long long w7,
                                                       unsigned long long w8, unsigned long long w9,
                                                       unsigned long long w10, unsigned long long w11,
                                                       unsigned long long w12, unsigned long long w13,
                                                       unsigned long long w14, unsigned long long w15) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL) && HOP_WS_TMA && __CUDA_ARCH__ >= 900
    if (threadIdx.x == 0 && slot >= 0 && slot < 3) {
        unsigned long long* d = hop_tmaps[slot];
        d[0] = w0, d[1] = w1, d[2] = w2, d[3] = w3, d[4] = w4, d[5] = w5, d[6] = w6, d[7] = w7;
        d[8] = w8, d[9] = w9, d[10] = w10, d[11] = w11, d[12] = w12, d[13] = w13, d[14] = w14, d[15] = w15;
        asm volatile("fence.proxy.tensormap::generic.release.gpu;\n" ::: "memory");
    }
#else
    asm volatile("trap;");
#endif
}

// attention_backward_dq_hopper_d<D>: grid (H, ceil(T / 128)), 256 threads,
// dynamic shared memory 1024 + 1024 * D bytes (attnHopperSmem "dq").
extern "C" __global__ void __launch_bounds__(256, 1) attention_backward_dq_hopper_d64(
    void* dq, int dqdt, const unsigned short* dout, const unsigned short* q, const unsigned short* k,
    const unsigned short* v, const float* lse, const float* delta, const int* starts, int nseq, int T, int H, int KVH,
    float scale, int window, float softcap) {
    HOP_DQ_BODY(64);
}

extern "C" __global__ void __launch_bounds__(256, 1) attention_backward_dq_hopper_d128(
    void* dq, int dqdt, const unsigned short* dout, const unsigned short* q, const unsigned short* k,
    const unsigned short* v, const float* lse, const float* delta, const int* starts, int nseq, int T, int H, int KVH,
    float scale, int window, float softcap) {
    HOP_DQ_BODY(128);
}

// attention_backward_dkv_hopper_d<D>: grid (KVH, ceil(T / 128)), 256
// threads, dynamic shared memory 2048 + 1024 * D bytes (attnHopperSmem "dkv").
extern "C" __global__ void __launch_bounds__(256, 1) attention_backward_dkv_hopper_d64(
    void* dk, int dkdt, void* dv, int dvdt, const unsigned short* dout, const unsigned short* q,
    const unsigned short* k, const unsigned short* v, const float* lse, const float* delta, const int* starts, int nseq,
    int T, int H, int KVH, float scale, int window, float softcap) {
    HOP_DKV_BODY(64);
}

extern "C" __global__ void __launch_bounds__(256, 1) attention_backward_dkv_hopper_d128(
    void* dk, int dkdt, void* dv, int dvdt, const unsigned short* dout, const unsigned short* q,
    const unsigned short* k, const unsigned short* v, const float* lse, const float* delta, const int* starts, int nseq,
    int T, int H, int KVH, float scale, int window, float softcap) {
    HOP_DKV_BODY(128);
}

// attention_backward_fused_hopper_d<D>: grid (KVH, ceil(T / 128)), 256
// threads, dynamic shared memory 1024 + 1024 * D + 16384 + 1024 + 34816 +
// 16384 bytes (the last two: dQ staging and swapped halves)
// (attnHopperFusedSmem); a trap unless compiled with HOP_BWD_FUSED=1.
// The fused kernels' block (no parentheses inside __launch_bounds__:
// kernels.Declared reads the declarations): 128 * HOP_BWD_NWG(D) threads,
// 256, or 128 with HOP_BWD_WG1 (at d64 also with HOP_BWD_WG1_D64);
// HOP_BWD_MINB64 (default 1) asks ptxas to fit that many d64 blocks an SM
// (3 with one warpgroup: at most 168 registers a thread).
#define HOP_BWD_THREADS_D64 (128 * HOP_BWD_NWG(64))
#define HOP_BWD_THREADS_D128 (128 * HOP_BWD_NWG(128))
#ifndef HOP_BWD_MINB64
#define HOP_BWD_MINB64 1
#endif
#if defined(__CUDA_ARCH_FEAT_SM90_ALL) && HOP_BWD_FUSED && HOP_BWD_OVL
#define HOP_BWD_BODY(D)                                                                                                \
    if (softcap > 0.0f)                                                                                                \
        attn_bwd_fused_ovl<D, true>(dqAcc, dk, dkdt, dv, dvdt, dout, q, k, v, lse, delta, starts, nseq, T, H, KVH,    \
                                    scale, window, softcap);                                                           \
    else                                                                                                               \
        attn_bwd_fused_ovl<D, false>(dqAcc, dk, dkdt, dv, dvdt, dout, q, k, v, lse, delta, starts, nseq, T, H, KVH,   \
                                     scale, window, softcap)
#elif defined(__CUDA_ARCH_FEAT_SM90_ALL) && HOP_BWD_FUSED
#define HOP_BWD_BODY(D)                                                                                                \
    attn_bwd_fused_hopper<D>(dqAcc, dk, dkdt, dv, dvdt, dout, q, k, v, lse, delta, starts, nseq, T, H, KVH, scale,     \
                             window, softcap)
#else
#define HOP_BWD_BODY(D) asm volatile("trap;")
#endif
extern "C" __global__ void __launch_bounds__(HOP_BWD_THREADS_D64, HOP_BWD_MINB64) attention_backward_fused_hopper_d64(
    float* dqAcc, void* dk, int dkdt, void* dv, int dvdt, const unsigned short* dout, const unsigned short* q,
    const unsigned short* k, const unsigned short* v, const float* lse, const float* delta, const int* starts, int nseq,
    int T, int H, int KVH, float scale, int window, float softcap) {
    HOP_BWD_BODY(64);
}

extern "C" __global__ void __launch_bounds__(HOP_BWD_THREADS_D128, 1) attention_backward_fused_hopper_d128(
    float* dqAcc, void* dk, int dkdt, void* dv, int dvdt, const unsigned short* dout, const unsigned short* q,
    const unsigned short* k, const unsigned short* v, const float* lse, const float* delta, const int* starts, int nseq,
    int T, int H, int KVH, float scale, int window, float softcap) {
    HOP_BWD_BODY(128);
}

// attention_dq_zero_hopper clears the fused backward's dq accumulator (n
// floats, n a multiple of 4, 16-byte aligned); attention_dq_convert_hopper
// then writes dq[i] = scale * acc[i]. Grid-stride, any grid.
extern "C" __global__ void attention_dq_zero_hopper(float* acc, i64 n) {
    for (i64 i = (i64)blockIdx.x * blockDim.x + threadIdx.x; i < n / 4; i += (i64)gridDim.x * blockDim.x)
        ((float4*)acc)[i] = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
}

extern "C" __global__ void attention_dq_convert_hopper(void* dq, int dqdt, const float* acc, i64 n, float scale) {
    for (i64 i = (i64)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (i64)gridDim.x * blockDim.x)
        st(dq, dqdt, i, acc[i] * scale);
}

// attention_dq_convert_tiled_hopper writes dq = scale * acc from the tiled
// accumulator of HOP_BWD_DQT (attn_bwd_fused_ovl): H * ceil(T / 64) * (D /
// 64) blocks of 64 x 64 floats, block (hq, row tile r, column half c) at
// ((hq * ceil(T / 64) + r) * (D / 64) + c) * 4096, and in a block float4
// w * 256 + dn * 32 + l holding rows 16w + l/4 and +8, columns 8dn + 2(l%4)
// and +1 (rows at or past T are padding). Grid-stride, any grid.
extern "C" __global__ void attention_dq_convert_tiled_hopper(void* dq, int dqdt, const float* acc, int T, int H, int D,
                                                             float scale) {
    const int nRT = (T + 63) / 64, nc = D / 64;
    const i64 n4 = (i64)H * nRT * nc * 1024, stride = (i64)H * D;
    for (i64 f = (i64)blockIdx.x * blockDim.x + threadIdx.x; f < n4; f += (i64)gridDim.x * blockDim.x) {
        const float4 x = ((const float4*)acc)[f];
        const i64 sb = f >> 10;
        const int qd = (int)(f & 1023), w = qd >> 8, dn = (qd >> 5) & 7, l = qd & 31;
        const int c = (int)(sb % nc);
        const i64 rest = sb / nc;
        const int rt = (int)(rest % nRT), hq = (int)(rest / nRT);
        const int row = rt * 64 + 16 * w + (l >> 2);
        const i64 col = (i64)hq * D + c * 64 + dn * 8 + 2 * (l & 3);
        const i64 iA = (i64)row * stride + col, iB = iA + 8 * stride; // even: one 4-byte word of bf16 each
        if (dqdt == DT_BF16) {
            unsigned short* d = (unsigned short*)dq;
            if (row < T)
                *(unsigned int*)(d + iA) = f32_to_bf16(x.x * scale) | ((unsigned int)f32_to_bf16(x.y * scale) << 16);
            if (row + 8 < T)
                *(unsigned int*)(d + iB) = f32_to_bf16(x.z * scale) | ((unsigned int)f32_to_bf16(x.w * scale) << 16);
        } else {
            if (row < T) {
                st(dq, dqdt, iA, x.x * scale);
                st(dq, dqdt, iA + 1, x.y * scale);
            }
            if (row + 8 < T) {
                st(dq, dqdt, iB, x.z * scale);
                st(dq, dqdt, iB + 1, x.w * scale);
            }
        }
    }
}

// attention_hopper_probe_d<D>: one block of 256 threads, dynamic shared
// memory 1024 + 640 * D bytes (see hop_probe; for tests only).
extern "C" __global__ void __launch_bounds__(256, 1) attention_hopper_probe_d64(float* sOut, float* oOut,
                                                                               const unsigned short* q,
                                                                               const unsigned short* k,
                                                                               const unsigned short* v) {
    HOP_PROBE_BODY(64);
}

extern "C" __global__ void __launch_bounds__(256, 1) attention_hopper_probe_d128(float* sOut, float* oOut,
                                                                                const unsigned short* q,
                                                                                const unsigned short* k,
                                                                                const unsigned short* v) {
    HOP_PROBE_BODY(128);
}
