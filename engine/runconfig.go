package engine

import (
	"time"

	"whet/datasets"
)

// RunConfig describes a training run completely. The wizard builds it,
// `whet train -c run.yaml` reads it, and the run directory keeps a copy.
type RunConfig struct {
	Name    string `yaml:"name"`
	Model   string `yaml:"model"`   // HF folder, or a catalog name
	Method  string `yaml:"method"`  // lora | qlora | full | dpo
	Backend string `yaml:"backend"` // auto | cpu | cuda
	RunsDir string `yaml:"runs_dir,omitempty"`

	LoRA  LoRAConfig  `yaml:"lora,omitempty"`
	Data  DataConfig  `yaml:"data"`
	Train TrainConfig `yaml:"train"`
	// DPO holds preference-tuning settings (method dpo).
	DPO DPOConfig `yaml:"dpo,omitempty"`

	// ResumeAnyway resumes a run folder whose checkpoints were made with
	// other data, model or settings instead of refusing (whet train
	// --resume-anyway). It is a choice for one start, never saved.
	ResumeAnyway bool `yaml:"-"`
}

// LoRAConfig sets the adapters (PEFT's meaning for each field).
type LoRAConfig struct {
	Rank          int      `yaml:"r"`
	Alpha         float64  `yaml:"alpha"`
	Dropout       float64  `yaml:"dropout"`
	TargetModules []string `yaml:"target_modules"` // among q,k,v,o,gate,up,down (or q_proj, …)
	RSLoRA        bool     `yaml:"use_rslora"`
}

// DataConfig says where the data is and how to turn it into tokens. It is
// the data pipeline's own options type, so a data setting is declared
// once (its yaml keys are datasets.Options' tags) and reaches Prepare
// without being copied field by field.
type DataConfig = datasets.Options

// TrainConfig holds the optimisation settings.
type TrainConfig struct {
	Epochs          float64  `yaml:"epochs"`
	MaxSteps        int      `yaml:"max_steps"`
	MicroBatch      int      `yaml:"micro_batch"` // sequences per micro-batch
	GradAccum       int      `yaml:"grad_accum"`
	LR              float64  `yaml:"lr"`
	Schedule        string   `yaml:"schedule"` // constant | linear | cosine
	WarmupSteps     int      `yaml:"warmup_steps"`
	WarmupRatio     float64  `yaml:"warmup_ratio"`
	WeightDecay     float64  `yaml:"weight_decay"`
	Beta1           float64  `yaml:"beta1"`
	Beta2           float64  `yaml:"beta2"`
	Eps             float64  `yaml:"eps"`
	MaxGradNorm     float64  `yaml:"max_grad_norm"`
	Seed            int64    `yaml:"seed"`
	LogEvery        int      `yaml:"log_every"`
	EvalEvery       int      `yaml:"eval_every"`
	SaveEvery       int      `yaml:"save_every"`
	KeepCheckpoints int      `yaml:"keep_checkpoints"`
	Checkpointing   bool     `yaml:"activation_checkpointing"`
	SampleEvery     int      `yaml:"sample_every"`
	SamplePrompts   []string `yaml:"sample_prompts,omitempty"`
	SampleTokens    int      `yaml:"sample_tokens"`
}

// DPOConfig holds the preference loss settings (TRL's names).
type DPOConfig struct {
	Beta           float64 `yaml:"beta"`
	LabelSmoothing float64 `yaml:"label_smoothing"`
	LossType       string  `yaml:"loss_type"` // sigmoid | ipo
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

// SampleEvent carries a greedy generation made during training.
type SampleEvent struct {
	Step   int
	Prompt string
	Text   string
}

// CheckpointEvent is sent once a checkpoint is on disk.
type CheckpointEvent struct {
	Step int
	Path string
}

// DoneEvent ends the stream: Err is nil on success or a clean stop.
type DoneEvent struct {
	Step     int
	Stopped  bool // stopped by the user (a checkpoint was written first)
	Err      error
	Elapsed  time.Duration
	FinalDir string
}

// LogEvent is a line of information (data stats, backend notice).
type LogEvent struct{ Text string }

func (StepEvent) isEvent()       {}
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
