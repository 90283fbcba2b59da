package engine

import (
	"time"

	"whet/datasets"
)

// RunConfig describes a training run completely. The wizard builds it,
// `whet train -c run.yaml` reads it, and the run directory keeps a copy.
type RunConfig struct {
	// The run's folder under runs_dir; a run file naming an existing run resumes
	// it from its newest checkpoint. Empty: run-DATE-TIME, or the next free
	// run-DATE-TIME-2, -3… where a run of that second has the folder.
	Name string `yaml:"name"`
	// The base model: a Hugging Face model folder (config.json, safetensors,
	// tokenizer), relative to the run file, or a Hub id (ORG/NAME).
	Model string `yaml:"model"`
	// What is trained: lora | qlora (LoRA over NF4-quantized weights) | full
	// (every weight) | dpo (preference pairs, see dpo) | grpo (reinforcement
	// learning from reward functions, see grpo).
	Method string `yaml:"method"`
	// Where it runs: auto (CUDA when an NVIDIA GPU is usable, else the CPU) | cpu
	// | cuda.
	Backend string `yaml:"backend"`
	// The folder that holds the run directories, read against the working folder.
	// Empty: runs (where whet runs, whet attach and the studio look).
	RunsDir string `yaml:"runs_dir,omitempty"`

	LoRA  LoRAConfig  `yaml:"lora,omitempty"`
	Data  DataConfig  `yaml:"data"`
	Train TrainConfig `yaml:"train"`
	// DPO holds preference-tuning settings (method dpo).
	DPO DPOConfig `yaml:"dpo,omitempty"`
	// GRPO holds reinforcement-learning settings (method grpo).
	GRPO GRPOConfig `yaml:"grpo,omitempty"`
	// Parallel spreads the run over several GPUs (or CPU ranks) with data
	// parallelism; empty: one.
	Parallel ParallelConfig `yaml:"parallel,omitempty"`

	// ResumeAnyway resumes a run folder whose checkpoints were made with
	// other data, model or settings instead of refusing (whet train
	// --resume-anyway). It is a choice for one start, never saved.
	ResumeAnyway bool `yaml:"-"`
	// FitMaxLength: the run file left data.max_length out, so the run
	// takes the method's default fitted to the model (MaxLengthFor), as
	// the studio does; Prepare applies it once the model is known. Never
	// saved: the run folder's run.yaml records the length used.
	FitMaxLength bool `yaml:"-"`
}

// LoRAConfig sets the adapters (PEFT's meaning for each field).
type LoRAConfig struct {
	// The adapters' rank r.
	Rank int `yaml:"r"`
	// The scale numerator: updates are scaled by alpha/r (alpha/√r with
	// use_rslora).
	Alpha float64 `yaml:"alpha"`
	// The dropout rate on the adapters' input while training, in [0, 1).
	Dropout float64 `yaml:"dropout"`
	// The projections that get adapters, among q,k,v,o,gate,up,down (or q_proj,
	// …). Empty: all seven.
	TargetModules []string `yaml:"target_modules"`
	// Rank-stabilised LoRA: scale by alpha/√r instead of alpha/r.
	RSLoRA bool `yaml:"use_rslora"`
	// Projector also puts an adapter on a vision model's multimodal
	// projector (Unsloth's projector LoRA) when the run trains on images;
	// the vision tower itself stays frozen.
	Projector bool `yaml:"projector,omitempty"`
	// VisionLayers also puts adapters on the vision tower's linear layers
	// (Unsloth's finetune_vision_layers: attention q/k/v/out_proj and the
	// MLP's fc1/fc2 of every encoder layer; Gemma 3 only for now) when the
	// run trains on images; the tower's own weights stay frozen.
	VisionLayers bool `yaml:"vision_layers,omitempty"`
}

// DataConfig says where the data is and how to turn it into tokens. It is
// the data pipeline's own options type, so a data setting is declared
// once (its yaml keys are datasets.Options' tags) and reaches Prepare
// without being copied field by field.
type DataConfig = datasets.Options

