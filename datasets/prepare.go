package datasets

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Options say where the data is and how to turn it into batches. They
// are also the data section of a run file (engine.DataConfig is this
// type), so each setting is declared once: the yaml tags are the run
// file's keys, and the fields tagged "-" are set by the program, never by
// a run file.
type Options struct {
	Path        string            `yaml:"path"`                    // a data file, a folder of shards, or a glob pattern
	Format      string            `yaml:"format,omitempty"`        // auto | alpaca | sharegpt | messages | text | preference | completion | prompt (GRPO)
	Columns     map[string]string `yaml:"columns,omitempty"`       // canonical column -> the file's column
	Template    string            `yaml:"template,omitempty"`      // chat template: a built-in name, a .jinja file (relative to the run file; the run folder keeps a copy of its text, chat_template.jinja) or the Jinja text; empty = the tokenizer's
	TrainOn     string            `yaml:"train_on,omitempty"`      // responses | all
	MaxLength   int               `yaml:"max_length"`              // tokens per sequence; longer ones are truncated. A run file without it: the method's default, or the model's max_position_embeddings if fewer
	Packing     bool              `yaml:"packing"`                 // pack sequences end to end (else pad with length grouping)
	EvalSplit   float64           `yaml:"eval_split,omitempty"`    // fraction of rows held out for evaluation
	EvalPath    string            `yaml:"eval_path,omitempty"`     // a separate evaluation file (overrides EvalSplit)
	SkipBadRows bool              `yaml:"skip_bad_rows,omitempty"` // skip unreadable rows and count them, instead of failing
	Seed        int64             `yaml:"seed,omitempty"`          // split and shuffle seed
	Encoding    string            `yaml:"encoding,omitempty"`      // text files' character set (windows-1252, latin1, …); empty = UTF-8

	// Objective is what the training method learns from (the run's
	// method decides it); Prepare refuses data of the other kind
	// (Objective.Check) before tokenizing it.
	Objective Objective `yaml:"-"`

	// MicroBatch is the number of sequences (pairs, for preference data)
	// per batch when padding; 0 means 1.
	MicroBatch int `yaml:"-"`
	// BatchTokens is the token budget of one packed batch; 0 means
	// MaxLength. Preference pairs are packed whole, so their budget is at
	// least 2 × MaxLength.
	BatchTokens int `yaml:"-"`
	// Now is the clock for templates that print today's date (Llama 3.2);
	// nil means time.Now.
	Now func() time.Time `yaml:"-"`
	// Vision, when set, reads the rows' images for a vision model
	// (vision_prepare.go); without it a conversation with an image part is
	// refused, with NoImages as the reason ("" gives a general one).
	Vision   *VisionOptions `yaml:"-"`
	NoImages string         `yaml:"-"`
}

// Validate checks every setting a run file's data section can hold, naming
// the field as the run file spells it. It is the one rule for them:
// Prepare calls it, and so does the run-file loader (engine), so a bad
// setting fails before any model is loaded.
func (o Options) Validate() error {
	if o.Path == "" {
		return errors.New("data.path: required")
	}
	if o.MaxLength < 2 {
		return fmt.Errorf("data.max_length: must be at least 2 tokens, got %d", o.MaxLength)
	}
	if math.IsNaN(o.EvalSplit) || math.IsInf(o.EvalSplit, 0) {
		return fmt.Errorf("data.eval_split: must be a finite number, got %v", o.EvalSplit)
	}
	if o.EvalSplit < 0 || o.EvalSplit >= 1 {
		return fmt.Errorf("data.eval_split: must be in [0, 1), got %g", o.EvalSplit)
	}
	if _, err := ParseFormat(o.Format); err != nil {
		return fmt.Errorf("data.format: %w", err)
	}
	if _, err := ParseTrainOn(o.TrainOn); err != nil {
		return fmt.Errorf("data.train_on: %w", err)
	}
	if err := Columns(o.Columns).validate(); err != nil {
		return fmt.Errorf("data.columns: %w", err)
	}
	if _, err := textEncoding(o.Encoding); err != nil {
		return fmt.Errorf("data.%w", err)
	}
	return nil
}

// Tokenizer is what Prepare needs from a tokenizer; *tokenizer.Tokenizer
// satisfies it.
type Tokenizer interface {
	Encoder
	ChatTemplate() string
	Config() map[string]any
}

// FallibleEncoder is the optional capability of a tokenizer whose
// encodings can go wrong as a whole: *tokenizer.Tokenizer stops when a
// regex of its tokenizer.json gives up on a text (catastrophic
// backtracking). Prepare checks Err after tokenizing, so no run trains on
// ids the tokenizer itself disowns.
type FallibleEncoder interface {
	Err() error
}

