// Package export turns a finished run into what other tools load: a PEFT
// adapter folder (transformers + PEFT, vLLM), a merged Hugging Face model
// (safetensors in bf16 or f16) and a GGUF file with an Ollama Modelfile
// (llama.cpp, Ollama).
//
// Every format starts from the same place: the run's base model loaded on
// the CPU backend in float32, with the run's adapter attached for LoRA runs
// or the run's saved model/ folder for full fine-tuning. Adapters are
// merged in float32 (W' = W + scale·B·A) before any rounding, so the merged
// and quantized files lose precision once, at the end.
package export

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"whet/datasets"
	"whet/datasets/tokenizer"
	"whet/engine"
	"whet/engine/cpu"
	"whet/engine/hub"
	// Run files are read on top of the method defaults presets holds.
	_ "whet/presets"
)

// Formats lists the export formats.
var Formats = []string{"peft", "merged", "gguf"}

// Options says what to export.
type Options struct {
	// RunDir is a run directory written by whet train (run.yaml plus
	// adapter/ or model/).
	RunDir string
	// Format is peft, merged or gguf.
	Format string
	// Quant is the stored precision: bf16 or f16 for merged (default
	// bf16); f16, bf16, q8_0 or q4_k_m for gguf (default q8_0). Ignored
	// for peft, which keeps the adapter's float32 weights.
	Quant string
	// OutDir is where the files go; empty means DefaultOutDir. It may not
	// be (or lie inside) the base model's folder, the run's adapter,
	// model or checkpoints, nor be the run directory.
	OutDir string
	// Force lets the export write into a non-empty OutDir: the files an
	// earlier export wrote there are removed first, anything else stays.
	// The run's default folder for the format is replaced without it:
	// whet made it.
	Force bool
	// QLoRABase says which base weights a QLoRA run's adapter is merged
	// into: "nf4", the dequantised NF4 weights it was trained on (the
	// export then computes what the training model computed), or "full",
	// the base model's full-precision weights. Empty means the format's
	// default (QLoRABase's doc on DefaultQLoRABase). Only for QLoRA runs,
	// and not for peft, which keeps the adapter unmerged.
	QLoRABase string
	// Template names the chat template (a built-in name such as chatml or
	// llama-3.1); empty means the run's data.template, else the one the
	// tokenizer's chat_template is recognised as.
	Template string
}

// QLoRA merge bases (Options.QLoRABase).
const (
	QLoRABaseNF4  = "nf4"
	QLoRABaseFull = "full"
)

// DefaultQLoRABase is the base a QLoRA run is merged into when
// Options.QLoRABase is empty: the NF4 weights it was trained on for GGUF,
// so the file Ollama and llama.cpp run answers as the model did in
// training and in whet chat; the full-precision weights for merged
// safetensors, the Hugging Face model other tools build on, as PEFT's
// merge_and_unload on an unquantised base gives it.
func DefaultQLoRABase(format string) string {
	if format == "gguf" {
		return QLoRABaseNF4
	}
	return QLoRABaseFull
}

// qloraBase is the effective merge base for a QLoRA run.
func (o Options) qloraBase() string {
	if o.QLoRABase != "" {
		return strings.ToLower(o.QLoRABase)
	}
	return DefaultQLoRABase(o.Format)
}

// Progress is told how far an export is: done of total steps, and what the
// step was (a tensor name or a file).
type Progress func(done, total int, what string)

// DefaultOutDir is RunDir/export/<format>[-<quant>] (engine.ExportDir).
func DefaultOutDir(o Options) string { return engine.ExportDir(o.RunDir, o.Format, o.quant()) }

// quant returns the effective precision for the format.
func (o Options) quant() string {
	q := strings.ToLower(o.Quant)
	switch o.Format {
	case "merged":
		if q == "" {
			return "bf16"
		}
	case "gguf":
		if q == "" {
			return "q8_0"
		}
	case "peft":
		return ""
	}
	return q
}

