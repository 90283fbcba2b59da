package memplan

import (
	"fmt"
	"strings"

	"whet/engine"
)

// Method is a training method.
type Method string

const (
	LoRA  Method = "lora"
	QLoRA Method = "qlora"
	Full  Method = "full"
	DPO   Method = "dpo"
	GRPO  Method = "grpo"
)

// ParseMethod accepts lora, qlora, full, dpo or grpo (any case).
func ParseMethod(s string) (Method, error) {
	m := Method(strings.ToLower(strings.TrimSpace(s)))
	switch m {
	case LoRA, QLoRA, Full, DPO, GRPO:
		return m, nil
	}
	return "", fmt.Errorf("memplan: unknown method %q (want lora, qlora, full, dpo or grpo)", s)
}

// Backend says where the run executes; the CPU backend has no CUDA
// context and no cuBLASLt workspace.
type Backend string

const (
	BackendCUDA Backend = "cuda"
	BackendCPU  Backend = "cpu"
)

// Options describe the run being planned. The zero value of each field
// takes the default noted beside it, except SeqLen, which is required.
type Options struct {
	Method Method // lora (default), qlora, full or dpo
	// DPOBase is how the DPO policy is trained: lora (default), qlora or
	// full. With adapters the reference model is the base with the adapter
	// disabled. With full fine-tuning the engine caches the reference
	// log-probs before training; DPOResidentReference instead plans a
	// frozen copy of the weights kept on the device.
	DPOBase              Method
	DPOResidentReference bool
	// GRPOBase is how the GRPO policy is trained: lora (default) or full
	// (then with beta 0: no reference). GenerationTokens is what each of
	// the generator's GenerationLanes KV caches holds (default 1 lane): the
	// longest prompt plus max_completion_length; GRPO samples a prompt's
	// num_generations completions together, one lane each.
	GRPOBase         Method
	GenerationTokens int
	GenerationLanes  int
	MicroBatch       int // sequences per micro-batch (default 1); DPO: preference pairs
	// GradAccum is the number of micro-batches per optimizer step (default
	// 1). It does not change memory; the advice keeps MicroBatch·GradAccum
	// constant when it shrinks the micro-batch.
	GradAccum int
	SeqLen    int // tokens per sequence (the maximum length), required
	// LoRARank is r (default 16); LoRATargets the adapted projections,
	// short or PEFT names (default all seven).
	LoRARank    int
	LoRATargets []string
	// LoRADropout is lora.dropout: above 0 the engine keeps a buffer for
	// the dropped adapter inputs (engine.DropoutScratch).
	LoRADropout   float64
	Checkpointing bool // keep only layer inputs, recompute the rest in backward
	// OffloadCheckpoints is train.offload_checkpoints: with checkpointing,
	// "on" plans the layer inputs in pinned host memory (all but
	// engine.OffloadSlots of them), "off" and "auto" on the device. Plan
	// does not know the memory available; ResolveOffload decides "auto"
	// with engine.OffloadCheckpoints and returns the options with "on" or
	// "off". Empty: off, as the engine's default.
	OffloadCheckpoints string
	// WeightDType is the compute dtype of weights and activations: BF16
	// (default, the GPU path) or F32 (the CPU reference backend).
	WeightDType DType
	// OptimizerBits is the AdamW state precision; only 32 is implemented.
	OptimizerBits int
	// LogitsChunk is the number of tokens whose logits exist at once
	// (0: the engine's rule, engine.LogitsChunk; the run config's
	// train.logits_chunk).
	LogitsChunk int
	// MLPChunk is the rows the MLP runs at once (0: the engine's rule,
	// engine.MLPRowChunk); below the tokens, the [tokens, I] buffers
	// become [MLPChunk, I] ones.
	MLPChunk int
	// DoubleQuant quantizes the NF4 absmax scales to 8 bits (QLoRA's
	// double quantization). engine/nf4.go keeps fp32 absmax, so the qlora
	// preset and the advice leave it off; it plans the bitsandbytes
	// layout for when the engine has it.
	DoubleQuant bool
	Backend     Backend // cuda (default) or cpu
	// BF16Masters plans train.master_weights: bf16 (engine/masters.go):
	// the compute copy of each trained weight is its master, so no fp32
	// masters are planned.
	BF16Masters bool
	// GPUs is the data-parallel rank count the plan is per GPU for (0 or
	// 1: one GPU). Each GPU holds the whole model and activations; full
	// fine-tuning shards the fp32 masters and AdamW moments across the
	// GPUs (docs/multi-gpu.md), so each holds 1/GPUs of them.
	GPUs int
	// Attention is the CUDA target's attention kernels (engine.AttnKernels:
	// the device's architecture and the switches that choose its kernels;
	// engine/cuda's Backend.AttnKernels for a backend at hand,
	// cuda.AttnKernelsFor for a detected device or a GPU profile). Where
	// it takes the fused Hopper backward (sm_90, head dim 64 or 128, bf16,
	// not deterministic) the plan adds its fp32 dq accumulator to the
	// attention workspace. The zero value knows no device: no accumulator.
	// FromRunConfig sets Deterministic from train.deterministic.
	Attention engine.AttnKernels
}

