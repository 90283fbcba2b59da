// Package cuda is whet's GPU backend: engine.Backend on NVIDIA GPUs with
// bf16 weights and activations, float32 accumulation, and fp32 optimizer
// state, bound to the NVIDIA libraries at run time.
//
// # Binding without a toolkit
//
// Nothing from NVIDIA is needed to build: libcuda.so.1 (driver API),
// libnvrtc.so.13 or .12 and libcublasLt.so.13 or .12 are opened with
// dlopen through github.com/ebitengine/purego, so CGO_ENABLED=0 builds
// work and the same binary runs on machines without a GPU, where New
// returns an error wrapping ErrNoGPU that lists the names and folders it
// tried (the loader's path, CUDA_HOME, /usr/local/cuda*, the driver's
// usual homes, and the lib folders of pip's nvidia-* wheels in every
// site-packages it finds). Every library call's status is checked and
// returned as an *Error naming the call and, where it happened inside an
// op, the op and its sizes (kernel launches also name the kernel, grid,
// block and shared memory).
//
// # Threading
//
// Each exported method takes the backend's mutex, locks the goroutine to
// its OS thread and makes the context current before any CUDA call (see
// Backend). One stream carries all work; ops return once their work is
// queued, and Sync, Download and SumSquares wait for it.
// Options.SyncEachOp (or WHET_CUDA_SYNC=1) waits after every launch so that
// an asynchronous fault is blamed on the op that caused it.
//
// # Decoding
//
// The default (WHET_DECODE=graph; GPU-tested on an H100, 2026-12-07): with
// WHET_DECODE=device, batch-1 generation (engine.Generator) decodes with
// the token, its position and the cache length in device memory
// (engine.DeviceDecoder, kernels/decode.cu: attention_decode, which turns q
// and the new k, stores k and v and attends split over keys; argmax;
// advance_position), so a step reads back only the chosen id; with
// WHET_DECODE=graph, Record captures one such step into a CUDA graph
// (cuStreamBeginCapture on the backend's stream, cuGraphInstantiateWithFlags)
// and the generator replays it for every token with one cuGraphLaunch
// instead of about 17 launches per layer, each paying Go, purego and
// driver overhead. While capturing, ops that would wait for the device,
// move data to or from the host or take scratch memory fail (the
// generator then runs the step directly), and same-dtype copies go onto
// the stream instead of the legacy stream. NF4 weights multiply one row
// straight from their codes (MatVecNF4, kernels/nf4.cu) on those paths.
// One-row bf16 products go to kernels/gemv.cu instead of cuBLASLt and
// MatVecs does q, k, v (and gate, up) in one launch, unless WHET_CUDA_GEMV=0
// (or SetGEMV(false)). WHET_DECODE=plain is the path before all of this.
//
// # Kernels
//
// The kernels are the CUDA C files of package kernels, one layer per file.
// NVRTC compiles each file on first use for the device's exact
// architecture (sm_90 on H100 and H200) and the cubin is cached on disk
// under $XDG_CACHE_HOME/whet/kernels (else ~/.cache/whet/kernels), keyed
// by a hash of the source, its headers, the architecture, the NVRTC
// version and the compile options. On a cold cache that takes a minute or
// so; WHET_CUDA_PRECOMPILE=1 (Options.Precompile; opt-in until it has run
// on a GPU, tools/gpu/precompile) compiles every missing file in parallel
// in the background as the backend opens, and engine.ReportKernelCompiles
// shows its progress (precompile.go). Kernels take every tensor with its
// dtype, so any mix of bf16 and f32 inputs and outputs works.
//
// Attention with bf16 q, k, v (and dOut) and a head dim that is a multiple
// of 16 up to 128 runs on the tensor cores (mma.sync m16n8k16, bf16 in,
// float32 accumulate, FlashAttention-2 style tiles and online softmax);
// other dtypes and head dims (up to 256) take float32 kernels with the
// same contract.
//
// MatMul goes to cuBLASLt (bf16 operands with a bf16 or f32 result on the
// tensor cores; f32 x f32 in full float32). Other operand mixes are
// widened to f32 in scratch, and views that start at an address not
// 16-byte aligned are copied to aligned scratch first. The row-major
// product is run as the column-major product of the transposes, by
// swapping the operands. Descriptors and the heuristic's choice of
// algorithm are cached per shape.
//
// # Architectures
//
// The backend runs on sm_80 and newer: Ampere (A100 sm_80, RTX 30 sm_86),
// Ada (RTX 40 sm_89), Hopper (H100/H200 sm_90), Blackwell (B200 sm_100,
// RTX 50 and RTX PRO sm_120, DGX Spark's GB10 sm_121). An older card is
// refused by New with one message wrapping ErrUnsupportedArch (the
// kernels' bf16 tensor-core products and bf16 arithmetic need Ampere);
// WHET_CUDA_ARCH=sm_75 makes any device stand in for such a card, to
// test that message (TestOldGPURefused on a GPU; TestOldGPURefusedByFakeDriver
// through New with a fake libcuda built from testdata, without one). NVRTC must know the device's architecture (CUDA 12.8
// for sm_100 and sm_120, 12.9 for sm_121): New says so when it does not.
// The rules live in nvrtc.go; TestKernelsCompileForEveryArch compiles
// every kernel for every one of them, which NVRTC does without such a card.
//
// By default no Hopper-only instruction runs: no wgmma, no TMA
// (cp.async.bulk), no clusters. Every tensor-core product is mma.sync
// m16n8k16, which all of the architectures above run, so one source serves
// them all and the cubin is compiled for the device's own architecture.
// The one exception: kernels/attention_hopper.cu (training attention on
// wgmma at head dims 64 and 128, the default on sm_90 since 2026-12-07;
// Options.MMASyncAttention or WHET_ATTN_HOPPER=0 turn it off) is compiled for sm_90a on sm_90 devices (fileArch)
// and falls back to the mma.sync kernels, saying why, if that fails. A kernel that adds
// wgmma must put it under #if defined(__CUDA_ARCH_FEAT_SM90_ALL) and the
// backend must then compile for sm_90a on sm_90 devices (wgmma exists on
// no other architecture, not even Blackwell); TMA and clusters go under
// __CUDA_ARCH__ >= 900, with the mma.sync path in the #else branch.
// TestHopperOnlyInstructionsAreGated holds the sources to that in CI.
//
// # Memory
//
// Tensors are plain device allocations (cuMemAlloc, never managed memory),
// zeroed at Alloc. InUseBytes and PeakBytes (engine.MemoryReporter) count
// every byte the backend holds: tensors, the 32 MiB cuBLASLt workspace and
// scratch. Out of memory is returned as an error naming the op, the shape
// and size asked for and the device's free memory (IsOutOfMemory reports
// it); the failed op frees what it took and the backend stays usable.
// Close (engine.Closer) frees everything.
//
// Ids, labels and positions are checked against their tables before an op
// writes anything, as engine/cpu does. Values the host uploaded are checked
// from bounds recorded at upload, so the check costs nothing on the
// device; ids that reached their tensor some other way (a device copy)
// are read back, which waits for the device.
//
// # What works
//
// Every op of engine.Backend, plus engine.KVAttention (decoding over a
// cache), engine.ComputeDTyper (bf16) and DequantizeNF4 (QLoRA), passes
// the shared conformance suite (engine/backendtest) against engine/cpu
// with bf16 activations and with f32 activations, on an H200 (CUDA 13.0
// driver 580, NVRTC 13.0, cuBLASLt 13.1); see cuda_test.go for the tests
// that run there and skip elsewhere.
//
// # The 2025 families (Qwen3, Gemma 3, Gemma 2, Phi-3/Phi-4-mini)
//
// Their ops are here: the GELU-tanh gated MLP (engine.GELUTanhGLU,
// kernels/geglu.cu), the final-logit soft-cap (engine.SoftCapper,
// kernels/softcap.cu; training runs it around the cross-entropy, or, with
// WHET_FUSED_SOFTCAP_CE=1, inside it: engine.CappedCrossEntropy,
// softmax_cross_entropy_capped in kernels/crossentropy.cu, not yet run on
// a GPU), partial rotary embedding (engine.PartialRoPE, the
// rot argument of kernels/rope.cu), and in every attention kernel (float32
// and tensor-core; forward, both backward kernels, and AttentionKV) the
// sliding window and Gemma 2's attention-score soft-cap (softcap * tanh,
// its derivative applied to dS). Per-head q/k RMSNorm and Gemma's
// embedding scale run on the existing RMSNorm and Scale kernels (the
// decoder views q as [T*heads, headDim]). Head dim 256 (Gemma 2 and
// Gemma 3 1B and up) has no tensor-core instantiation and takes the
// float32 attention kernels: right, but slow.
//
// Checked on the development machine (no GPU): every .cu compiles with
// nvcc 11.8 for sm_90, the launch sites match the kernels' signatures
// (launchargs_test.go), and the shared conformance suite's new cases
// (windows shorter and longer than the sequences, soft-caps on both
// attention paths and at head dim 256, QKNorm, GeGLU, SoftCap,
// RoPEPartial) pass on engine/cpu and catch a backend that ignores the
// soft-cap. Run on an H100 80GB (driver 580, CUDA 13.0), first run
// (docs/bench/cuda-families.log): TestConformance and TestConformanceF32
// with all those cases, TestAttentionMatchesCPU's Gemma 2 shapes,
// TestFamilyTrainingMatchesCPU (LoRA on all four families and full
// fine-tuning on Qwen3 and Gemma 2: every one of 50 steps within 0.37 of
// the 1% bound of the CPU's loss) and greedy generation of Qwen3, Gemma 3
// and Gemma 2 (float32 token for token; bf16 all 40 tokens equal) passed.
// Phi-3 generated the CPU's tokens exactly in float32; in bf16 it parted
// at token 4 where the CPU's margin was 0.14 on a logit of 5.37 (more than
// the first rule of 4 bf16 steps allowed); the test now measures the two
// backends' logit difference there and judges the margin against it, a
// rule that has not run on a GPU. That parting is the tensor-core
// kernels' documented numerics, not a fault: engine/cpu holding the same
// model in bf16 (weights and every activation rounded) keeps all 40 CPU
// tokens, but with attention's unnormalised probabilities also rounded
// to bf16 before P V (as attention.cu's tensor-core kernels do, the sum
// taken unrounded) it produces exactly the GPU's 40 bf16 tokens, the
// parting at token 4 included (now in the tests as pRoundCPU,
// engine/cuda/bf16emu_test.go). On the next H100 run (2026-12-07) the
// parting passed the near-tie rule but the logit difference there, 0.2407
// on a largest logit of 5.374 (4.5%), failed the fixed 3% bound. That is
// the model, not the kernels: with float32 arithmetic and only its weights
// rounded to bf16 the same phi3 model's logits there move by 0.160 (3.0%),
// with the GPU's rounding points emulated on the CPU by 0.201 (3.7%),
// mostly from layer 0's input (its embeddings and attention norm rounded
// alone give 0.064 and 0.071); over all 48 positions that emulation
// reaches 3.7% for phi3 and 3.3% for gemma2 (qwen3 2.0%, gemma3 1.7%).
// Nothing Phi-3 alone uses rounds twice: the fused projections are views
// of one product's output, rope.cu turns bf16 q and k by float32 tables
// (LongRoPE's factors and attention factor in them) and rounds once, and
// the KV cache copies bf16 k and v unchanged. The bf16 bound is now the
// model's own (compareGreedy: 3% or twice the emulated error, at the
// measured point and at every position); that rule, comparePositions and
// the transformers bf16 comparison of the same models (WHET_FAMILY_DUMP
// with the coordinator's .dev/gpu/phi3bf16/run.sh and hf_bf16.py) have
// not run on a GPU yet: the device was refused for the rest of that
// session. Never run on a GPU (no
// device time was left for a second run): TestReferenceOnGPU (the
// transformers-built tiny models in bf16 against transformers), the
// families' DPO reference, TestTrainingMatchesCPU's lora_<family> and
// full_gemma3 cases through the real folders, and the folders' greedy
// generation in TestFamilyGenerateMatchesCPU.
//
// # What does not, yet
//
//   - Speed beyond correctness (measured on an H200 with the benchmarks in
//     bench_test.go, 10 iterations each). cuBLASLt's GEMM runs at the
//     card's rate (about 790-800 TFLOP/s bf16 at 8192³). Attention at
//     Llama-3.2-1B's geometry (4 x 2048 tokens, 32/8 heads, dim 64) runs
//     at about 15 TFLOP/s forward and 18 backward on the tensor-core path
//     (3 on the float32 one), against several hundred for FlashAttention:
//     its global loads are 2 bytes per thread, nothing is pipelined
//     (no cp.async or bulk copies), B fragments of transposed operands
//     are built from 16-bit shared loads rather than ldmatrix.trans, and
//     it does not use Hopper's wgmma. The elementwise kernels read and
//     write one element per thread through a dtype switch rather than
//     16-byte vectors. RMSNorm reaches about 760 GB/s and cross-entropy
//     about 1.26 TB/s, against about 4.3 TB/s for a copy.
//   - Head dims above 256 (attention returns engine.ErrNotImplemented).
//   - EmbeddingBackward into a bf16 table rounds after each token's add
//     (atomics); a float32 table, as training uses, is exact up to order.
//   - cuMemFree waits for the device, so ops that need scratch only for
//     unusual inputs (mixed-dtype or misaligned MatMul) synchronise;
//     attention's backward reuses a scratch buffer held until Close.
//   - One device per backend; no multi-GPU.
package cuda
