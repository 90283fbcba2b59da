package cuda

import (
	"fmt"

	"whet/engine"
	"whet/engine/envswitch"
	"whet/engine/units"
)

// Decoding ops (engine.DeviceDecoder, engine.NF4MatVec) and the GEMV
// that MatMul takes for one row: kernels/decode.cu, kernels/gemv.cu and
// kernels/nf4.cu. None reads anything back, so a decoding step made of
// them can be recorded (graph.go).

var (
	_ engine.DeviceDecoder = (*Backend)(nil)
	_ engine.NF4MatVec     = (*Backend)(nil)
)

// GEMVEnv set to 0 sends one-row bf16 products to cuBLASLt instead of the
// GEMV kernels (kernels/gemv.cu), and stops MatVecs taking shared-input
// products. On by default since TestMatVecKernels, TestMatVecsMatchesMatMul
// and the generation tests passed on an H100 (2026-12-07), where the kernels
// decoded Llama-3.2-1B at 623 tok/s against cuBLASLt's 546 (graph mode).
const GEMVEnv = "WHET_CUDA_GEMV"

// gemvOff reads GEMVEnv once per backend.
func gemvOff() bool { return !envswitch.On(GEMVEnv) }

// rowsPerBlock is the GEMV kernels' rows per 256-thread block (a warp each).
const rowsPerBlock = 8

// checkPos checks the position tensor (one I32 element) against rows from
// what the host knows of it, reading it back only when nothing is known
// (which fails while recording).
func (b *Backend) checkPos(op string, pt *Tensor, rows int) error {
	return b.checkIndices(op, "pos", pt, rows, false, func(i int, v int32) error {
		return fmt.Errorf("cuda: %s: pos[0] = %d is outside the %d rows of the cache", op, v, rows)
	})
}

// bound records that an I32 tensor holds values in [0, limit): a kernel
// the host launched wrote it and keeps it there.
func bound(t *Tensor, limit int) {
	t.alloc.known = &intSummary{off: t.off, n: t.n, min: 0, max: int32(limit - 1), lo: 0, hi: int32(limit - 1), others: true}
}

// decodeCounters is how many per-head counters the decode scratch holds,
// at its start (AttentionDecode).
const decodeCounters = 1024

// decodeSplits is how many blocks share one head's keys in
// attention_decode, from the cache's rows (fixed for a recording): about
// 128 keys each, at most 64.
func decodeSplits(rows int) (splits, chunk int) {
	splits = min(max((rows+127)/128, 1), 64)
	return splits, (rows + splits - 1) / splits
}

// DecodeAttnEnv picks the decode attention kernel. By default (or v2)
// AttentionDecode takes attention_decode_v2_d64, _d128 or _d256
// (kernels/decode.cu) for heads of those dims over bf16 or float32 caches
// whose bases are 16-byte aligned, other shapes attention_decode; v1 keeps
// attention_decode everywhere. v2 is the default since tools/gpu/decode-attn
// and decode-next (H100 and H200, 2026-12-07): TestAttentionDecodeV2MatchesCPU
// and the generation tests passed with it, and it took Llama-3.2-1B bf16 from
// 631 to 730 tok/s on the H100 and Llama-3.1-8B from 148 to 168
// (docs/performance.md).
const DecodeAttnEnv = "WHET_DECODE_ATTN"

// decodeAttnV2On reads DecodeAttnEnv (once per backend): anything but v1,
// including v3 (attention_decode_v3_d*: v2's kernel with its loads
// pipelined, the same bits; opt-in, no faster than v2 on the H200 in
// tools/gpu/decode-next), which takes v2's path and launch with the other
// kernel.
func decodeAttnV2On() bool { return envswitch.Choice(DecodeAttnEnv) != "v1" }

// decodeAttnV3On reports whether DecodeAttnEnv is v3 (once per backend).
func decodeAttnV3On() bool { return envswitch.Choice(DecodeAttnEnv) == "v3" }

// decodeV2Dim reports whether attention_decode_v2 has an instance for
// heads of dim D.
func decodeV2Dim(D int) bool { return D == 64 || D == 128 || D == 256 }