// Prepared is a dataset ready for training.
type Prepared struct {
	Format   Format
	Template *Template // nil for text data

	// Chat and text data.
	Train, Eval []Sequence
	// Preference data.
	TrainPairs, EvalPairs []Pair

	// Batches in training order (already shuffled), and for evaluation.
	TrainBatches, EvalBatches []Batch

	// StopTokenIDs end generation: the template's stop tokens that the
	// tokenizer knows, plus its EOS ids. StopStrings are the template's
	// textual stops.
	StopTokenIDs []int
	StopStrings  []string

	Stats Stats
}

// Stats describe a prepared dataset for the wizard and the logs.
type Stats struct {
	Files            []string
	Format           Format
	Template         string
	TemplateDetected bool // picked from the tokenizer's chat_template

	Rows     int // rows read from the files
	BadRows  int // rows skipped as unreadable (SkipBadRows)
	Examples int // rows that became training examples
	Images   int // images of the examples (vision runs)

	// BadRowReasons and DroppedReasons count rows per reason;
	// the Samples keep the first few messages in full.
	BadRowReasons  map[string]int
	BadRowSamples  []string
	Dropped        int
	DroppedReasons map[string]int
	DroppedSamples []string

	Truncated int // examples cut to MaxLength
	// LongestTokens is the longest example before truncation.
	LongestTokens int
	// InexactSpanRows counts rows whose assistant spans were located by
	// encoding text prefixes because piecewise encoding disagreed with the whole-text
	// encoding (see EncodeSpans).
	InexactSpanRows int

	// Warnings are things in the data the run reads past without an
	// error that the user may expect it to use (an image column).
	Warnings []string

	Train, Eval SplitStats
}

// SplitStats describe one split.
type SplitStats struct {
	Sequences       int // sequences (2 per preference pair)
	Tokens          int
	TrainableTokens int
	Batches         int
	PaddingTokens   int
	Lengths         Histogram
}

// Histogram counts sequence lengths in power-of-two buckets:
// Counts[i] holds lengths in (Edges[i-1], Edges[i]] (from 0 for i = 0).
type Histogram struct {
	Edges  []int
	Counts []int
	Min    int
	Max    int
	Mean   float64
	P50    int
	P95    int
}

const maxSamples = 5

type statsBuilder struct{ *Stats }

func (s statsBuilder) bad(e *RowError) {
	s.BadRows++
	s.BadRowReasons[e.Reason]++
	if len(s.BadRowSamples) < maxSamples {
		s.BadRowSamples = append(s.BadRowSamples, e.Error())
	}
}

func (s statsBuilder) drop(loc Location, reason string) {
	s.Dropped++
	s.DroppedReasons[reason]++
	if len(s.DroppedSamples) < maxSamples {
		s.DroppedSamples = append(s.DroppedSamples, loc.String()+": "+reason)
	}
}

// Drop reasons.
const (
	DropNoAssistant = "no assistant turn to train on"
	DropCutOff      = "every response token falls beyond max_length"
	DropNoTokens    = "no trainable token"
)

// Prepare reads, formats, tokenizes, masks, splits and batches a dataset.
func Prepare(opts Options, tok Tokenizer) (*Prepared, error) {
	return PrepareContext(context.Background(), opts, tok, nil)
}

