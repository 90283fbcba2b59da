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
// sequence length or stays the same, so the peak never falls as it grows
// (TestPeakGrowsWithSeqLen checks it) but at one place: where the
// engine's default MLP tiling (engine.MLPRowChunk, Options.MLPChunk 0)
// starts, gate and up stop being saved per layer and the peak drops. So
// with that default the search first finds the switch, then searches the
// tiled lengths past it, and the untiled ones before it only when the
// first tiled length does not fit.
//
// The answer is what the memory plan models, no more: the engine keeps
// checkpoints on the device and materialises per-layer MLP and logits
// chunks as the plan says; see docs/fit.md for what it does not model.
func MaxSeqLen(cfg *engine.ModelConfig, opts Options, available int64) (MaxSeq, error) {
	return MaxSeqLenHost(cfg, opts, available, 0)
}

// MaxSeqLenHost is MaxSeqLen with host memory as well: a plan fits when
// its Peak is within device bytes and its HostPeak (the offloaded
// checkpoints) within host bytes (host 0 or less: not checked). With
// OffloadCheckpoints "auto" each length is planned as ResolveOffload
// decides it: the checkpoints on the device while that fits, else
// offloaded. Both the device-only and the offloaded plan grow with the
// sequence, so "either fits" still turns false only once.
func MaxSeqLenHost(cfg *engine.ModelConfig, opts Options, device, host int64) (MaxSeq, error) {
	plan := func(t int) (*MemPlan, error) {
		o := opts
		o.SeqLen = t
		var p *MemPlan
		var err error
		if o, err = ResolveOffload(cfg, o, device); err == nil {
			p, err = Plan(cfg, o)
		}
		if err != nil {
			return nil, fmt.Errorf("memplan: max sequence length, at %d tokens: %w", t, err)
		}
		return p, nil
	}
	fits := func(p *MemPlan) bool { return p.Peak() <= device && (host <= 0 || p.HostPeak() <= host) }
	from, to := 1, MaxSearchSeqLen
	if opts.MLPChunk == 0 {
		tiled := func(p *MemPlan) bool { return mlpRows(cfg, p.Options, p.Tokens) < p.Tokens }
		last, err := plan(MaxSearchSeqLen)
		if err != nil {
			return MaxSeq{}, err
		}
		if tiled(last) {
			// The first tiled length: untiled lo, tiled hi.
			lo, hi := 0, MaxSearchSeqLen
			for hi-lo > 1 {
				mid := lo + (hi-lo)/2
				p, err := plan(mid)
				if err != nil {
					return MaxSeq{}, err
				}
				if tiled(p) {
					hi = mid
				} else {
					lo = mid
				}
			}
			p, err := plan(hi)
			if err != nil {
				return MaxSeq{}, err
			}
			if fits(p) {
				from = hi
			} else if hi > 1 {
				to = hi - 1
			} else {
				return MaxSeq{Next: p}, nil
			}
		}
	}
	return longestFit(plan, from, to, fits)
}

// longestFit bisects [from, to], over which the peaks never fall, for the
// longest length that fits; from fits unless it is 1.
func longestFit(plan func(int) (*MemPlan, error), from, to int, fits func(*MemPlan) bool) (MaxSeq, error) {
	lo, err := plan(from)
	if err != nil {
		return MaxSeq{}, err
	}
	if !fits(lo) {
		return MaxSeq{Next: lo}, nil
	}
	// Grow an upper bound that does not fit, then bisect: good fits, bad
	// does not.
	good, goodPlan := from, lo
	bad := 0
	var badPlan *MemPlan
	for t := from * 2; ; t *= 2 {
		if t > to {
			t = to
		}
		p, err := plan(t)
		if err != nil {
			return MaxSeq{}, err
		}
		if !fits(p) {
			bad, badPlan = t, p
			break
		}
		good, goodPlan = t, p
		if t == to {
			if to == MaxSearchSeqLen {
				return MaxSeq{SeqLen: t, Plan: p, Capped: true}, nil
			}
			// to is the last untiled length and the first tiled one did not fit.
			next, err := plan(to + 1)
			if err != nil {
				return MaxSeq{}, err
			}
			return MaxSeq{SeqLen: t, Plan: p, Next: next}, nil
		}
	}
	for bad-good > 1 {
		mid := good + (bad-good)/2
		p, err := plan(mid)
		if err != nil {
			return MaxSeq{}, err
		}
		if !fits(p) {
			bad, badPlan = mid, p
		} else {
			good, goodPlan = mid, p
		}
	}
	return MaxSeq{SeqLen: good, Plan: goodPlan, Next: badPlan}, nil
}
