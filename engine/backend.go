// Package engine holds the model maths (decoder forward and hand-derived
// backward), LoRA and full fine-tuning, losses, AdamW, the trainer and its
// checkpoints. It talks to hardware only through the Backend interface below:
// engine/cpu is the float32 oracle, engine/cuda the fast path.
package engine

import (
	"errors"

	"whet/engine/envswitch"
)

// DType is the element type of a Tensor.
type DType uint8

const (
	F32  DType = iota // IEEE float32
	BF16              // bfloat16 (activations and frozen weights on GPUs)
	I32               // int32 (token ids, labels, positions)
)

func (d DType) String() string {
	switch d {
	case F32:
		return "f32"
	case BF16:
		return "bf16"
	case I32:
		return "i32"
	}
	return "dtype?"
}

// Size is the number of bytes one element takes.
func (d DType) Size() int {
	if d == BF16 {
		return 2
	}
	return 4
}

// Tensor is a contiguous, row-major buffer owned by a Backend. A tensor is
// read as a matrix of Rows() x Cols(): Cols is the last dimension and Rows
// the product of the others.
type Tensor interface {
	Shape() []int
	DType() DType
	Len() int
}

// Rows is the product of all dimensions but the last.
func Rows(t Tensor) int {
	s := t.Shape()
	if len(s) == 0 {
		return 1
	}
	r := 1
	for _, d := range s[:len(s)-1] {
		r *= d
	}
	return r
}

// Cols is the last dimension.
func Cols(t Tensor) int {
	s := t.Shape()
	if len(s) == 0 {
		return 1
	}
	return s[len(s)-1]
}

// ErrNotImplemented is returned by a backend for an op or dtype it lacks,
// so callers can fall back or report it.
var ErrNotImplemented = errors.New("not implemented by this backend")

// SeqLayout describes packed sequences inside a flat run of T tokens:
// sequence i covers tokens [Starts[i], Starts[i+1]). Attention never
// crosses a boundary. Dev is the same offsets as an I32 tensor on the
// backend (backends that need them on the device read it; others use Starts).
type SeqLayout struct {
	Starts []int32
	Dev    Tensor
	MaxLen int
}

// AttnParams fixes the attention geometry for one call.
type AttnParams struct {
	NHeads   int     // query heads
	NKVHeads int     // key/value heads (GQA: NHeads is a multiple of it)
	HeadDim  int     // per head
	Scale    float32 // usually 1/sqrt(HeadDim)
	Window   int     // sliding window in tokens; 0 means none
	// SoftCap, when positive, caps each scaled score s at
	// SoftCap*tanh(s/SoftCap) before the softmax (Gemma 2); 0 means none.
	SoftCap float32
}

// AdamWParams are the hyper-parameters of one optimizer step, as PyTorch's
// torch.optim.AdamW applies them (decoupled weight decay, bias correction).
type AdamWParams struct {
	LR, Beta1, Beta2, Eps, WeightDecay float32
	Step                               int // 1-based, for bias correction
	// GradScale multiplies every gradient element (in float32, rounded
	// before it is used) as the step reads it: gradient clipping's
	// coefficient, folded into the update instead of a pass of its own.
	// 0 means 1.
	GradScale float32
	// RoundSeed, when not 0, rounds the updated param to bfloat16
	// stochastically (RoundBF16Stochastic) with the random bits
	// StochasticBits(StepSeed(RoundSeed, Step), i) for element i: bf16
	// master weights. RoundSeed is the tensor's key, the same every step.
	// The param may then be BF16 (stored so) or F32 (holding bf16
	// values); a BF16 param without it is rounded to nearest. AdamWAll
	// takes each set's own AdamWSet.RoundSeed instead.
	RoundSeed uint64
}

// GradMultiplier is p.GradScale with 0 read as 1.
func (p AdamWParams) GradMultiplier() float32 {
	if p.GradScale == 0 {
		return 1
	}
	return p.GradScale
}