// PrepareContext is Prepare that stops when ctx ends, returning its error
// (wrapped: errors.Is(err, context.Canceled)), and tells progress, when
// not nil, how far it has come. progress is called from Prepare's
// goroutines, one call at a time and never after PrepareContext returns;
// it should return at once.
func PrepareContext(ctx context.Context, opts Options, tok Tokenizer, progress func(Progress)) (*Prepared, error) {
	w := newWatch(ctx, progress)
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	format, _ := ParseFormat(opts.Format)
	trainOn, _ := ParseTrainOn(opts.TrainOn)
	cols := Columns(opts.Columns)
	if opts.MicroBatch <= 0 {
		opts.MicroBatch = 1
	}
	if opts.BatchTokens <= 0 {
		opts.BatchTokens = opts.MaxLength
	}
	if opts.BatchTokens < opts.MaxLength {
		return nil, fmt.Errorf("data: batch token budget %d is below max_length %d", opts.BatchTokens, opts.MaxLength)
	}
	if opts.Vision != nil && opts.Packing {
		return nil, fmt.Errorf("data.packing: sequences with images are not packed (each image run must stay in its own sequence); set data.packing: false")
	}

	p := &Prepared{}
	st := statsBuilder{&p.Stats}
	// The run's own data.template is parsed before any row is read: a
	// template that does not parse is the template's fault, told once
	// with its file and line, never as a row's.
	setting, err := runTemplate(opts)
	if err != nil {
		return nil, err
	}
	format, trainEx, evalEx, rng, err := readSplitExamples(opts, format, cols, opts.Objective, st, w)
	if err != nil {
		return nil, err
	}
	p.Format = format

	tk := &tokenizing{tok: tok, trainOn: trainOn, maxLen: opts.MaxLength, st: st, w: w}
	if opts.Vision != nil {
		if tk.vision, err = newVisionTokens(opts.Vision, tok); err != nil {
			return nil, err
		}
	}
	tk.render = RenderOptionsFor(tok.Config())
	tk.render.Now = opts.Now
	tk.eos = tk.render.EOS
	if format != FormatText {
		if err := p.pickTemplate(opts, setting, tok, format); err != nil {
			return nil, err
		}
		tk.tpl = p.Template
		p.StopStrings = p.Template.StopStrings
		for _, s := range p.Template.StopTokens {
			if id, ok := tok.TokenID(s); ok {
				p.StopTokenIDs = appendUnique(p.StopTokenIDs, id)
			}
		}
	}
	for _, id := range tok.EOSIDs() {
		p.StopTokenIDs = appendUnique(p.StopTokenIDs, id)
	}
	if format == FormatText {
		tk.textEOS = -1
		if id, ok := tok.TokenID(tk.eos); ok && tk.eos != "" {
			tk.textEOS = id
		} else if ids := tok.EOSIDs(); len(ids) > 0 {
			tk.textEOS = ids[0]
		}
	}

	w.tokenizing(len(trainEx) + len(evalEx))
	if err := tk.run(trainEx, opts.SkipBadRows, &p.Train, &p.TrainPairs); err != nil {
		return nil, err
	}
	if err := tk.run(evalEx, opts.SkipBadRows, &p.Eval, &p.EvalPairs); err != nil {
		return nil, err
	}
	p.Stats.Examples = len(p.Train) + len(p.Eval) + len(p.TrainPairs) + len(p.EvalPairs)
	for _, split := range [][]Sequence{p.Train, p.Eval} {
		for i := range split {
			p.Stats.Images += len(split[i].Images)
		}
	}
	if len(p.Train) == 0 && len(p.TrainPairs) == 0 {
		return nil, p.noTrainableError(opts, trainOn)
	}

	padID := padTokenID(tok)
	if p.TrainBatches, err = p.batch(p.Train, p.TrainPairs, opts, padID, rng); err != nil {
		return nil, fmt.Errorf("data: %w", err)
	}
	if p.EvalBatches, err = p.batch(p.Eval, p.EvalPairs, opts, padID, rng); err != nil {
		return nil, fmt.Errorf("data: %w", err)
	}
	p.Stats.Train = splitStats(p.Train, p.TrainPairs, p.TrainBatches, opts.MaxLength)
	p.Stats.Eval = splitStats(p.Eval, p.EvalPairs, p.EvalBatches, opts.MaxLength)
	return p, nil
}

// readSplitExamples reads the training (and eval) files into examples, with
// the format named or detected and checked against the objective, then
// shuffles them with the data seed and holds out the eval split. The
// shuffle's generator is returned for what comes next (batching).
func readSplitExamples(opts Options, format Format, cols Columns, obj Objective, st statsBuilder, w *watch) (Format, []Example, []Example, *rand.Rand, error) {
	st.BadRowReasons = map[string]int{}
	st.DroppedReasons = map[string]int{}
	binary := opts.Vision != nil // Parquet image columns keep their bytes
	trainFiles, err := DataFiles(opts.Path)
	if err != nil {
		return format, nil, nil, nil, fmt.Errorf("data: %w", err)
	}
	var evalFiles []string
	var evalErr error // reported after the training files are read, as before
	if opts.EvalPath != "" {
		evalFiles, evalErr = DataFiles(opts.EvalPath)
	}
	if w != nil && w.fn != nil {
		var total int64
		for _, f := range slices.Concat(trainFiles, evalFiles) {
			if info, err := os.Stat(f); err == nil {
				total += info.Size()
			}
		}
		w.reading(total)
	}
	trainRecs, err := readRecords(opts.Path, trainFiles, opts.Encoding, opts.SkipBadRows, binary, st, w)
	if err != nil {
		return format, nil, nil, nil, err
	}
	if evalErr != nil {
		return format, nil, nil, nil, fmt.Errorf("data: %w", evalErr)
	}
	var evalRecs []Record
	if opts.EvalPath != "" {
		if evalRecs, err = readRecords(opts.EvalPath, evalFiles, opts.Encoding, opts.SkipBadRows, binary, st, w); err != nil {
			return format, nil, nil, nil, err
		}
	}
	if opts.Vision == nil {
		warnUnusedImages(slices.Concat(trainRecs, evalRecs), cols, st)
	}
	if format == FormatAuto {
		if format, err = DetectFormat(trainRecs, cols); err != nil {
			return format, nil, nil, nil, fmt.Errorf("data: %w", err)
		}
	}
	st.Format = format
	if err := obj.Check(opts.Path, format); err != nil {
		return format, nil, nil, nil, fmt.Errorf("data: %w", err)
	}
	trainEx, err := toExamples(trainRecs, format, cols, opts, st)
	if err != nil {
		return format, nil, nil, nil, err
	}
	evalEx, err := toExamples(evalRecs, format, cols, opts, st)
	if err != nil {
		return format, nil, nil, nil, err
	}
	if opts.Vision != nil {
		// Every image is decoded once before anything is tokenized: a
		// bad one is reported by row, field and file now, not mid-run.
		if trainEx, err = dropBadImages(trainEx, opts.SkipBadRows, st); err != nil {
			return format, nil, nil, nil, err
		}
		if evalEx, err = dropBadImages(evalEx, opts.SkipBadRows, st); err != nil {
			return format, nil, nil, nil, err
		}
	}
	rng := NewRand(opts.Seed)
	rng.Shuffle(len(trainEx), func(i, j int) { trainEx[i], trainEx[j] = trainEx[j], trainEx[i] })
	if opts.EvalPath == "" && opts.EvalSplit > 0 && len(trainEx) > 1 {
		n := int(math.Round(opts.EvalSplit * float64(len(trainEx))))
		n = min(max(n, 1), len(trainEx)-1)
		evalEx = trainEx[:n]
		trainEx = trainEx[n:]
	}
	return format, trainEx, evalEx, rng, nil
}

