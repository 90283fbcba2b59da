package cuda

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"unsafe"

	"whet/engine"
	"whet/engine/envswitch"
	"whet/engine/opcheck"
)

// Tile sizes of kernels/attention.cu (QB queries or keys per block, KT per
// shared-memory tile, maxHeadDim = 32 lanes x 8 values).
const (
	attnQB         = 16
	attnKT         = 32
	attnMaxHeadDim = 256
)

// attnGeometry is the checked shape of one attention call.
type attnGeometry struct {
	T, H, KVH, D int
	nseq         int
	starts       *Tensor
}

// attnGeometry checks q, k, v against p and seqs (engine/opcheck's rules,
// which engine/cpu applies too). seqs.Dev must hold seqs.Starts as an I32
// tensor on this backend.
func (c *checker) attnGeometry(q, k, v *Tensor, seqs engine.SeqLayout, p engine.AttnParams) *attnGeometry {
	if c.Err != nil {
		return nil
	}
	T, ok := c.Attention(q, k, v, seqs, p, attnMaxHeadDim)
	if !ok {
		return nil
	}
	g := &attnGeometry{T: T, H: p.NHeads, KVH: p.NKVHeads, D: p.HeadDim}
	if isNil(seqs.Dev) {
		c.Failf("seqs.Dev is nil: the kernels read the sequence starts from an I32 tensor on the device")
		return nil
	}
	g.starts = c.intTensor("seqs.Dev", seqs.Dev)
	if c.Err == nil {
		c.Length("seqs.Dev", g.starts, len(seqs.Starts))
	}
	g.nseq = len(seqs.Starts) - 1
	return g
}

// Tensor-core kernels (kernels/attention.cu, attention_*_tc_d<D>): blocks of
// 64 queries (forward, dq) or 64 keys (dK/dV) over 4 warps, key tiles of
// attnFwdKeys(D) in the forward, and backward tiles of attnTCBwdTile(D);
// bf16 inputs, head dims with an instantiation, 16-byte aligned rows.
// Above head dim attnTCSplitDim dK and dV come from two launches.
const (
	attnTCRows     = 64
	attnTCSplitDim = 128
)

// AttnTC256Env, set to 0, sends head dim 256 (Gemma 2 and 3) back to the
// float32 attention kernels. The tensor-core kernels for that head dim are
// the default since they passed the conformance suite, TestAttentionMatchesCPU,
// TestFamilyTrainingMatchesCPU and TestReferenceOnGPU on an H200
// (2026-12-07, tools/gpu/attention-d256) and took Gemma-3-1B LoRA 4x2048 from
// 0.32x to 1.68x of PyTorch (docs/performance.md).
const AttnTC256Env = "WHET_ATTN_TC256"

// attnTCHeadDims are the head dims with tensor-core kernels (above
// attnTCSplitDim only with Backend.attnTC256).
var attnTCHeadDims = map[int]bool{16: true, 32: true, 64: true, 80: true, 96: true, 128: true, 256: true}

// attnFwdKeys is ATTN_FWD_BN of kernels/attention.cu: the forward's keys
// per shared-memory tile.
func attnFwdKeys(d int) int {
	if d <= 128 {
		return 64
	}
	return 32
}

// attnFwdRows is the tensor-core forward's query rows per block: 64 times
// ATTN_FWD_MT of kernels/attention.cu.
func attnFwdRows(d int) int {
	if d <= 64 {
		return 128
	}
	return 64
}

// attnTCBwdTile is ATTN_BWD_TILE of kernels/attention.cu: the dq kernel's
// key tile and the dK/dV kernel's query tile.
func attnTCBwdTile(d int) int {
	switch {
	case d <= 64:
		return 64
	case d <= 128:
		return 32
	}
	return 16
}

// attnTCSmem is the dynamic shared memory of tensor-core kernel
// "forward", "dq", "dkv" (both gradients, head dims up to attnTCSplitDim)
// or "dk"/"dv" (one each, above) at head dim d: bf16 tiles of d+8 values
// a row, plus, in "dkv", lse and delta of two query tiles (the split
// kernels keep those in the rows' padding).
func attnTCSmem(kernel string, d int) int {
	tile := attnTCBwdTile(d)
	switch kernel {
	case "forward":
		return 2 * (attnFwdRows(d) + 4*attnFwdKeys(d)) * (d + 8)
	case "dkv":
		return 2*(2*attnTCRows+4*tile)*(d+8) + 4*tile*4
	default: // dq, dk, dv
		return 2 * (2*attnTCRows + 4*tile) * (d + 8)
	}
}

// useTensorCores reports whether the tensor-core kernels can take these
// tensors: all bf16 with 16-byte aligned storage (cp.async copies 16-byte
// pieces of each row), outputs 4-byte aligned, an instantiated head dim
// and at most 65535 blocks of rows (head dim 256 only with AttnTC256Env);
// others take the float32 kernels.
func (b *Backend) useTensorCores(d, rows int, outs []*Tensor, ins ...*Tensor) bool {
	if !attnTCHeadDims[d] || d > attnTCSplitDim && !b.attnTC256 || (rows+attnTCRows-1)/attnTCRows > 65535 { // grid y limit
		return false
	}
	for _, o := range outs { // results are stored two values at a time
		if o.ptr()%4 != 0 {
			return false
		}
	}
	for _, t := range ins {
		if t.dt != engine.BF16 || t.ptr()%16 != 0 {
			return false
		}
	}
	return true
}

