package engine

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"whet/datasets"
	"whet/datasets/tokenizer"
	"whet/engine/atomicfile"
	"whet/engine/hub"
	"whet/engine/safetensors"
	"whet/engine/units"
)

// LoadRunConfig reads a run.yaml on top of its method's defaults
// (DecodeRunConfig) and validates it.
// Relative paths in it (model, data.path, data.eval_path, a data.template
// file) are read against
// the file's folder and returned absolute; runs_dir is where runs go, read
// against the working directory as before.
func LoadRunConfig(path string) (RunConfig, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return RunConfig{}, err
	}
	cfg, err := DecodeRunConfig(data)
	if err != nil {
		return cfg, fmt.Errorf("%s: %w", path, err)
	}
	// A run directory's copy written before paths were recorded absolute
	// named them relative to the folder training ran in.
	dir := RunDir(filepath.Dir(path))
	_, statusErr := os.Stat(dir.Status())
	legacy := filepath.Clean(path) == filepath.Clean(dir.Config()) && statusErr == nil
	if err := cfg.resolvePaths(dir.Path(), legacy); err != nil {
		return cfg, fmt.Errorf("%s: %w", path, err)
	}
	if err := cfg.Validate(); err != nil {
		return cfg, fmt.Errorf("%s: %w", path, err)
	}
	return cfg, nil
}

// resolvePaths makes the config's relative paths absolute, read against
// base (the run file's folder; "." for a config built in code, whose paths
// are the working directory's), so that the copy a run directory keeps
// works from any folder. A model that is not found against base and reads
// as a Hub id (ORG/NAME[@REVISION], hub.ParseRef) is left as it is. With cwdFallback (a run
// directory's run.yaml from before paths were recorded absolute), a path
// missing against base but present in the working directory is taken
// from there, as those files meant.
func (c *RunConfig) resolvePaths(base string, cwdFallback bool) error {
	resolve := func(p string, hubID bool) (string, error) {
		if p == "" || filepath.IsAbs(p) {
			return p, nil
		}
		inBase := filepath.Join(base, p)
		if _, err := os.Stat(inBase); err == nil {
			return filepath.Abs(inBase)
		}
		if _, err := os.Stat(p); err == nil {
			if cwdFallback {
				return filepath.Abs(p)
			}
			// There from the working folder, not from the run file's: say
			// which reading counts rather than fail on the other path.
			abs, _ := filepath.Abs(p)
			baseAbs, _ := filepath.Abs(base)
			return "", fmt.Errorf("%s is read against the run file's folder %s, where it is not; from the working folder it is %s: write that path, or one relative to the run file", p, baseAbs, abs)
		}
		if _, err := hub.ParseRef(p); err == nil && hubID {
			return p, nil
		}
		return filepath.Abs(inBase)
	}
	var err error
	if c.Model, err = resolve(c.Model, true); err != nil {
		return fmt.Errorf("model: %w", err)
	}
	if c.Data.Path, err = resolve(c.Data.Path, false); err != nil {
		return fmt.Errorf("data.path: %w", err)
	}
	if c.Data.EvalPath, err = resolve(c.Data.EvalPath, false); err != nil {
		return fmt.Errorf("data.eval_path: %w", err)
	}
	if datasets.IsTemplateFile(c.Data.Template) {
		if cwdFallback && strings.TrimSpace(c.Data.Template) == RunTemplateFile {
			// The run folder's own copy (RunDir.ChatTemplate) is the
			// folder's, never a file of the working folder.
			c.Data.Template = filepath.Join(base, RunTemplateFile)
			if c.Data.Template, err = filepath.Abs(c.Data.Template); err != nil {
				return fmt.Errorf("data.template: %w", err)
			}
		} else if c.Data.Template, err = resolve(strings.TrimSpace(c.Data.Template), false); err != nil {
			return fmt.Errorf("data.template: %w", err)
		}
	}
	return nil
}

// usesLoRA says whether the run trains adapters (LoRA, and DPO or GRPO
// unless it asks for full weights).
func (c *RunConfig) usesLoRA() bool {
	return c.Method == "lora" || c.Method == "qlora" || (c.Method == "dpo" && !c.DPO.FullWeights) ||
		(c.Method == "grpo" && !c.GRPO.FullWeights)
}

