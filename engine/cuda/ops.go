package cuda

import (
	"fmt"
	"math"
	"unsafe"

	"whet/engine"
	"whet/engine/units"
)

// The op files below check arguments the way engine/cpu does (same rules,
// same messages with a "cuda:" prefix), then take the context and queue
// kernels on the stream. Ops return once the work is queued; Sync and
// Download wait for it.

const (
	fileElementwise = "elementwise.cu"
	fileReduce      = "reduce.cu"
)

// temp is device memory an op needs only while it runs. Out of memory is
// reported with the op and size, and the op frees what it took before
// returning, so a failed op leaves the backend as it found it.
func (b *Backend) temp(op string, bytes int64) (uint64, func(), error) {
	if b.capturing {
		return 0, nil, fmt.Errorf("cuda: %s: scratch of %s: %w", op, units.Bytes(bytes), errCapturing)
	}
	p, err := b.rawAlloc(bytes)
	if err != nil {
		return 0, nil, withOp(fmt.Sprintf("%s: scratch of %s", op, units.Bytes(bytes)), err)
	}
	return p, func() { b.rawFree(p, bytes) }, nil
}

// scratchFor returns the backend's reusable scratch buffer, grown to at
// least bytes. It is valid until the next call. When growing fails, the old
// buffer is released too, so that the failed op leaves nothing extra held.
func (b *Backend) scratchFor(op string, bytes int64) (uint64, error) {
	if bytes <= b.opScratchBytes {
		return b.opScratch, nil
	}
	if b.capturing {
		return 0, fmt.Errorf("cuda: %s: scratch of %s: %w", op, units.Bytes(bytes), errCapturing)
	}
	b.rawFree(b.opScratch, b.opScratchBytes)
	b.opScratch, b.opScratchBytes = 0, 0
	p, err := b.rawAlloc(bytes)
	if err != nil {
		return 0, withOp(fmt.Sprintf("%s: scratch of %s", op, units.Bytes(bytes)), err)
	}
	b.opScratch, b.opScratchBytes = p, bytes
	return p, nil
}

// Fill sets every element to v (rounded to the tensor's dtype; an I32
// tensor needs an integral v).
func (b *Backend) Fill(t engine.Tensor, v float32) error {
	c := b.check("Fill")
	d := c.tensor("t", t)
	if c.Err != nil {
		return c.Err
	}
	if d.dt == engine.I32 && v != float32(int32(v)) {
		return fmt.Errorf("cuda: Fill: %g is not an int32 for I32 tensor %v", v, d.shape)
	}
	if d.n == 0 {
		return nil
	}
	exit, err := b.enter()
	if err != nil {
		return err
	}
	defer exit()
	d.alloc.known = nil
	if err := b.launch(fmt.Sprintf("Fill %s %v", d.dt, d.shape), fileElementwise, "fill", b.gridFor(d.n), block256, 0,
		d.ptr(), dt(d), int64(d.n), v); err != nil {
		return err
	}
	if d.dt == engine.I32 {
		d.alloc.known = summarise(d.off, []int32{int32(v)})
		d.alloc.known.n = d.n
	}
	return nil
}

// Copy copies src into dst (same length; F32 and BF16 convert both ways,
// I32 copies only to I32).
func (b *Backend) Copy(dst, src engine.Tensor) error {
	c := b.check("Copy")
	d := c.tensor("dst", dst)
	s := c.tensor("src", src)
	c.SameLen("dst", d, "src", s)
	if c.Err != nil {
		return c.Err
	}
	if (d.dt == engine.I32) != (s.dt == engine.I32) {
		return fmt.Errorf("cuda: Copy: cannot copy %s %v into %s %v", s.dt, s.shape, d.dt, d.shape)
	}
	if d.n == 0 {
		return nil
	}
	exit, err := b.enter()
	if err != nil {
		return err
	}
	defer exit()
	d.alloc.known = nil
	return b.copyLocked(fmt.Sprintf("Copy %s %v to %s %v", s.dt, s.shape, d.dt, d.shape), d.ptr(), d.dt, s.ptr(), s.dt, d.n)
}

