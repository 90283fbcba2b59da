package cuda

import (
	"fmt"
	"slices"
	"strings"

	"whet/engine"
	"whet/engine/envswitch"
)

var _ engine.DeterministicBackend = (*Backend)(nil)

// AttnBwdFusedDefine, one of the comma-separated WHET_NVRTC_DEFINES,
// compiles the fused Hopper attention backward (kernels/attention_hopper.cu,
// attention_backward_fused_hopper_d<D>: FlashAttention 3's, one kernel per
// key block computing dK and dV and adding dq through fp32 atomics; 5
// matrix products instead of the split kernels' 7) and selects it for
// training attention at head dims 64 and 128 on sm_90 wherever the Hopper
// kernels run, unless Options.Deterministic (or DeterministicEnv, or
// SetDeterministic) asks for bit-equal reruns: its dq is summed in an order
// that varies from run to run. The default (attnBwdFusedDefault adds it with
// attnBwdFusedDefines); AttnBwdFusedEnv=0 keeps the split kernels.
const AttnBwdFusedDefine = "HOP_BWD_FUSED=1"

// DeterministicEnv, set to 1, is Options.Deterministic.
const DeterministicEnv = "WHET_DETERMINISTIC"

// NVRTCDefinesEnv holds comma-separated defines (NAME or NAME=VALUE) that
// every kernel file is compiled with (nvrtcDefines), for kernel variants
// under test; they are part of the kernel cache's key.
const NVRTCDefinesEnv = "WHET_NVRTC_DEFINES"

// AttnBwdFusedEnv switches the fused Hopper backward without
// WHET_NVRTC_DEFINES: 1 compiles kernels/attention_hopper.cu with
// attnBwdFusedDefines and takes it for every training attention backward
// the Hopper kernels run where Deterministic is off; 0 keeps the split
// kernels (unless WHET_NVRTC_DEFINES names AttnBwdFusedDefine); unset,
// attnBwdFusedDefault decides. A define of attnBwdFusedDefines whose name
// WHET_NVRTC_DEFINES sets is left to it.
const AttnBwdFusedEnv = "WHET_ATTN_BWD_FUSED"

// attnBwdFusedDefault is whether the fused Hopper backward is taken when
// AttnBwdFusedEnv is unset. true since the H100 run of tools/gpu/attention-bwd
// (2026-12-07 14:39 UTC, docs/bench/attention-bwd-2026-12-07-1439.txt):
// with attnBwdFusedDefines TestAttentionMatchesCPU, TestConformance and
// TestAttentionBackwardDeterministic passed, ptxas serialised no wgmma of
// its compile, and BenchmarkAttentionBackward went from 106.8 to 129.8
// TFLOP/s at d64 (d128: 169.0 split, 168.2 fused).
const attnBwdFusedDefault = true

// attnBwdFusedDefines are the defines AttnBwdFusedEnv (or
// attnBwdFusedDefault) compiles the fused backward with: FlashAttention 3's
// order (HOP_BWD_OVL=2: the dS barrier, then dQ and dK committed together,
// overlapping the next block's loads), dq staged per warp and reduced in
// fp32 by the block's own threads (HOP_BWD_DQT=1), and shared-memory
// descriptors built once per stage (HOP_BWD_DESC=1). Since the H100 run of
// tools/gpu/attn-bwd2 (2026-12-07 23:51 UTC, main bc9a6ee,
// docs/bench/attn-bwd2-2026-12-07-2351.txt): with this set
// TestAttentionBackwardDeterministic, TestConformance and
// TestAttentionMatchesCPU passed, ptxas serialised no wgmma, and
// BenchmarkAttentionBackward went from 128.5 to 189.0 TFLOP/s at d64 and
// from 166.9 to 229.7 at d128 against the earlier default (HOP_BWD_ZINIT=1,
// HOP_BWD_RED_V2=1), the fastest set at d128. At d64 one-warpgroup blocks
// (HOP_BWD_WG1=1) were faster still (216.3) but slower at d128 (121.9);
// attnBwdWG1D64Define applies them at d64 only and is opt-in until a GPU run
// (tools/gpu/attn-bwd3) has tested and timed it.
var attnBwdFusedDefines = []string{AttnBwdFusedDefine, "HOP_BWD_OVL=2", "HOP_BWD_DQT=1", "HOP_BWD_DESC=1"}

// attnBwdFusedAuto reports whether AttnBwdFusedEnv (or, unset,
// attnBwdFusedDefault) asks for the fused backward.
func attnBwdFusedAuto() bool {
	if v, _ := envswitch.Get(AttnBwdFusedEnv); v != "" {
		return v == "1"
	}
	return attnBwdFusedDefault
}