// Base is the way the weights are trained: the method itself, or for DPO
// its DPOBase.
func (o Options) Base() Method {
	switch o.Method {
	case DPO:
		return o.DPOBase
	case GRPO:
		return o.GRPOBase
	}
	return o.Method
}

// resolve fills defaults and checks the options.
func (o Options) resolve() (Options, error) {
	if o.Method == "" {
		o.Method = LoRA
	}
	if _, err := ParseMethod(string(o.Method)); err != nil {
		return o, err
	}
	if o.Method == GRPO {
		if o.GRPOBase == "" {
			o.GRPOBase = LoRA
		}
		if o.GRPOBase != LoRA && o.GRPOBase != Full {
			return o, fmt.Errorf("memplan: GRPO base %q: want lora or full", o.GRPOBase)
		}
	}
	if o.GenerationTokens < 0 {
		return o, fmt.Errorf("memplan: generation tokens %d, want >= 0", o.GenerationTokens)
	}
	if o.Method == DPO {
		if o.DPOBase == "" {
			o.DPOBase = LoRA
		}
		if o.DPOBase != LoRA && o.DPOBase != QLoRA && o.DPOBase != Full {
			return o, fmt.Errorf("memplan: DPO base %q: want lora, qlora or full", o.DPOBase)
		}
	} else {
		o.DPOBase = ""
	}
	if o.Base() != Full {
		o.DPOResidentReference = false
	}
	if o.MicroBatch == 0 {
		o.MicroBatch = 1
	}
	if o.GradAccum == 0 {
		o.GradAccum = 1
	}
	if o.GPUs < 0 {
		return o, fmt.Errorf("memplan: %d GPUs", o.GPUs)
	}
	if o.MicroBatch < 0 || o.GradAccum < 0 {
		return o, fmt.Errorf("memplan: micro-batch %d and gradient accumulation %d must be positive", o.MicroBatch, o.GradAccum)
	}
	if o.SeqLen <= 0 {
		return o, fmt.Errorf("memplan: sequence length %d, want > 0", o.SeqLen)
	}
	if b := o.Base(); b == LoRA || b == QLoRA {
		if o.LoRARank == 0 {
			o.LoRARank = 16
		}
		if o.LoRARank < 0 {
			return o, fmt.Errorf("memplan: LoRA rank %d, want > 0", o.LoRARank)
		}
		targets := o.LoRATargets
		if len(targets) == 0 {
			targets = AllTargets
		}
		norm, err := NormalizeTargets(targets)
		if err != nil {
			return o, err
		}
		o.LoRATargets = norm
	} else {
		o.LoRARank, o.LoRATargets, o.LoRADropout = 0, nil, 0
	}
	if o.Base() != QLoRA {
		o.DoubleQuant = false
	}
	if o.WeightDType != BF16 && o.WeightDType != F32 {
		return o, fmt.Errorf("memplan: weight dtype %v: want bf16 or f32", o.WeightDType)
	}
	if o.OptimizerBits == 0 {
		o.OptimizerBits = 32
	}
	if o.OptimizerBits != 32 {
		return o, fmt.Errorf("memplan: %d-bit optimizer states are not implemented (only 32)", o.OptimizerBits)
	}
	if o.LogitsChunk < 0 {
		return o, fmt.Errorf("memplan: logits chunk %d, want > 0", o.LogitsChunk)
	}
	if o.Backend == "" {
		o.Backend = BackendCUDA
	}
	mode, err := engine.ParseOffloadMode(o.OffloadCheckpoints)
	if err != nil {
		return o, fmt.Errorf("memplan: %w", err)
	}
	if o.Backend != BackendCUDA && o.Backend != BackendCPU {
		return o, fmt.Errorf("memplan: backend %q: want cuda or cpu", o.Backend)
	}
	o.OffloadCheckpoints = mode
	return o, nil
}

