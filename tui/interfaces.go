package tui

import (
	"context"

	"whet/datasets"
	"whet/datasets/vision"
	"whet/engine"
	"whet/engine/worker"
)

// The studio talks to the rest of whet through these small interfaces, so
// it can be built and tested against fakes (tui/fake) and wired to the
// real packages by the command that starts it.

// Engine starts training runs. The channel ends with a DoneEvent.
type Engine interface {
	Start(ctx context.Context, cfg engine.RunConfig) (<-chan engine.Event, engine.RunControl, error)
}

// ModelInfo describes a base model the user can pick.
type ModelInfo struct {
	Name     string // catalog name, or the folder name of a local model
	Repo     string // Hugging Face repo id ("" for local folders)
	Path     string // local folder ("" for catalog entries)
	Params   int64  // parameter count, 0 if unknown
	Template string // chat template name
	Note     string // one line shown under the list
	// Dataset is a dataset file made for this model (the demo's persona
	// data); the data page preselects it.
	Dataset string
}

// Catalog lists the known base models.
type Catalog interface {
	Models() []ModelInfo
}

// Presets gives the default settings of a method ("lora", "qlora",
// "full", "dpo") for a model: the values the method page starts from.
type Presets interface {
	Defaults(model, method string) (engine.RunConfig, error)
}

// PlanPart is one allocation class of the memory plan.
type PlanPart struct {
	Name  string
	Bytes uint64
}

// Advice is one change that makes a run fit (or fit better). Apply edits
// the config; the fit page re-checks afterwards.
type Advice struct {
	Text  string // "Use QLoRA: 4-bit base weights"
	Saves uint64 // bytes saved, 0 if unknown
	Apply func(cfg *engine.RunConfig)
}

// FitReport is the memory plan of a config against a device.
type FitReport struct {
	Device   string // "NVIDIA H100 80GB HBM3" or "CPU"
	Free     uint64 // bytes free on the device now
	Total    uint64
	Parts    []PlanPart
	Fits     bool
	Verdict  string // one sentence
	Advice   []Advice
	Warnings []string
	// Unified, when set, says the device shares the system's memory (CPU
	// and GPU one pool: DGX Spark, integrated GPUs) and how that was
	// detected; Free is then what the system has available now.
	Unified string
	// MaxSeq is the longest max length (tokens per sequence) whose plan
	// fits Free with everything else as configured, at most the model's
	// trained positions; 0 when unknown or when not even one token fits.
	// The page offers it with one key.
	MaxSeq int
	// MaxPositions is the number of positions the model was trained on
	// (max_position_embeddings; 0 when unknown). MaxSeq equal to it was
	// capped there, not by memory.
	MaxPositions int
}

// cappedByModel reports whether MaxSeq is the model's trained positions
// rather than what memory allows.
func (r *FitReport) cappedByModel() bool {
	return r.MaxPositions > 0 && r.MaxSeq == r.MaxPositions
}

// FitChecker plans a run's memory against the device it will use.
type FitChecker interface {
	Check(ctx context.Context, cfg engine.RunConfig) (FitReport, error)
}

// Segment is a piece of a rendered example; Masked pieces are not trained
// on (the prompt part when training on responses only).
type Segment struct {
	Text   string
	Masked bool
}

// DataStats summarises a dataset after tokenization.
type DataStats struct {
	Rows        int
	Skipped     int // rows that could not be used
	Tokens      int // all tokens
	TrainTokens int // tokens with a loss
	MeanLen     float64
	MaxLen      int
	Truncated   int // rows longer than the max length
}

// DataPreview is what the dataset page shows for a file.
type DataPreview struct {
	Format   string // alpaca | sharegpt | messages | text | preference
	Examples [][]Segment
	// Labels says what each example is where the format has kinds of
	// them (Labels[i] goes with Examples[i]): "chosen" or "rejected" for
	// a preference pair's two answers; nil or "" for none.
	Labels []string
	// Images holds each example's images (Images[i] goes with
	// Examples[i]); nil for text data.
	Images   [][]PreviewImage
	Stats    DataStats
	Warnings []string
	// Unusable, when set, says why training cannot use the file although
	// it could be previewed (images for a text model, DPO or GRPO); the
	// page shows it and does not go on with the file.
	Unusable string
}

// PreviewImage is one image of a previewed example, or why it could not
// be read.
type PreviewImage struct {
	// Info names the image for a placeholder line:
	// "[image: xray/001.png 1024×1024 gray16]".
	Info string
	// Img is the picture, already shrunk for the terminal (a few hundred
	// pixels a side is plenty); nil when Err is set.
	Img *vision.RGB
	// Err says why the image cannot be shown, naming the row, the field
	// and the file: "data.jsonl:3: field \"messages[0].content[0]\": image
	// img/missing.png: open …: no such file or directory".
	Err string
}

// DataPreviewer loads a dataset the way training will (cfg.Data, the
// model's template and tokenizer) and reports a preview. A large file
// takes seconds: the read stops with ctx's error when ctx ends (the data
// page's esc), and progress, when not nil, hears how far it has come, one
// call at a time and never after Preview returns.
type DataPreviewer interface {
	Preview(ctx context.Context, cfg engine.RunConfig, progress func(datasets.Progress)) (DataPreview, error)
}

// GPUStats is one sample of the device's state.
type GPUStats struct {
	Name              string
	Util              float64 // percent
	MemUsed, MemTotal uint64
	TempC             float64
	PowerW, PowerCapW float64
}