// AttnHopperEnv, set to 0, keeps training attention on sm_90 cards on the
// mma.sync kernels (Options.MMASyncAttention); unset, attention at head
// dims 64 and 128 there takes kernels/attention_hopper.cu (wgmma). The
// backward there adds dK and dV of a key block in one block's registers
// and dq per query block, so it is deterministic like the mma.sync one.
const AttnHopperEnv = "WHET_ATTN_HOPPER"

// attnHopperFile holds the Hopper kernels; fileArch compiles it for sm_90a.
const attnHopperFile = "attention_hopper.cu"

// attnHopperHeadDims are the head dims with Hopper kernels
// (attention_forward_hopper_d<D>, attention_backward_dq_hopper_d<D>,
// attention_backward_dkv_hopper_d<D>); attnHopperRows is their rows per
// block (HOP_BM: queries, or keys in dkv; the forward's keys per tile,
// HOP_BN, are the same).
var attnHopperHeadDims = func() map[int]bool {
	m := map[int]bool{}
	for _, d := range engine.HopperAttnHeadDims {
		m[d] = true
	}
	return m
}()

const attnHopperRows = engine.HopperAttnRows

// attnHopperTile is the backward's other tile (HOP_BT): the dq kernel's
// keys and the dK/dV kernel's queries per step.
const attnHopperTile = 64

// attnHopperSmem is the dynamic shared memory of Hopper kernel "forward",
// "dq" or "dkv" at head dim d: bf16 tiles of d columns (forward: 128 rows
// of Q, two stages of 128-row K and V, three with hopperOverlap; dq: 128 rows of Q and dOut, two
// stages of 64-row K and V; dkv: 128 rows of K and V, two stages of 64-row
// Q and dOut plus their lse and delta), and 1024 bytes to align the
// swizzled tiles to 1024 bytes.
func attnHopperSmem(kernel string, d int) int {
	switch kernel {
	case "forward":
		if ws := hopperFwdWS(); ws.mode != 0 { // Q, ws.stages stages of K and V, the mbarriers
			st, p := ws.nstages(d), 0
			if ws.psmem(d) { // each consumer's P tile: 64 rows of the tile's keys
				p = ws.wg(d) * 64 * ws.keys(d)
			}
			return 1024 + 2*d*(ws.rows(d)+2*st*ws.keys(d)) + 2*p + max(128, 8+4*8*st)
		}
		if hopperOverlap() { // three stages of K and V
			return 1024 + 2*(attnHopperRows+6*attnHopperRows)*d
		}
		return 1024 + 2*(attnHopperRows+4*attnHopperRows)*d
	case "dq":
		return 1024 + 2*(2*attnHopperRows+4*attnHopperTile)*d
	default: // dkv
		return 1024 + 2*(2*attnHopperRows+4*attnHopperTile)*d + 2*2*attnHopperTile*4
	}
}

// hopperOverlap reports whether WHET_NVRTC_DEFINES selects the experimental
// overlapped Hopper forward (HOP_FWD_OVERLAP=1 in kernels/attention_hopper.cu),
// which keeps three stages of K and V in shared memory instead of two.
// It then chooses the forward: nvrtcDefines adds no attnFwdWSDefines.
func hopperOverlap() bool {
	return nvrtcDefined("HOP_FWD_OVERLAP=1")
}

// nvrtcDefine returns the value nvrtcDefines (the kernels' -D options:
// WHET_NVRTC_DEFINES and the defaults it does not override) gives define
// name, the first if it is set twice.
func nvrtcDefine(name string) (string, bool) {
	for _, d := range nvrtcDefines() {
		if k, v, ok := strings.Cut(d, "="); ok && k == name {
			return v, true
		}
	}
	return "", false
}

// AttnFwdWSEnv switches the default warp-specialised Hopper forward
// (attnFwdWSDefines): 0 leaves it out, so that the Hopper path takes the
// first forward (attn_fwd_hopper); 1 or unset, attnFwdWSDefault decides
// with 1 meaning on. WHET_NVRTC_DEFINES naming HOP_FWD_WS or setting
// HOP_FWD_OVERLAP chooses the forward itself either way.
const AttnFwdWSEnv = "WHET_ATTN_FWD_WS"

// attnFwdWSDefault is whether the Hopper path's forward is the
// warp-specialised one (attnFwdWSDefines) when AttnFwdWSEnv is unset. true
// since the H100 run of tools/gpu/attention-fwd (2026-12-07 14:42 UTC,
// docs/bench/attention-fwd-2026-12-07-1442.txt): with attnFwdWSDefines
// TestHopperForwardLongMatchesMMASync, TestAttentionMatchesCPU and
// TestConformance passed and BenchmarkAttentionForward went from 188.5 to
// 250.3 TFLOP/s at d64, 259.0 to 283.4 at d128, the fastest variant.
const attnFwdWSDefault = true