// warnUnusedImages says once, naming the first row (its file and line) and
// the column, that
// rows carry an image column (imageColumns) the text pipeline does not
// read: such a dataset trains on its text alone, which is easy to miss
// when the messages themselves hold no image parts (those are refused).
func warnUnusedImages(recs []Record, cols Columns, st statsBuilder) {
	mapped := map[string]bool{}
	for _, c := range cols {
		mapped[c] = true
	}
	files := map[string]bool{}
	var first Record
	var column string
	for _, r := range recs {
		for _, c := range imageColumns {
			if !mapped[c] && holdsSomething(r.Fields[c]) {
				if column == "" {
					first, column = r, c
				}
				files[r.Loc.File] = true
				break
			}
		}
	}
	if column == "" {
		return
	}
	more := ""
	if n := len(files) - 1; n > 0 {
		more = fmt.Sprintf(", and in %d more files", n)
	}
	st.Warnings = append(st.Warnings, fmt.Sprintf("%s: column %q is not read (in this row and any later one%s): whet trains on the text alone: images are read only when training a vision model (docs/vision.md)",
		first.Loc, column, more))
}

// holdsSomething is false for a missing, null, empty-text or empty-list
// value: a column that is there but names no image.
func holdsSomething(v any) bool {
	switch v := v.(type) {
	case nil:
		return false
	case string:
		return v != ""
	case []any:
		return len(v) > 0
	}
	return true
}

// readRecords reads a data file, every data file under a folder (a
// dataset split into shards), or the files a glob pattern matches.
// SkipBadRowsAdvice follows the error of a row that cannot be read,
// which stops the read unless data.skip_bad_rows is set.
const SkipBadRowsAdvice = "fix that row, or set data.skip_bad_rows: true to skip unreadable rows (they are counted)"

func readRecords(path string, files []string, encoding string, skip, binary bool, st statsBuilder, w *watch) ([]Record, error) {
	var recs []Record
	var bad []*RowError
	for _, f := range files {
		if err := w.err(); err != nil {
			return nil, fmt.Errorf("data: %s: %w", f, err)
		}
		var res *ReadResult
		var err error
		if kind, _, _ := kindOf(f); binary && kind == kindParquet {
			var prs []Record
			if prs, err = readParquetBinary(f); err == nil {
				res = &ReadResult{Records: prs}
			}
		} else {
			res, err = readFileEncoded(f, encoding, skip, w)
		}
		if cerr := w.err(); cerr != nil {
			// Stopped: whatever the reader made of the ended read (a CSV
			// reader may call it a bad row), the reason is the stop.
			return nil, fmt.Errorf("data: %s: %w", f, cerr)
		}
		if err != nil {
			if re := (*RowError)(nil); errors.As(err, &re) && !strings.Contains(err.Error(), "skip_bad_rows") {
				// One bad row stops the read: say how to go on without it.
				return nil, fmt.Errorf("data: %w; %s", err, SkipBadRowsAdvice)
			}
			return nil, fmt.Errorf("data: %w", err)
		}
		st.Files = append(st.Files, f)
		st.Rows += len(res.Records) + len(res.Bad)
		for _, e := range res.Bad {
			st.bad(e)
		}
		recs = append(recs, res.Records...)
		bad = append(bad, res.Bad...)
		if info, err := os.Stat(f); err == nil {
			w.fileRead(info.Size())
		}
	}
	if len(recs) == 0 {
		if len(bad) > 0 {
			return nil, fmt.Errorf("data: %s holds no readable rows (%d skipped; the first: %v)", path, len(bad), bad[0])
		}
		return nil, fmt.Errorf("data: %s holds no rows", path)
	}
	return recs, nil
}