// copyLocked copies n elements between device buffers, converting dtypes.
// Same-dtype copies go through the copy engine; overlapping ranges are
// the caller's to avoid. The caller holds the context.
func (b *Backend) copyLocked(op string, dst uint64, ddt engine.DType, src uint64, sdt engine.DType, n int) error {
	if ddt == sdt {
		if dst == src {
			return nil
		}
		if b.capturing {
			// The legacy stream cannot join a capture: copy on ours.
			return withOp(op, b.drv.call("cuMemcpyDtoDAsync_v2", b.drv.cuMemcpyDtoDAsync, uintptr(dst), uintptr(src), uintptr(n*ddt.Size()), b.stream))
		}
		// cuMemcpyDtoD runs on the legacy stream, which waits for ours.
		return withOp(op, b.drv.call("cuMemcpyDtoD_v2", b.drv.cuMemcpyDtoD, uintptr(dst), uintptr(src), uintptr(n*ddt.Size())))
	}
	return b.launch(op, fileElementwise, "cast_copy", b.gridFor(n), block256, 0, dst, int32(ddt), src, int32(sdt), int64(n))
}

// AddScaled computes dst += alpha*src.
func (b *Backend) AddScaled(dst, src engine.Tensor, alpha float32) error {
	c := b.check("AddScaled")
	d := c.float("dst", dst)
	s := c.float("src", src)
	c.SameLen("dst", d, "src", s)
	return b.launchOver(&c, d, func() error {
		return b.launch(fmt.Sprintf("AddScaled %s %v += %g * %s %v", d.dt, d.shape, alpha, s.dt, s.shape), fileElementwise, "add_scaled",
			b.gridFor(d.n), block256, 0, d.ptr(), dt(d), s.ptr(), dt(s), int64(d.n), alpha)
	})
}

// Scale computes t *= s.
func (b *Backend) Scale(t engine.Tensor, s float32) error {
	c := b.check("Scale")
	d := c.float("t", t)
	return b.launchOver(&c, d, func() error {
		return b.launch(fmt.Sprintf("Scale %s %v", d.dt, d.shape), fileElementwise, "scale", b.gridFor(d.n), block256, 0,
			d.ptr(), dt(d), int64(d.n), s)
	})
}

// AddBias adds bias to every row of out.
func (b *Backend) AddBias(out, bias engine.Tensor) error {
	c := b.check("AddBias")
	o := c.float("out", out)
	bs := c.float("bias", bias)
	if c.Err != nil {
		return c.Err
	}
	cols := engine.Cols(o)
	c.Length("bias", bs, cols)
	return b.launchOver(&c, o, func() error {
		return b.launch(fmt.Sprintf("AddBias %s %v", o.dt, o.shape), fileElementwise, "add_bias", b.gridFor(o.n), block256, 0,
			o.ptr(), dt(o), bs.ptr(), dt(bs), int64(engine.Rows(o)), int64(cols))
	})
}

// BiasBackward adds the column sums of dOut to dBias.
func (b *Backend) BiasBackward(dBias, dOut engine.Tensor) error {
	c := b.check("BiasBackward")
	db := c.float("dBias", dBias)
	do := c.float("dOut", dOut)
	if c.Err != nil {
		return c.Err
	}
	cols := engine.Cols(do)
	c.Length("dBias", db, cols)
	if c.Err != nil {
		return c.Err
	}
	if cols == 0 {
		return nil
	}
	exit, err := b.enter()
	if err != nil {
		return err
	}
	defer exit()
	return b.launch(fmt.Sprintf("BiasBackward %s %v", do.dt, do.shape), fileElementwise, "bias_backward",
		dim3{(cols + 31) / 32, 1, 1}, dim3{32, 8, 1}, 0, db.ptr(), dt(db), do.ptr(), dt(do), int64(engine.Rows(do)), int64(cols))
}