// attnFwdWSDefines are the defines of the default warp-specialised Hopper
// forward: a producer warpgroup and two consumers (HOP_FWD_WS=1, without
// setmaxnreg) with the straight-line consumer loop (HOP_WS_NOSER=1), the
// producer's copies through TMA (HOP_WS_TMA=1), four stages of K and V
// (HOP_WS_STAGES=4) and 64-key tiles at head dim 128 (HOP_WS_BN128=64).
// Since the H100 run of tools/gpu/attn-fwd2 (2026-12-07 23:51 UTC, main
// bc9a6ee, docs/bench/attn-fwd2-2026-12-07-2351.txt): with this set the
// forward's tests, TestAttentionMatchesCPU and TestConformance passed, and
// BenchmarkAttentionForward went from 279.1 to 377.7 TFLOP/s at d128 (the
// fastest of 12 sets) and from 243.6 to 276.6 at d64 against the earlier
// default (HOP_FWD_WS=1,HOP_WS_NOSER=1). Each one whose name
// WHET_NVRTC_DEFINES sets is left to it (HOP_WS_STAGES=3 tunes the default
// forward; HOP_FWD_WS=2 replaces it).
var attnFwdWSDefines = []string{"HOP_FWD_WS=1", "HOP_WS_NOSER=1", "HOP_WS_BN128=64", "HOP_WS_STAGES=4", "HOP_WS_TMA=1"}

// attnFwdWSAuto reports whether AttnFwdWSEnv (or, unset,
// attnFwdWSDefault) asks for the warp-specialised forward.
func attnFwdWSAuto() bool {
	if v, _ := envswitch.Get(AttnFwdWSEnv); v != "" {
		return v == "1"
	}
	return attnFwdWSDefault
}

// hopperWS is the warp-specialised Hopper forward's configuration
// (attn_fwd_hopper_ws in kernels/attention_hopper.cu), read from the same
// defines the kernel is compiled with (nvrtcDefines: WHET_NVRTC_DEFINES and
// attnFwdWSDefines, the default): mode HOP_FWD_WS (0: off,
// 1: producer warpgroup + consumers, 2: also setmaxnreg), wg64 consumer
// warpgroups at head dim 64 (HOP_WS_WG64; 2 at 128), stages of K and V
// (HOP_WS_STAGES: 2 to 4; HOP_WS_STAGES64, HOP_WS_STAGES128 for one head
// dim), keys per K/V tile at head dims 64 and 128 (HOP_WS_BN64,
// HOP_WS_BN128: 128 or 64, the latter with HOP_WS_NOSER=1 only), P through
// shared memory (HOP_WS_PSMEM64, HOP_WS_PSMEM128: 0 or 1, NOSER only). err
// says which define is malformed.
type hopperWS struct {
	mode, wg64, stages int
	tma                int // HOP_WS_TMA: 1 = the producer copies with TMA (hopperTmaps)
	noser              int // HOP_WS_NOSER: 1 = the consumers' straight-line loop (no wgmma serialised by ptxas)
	bn64, bn128        int // HOP_WS_BN64, HOP_WS_BN128: keys per tile
	st64, st128        int // HOP_WS_STAGES64, HOP_WS_STAGES128 (0: HOP_WS_STAGES)
	ps64, ps128        int // HOP_WS_PSMEM64, HOP_WS_PSMEM128: 1 = P V reads P from shared memory
	err                error
}

func hopperFwdWS() hopperWS {
	ws := hopperWS{wg64: 2, stages: 2, bn64: attnHopperRows, bn128: attnHopperRows}
	for _, f := range []struct {
		name     string
		dst      *int
		min, max int
	}{{"HOP_FWD_WS", &ws.mode, 0, 2}, {"HOP_WS_WG64", &ws.wg64, 2, 3}, {"HOP_WS_STAGES", &ws.stages, 2, 4}, {"HOP_WS_TMA", &ws.tma, 0, 1}, {"HOP_WS_NOSER", &ws.noser, 0, 1},
		{"HOP_WS_BN64", &ws.bn64, 64, 128}, {"HOP_WS_BN128", &ws.bn128, 64, 128}, {"HOP_WS_STAGES64", &ws.st64, 2, 4}, {"HOP_WS_STAGES128", &ws.st128, 2, 4},
		{"HOP_WS_PSMEM64", &ws.ps64, 0, 1}, {"HOP_WS_PSMEM128", &ws.ps128, 0, 1}} {
		v, ok := nvrtcDefine(f.name)
		if !ok {
			continue
		}
		n, err := strconv.Atoi(v)
		if err != nil || n < f.min || n > f.max {
			ws.err = fmt.Errorf("WHET_NVRTC_DEFINES: %s=%q: want an integer from %d to %d", f.name, v, f.min, f.max)
			ws.mode = 0
			return ws
		}
		*f.dst = n
	}
	if ws.tma != 0 && ws.mode == 0 {
		return hopperWS{err: fmt.Errorf("WHET_NVRTC_DEFINES: HOP_WS_TMA=%d is a knob of the warp-specialised forward: set HOP_FWD_WS=1 or 2 too", ws.tma)}
	}
	if ws.noser != 0 && ws.mode == 0 {
		return hopperWS{err: fmt.Errorf("WHET_NVRTC_DEFINES: HOP_WS_NOSER=%d is a knob of the warp-specialised forward: set HOP_FWD_WS=1 or 2 too", ws.noser)}
	}
	for _, f := range []struct {
		name string
		n    int
	}{{"HOP_WS_BN64", ws.bn64}, {"HOP_WS_BN128", ws.bn128}} {
		if f.n != 64 && f.n != attnHopperRows {
			return hopperWS{err: fmt.Errorf("WHET_NVRTC_DEFINES: %s=%d: want 64 or 128 (keys per tile)", f.name, f.n)}
		}
		if f.n != attnHopperRows && (ws.mode == 0 || ws.noser == 0) {
			return hopperWS{err: fmt.Errorf("WHET_NVRTC_DEFINES: %s=%d is a knob of the straight-line consumer loop: set HOP_FWD_WS=1 or 2 and HOP_WS_NOSER=1 too", f.name, f.n)}
		}
	}
	for _, f := range []struct {
		name string
		n    int
	}{{"HOP_WS_PSMEM64", ws.ps64}, {"HOP_WS_PSMEM128", ws.ps128}} {
		if f.n != 0 && (ws.mode == 0 || ws.noser == 0) {
			return hopperWS{err: fmt.Errorf("WHET_NVRTC_DEFINES: %s=%d is a knob of the straight-line consumer loop: set HOP_FWD_WS=1 or 2 and HOP_WS_NOSER=1 too", f.name, f.n)}
		}
	}
	return ws
}