// DataFiles lists the data files a path names: the file itself, the
// .jsonl/.json/.csv/.tsv/.parquet files under a folder (recursively, in
// name order), or the matches of a glob pattern.
func DataFiles(path string) ([]string, error) {
	if strings.ContainsAny(path, "*?[") {
		matches, err := filepath.Glob(path)
		if err != nil {
			return nil, fmt.Errorf("data path pattern %q: %w", path, err)
		}
		if len(matches) == 0 {
			return nil, fmt.Errorf("no data file matches %q", path)
		}
		return matches, nil
	}
	info, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("data path: %w", err)
	}
	if !info.IsDir() {
		return []string{path}, nil
	}
	var files []string
	err = filepath.WalkDir(path, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && p != path && strings.HasPrefix(d.Name(), ".") {
			return filepath.SkipDir
		}
		if !d.IsDir() {
			if kind, _, err := kindOf(p); err == nil && kind != kindUnknown {
				files = append(files, p)
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("data folder %s: %w", path, err)
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("data folder %s holds no .jsonl, .json, .csv, .tsv or .parquet file", path)
	}
	sort.Strings(files)
	return files, nil
}

func toExamples(recs []Record, f Format, cols Columns, opts Options, st statsBuilder) ([]Example, error) {
	skip := opts.SkipBadRows
	out := make([]Example, 0, len(recs))
	for _, r := range recs {
		ex, rowErr := ToExample(r, f, cols)
		if rowErr == nil && opts.Vision != nil {
			rowErr = attachImages(r, &ex)
		} else if rowErr == nil {
			rowErr = refuseImages(ex, opts.NoImages)
		}
		if rowErr != nil {
			if !skip {
				if len(out) > 0 && !strings.Contains(rowErr.Error(), "skip_bad_rows") {
					// Rows before it were read in this format: this row
					// is the odd one out, which skipping gets past.
					return nil, fmt.Errorf("data (%s format): %w; %s", f, rowErr, SkipBadRowsAdvice)
				}
				return nil, fmt.Errorf("data (%s format): %w", f, rowErr)
			}
			st.bad(rowErr)
			continue
		}
		out = append(out, ex)
	}
	return out, nil
}

// runTemplate parses opts' data.template, nil when it is empty.
func runTemplate(opts Options) (*Template, error) {
	if opts.Template == "" {
		return nil, nil
	}
	return TemplateSetting(opts.Template, "data.template") // names data.template, or the file it names
}

// pickTemplate sets p's template: setting, the run's data.template
// already parsed, when there is one, else the tokenizer's or the format's.
func (p *Prepared) pickTemplate(opts Options, setting *Template, tok Tokenizer, f Format) error {
	if setting != nil {
		p.Template = setting
		p.Stats.Template = setting.Name
		return nil
	}
	name := opts.Template
	if name == "" {
		if n, ok := DetectTemplate(tok.ChatTemplate()); ok {
			name = n
			p.Stats.TemplateDetected = true
		} else if jinja := tok.ChatTemplate(); jinja != "" && f != FormatAlpaca {
			// No built-in family renders it: the interpreter does.
			t, err := NewJinjaTemplate(jinja)
			file := ""
			if tf, ok := tok.(interface{ ChatTemplateFile() string }); ok {
				file = tf.ChatTemplateFile()
			}
			if err != nil {
				if file != "" {
					return fmt.Errorf("data: %s: %w", file, err)
				}
				return fmt.Errorf("data: the tokenizer's %w", err)
			}
			t.Origin = file // a row's render error names the file too
			p.Template = t
			p.Stats.Template = t.Name
			p.Stats.TemplateDetected = true
			return nil
		} else if f == FormatAlpaca {
			name = "alpaca"
		} else if (f == FormatCompletion || f == FormatPrompt) && tok.ChatTemplate() == "" {
			name = "plain"
		} else {
			return fmt.Errorf("data: the tokenizer has no chat template and %s data needs one; set data.template to one of: %s", f, strings.Join(TemplateNames(), ", "))
		}
	}
	t, err := TemplateSetting(name, "data.template") // a built-in name from here on
	if err != nil {
		return err
	}
	p.Template = t
	p.Stats.Template = t.Name
	return nil
}

// tokenizing turns examples into sequences.
type tokenizing struct {
	tok     Tokenizer
	tpl     *Template
	render  RenderOptions
	trainOn TrainOn
	maxLen  int
	eos     string
	textEOS int
	st      statsBuilder
	vision  *visionTokens // vision runs
	w       *watch        // stops the workers between examples; hears how many are done
	done    atomic.Int64  // examples tokenized, both splits
}

// tokenized is the outcome for one example; examples are tokenized in
// parallel and their outcomes folded into the stats in row order, so the
// result does not depend on scheduling.
type tokenized struct {
	seq       Sequence
	pair      Pair
	isPair    bool
	err       *RowError
	drop      string // non-empty: no trainable token, for this reason
	inexact   bool
	longest   int
	truncated bool
}

func (t *tokenizing) run(exs []Example, skip bool, seqs *[]Sequence, pairs *[]Pair) error {
	out := make([]tokenized, len(exs))
	var next atomic.Int64
	var wg sync.WaitGroup
	workers := min(runtime.GOMAXPROCS(0), max(1, len(exs)/16))
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= len(exs) || t.w.err() != nil {
					return
				}
				if exs[i].Chosen != nil {
					out[i] = t.pair(&exs[i])
				} else {
					out[i] = t.sequence(&exs[i])
				}
				if n := t.done.Add(1); n%TokenizedEvery == 0 {
					t.w.tokenized(int(n))
				}
			}
		}()
	}
	wg.Wait()
	if err := t.w.err(); err != nil {
		return fmt.Errorf("data: tokenizing: %w", err)
	}
	t.w.tokenized(int(t.done.Load()))
	if f, ok := t.tok.(FallibleEncoder); ok {
		if err := f.Err(); err != nil {
			return fmt.Errorf("data: %w", err)
		}
	}
	// The examples are shuffled; refused rows are reported in file order,
	// so that the error (or the first skipped sample) names the earliest.
	var refused []*RowError
	for i := range out {
		if out[i].err != nil {
			refused = append(refused, out[i].err)
		}
	}
	sortFileOrder(refused, func(e *RowError) Location { return e.Loc }, t.st.Files)
	if len(refused) > 0 && refused[0].Reason == ReasonTemplate {
		// Even with skip_bad_rows: a template that fails on every
		// conversation would skip them all.
		if err := t.templateFault(refused[0]); err != nil {
			return err
		}
	}
	if len(refused) > 0 && !skip {
		return fmt.Errorf("data: %w", refused[0])
	}
	for _, e := range refused {
		t.st.bad(e)
	}
	var dropped []int // in file order below, as the refused rows
	for i := range out {
		r := &out[i]
		if r.err != nil {
			continue
		}
		t.st.LongestTokens = max(t.st.LongestTokens, r.longest)
		if r.inexact {
			t.st.InexactSpanRows++
		}
		if r.truncated {
			t.st.Truncated++
		}
		switch {
		case r.drop != "":
			dropped = append(dropped, i)
		case r.isPair:
			*pairs = append(*pairs, r.pair)
		default:
			*seqs = append(*seqs, r.seq)
		}
	}
	sortFileOrder(dropped, func(i int) Location { return exs[i].Loc }, t.st.Files)
	for _, i := range dropped {
		t.st.drop(exs[i].Loc, out[i].drop)
	}
	return nil
}

