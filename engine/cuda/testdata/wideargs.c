// Stand-ins for the widest entry points the backend calls through purego,
// with the same parameter types: cuLaunchKernel (11 arguments, unsigned
// ints among pointers) and cublasLtMatmul (16 pointers and a size_t). Each
// checks every argument against the values purego_test.go passes and
// returns 0, or 100 + the position of the first wrong one. On arm64 the
// ninth and later arguments travel on the stack, on x86-64 the seventh
// and later: this is where a binding that works on one can break on the
// other.
#include <stddef.h>
#include <stdint.h>

#define P(n) ((void *)(uintptr_t)(0x1000000000000000ull + (n) * 0x0101010101ull))

int fake_cuLaunchKernel(void *f, unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by, unsigned bz,
                        unsigned smem, void *stream, void **params, void **extra) {
    if (f != P(1)) return 101;
    if (gx != 0xfffffff1u) return 102;
    if (gy != 2) return 103;
    if (gz != 3) return 104;
    if (bx != 256) return 105;
    if (by != 5) return 106;
    if (bz != 6) return 107;
    if (smem != 0x80000000u) return 108;
    if (stream != P(9)) return 109;
    if (params == 0 || *(int32_t *)params[0] != -7 || *(float *)params[1] != 1.5f) return 110;
    if (extra != 0) return 111;
    return 0;
}

int fake_cublasLtMatmul(void *handle, void *desc, const void *alpha, const void *a, void *adesc, const void *b,
                        void *bdesc, const void *beta, const void *c, void *cdesc, void *d, void *ddesc,
                        const void *algo, void *workspace, size_t wsSize, void *stream) {
    const void *got[16] = {handle, desc, alpha, a, adesc, b, bdesc, beta, c, cdesc, d, ddesc, algo, workspace,
                           (void *)wsSize, stream};
    for (int i = 0; i < 16; i++) {
        if (got[i] != P(i + 1)) return 101 + i;
    }
    return 0;
}