// SumSquares returns the sum of squares of t, accumulated in float64. It
// waits for the device.
func (b *Backend) SumSquares(t engine.Tensor) (float64, error) {
	c := b.check("SumSquares")
	d := c.float("t", t)
	if c.Err != nil {
		return 0, c.Err
	}
	if d.n == 0 {
		return 0, nil
	}
	exit, err := b.enter()
	if err != nil {
		return 0, err
	}
	defer exit()
	op := fmt.Sprintf("SumSquares %s %v", d.dt, d.shape)
	if b.capturing { // its answer is read back, and the synchronous memset would break the capture
		return 0, fmt.Errorf("cuda: %s: %w", op, errCapturing)
	}
	if err := b.drv.call("cuMemsetD32_v2", b.drv.cuMemsetD32, uintptr(b.scratch), 0, 2); err != nil {
		return 0, withOp(op, err)
	}
	if err := b.launch(op, fileReduce, "sum_squares", b.gridFor(d.n), block256, 0, b.scratch, d.ptr(), dt(d), int64(d.n)); err != nil {
		return 0, err
	}
	var out float64
	if err := b.dtoh(unsafe.Pointer(&out), b.scratch, 8); err != nil {
		return 0, withOp(op, err)
	}
	return out, nil
}

// SumSquaresV2Env=1 sums SumSquaresAll without atomics
// (kernels/reduce.cu sum_squares_multi_partial: one float64 partial a
// chunk, 16-byte loads; sum_squares_final: the partials in a fixed order),
// where sum_squares_multi adds every chunk's sum into one float64 with an
// atomicAdd (37,700 of them for Llama-3.2-1B's gradients: 2.2 ms a step on
// an H100 for 4.9 GB, about 1.5 ms of reading). The result is then the
// same on every run. The default since tools/gpu/train-speed (H200,
// 2026-12-07: TestSumSquaresV2, the conformance cases and the training
// curves passed with it); SumSquaresV2Env=0 goes back to the atomics.
const SumSquaresV2Env = "WHET_SUMSQ_V2"

// SumSquaresAll (engine.SumSquaresOfAll) adds the sums of squares of
// every tensor into one float64 on the device, in one launch, and reads it
// once.
func (b *Backend) SumSquaresAll(ts []engine.Tensor) (float64, error) {
	c := b.check("SumSquaresAll")
	var table []uint64
	for i, t := range ts {
		d := c.float(fmt.Sprintf("ts[%d]", i), t)
		if c.Err != nil {
			return 0, c.Err
		}
		table = chunks(table, d)
	}
	if len(table) == 0 {
		return 0, nil
	}
	exit, err := b.enter()
	if err != nil {
		return 0, err
	}
	defer exit()
	op := fmt.Sprintf("SumSquaresAll of %d tensors", len(ts))
	if b.capturing { // as SumSquares
		return 0, fmt.Errorf("cuda: %s: %w", op, errCapturing)
	}
	if b.sumSquaresV2 {
		blocks := len(table) / 3
		partials, err := b.scratchFor(op, int64(8*blocks))
		if err != nil {
			return 0, err
		}
		if err := b.launchTable(op, fileReduce, "sum_squares_multi_partial", table, 3, partials); err != nil {
			return 0, err
		}
		if err := b.launch(op, fileReduce, "sum_squares_final", dim3{1, 1, 1}, dim3{1024, 1, 1}, 0, b.scratch, partials, int64(blocks)); err != nil {
			return 0, err
		}
		var out float64
		if err := b.dtoh(unsafe.Pointer(&out), b.scratch, 8); err != nil {
			return 0, withOp(op, err)
		}
		return out, nil
	}
	if err := b.drv.call("cuMemsetD32_v2", b.drv.cuMemsetD32, uintptr(b.scratch), 0, 2); err != nil {
		return 0, withOp(op, err)
	}
	if err := b.launchTable(op, fileReduce, "sum_squares_multi", table, 3, b.scratch); err != nil {
		return 0, err
	}
	var out float64
	if err := b.dtoh(unsafe.Pointer(&out), b.scratch, 8); err != nil {
		return 0, withOp(op, err)
	}
	return out, nil
}

