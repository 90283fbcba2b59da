package engine

import "fmt"

// AttnKernels describes which kernels the CUDA backend's training attention
// takes, as far as its memory goes: the device's architecture and the
// switches that choose between the Hopper kernels, the fused Hopper
// backward and the rest. It is the one rule engine/cuda follows
// (Backend.AttnKernels reports a backend's own; cuda.AttnKernelsFor gives
// what a backend on a device of some architecture would take under this
// process's environment) and memplan plans with (Options.Attention), so
// that the plan counts the fused backward's fp32 dq accumulator exactly
// where the engine allocates it. The zero value is no CUDA device known:
// neither the Hopper kernels nor the fused backward.
type AttnKernels struct {
	// Arch is the device's architecture as sm_XY (engine/cuda's
	// Backend.Arch; ArchName of a detected device's compute capability,
	// presets.Hardware.Arch of a GPU profile).
	Arch string
	// NoHopper keeps training attention on the mma.sync kernels
	// (engine/cuda's Options.MMASyncAttention, WHET_ATTN_HOPPER=0, or the
	// Hopper kernels failed to compile).
	NoHopper bool
	// NoFusedBackward: the fused Hopper backward is not compiled in
	// (WHET_ATTN_BWD_FUSED=0 without HOP_BWD_FUSED=1 in
	// WHET_NVRTC_DEFINES).
	NoFusedBackward bool
	// Deterministic asks for bit-equal reruns (train.deterministic,
	// WHET_DETERMINISTIC=1), which the fused backward's fp32 atomics are
	// not: the split kernels run, with no accumulator.
	Deterministic bool
	// TiledDQ is HOP_BWD_DQT: the fused backward adds dq into a tiled
	// accumulator whose 64-row tiles pad the tokens to a multiple of 64.
	// WG1 is HOP_BWD_WG1 (blocks of one warpgroup at every head dim), with
	// which head dim 128 keeps the plain layout; WG1D64 is HOP_BWD_WG1_D64
	// (one warpgroup at head dim 64 only). OneWarpgroup combines them.
	TiledDQ, WG1, WG1D64 bool
}

// HopperArch is the architecture the Hopper attention kernels run on
// (compiled for sm_90a): H100, H200, GH200.
const HopperArch = "sm_90"

// HopperAttnHeadDims are the head dims with Hopper attention kernels.
var HopperAttnHeadDims = []int{64, 128}

// HopperAttnRows is the Hopper attention kernels' rows per block (queries,
// or keys in the backward's dK/dV kernel); a grid holds at most 65535
// blocks of them.
const HopperAttnRows = 128

// ArchName is the sm_XY name of compute capability major.minor.
func ArchName(major, minor int) string { return fmt.Sprintf("sm_%d%d", major, minor) }

// Hopper reports whether training attention at head dim d over rows tokens
// in dtype dt takes the Hopper kernels (engine/cuda also wants the
// tensors' pointers aligned, which its allocations are).
func (k AttnKernels) Hopper(d, rows int, dt DType) bool {
	if k.NoHopper || k.Arch != HopperArch || dt != BF16 || (rows+HopperAttnRows-1)/HopperAttnRows > 65535 {
		return false
	}
	for _, h := range HopperAttnHeadDims {
		if h == d {
			return true
		}
	}
	return false
}

// FusedBackward reports whether the attention backward at head dim d over
// rows tokens in dtype dt takes the fused Hopper kernel, which adds dq
// into an fp32 accumulator of FusedAccFloats.
func (k AttnKernels) FusedBackward(d, rows int, dt DType) bool {
	return k.Hopper(d, rows, dt) && !k.NoFusedBackward && !k.Deterministic
}

// OneWarpgroup reports whether the fused backward at head dim d runs
// blocks of one warpgroup (64 keys, 128 threads): WG1 at every head dim,
// WG1D64 at 64 only (kernels/attention_hopper.cu's HOP_BWD_NWG).
func (k AttnKernels) OneWarpgroup(d int) bool { return k.WG1 || (k.WG1D64 && d == 64) }

// FusedDQTiled reports whether the fused backward at head dim d adds dq
// into the tiled accumulator (TiledDQ, but not with one-warpgroup blocks
// at d128, whose staging would not leave room for two blocks an SM).
func (k AttnKernels) FusedDQTiled(d int) bool { return k.TiledDQ && !(d == 128 && k.OneWarpgroup(d)) }

// FusedAccFloats is the size of the fused backward's fp32 dq accumulator
// in floats for T tokens, H query heads of dim D: T·H·D, or with the tiled
// layout T rounded up to a multiple of 64.
func (k AttnKernels) FusedAccFloats(T, H, D int) int64 {
	if k.FusedDQTiled(D) {
		return int64((T+63)/64*64) * int64(H) * int64(D)
	}
	return int64(T) * int64(H) * int64(D)
}

// AttnFusedAccOffset is where the fused backward's fp32 dq accumulator
// starts in the attention backward's scratch: after delta (deltaBytes),
// 256-byte aligned.
func AttnFusedAccOffset(deltaBytes int64) int64 { return (deltaBytes + 255) &^ 255 }

// BackwardScratch is the bytes of the attention backward's one scratch for
// T tokens, H query heads of dim D in dtype dt: delta (fp32 [H, T]) and,
// where the fused backward runs, its fp32 dq accumulator after it at
// AttnFusedAccOffset.
func (k AttnKernels) BackwardScratch(T, H, D int, dt DType) int64 {
	delta := int64(H) * int64(T) * 4
	if !k.FusedBackward(D, T, dt) {
		return delta
	}
	return AttnFusedAccOffset(delta) + k.FusedAccFloats(T, H, D)*4
}

// AttnKernelsReporter is a backend whose attention kernels depend on its
// device (engine/cuda): what it reports is what memplan plans it with.
type AttnKernelsReporter interface {
	AttnKernels() AttnKernels
}