// psmem reports whether the warp-specialised forward at head dim d keeps
// P in shared memory (HOP_WS_PSMEM64 or HOP_WS_PSMEM128).
func (ws hopperWS) psmem(d int) bool {
	if d == 64 {
		return ws.ps64 != 0
	}
	return ws.ps128 != 0
}

// nstages is the warp-specialised forward's K/V stages at head dim d.
func (ws hopperWS) nstages(d int) int {
	switch {
	case d == 64 && ws.st64 != 0:
		return ws.st64
	case d != 64 && ws.st128 != 0:
		return ws.st128
	}
	return ws.stages
}

// keys is the warp-specialised forward's keys per K/V tile at head dim d
// (HOP_WS_BN64 or HOP_WS_BN128; 128 without them).
func (ws hopperWS) keys(d int) int {
	switch {
	case d == 64 && ws.bn64 != 0:
		return ws.bn64
	case d != 64 && ws.bn128 != 0:
		return ws.bn128
	}
	return attnHopperRows
}

// hopperTmaps encodes the TMA tensor maps of the warp-specialised forward's
// HOP_WS_TMA=1 (slot 0: q, 1: k, 2: v; each a 3-D bf16 map of [rows][heads][d]
// whose boxes are 64 columns of one head by qRows rows (q) or kRows (k, v:
// the keys per tile, hopperWS.keys),
// with the 128-byte swizzle of the shared tiles and zeros past the last row)
// and writes each one that changed into the module with
// attention_hopper_tmap_store, in stream order before the forward.
func (b *Backend) hopperTmaps(op string, qt, kt, vt *Tensor, H, KVH, D, qRows, kRows int) error {
	if b.drv.cuTensorMapEncodeTiled == 0 {
		return fmt.Errorf("cuda: %s: HOP_WS_TMA=1 needs cuTensorMapEncodeTiled (a CUDA 12 driver); this driver lacks it", op)
	}
	const (
		bf16Type     = 9 // CU_TENSOR_MAP_DATA_TYPE_BFLOAT16
		swizzle128   = 3 // CU_TENSOR_MAP_SWIZZLE_128B
		l2Promote256 = 3 // CU_TENSOR_MAP_L2_PROMOTION_L2_256B
	)
	for slot, x := range []struct {
		t          *Tensor
		heads, box int
	}{{qt, H, qRows}, {kt, KVH, kRows}, {vt, KVH, kRows}} {
		rows := x.t.Len() / (x.heads * D)
		buf := new([24]uint64) // a CUtensorMap is 128 bytes, 64-byte aligned
		off := int((64 - uintptr(unsafe.Pointer(&buf[0]))%64) % 64 / 8)
		dims := [3]uint64{uint64(D), uint64(x.heads), uint64(rows)}
		strides := [2]uint64{uint64(2 * D), uint64(2 * x.heads * D)} // bytes, of dims 1 and 2
		box := [3]uint32{64, 1, uint32(x.box)}
		elem := [3]uint32{1, 1, 1}
		if err := b.drv.call("cuTensorMapEncodeTiled", b.drv.cuTensorMapEncodeTiled, uintptr(unsafe.Pointer(&buf[off])), bf16Type, 3,
			uintptr(x.t.ptr()), uintptr(unsafe.Pointer(&dims[0])), uintptr(unsafe.Pointer(&strides[0])), uintptr(unsafe.Pointer(&box[0])),
			uintptr(unsafe.Pointer(&elem[0])), 0, swizzle128, l2Promote256, 0); err != nil {
			return withOp(fmt.Sprintf("%s: tensor map %d (%d rows, %d heads, d %d)", op, slot, rows, x.heads, D), err)
		}
		var w [16]uint64
		copy(w[:], buf[off:off+16])
		if b.hopTmapsSet[slot] && b.hopTmaps[slot] == w {
			continue
		}
		if err := b.launch(op, attnHopperFile, "attention_hopper_tmap_store", dim3{1, 1, 1}, dim3{32, 1, 1}, 0, int32(slot),
			w[0], w[1], w[2], w[3], w[4], w[5], w[6], w[7], w[8], w[9], w[10], w[11], w[12], w[13], w[14], w[15]); err != nil {
			return err
		}
		b.hopTmaps[slot], b.hopTmapsSet[slot] = w, true
	}
	return nil
}