// TrainConfig holds the optimisation settings.
type TrainConfig struct {
	// Passes over the training data (fractions allowed); max_steps wins when set.
	Epochs float64 `yaml:"epochs"`
	// Optimizer steps to run, whatever the epochs.
	MaxSteps int `yaml:"max_steps"`
	// Sequences per micro-batch (DPO: preference pairs).
	MicroBatch int `yaml:"micro_batch"`
	// Micro-batches whose gradients add up to one optimizer step.
	GradAccum int `yaml:"grad_accum"`
	// The peak learning rate.
	LR float64 `yaml:"lr"`
	// The learning rate after warm-up: constant | linear (to 0) | cosine (to 0).
	Schedule string `yaml:"schedule"`
	// Steps of linear warm-up from 0 to lr.
	WarmupSteps int `yaml:"warmup_steps"`
	// Warm-up as a fraction of all steps, when warmup_steps is 0.
	WarmupRatio float64 `yaml:"warmup_ratio"`
	// AdamW's decoupled weight decay (norms and biases are not decayed).
	WeightDecay float64 `yaml:"weight_decay"`
	// AdamW's first-moment decay.
	Beta1 float64 `yaml:"beta1"`
	// AdamW's second-moment decay.
	Beta2 float64 `yaml:"beta2"`
	// AdamW's epsilon.
	Eps float64 `yaml:"eps"`
	// Clips the gradients' global norm to this (0: no clipping).
	MaxGradNorm float64 `yaml:"max_grad_norm"`
	// The seed of the adapters' initialisation, the data order and dropout; a
	// resumed run must keep it.
	Seed int64 `yaml:"seed"`
	// Reports a step event every this many steps.
	LogEvery int `yaml:"log_every"`
	// Evaluates on the held-out data every this many steps and at the end (0:
	// never).
	EvalEvery int `yaml:"eval_every"`
	// Saves a checkpoint every this many steps (0: only when stopped and at the
	// end).
	SaveEvery int `yaml:"save_every"`
	// How many of the newest checkpoints to keep.
	KeepCheckpoints int `yaml:"keep_checkpoints"`
	// Activation checkpointing: recomputes each layer's activations in the
	// backward to save memory.
	Checkpointing bool `yaml:"activation_checkpointing"`
	// Rows (tokens) the MLP runs at once: gate/up, the gated activation and
	// down go over tiles of this many rows, so their buffers hold mlp_chunk ×
	// intermediate_size values instead of tokens × intermediate_size, and the
	// backward recomputes gate/up per tile. 0: the engine's rule
	// (engine.MLPRowChunk: untiled up to 2^26 values a buffer).
	MLPChunk int `yaml:"mlp_chunk,omitempty"`
	// Rows (tokens) the LM head and cross-entropy run at once: logits, their
	// loss and gradient exist for logits_chunk × vocab_size values at a time
	// instead of tokens × vocab_size, and the head's input and weight
	// gradients are summed chunk by chunk. 0: the engine's rule
	// (engine.LogitsChunk: as many rows as 2^26 logits hold).
	LogitsChunk int `yaml:"logits_chunk,omitempty"`
	// The trained weights' master copies: fp32 (an fp32 master beside each bf16
	// compute copy) | bf16 (the bf16 compute copy is the master, updated with
	// stochastic rounding: 4 bytes less per trained parameter). Empty: fp32.
	MasterWeights string `yaml:"master_weights,omitempty"`
	// With activation checkpointing, moves each layer's saved input to host
	// memory (pinned, copied while the GPU computes) and fetches it back one
	// layer ahead in the backward: auto | on | off. auto: on only when the
	// checkpoints would not fit the GPU (engine.OffloadCheckpoints). Empty:
	// off (the GPU side has not run on a GPU yet).
	OffloadCheckpoints string `yaml:"offload_checkpoints,omitempty"`
	// Bit-equal reruns: keeps the GPU's attention backward on kernels whose
	// results do not vary from run to run (engine/cuda's split kernels instead
	// of a fused one that sums dq with atomics). Off: the fastest kernels.
	// Not covered yet: the embedding gradient of full fine-tuning and the
	// gradient norm still sum with atomics. whet train --deterministic sets it
	// too.
	Deterministic bool `yaml:"deterministic,omitempty"`
	// Generates from the sample prompts every this many steps and at the end (0:
	// never).
	SampleEvery int `yaml:"sample_every"`
	// The prompts sampled during training. Empty: up to three from the evaluation
	// data.
	SamplePrompts []string `yaml:"sample_prompts,omitempty"`
	// The most tokens per sample.
	SampleTokens int `yaml:"sample_tokens"`
}

// ParallelConfig sets data parallelism (docs/multi-gpu.md). The global
// batch stays micro_batch × grad_accum rows: the ranks share it.
type ParallelConfig struct {
	// The GPUs to train on: all, a count (the first N), or a list of device
	// indices such as 0,2,3. Empty: one GPU.
	GPUs string `yaml:"gpus,omitempty"`
	// Data-parallel ranks on the CPU backend (each with its own model copy), for
	// testing the multi-GPU logic without GPUs. 0 or 1: one.
	Ranks int `yaml:"ranks,omitempty"`
	// How the ranks combine gradients: nccl (GPUs) | ring (in Go, through host
	// memory). Empty: nccl for GPUs, ring for CPU ranks; named with one rank, the
	// data-parallel path runs anyway (a check of it on one GPU).
	Collective string `yaml:"collective,omitempty"`
	// Gradient bucket size in MiB (reduced while the backward goes on). 0: 25.
	BucketMB float64 `yaml:"bucket_mb,omitempty"`
	// Nodes places this process among the machines of a multi-node run
	// (whet train --nnodes --node-rank --master-addr): a choice for one
	// start on one machine, never saved.
	Nodes NodeConfig `yaml:"-"`
}