// Backend is the set of device operations the model code calls. Every op
// works on whole tensors; shapes are checked by the backend and a mismatch
// is an error naming the op. Unless said otherwise, outputs are overwritten.
// "accumulate" means +=.
type Backend interface {
	Name() string

	// Memory.
	Alloc(dt DType, shape ...int) (Tensor, error)
	// View is a window of t starting at element offset with the given
	// shape; it shares t's memory and must not outlive it.
	View(t Tensor, offset int, shape ...int) (Tensor, error)
	Free(t Tensor)
	Upload(dst Tensor, src []float32) error // converts to dst's dtype
	UploadInt32(dst Tensor, src []int32) error
	Download(src Tensor, dst []float32) error // converts from src's dtype
	Fill(t Tensor, v float32) error
	Copy(dst, src Tensor) error // same length; casts between float dtypes
	Sync() error

	// MatMul: c = alpha*op(a)@op(b) + beta*c on the 2-D views (Rows x Cols)
	// of the tensors; op transposes when the flag is set.
	MatMul(c, a, b Tensor, transA, transB bool, alpha, beta float32) error

	// AddScaled: dst += alpha*src (same length).
	AddScaled(dst, src Tensor, alpha float32) error
	// Scale: t *= s.
	Scale(t Tensor, s float32) error
	// AddBias: each row of out += bias.
	AddBias(out, bias Tensor) error
	// BiasBackward: dBias += column sums of dOut.
	BiasBackward(dBias, dOut Tensor) error
	// SumSquares returns the sum of squares of t, accumulated in float64.
	SumSquares(t Tensor) (float64, error)

	// Embedding: out[t] = table[ids[t]]. Backward: dTable[ids[t]] += dOut[t].
	Embedding(out, table, ids Tensor) error
	EmbeddingBackward(dTable, dOut, ids Tensor) error

	// RMSNorm: out = x * rstd * weight, rstd[row] = 1/sqrt(mean(x^2)+eps)
	// saved for backward. Backward: dx accumulate; dWeight accumulate, or
	// nil when the weight is frozen.
	RMSNorm(out, rstd, x, weight Tensor, eps float32) error
	RMSNormBackward(dx, dWeight, dOut, x, weight, rstd Tensor) error

	// RoPE rotates x [T, nHeads*headDim] in place, half-split layout as in
	// Hugging Face's rotate_half: pairs (i, i+headDim/2) turn by
	// positions[t]*invFreq[i], with cos/sin tables [maxPos, headDim/2].
	// inverse=true turns by the negative angle, which is the backward.
	RoPE(x, positions, cos, sin Tensor, nHeads, headDim int, inverse bool) error

	// Attention: causal, GQA, over packed sequences. q [T, NHeads*HeadDim],
	// k and v [T, NKVHeads*HeadDim], out like q, lse [NHeads, T] (f32,
	// log-sum-exp of the scaled scores, saved for backward).
	Attention(out, lse, q, k, v Tensor, seqs SeqLayout, p AttnParams) error
	// AttentionBackward overwrites dq, dk, dv.
	AttentionBackward(dq, dk, dv, dOut, q, k, v, out, lse Tensor, seqs SeqLayout, p AttnParams) error

	// SwiGLU: out = silu(gate)*up. Backward overwrites dGate and dUp.
	SwiGLU(out, gate, up Tensor) error
	SwiGLUBackward(dGate, dUp, dOut, gate, up Tensor) error

	// SoftmaxCrossEntropy reads logits [N, V] and labels [N] (I32, -100 is
	// ignored). It writes losses[n] = -log softmax(logits[n])[label] (0 when
	// ignored) and overwrites logits with gradScale*(softmax - onehot), 0 on
	// ignored rows: the gradient of gradScale*sum(losses).
	SoftmaxCrossEntropy(logits, labels, losses Tensor, gradScale float32) error

	// Dropout: out = x*keep/(1-p) where keep is a counter-based hash of
	// (seed, element index) >= p; calling it again with the same seed on
	// dOut gives the backward.
	Dropout(out, x Tensor, p float32, seed uint64) error

	// AdamW updates param (F32 master, or a bf16 one with p.RoundSeed)
	// in place from grad (times p.GradScale), m and v.
	AdamW(param, grad, m, v Tensor, p AdamWParams) error
}

// Closer is implemented by backends that hold resources (contexts, handles).
type Closer interface{ Close() error }

// MemoryReporter is implemented by backends that can tell their memory use.
type MemoryReporter interface {
	// PeakBytes is the most device memory held at once since start.
	PeakBytes() int64
	InUseBytes() int64
}

// PeakResetter is implemented by memory reporters whose peak can start
// again from the memory held now, so that one process measures the peaks
// of several workloads in turn (whet bench --model a,b).
type PeakResetter interface{ ResetPeak() }

// AdamWSet is one tensor's AdamW state for MultiAdamW. Out, when not nil,
// receives the updated Param in its own dtype (the compute copy of an fp32
// master, which SyncFromMasters would otherwise refresh).
type AdamWSet struct {
	Param, Grad, M, V, Out Tensor
	// RoundSeed is AdamWParams.RoundSeed for this set (0: none). A set
	// with a seed is a bf16 master, its own compute copy: Out is nil.
	RoundSeed uint64
}