// decodeSplitsV2 is how many blocks share one head's keys in
// attention_decode_v2, from the cache's rows (fixed for a recording), the
// query heads and the SM count: about 64 rows each, so that a short cache
// takes few and the combine stays small, at most 8 blocks an SM over all
// heads (the kernel waits on loads, so more blocks in flight help a long
// cache) and at most 64 (the combine's shared arrays). The kernel splits
// the keys actually present (0..pos[0]) evenly among them.
func decodeSplitsV2(rows, heads, sms int) int {
	return max(1, min((rows+63)/64, (8*max(sms, 1)+heads-1)/heads, 64))
}

// AttentionDecode turns q and k by the rotary tables at pos[0], stores
// the turned k and v in that row of the caches and attends over rows
// 0..pos[0], all in one launch (kernels/decode.cu, attention_decode).
func (b *Backend) AttentionDecode(out, q, k, v, kCache, vCache, pos, cos, sin engine.Tensor, p engine.AttnParams) error {
	c := b.check("AttentionDecode")
	ot, qt, kt, vt := c.float("out", out), c.float("q", q), c.float("k", k), c.float("v", v)
	kc, vc, pt := c.float("kCache", kCache), c.float("vCache", vCache), c.intTensor("pos", pos)
	ct, st := c.float("cos", cos), c.float("sin", sin)
	if c.Err != nil {
		return c.Err
	}
	H, KVH, D := p.NHeads, p.NKVHeads, p.HeadDim
	if H <= 0 || KVH <= 0 || D <= 0 || H%KVH != 0 || D > attnMaxHeadDim {
		c.Failf("heads %d/%d of dim %d: want positive counts, query heads a multiple of kv heads, dim at most %d", H, KVH, D, attnMaxHeadDim)
		return c.Err
	}
	rows, half := engine.Rows(kc), engine.Cols(ct)
	maxPos := engine.Rows(ct)
	if rot := 2 * half; rot <= 0 || rot > D {
		c.Failf("cos %v: %d rotary dims for heads of %d", ct.shape, rot, D)
		return c.Err
	}
	c.Matrix("q", qt, 1, H*D)
	c.Matrix("out", ot, 1, H*D)
	c.Matrix("k", kt, 1, KVH*D)
	c.Matrix("v", vt, 1, KVH*D)
	c.Matrix("kCache", kc, rows, KVH*D)
	c.Matrix("vCache", vc, rows, KVH*D)
	c.Matrix("sin", st, maxPos, half)
	c.Length("pos", pt, 1)
	if c.Err == nil && (kc.dt != vc.dt || kt.dt != vt.dt || ct.dt != st.dt) {
		c.Failf("the caches are %s and %s, the new k and v %s and %s, cos and sin %s and %s: want pairs alike", kc.dt, vc.dt, kt.dt, vt.dt, ct.dt, st.dt)
	}
	for _, o := range []struct {
		name string
		t    *Tensor
	}{{"out", ot}, {"kCache", kc}, {"vCache", vc}} {
		for _, in := range []struct {
			name string
			t    *Tensor
		}{{"q", qt}, {"k", kt}, {"v", vt}} {
			c.disjoint(o.name, o.t, in.name, in.t)
		}
	}
	c.disjoint("out", ot, "kCache", kc)
	c.disjoint("out", ot, "vCache", vc)
	if c.Err != nil {
		return c.Err
	}
	if rows == 0 || maxPos == 0 {
		c.Failf("the caches have %d rows and the tables %d", rows, maxPos)
		return c.Err
	}
	exit, err := b.enter()
	if err != nil {
		return err
	}
	defer exit()
	op := fmt.Sprintf("AttentionDecode heads %d/%d dim %d rotary %d over %d rows window %d softcap %g", H, KVH, D, 2*half, rows, p.Window, p.SoftCap)
	if err := b.checkPos(op, pt, min(rows, maxPos)); err != nil {
		return err
	}
	splits, chunk := decodeSplits(rows)
	v2 := b.decodeAttnV2 && decodeV2Dim(D) && (kc.dt == engine.BF16 || kc.dt == engine.F32) && kc.ptr()%16 == 0 && vc.ptr()%16 == 0
	if v2 {
		splits = decodeSplitsV2(rows, H, b.smCount)
	}
	var part, count uint64
	if splits > 1 {
		// decodeCounters u32 counters that the kernels leave at 0 (head
		// h uses the h-th), then the partial results [H, splits, D+2]
		// f32. The counters keep their place whatever the shape, so no
		// call's partial sums land on a later call's counters (with the
		// counters after the parts, a call with fewer heads, splits or
		// dims than the one before reused the buffer with its counters
		// inside the earlier call's partial sums).
		if H > decodeCounters {
			c.Failf("%d query heads: the split decode attention counts at most %d", H, decodeCounters)
			return c.Err
		}
		partBytes := int64(H) * int64(splits) * int64(D+2) * 4
		need := decodeCounters*4 + partBytes
		if need > b.decodeScratchBytes {
			if b.capturing {
				return fmt.Errorf("cuda: %s: scratch of %s: %w", op, units.Bytes(need), errCapturing)
			}
			b.rawFree(b.decodeScratch, b.decodeScratchBytes)
			b.decodeScratch, b.decodeScratchBytes = 0, 0
			p, err := b.rawAlloc(need)
			if err != nil {
				return withOp(fmt.Sprintf("%s: scratch of %s", op, units.Bytes(need)), err)
			}
			if err := b.drv.call("cuMemsetD32_v2", b.drv.cuMemsetD32, uintptr(p), 0, uintptr(allocWords(need))); err != nil {
				b.rawFree(p, need)
				return withOp(op, err)
			}
			b.decodeScratch, b.decodeScratchBytes = p, need
		}
		count, part = b.decodeScratch, b.decodeScratch+decodeCounters*4
	}
	if v2 && b.decodeAttnV3 {
		return b.launch(op+" (v3)", "decode.cu", fmt.Sprintf("attention_decode_v3_d%d", D), dim3{H, splits, 1}, dim3{128, 1, 1}, 0,
			ot.ptr(), dt(ot), qt.ptr(), dt(qt), kt.ptr(), vt.ptr(), dt(kt), kc.ptr(), vc.ptr(), dt(kc), pt.ptr(), int64(rows),
			ct.ptr(), st.ptr(), dt(ct), int32(2*half), int64(maxPos),
			int32(H), int32(KVH), p.Scale, int32(p.Window), p.SoftCap, part, count)
	}
	if v2 {
		return b.launch(op+" (v2)", "decode.cu", fmt.Sprintf("attention_decode_v2_d%d", D), dim3{H, splits, 1}, dim3{128, 1, 1}, 0,
			ot.ptr(), dt(ot), qt.ptr(), dt(qt), kt.ptr(), vt.ptr(), dt(kt), kc.ptr(), vc.ptr(), dt(kc), pt.ptr(), int64(rows),
			ct.ptr(), st.ptr(), dt(ct), int32(2*half), int64(maxPos),
			int32(H), int32(KVH), p.Scale, int32(p.Window), p.SoftCap, part, count)
	}
	smem := 4 * (2*D + chunk + 256 + 32)
	return b.launch(op, "decode.cu", "attention_decode", dim3{H, splits, 1}, block256, smem,
		ot.ptr(), dt(ot), qt.ptr(), dt(qt), kt.ptr(), vt.ptr(), dt(kt), kc.ptr(), vc.ptr(), dt(kc), pt.ptr(), int64(rows),
		ct.ptr(), st.ptr(), dt(ct), int32(2*half), int64(maxPos),
		int32(H), int32(KVH), int32(D), p.Scale, int32(p.Window), p.SoftCap, int32(chunk), part, count)
}