// probeConversation is a plain exchange that any chat template renders
// unless the template itself is at fault.
var probeConversation = []Message{{Role: "user", Content: "Hello"}, {Role: "assistant", Content: "Hi"}}

// templateFault tells a template's own error from a row's: when the
// template fails on probeConversation with the error the row got (an
// unknown filter, a method it lacks), the row's content is not the cause,
// and the error names the template and its line only. A row whose content
// trips the template (raise_exception on its roles) renders the probe
// fine, or fails it differently, and stays the row's error (nil here),
// which names both the row and the template.
func (t *tokenizing) templateFault(row *RowError) error {
	if t.tpl == nil {
		return nil
	}
	_, err := t.tpl.Render(probeConversation, t.render)
	if err == nil || err.Error() != row.Detail {
		return nil
	}
	return fmt.Errorf("data: %w", err)
}

// sortFileOrder sorts xs (stably) into the order of the data (fileOrder),
// so that what is reported of shuffled examples names the earliest rows.
func sortFileOrder[T any](xs []T, loc func(T) Location, files []string) {
	sort.SliceStable(xs, func(i, j int) bool { return fileOrder(loc(xs[i]), loc(xs[j]), files) })
}

// encodeChat renders msgs and labels the assistant spans from the
// (zero-based) assistant turn firstTrained on.
func (t *tokenizing) encodeChat(ex *Example, msgs []Message, firstTrained int, on TrainOn) (Sequence, bool, *RowError) {
	r, err := t.tpl.Render(msgs, t.render)
	if err != nil {
		return Sequence{}, false, &RowError{Loc: ex.Loc, Reason: ReasonTemplate, Detail: err.Error()}
	}
	spans := r.Assistant
	if firstTrained > len(spans) {
		firstTrained = len(spans)
	}
	spans = spans[firstTrained:]
	text := r.Text
	if t.vision != nil {
		if text, spans, err = t.vision.expand(text, spans, len(ex.Images)); err != nil {
			return Sequence{}, false, &RowError{Loc: ex.Loc, Reason: ReasonTemplate, Detail: err.Error()}
		}
	}
	ids, in, exact := EncodeSpans(t.tok, text, spans, t.tpl.AddSpecialTokens)
	seq := toSequence(ids, in, on, ex.Loc)
	if t.vision != nil {
		if rowErr := t.vision.finish(&seq, ex); rowErr != nil {
			return Sequence{}, false, rowErr
		}
	}
	return seq, !exact, nil
}