// GPUSampler reads the device's state (NVML on NVIDIA).
type GPUSampler interface {
	Sample() (GPUStats, error)
}

// MultiGPUSampler is implemented by samplers that read every GPU of the
// machine, by device index, for the dashboard of a run over several GPUs.
type MultiGPUSampler interface {
	SampleAll() ([]GPUStats, error)
}

// ChatTurn is one message of a conversation (role system, user or
// assistant). Images are the image files a user turn carries (attached
// with /image; absolute paths), shown to the model before the text.
type ChatTurn struct {
	Role, Content string
	Images        []string
}

// ChatReply is how one generated answer ended.
type ChatReply struct {
	Text         string
	Tokens       int
	TokensPerSec float64
	Stop         string // why it stopped: "eos", "stop string", "max tokens"…
}

// ChatSession answers with the base model or the tuned one. A LoRA run
// shares one copy of the base weights and switches the adapter; HasTuned
// is false when only one model is available.
type ChatSession interface {
	HasTuned() bool
	// Generate streams the answer to turns through onText, piece by piece,
	// and returns when it ends or ctx is cancelled.
	Generate(ctx context.Context, turns []ChatTurn, o engine.SampleOptions, tuned bool, onText func(string)) (ChatReply, error)
	Close()
}

// BothChat is implemented by chat sessions that answer the base model's
// conversation and the tuned model's together (the side-by-side chat):
// one batched generation whose rows share the base weights, the adapter
// applied to the tuned row only, so both answers stream at once and each
// step reads the weights once for both. Each answer is, token for token,
// what Generate gives its side alone with the same options. onText
// receives each side's pieces as they come; onDone receives each side's
// reply as soon as that side has ended, while the other may go on. It
// returns both replies when both have ended, when ctx is cancelled (a side
// still going then is not passed to onDone: it is in the returned replies,
// or the error says it was cancelled), or when it fails.
type BothChat interface {
	GenerateBoth(ctx context.Context, base, tuned []ChatTurn, o engine.SampleOptions, onText func(tuned bool, piece string), onDone func(tuned bool, r ChatReply)) (baseReply, tunedReply ChatReply, err error)
}

// ImageChat is implemented by chat sessions that can look at images (a
// vision model). CheckImage reads and prepares the image file at path for
// the next message, so that a bad file, or a model without a vision
// tower, is reported when the image is attached; Generate then finds the
// path in the turn's Images.
type ImageChat interface {
	CheckImage(path string) error
}

// Chatter opens a chat over a run that has ended (its adapter or model is
// in runDir).
type Chatter interface {
	OpenChat(ctx context.Context, runDir string, cfg engine.RunConfig) (ChatSession, error)
}

// Exporter writes a finished run (runDir) in a format other tools load:
// format is peft, merged or gguf; quant is the stored precision (bf16 or
// f16 for merged; q8_0, q4_k_m, f16 or bf16 for gguf; "" for peft). It
// writes into outDir, reports each step through progress (done of total,
// and what the step was), and returns the names of the files it wrote in
// outDir. Cancelling ctx abandons the export.
type Exporter interface {
	Export(ctx context.Context, runDir, format, quant, outDir string, progress func(done, total int, what string)) (files []string, err error)
}

// ModelResolver is an Engine that turns what the wizard put in
// RunConfig.Model (a catalog name, a folder) into what the run folder's
// run.yaml will record: a folder (made absolute there, so that a resume
// from another folder finds it) or a Hub id as it is. The review page
// shows that, in DisplayPath form, rather than the name the run file does
// not hold. Checked by type assertion; without it the page shows the
// model as given.
type ModelResolver interface {
	RunModel(model string) (string, error)
}

// Detacher is an Engine whose runs belong to a worker process of their
// own (whet train --detach): the studio only watches and steers them, so
// quitting it leaves the run training. Checked by type assertion; an
// engine without it runs in the studio's process, and quitting stops the
// run with a checkpoint.
type Detacher interface {
	Detached() bool
}

// NameClaimer is an Engine that makes the run folder of a default name
// before the run starts (engine.ClaimRunName): base, or the next free
// base-2, base-3… where a session that started in the same second (two
// whet serve viewers, two terminals) or an earlier run has that folder.
// The studio asks only for the name it proposed, never for one the user
// typed: a typed name resumes its run, or the run's lock refuses it.
// Checked by type assertion; without it the proposed name is used as is.
type NameClaimer interface {
	ClaimRunName(runsDir, base string) (string, error)
}

// RunInfo is one run of the runs folder as the runs page (and whet runs)
// list it: its state from the worker's lock, and for a crashed run the
// worker's last words and the checkpoint to resume from.
type RunInfo = worker.Run

// RunBrowser lists the runs folder and opens a run for a viewer: its
// history replayed from the folder, then, for a live run, its worker's
// live events. Cancelling ctx leaves the run (the channel closes; the run
// goes on).
type RunBrowser interface {
	List() (runs []RunInfo, warnings []string, err error)
	Attach(ctx context.Context, name string) (AttachedRun, error)
}

// RunResumer is a RunBrowser that can also train a run of its folder again
// from its newest checkpoint, with its own run.yaml, in a worker as the
// wizard's runs are, and follow it (what whet train -c RUN/run.yaml does):
// the runs page's c on a stopped or crashed run.
type RunResumer interface {
	Resume(ctx context.Context, name string) (AttachedRun, error)
}
