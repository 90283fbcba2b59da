package engine

import (
	"context"
	"fmt"
	"sort"
	"strings"

	"whet/datasets"
	"whet/datasets/tokenizer"
)

// DataOptions are the run's data settings with what the run derives from
// the rest of its config: the method's objective, and batches of one
// sequence (or pair) per row, since the trainer lays MicroBatch rows end
// to end and never needs padding.
func DataOptions(cfg RunConfig) datasets.Options {
	o := cfg.Data
	o.Objective = cfg.DataObjective()
	o.MicroBatch, o.BatchTokens = 1, o.MaxLength
	return o
}

// DataObjective is what the run's method learns from: preference pairs for
// DPO, prompts for GRPO, single answers for the others.
func (c RunConfig) DataObjective() datasets.Objective {
	switch c.Method {
	case "dpo":
		return datasets.ObjectivePreference
	case "grpo":
		return datasets.ObjectivePrompts
	}
	return datasets.ObjectiveSFT
}

// CheckDataFormat applies the data rule of the run's method to a dataset
// of the given format (the studio's data page, after its preview).
func CheckDataFormat(c RunConfig, path, format string) error {
	return c.DataObjective().Check(path, datasets.Format(format))
}

func init() {
	PrepareData = prepareWithDatasets
}

// prepareWithDatasets loads the model folder's tokenizer and runs the
// data pipeline over the run's files.
func prepareWithDatasets(ctx context.Context, cfg RunConfig, progress func(datasets.Progress)) (*PreparedData, error) {
	tok, err := tokenizer.Load(cfg.Model)
	if err != nil {
		return nil, err
	}
	if cfg.Method == "grpo" {
		opts := DataOptions(cfg)
		if _, err := visionDataSettings(&opts, cfg.Method, cfg.Model); err != nil {
			return nil, err
		}
		// Prompts only: the completions are generated while training.
		ps, err := datasets.PreparePromptsContext(ctx, opts, tok, progress)
		if err != nil {
			return nil, err
		}
		out := &PreparedData{Tokenizer: tok, Template: ps.Template, Prompts: ps, Notes: StatsLines(ps.Stats)}
		// Held-out prompts are answered greedily in the samples (GRPO has
		// no eval loss to spend them on).
		for _, ex := range ps.Eval {
			if n := len(ex.Messages); n > 0 && ex.Messages[n-1].Role == "user" {
				out.EvalPrompts = append(out.EvalPrompts, ex.Messages[n-1].Content)
			}
		}
		return out, nil
	}
	opts := DataOptions(cfg)
	kind, err := visionDataSettings(&opts, cfg.Method, cfg.Model)
	if err != nil {
		return nil, err
	}
	p, err := datasets.PrepareContext(ctx, opts, tok, progress)
	if err != nil {
		return nil, err
	}
	out := &PreparedData{Train: p.TrainBatches, Eval: p.EvalBatches, Tokenizer: tok, Template: p.Template,
		Notes: StatsLines(p.Stats), Images: p.Stats.Images, Longest: min(p.Stats.LongestTokens, opts.MaxLength)}
	// A Gemma 3 vision model with text data trains as a text model, as
	// before; Mllama has no text-only loader, so it always trains as itself.
	if kind == VisionMllama || kind != "" && p.Stats.Images > 0 {
		out.Vision = kind
	}
	return out, nil
}

// Plural is n and word, with an s unless n is 1 ("1 row", "2 rows"):
// the data lines and the studio count things one way.
func Plural(n int, word string) string {
	if n == 1 {
		return fmt.Sprintf("1 %s", word)
	}
	return fmt.Sprintf("%d %ss", n, word)
}

// StatsLines renders data statistics for logs and the headless output.
func StatsLines(s datasets.Stats) []string {
	tpl := s.Template
	if tpl == "" {
		tpl = "none"
	} else if s.TemplateDetected {
		tpl += " (detected)"
	}
	lines := []string{
		fmt.Sprintf("data: %s, format %s, template %s", strings.Join(s.Files, ", "), s.Format, tpl),
		fmt.Sprintf("data: %s, %s; train %s (%s, %d trained), eval %s",
			Plural(s.Rows, "row"), Plural(s.Examples, "example"), Plural(s.Train.Sequences, "sequence"),
			Plural(s.Train.Tokens, "token"), s.Train.TrainableTokens, Plural(s.Eval.Sequences, "sequence")),
	}
	if s.Format == datasets.FormatPrompt {
		// GRPO's prompts: the tokens trained on are generated later.
		lines[1] = fmt.Sprintf("data: %s; train %s, eval %s", Plural(s.Rows, "row"), Plural(s.Train.Sequences, "prompt"), Plural(s.Eval.Sequences, "prompt"))
	}
	if s.Truncated > 0 {
		lines = append(lines, fmt.Sprintf("data: %s truncated to max_length (longest was %d tokens)", Plural(s.Truncated, "example"), s.LongestTokens))
	}
	for _, group := range []struct {
		what    string
		n       int
		reasons map[string]int
	}{{"skipped as unreadable", s.BadRows, s.BadRowReasons}, {"dropped", s.Dropped, s.DroppedReasons}} {
		if group.n == 0 {
			continue
		}
		var rs []string
		for r, c := range group.reasons {
			rs = append(rs, fmt.Sprintf("%d %s", c, r))
		}
		sort.Strings(rs)
		lines = append(lines, fmt.Sprintf("data: %d rows %s: %s", group.n, group.what, strings.Join(rs, "; ")))
	}
	for _, w := range s.Warnings {
		lines = append(lines, "data: warning: "+w)
	}
	return lines
}
