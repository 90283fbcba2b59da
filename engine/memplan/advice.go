package memplan

import (
	"fmt"

	"whet/engine"
)

// AdviceKind names the change a piece of advice makes.
type AdviceKind string

const (
	AdviseCheckpointing AdviceKind = "checkpointing"
	AdviseMicroBatch    AdviceKind = "micro-batch"
	AdviseSeqLen        AdviceKind = "max-length"
	AdviseLoRA          AdviceKind = "lora"
	AdviseQLoRA         AdviceKind = "qlora"
	AdviseSmallerModel  AdviceKind = "smaller-model"
)

// Advice is one change that lowers the plan, with the plan it gives.
type Advice struct {
	Kind    AdviceKind
	Summary string  // what to change, in words
	Options Options // the complete options with the change applied
	// Model and Config are set when the advice is another model.
	Model  string
	Config *engine.ModelConfig
	Plan   *MemPlan
	Fits   bool
}

// Alternative is a model the advice may propose instead of the current one.
type Alternative struct {
	Name   string
	Config *engine.ModelConfig
}

// minAdviceSeqLen is the shortest maximum length the advice proposes:
// below it most chat examples would be cut.
const minAdviceSeqLen = 256

// Advise proposes changes, least harmful first, when the plan for cfg and
// opts needs more than available bytes; it returns nil when the plan fits.
//
// Activation checkpointing costs only recomputation, and a smaller
// micro-batch with more accumulation keeps the effective batch, so those
// two are cumulative: every later piece of advice includes them. Each
// later piece then makes one lossy change on top of them, so any one can be
// applied alone:
//
//  1. activation checkpointing (if off)
//  2. the largest micro-batch dividing the current one that fits, with
//     gradient accumulation raised to keep micro-batch × accumulation
//  3. the longest halved maximum length (not below 256) that fits
//  4. full fine-tuning only: LoRA instead
//  5. QLoRA instead of LoRA (or of full fine-tuning)
//  6. a smaller model: the first of alts with fewer parameters that fits;
//     callers order alts by preference (same family first, largest first)
//
// A step that cannot fit even at its extreme is still listed, with Fits
// false, except the smaller model, which is listed only when one fits.
func Advise(cfg *engine.ModelConfig, opts Options, available int64, alts []Alternative) ([]Advice, error) {
	plan, err := Plan(cfg, opts)
	if err != nil {
		return nil, err
	}
	if plan.Peak() <= available {
		return nil, nil
	}
	o := plan.Options
	var out []Advice
	try := func(kind AdviceKind, summary string, c *engine.ModelConfig, model string, x Options) (Advice, error) {
		p, err := Plan(c, x)
		if err != nil {
			return Advice{}, fmt.Errorf("memplan: advice %s: %w", kind, err)
		}
		a := Advice{Kind: kind, Summary: summary, Options: p.Options, Plan: p, Fits: p.Peak() <= available}
		if model != "" {
			a.Model, a.Config = model, c
		}
		return a, nil
	}

	// 1. checkpointing
	safe := o
	if !o.Checkpointing {
		safe.Checkpointing = true
		a, err := try(AdviseCheckpointing, "turn on activation checkpointing (recomputes each layer in backward, about a third more compute)", cfg, "", safe)
		if err != nil {
			return nil, err
		}
		out = append(out, a)
	}

	// 2. smaller micro-batch, same effective batch
	if o.MicroBatch > 1 {
		var best Advice
		for mb := o.MicroBatch - 1; mb >= 1; mb-- {
			if o.MicroBatch%mb != 0 {
				continue
			}
			x := safe
			x.MicroBatch = mb
			x.GradAccum = o.GradAccum * o.MicroBatch / mb
			a, err := try(AdviseMicroBatch, fmt.Sprintf("micro-batch %d with %d-step gradient accumulation (same effective batch of %d)", mb, x.GradAccum, o.MicroBatch*o.GradAccum), cfg, "", x)
			if err != nil {
				return nil, err
			}
			best = a
			if a.Fits {
				break
			}
		}
		out = append(out, best)
		safe = best.Options
	}

	// 3. shorter maximum length
	if o.SeqLen/2 >= minAdviceSeqLen {
		var best Advice
		for t := o.SeqLen / 2; t >= minAdviceSeqLen; t /= 2 {
			x := safe
			x.SeqLen = t
			a, err := try(AdviseSeqLen, fmt.Sprintf("max length %d tokens (longer examples are truncated or dropped)", t), cfg, "", x)
			if err != nil {
				return nil, err
			}
			best = a
			if a.Fits {
				break
			}
		}
		out = append(out, best)
	}

	// 4. full fine-tuning → LoRA; 5. → QLoRA
	base := o.Base()
	withBase := func(m Method) Options {
		x := safe
		if x.Method == DPO {
			x.DPOBase = m
		} else {
			x.Method = m
		}
		return x
	}
	if base == Full {
		a, err := try(AdviseLoRA, "LoRA adapters (r 16, all projections) instead of full fine-tuning", cfg, "", withBase(LoRA))
		if err != nil {
			return nil, err
		}
		out = append(out, a)
	}
	if base != QLoRA {
		a, err := try(AdviseQLoRA, "QLoRA: base weights in 4-bit NF4, LoRA adapters on top", cfg, "", withBase(QLoRA))
		if err != nil {
			return nil, err
		}
		out = append(out, a)
	}

	// 6. smaller model
	params := ParamCount(cfg)
	for _, alt := range alts {
		if alt.Config == nil || ParamCount(alt.Config) >= params {
			continue
		}
		a, err := try(AdviseSmallerModel, "a smaller model: "+alt.Name, alt.Config, alt.Name, safe)
		if err != nil {
			return nil, err
		}
		if a.Fits {
			out = append(out, a)
			break
		}
	}
	return out, nil
}