// nvrtcDefines returns the NAME=VALUE defines every kernel file is
// compiled with (nvrtc.go), the one source of what the kernels were built
// with (nvrtcDefine, nvrtcDefined, hopperFwdWS read it): the
// comma-separated WHET_NVRTC_DEFINES, then, if attnBwdFusedAuto, those of
// attnBwdFusedDefines whose name WHET_NVRTC_DEFINES does not set, then, if
// attnFwdWSAuto and WHET_NVRTC_DEFINES chooses no forward itself (names
// HOP_FWD_WS, or sets HOP_FWD_OVERLAP to anything but 0), those of
// attnFwdWSDefines whose name it does not set.
func nvrtcDefines() []string {
	var defs []string
	named := map[string]string{}
	for _, d := range strings.Split(envswitch.Choice(NVRTCDefinesEnv), ",") {
		if d = strings.TrimSpace(d); d != "" {
			defs = append(defs, d)
			name, value, _ := strings.Cut(d, "=")
			if _, ok := named[name]; !ok {
				named[name] = value
			}
		}
	}
	add := func(list []string) {
		for _, d := range list {
			if name, _, _ := strings.Cut(d, "="); !hasName(named, name) {
				defs = append(defs, d)
			}
		}
	}
	if attnBwdFusedAuto() {
		add(attnBwdFusedDefines)
	}
	if overlap, ok := named["HOP_FWD_OVERLAP"]; attnFwdWSAuto() && !hasName(named, "HOP_FWD_WS") && (!ok || overlap == "0") {
		add(attnFwdWSDefines)
	}
	return defs
}

func hasName(named map[string]string, name string) bool {
	_, ok := named[name]
	return ok
}

// nvrtcDefined reports whether def (NAME=VALUE) is one of nvrtcDefines.
func nvrtcDefined(def string) bool {
	return slices.Contains(nvrtcDefines(), def)
}

// SetDeterministic turns Options.Deterministic on or off for the ops that
// follow (engine.DeterministicBackend; the trainer calls it for a run file's
// train.deterministic); DeterministicEnv=1 keeps it on.
func (b *Backend) SetDeterministic(on bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.deterministic = on || envswitch.On(DeterministicEnv)
}

// Deterministic reports whether the backend keeps to kernels whose results
// are bit-equal from run to run.
func (b *Backend) Deterministic() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.deterministic
}

// AttnBwdFusedRuns is the number of attention backwards that took the
// fused Hopper kernel so far (whet bench reports it).
func (b *Backend) AttnBwdFusedRuns() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.attnBwdFusedRuns
}

// useFusedBackward reports whether an attention backward that takes the
// Hopper kernels takes the fused one: compiled in and asked for
// (AttnBwdFusedDefine), and no bit-equal reruns asked for
// (engine.AttnKernels.FusedBackward).
func (b *Backend) useFusedBackward() bool {
	k := b.attnKernels()
	return !k.NoFusedBackward && !k.Deterministic
}

// AttnKernelsFor is the engine.AttnKernels a backend on a device of
// architecture arch (sm_XY) takes under this process's environment
// (AttnHopperEnv, AttnBwdFusedEnv, WHET_NVRTC_DEFINES, DeterministicEnv)
// with default Options: what whet fit plans a device or GPU profile with.
// It loads nothing.
func AttnKernelsFor(arch string) engine.AttnKernels {
	return engine.AttnKernels{
		Arch:            arch,
		NoHopper:        !envswitch.On(AttnHopperEnv),
		NoFusedBackward: !nvrtcDefined(AttnBwdFusedDefine),
		Deterministic:   envswitch.On(DeterministicEnv),
		TiledDQ:         nvrtcDefined(attnBwdDQTDefine),
		WG1:             nvrtcDefined(attnBwdWG1Define),
		WG1D64:          nvrtcDefined(attnBwdWG1D64Define),
	}
}

// AttnKernels reports the attention kernels the backend takes now
// (engine.AttnKernelsReporter): its architecture, Options, environment,
// SetDeterministic, and whether the Hopper kernels compiled.
var _ engine.AttnKernelsReporter = (*Backend)(nil)

func (b *Backend) AttnKernels() engine.AttnKernels {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.attnKernels()
}

// attnKernels is AttnKernels with b.mu held.
func (b *Backend) attnKernels() engine.AttnKernels {
	return engine.AttnKernels{
		Arch:            b.arch,
		NoHopper:        !b.attnHopper || b.attnHopperOff != "",
		NoFusedBackward: !b.attnBwdFused,
		Deterministic:   b.deterministic,
		TiledDQ:         nvrtcDefined(attnBwdDQTDefine),
		WG1:             nvrtcDefined(attnBwdWG1Define),
		WG1D64:          nvrtcDefined(attnBwdWG1D64Define),
	}
}

