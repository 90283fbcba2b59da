package datasets

import (
	"context"
	"fmt"
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
	return PreparePromptsContext(context.Background(), opts, tok, nil)
}

// PreparePromptsContext is PreparePrompts that stops when ctx ends and
// tells progress how far the read has come, as PrepareContext does (it
// tokenizes nothing, so it reports only the reading).
func PreparePromptsContext(ctx context.Context, opts Options, tok Tokenizer, progress func(Progress)) (*PromptSet, error) {
	w := newWatch(ctx, progress)
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	format, _ := ParseFormat(opts.Format)
	cols := Columns(opts.Columns)
	p := &Prepared{}
	st := statsBuilder{&p.Stats}
	setting, err := runTemplate(opts) // before the rows, as in PrepareContext
	if err != nil {
		return nil, err
	}
	format, trainEx, evalEx, _, err := readSplitExamples(opts, format, cols, ObjectivePrompts, st, w)
	if err != nil {
		return nil, err
	}
	if len(trainEx) == 0 {
		return nil, fmt.Errorf("data: %s has no usable prompt rows", opts.Path)
	}
	if err := p.pickTemplate(opts, setting, tok, format); err != nil {
		return nil, err
	}
	p.Stats.Examples = len(trainEx) + len(evalEx)
	p.Stats.Train.Sequences, p.Stats.Eval.Sequences = len(trainEx), len(evalEx)
	return &PromptSet{Train: trainEx, Eval: evalEx, Template: p.Template, Stats: p.Stats}, nil
}