// MatMul computes c = alpha*op(a)@op(b) + beta*c through cuBLASLt with
// float32 accumulation. bf16 operands go straight to the tensor cores
// (output bf16 or f32). cuBLASLt multiplies only like with like, so other
// mixes are widened to f32 in scratch first, and an f32 product meant for
// a bf16 c goes through an f32 scratch c. Operands that start less than 16
// bytes into an allocation (views at odd offsets) are copied to aligned
// scratch too, since cuBLASLt's kernels want aligned pointers. beta == 0
// overwrites c without reading it.
func (b *Backend) MatMul(c, a, bm engine.Tensor, transA, transB bool, alpha, beta float32) error {
	ch := b.check("MatMul")
	ct := ch.float("c", c)
	at := ch.float("a", a)
	bt := ch.float("b", bm)
	ch.disjoint("c", ct, "a", at)
	ch.disjoint("c", ct, "b", bt)
	if ch.Err != nil {
		return ch.Err
	}
	m, k, n, ok := ch.MatMul(ct, at, bt, transA, transB)
	if !ok {
		return ch.Err
	}
	if m == 0 || n == 0 {
		return nil
	}
	exit, err := b.enter()
	if err != nil {
		return err
	}
	defer exit()
	op := fmt.Sprintf("MatMul %s[%dx%d] = %s%v%s @ %s%v%s", ct.dt, m, n, at.dt, at.shape, tflag(transA), bt.dt, bt.shape, tflag(transB))
	if k == 0 {
		// Empty inner dimension: the product is zero, c = beta*c.
		if beta == 0 {
			return b.launch(op, fileElementwise, "fill", b.gridFor(ct.n), block256, 0, ct.ptr(), dt(ct), int64(ct.n), float32(0))
		}
		return b.launch(op, fileElementwise, "scale", b.gridFor(ct.n), block256, 0, ct.ptr(), dt(ct), int64(ct.n), beta)
	}
	if ok, err := b.gemv(op, ct, at, bt, m, n, k, transA, transB, alpha, beta); ok {
		return err
	}
	abType := engine.BF16
	if at.dt != engine.BF16 || bt.dt != engine.BF16 {
		abType = engine.F32
	}
	// operand returns t's data as abType at an aligned address, copying
	// into scratch when it must.
	operand := func(t *Tensor, want engine.DType) (uint64, func(), error) {
		if t.dt == want && alignment(t.ptr()) >= 16 {
			return t.ptr(), func() {}, nil
		}
		p, free, err := b.temp(op, int64(t.n)*int64(want.Size()))
		if err != nil {
			return 0, nil, err
		}
		if err := b.copyLocked(op, p, want, t.ptr(), t.dt, t.n); err != nil {
			free()
			return 0, nil, err
		}
		return p, free, nil
	}
	aPtr, freeA, err := operand(at, abType)
	if err != nil {
		return err
	}
	defer freeA()
	bPtr, freeB, err := operand(bt, abType)
	if err != nil {
		return err
	}
	defer freeB()
	cType := ct.dt
	if abType == engine.F32 {
		cType = engine.F32
	}
	if cType == ct.dt && alignment(ct.ptr()) >= 16 {
		return b.gemm(op, ct.ptr(), cType, aPtr, bPtr, abType, m, n, k, transA, transB, alpha, beta)
	}
	p, freeC, err := b.temp(op, int64(ct.n)*int64(cType.Size()))
	if err != nil {
		return err
	}
	defer freeC()
	if beta != 0 {
		if err := b.copyLocked(op, p, cType, ct.ptr(), ct.dt, ct.n); err != nil {
			return err
		}
	}
	if err := b.gemm(op, p, cType, aPtr, bPtr, abType, m, n, k, transA, transB, alpha, beta); err != nil {
		return err
	}
	return b.copyLocked(op, ct.ptr(), ct.dt, p, cType, ct.n)
}

func tflag(t bool) string {
	if t {
		return "ᵀ"
	}
	return ""
}

