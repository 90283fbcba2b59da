/*
 * A stand-in for libnvidia-ml.so.1 with the NVML signatures gpuinfo binds
 * (nvml.h), returning fixed values: one "Fake H100" with 80 GiB, 1 GiB of it
 * used, compute capability 9.0, driver 580.82.07, CUDA 13.0. The purego
 * driver test compiles it with gcc and loads it in place of the real library,
 * which checks the argument types and struct layouts against the C ABI.
 * Built with -DUNIFIED it is a "Fake GB10" (compute capability 12.1) whose
 * memory NVML reports as not supported, as on DGX Spark.
 */
#include <string.h>

typedef struct { unsigned long long total, free, used; } nvmlMemory_t;
typedef struct { unsigned int gpu, memory; } nvmlUtilization_t;
typedef void *nvmlDevice_t;

static int initialised;
static int the_device;

int nvmlInit_v2(void) { initialised = 1; return 0; }
int nvmlShutdown(void) { initialised = 0; return 0; }
const char *nvmlErrorString(int r) { return r == 2 ? "Invalid Argument" : "Unknown Error"; }

static int copy(char *dst, unsigned int n, const char *src) {
	if (strlen(src) + 1 > n) return 7; /* NVML_ERROR_INSUFFICIENT_SIZE */
	strcpy(dst, src);
	return 0;
}

int nvmlSystemGetDriverVersion(char *v, unsigned int n) { return copy(v, n, "580.82.07"); }
int nvmlSystemGetCudaDriverVersion(int *v) { *v = 13000; return 0; }
int nvmlDeviceGetCount_v2(unsigned int *n) { *n = 1; return 0; }

int nvmlDeviceGetHandleByIndex_v2(unsigned int i, nvmlDevice_t *d) {
	if (!initialised || i != 0) return 2; /* NVML_ERROR_INVALID_ARGUMENT */
	*d = &the_device;
	return 0;
}

static int bad(nvmlDevice_t d) { return d != (nvmlDevice_t)&the_device; }

#ifdef UNIFIED
#define NAME "Fake GB10"
#define MAJOR 12
#define MINOR 1
#else
#define NAME "Fake H100"
#define MAJOR 9
#define MINOR 0
#endif

int nvmlDeviceGetName(nvmlDevice_t d, char *s, unsigned int n) { return bad(d) ? 2 : copy(s, n, NAME); }
int nvmlDeviceGetUUID(nvmlDevice_t d, char *s, unsigned int n) { return bad(d) ? 2 : copy(s, n, "GPU-00000000-1111-2222-3333-444444444444"); }

int nvmlDeviceGetMemoryInfo(nvmlDevice_t d, nvmlMemory_t *m) {
	if (bad(d)) return 2;
#ifdef UNIFIED
	return 3; /* NVML_ERROR_NOT_SUPPORTED */
#endif
	m->total = 80ULL << 30;
	m->used = 1ULL << 30;
	m->free = m->total - m->used;
	return 0;
}

int nvmlDeviceGetCudaComputeCapability(nvmlDevice_t d, int *major, int *minor) {
	if (bad(d)) return 2;
	*major = MAJOR;
	*minor = MINOR;
	return 0;
}

int nvmlDeviceGetUtilizationRates(nvmlDevice_t d, nvmlUtilization_t *u) {
	if (bad(d)) return 2;
	u->gpu = 87;
	u->memory = 42;
	return 0;
}

int nvmlDeviceGetTemperature(nvmlDevice_t d, int sensor, unsigned int *t) { return bad(d) || sensor != 0 ? 2 : (*t = 61, 0); }
int nvmlDeviceGetPowerUsage(nvmlDevice_t d, unsigned int *mw) { return bad(d) ? 2 : (*mw = 412345, 0); }
int nvmlDeviceGetEnforcedPowerLimit(nvmlDevice_t d, unsigned int *mw) { return bad(d) ? 2 : (*mw = 700000, 0); }
/* Memory clock "not supported", as on some boards: the sample leaves it 0. */
int nvmlDeviceGetClockInfo(nvmlDevice_t d, int type, unsigned int *mhz) {
	if (bad(d)) return 2;
	if (type == 1) { *mhz = 1980; return 0; }
	return 3; /* NVML_ERROR_NOT_SUPPORTED */
}