// Argmax writes the column of the largest logit (the lowest on ties)
// into ids[0].
func (b *Backend) Argmax(ids, logits engine.Tensor) error {
	c := b.check("Argmax")
	it, lt := c.intTensor("ids", ids), c.float("logits", logits)
	if c.Err != nil {
		return c.Err
	}
	V := engine.Cols(lt)
	c.Length("ids", it, 1)
	c.Matrix("logits", lt, 1, V)
	if c.Err != nil {
		return c.Err
	}
	if V == 0 || V > 1<<31-1 {
		c.Failf("%d logits: want 1 to 2^31-1", V)
		return c.Err
	}
	exit, err := b.enter()
	if err != nil {
		return err
	}
	defer exit()
	if err := b.launch(fmt.Sprintf("Argmax of %s %v", lt.dt, lt.shape), "decode.cu", "argmax", dim3{1, 1, 1}, dim3{1024, 1, 1}, 0,
		it.ptr(), lt.ptr(), dt(lt), int64(V)); err != nil {
		return err
	}
	bound(it, V)
	return nil
}

// AdvancePosition adds 1 to pos[0] while it stays below limit.
func (b *Backend) AdvancePosition(pos engine.Tensor, limit int) error {
	c := b.check("AdvancePosition")
	pt := c.intTensor("pos", pos)
	if c.Err != nil {
		return c.Err
	}
	c.Length("pos", pt, 1)
	if c.Err != nil {
		return c.Err
	}
	if limit < 1 || limit > 1<<31-1 {
		c.Failf("limit %d: want 1 to 2^31-1", limit)
		return c.Err
	}
	exit, err := b.enter()
	if err != nil {
		return err
	}
	defer exit()
	// pos starts within [0, limit) and the kernel keeps it there.
	if err := b.checkPos("AdvancePosition", pt, limit); err != nil {
		return err
	}
	if err := b.launch("AdvancePosition", "decode.cu", "advance_position", dim3{1, 1, 1}, dim3{32, 1, 1}, 0, pt.ptr(), int32(limit)); err != nil {
		return err
	}
	bound(pt, limit)
	return nil
}

