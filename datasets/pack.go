package datasets

import (
	"fmt"
	"math/rand/v2"
	"sort"
)

// Pack lays sequences end to end into batches of at most maxTokens tokens,
// by best-fit decreasing: longest first, each into the fullest batch that
// still has room. Every sequence keeps its own positions (restarting at 0)
// and boundaries, so attention never crosses sequences. Batches come out
// longest first; shuffle them for training (ShuffleBatches).
func Pack(seqs []Sequence, maxTokens int) ([]Batch, error) {
	units := make([][]Sequence, len(seqs))
	for i := range seqs {
		units[i] = seqs[i : i+1]
	}
	return packUnits(units, maxTokens)
}

// Pair is a preference example: the same prompt with a chosen and a
// rejected response. Labels cover the responses only.
type Pair struct {
	Chosen, Rejected Sequence
}

// PackPairs packs preference pairs like Pack, keeping each pair together:
// in every batch, sequence 2k is a chosen response and 2k+1 its rejected
// twin.
func PackPairs(pairs []Pair, maxTokens int) ([]Batch, error) {
	units := make([][]Sequence, len(pairs))
	for i := range pairs {
		units[i] = []Sequence{pairs[i].Chosen, pairs[i].Rejected}
	}
	return packUnits(units, maxTokens)
}

func unitLen(u []Sequence) int {
	n := 0
	for i := range u {
		n += len(u[i].Tokens)
	}
	return n
}

func packUnits(units [][]Sequence, maxTokens int) ([]Batch, error) {
	if maxTokens <= 0 {
		return nil, fmt.Errorf("pack: token budget %d must be positive", maxTokens)
	}
	order := make([]int, len(units))
	for i := range order {
		order[i] = i
		if n := unitLen(units[i]); n > maxTokens {
			return nil, fmt.Errorf("pack: %s has %d tokens, more than the %d a batch holds (truncate first)", units[i][0].Source, n, maxTokens)
		}
	}
	sort.SliceStable(order, func(a, b int) bool { return unitLen(units[order[a]]) > unitLen(units[order[b]]) })

	// bins holds the indices of open batches sorted by free room, smallest
	// first, so the best fit is the first with room >= need.
	var members [][]int
	var free []int
	var bins []int
	for _, u := range order {
		need := unitLen(units[u])
		if need == 0 {
			continue
		}
		k := sort.Search(len(bins), func(i int) bool { return free[bins[i]] >= need })
		var b int
		if k < len(bins) {
			b = bins[k]
			bins = append(bins[:k], bins[k+1:]...)
		} else {
			b = len(members)
			members = append(members, nil)
			free = append(free, maxTokens)
		}
		members[b] = append(members[b], u)
		free[b] -= need
		if free[b] > 0 {
			at := sort.Search(len(bins), func(i int) bool { return free[bins[i]] >= free[b] })
			bins = append(bins, 0)
			copy(bins[at+1:], bins[at:])
			bins[at] = b
		}
	}
	batches := make([]Batch, len(members))
	for i, m := range members {
		var seqs []Sequence
		for _, u := range m {
			seqs = append(seqs, units[u]...)
		}
		batches[i] = layOut(seqs, nil)
	}
	return batches, nil
}