// MultiAdamW is implemented by backends that step many tensors with the
// same hyper-parameters at once (one launch for hundreds of adapter
// tensors): the same result as AdamW on each set, then Copy(Out, Param).
type MultiAdamW interface {
	AdamWAll(sets []AdamWSet, p AdamWParams) error
}

// GradScaleFolder is implemented by backends that say whether their AdamW
// should be handed clipping's coefficient (AdamWParams.GradScale, one pass
// over the gradients fewer) or the gradients scaled first. Backends
// without it get the gradients scaled first. (The CUDA backend folds with
// its fused kernels, the default; WHET_CUDA_FUSED_ADAMW=0 turns them off.)
type GradScaleFolder interface {
	FoldsGradScale() bool
}

// SumSquaresOfAll is implemented by backends that can sum the squares of
// many tensors with one wait for the device (a gradient norm over hundreds
// of adapter tensors would otherwise wait once per tensor).
type SumSquaresOfAll interface {
	SumSquaresAll(ts []Tensor) (float64, error)
}

// FillOfAll is implemented by backends that can fill many tensors at once
// (zeroing every adapter gradient before a step with one launch).
type FillOfAll interface {
	FillAll(ts []Tensor, v float32) error
}

// ScaleOfAll is implemented by backends that can scale many tensors at
// once (clipping hundreds of adapter gradients with one launch).
type ScaleOfAll interface {
	ScaleAll(ts []Tensor, s float32) error
}

// CrossEntropyInto is implemented by backends whose cross-entropy can
// write the logits gradient into a separate tensor, of the compute dtype,
// instead of over float32 logits that then need a cast: the same losses
// and gradient as SoftmaxCrossEntropy, with grad [N, V] overwritten and
// logits left as they were.
type CrossEntropyInto interface {
	SoftmaxCrossEntropyInto(grad, logits, labels, losses Tensor, gradScale float32) error
}

// CappedCrossEntropy is implemented by backends that fuse Gemma 2's final
// logit soft-cap into the cross-entropy, so the LM head keeps no capped
// copy of its logits chunk and runs no separate cap passes. From raw
// logits x [N, V] it takes y = c*tanh(x/c), writes losses[n] =
// -log softmax(y[n])[label] (0 when ignored) and writes into grad the
// gradient of gradScale*sum(losses) with respect to x,
// gradScale*(softmax(y) - onehot)*(1 - (y/c)^2), 0 on ignored rows. grad
// is logits itself (in place) or a separate [N, V] tensor (the compute
// dtype), and then logits are left as they were. c > 0.
//
// FusedSoftCap says whether the decoder is to use it: a backend may keep
// it behind a switch (FusedSoftCapOn) until it has run on its device; the
// decoder then caps the logits with SoftCapper around the plain
// cross-entropy, keeping a capped [chunk, V] copy.
type CappedCrossEntropy interface {
	SoftmaxCrossEntropyCapped(grad, logits, labels, losses Tensor, gradScale, c float32) error
	FusedSoftCap() bool
}

// FusedSoftCapEnv set to 1 turns on the fused soft-capped cross-entropy on
// the CUDA backend (engine.CappedCrossEntropy), which stays opt-in until
// it has run on a GPU.
const FusedSoftCapEnv = "WHET_FUSED_SOFTCAP_CE"

// FusedSoftCapOn is the one rule for whether Gemma 2's final soft-cap is
// fused into the cross-entropy: always on the CPU backend (cpu true),
// elsewhere only with FusedSoftCapEnv=1. The backends' FusedSoftCap and
// the memory plan (which counts the capped copy otherwise) both ask it.
func FusedSoftCapOn(cpu bool) bool {
	return cpu || envswitch.On(FusedSoftCapEnv)
}

// KVAttention is decode-time attention over a key/value cache, for
// generation: q holds Tq queries of one sequence at positions
// qOffset..qOffset+Tq-1; k and v hold that sequence's first Tk =
// qOffset+Tq positions. Query i sees keys j <= qOffset+i (and within
// p.Window when set). Backends without it cannot generate with a cache.
type KVAttention interface {
	AttentionKV(out, q, k, v Tensor, qOffset int, p AttnParams) error
}

