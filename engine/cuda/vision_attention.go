package cuda

import (
	"fmt"

	"whet/engine"
	"whet/engine/envswitch"
)

// VisionAttnTCEnv, set to 1, sends the vision models' attention forwards
// to tensor-core kernels (kernels/attention.cu, attn_fwd_tc's ATTN_GROUPS
// and ATTN_BIAS modes) instead of the plain per-row float32 kernels of
// kernels/group_attention.cu and kernels/bias_attention.cu, which run one
// 256-thread block per (query, head) with scalar dot products: at SigLIP's
// 4096 patches (16 heads of 72) that is about 39e9 scalar multiply-adds a
// layer and most of a Gemma 3 vision step. It takes, with every tensor
// bf16 and 16-byte aligned:
//   - AttentionGroups at head dims 72 (computed as 80 with zero columns),
//     80 and 256: SigLIP's tower and Gemma 3's language model over image
//     groups;
//   - BiasAttention at head dims 80 and 128 (no window, no soft-cap, scale
//     > 0): Llama 3.2 Vision's tower and its cross-attention.
//
// The backward passes keep the plain kernels unless VisionAttnTCBwdEnv is
// set too. Opt-in until the kernels have passed TestConformance and the
// vision models' CPU comparisons on a GPU (tools/gpu/vision-speed).
const VisionAttnTCEnv = "WHET_VISION_ATTN_TC"

// VisionAttnTCBwdEnv, set to 1, sends the vision attention backward
// passes to tensor-core kernels (attn_dq_tc and attn_dkv_tc in the same
// modes): AttentionGroupsBackward at head dim 256 (Gemma 3's language
// model over image groups; the SigLIP tower is frozen) and
// BiasAttentionBackward at 128 (Mllama's cross-attention). Opt-in, like
// VisionAttnTCEnv, and separately, so that the forwards can pass first.
const VisionAttnTCBwdEnv = "WHET_VISION_ATTN_TC_BWD"

// visionTCBwd reports whether VisionAttnTCBwdEnv asks for them.
func visionTCBwd() bool { return envswitch.On(VisionAttnTCBwdEnv) }

// groupsTCDims maps a head dim AttentionGroups may take to tensor cores to
// the head dim the kernel computes at (the kernel's name has the first).
var groupsTCDims = map[int]int{72: 80, 80: 80, 256: 256}

// biasTCDims are the head dims of attention_bias_forward_tc_d*.
var biasTCDims = map[int]bool{80: true, 128: true}

// The head dims of the tensor-core backward kernels:
// attention_groups_backward_{dq,dk,dv}_tc_d256 and
// attention_bias_backward_{dq,dkv}_tc_d128.
const (
	groupsTCBwdDim = 256
	biasTCBwdDim   = 128
)

// visionTC reports whether VisionAttnTCEnv asks for the tensor-core
// vision forwards.
func visionTC() bool { return envswitch.On(VisionAttnTCEnv) }