// PreparedData is a run's tokenized, packed data.
type PreparedData struct {
	Train, Eval []datasets.Batch
	Notes       []string // stats and warnings, shown to the user
	// Longest is the most tokens one example holds after truncation (0
	// for GRPO's prompts).
	Longest   int
	Tokenizer *tokenizer.Tokenizer
	Template  *datasets.Template // nil for raw text data
	// EvalPrompts are user turns from the eval rows, for samples when the
	// run names no sample prompts.
	EvalPrompts []string
	// Prompts is GRPO's prompt-only data (Train and Eval are then empty).
	Prompts *datasets.PromptSet
	// Vision is the vision model kind (VisionGemma3, VisionMllama) when the
	// run trains it with images (train_vision.go); Images counts them.
	Vision string
	Images int
}

// PrepareData turns the run's data settings into packed batches for a
// model folder. It is a variable so the data pipeline (package datasets
// with its tokenizer) plugs in without the engine depending on its details.
// The read stops early when ctx ends (returning an error that wraps ctx's)
// and tells progress, when not nil, how far it has come
// (datasets.PrepareContext).
var PrepareData = func(ctx context.Context, cfg RunConfig, progress func(datasets.Progress)) (*PreparedData, error) {
	return nil, errors.New("no data pipeline linked into this program")
}

// safetensorsSource adapts a safetensors folder to WeightSource.
type safetensorsSource struct{ s *safetensors.Set }

func (w safetensorsSource) Shape(name string) ([]int, bool) {
	info, ok := w.s.Info(name)
	if !ok {
		return nil, false
	}
	return info.Shape, true
}
func (w safetensorsSource) Float32(name string) ([]float32, error) { return w.s.Float32(name) }
func (w safetensorsSource) Where(name string) string {
	if info, ok := w.s.Info(name); ok {
		return info.File
	}
	return w.s.Source()
}

// LoadModel reads config.json and the safetensors weights of an HF folder
// onto b.
func LoadModel(dir string, b Backend) (*Model, error) {
	return LoadModelWith(dir, b, ModelOptions{})
}

// LoadModelWith is LoadModel with options (NF4 linears for QLoRA).
func LoadModelWith(dir string, b Backend, o ModelOptions) (*Model, error) {
	cfg, err := LoadModelConfig(dir)
	if err != nil {
		return nil, err
	}
	set, err := safetensors.OpenDir(dir)
	if err != nil {
		return nil, err
	}
	defer set.Close()
	// The shapes are checked against the files before anything is
	// allocated, so a config.json that disagrees with its weights is
	// refused without taking memory.
	m, err := newModel(*cfg, b, o, safetensorsSource{set})
	if err != nil {
		return nil, err
	}
	if err := m.LoadWeights(safetensorsSource{set}); err != nil {
		m.Free()
		return nil, err
	}
	if o.Gemma3Vision {
		if err := m.loadGemma3Vision(dir, safetensorsSource{set}); err != nil {
			m.Free()
			return nil, err
		}
	}
	return m, nil
}

// Session is a prepared run: backend, model, data and trainer, ready to go.
type Session struct {
	Cfg RunConfig
	Dir string
	// ModelDir is the folder the model was loaded from: Cfg.Model, or the
	// cached snapshot of the Hub id in Cfg.Model.
	ModelDir string
	Backend  Backend
	Model    *Model
	Trainer  *Trainer
	Notices  []string
	// lock is held on the run folder from before anything is read from it
	// until Close.
	lock *RunLock
	// inputs fingerprints the data and model, for the folder's inputs.json.
	inputs RunInputs
	// template is the data.template file and its text, for the folder's
	// copy (RunDir.ChatTemplate); zero when data.template is no file.
	template runTemplate
	// followers are the data-parallel ranks other than 0 (Trainer is
	// rank 0), each on one of followerBackends.
	followers        []*Trainer
	followerBackends []Backend
	// kernelLines holds the progress lines of the backend's ahead-of-time
	// kernel compile (ReportKernelCompiles) until Start sends them on as
	// LogEvents; a line that finds it full is dropped.
	kernelLines chan string
}