// GELUTanhGLU is the gated MLP of Gemma: out = gelu_tanh(gate)*up with
// transformers' gelu_pytorch_tanh, 0.5*g*(1+tanh(sqrt(2/pi)*(g+0.044715*g^3))).
// The backward overwrites dGate and dUp. Backends without it cannot run
// Gemma.
type GELUTanhGLU interface {
	GeGLU(out, gate, up Tensor) error
	GeGLUBackward(dGate, dUp, dOut, gate, up Tensor) error
}

// SoftCapper caps logits: SoftCap sets x = c*tanh(x/c) in place, and
// SoftCapBackward multiplies dx in place by the derivative, 1 - (y/c)^2,
// read from the capped values y (Gemma 2's final logits).
type SoftCapper interface {
	SoftCap(x Tensor, c float32) error
	SoftCapBackward(dx, y Tensor, c float32) error
}

// FusedNF4MatVecs is implemented by backends with fused one-row NF4
// products for decoding (DecodeFuseEnv, on NF4 weights): each does in one
// launch what the ops it names would do through NF4MatVec and NF4MatVecs,
// with the same result, and writes only its outputs. ok is false, with
// nothing done, when the backend cannot take these operands; the caller
// then runs the unfused ops.
type FusedNF4MatVecs interface {
	// MatVecNF4Add: y [1, n] = x [1, k] @ W^T + r [1, n], as Copy(y, r)
	// then MatVecNF4(y, x, packed, absmax, true).
	MatVecNF4Add(y, x, packed, absmax, r Tensor) (ok bool, err error)
	// MatVecNF4AddNorm: MatVecNF4Add, then what RMSNorm(h, rstd, y,
	// normW, eps) gives in h (rstd not written).
	MatVecNF4AddNorm(y, x, packed, absmax, r, h, normW Tensor, eps float32) (ok bool, err error)
	// MatVecsNF4SwiGLU: what MatVecsNF4([g, u], x, [packedG, packedU],
	// [absmaxG, absmaxU], false) and then SwiGLU(s, g, u) give in s; g and
	// u give the products' dtype and are not written.
	MatVecsNF4SwiGLU(s, g, u, x, packedG, absmaxG, packedU, absmaxU Tensor) (ok bool, err error)
}

// HeadArgmax is implemented by backends that fold the greedy choice into
// the LM head's one-row product (DecodeArgmaxEnv): MatVecArgmax does what
// MatMul(logits, h, w, false, true, 1, 0) and then DeviceDecoder.Argmax(ids,
// logits) give (logits [1, V] written, ids[0] the column of the largest,
// the lowest on ties, never a NaN over a number), in one launch. ok is
// false, with nothing done, when the backend cannot take these operands;
// the caller then runs the two ops.
type HeadArgmax interface {
	MatVecArgmax(ids, logits, h, w Tensor) (ok bool, err error)
}

// PartialRoPE is RoPE over the first rot = 2*Cols(cos) dimensions of each
// head, the rest passing through (Phi-4-mini's partial_rotary_factor):
// pairs (i, i+rot/2) turn. With rot = headDim it is RoPE.
type PartialRoPE interface {
	RoPEPartial(x, positions, cos, sin Tensor, nHeads, headDim int, inverse bool) error
}

// DeviceDecoder is implemented by backends that decode one token at a time
// with the position kept in device memory (an I32 tensor of one element,
// pos), so that a decoding step needs nothing from the host and the same
// sequence of ops serves every position (StepRecorder can then record it
// once and replay it). pos is read by the device when the op runs.
type DeviceDecoder interface {
	// AttentionDecode is the attention of one new token at position
	// p = pos[0]: q [1, NHeads*HeadDim] and k [1, NKVHeads*HeadDim] turned
	// by RoPEPartial's rotation at p (the first 2*Cols(cos) dims of each
	// head, tables [maxPos, Cols]), the turned k and v stored in row p of
	// kCache and vCache ([rows, NKVHeads*HeadDim]), then AttentionKV of the
	// turned q over cache rows 0..p into out (overwritten). q, k and v are
	// left as they were. One op instead of five keeps a decoding step
	// short.
	AttentionDecode(out, q, k, v, kCache, vCache, pos, cos, sin Tensor, p AttnParams) error
	// Argmax writes into ids[0] (I32) the column of the largest value of
	// logits [1, V], the lowest one on ties (as Sample's greedy choice).
	Argmax(ids, logits Tensor) error
	// AdvancePosition adds 1 to pos[0] while the result stays below limit.
	AdvancePosition(pos Tensor, limit int) error
}

