package memplan

import (
	"fmt"

	"whet/engine"
)

// MaxSearchSeqLen is the longest context MaxSeqLen tries: 16M tokens, past
// any model's trained positions. A plan that fits there is reported as
// "at least" this.
const MaxSearchSeqLen = 1 << 24

// MaxSeq is MaxSeqLen's answer.
type MaxSeq struct {
	// SeqLen is the longest sequence length whose plan fits (0 when not
	// even one token does); Plan is its plan (nil when SeqLen is 0).
	SeqLen int
	Plan   *MemPlan
	// Next is the plan one token longer, the first that does not fit (nil
	// when SeqLen is MaxSearchSeqLen or 0).
	Next *MemPlan
	// Capped is true when MaxSearchSeqLen itself fits.
	Capped bool
}

// MaxSeqLen finds, by binary search over the plan, the longest sequence
// length (opts.SeqLen is ignored) whose peak fits in available bytes with
// every other option as given. Every buffer of the plan grows with the
// sequence length or stays the same, so the peak never falls as it grows,
// which is what the search relies on (TestPeakGrowsWithSeqLen checks it).
//
// The answer is what the memory plan models, no more: the engine keeps
// checkpoints on the device and materialises per-layer MLP and logits
// chunks as the plan says; see docs/fit.md for what it does not model.
func MaxSeqLen(cfg *engine.ModelConfig, opts Options, available int64) (MaxSeq, error) {
	plan := func(t int) (*MemPlan, error) {
		o := opts
		o.SeqLen = t
		p, err := Plan(cfg, o)
		if err != nil {
			return nil, fmt.Errorf("memplan: max sequence length, at %d tokens: %w", t, err)
		}
		return p, nil
	}
	lo, err := plan(1)
	if err != nil {
		return MaxSeq{}, err
	}
	if lo.Peak() > available {
		return MaxSeq{Next: lo}, nil
	}
	// Grow an upper bound that does not fit, then bisect: good fits, bad
	// does not.
	good, goodPlan := 1, lo
	bad := 0
	var badPlan *MemPlan
	for t := 2; ; t *= 2 {
		if t > MaxSearchSeqLen {
			t = MaxSearchSeqLen
		}
		p, err := plan(t)
		if err != nil {
			return MaxSeq{}, err
		}
		if p.Peak() > available {
			bad, badPlan = t, p
			break
		}
		good, goodPlan = t, p
		if t == MaxSearchSeqLen {
			return MaxSeq{SeqLen: t, Plan: p, Capped: true}, nil
		}
	}
	for bad-good > 1 {
		mid := good + (bad-good)/2
		p, err := plan(mid)
		if err != nil {
			return MaxSeq{}, err
		}
		if p.Peak() > available {
			bad, badPlan = mid, p
		} else {
			good, goodPlan = mid, p
		}
	}
	return MaxSeq{SeqLen: good, Plan: goodPlan, Next: badPlan}, nil
}
