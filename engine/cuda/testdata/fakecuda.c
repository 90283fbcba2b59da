// A stand-in for the driver library libcuda.so.1 with one device, "Fake
// H100", of compute capability 9.0: enough for New to reach its
// architecture check (cuInit, cuDeviceGet, the name and attributes). Every
// later call fails with CUDA_ERROR_UNKNOWN (999), so a New that passes the
// check stops at its first context call: arch_test.go tells the two apart.
// Every symbol openDriver binds must exist here.
#include <string.h>

int cuInit(unsigned flags) { return 0; }
int cuDriverGetVersion(int *v) { *v = 13000; return 0; }
int cuDeviceGet(int *dev, int ordinal) {
    if (ordinal != 0) return 101; // CUDA_ERROR_INVALID_DEVICE
    *dev = 0;
    return 0;
}
int cuDeviceGetName(char *name, int len, int dev) {
    strncpy(name, "Fake H100", (size_t)len);
    name[len - 1] = 0;
    return 0;
}
int cuDeviceGetAttribute(int *v, int attr, int dev) {
    switch (attr) {
    case 16: *v = 132; break;     // multiprocessors
    case 75: *v = 9; break;       // compute capability major
    case 76: *v = 0; break;       // minor
    case 97: *v = 232448; break;  // shared memory per block, opt-in
    default: *v = 0;
    }
    return 0;
}
int cuGetErrorName(int code, const char **s) { *s = "CUDA_ERROR_UNKNOWN"; return 0; }
int cuGetErrorString(int code, const char **s) { *s = "the fake driver stops here"; return 0; }

#define REFUSE(name) int name(void) { return 999; }
REFUSE(cuDevicePrimaryCtxRetain)
REFUSE(cuDevicePrimaryCtxRelease_v2)
REFUSE(cuCtxSetCurrent)
REFUSE(cuMemAlloc_v2)
REFUSE(cuMemFree_v2)
REFUSE(cuMemGetInfo_v2)
REFUSE(cuMemcpyHtoD_v2)
REFUSE(cuMemcpyDtoH_v2)
REFUSE(cuMemcpyDtoD_v2)
REFUSE(cuMemsetD32_v2)
REFUSE(cuModuleLoadData)
REFUSE(cuModuleUnload)
REFUSE(cuModuleGetFunction)
REFUSE(cuFuncSetAttribute)
REFUSE(cuLaunchKernel)
REFUSE(cuStreamCreate)
REFUSE(cuStreamDestroy_v2)
REFUSE(cuStreamSynchronize)
REFUSE(cuEventCreate)
REFUSE(cuEventRecord)
REFUSE(cuEventDestroy_v2)
REFUSE(cuEventElapsedTime)