// formatHints answers the names people try for a format under another
// name ("ollama" was met with only "want peft, merged, gguf").
var formatHints = map[string]string{
	"ollama":       "use --format gguf: it writes the GGUF and an Ollama Modelfile beside it (ollama create NAME -f Modelfile)",
	"llama.cpp":    "use --format gguf, the file llama.cpp loads",
	"llamacpp":     "use --format gguf, the file llama.cpp loads",
	"ggml":         "use --format gguf, the file llama.cpp loads",
	"lora":         "use --format peft: the LoRA adapter in PEFT's layout",
	"adapter":      "use --format peft: the LoRA adapter in PEFT's layout",
	"safetensors":  "use --format merged for the whole model with the adapter merged in, or peft for the adapter alone",
	"hf":           "use --format merged for the whole model in transformers' layout, or peft for the adapter alone",
	"transformers": "use --format merged for the whole model in transformers' layout, or peft for the adapter alone",
	"full":         "use --format merged for the whole model with the adapter merged in",
}

// Check validates the options before anything is loaded.
func (o Options) Check() error {
	if o.RunDir == "" {
		return errors.New("export: a run directory is required")
	}
	switch o.Format {
	case "peft", "merged":
		if o.Format == "peft" && o.Quant != "" {
			return fmt.Errorf("export: --quant %s: a PEFT export writes the adapter as trained, unquantised (--quant is for merged and gguf)", o.Quant)
		}
		if q := o.quant(); o.Format == "merged" && q != "bf16" && q != "f16" {
			return fmt.Errorf("export: --quant %s is not available for merged safetensors (want bf16 or f16)", o.Quant)
		}
	case "gguf":
		if _, ok := ggufQuants[o.quant()]; !ok {
			return fmt.Errorf("export: --quant %s is not a GGUF type whet writes (want f16, bf16, q8_0 or q4_k_m)", o.Quant)
		}
	default:
		if hint, ok := formatHints[strings.ToLower(o.Format)]; ok {
			return fmt.Errorf("export: unknown format %q: %s", o.Format, hint)
		}
		return fmt.Errorf("export: unknown format %q (want %s)", o.Format, strings.Join(Formats, ", "))
	}
	if o.QLoRABase != "" {
		if o.Format == "peft" {
			return fmt.Errorf("export: --qlora-base %s: a PEFT export keeps the adapter unmerged", o.QLoRABase)
		}
		if b := o.qloraBase(); b != QLoRABaseNF4 && b != QLoRABaseFull {
			return fmt.Errorf("export: --qlora-base %s is not a merge base (want %s or %s)", o.QLoRABase, QLoRABaseNF4, QLoRABaseFull)
		}
	}
	return nil
}

// Run exports a run. Progress may be nil.
func Run(o Options, progress Progress) error {
	return RunContext(context.Background(), o, progress)
}

