package cuda

import (
	"runtime"
	"unsafe"

	"whet/engine/envswitch"
)

// Programmatic dependent launch (Hopper and newer): a kernel launched with
// the programmatic-stream-serialization attribute may start while the
// kernel before it on the stream is still running, once every block of
// that one has executed griddepcontrol.launch_dependents (or exited). Its
// blocks then wait in griddepcontrol.wait until the previous kernel has
// finished and its writes are visible. Inside a CUDA graph (stream capture
// keeps the attribute as a programmatic edge) this overlaps each kernel's
// launch, block scheduling and prologue with its predecessor's tail: the
// cost that dominates batch-1 decoding of a small model, whose step is
// ~165 short kernels.
//
// The kernels that are launched this way (pdlKernels) begin with PDL_WAIT()
// and call PDL_TRIGGER() only after it (kernels/common.cuh), both compiled
// in only when WHET_PDL is defined, which the backend does (compileOptions)
// when PDLEnv is 1. Waiting before anything else keeps the chain sound: a
// kernel that has passed its wait knows every kernel before it on the
// stream has finished, so the next one, which cannot start before this one
// triggers, may touch nothing that is still being written. The only work
// before the wait is an L2 prefetch of the GEMVs' weights (which no kernel
// of a decoding step writes, and a prefetch cannot return stale data) and,
// in the round-parallel GEMVs (gemvrr.go), loads of weight pieces into
// registers: only in the kernels that serve decoding's products of model
// weights (MatVecs and the fused ops), and in gemv_rr, which any one-row
// MatMul takes, only when the host passes early = 1 (it does not).

// PDLEnv launches the decoding kernels with programmatic dependent launch
// on sm_90 and newer (1 or unset) and compiles the kernels with pdlDefines;
// 0 launches them plainly. On by default since the H100 run of
// tools/gpu/decode-early (2026-12-08 00:01 UTC, main bc9a6ee,
// docs/bench/decode-early-2026-12-08.txt): with PDL and pdlDefines the
// decoding tests passed (TestPDLKernelsWaitFirst, TestDecodeFusedKernels,
// TestMatVecArgmax, TestDecodeHeadArgmaxGenerate, TestGenerateGraphEqualsPlain)
// and Llama-3.2-1B bf16 decoded 825.8 and 836.2 tok/s against 789.1 and
// 798.1 without (60.9 and 61.7 % of the H100's bandwidth bound against
// 58.2 and 58.9); PDL alone was no faster (787.0).
const PDLEnv = "WHET_CUDA_PDL"

// pdlDefines are the kernel defines that go with PDL (compileOptions adds
// each one whose name WHET_NVRTC_DEFINES does not set when pdlOn, for sm_90
// and newer): the fused
// decode GEMVs and the head's argmax load their first round of weights
// before PDL_WAIT() (GEMV_EARLY=1, kernels/gemv.cu: the same sums in the
// same order), which makes the L2 prefetch of the row starts redundant
// (GEMV_PREFETCH=0).
var pdlDefines = []string{"GEMV_EARLY=1", "GEMV_PREFETCH=0"}

// pdlOn reports whether PDLEnv asks for programmatic dependent launch.
func pdlOn() bool { return envswitch.On(PDLEnv) }

// pdlKernels are the kernels that begin with PDL_WAIT(): only these may be
// launched with the attribute (a kernel without the wait could read its
// predecessor's output before it is written).
var pdlKernels = map[string]bool{
	"embedding_forward":         true,
	"rmsnorm_forward":           true,
	"gemv_bf16":                 true,
	"gemv_bf16_multi":           true,
	"gemv_bf16_add":             true,
	"gemv_bf16_norm_multi":      true,
	"gemv_bf16_swiglu_add":      true,
	"gemv_bf16_argmax":          true,
	"gemv_rr":                   true,
	"gemv_rr_multi":             true,
	"gemv_rr_add":               true,
	"gemv_rr_norm_multi":        true,
	"gemv_rr_swiglu_add":        true,
	"attention_decode":          true,
	"attention_decode_v2_d64":   true,
	"attention_decode_v2_d128":  true,
	"attention_decode_v2_d256":  true,
	"swiglu_forward":            true,
	"argmax":                    true,
	"advance_position":          true,
	"matvec_nf4_split":          true,
	"matvec_nf4_split_wide":     true,
	"matvec_nf4_split_add":      true,
	"matvec_nf4_split_swiglu":   true,
	"matvec_nf4_split_add_norm": true,
	"gemv2_bf16":                true,
	"gemv2_bf16_multi":          true,
}

// pdlArch reports whether kernels compiled for arch (sm_XY) have the
// griddepcontrol instructions: compute capability 9.0 and newer.
func pdlArch(arch string) bool {
	major, _, err := parseArch(arch)
	return err == nil && major >= 9
}

// cuLaunchAttrProgrammaticStreamSerialization is
// CU_LAUNCH_ATTRIBUTE_PROGRAMMATIC_STREAM_SERIALIZATION.
const cuLaunchAttrProgrammaticStreamSerialization = 6

// cuLaunchAttribute is CUlaunchAttribute: the id, padding to 8 bytes and
// a 64-byte value union (for this attribute an int, 1 = allowed).
type cuLaunchAttribute struct {
	id    uint32
	_     uint32
	value [64]byte
}

// cuLaunchConfig is CUlaunchConfig (linux/amd64 and arm64 layout).
type cuLaunchConfig struct {
	gridX, gridY, gridZ    uint32
	blockX, blockY, blockZ uint32
	smem                   uint32
	_                      uint32
	stream                 uintptr
	attrs                  unsafe.Pointer // *cuLaunchAttribute (a pointer, so the collector sees it)
	numAttrs               uint32
	_                      uint32
}

// launchPDL launches f like cuLaunchKernel, with the programmatic stream
// serialization attribute. The caller holds the context.
func (b *Backend) launchPDL(f *function, grid, block dim3, smem int, params uintptr) error {
	attr := cuLaunchAttribute{id: cuLaunchAttrProgrammaticStreamSerialization}
	*(*int32)(unsafe.Pointer(&attr.value[0])) = 1
	cfg := cuLaunchConfig{
		gridX: uint32(grid.x), gridY: uint32(grid.y), gridZ: uint32(grid.z),
		blockX: uint32(block.x), blockY: uint32(block.y), blockZ: uint32(block.z),
		smem: uint32(smem), stream: b.stream, attrs: unsafe.Pointer(&attr), numAttrs: 1,
	}
	err := b.drv.call("cuLaunchKernelEx", b.drv.cuLaunchKernelEx, uintptr(unsafe.Pointer(&cfg)), f.handle, params, 0)
	runtime.KeepAlive(&cfg)
	return err
}