// Prepare builds everything a run needs and creates its run directory
// (or reuses it to resume when cfg.Name names an existing run).
func Prepare(cfg RunConfig) (*Session, error) {
	return PrepareContext(context.Background(), cfg, nil)
}

// PrepareContext is Prepare whose data read (a 100,000-row file takes
// seconds) stops when ctx ends, with an error that wraps ctx's, and tells
// progress, when not nil, how far it has come (datasets.PrepareContext).
func PrepareContext(ctx context.Context, cfg RunConfig, progress func(datasets.Progress)) (*Session, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	var lock *RunLock
	// A node other than 0 only follows: node 0 holds the run folder.
	if cfg.Name != "" && cfg.Parallel.Nodes.NodeRank == 0 {
		// Before the slow part: a name that cannot be a folder, or a run
		// folder another process is training in, fails now.
		rd, err := RunDirOf(cfg)
		if err != nil {
			return nil, err
		}
		if _, err := os.Stat(rd.Path()); err == nil {
			if lock, err = rd.Acquire(); err != nil {
				return nil, err
			}
		}
	}
	// The run directory's copy of cfg records absolute paths (or a Hub
	// id), so that chat, export and resume work from any folder.
	if err := cfg.resolvePaths(".", false); err != nil {
		lock.Release()
		return nil, err
	}
	// No runs_dir is DefaultRunsDir, as for RunDirOf above and for the
	// studio, whet runs and whet attach (filepath.Abs("") would put the
	// run in the working folder itself).
	if cfg.RunsDir == "" {
		cfg.RunsDir = DefaultRunsDir
	}
	runsDir, err := filepath.Abs(cfg.RunsDir)
	if err != nil {
		lock.Release()
		return nil, fmt.Errorf("runs_dir: %w", err)
	}
	cfg.RunsDir = runsDir
	// A Hub id stays in cfg (and the run directory's copy); the files
	// come from its snapshot in the cache.
	modelDir, hubNotice, err := ModelFolder(context.Background(), cfg.Model, hub.PullOptions{})
	if err != nil {
		lock.Release()
		return nil, err
	}
	if cfg.FitMaxLength {
		fitMaxLength(&cfg, modelDir, lock != nil)
	}
	// Fingerprints of the data and model, checked against the run folder's
	// before anything slow: resuming checkpoints made from other inputs
	// would train neither run.
	var anyway string
	inputs, err := fingerprintInputs(cfg, modelDir)
	if err != nil {
		lock.Release()
		return nil, err
	}
	// A data.template file is read once, here: its text is what the run
	// folder keeps (makeDir) and what a resume is checked against.
	tpl, err := readRunTemplate(cfg)
	if err != nil {
		lock.Release()
		return nil, err
	}
	if lock != nil {
		rd, _ := RunDirOf(cfg)
		if err := checkResume(rd, cfg, inputs, tpl); err != nil {
			var changed *ResumeChangedError
			if !errors.As(err, &changed) || !cfg.ResumeAnyway {
				lock.Release()
				return nil, err
			}
			anyway = "resuming anyway, with these changes: " + strings.Join(changed.Changes, "; ")
		}
	}
	b, notices, err := OpenBackend(cfg.Backend)
	if err != nil {
		lock.Release()
		return nil, err
	}
	if hubNotice != "" {
		notices = append(notices, hubNotice)
	}
	s := &Session{Cfg: cfg, ModelDir: modelDir, Backend: b, Notices: notices, lock: lock, inputs: inputs, template: tpl,
		kernelLines: make(chan string, 64)}
	// A cold kernel cache compiles in the background while the model
	// loads; its progress goes out with the run's events (Start).
	ReportKernelCompiles(b, func(line string) {
		select {
		case s.kernelLines <- line:
		default:
		}
	})
	if anyway != "" {
		s.Notices = append(s.Notices, anyway)
	}
	fail := func(err error) (*Session, error) {
		s.Close()
		return nil, err
	}
	dataCfg := cfg
	dataCfg.Model = modelDir
	data, err := PrepareData(ctx, dataCfg, progress)
	if err != nil {
		return fail(err)
	}
	s.Notices = append(s.Notices, data.Notes...)
	if n := positionsNotice(modelDir, data.Longest); n != "" {
		s.Notices = append(s.Notices, n)
	}
	if len(data.Train) == 0 && data.Prompts == nil {
		return fail(fmt.Errorf("data.path %s: no training rows left after preparation", cfg.Data.Path))
	}
	if err := checkVisionRun(cfg, VisionModelKind(modelDir), data.Images > 0, b); err != nil {
		return fail(err)
	}
	if data.Vision != "" {
		s.Notices = append(s.Notices, visionNotices(cfg, data.Vision, data, b)...)
	}
	if cfg.Method == "qlora" {
		s.Notices = append(s.Notices, "qlora: decoder weights quantized to NF4 as they were loaded (block 64, fp32 absmax)")
	}
	group, err := s.openGroup(b)
	if err != nil {
		return fail(err)
	}
	if all := append([]Backend{s.Backend}, s.followerBackends...); cfg.Train.Deterministic {
		s.Notices = append(s.Notices, deterministicNotice(applyDeterministic(cfg.Train, all), len(all)))
	}
	if cfg.Method == "grpo" && group[0] != nil && group[0].Size() > 1 { // ranks here or on other nodes
		return fail(fmt.Errorf("parallel: grpo runs on one GPU for now (its generation is not spread over ranks); remove the parallel section"))
	}
	t, err := s.newTrainer(s.Backend, data, group[0])
	if err != nil {
		return fail(err)
	}
	if t.DP != nil && !t.DP.leader() {
		// A node other than 0: every rank here follows node 0's rank 0,
		// which writes the run folder.
		s.followers = append(s.followers, t)
		for i := 1; i < len(group); i++ {
			f, err := s.newTrainer(s.followerBackends[i-1], data, group[i])
			if err != nil {
				return fail(fmt.Errorf("data-parallel rank %d: %w", group[i].Rank(), err))
			}
			s.followers = append(s.followers, f)
		}
		if err := s.readyNode(); err != nil {
			return fail(err)
		}
		return s, nil
	}
	s.Model = t.Model
	s.Trainer = t
	t.Export = s.export
	if cfg.Train.SampleEvery > 0 && data.Tokenizer != nil && t.Acts != nil {
		prompts := cfg.Train.SamplePrompts
		if len(prompts) == 0 && len(data.EvalPrompts) > 0 {
			prompts = data.EvalPrompts[:min(3, len(data.EvalPrompts))]
		}
		if len(prompts) > 0 || t.GRPO != nil {
			t.Sampler = &Sampler{Model: t.Model, Tok: data.Tokenizer, Template: data.Template, Prompts: prompts, MaxTokens: cfg.Train.SampleTokens}
		}
		if t.GRPO != nil {
			t.Sampler.Extra = t.GRPO.Samples
		}
	}
	if cfg.Train.SampleEvery > 0 && t.Sampler == nil {
		s.Notices = append(s.Notices, noSamplesNotice(data, len(cfg.Train.SamplePrompts)+len(data.EvalPrompts)))
	}
	if t.GRPO != nil {
		s.Notices = append(s.Notices, t.GRPO.notice())
	}
	if t.Acts != nil && t.Acts.OffloadsCheckpoints() {
		s.Notices = append(s.Notices, fmt.Sprintf("activation checkpoints offloaded to host memory (train.offload_checkpoints %s): %s pinned",
			cfg.Train.OffloadCheckpoints, units.Bytes(t.Acts.HostBytes())))
	}
	for i := 1; i < len(group); i++ {
		f, err := s.newTrainer(s.followerBackends[i-1], data, group[i])
		if err != nil {
			return fail(fmt.Errorf("data-parallel rank %d: %w", i, err))
		}
		s.followers = append(s.followers, f)
	}
	if err := s.makeDir(); err != nil {
		return fail(err)
	}
	return s, nil
}