// RunContext is Run that gives up once ctx is done: between weights while
// merging, at the next write of a GGUF file (whose temporary file is then
// removed), before each file of an adapter export. The error wraps
// ctx.Err(); OutDir is removed again if this export made it and nothing
// was written, and an earlier export's files there (which a forced or
// default-folder export replaces) are put back as they were. Progress
// reports with total 0 are notices (an earlier export's files replaced).
func RunContext(ctx context.Context, o Options, progress Progress) (err error) {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("export cancelled: %w", err)
	}
	if progress == nil {
		progress = func(int, int, string) {}
	}
	if err := o.Check(); err != nil {
		return err
	}
	if o.OutDir == "" {
		o.OutDir = DefaultOutDir(o)
	}
	run, err := OpenRun(o.RunDir)
	if err != nil {
		return err
	}
	mllama := isMllamaFolder(run.ModelDir)
	if mllama {
		if err := checkMllamaRun(run, o); err != nil {
			return err
		}
	}
	nf4 := false
	if run.Cfg.Method == "qlora" && o.Format != "peft" {
		nf4 = o.qloraBase() == QLoRABaseNF4
	} else if o.QLoRABase != "" {
		return fmt.Errorf("export: --qlora-base %s: %s is a %s run, not a QLoRA one", o.QLoRABase, o.RunDir, run.Cfg.Method)
	}
	if err := checkOutDir(run, o.OutDir); err != nil {
		return err
	}
	created, finish, err := prepareOutDir(o, progress)
	if err != nil {
		return err
	}
	defer func() { err = noSpaceHint(err, o.OutDir) }()
	defer func() {
		// An earlier export's files, set aside: dropped, or restored when
		// this one failed or was cancelled.
		if ferr := finish(err == nil); ferr != nil {
			err = errors.Join(err, ferr)
		}
	}()
	if created {
		defer func() {
			if err != nil {
				os.Remove(o.OutDir) // only if empty: complete files stay
			}
		}()
	}
	if mllama {
		return exportMllama(ctx, run, o, progress)
	}
	if o.Format == "peft" {
		return exportPEFT(ctx, run, o.OutDir, o.Template, progress)
	}
	if run.Cfg.Method == "qlora" {
		if nf4 {
			progress(0, 0, "QLoRA run: merging the adapter into the dequantised NF4 weights it was trained on (--qlora-base full merges into the full-precision base)")
		} else {
			progress(0, 0, "QLoRA run: merging the adapter into the full-precision base weights, not the NF4 ones it was trained on (--qlora-base nf4 reproduces the trained model)")
		}
	}
	mo := engine.ModelOptions{NF4Linears: nf4}
	if o.Format == "gguf" {
		// A Gemma 3 checkpoint with its vision tower gets the mmproj file
		// beside the language model's GGUF.
		if mo.Gemma3Vision, err = hasGemma3Tower(run.ModelDir); err != nil {
			return err
		}
	}
	setting, field := templateSetting(run, o.Template)
	src, err := loadSource(run.ModelDir, run.AdapterDir, setting, field, runName(run), mo)
	if err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		src.Close()
		return fmt.Errorf("export cancelled: %w", err)
	}
	defer src.Close()
	if c := src.Chat; c.Custom() {
		where := "the tokenizer files (tokenizer_config.json's chat_template)"
		if o.Format == "gguf" {
			where = "model.gguf's tokenizer.chat_template and the Modelfile"
		}
		progress(0, 0, chatTemplateNotice(c, where))
	}
	switch o.Format {
	case "merged":
		return writeMerged(ctx, src, o.OutDir, o.quant(), progress)
	default:
		return writeGGUFExport(ctx, src, o.OutDir, o.quant(), progress)
	}
}

// noSpaceHint adds what to do to an export that failed because the disk
// filled up: the error named only the file and "no space left on device".
func noSpaceHint(err error, outDir string) error {
	if err == nil || !errors.Is(err, syscall.ENOSPC) {
		return err
	}
	return fmt.Errorf("%w; the disk holding %s is full: free some space there, or give --out a folder on another disk", err, outDir)
}

// RunFiles is a run directory's parts.
type RunFiles struct {
	Dir string
	Cfg engine.RunConfig
	// ModelDir holds config.json, tokenizer files and the weights to
	// start from: the base model for LoRA (for a Hub id, its snapshot in
	// the Hub cache), the run's model/ for full.
	ModelDir string
	// AdapterDir is the run's PEFT adapter ("" for full fine-tuning).
	AdapterDir string
}

// OpenRun reads a run directory's run.yaml and finds its result.
func OpenRun(dir string) (*RunFiles, error) {
	path := engine.RunDir(dir).Config()
	if _, err := os.Stat(path); err != nil {
		return nil, fmt.Errorf("export: %s is not a run directory (no run.yaml): %w", dir, err)
	}
	cfg, err := engine.LoadRunConfig(path)
	if err != nil {
		return nil, fmt.Errorf("export: %w", err)
	}
	r := &RunFiles{Dir: dir, Cfg: cfg}
	switch cfg.Method {
	case "full":
		r.ModelDir = engine.RunDir(dir).Model()
		if _, err := os.Stat(filepath.Join(r.ModelDir, "config.json")); err != nil {
			return nil, fmt.Errorf("export: %s: full fine-tuning run without a saved model (has the run finished?): %w", dir, err)
		}
	default:
		// A Hub id names its snapshot in the cache (pulled if missing).
		if r.ModelDir, _, err = engine.ModelFolder(context.Background(), cfg.Model, hub.PullOptions{}); err != nil {
			return nil, fmt.Errorf("export: %w", err)
		}
		r.AdapterDir = engine.RunDir(dir).Adapter()
		if _, err := os.Stat(filepath.Join(r.AdapterDir, "adapter_config.json")); err != nil {
			return nil, fmt.Errorf("export: %s: LoRA run without a saved adapter (has the run finished?): %w", dir, err)
		}
	}
	return r, nil
}