// wg is the number of consumer warpgroups at head dim d.
func (ws hopperWS) wg(d int) int {
	if d == 64 {
		return ws.wg64
	}
	return 2
}

// rows is the forward's query rows per block at head dim d, threads its
// block size (a producer warpgroup and the consumers).
func (ws hopperWS) rows(d int) int {
	if ws.mode == 0 {
		return attnHopperRows
	}
	return 64 * ws.wg(d)
}

func (ws hopperWS) threads(d int) int {
	if ws.mode == 0 {
		return 256
	}
	return 128 * (ws.wg(d) + 1)
}

// hopperWSCheck refuses the setmaxnreg variant (mode 2) of forward kernel
// f at head dim d unless ptxas gave it the registers its producer and
// consumers redistribute (HOP_WS_PREG2/CREG2, PREG3/CREG3 add up to 168 a
// thread for 384 threads, 128 for 512): with fewer, setmaxnreg.inc would
// wait for ever. Without cuFuncGetAttribute it cannot tell and says so.
func (b *Backend) hopperWSCheck(f *function, ws hopperWS, d int) error {
	if ws.mode != 2 {
		return nil
	}
	want := 65536 / ws.threads(d) / 8 * 8
	if b.drv.cuFuncGetAttribute == 0 {
		return fmt.Errorf("HOP_FWD_WS=2 needs cuFuncGetAttribute to check that %s has %d registers a thread; the driver lacks it", f.name, want)
	}
	var regs int32
	if err := b.drv.call("cuFuncGetAttribute", b.drv.cuFuncGetAttribute, uintptr(unsafe.Pointer(&regs)), funcAttrNumRegs, f.handle); err != nil {
		return err
	}
	if int(regs) != want {
		return fmt.Errorf("HOP_FWD_WS=2: %s has %d registers a thread, not the %d its setmaxnreg counts assume (a block of %d threads); use HOP_FWD_WS=1", f.name, regs, want, ws.threads(d))
	}
	return nil
}

// hopperFwdBlock reports the block size the loaded Hopper forward kernel at
// head dim d was compiled for (its __launch_bounds__, which the
// warp-specialised forward raises to 384 or 512 threads), so that a test can
// tell which forward the module holds. Needs cuFuncGetAttribute.
func (b *Backend) hopperFwdBlock(d int) (int, error) {
	exit, err := b.enter()
	if err != nil {
		return 0, err
	}
	defer exit()
	f, err := b.function(attnHopperFile, fmt.Sprintf("attention_forward_hopper_d%d", d))
	if err != nil {
		return 0, err
	}
	if b.drv.cuFuncGetAttribute == 0 {
		return 0, fmt.Errorf("the driver lacks cuFuncGetAttribute")
	}
	var n int32
	if err := b.drv.call("cuFuncGetAttribute", b.drv.cuFuncGetAttribute, uintptr(unsafe.Pointer(&n)), funcAttrMaxThreadsPerBlock, f.handle); err != nil {
		return 0, err
	}
	return int(n), nil
}

// fileArch is the architecture kernel file is compiled for: the device's,
// except the Hopper attention kernels, which need sm_90a (wgmma exists
// only there) and are built for it on sm_90 devices.
func (b *Backend) fileArch(file string) string {
	if file == attnHopperFile && b.arch == "sm_90" {
		return "sm_90a"
	}
	return b.arch
}

// useHopperAttention reports whether training attention at head dim d
// over these tensors takes the Hopper kernels: not turned off, not switched off
// by a failed compile, an sm_90 device, a head dim with a kernel, and
// tensors the tensor-core kernels take (the same bf16 and alignment
// rules; useTensorCores).
func (b *Backend) useHopperAttention(d, rows int, outs []*Tensor, ins ...*Tensor) bool {
	// engine.AttnKernels.Hopper is the rule memplan plans with; the
	// tensors' dtype (bf16) and alignment are useTensorCores'.
	return b.attnKernels().Hopper(d, rows, engine.BF16) && b.useTensorCores(d, rows, outs, ins...)
}

// hopperKernel returns the name of Hopper kernel "forward", "backward_dq"
// or "backward_dkv" for head dim d, compiling attention_hopper.cu on first
// use. If that fails, the Hopper kernels are switched off for the backend's
// life with the reason written once to standard error, and ok is false:
// the caller takes the mma.sync kernels.
func (b *Backend) hopperKernel(kind string, d int) (name string, ok bool) {
	name = fmt.Sprintf("attention_%s_hopper_d%d", kind, d)
	if _, err := b.function(attnHopperFile, name); err != nil {
		b.attnHopperOff = err.Error()
		fmt.Fprintf(os.Stderr, "whet: cuda: %s=1 asked for the Hopper attention kernels, but they are unavailable; using the mma.sync kernels: %v\n", AttnHopperEnv, err)
		return "", false
	}
	return name, true
}