// newTrainer loads the model onto b and makes a trainer of it: the
// leader's, or (with c of rank > 0) a data-parallel follower's, which
// writes nothing and samples nothing.
func (s *Session) newTrainer(b Backend, data *PreparedData, c Collective) (*Trainer, error) {
	cfg := s.Cfg
	if data.Vision == VisionMllama {
		return s.newMllamaTrainer(b, data)
	}
	m, err := LoadModelWith(s.ModelDir, b, ModelOptions{NF4Linears: cfg.Method == "qlora", Gemma3Vision: data.Vision == VisionGemma3})
	if err != nil {
		return nil, err
	}
	t := &Trainer{Model: m, Cfg: cfg.Train, Train: data.Train, Eval: data.Eval, Seed: cfg.Train.Seed,
		Opt: &Optimizer{Beta1: cfg.Train.Beta1, Beta2: cfg.Train.Beta2, Eps: cfg.Train.Eps, WeightDecay: cfg.Train.WeightDecay,
			Seed: uint64(cfg.Train.Seed)}}
	fail := func(err error) (*Trainer, error) {
		t.DP.Free()
		m.Free()
		return nil, err
	}
	if m.BF16Masters, err = MasterWeights(cfg.Train.MasterWeights); err != nil {
		return fail(err)
	}
	var lora *LoRAOptions
	if cfg.usesLoRA() {
		lora = &LoRAOptions{Rank: cfg.LoRA.Rank, Alpha: cfg.LoRA.Alpha, Dropout: cfg.LoRA.Dropout,
			Targets: cfg.LoRA.TargetModules, RSLoRA: cfg.LoRA.RSLoRA, Seed: uint64(cfg.Train.Seed)}
	}
	if t.DP, err = MakeTrainable(m, lora, c, int(cfg.Parallel.BucketMB*(1<<20))); err != nil {
		return fail(err)
	}
	if data.Vision == VisionGemma3 {
		proc, err := Gemma3ImageProcessor(s.ModelDir, &m.Gemma3Vision.Cfg)
		if err != nil {
			return fail(err)
		}
		if cfg.LoRA.Projector {
			if err := m.AddGemma3ProjectorLoRA(*lora); err != nil {
				return fail(fmt.Errorf("lora.projector: %w", err))
			}
		}
		if cfg.LoRA.VisionLayers {
			if err := m.AddGemma3VisionLayersLoRA(*lora); err != nil {
				return fail(fmt.Errorf("lora.vision_layers: %w", err))
			}
		}
		t.images = &gemma3Runner{proc: proc, cache: processedImages{limit: imageCacheBytes}}
	}
	if cfg.Method == "grpo" {
		if t.GRPO, err = NewGRPORun(cfg.GRPO, data.Prompts.Train, data.Tokenizer, data.Template, cfg.Data.MaxLength); err != nil {
			return fail(err)
		}
	}
	capTokens := 0
	for _, b := range data.Train {
		capTokens = max(capTokens, len(b.Tokens))
	}
	if t.GRPO != nil {
		capTokens = t.GRPO.MaxSeqTokens()
	}
	capTokens *= cfg.Train.MicroBatch
	for _, b := range data.Eval {
		capTokens = max(capTokens, len(b.Tokens))
	}
	if t.Acts, err = m.NewActivationsWith(capTokens, ActivationOptions{Checkpointing: cfg.Train.Checkpointing,
		Tiling: cfg.Train.Tiling(), Offload: cfg.Train.OffloadCheckpoints}); err != nil {
		return fail(err)
	}
	t.Sched = NewSchedule(cfg.Train, t.TotalSteps())
	if cfg.Method == "dpo" {
		t.DPO = &DPOLoss{Beta: cfg.DPO.Beta, LabelSmoothing: cfg.DPO.LabelSmoothing, Type: cfg.DPO.LossType}
	}
	return t, nil
}

