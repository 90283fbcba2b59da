package datasets

import (
	"fmt"
	"math"
)

// PromptSet is prompt-only data ready for GRPO: the rows in training order
// (shuffled with the data seed) and the held-out ones, with the chat
// template the prompts are rendered with. The completions are generated
// during training, so nothing is tokenized or batched here.
type PromptSet struct {
	Train, Eval []Example
	Template    *Template
	Stats       Stats
}

// PreparePrompts reads, checks and splits a prompt-only dataset (format
// prompt: a prompt column, an optional answer column). The format must be
// prompt, named or detected; opts.Objective is not needed.
func PreparePrompts(opts Options, tok Tokenizer) (*PromptSet, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	format, _ := ParseFormat(opts.Format)
	cols := Columns(opts.Columns)
	p := &Prepared{}
	st := statsBuilder{&p.Stats}
	st.BadRowReasons = map[string]int{}
	st.DroppedReasons = map[string]int{}
	trainRecs, err := readRecords(opts.Path, opts.Encoding, opts.SkipBadRows, st)
	if err != nil {
		return nil, err
	}
	var evalRecs []Record
	if opts.EvalPath != "" {
		if evalRecs, err = readRecords(opts.EvalPath, opts.Encoding, opts.SkipBadRows, st); err != nil {
			return nil, err
		}
	}
	if format == FormatAuto {
		if format, err = DetectFormat(trainRecs, cols); err != nil {
			return nil, fmt.Errorf("data: %w", err)
		}
	}
	p.Stats.Format = format
	if err := ObjectivePrompts.Check(opts.Path, format); err != nil {
		return nil, fmt.Errorf("data: %w", err)
	}
	trainEx, err := toExamples(trainRecs, format, cols, opts.SkipBadRows, st)
	if err != nil {
		return nil, err
	}
	evalEx, err := toExamples(evalRecs, format, cols, opts.SkipBadRows, st)
	if err != nil {
		return nil, err
	}
	// The same shuffle and split as Prepare's.
	rng := NewRand(opts.Seed)
	rng.Shuffle(len(trainEx), func(i, j int) { trainEx[i], trainEx[j] = trainEx[j], trainEx[i] })
	if opts.EvalPath == "" && opts.EvalSplit > 0 && len(trainEx) > 1 {
		n := int(math.Round(opts.EvalSplit * float64(len(trainEx))))
		n = min(max(n, 1), len(trainEx)-1)
		evalEx = trainEx[:n]
		trainEx = trainEx[n:]
	}
	if len(trainEx) == 0 {
		return nil, fmt.Errorf("data: %s has no usable prompt rows", opts.Path)
	}
	if err := p.pickTemplate(opts, tok, format); err != nil {
		return nil, err
	}
	p.Stats.Examples = len(trainEx) + len(evalEx)
	p.Stats.Train.Sequences, p.Stats.Eval.Sequences = len(trainEx), len(evalEx)
	return &PromptSet{Train: trainEx, Eval: evalEx, Template: p.Template, Stats: p.Stats}, nil
}