// attnHopperFusedSmem is the dynamic shared memory of the fused Hopper
// backward at head dim d: the dK/dV kernel's (128 rows of K and V, two
// stages of 64-row Q and dOut, their lse and delta), dS (64 x 128 bf16),
// 1024 bytes to align the swizzled tiles, and the regions only some
// defines use (fixed offsets in every build): the dQ staging of
// HOP_BWD_DQ_BULK (two warpgroups' 64 rows of attnDQRow bytes) and the
// halves HOP_BWD_DQ_XCHG swaps (2 x 16 x 128 floats).
// With HOP_BWD_Q128 (attnBwdQ128Define) the d64 kernel's query tiles are
// 128 rows instead of attnHopperTile.
//
// With HOP_BWD_DQT (attnBwdDQTDefine) the regions after lse and delta are
// instead its dQ staging: two slots of two warpgroups' four warps' 4 KB.
// Blocks of one warpgroup at d (attnBwdWG1Define, or attnBwdWG1D64Define
// at d64; engine.AttnKernels.OneWarpgroup) hold half of that.
func attnHopperFusedSmem(d int) int {
	bq := attnHopperTile
	if d == 64 && nvrtcDefined(attnBwdQ128Define) {
		bq = 2 * attnHopperTile
	}
	if AttnKernelsFor("").OneWarpgroup(d) {
		// One warpgroup: 64 keys, one dS panel, one warpgroup's staging.
		head := 1024 + 2*(2*attnHopperTile+4*bq)*d + bq*attnHopperTile*2 + 2*2*bq*4
		if attnFusedDQTiled(d) {
			return head + attnDQTStaging/2
		}
		return head
	}
	head := 1024 + 2*(2*attnHopperRows+4*bq)*d + 2*bq*attnHopperRows + 2*2*bq*4
	if nvrtcDefined(attnBwdDQTDefine) {
		return head + attnDQTStaging
	}
	return head + 2*bq*attnDQRow + 2*16*128*4
}

// attnBwdWG1Define (with HOP_BWD_OVL=1 or 2) gives the fused backward one
// warpgroup and 64 keys a block (128 threads, twice the blocks), so that
// two blocks share an SM; dQ over the block's 64 keys and all D columns.
const attnBwdWG1Define = "HOP_BWD_WG1=1"

// attnBwdWG1D64Define is attnBwdWG1Define at head dim 64 only: the d64
// kernel is HOP_BWD_WG1's, the d128 kernel keeps two warpgroups and 128
// keys a block (tools/gpu/attn-bwd2's H100 run: one warpgroup 216.3 TFLOP/s
// against 189.0 at d64, 121.9 against 229.7 at d128). A name of its own,
// not a value of HOP_BWD_WG1, so that nothing reading HOP_BWD_WG1 (the
// kernel's #if, nvrtcDefined here) takes it for every head dim.
const attnBwdWG1D64Define = "HOP_BWD_WG1_D64=1"

// attnFusedDQTiled reports whether the fused backward at head dim d adds dq
// into the tiled accumulator (HOP_BWD_DQT; not with one-warpgroup blocks at
// d128, whose staging would not leave room for two blocks an SM).
func attnFusedDQTiled(d int) bool {
	return AttnKernelsFor("").FusedDQTiled(d)
}

// attnFusedBlock returns the fused backward's threads and keys a block at
// head dim d (kernels/attention_hopper.cu's HOP_BWD_THREADS_D64/_D128).
func attnFusedBlock(d int) (threads, keys int) {
	if AttnKernelsFor("").OneWarpgroup(d) {
		return 128, attnHopperTile
	}
	return 256, attnHopperRows
}

// attnFusedLaunch returns the fused backward's grid (KVH x key blocks of
// attnFusedBlock(D)'s keys) and block at head dim D over T tokens, or an
// error where the key blocks pass a grid's 65535.
func attnFusedLaunch(T, KVH, D int) (grid, block dim3, err error) {
	threads, keys := attnFusedBlock(D)
	blocks := (T + keys - 1) / keys
	if blocks > 65535 {
		return dim3{}, dim3{}, fmt.Errorf("%d key blocks of %d for the fused backward at head dim %d, more than a grid's 65535 (one-warpgroup blocks, HOP_BWD_WG1 or HOP_BWD_WG1_D64 at d64, halve the longest sequence it takes)", blocks, keys, D)
	}
	return dim3{KVH, blocks, 1}, dim3{threads, 1, 1}, nil
}

// attnBwdDQTDefine (with HOP_BWD_OVL=1 or 2) makes the fused backward add
// dq through cp.reduce.async.bulk into a tiled accumulator
// (attnFusedAccBytes), converted by attention_dq_convert_tiled_hopper.
const attnBwdDQTDefine = "HOP_BWD_DQT=1"