// ExportDir is where an export of a run goes unless told otherwise:
// RUN/export/FORMAT, or RUN/export/FORMAT-QUANT when there is a precision
// (whet export and the studio's export page both use it).
func ExportDir(runDir, format, quant string) string { return RunDir(runDir).Export(format, quant) }

// runNameNow is the clock a run without a name is named by (RunNameAt);
// tests fix it to start two runs in the same second.
var runNameNow = time.Now

func (s *Session) makeDir() error {
	if s.Cfg.Name == "" {
		name := RunNameAt(runNameNow())
		// A default name is never a run to resume or to be refused: node 0
		// takes the next free one (base-2, base-3…) where a run of the same
		// second has the folder. The other nodes of a multi-node run only
		// follow node 0, which holds the run folder: they keep the plain name.
		if s.Cfg.Parallel.Nodes.NodeRank == 0 {
			var err error
			if name, err = ClaimRunName(s.Cfg.RunsDir, name); err != nil {
				return err
			}
		}
		s.Cfg.Name = name
	}
	rd, err := RunDirOf(s.Cfg)
	if err != nil {
		return err
	}
	s.Dir = rd.Path()
	s.Trainer.Dir = s.Dir
	if err := os.MkdirAll(s.Dir, atomicfile.DirPerm); err != nil {
		return fmt.Errorf("run directory: %w (%s)", err, RunsDirAdvice)
	}
	if s.lock == nil {
		if s.lock, err = rd.Acquire(); err != nil {
			return err
		}
		// Made by another process between Prepare's check and here?
		if err := checkResume(rd, s.Cfg, s.inputs, s.template); err != nil {
			var changed *ResumeChangedError
			if !errors.As(err, &changed) || !s.Cfg.ResumeAnyway {
				return err
			}
		}
	}
	if s.Trainer.DPO != nil {
		// Before Resume: for full-weight DPO the reference is the model as
		// loaded, so it must be computed (or read) before any update.
		if err := s.referenceLogprobs(); err != nil {
			return err
		}
	}
	resumed, err := s.Trainer.Resume()
	if err != nil {
		return fmt.Errorf("resume %s: %w", s.Dir, err)
	}
	s.Notices = append(s.Notices, s.Trainer.ResumeNotes...)
	if n := s.Trainer.Sched.IdleNote(); n != "" && !resumed {
		s.Notices = append(s.Notices, n)
	}
	if resumed {
		s.Notices = append(s.Notices, fmt.Sprintf("resumed %s at step %d", s.Dir, s.Trainer.Step()))
	}
	if err := s.readyFollowers(); err != nil {
		return err
	}
	saved := s.Cfg
	var note []byte
	if s.template.Source != "" {
		// The template file's text as the run trains with it, before the
		// run.yaml that names the copy: export, chat and a resume read it
		// there, whatever becomes of the user's file.
		if err := writeFileAtomic(rd.ChatTemplate(), []byte(s.template.Text)); err != nil {
			return err
		}
		note = runTemplateNote(rd, s.template.Source)
		saved.Data.Template = RunTemplateFile
	} else if err := os.Remove(rd.ChatTemplate()); err != nil && !errors.Is(err, fs.ErrNotExist) {
		// A copy from a template file the run no longer names: run.yaml
		// holds its template now, and a stale copy would only mislead.
		return fmt.Errorf("run folder: %w", err)
	}
	js, err := yaml.Marshal(saved)
	if err != nil {
		return err
	}
	if err := writeFileAtomic(rd.Config(), append(note, js...)); err != nil {
		return err
	}
	in, err := json.MarshalIndent(s.inputs, "", "  ")
	if err != nil {
		return err
	}
	return writeFileAtomic(rd.Inputs(), in)
}