// gemm runs the row-major product C[m,n] = alpha*op(A)@op(B) + beta*C as
// the column-major product C^T = op(B)^T @ op(A)^T, which is what cuBLASLt
// computes when handed B as its first operand and A as its second: a
// row-major matrix read column-major is its own transpose.
func (b *Backend) gemm(op string, c uint64, cType engine.DType, a, bm uint64, abType engine.DType, m, n, k int, transA, transB bool, alpha, beta float32) error {
	key := matmulKey{
		m: n, n: m, k: k, opA: cublasOpN, opB: cublasOpN,
		typeAB: cudaType(abType), typeCD: cudaType(cType),
		alignA: alignment(bm), alignB: alignment(a), alignC: alignment(c),
	}
	lda, ldb := n, k // row widths of B and A as stored
	if transB {
		key.opA, lda = cublasOpT, k
	}
	if transA {
		key.opB, ldb = cublasOpT, m
	}
	p, err := b.lt.plan(key, lda, ldb, n, b.workspaceSize)
	if err != nil {
		return withOp(op, err)
	}
	name := func() string {
		return fmt.Sprintf("gemm %dx%dx%d %s->%s tA=%v tB=%v", m, n, k, abType, cType, transA, transB)
	}
	if b.tuner != nil && !b.deterministic && !p.tuned && !b.capturing {
		if err := b.tunePlan(op, name(), p, key, bm, a, c, int64(m)*int64(n)*int64(cType.Size()), alpha, beta); err != nil {
			return err
		}
	}
	if b.deterministic && p.first != nil {
		// Tuned before the backend was made deterministic: the
		// heuristic's choice, which does not depend on timings.
		q := *p
		q.algo, q.workspace = p.first.algo, p.first.workspace
		p = &q
	}
	run := func() error { return b.lt.matmul(p, alpha, beta, bm, a, c, b.workspace, b.workspaceSize, b.stream) }
	if b.prof != nil {
		err = b.prof.around(b.drv, b.stream, name(), run)
	} else {
		err = run()
	}
	if err != nil {
		return withOp(op, err)
	}
	if b.syncEachOp {
		return withOp(op, b.drv.call("cuStreamSynchronize", b.drv.cuStreamSynchronize, b.stream))
	}
	return nil
}

// AdamW updates param (F32 master, or with p.RoundSeed a BF16 one) in
// place from grad times p.GradScale, m and v, as torch.optim.AdamW does;
// see kernels/adamw.cu.
func (b *Backend) AdamW(param, grad, m, v engine.Tensor, p engine.AdamWParams) error {
	c := b.check("AdamW")
	pt := c.float("param", param)
	gt := c.float("grad", grad)
	mt := c.f32("m", m)
	vt := c.f32("v", v)
	if c.Err != nil || !c.AdamW(pt, gt, mt, vt, p.Step) {
		return c.Err
	}
	if pt.n == 0 {
		return nil
	}
	exit, err := b.enter()
	if err != nil {
		return err
	}
	defer exit()
	h := adamwHyperOf(p)
	if !b.fusedAdamW && h.gscale == 1 && p.RoundSeed == 0 && pt.dt == engine.F32 {
		// The kernel that has run on GPUs.
		return b.launch(fmt.Sprintf("AdamW %v", pt.shape), "adamw.cu", "adamw", b.gridFor(pt.n), block256, 0,
			pt.ptr(), gt.ptr(), dt(gt), mt.ptr(), vt.ptr(), int64(pt.n),
			h.decay, h.b1c, h.b2, h.b2c, h.stepSize, h.bc2Sqrt, h.eps)
	}
	return b.launch(fmt.Sprintf("AdamW %v", pt.shape), "adamw.cu", "adamw_fused", b.gridFor(pt.n), block256, 0,
		pt.ptr(), dt(pt), gt.ptr(), dt(gt), mt.ptr(), vt.ptr(), int64(pt.n),
		h.decay, h.b1c, h.b2, h.b2c, h.stepSize, h.bc2Sqrt, h.eps, h.gscale, p.RoundSeed, uint64(p.Step))
}

// FusedAdamWEnv=0 steps fp32 masters with adamw_multi and scales the
// gradients for clipping first (scale_multi), the path before the fused
// kernels became the default.
const FusedAdamWEnv = "WHET_CUDA_FUSED_ADAMW"

// FoldsGradScale (engine.GradScaleFolder) tells the trainer whether to hand
// clipping's coefficient to AdamW (the fused kernels, the default) or to
// scale the gradients first (FusedAdamWEnv=0).
func (b *Backend) FoldsGradScale() bool { return b.fusedAdamW }

// adamwHyper are adamw.cu's float arguments (its AdamWHyper).
type adamwHyper struct{ decay, b1c, b2, b2c, stepSize, bc2Sqrt, eps, gscale float32 }

// adamwHyperOf computes them for p: the bias corrections in float64, the
// gradient's scale with 0 read as 1.
func adamwHyperOf(p engine.AdamWParams) adamwHyper {
	bc1 := 1 - math.Pow(float64(p.Beta1), float64(p.Step))
	bc2 := 1 - math.Pow(float64(p.Beta2), float64(p.Step))
	return adamwHyper{1 - p.LR*p.WeightDecay, 1 - p.Beta1, p.Beta2, 1 - p.Beta2, float32(float64(p.LR) / bc1),
		float32(math.Sqrt(bc2)), p.Eps, p.GradMultiplier()}
}