// attnDQTStaging is HOP_BWD_DQT's dQ staging in shared memory: 2 slots x 2
// warpgroups x 4 warps x 4 KB.
const attnDQTStaging = 2 * 2 * 4 * 4096

// attnFusedAccFloats is the size of the fused backward's fp32 dq
// accumulator in floats: T*H*D, or with HOP_BWD_DQT its tiled layout, whose
// row tiles of 64 pad T to a multiple of 64 (engine.AttnKernels.FusedAccFloats,
// which memplan plans with).
func attnFusedAccFloats(T, H, D int) int64 {
	return AttnKernelsFor("").FusedAccFloats(T, H, D)
}

// attnBwdQ128Define gives the fused backward at d64 128-query tiles.
const attnBwdQ128Define = "HOP_BWD_Q128=1"

// attnDQRow is HOP_DQ_ROW: the byte stride of the fused backward's dQ
// staging rows (64 fp32 and 16 bytes against bank conflicts).
const attnDQRow = 272

// attnFusedAccOffset is where the fused backward's fp32 dq accumulator
// starts in the backward's scratch, after delta (deltaBytes), 256-byte aligned.
// (engine.AttnFusedAccOffset, which memplan plans with).
func attnFusedAccOffset(deltaBytes int64) int64 { return engine.AttnFusedAccOffset(deltaBytes) }

// fusedBackward runs the fused Hopper backward for head dim D: clears the
// fp32 dq accumulator acc ([T][H*D]), launches
// attention_backward_fused_hopper_d<D> (grid KVH x key blocks of
// attnFusedBlock(D)'s keys, 128 or 64), which overwrites dk and dv and adds
// into acc, then writes dq = scale * acc. delta is
// attention_backward_delta's output.
func (b *Backend) fusedBackward(op string, dqt, dkt, dvt, dot, qt, kt, vt, lt *Tensor, delta, acc uint64, g *attnGeometry, scale float32, window int, softcap float32) error {
	T, H, KVH, D := g.T, g.H, g.KVH, g.D
	n := int64(T) * int64(H) * int64(D)
	grid := func(items int64) dim3 { return dim3{int(min((items+255)/256, int64(b.smCount)*16)), 1, 1} }
	tiled := attnFusedDQTiled(D)
	keyGrid, block, err := attnFusedLaunch(T, KVH, D)
	if err != nil {
		return fmt.Errorf("cuda: %s: %w", op, err)
	}
	if err := b.launch(op, attnHopperFile, "attention_dq_zero_hopper", grid(attnFusedAccFloats(T, H, D)/4), dim3{256, 1, 1}, 0, acc, attnFusedAccFloats(T, H, D)); err != nil {
		return err
	}
	if block.x == 128 {
		// One-warpgroup blocks are meant to run two an SM, which needs the
		// largest shared-memory carveout.
		if err := b.preferMaxSmem(op, attnHopperFile, fmt.Sprintf("attention_backward_fused_hopper_d%d", D)); err != nil {
			return err
		}
	}
	if err := b.launch(op, attnHopperFile, fmt.Sprintf("attention_backward_fused_hopper_d%d", D), keyGrid, block, attnHopperFusedSmem(D),
		acc, dkt.ptr(), dt(dkt), dvt.ptr(), dt(dvt), dot.ptr(), qt.ptr(), kt.ptr(), vt.ptr(), lt.ptr(), delta,
		g.starts.ptr(), int32(g.nseq), int32(T), int32(H), int32(KVH), scale, int32(window), softcap); err != nil {
		return err
	}
	b.attnBwdFusedRuns++
	if tiled {
		return b.launch(op, attnHopperFile, "attention_dq_convert_tiled_hopper", grid(attnFusedAccFloats(T, H, D)/4), dim3{256, 1, 1}, 0,
			dqt.ptr(), dt(dqt), acc, int32(T), int32(H), int32(D), scale)
	}
	return b.launch(op, attnHopperFile, "attention_dq_convert_hopper", grid(n), dim3{256, 1, 1}, 0, dqt.ptr(), dt(dqt), acc, n, scale)
}

// preferMaxSmem asks the driver for the largest shared-memory carveout for
// kernel name of file (once per loaded function), so that as many blocks
// share an SM as their shared memory allows.
func (b *Backend) preferMaxSmem(op, file, name string) error {
	f, err := b.function(file, name)
	if err != nil {
		return withOp(op, err)
	}
	if f.carveout {
		return nil
	}
	if err := b.drv.call("cuFuncSetAttribute", b.drv.cuFuncSetAttribute, f.handle, funcAttrPreferredCarveout, uintptr(100)); err != nil {
		return withOp(fmt.Sprintf("%s: kernel %s: shared-memory carveout", op, name), err)
	}
	f.carveout = true
	return nil
}