// refCache is ref_logps.json in a DPO run directory: the reference
// log-probs computed once before training.
type refCache struct {
	LossType string `json:"loss_type"`
	// Inputs is refInputsKey of the data and model they were computed
	// from ("" in caches from before it: only the row counts are checked).
	Inputs string        `json:"inputs,omitempty"`
	Train  [][]PairLogps `json:"train"`
	Eval   [][]PairLogps `json:"eval"`
}

// refInputsKey fingerprints what reference log-probs depend on: the
// model, the data files and how they are tokenized.
func refInputsKey(in RunInputs, data DataConfig, tpl runTemplate) string {
	if tpl.Source != "" {
		// A template file by its text: the same text from the run folder's
		// copy (a resume from its run.yaml) or a moved file keeps the cache.
		data.Template = tpl.key()
	}
	h := sha256.New()
	fmt.Fprintf(h, "%s\x00%s\x00%s\x00", in.Model, in.Data, in.EvalData)
	// The data settings as the run file has them (yaml skips the
	// in-memory fields, a clock among them).
	settings, err := yaml.Marshal(data)
	if err != nil {
		settings = []byte(err.Error()) // matches no cache: recomputed
	}
	h.Write(settings)
	return hex.EncodeToString(h.Sum(nil))
}

// referenceLogprobs fills the trainer's reference log-probs from the run
// directory's cache, or computes them (adapters off) and caches them.
func (s *Session) referenceLogprobs() error {
	t := s.Trainer
	path := RunDir(s.Dir).RefLogps()
	if js, err := atomicfile.ReadFile(path); err == nil {
		var c refCache
		if err := json.Unmarshal(js, &c); err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		key := refInputsKey(s.inputs, s.Cfg.Data, s.template)
		if len(c.Train) == len(t.Train) && len(c.Eval) == len(t.Eval) && c.LossType == t.DPO.Type && (c.Inputs == "" || c.Inputs == key) {
			t.RefTrain, t.RefEval = c.Train, c.Eval
			s.Notices = append(s.Notices, "dpo: reference log-probs read from "+path)
			return nil
		}
	}
	if !s.Cfg.usesLoRA() {
		if cps, _ := ListCheckpoints(RunDir(s.Dir).Checkpoints()); len(cps) > 0 {
			return fmt.Errorf("%s is missing or was computed from other data or another model: full-weight DPO cannot resume without the reference log-probs computed before training", path)
		}
	}
	var err error
	if t.RefTrain, err = t.Acts.ReferenceLogprobs(t.Train, *t.DPO); err != nil {
		return err
	}
	if t.RefEval, err = t.Acts.ReferenceLogprobs(t.Eval, *t.DPO); err != nil {
		return err
	}
	js, err := json.Marshal(refCache{LossType: t.DPO.Type, Inputs: refInputsKey(s.inputs, s.Cfg.Data, s.template), Train: t.RefTrain, Eval: t.RefEval})
	if err != nil {
		return fmt.Errorf("cache reference log-probs: %w", err)
	}
	if err := writeFileAtomic(path, js); err != nil {
		return fmt.Errorf("cache reference log-probs: %w", err)
	}
	s.Notices = append(s.Notices, fmt.Sprintf("dpo: reference log-probs of %d rows computed before training", len(t.Train)+len(t.Eval)))
	return nil
}