func (t *tokenizing) sequence(ex *Example) tokenized {
	var r tokenized
	if t.tpl == nil {
		ids := t.tok.Encode(ex.Text, true)
		if t.textEOS >= 0 && (len(ids) == 0 || ids[len(ids)-1] != t.textEOS) {
			ids = append(ids, t.textEOS)
		}
		r.seq = toSequence(ids, nil, TrainOnAll, ex.Loc)
	} else if r.seq, r.inexact, r.err = t.encodeChat(ex, ex.Messages, 0, t.trainOn); r.err != nil {
		return r
	}
	r.longest = r.seq.Len()
	hadLabels := r.seq.NumTrainable() > 0
	r.seq.truncate(t.maxLen)
	r.truncated = r.seq.Truncated
	if t.vision != nil && r.truncated {
		if r.err = t.vision.checkTruncated(&r.seq, ex, t.maxLen); r.err != nil {
			return r
		}
	}
	if r.seq.NumTrainable() == 0 {
		switch {
		case !hasAssistant(ex.Messages) && t.tpl != nil:
			r.drop = DropNoAssistant
		case hadLabels:
			r.drop = DropCutOff
		default:
			r.drop = DropNoTokens
		}
	}
	return r
}

// pair renders prompt+chosen and prompt+rejected; labels cover the
// responses only, whatever TrainOn says (preference losses compare the
// responses' log-probabilities).
func (t *tokenizing) pair(ex *Example) tokenized {
	r := tokenized{isPair: true}
	first := 0
	for _, m := range ex.Messages {
		if m.Role == "assistant" {
			first++
		}
	}
	for i, resp := range [][]Message{ex.Chosen, ex.Rejected} {
		msgs := append(append([]Message(nil), ex.Messages...), resp...)
		seq, inexact, err := t.encodeChat(ex, msgs, first, TrainOnResponses)
		if err != nil {
			r.err = err
			return r
		}
		r.inexact = r.inexact || inexact
		r.longest = max(r.longest, seq.Len())
		seq.truncate(t.maxLen)
		r.truncated = r.truncated || seq.Truncated
		if i == 0 {
			r.pair.Chosen = seq
		} else {
			r.pair.Rejected = seq
		}
	}
	if r.pair.Chosen.NumTrainable() == 0 || r.pair.Rejected.NumTrainable() == 0 {
		r.drop = DropCutOff
	}
	return r
}

// fileOrder says whether a comes before b in the data: by file (in the
// order files lists them, the order they were read), then line, then row.
func fileOrder(a, b Location, files []string) bool {
	if a.File != b.File {
		ia, ib := slices.Index(files, a.File), slices.Index(files, b.File)
		if ia != ib {
			return uint(ia) < uint(ib) // a file not listed (-1) comes last
		}
		return a.File < b.File
	}
	if a.Line != b.Line {
		return a.Line < b.Line
	}
	return a.Row < b.Row
}

func hasAssistant(msgs []Message) bool {
	for _, m := range msgs {
		if m.Role == "assistant" {
			return true
		}
	}
	return false
}

// noTrainableError explains why nothing is left to train on.
func (p *Prepared) noTrainableError(opts Options, trainOn TrainOn) error {
	st := &p.Stats
	var b strings.Builder
	fmt.Fprintf(&b, "data: none of the %d rows of %s has a token to train on", st.Rows, strings.Join(st.Files, ", "))
	reasons := make([]string, 0, len(st.DroppedReasons))
	for r := range st.DroppedReasons {
		reasons = append(reasons, r)
	}
	sort.Strings(reasons)
	for _, r := range reasons {
		fmt.Fprintf(&b, "\n  %d rows: %s", st.DroppedReasons[r], r)
	}
	if st.BadRows > 0 {
		fmt.Fprintf(&b, "\n  %d rows skipped as unreadable", st.BadRows)
	}
	for _, s := range st.BadRowSamples {
		b.WriteString("\n  skipped: " + s)
	}
	for _, s := range st.DroppedSamples {
		b.WriteString("\n  e.g. " + s)
	}
	b.WriteString("\nfix: ")
	switch {
	case st.DroppedReasons[DropCutOff] > 0:
		fmt.Fprintf(&b, "raise data.max_length above %d (the longest row has %d tokens) so the responses fit", opts.MaxLength, st.LongestTokens)
	case st.DroppedReasons[DropNoAssistant] > 0 && trainOn == TrainOnResponses:
		b.WriteString("the rows have no assistant turns: check data.format and data.columns (role names must be assistant/gpt), or set data.train_on: all to train on every token")
	case st.DroppedReasons[DropNoTokens] > 0:
		fmt.Fprintf(&b, "check that data.template (%s) matches the model, or set data.train_on: all", st.Template)
	default:
		b.WriteString("set data.skip_bad_rows: false to see the first bad row, and check data.format and data.columns")
	}
	return errors.New(b.String())
}