// hopperProbe launches attention_hopper_probe_d<d> (kernels/attention_hopper.cu):
// one warpgroup computes S = Q·Kᵀ into sOut [64, 128] and O = P·V into oOut
// [64, d] through the same descriptors and swizzle as the attention kernels,
// so that TestHopperWgmmaProbe can tell a layout error from an attention bug.
// q is [64, d], k and v [128, d], all bf16.
func (b *Backend) hopperProbe(sOut, oOut, q, k, v *Tensor, d int) error {
	exit, err := b.enter()
	if err != nil {
		return err
	}
	defer exit()
	return b.launch("wgmma probe", attnHopperFile, fmt.Sprintf("attention_hopper_probe_d%d", d), dim3{1, 1, 1}, dim3{256, 1, 1},
		1024+640*d, sOut.ptr(), oOut.ptr(), q.ptr(), k.ptr(), v.ptr())
}

// forward launches the attention forward over Tq query rows at positions
// qOffset.., on the tensor cores when it can. starts 0 means one sequence
// (decoding); lse 0 means nothing saved.
// hostStarts, when given (training), orders the tensor-core kernel's query
// blocks heaviest first (attnorder.go).
func (b *Backend) forward(op string, ot, qt, kt, vt *Tensor, lse, starts uint64, hostStarts []int32, nseq, Tq, qOffset int, p engine.AttnParams) error {
	H, KVH, D := p.NHeads, p.NKVHeads, p.HeadDim
	if hostStarts != nil && b.useHopperAttention(D, Tq, []*Tensor{ot}, qt, kt, vt) {
		if name, ok := b.hopperKernel("forward", D); ok {
			// The warp-specialised forward (HOP_FWD_WS) has its own block
			// shape; a bad define or the register check is an error, never
			// a quiet fallback, since the define also changed the kernel.
			ws := hopperFwdWS()
			if ws.err != nil {
				return withOp(op, ws.err)
			}
			if ws.mode != 0 {
				f, err := b.function(attnHopperFile, name)
				if err != nil {
					return withOp(op, err)
				}
				if err := b.hopperWSCheck(f, ws, D); err != nil {
					return withOp(op, err)
				}
				if ws.tma == 1 {
					if err := b.hopperTmaps(op, qt, kt, vt, H, KVH, D, ws.rows(D), ws.keys(D)); err != nil {
						return err
					}
				}
			}
			rows := ws.rows(D)
			return b.launch(op, attnHopperFile, fmt.Sprintf("attention_forward_hopper_d%d", D), dim3{H, (Tq + rows - 1) / rows, 1}, dim3{ws.threads(D), 1, 1},
				attnHopperSmem("forward", D), ot.ptr(), dt(ot), lse, qt.ptr(), kt.ptr(), vt.ptr(),
				starts, int32(nseq), int32(Tq), int32(qOffset), int32(H), int32(KVH), p.Scale, int32(p.Window), p.SoftCap)
		}
	}
	if b.useTensorCores(D, Tq, []*Tensor{ot}, qt, kt, vt) {
		rows := attnFwdRows(D)
		var order uint64
		if hostStarts != nil && rows == attnTCRows { // the order table counts 64-row blocks
			var err error
			if order, _, err = b.attnBlockOrder(op, hostStarts, p.Window); err != nil {
				return err
			}
		}
		return b.launch(op, "attention.cu", fmt.Sprintf("attention_forward_tc_d%d", D),
			dim3{H, (Tq + rows - 1) / rows, 1}, dim3{128, 1, 1}, attnTCSmem("forward", D),
			ot.ptr(), dt(ot), lse, qt.ptr(), kt.ptr(), vt.ptr(),
			starts, int32(nseq), order, int32(Tq), int32(qOffset), int32(H), int32(KVH), p.Scale, int32(p.Window), p.SoftCap)
	}
	return b.launch(op, "attention.cu", "attention_forward",
		dim3{(Tq + attnQB - 1) / attnQB, H, 1}, dim3{128, 1, 1}, attnSmem("attention_forward", D),
		ot.ptr(), dt(ot), lse, qt.ptr(), dt(qt), kt.ptr(), dt(kt), vt.ptr(), dt(vt),
		starts, int32(nseq), int32(Tq), int32(qOffset), int32(H), int32(KVH), int32(D), p.Scale, int32(p.Window), p.SoftCap)
}

// attnSmem is the dynamic shared memory of each float32 attention kernel.
func attnSmem(kernel string, d int) int {
	tiles := 2 * attnKT * (d + 1) // two [KT][D+1] tiles
	switch kernel {
	case "attention_forward":
		return 4 * (tiles + attnQB*d)
	case "attention_backward_dq":
		return 4 * (tiles + 2*attnQB*d)
	default: // attention_backward_dkv
		return 4 * (tiles + 2*attnQB*d + 2*attnKT)
	}
}