// export writes the run's result: a PEFT adapter for LoRA, the whole
// model for full fine-tuning.
func (s *Session) export() (string, error) {
	if !s.Cfg.usesLoRA() {
		dir := RunDir(s.Dir).Model()
		if err := atomicfile.RealDir(dir); err != nil {
			return "", err
		}
		if err := SaveModel(dir, s.Model, s.ModelDir); err != nil {
			return "", err
		}
		return "model saved to " + dir, nil
	}
	dir := RunDir(s.Dir).Adapter()
	if err := atomicfile.RealDir(dir); err != nil {
		return "", err
	}
	l := s.Cfg.LoRA
	opts := LoRAOptions{Rank: l.Rank, Alpha: l.Alpha, Dropout: l.Dropout, Targets: l.TargetModules, RSLoRA: l.RSLoRA}
	save := SaveAdapter
	if s.Model.mllama != nil || s.Model.Gemma3Vision != nil {
		save = saveVisionAdapters
	}
	if err := save(dir, s.Model, opts, s.Cfg.Model); err != nil {
		return "", err
	}
	return "adapter saved to " + dir, nil
}

// Close frees the model and the backend.
func (s *Session) Close() {
	if s.Trainer != nil && s.Trainer.Sampler != nil {
		s.Trainer.Sampler.Free()
	}
	if s.Trainer != nil && s.Trainer.GRPO != nil {
		s.Trainer.GRPO.Free()
	}
	if s.Trainer != nil && s.Trainer.Acts != nil {
		s.Trainer.Acts.Free()
	}
	if s.Trainer != nil {
		s.Trainer.DP.Free()
	}
	s.closeFollowers()
	if s.Model != nil {
		s.Model.Free()
	}
	if c, ok := s.Backend.(Closer); ok {
		c.Close()
	}
	s.lock.Release()
	s.lock = nil
}