// StepRecorder is implemented by backends that can record the ops f
// queues (a CUDA graph) and replay them later at a fraction of the
// launch cost. The recorded ops read and write the same tensors on every
// replay; values that change from one replay to the next must live in
// device memory (DeviceDecoder). Ops that need the host (reading a tensor
// back, taking scratch memory) fail while recording.
type StepRecorder interface {
	Record(f func() error) (Recording, error)
}

// Recording is a recorded sequence of ops.
type Recording interface {
	Replay() error
	Free()
}

// NF4MatVec is implemented by backends that multiply one row by an NF4
// weight without expanding it: y [1, out] = x [1, in] @ W^T (+ y when
// accumulate), W [out, in] held as NF4 codes and absmax as QuantState
// keeps them. Decoding reads each weight once per token, so this reads a
// quarter of the bytes of the expanded bf16 weight (and never writes it).
type NF4MatVec interface {
	MatVecNF4(y, x, packed, absmax Tensor, accumulate bool) error
}

// HostOffloader is implemented by a backend that can keep tensors in host
// memory (page-locked on a GPU, so the copies run asynchronously) and copy
// to and from it while compute goes on. The decoder uses it to move
// activation checkpoints out of device memory (train.offload_checkpoints,
// see OffloadCheckpoints).
//
// Ordering contract: a copy starts only once every op queued before it
// has finished (so it reads or overwrites what that work left), runs
// alongside the ops queued after it, and is guaranteed finished only for
// ops queued after an AwaitCopies of its device tensor. Copies run in the
// order they were queued. A backend may run them at any moment inside
// that window: the CPU backend runs each at the latest one, so a missing
// AwaitCopies changes results there instead of only racing on a GPU.
type HostOffloader interface {
	// AllocHost returns a host tensor whose contents are undefined until
	// a copy writes them (pinning tens of GB is slow enough without
	// clearing them). It is not a device tensor: only the copies below
	// and FreeHost take it.
	AllocHost(dt DType, shape ...int) (Tensor, error)
	// FreeHost releases a tensor from AllocHost (waiting for its copies).
	FreeHost(t Tensor)
	// CopyToHost queues a copy of device tensor src into the first
	// src.Len() elements of host tensor dst (same dtype).
	CopyToHost(dst, src Tensor) error
	// CopyFromHost queues a copy of the first dst.Len() elements of host
	// tensor src into device tensor dst (same dtype).
	CopyFromHost(dst, src Tensor) error
	// AwaitCopies makes every op queued after it wait for the copies
	// queued so far to or from the memory of device tensor t.
	AwaitCopies(t Tensor) error
	// HostBytes is the host memory AllocHost holds now.
	HostBytes() int64
	// OffloadSavesDevice is false where host memory and device memory are
	// one (the CPU backend): offloading works there but saves nothing, so
	// the automatic choice never takes it.
	OffloadSavesDevice() bool
}

// MatVecs is implemented by backends that multiply one row by several
// weights that share it (q, k and v; gate and up) in one launch:
// ys[i] [1, n_i] = x [1, k] @ ws[i]^T, added to ys[i] when accumulate. ok
// is false, with nothing done, when the backend cannot take these operands
// (the caller then multiplies them one by one).
type MatVecs interface {
	MatVecs(ys []Tensor, x Tensor, ws []Tensor, accumulate bool) (ok bool, err error)
}

// FusedMatVecs is implemented by backends with fused one-row products for
// decoding (DecodeFuseEnv): each does in one launch what the ops it names
// would do, with the same result, and writes only its outputs. ok is false,
// with nothing done, when the backend cannot take these operands; the
// caller then runs the unfused ops.
type FusedMatVecs interface {
	// MatVecAdd: y [1, n] = x [1, k] @ w^T + r [1, n], as Copy(y, r) then
	// MatMul(y, x, w, false, true, 1, 1).
	MatVecAdd(y, x, w, r Tensor) (ok bool, err error)
	// MatVecsNorm: what RMSNorm(h, rstd, x, normW, eps) (x [1, k]) and
	// then MatVecs(ys, h, ws, false) give in ys; h, the buffer RMSNorm
	// would write, gives the norm's dtype and is not written, nor is rstd
	// saved.
	MatVecsNorm(ys []Tensor, h, x, normW Tensor, eps float32, ws []Tensor) (ok bool, err error)
	// MatVecSwiGLUAdd: what SwiGLU(s, g, u) and then MatVecAdd(y, s, w, r)
	// give in y; s gives the activation's dtype and is not written.
	MatVecSwiGLUAdd(y, s, g, u, w, r Tensor) (ok bool, err error)
}