// Attention writes out and lse (see kernels/attention.cu for the maths).
func (b *Backend) Attention(out, lse, q, k, v engine.Tensor, seqs engine.SeqLayout, p engine.AttnParams) error {
	c := b.check("Attention")
	ot := c.float("out", out)
	lt := c.f32("lse", lse)
	qt := c.float("q", q)
	kt := c.float("k", k)
	vt := c.float("v", v)
	g := c.attnGeometry(qt, kt, vt, seqs, p)
	if c.Err != nil {
		return c.Err
	}
	c.Matrix("out", ot, g.T, g.H*g.D)
	c.Length("lse", lt, g.H*g.T)
	if !opcheck.Disjoint(&c.Checker, overlaps,
		[]string{"out", "lse"}, []*Tensor{ot, lt},
		[]string{"q", "k", "v"}, []*Tensor{qt, kt, vt}) {
		return c.Err
	}
	if g.T == 0 {
		return nil
	}
	exit, err := b.enter()
	if err != nil {
		return err
	}
	defer exit()
	op := fmt.Sprintf("Attention T=%d heads %d/%d dim %d window %d softcap %g", g.T, g.H, g.KVH, g.D, p.Window, p.SoftCap)
	return b.forward(op, ot, qt, kt, vt, lt.ptr(), g.starts.ptr(), seqs.Starts, g.nseq, g.T, 0, p)
}

// AttentionKV is decode-time attention over a key/value cache
// (engine.KVAttention): the Tq rows of q are positions qOffset.. of one
// sequence, k and v its first qOffset+Tq positions. out is overwritten and
// nothing is saved for a backward. It runs the training forward kernels
// with the query rows shifted to their positions.
func (b *Backend) AttentionKV(out, q, k, v engine.Tensor, qOffset int, p engine.AttnParams) error {
	c := b.check("AttentionKV")
	ot, qt, kt, vt := c.float("out", out), c.float("q", q), c.float("k", k), c.float("v", v)
	if c.Err != nil {
		return c.Err
	}
	Tq, _ := c.AttentionKV(ot, qt, kt, vt, qOffset, p, attnMaxHeadDim)
	H, KVH, D := p.NHeads, p.NKVHeads, p.HeadDim
	c.disjoint("out", ot, "q", qt)
	c.disjoint("out", ot, "k", kt)
	c.disjoint("out", ot, "v", vt)
	if c.Err != nil {
		return c.Err
	}
	if Tq == 0 {
		return nil
	}
	exit, err := b.enter()
	if err != nil {
		return err
	}
	defer exit()
	op := fmt.Sprintf("AttentionKV %d queries at %d heads %d/%d dim %d window %d softcap %g", Tq, qOffset, H, KVH, D, p.Window, p.SoftCap)
	return b.forward(op, ot, qt, kt, vt, 0, 0, nil, 1, Tq, qOffset, p)
}