// fitMaxLength gives a run file that left data.max_length out its
// length: the method's default fitted to the model's positions
// (MaxLengthFor, the rule the studio's presets follow), or, for a run
// folder being resumed, the length its run.yaml records (a run started
// before this rule with the method's 2048 on a model of fewer positions
// resumes as it was, instead of being refused as changed).
func fitMaxLength(cfg *RunConfig, modelDir string, resuming bool) {
	cfg.FitMaxLength = false
	if resuming {
		if rd, err := RunDirOf(*cfg); err == nil {
			if raw, err := atomicfile.ReadFile(rd.Config()); err == nil {
				if saved, err := DecodeRunConfig(raw); err == nil && !saved.FitMaxLength {
					cfg.Data.MaxLength = saved.Data.MaxLength
					return
				}
			}
		}
	}
	if mc, err := LoadModelConfig(modelDir); err == nil {
		cfg.Data.MaxLength = MaxLengthFor(cfg.Data.MaxLength, mc.MaxPositions)
	}
}

// Start prepares a run and trains it in the background. Events arrive on
// the returned channel, which is closed after the DoneEvent. ctx stops
// the training (with a checkpoint); the data read before it runs to its
// end (StartContext stops it too).
func Start(ctx context.Context, cfg RunConfig) (<-chan Event, RunControl, error) {
	s, err := Prepare(cfg)
	if err != nil {
		return nil, nil, err
	}
	return start(ctx, s)
}

// StartContext is Start whose data read also stops when ctx ends (the run
// then never starts: the error wraps ctx's, and there is nothing to
// checkpoint) and tells progress, when not nil, how far it has come. It
// is whet train's: Ctrl-C during a long read stops it at once.
func StartContext(ctx context.Context, cfg RunConfig, progress func(datasets.Progress)) (<-chan Event, RunControl, error) {
	s, err := PrepareContext(ctx, cfg, progress)
	if err != nil {
		return nil, nil, err
	}
	return start(ctx, s)
}

// start trains the prepared session s in the background (Start).
func start(ctx context.Context, s *Session) (<-chan Event, RunControl, error) {
	ch := make(chan Event, 64)
	ctl := newControl()
	if s.Trainer != nil {
		s.Trainer.ctl = ctl
	}
	go func() {
		defer close(ch)
		defer s.Close()
		for _, n := range s.Notices {
			ch <- LogEvent{Text: n}
		}
		stopLines := s.forwardKernelLines(ch)
		wait := s.runFollowers()
		if s.Trainer == nil {
			// A node other than 0 follows until node 0's run ends.
			err := wait()
			stopLines()
			ch <- DoneEvent{Step: s.followers[0].Step(), Err: err, FinalDir: s.Dir}
			return
		}
		err := s.Trainer.Run(ctx, ch)
		stopLines()
		if ferr := wait(); ferr != nil && err == nil {
			ch <- LogEvent{Text: fmt.Sprintf("data parallel: %v", ferr)}
		}
		if err != nil {
			ch <- DoneEvent{Step: s.Trainer.Step(), Err: err, FinalDir: s.Dir,
				Checkpointed: s.Dir != "" && RunDir(s.Dir).HasCheckpoint()}
		}
	}()
	return ch, ctl, nil
}

// forwardKernelLines sends the kernel compile's progress lines on ch as
// LogEvents, from another goroutine, until the returned function is
// called (which waits for that goroutine).
func (s *Session) forwardKernelLines(ch chan<- Event) (stop func()) {
	quit, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case line := <-s.kernelLines:
				select {
				case ch <- LogEvent{Text: line}:
				case <-quit:
					return
				}
			case <-quit:
				return
			}
		}
	}()
	return func() {
		close(quit)
		<-done
	}
}

// positionsNotice warns when the longest example runs past the positions
// the model was trained for (config.json's max_position_embeddings): the
// run trains on positions its base model never saw, which nothing said.
func positionsNotice(modelDir string, longest int) string {
	mc, err := LoadModelConfig(modelDir)
	if err != nil || mc.MaxPositions <= 0 || longest <= mc.MaxPositions {
		return ""
	}
	return fmt.Sprintf("data: the longest example has %d tokens, more than the model's max_position_embeddings (%d): "+
		"positions past %d are new to it; data.max_length: %d keeps within them", longest, mc.MaxPositions, mc.MaxPositions, mc.MaxPositions)
}
