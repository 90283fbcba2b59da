/*
 * A stand-in for libcuda.so.1 with the five driver-API functions gpuinfo's
 * CUDA probe binds (cuda.h): one device, whose UUID is the fake NVML's
 * (GPU-00000000-1111-2222-3333-444444444444), integrated when built with
 * -DINTEGRATED. cuInit must come first, as in the real driver.
 */
#include <string.h>

typedef struct { unsigned char bytes[16]; } CUuuid;

static int initialised;

int cuInit(unsigned int flags) { if (flags != 0) return 1; initialised = 1; return 0; }
int cuDeviceGetCount(int *n) { if (!initialised) return 3; *n = 1; return 0; }
int cuDeviceGet(int *dev, int ordinal) {
	if (!initialised) return 3;            /* CUDA_ERROR_NOT_INITIALIZED */
	if (ordinal != 0) return 101;          /* CUDA_ERROR_INVALID_DEVICE */
	*dev = 7;
	return 0;
}
int cuDeviceGetAttribute(int *v, int attrib, int dev) {
	if (!initialised) return 3;
	if (dev != 7 || attrib != 18) return 1; /* only CU_DEVICE_ATTRIBUTE_INTEGRATED */
#ifdef INTEGRATED
	*v = 1;
#else
	*v = 0;
#endif
	return 0;
}
int cuDeviceGetUuid_v2(CUuuid *u, int dev) {
	static const unsigned char id[16] = {0, 0, 0, 0, 0x11, 0x11, 0x22, 0x22, 0x33, 0x33, 0x44, 0x44, 0x44, 0x44, 0x44, 0x44};
	if (!initialised || dev != 7) return 1;
	memcpy(u->bytes, id, 16);
	return 0;
}