// AttentionBackward overwrites dq, dk and dv, recomputing the attention
// probabilities from lse.
func (b *Backend) AttentionBackward(dq, dk, dv, dOut, q, k, v, out, lse engine.Tensor, seqs engine.SeqLayout, p engine.AttnParams) error {
	c := b.check("AttentionBackward")
	dqt := c.float("dq", dq)
	dkt := c.float("dk", dk)
	dvt := c.float("dv", dv)
	dot := c.float("dOut", dOut)
	qt := c.float("q", q)
	kt := c.float("k", k)
	vt := c.float("v", v)
	ot := c.float("out", out)
	lt := c.f32("lse", lse)
	g := c.attnGeometry(qt, kt, vt, seqs, p)
	if c.Err != nil {
		return c.Err
	}
	T, H, KVH, D := g.T, g.H, g.KVH, g.D
	c.AttentionGrads(T, H, KVH, D, dqt, dkt, dvt, dot, ot, lt)
	if !opcheck.Disjoint(&c.Checker, overlaps,
		[]string{"dq", "dk", "dv"}, []*Tensor{dqt, dkt, dvt},
		[]string{"dOut", "q", "k", "v", "out", "lse"}, []*Tensor{dot, qt, kt, vt, ot, lt}) {
		return c.Err
	}
	if T == 0 {
		return nil
	}
	exit, err := b.enter()
	if err != nil {
		return err
	}
	defer exit()
	op := fmt.Sprintf("AttentionBackward T=%d heads %d/%d dim %d window %d softcap %g", T, H, KVH, D, p.Window, p.SoftCap)
	// The fused Hopper backward (the default, AttnBwdFusedDefine) also needs an
	// fp32 dq accumulator, after delta in the same scratch.
	hopper := b.useHopperAttention(D, T, []*Tensor{dqt, dkt, dvt}, qt, kt, vt, dot)
	fused := hopper && b.attnKernels().FusedBackward(D, T, engine.BF16)
	if hopper {
		b.attnBwdHopperRuns++
	}
	deltaBytes := int64(H) * int64(T) * 4
	scratch := deltaBytes
	if fused {
		scratch = attnFusedAccOffset(deltaBytes) + attnFusedAccFloats(T, H, D)*4
	}
	delta, err := b.scratchFor(op, scratch)
	if err != nil {
		return err
	}
	warps := T * H
	if err := b.launch(op, "attention.cu", "attention_backward_delta", dim3{min((warps+7)/8, b.smCount*32), 1, 1}, dim3{256, 1, 1}, 0,
		delta, dot.ptr(), dt(dot), ot.ptr(), dt(ot), int32(T), int32(H), int32(D)); err != nil {
		return err
	}
	if fused {
		if _, ok := b.hopperKernel("backward_fused", D); ok {
			acc := delta + uint64(attnFusedAccOffset(deltaBytes))
			return b.fusedBackward(op, dqt, dkt, dvt, dot, qt, kt, vt, lt, delta, acc, g, p.Scale, p.Window, p.SoftCap)
		}
	}
	if hopper {
		_, ok1 := b.hopperKernel("backward_dq", D)
		ok2 := false
		if ok1 {
			_, ok2 = b.hopperKernel("backward_dkv", D)
		}
		if ok2 {
			blocks := (T + attnHopperRows - 1) / attnHopperRows
			if err := b.launch(op, attnHopperFile, fmt.Sprintf("attention_backward_dq_hopper_d%d", D), dim3{H, blocks, 1}, dim3{256, 1, 1}, attnHopperSmem("dq", D),
				dqt.ptr(), dt(dqt), dot.ptr(), qt.ptr(), kt.ptr(), vt.ptr(), lt.ptr(), delta,
				g.starts.ptr(), int32(g.nseq), int32(T), int32(H), int32(KVH), p.Scale, int32(p.Window), p.SoftCap); err != nil {
				return err
			}
			return b.launch(op, attnHopperFile, fmt.Sprintf("attention_backward_dkv_hopper_d%d", D), dim3{KVH, blocks, 1}, dim3{256, 1, 1}, attnHopperSmem("dkv", D),
				dkt.ptr(), dt(dkt), dvt.ptr(), dt(dvt), dot.ptr(), qt.ptr(), kt.ptr(), vt.ptr(), lt.ptr(), delta,
				g.starts.ptr(), int32(g.nseq), int32(T), int32(H), int32(KVH), p.Scale, int32(p.Window), p.SoftCap)
		}
	}
	if b.useTensorCores(D, T, []*Tensor{dqt, dkt, dvt}, qt, kt, vt, dot) {
		qOrder, kOrder, err := b.attnBlockOrder(op, seqs.Starts, p.Window)
		if err != nil {
			return err
		}
		if err := b.launch(op, "attention.cu", fmt.Sprintf("attention_backward_dq_tc_d%d", D),
			dim3{H, (T + attnTCRows - 1) / attnTCRows, 1}, dim3{128, 1, 1}, attnTCSmem("dq", D),
			dqt.ptr(), dt(dqt), dot.ptr(), qt.ptr(), kt.ptr(), vt.ptr(), lt.ptr(), delta,
			g.starts.ptr(), int32(g.nseq), qOrder, int32(T), int32(H), int32(KVH), p.Scale, int32(p.Window), p.SoftCap); err != nil {
			return err
		}
		kvGrid := dim3{KVH, (T + attnTCRows - 1) / attnTCRows, 1}
		if D > attnTCSplitDim {
			if err := b.launch(op, "attention.cu", fmt.Sprintf("attention_backward_dv_tc_d%d", D), kvGrid, dim3{128, 1, 1}, attnTCSmem("dv", D),
				dvt.ptr(), dt(dvt), dot.ptr(), qt.ptr(), kt.ptr(), lt.ptr(),
				g.starts.ptr(), int32(g.nseq), kOrder, int32(T), int32(H), int32(KVH), p.Scale, int32(p.Window), p.SoftCap); err != nil {
				return err
			}
			return b.launch(op, "attention.cu", fmt.Sprintf("attention_backward_dk_tc_d%d", D), kvGrid, dim3{128, 1, 1}, attnTCSmem("dk", D),
				dkt.ptr(), dt(dkt), dot.ptr(), qt.ptr(), kt.ptr(), vt.ptr(), lt.ptr(), delta,
				g.starts.ptr(), int32(g.nseq), kOrder, int32(T), int32(H), int32(KVH), p.Scale, int32(p.Window), p.SoftCap)
		}
		return b.launch(op, "attention.cu", fmt.Sprintf("attention_backward_dkv_tc_d%d", D), kvGrid, dim3{128, 1, 1}, attnTCSmem("dkv", D),
			dkt.ptr(), dt(dkt), dvt.ptr(), dt(dvt), dot.ptr(), qt.ptr(), kt.ptr(), vt.ptr(), lt.ptr(), delta,
			g.starts.ptr(), int32(g.nseq), kOrder, int32(T), int32(H), int32(KVH), p.Scale, int32(p.Window), p.SoftCap)
	}
	if err := b.launch(op, "attention.cu", "attention_backward_dq",
		dim3{(T + attnQB - 1) / attnQB, H, 1}, dim3{128, 1, 1}, attnSmem("attention_backward_dq", D),
		dqt.ptr(), dt(dqt), dot.ptr(), dt(dot), qt.ptr(), dt(qt), kt.ptr(), dt(kt), vt.ptr(), dt(vt), lt.ptr(), delta,
		g.starts.ptr(), int32(g.nseq), int32(T), int32(H), int32(KVH), int32(D), p.Scale, int32(p.Window), p.SoftCap); err != nil {
		return err
	}
	return b.launch(op, "attention.cu", "attention_backward_dkv",
		dim3{(T + attnQB - 1) / attnQB, KVH, 1}, dim3{128, 1, 1}, attnSmem("attention_backward_dkv", D),
		dkt.ptr(), dt(dkt), dvt.ptr(), dt(dvt), dot.ptr(), dt(dot), qt.ptr(), dt(qt), kt.ptr(), dt(kt), vt.ptr(), dt(vt),
		lt.ptr(), delta, g.starts.ptr(), int32(g.nseq), int32(T), int32(H), int32(KVH), int32(D), p.Scale, int32(p.Window), p.SoftCap)
}