func (p *Prepared) batch(seqs []Sequence, pairs []Pair, opts Options, padID int32, r *rand.Rand) ([]Batch, error) {
	if opts.Packing {
		var bs []Batch
		var err error
		if pairs != nil {
			// A pair is packed whole, and each side may reach MaxLength.
			bs, err = PackPairs(pairs, max(opts.BatchTokens, 2*opts.MaxLength))
		} else {
			bs, err = Pack(seqs, opts.BatchTokens)
		}
		if err == nil {
			ShuffleBatches(bs, r)
		}
		return bs, err
	}
	if pairs != nil {
		return PadPairs(pairs, opts.MicroBatch, padID, r)
	}
	return PadBatches(seqs, opts.MicroBatch, padID, r)
}

func splitStats(seqs []Sequence, pairs []Pair, batches []Batch, maxLen int) SplitStats {
	var lengths []int
	s := SplitStats{Batches: len(batches)}
	add := func(q *Sequence) {
		s.Sequences++
		s.Tokens += q.Len()
		s.TrainableTokens += q.NumTrainable()
		lengths = append(lengths, q.Len())
	}
	for i := range seqs {
		add(&seqs[i])
	}
	for i := range pairs {
		add(&pairs[i].Chosen)
		add(&pairs[i].Rejected)
	}
	total := 0
	for i := range batches {
		total += batches[i].NumTokens()
	}
	s.PaddingTokens = total - s.Tokens
	s.Lengths = NewHistogram(lengths, maxLen)
	return s
}

// NewHistogram buckets lengths at powers of two from 32 up to maxLen.
func NewHistogram(lengths []int, maxLen int) Histogram {
	var h Histogram
	for e := 32; ; e *= 2 {
		if e >= maxLen {
			h.Edges = append(h.Edges, maxLen)
			break
		}
		h.Edges = append(h.Edges, e)
	}
	h.Counts = make([]int, len(h.Edges))
	if len(lengths) == 0 {
		return h
	}
	sorted := append([]int(nil), lengths...)
	sort.Ints(sorted)
	sum := 0
	for _, l := range sorted {
		sum += l
		i := sort.SearchInts(h.Edges, l)
		if i == len(h.Edges) {
			i--
		}
		h.Counts[i]++
	}
	h.Min, h.Max = sorted[0], sorted[len(sorted)-1]
	h.Mean = float64(sum) / float64(len(sorted))
	h.P50 = sorted[(len(sorted)-1)/2]
	h.P95 = sorted[int(math.Ceil(0.95*float64(len(sorted))))-1]
	return h
}

// RenderOptionsFor returns render options carrying the tokenizer's own
// BOS and EOS text from its tokenizer_config.json, so that a template
// prints the same special tokens in training (Prepare) and at inference.
func RenderOptionsFor(tokenizerConfig map[string]any) RenderOptions {
	var o RenderOptions
	o.BOS, _ = specialText(tokenizerConfig, "bos_token")
	o.EOS, _ = specialText(tokenizerConfig, "eos_token")
	o.SpecialTokens = specialTokens(tokenizerConfig)
	return o
}

// specialTokens lists the text of tokenizer_config.json's added tokens
// marked special, in id order.
func specialTokens(cfg map[string]any) []string {
	added, _ := cfg["added_tokens_decoder"].(map[string]any)
	ids := make([]int, 0, len(added))
	byID := map[int]string{}
	for k, v := range added {
		tok, _ := v.(map[string]any)
		content, _ := tok["content"].(string)
		special, _ := tok["special"].(bool)
		id, err := strconv.Atoi(k)
		if err != nil || content == "" || !special {
			continue
		}
		ids = append(ids, id)
		byID[id] = content
	}
	sort.Ints(ids)
	out := make([]string, len(ids))
	for i, id := range ids {
		out[i] = byID[id]
	}
	return out
}

// specialText reads a special token's text from tokenizer_config.json,
// where it is a string or an object with "content".
func specialText(cfg map[string]any, key string) (string, bool) {
	switch v := cfg[key].(type) {
	case string:
		return v, v != ""
	case map[string]any:
		s, ok := v["content"].(string)
		return s, ok && s != ""
	}
	return "", false
}

// padTokenID is the tokenizer's pad token, else its first EOS id, else 0.
func padTokenID(tok Tokenizer) int32 {
	if s, ok := specialText(tok.Config(), "pad_token"); ok {
		if id, ok := tok.TokenID(s); ok {
			return int32(id)
		}
	}
	if ids := tok.EOSIDs(); len(ids) > 0 {
		return int32(ids[0])
	}
	return 0
}

func appendUnique(ids []int, id int) []int {
	for _, x := range ids {
		if x == id {
			return ids
		}
	}
	return append(ids, id)
}