// MatVecNF4 computes y [1, out] = x [1, in] @ W^T (+ y when accumulate)
// from W's NF4 codes (kernels/nf4.cu, matvec_nf4, or matvec_nf4_split when
// NF4MatVecEnv is "v2"), the weight's values in float32 (DequantizeNF4
// into bf16 would round them).
func (b *Backend) MatVecNF4(y, x, packed, absmax engine.Tensor, accumulate bool) error {
	c := b.check("MatVecNF4")
	xt, ops := checkNF4Operands(&c, []engine.Tensor{y}, x, []engine.Tensor{packed}, []engine.Tensor{absmax})
	if c.Err != nil {
		return c.Err
	}
	yt, pt, at := ops[0].y, ops[0].packed, ops[0].absmax
	n, k := yt.n, xt.n
	if n == 0 {
		return nil
	}
	exit, err := b.enter()
	if err != nil {
		return err
	}
	defer exit()
	op := fmt.Sprintf("MatVecNF4 %s [1 %d] = %s [1 %d] @ nf4 [%d %d]ᵀ", yt.dt, n, xt.dt, k, n, k)
	if nf4V2() {
		return b.launchNF4V2(op+" (v2)", xt, ops, accumulate)
	}
	acc := int32(0)
	if accumulate {
		acc = 1
	}
	return b.launch(op, "nf4.cu", "matvec_nf4",
		dim3{(n + rowsPerBlock - 1) / rowsPerBlock, 1, 1}, block256, 0,
		yt.ptr(), dt(yt), xt.ptr(), dt(xt), pt.ptr(), at.ptr(), int64(n), int64(k), acc)
}

// gemv runs c [1, n] = alpha * a [1, k] @ bm [n, k]^T + beta * c through
// kernels/gemv.cu when it can (bf16 operands, k a multiple of 8, 16-byte
// aligned operands, the kernel turned on: GEMVEnv=1 or SetGEMV); ok is
// false when cuBLASLt must take it. The caller holds the context.
func (b *Backend) gemv(op string, ct, at, bt *Tensor, m, n, k int, transA, transB bool, alpha, beta float32) (ok bool, err error) {
	if b.gemvDisabled || m != 1 || transA || !transB || at.dt != engine.BF16 || bt.dt != engine.BF16 || k%8 != 0 ||
		alignment(at.ptr()) < 16 || alignment(bt.ptr()) < 16 || alignment(ct.ptr()) < ct.dt.Size() {
		return false, nil
	}
	if what, R, grid, block, ok := rrPlan(op, n, k, rrWarps, 0); ok && rrOn() {
		// early 0: a one-row MatMul's b need not be a weight.
		return true, b.launch(what, "gemv.cu", "gemv_rr", grid, block, 0, ct.ptr(), dt(ct), at.ptr(), bt.ptr(), int64(n), int64(k), R, alpha, beta, int32(0))
	}
	if gemv2() {
		return true, b.launch(op+" (gemv2)", "gemv2.cu", "gemv2_bf16", dim3{(n + rowsPerBlock - 1) / rowsPerBlock, 1, 1}, block256, 0,
			ct.ptr(), dt(ct), at.ptr(), bt.ptr(), int64(n), int64(k), alpha, beta)
	}
	return true, b.launch(op, "gemv.cu", "gemv_bf16", dim3{(n + rowsPerBlock - 1) / rowsPerBlock, 1, 1}, block256, 0,
		ct.ptr(), dt(ct), at.ptr(), bt.ptr(), int64(n), int64(k), alpha, beta)
}

