// embedding.cu: token embedding lookup.
//
// Forward:  out[t, :] = table[ids[t], :]                (overwrite out)
// Backward: dTable[ids[t], :] += dOut[t, :]             (accumulate dTable)
//
// The host checks every id against the table's rows before launching, so
// the kernels only guard against reading outside the table. The backward
// uses atomics because two tokens may share an id: the float32 sums come
// out in an order that varies between runs (last-bit differences), and a
// bf16 dTable is rounded after each token's add rather than once.
#include "common.cuh"

extern "C" __global__ void embedding_forward(void* out, int odt, const void* table, int tdt, const int* ids,
                                             i64 tokens, i64 dim, i64 vocab) {
    PDL_WAIT();
    PDL_TRIGGER();
    i64 n = tokens * dim;
    for (i64 i = blockIdx.x * (i64)blockDim.x + threadIdx.x; i < n; i += (i64)gridDim.x * blockDim.x) {
        i64 t = i / dim, c = i % dim;
        int id = ids[t];
        st(out, odt, i, (id >= 0 && id < vocab) ? ld(table, tdt, (i64)id * dim + c) : 0.0f);
    }
}

extern "C" __global__ void embedding_backward(void* dtable, int tdt, const void* dout, int odt, const int* ids,
                                              i64 tokens, i64 dim, i64 vocab) {
    i64 n = tokens * dim;
    for (i64 i = blockIdx.x * (i64)blockDim.x + threadIdx.x; i < n; i += (i64)gridDim.x * blockDim.x) {
        i64 t = i / dim, c = i % dim;
        int id = ids[t];
        if (id >= 0 && id < vocab) atomic_add(dtable, tdt, (i64)id * dim + c, ld(dout, odt, i));
    }
}