// visionTCTensors reports whether out and the inputs suit the tensor-core
// kernels: bf16 inputs with 16-byte aligned storage (cp.async copies rows
// in 16-byte pieces; every head dim here is a multiple of 8), outputs
// 4-byte aligned, at most 65535 blocks of rows.
func visionTCTensors(rows, rowsPerBlock int, outs []*Tensor, ins ...*Tensor) bool {
	if (rows+rowsPerBlock-1)/rowsPerBlock > 65535 {
		return false
	}
	for _, o := range outs {
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

// groupsForwardTC runs AttentionGroups on tensor cores when
// VisionAttnTCEnv is set and the call suits the kernel; ok is false when
// it did not (the caller then launches the plain kernel). It first writes
// every query's last visible key (vision_last) into op scratch.
func (b *Backend) groupsForwardTC(op string, ot, lt, qt, kt, vt, gt *Tensor, g *attnGeometry, p engine.AttnParams) (ok bool, err error) {
	dc, known := groupsTCDims[g.D]
	if !visionTC() || !known || dc > attnTCSplitDim && !b.attnTC256 ||
		!visionTCTensors(g.T, attnFwdRows(dc), []*Tensor{ot}, qt, kt, vt) {
		return false, nil
	}
	last, err := b.scratchFor(op, int64(4*g.T))
	if err != nil {
		return true, err
	}
	if err := b.launch(op, "group_attention.cu", "vision_last", dim3{(g.T + 255) / 256, 1, 1}, block256, 0,
		last, uint64(0), gt.ptr(), g.starts.ptr(), int32(g.nseq), int32(g.T)); err != nil {
		return true, err
	}
	rows := attnFwdRows(dc)
	return true, b.launch(op+" tc", "attention.cu", fmt.Sprintf("attention_groups_forward_tc_d%d", g.D),
		dim3{g.H, (g.T + rows - 1) / rows, 1}, dim3{128, 1, 1}, attnTCSmem("forward", dc),
		ot.ptr(), dt(ot), lt.ptr(), qt.ptr(), kt.ptr(), vt.ptr(), gt.ptr(), last, g.starts.ptr(), int32(g.nseq),
		int32(g.T), int32(g.H), int32(g.KVH), p.Scale, int32(p.Window), p.SoftCap)
}

// biasForwardTC runs BiasAttention on tensor cores when VisionAttnTCEnv
// is set and the call suits the kernel (see groupsForwardTC).
func (b *Backend) biasForwardTC(op string, ot, lt, qt, kt, vt *Tensor, g *biasGeometry, p engine.AttnParams) (ok bool, err error) {
	if !visionTC() || !biasTCDims[g.D] || !(p.Scale > 0) || p.Window != 0 || p.SoftCap != 0 ||
		!visionTCTensors(g.T, attnFwdRows(g.D), []*Tensor{ot}, qt, kt, vt) {
		return false, nil
	}
	rows := attnFwdRows(g.D)
	return true, b.launch(op+" tc", "attention.cu", fmt.Sprintf("attention_bias_forward_tc_d%d", g.D),
		dim3{g.H, (g.T + rows - 1) / rows, 1}, dim3{128, 1, 1}, attnTCSmem("forward", g.D),
		ot.ptr(), dt(ot), lt.ptr(), qt.ptr(), kt.ptr(), vt.ptr(), g.biasPtr(),
		int32(g.T), int32(g.S), int32(g.H), int32(g.KVH), p.Scale)
}

// attnDelta writes delta = rowwise dOut.out ([H, T] f32) at the scratch
// address delta (attention_backward_delta, as AttentionBackward).
func (b *Backend) attnDelta(op string, delta uint64, dot, ot *Tensor, T, H, D int) error {
	warps := T * H
	return b.launch(op, "attention.cu", "attention_backward_delta", dim3{min((warps+7)/8, b.smCount*32), 1, 1}, dim3{256, 1, 1}, 0,
		delta, dot.ptr(), dt(dot), ot.ptr(), dt(ot), int32(T), int32(H), int32(D))
}

// groupsBackwardTC runs AttentionGroupsBackward on tensor cores when
// VisionAttnTCBwdEnv is set and the call suits the kernels (head dim 256);
// ok is false when it did not. The op scratch holds delta, then each
// query's last visible key and each key's first query (vision_last).
func (b *Backend) groupsBackwardTC(op string, dqt, dkt, dvt, dot, qt, kt, vt, ot, lt, gt *Tensor, g *attnGeometry, p engine.AttnParams) (ok bool, err error) {
	T, H, KVH, D := g.T, g.H, g.KVH, g.D
	if !visionTCBwd() || D != groupsTCBwdDim || !b.attnTC256 ||
		!visionTCTensors(T, attnTCRows, []*Tensor{dqt, dkt, dvt}, qt, kt, vt, dot) {
		return false, nil
	}
	deltaBytes := int64(4 * H * T)
	delta, err := b.scratchFor(op, deltaBytes+int64(8*T))
	if err != nil {
		return true, err
	}
	last, first := delta+uint64(deltaBytes), delta+uint64(deltaBytes)+uint64(4*T)
	if err := b.attnDelta(op, delta, dot, ot, T, H, D); err != nil {
		return true, err
	}
	if err := b.launch(op, "group_attention.cu", "vision_last", dim3{(T + 255) / 256, 1, 1}, block256, 0,
		last, first, gt.ptr(), g.starts.ptr(), int32(g.nseq), int32(T)); err != nil {
		return true, err
	}
	blocks := (T + attnTCRows - 1) / attnTCRows
	if err := b.launch(op+" tc", "attention.cu", fmt.Sprintf("attention_groups_backward_dq_tc_d%d", D), dim3{H, blocks, 1}, dim3{128, 1, 1}, attnTCSmem("dq", D),
		dqt.ptr(), dt(dqt), dot.ptr(), qt.ptr(), kt.ptr(), vt.ptr(), lt.ptr(), delta, gt.ptr(), last,
		g.starts.ptr(), int32(g.nseq), int32(T), int32(H), int32(KVH), p.Scale, int32(p.Window), p.SoftCap); err != nil {
		return true, err
	}
	if err := b.launch(op+" tc", "attention.cu", fmt.Sprintf("attention_groups_backward_dv_tc_d%d", D), dim3{KVH, blocks, 1}, dim3{128, 1, 1}, attnTCSmem("dv", D),
		dvt.ptr(), dt(dvt), dot.ptr(), qt.ptr(), kt.ptr(), lt.ptr(), gt.ptr(), first,
		g.starts.ptr(), int32(g.nseq), int32(T), int32(H), int32(KVH), p.Scale, int32(p.Window), p.SoftCap); err != nil {
		return true, err
	}
	return true, b.launch(op+" tc", "attention.cu", fmt.Sprintf("attention_groups_backward_dk_tc_d%d", D), dim3{KVH, blocks, 1}, dim3{128, 1, 1}, attnTCSmem("dk", D),
		dkt.ptr(), dt(dkt), dot.ptr(), qt.ptr(), kt.ptr(), vt.ptr(), lt.ptr(), delta, gt.ptr(), first,
		g.starts.ptr(), int32(g.nseq), int32(T), int32(H), int32(KVH), p.Scale, int32(p.Window), p.SoftCap)
}

// biasBackwardTC runs BiasAttentionBackward on tensor cores when
// VisionAttnTCBwdEnv is set and the call suits the kernels (head dim 128,
// no window or soft-cap, scale > 0); the op scratch holds delta.
func (b *Backend) biasBackwardTC(op string, dqt, dkt, dvt, dot, qt, kt, vt, ot, lt *Tensor, g *biasGeometry, p engine.AttnParams) (ok bool, err error) {
	if !visionTCBwd() || g.D != biasTCBwdDim || !(p.Scale > 0) || p.Window != 0 || p.SoftCap != 0 ||
		!visionTCTensors(max(g.T, g.S), attnTCRows, []*Tensor{dqt, dkt, dvt}, qt, kt, vt, dot) {
		return false, nil
	}
	delta, err := b.scratchFor(op, int64(4*g.H*g.T))
	if err != nil {
		return true, err
	}
	if err := b.attnDelta(op, delta, dot, ot, g.T, g.H, g.D); err != nil {
		return true, err
	}
	if err := b.launch(op+" tc", "attention.cu", fmt.Sprintf("attention_bias_backward_dq_tc_d%d", g.D),
		dim3{g.H, (g.T + attnTCRows - 1) / attnTCRows, 1}, dim3{128, 1, 1}, attnTCSmem("dq", g.D),
		dqt.ptr(), dt(dqt), dot.ptr(), qt.ptr(), kt.ptr(), vt.ptr(), lt.ptr(), delta, g.biasPtr(),
		int32(g.T), int32(g.S), int32(g.H), int32(g.KVH), p.Scale); err != nil {
		return true, err
	}
	return true, b.launch(op+" tc", "attention.cu", fmt.Sprintf("attention_bias_backward_dkv_tc_d%d", g.D),
		dim3{g.KVH, (g.S + attnTCRows - 1) / attnTCRows, 1}, dim3{128, 1, 1}, attnTCSmem("dkv", g.D),
		dkt.ptr(), dt(dkt), dvt.ptr(), dt(dvt), dot.ptr(), qt.ptr(), kt.ptr(), vt.ptr(), lt.ptr(), delta, g.biasPtr(),
		int32(g.T), int32(g.S), int32(g.H), int32(g.KVH), p.Scale)
}