// NodeConfig places this process among the nodes of a multi-node run.
// Every node runs the same run file with its GPUs (or CPU ranks); node 0
// holds rank 0, which runs the run and writes the run folder.
type NodeConfig struct {
	NNodes     int    // machines in the run (0 or 1: this one only)
	NodeRank   int    // this machine's place, 0 … NNodes-1
	MasterAddr string // HOST:PORT where node 0 listens for the others
}

// DPOConfig holds the preference loss settings (TRL's names).
type DPOConfig struct {
	// DPO's β: how far the policy may move from the reference.
	Beta float64 `yaml:"beta"`
	// The assumed fraction of flipped preference labels (conservative DPO), in [0,
	// 0.5).
	LabelSmoothing float64 `yaml:"label_smoothing"`
	// The preference loss: sigmoid (DPO's) | ipo.
	LossType string `yaml:"loss_type"`
	// FullWeights trains every weight (the reference is then the model
	// before training, cached); otherwise DPO trains LoRA adapters and the
	// reference is the base with adapters off.
	FullWeights bool `yaml:"full_weights,omitempty"`
}

// Event is what a running trainer reports. The concrete types below are
// sent on the trainer's channel; consumers switch on the type.
type Event interface{ isEvent() }

// StepEvent is sent after every optimizer step.
type StepEvent struct {
	Step, TotalSteps int
	Epoch            float64
	Loss             float64
	LR               float64
	GradNorm         float64
	Tokens           int     // tokens in this step
	TokensPerSec     float64 // over this step
	Elapsed          time.Duration
	// Metrics carries method-specific values (DPO's rewards/…), TRL-named.
	Metrics map[string]float64 `json:",omitempty"`
}

// EvalEvent is sent after an evaluation pass.
type EvalEvent struct {
	Step int
	Loss float64
}

// SampleEvent carries a greedy generation made during training, or (GRPO)
// one of the step's sampled completions with its rewards.
type SampleEvent struct {
	Step   int
	Prompt string
	Text   string
	// Rewards are a GRPO completion's rewards by function name, and "reward"
	// for their weighted sum.
	Rewards map[string]float64 `json:",omitempty"`
}

// CheckpointEvent is sent once a checkpoint is on disk.
type CheckpointEvent struct {
	Step int
	Path string
}

// DoneEvent ends the stream: Err is nil on success or a clean stop.
type DoneEvent struct {
	Step    int
	Stopped bool // stopped by the user (a checkpoint was written first)
	Err     error
	// Elapsed is this session's time: a resumed run's earlier sessions
	// are not in it (FromStep says where this one began).
	Elapsed  time.Duration
	FinalDir string
	// FromStep is the step this session resumed from (0: a fresh run).
	FromStep int
	// Checkpointed: the run folder holds a checkpoint, which whet train -c
	// resumes from. A run that failed before its first has none, and
	// whet train -c starts it over from step 0.
	Checkpointed bool
}

// PastTotal reports whether a run is at a step past its total steps: one
// resumed ("resume anyway") with fewer total steps than it had done, which
// stops at once where it is. The summary and the runs list both say so.
func PastTotal(step, total int) bool { return total > 0 && step > total }

// LogEvent is a line of information (data stats, backend notice).
type LogEvent struct{ Text string }

// PauseEvent says that a viewer paused (or resumed) the run. A run
// followed by several viewers (two SSH sessions, whet attach) shows the
// same state in each: the one that pressed p knows, the others learn it
// from this. The worker's control socket sends it; the trainer does not.
type PauseEvent struct{ Paused bool }

func (StepEvent) isEvent()       {}
func (PauseEvent) isEvent()      {}
func (EvalEvent) isEvent()       {}
func (SampleEvent) isEvent()     {}
func (CheckpointEvent) isEvent() {}
func (DoneEvent) isEvent()       {}
func (LogEvent) isEvent()        {}

// RunControl steers a running trainer. Each call returns at once; the
// trainer acts on it between steps and reports through its events.
type RunControl interface {
	Pause()
	Resume()
	// Checkpoint asks for a checkpoint after the current step.
	Checkpoint()
	// Stop writes a checkpoint, then ends the run with DoneEvent{Stopped: true}.
	Stop()
}

// Tiling is the row tiling the train section asks for (train.mlp_chunk,
// train.logits_chunk), for NewActivationsTiled.
func (t TrainConfig) Tiling() Tiling {
	return Tiling{MLPRows: t.MLPChunk, LogitsRows: t.LogitsChunk}
}