// SetGEMV sends one-row products to the GEMV kernel (on; off by default
// unless GEMVEnv is 1) or to cuBLASLt, for comparing them. A recording
// keeps the choice it was made with.
func (b *Backend) SetGEMV(on bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.gemvDisabled = !on
}

// GEMV reports whether one-row products go to the GEMV kernel.
func (b *Backend) GEMV() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return !b.gemvDisabled
}

var _ engine.MatVecs = (*Backend)(nil)

// MatVecs multiplies the one row x by up to three bf16 weights that share
// it, in one launch of kernels/gemv.cu's gemv_bf16_multi (engine.MatVecs).
// It declines (ok false) what the kernel cannot take: other dtypes, more
// than three weights, unaligned operands, outputs of different dtypes, or
// the GEMV kernel turned off.
func (b *Backend) MatVecs(ys []engine.Tensor, x engine.Tensor, ws []engine.Tensor, accumulate bool) (bool, error) {
	c := b.check("MatVecs")
	xt := c.float("x", x)
	if c.Err != nil {
		return false, c.Err
	}
	if len(ys) != len(ws) || len(ws) == 0 {
		c.Failf("%d outputs for %d weights", len(ys), len(ws))
		return false, c.Err
	}
	k := xt.n
	c.Matrix("x", xt, 1, k)
	var yts, wts []*Tensor
	for i := range ws {
		wt, yt := c.float(fmt.Sprintf("ws[%d]", i), ws[i]), c.float(fmt.Sprintf("ys[%d]", i), ys[i])
		if c.Err != nil {
			return false, c.Err
		}
		n := engine.Rows(wt)
		c.Matrix(fmt.Sprintf("ws[%d]", i), wt, n, k)
		c.Matrix(fmt.Sprintf("ys[%d]", i), yt, 1, n)
		c.disjoint(fmt.Sprintf("ys[%d]", i), yt, "x", xt)
		c.disjoint(fmt.Sprintf("ys[%d]", i), yt, fmt.Sprintf("ws[%d]", i), wt)
		yts, wts = append(yts, yt), append(wts, wt)
	}
	if c.Err != nil {
		return false, c.Err
	}
	exit, err := b.enter()
	if err != nil {
		return false, err
	}
	defer exit()
	if b.gemvDisabled || len(ws) > 3 || xt.dt != engine.BF16 || k%8 != 0 || alignment(xt.ptr()) < 16 {
		return false, nil
	}
	beta := float32(0)
	if accumulate {
		beta = 1
	}
	var yp, wp [3]uint64
	var np [3]int64
	rows := 0
	for i := range ws {
		yt, wt := yts[i], wts[i]
		if wt.dt != engine.BF16 || alignment(wt.ptr()) < 16 || yt.dt != yts[0].dt || alignment(yt.ptr()) < yt.dt.Size() {
			return false, nil
		}
		rows += yt.n
		yp[i], wp[i], np[i] = yt.ptr(), wt.ptr(), int64(yt.n)
	}
	op := fmt.Sprintf("MatVecs of %d weights, %d rows over %d", len(ws), rows, k)
	if what, R, grid, block, ok := rrPlan(op, rows, k, rrWarps, 0); ok && rrOn() {
		return true, b.launch(what, "gemv.cu", "gemv_rr_multi", grid, block, 0,
			xt.ptr(), int64(k), R, dt(yts[0]), beta, yp[0], wp[0], np[0], yp[1], wp[1], np[1], yp[2], wp[2], np[2])
	}
	if gemv2() {
		return true, b.launch(op+" (gemv2)", "gemv2.cu", "gemv2_bf16_multi", dim3{(rows + rowsPerBlock - 1) / rowsPerBlock, 1, 1}, block256, 0,
			xt.ptr(), int64(k), dt(yts[0]), beta, yp[0], wp[0], np[0], yp[1], wp[1], np[1], yp[2], wp[2], np[2])
	}
	return true, b.launch(op, "gemv.cu", "gemv_bf16_multi", dim3{(rows + rowsPerBlock - 1) / rowsPerBlock, 1, 1}, block256, 0,
		xt.ptr(), int64(k), dt(yts[0]), beta, yp[0], wp[0], np[0], yp[1], wp[1], np[1], yp[2], wp[2], np[2])
}