// FromRunConfig derives the plan options from a run's configuration, so
// the fit check and the trainer plan the same run. A DPO run trains every
// weight when dpo.full_weights is set, LoRA adapters otherwise. Backend
// "cpu" plans the float32 CPU backend; "auto" and "cuda" plan the GPU path.
func FromRunConfig(rc *engine.RunConfig) (Options, error) {
	m, err := ParseMethod(rc.Method)
	if err != nil {
		return Options{}, fmt.Errorf("memplan: run config method: %w", err)
	}
	o := Options{
		Method:             m,
		MicroBatch:         rc.Train.MicroBatch,
		GradAccum:          rc.Train.GradAccum,
		SeqLen:             rc.Data.MaxLength,
		LoRARank:           rc.LoRA.Rank,
		LoRATargets:        rc.LoRA.TargetModules,
		LoRADropout:        rc.LoRA.Dropout,
		Checkpointing:      rc.Train.Checkpointing,
		MLPChunk:           rc.Train.MLPChunk,
		LogitsChunk:        rc.Train.LogitsChunk,
		OffloadCheckpoints: rc.Train.OffloadCheckpoints,
		DoubleQuant:        false, // engine/nf4.go keeps fp32 absmax
		GPUs:               rc.Parallel.PlannedRanks(),
		Attention:          engine.AttnKernels{Deterministic: rc.Train.Deterministic},
	}
	if o.BF16Masters, err = engine.MasterWeights(rc.Train.MasterWeights); err != nil {
		return Options{}, fmt.Errorf("memplan: run config: %w", err)
	}
	if m == DPO {
		o.DPOBase = LoRA
		if rc.DPO.FullWeights {
			o.DPOBase = Full
		}
	}
	if m == GRPO {
		// A training sequence is a prompt (up to data.max_length) and its
		// completion; the generator caches keys and values for as many.
		o.GRPOBase = LoRA
		if rc.GRPO.FullWeights {
			o.GRPOBase = Full
		}
		o.SeqLen = rc.Data.MaxLength + rc.GRPO.MaxCompletionLength
		o.GenerationTokens, o.GenerationLanes = o.SeqLen, max(1, rc.GRPO.NumGenerations)
	}
	switch rc.Backend {
	case "", "auto", "cuda":
		o.Backend = BackendCUDA
	case "cpu":
		o.Backend, o.WeightDType = BackendCPU, F32
	default:
		return Options{}, fmt.Errorf("memplan: run config backend %q: want auto, cpu or cuda", rc.Backend)
	}
	return o.resolve()
}

// offload reports whether the plan puts the checkpoints in host memory.
func (o Options) offload() bool {
	return o.Checkpointing && o.OffloadCheckpoints == engine.OffloadOn
}

// ResolveOffload decides OffloadCheckpoints "auto" for a device with
// available bytes by the engine's rule (engine.OffloadCheckpoints): on
// when the plan with the checkpoints on the device does not fit (never on
// the CPU backend). The returned options say "on" or "off".
func ResolveOffload(cfg *engine.ModelConfig, opts Options, available int64) (Options, error) {
	o, err := opts.resolve()
	if err != nil {
		return opts, err
	}
	if o.OffloadCheckpoints != engine.OffloadAuto {
		return o, nil
	}
	o.OffloadCheckpoints = engine.OffloadOff
	if !o.Checkpointing || o.Backend == BackendCPU {
		// The CPU backend's host memory is its device memory: offloading
		// saves nothing there (engine.HostOffloader.OffloadSavesDevice).
		return o, nil
	}
	kept, err := Plan(cfg, o)
	if err != nil {
		return opts, err
	}
	if engine.OffloadCheckpoints(engine.OffloadAuto, true, kept.Peak(), available) {
		o.OffloadCheckpoints = engine.OffloadOn
	}
	return o, nil
}

// ForVisionEngine returns o as the engine of a vision model of kind
// (engine.VisionGemma3, engine.VisionMllama) runs it on o.Backend: in its
// compute dtype (engine.VisionComputeDType). Both engines honour
// train.checkpointing (Mllama's since its per-layer recompute; PlanMllama
// counts it within 3 % of the CPU engine), so o.Checkpointing stays. notes
// says what differs from o, for the user; empty when nothing does.
func ForVisionEngine(kind string, o Options) (Options, []string) {
	var notes []string
	backend := string(o.Backend)
	if backend == "" {
		backend = string(BackendCUDA)
	}
	what := "Gemma 3 vision"
	if kind == engine.VisionMllama {
		what = "Llama 3.2 Vision"
	}
	if dt := EngineDType(engine.VisionComputeDType(kind, backend)); dt != o.WeightDType {
		notes = append(notes, fmt.Sprintf("planned in %s, as whet's %s engine computes on %s (not %s)", dt, what, backend, o.WeightDType))
		o.WeightDType = dt
	}
	return o, notes
}