// SwiGLU writes out = silu(gate)*up.
func (b *Backend) SwiGLU(out, gate, up engine.Tensor) error {
	return b.gatedForward("SwiGLU", actSiLU, out, gate, up)
}

// SwiGLUBackward overwrites dGate and dUp (either may be the buffer of
// gate or up: each element is read before it is written).
func (b *Backend) SwiGLUBackward(dGate, dUp, dOut, gate, up engine.Tensor) error {
	return b.gatedBackward("SwiGLUBackward", actSiLU, dGate, dUp, dOut, gate, up)
}

// gatedAct names the activation of a gated MLP: silu (swiglu.cu) or
// GELU-tanh (geglu.cu, family.go). Both files' kernels take the same
// parameters.
type gatedAct int

const (
	actSiLU gatedAct = iota
	actGELUTanh
)

// gatedForward checks and launches out = act(gate)*up.
func (b *Backend) gatedForward(op string, act gatedAct, out, gate, up engine.Tensor) error {
	c := b.check(op)
	o := c.float("out", out)
	g := c.float("gate", gate)
	u := c.float("up", up)
	c.SameLen("out", o, "gate", g)
	c.SameLen("out", o, "up", u)
	return b.launchOver(&c, o, func() error {
		desc, grid, n := fmt.Sprintf("%s %s %v", op, o.dt, o.shape), b.gridFor(o.n), int64(o.n)
		if act == actGELUTanh {
			return b.launch(desc, "geglu.cu", "geglu_forward", grid, block256, 0, o.ptr(), dt(o), g.ptr(), dt(g), u.ptr(), dt(u), n)
		}
		return b.launch(desc, "swiglu.cu", "swiglu_forward", grid, block256, 0, o.ptr(), dt(o), g.ptr(), dt(g), u.ptr(), dt(u), n)
	})
}

// gatedBackward checks and launches the backward of gatedForward (dGate
// and dUp overwritten).
func (b *Backend) gatedBackward(op string, act gatedAct, dGate, dUp, dOut, gate, up engine.Tensor) error {
	c := b.check(op)
	dg := c.float("dGate", dGate)
	du := c.float("dUp", dUp)
	do := c.float("dOut", dOut)
	g := c.float("gate", gate)
	u := c.float("up", up)
	c.SwiGLUGrads(dg, du, do, g, u)
	return b.launchOver(&c, do, func() error {
		desc, grid, n := fmt.Sprintf("%s %s %v", op, do.dt, do.shape), b.gridFor(do.n), int64(do.n)
		if act == actGELUTanh {
			return b.launch(desc, "geglu.cu", "geglu_backward", grid, block256, 0,
				dg.ptr(), dt(dg), du.ptr(), dt(du), do.ptr(), dt(do), g.ptr(), dt(g), u.ptr(), dt(u), n)
		}
		return b.launch(desc, "swiglu.cu", "swiglu_backward", grid, block256, 0,
			dg.ptr(), dt(dg), du.ptr(), dt(du), do.ptr(), dt(do), g.ptr(), dt(g), u.ptr(), dt(u), n)
	})
}

// Dropout writes out = x*keep/(1-p) with engine/cpu's counter-based mask,
// so both backends drop the same elements for the same seed.
func (b *Backend) Dropout(out, x engine.Tensor, p float32, seed uint64) error {
	c := b.check("Dropout")
	o := c.float("out", out)
	xt := c.float("x", x)
	c.SameLen("out", o, "x", xt)
	if c.Err == nil && !(p >= 0 && p <= 1) {
		c.Failf("probability %g is outside [0, 1]", p)
	}
	if c.Err != nil {
		return c.Err
	}
	if o.n == 0 {
		return nil
	}
	var scale float32
	if p < 1 {
		scale = 1 / (1 - p)
	}
	exit, err := b.enter()
	if err != nil {
		return err
	}
	defer exit()
	return b.launch(fmt.Sprintf("Dropout %s %v p=%g", o.dt, o.shape, p), fileElementwise, "dropout", b.gridFor(o.n), block256, 0,
		o.ptr(), dt(o), xt.ptr(), dt(xt), int64(o.n), p, scale, seed)
}