// Source is a loaded run: the model (adapter attached) on the CPU backend,
// its tokenizer and chat template, and the folder its files come from.
type Source struct {
	Model    *engine.Model
	Tok      *tokenizer.Tokenizer
	Template *datasets.Template // nil when no template is known
	// Chat is the chat template the exports write (Chat.Template is
	// Template): the base's own, or the run's training template.
	Chat     *ChatTemplate
	ModelDir string
	// Name is a short name for the model (the run's name or folder).
	Name string
}

// Load reads the run's model onto the CPU backend: for a QLoRA run, with
// the base's linears in NF4 as they were trained (DefaultQLoRABase of
// GGUF), else in full precision.
func (r *RunFiles) Load() (*Source, error) {
	return r.load(r.Cfg.Method == "qlora")
}

// load reads the run's model with the decoder's linears quantised to NF4
// as they load (a QLoRA run's training base) when nf4 is set.
func (r *RunFiles) load(nf4 bool) (*Source, error) {
	return loadSource(r.ModelDir, r.AdapterDir, r.Cfg.Data.Template, "data.template", runName(r), engine.ModelOptions{NF4Linears: nf4})
}

func runName(r *RunFiles) string {
	if r.Cfg.Name != "" {
		return r.Cfg.Name
	}
	return filepath.Base(filepath.Clean(r.Dir))
}

// LoadSource loads an HF model folder (plus a PEFT adapter when adapterDir
// is set) on the CPU backend. template names the chat template (a name, a
// .jinja file or Jinja text, as data.template); empty means the
// tokenizer's own. A template other than the tokenizer's is the one the
// exports write (Source.Chat).
func LoadSource(modelDir, adapterDir, template, name string) (*Source, error) {
	return loadSource(modelDir, adapterDir, template, "template", name, engine.ModelOptions{})
}

// loadSource: setting is the template's value and field where it came from
// (resolveChatTemplate).
func loadSource(modelDir, adapterDir, setting, field, name string, mo engine.ModelOptions) (*Source, error) {
	if adapterDir != "" && !mo.Gemma3Vision {
		// An adapter of Gemma 3's vision projector needs the tower loaded.
		has, err := engine.AdapterHasGemma3Projector(adapterDir)
		if err != nil {
			return nil, fmt.Errorf("export: %w", err)
		}
		// So do adapters on the tower's layers (lora.vision_layers).
		if _, err := os.Stat(filepath.Join(adapterDir, engine.VisionLayersLoRAFile)); err == nil {
			has = true
		}
		mo.Gemma3Vision = has
	}
	tok, err := tokenizer.Load(modelDir)
	if err != nil {
		return nil, fmt.Errorf("export: %w", err)
	}
	chat, err := resolveChatTemplate(tok, modelDir, setting, field)
	if err != nil {
		return nil, err
	}
	s := &Source{Tok: tok, Template: chat.Template, Chat: chat, ModelDir: modelDir, Name: name}
	m, err := engine.LoadModelWith(modelDir, cpu.New(), mo)
	if err != nil {
		return nil, fmt.Errorf("export: %w", err)
	}
	s.Model = m
	if adapterDir != "" {
		if _, err := engine.LoadAdapter(adapterDir, m); err != nil {
			m.Free()
			return nil, fmt.Errorf("export: %w", err)
		}
	}
	return s, nil
}

// chat is the chat template the exports write: Chat, or for a Source
// built without one the tokenizer's own.
func (s *Source) chat() *ChatTemplate {
	if s.Chat != nil {
		return s.Chat
	}
	return &ChatTemplate{Template: s.Template, Jinja: s.Tok.ChatTemplate()}
}

// Close frees the model.
func (s *Source) Close() { s.Model.Free() }

// StopIDs are the ids that end a reply: the tokenizer's EOS ids and the
// template's end-of-turn tokens.
func (s *Source) StopIDs() []int {
	var out []int
	for _, id := range engine.StopIDs(s.Tok, s.Template) {
		out = append(out, int(id))
	}
	return out
}