// layOut builds a Batch from sequences laid end to end. padTo, when given,
// pads sequence i to padTo[i] tokens with padID tokens whose targets are
// ignored (padding stays inside its sequence's span, after the real
// tokens, so causal attention never lets a real token see it).
func layOut(seqs []Sequence, pad *padSpec) Batch {
	total := 0
	for i := range seqs {
		total += seqLenPadded(seqs, i, pad)
	}
	b := Batch{
		Tokens:    make([]int32, 0, total),
		Targets:   make([]int32, 0, total),
		Positions: make([]int32, 0, total),
		SeqStarts: make([]int32, 0, len(seqs)+1),
	}
	for i := range seqs {
		s := &seqs[i]
		b.SeqStarts = append(b.SeqStarts, int32(len(b.Tokens)))
		b.Images = append(b.Images, s.Images...)
		n := len(s.Tokens)
		for t := 0; t < n; t++ {
			b.Tokens = append(b.Tokens, s.Tokens[t])
			b.Positions = append(b.Positions, int32(t))
			target := int32(IgnoreIndex)
			if t+1 < n && s.Labels[t+1] != IgnoreIndex {
				target = s.Labels[t+1]
			}
			b.Targets = append(b.Targets, target)
		}
		for t := n; t < seqLenPadded(seqs, i, pad); t++ {
			b.Tokens = append(b.Tokens, pad.id)
			b.Positions = append(b.Positions, int32(t))
			b.Targets = append(b.Targets, IgnoreIndex)
		}
	}
	b.SeqStarts = append(b.SeqStarts, int32(len(b.Tokens)))
	return b
}

type padSpec struct {
	id  int32
	len int // every sequence is padded to this length
}

func seqLenPadded(seqs []Sequence, i int, pad *padSpec) int {
	if pad != nil && pad.len > len(seqs[i].Tokens) {
		return pad.len
	}
	return len(seqs[i].Tokens)
}

// PadBatches groups sequences of similar length into batches of batchSize
// sequences, each padded with padID to the longest in its batch (length
// grouping as transformers' group_by_length does: shuffle, sort by length
// within mega-batches of 50 batches, cut). The batch order is shuffled.
func PadBatches(seqs []Sequence, batchSize int, padID int32, rng *rand.Rand) ([]Batch, error) {
	units := make([][]Sequence, len(seqs))
	for i := range seqs {
		units[i] = seqs[i : i+1]
	}
	return padUnits(units, batchSize, padID, rng)
}

// PadPairs is PadBatches for preference pairs: batchSize pairs per batch,
// chosen and rejected adjacent.
func PadPairs(pairs []Pair, batchSize int, padID int32, rng *rand.Rand) ([]Batch, error) {
	units := make([][]Sequence, len(pairs))
	for i := range pairs {
		units[i] = []Sequence{pairs[i].Chosen, pairs[i].Rejected}
	}
	return padUnits(units, batchSize, padID, rng)
}

func padUnits(units [][]Sequence, batchSize int, padID int32, rng *rand.Rand) ([]Batch, error) {
	if batchSize <= 0 {
		return nil, fmt.Errorf("pad: batch size %d must be positive", batchSize)
	}
	maxLen := func(u []Sequence) int {
		m := 0
		for i := range u {
			m = max(m, len(u[i].Tokens))
		}
		return m
	}
	order := rng.Perm(len(units))
	mega := batchSize * 50
	for lo := 0; lo < len(order); lo += mega {
		hi := min(lo+mega, len(order))
		part := order[lo:hi]
		sort.SliceStable(part, func(a, b int) bool { return maxLen(units[part[a]]) > maxLen(units[part[b]]) })
	}
	var batches []Batch
	for lo := 0; lo < len(order); lo += batchSize {
		hi := min(lo+batchSize, len(order))
		var seqs []Sequence
		longest := 0
		for _, u := range order[lo:hi] {
			seqs = append(seqs, units[u]...)
			longest = max(longest, maxLen(units[u]))
		}
		batches = append(batches, layOut(seqs, &padSpec{id: padID, len: longest}))
	}
	rng.Shuffle(len(batches), func(i, j int) { batches[i], batches[j] = batches[j], batches[i] })
	return batches, nil
}

// ShuffleBatches puts batches in a seeded random order.
func ShuffleBatches(b []Batch, rng *rand.Rand) {
	rng.Shuffle(len(b), func(i, j int) { b[i], b[j] = b[j], b[i] })
}

// NewRand returns the seeded generator used for splits and shuffles.
func NewRand(seed int64) *rand.Rand {
	return rand.New(rand.NewPCG(uint64(seed), 0x5eed5eed5eed5eed))
}
