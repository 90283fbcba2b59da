package datasets

import (
	"sort"
	"testing"
)

// seqOf makes a sequence of n tokens whose ids encode (tag, index) and
// whose labels cover the second half.
func seqOf(tag, n int) Sequence {
	s := Sequence{Tokens: make([]int32, n), Labels: make([]int32, n)}
	for i := 0; i < n; i++ {
		s.Tokens[i] = int32(tag*1000 + i)
		s.Labels[i] = IgnoreIndex
		if i >= n/2 {
			s.Labels[i] = s.Tokens[i]
		}
	}
	return s
}

// checkBatch verifies the layout contract of datasets.Batch for the given
// sequences (padded ones carry pad tokens after their real tokens).
func checkBatch(t *testing.T, b Batch, budget int, padID int32) (tags []int) {
	t.Helper()
	if budget > 0 && b.NumTokens() > budget {
		t.Errorf("batch of %d tokens exceeds %d", b.NumTokens(), budget)
	}
	if len(b.Targets) != len(b.Tokens) || len(b.Positions) != len(b.Tokens) {
		t.Fatalf("ragged batch: %d tokens, %d targets, %d positions", len(b.Tokens), len(b.Targets), len(b.Positions))
	}
	if len(b.SeqStarts) < 2 || b.SeqStarts[0] != 0 || int(b.SeqStarts[len(b.SeqStarts)-1]) != len(b.Tokens) {
		t.Fatalf("bad SeqStarts %v for %d tokens", b.SeqStarts, len(b.Tokens))
	}
	for i := 0; i+1 < len(b.SeqStarts); i++ {
		lo, hi := int(b.SeqStarts[i]), int(b.SeqStarts[i+1])
		tag := int(b.Tokens[lo] / 1000)
		tags = append(tags, tag)
		for p := lo; p < hi; p++ {
			if int(b.Positions[p]) != p-lo {
				t.Errorf("seq %d: position %d at offset %d", i, b.Positions[p], p-lo)
			}
			real := b.Tokens[p] != padID && int(b.Tokens[p]/1000) == tag
			next := p + 1
			switch {
			case !real:
				if b.Targets[p] != IgnoreIndex {
					t.Errorf("padding at %d has target %d", p, b.Targets[p])
				}
			case next == hi || b.Tokens[next] == padID:
				if b.Targets[p] != IgnoreIndex {
					t.Errorf("last token of seq %d has target %d (would cross sequences)", i, b.Targets[p])
				}
			default:
				// Labels cover the second half: token next is trained iff
				// its index >= n/2, which seqOf encodes in the id.
				want := int32(IgnoreIndex)
				idx := int(b.Tokens[next] % 1000)
				n := 0
				for q := lo; q < hi && b.Tokens[q] != padID; q++ {
					n++
				}
				if idx >= n/2 {
					want = b.Tokens[next]
				}
				if b.Targets[p] != want {
					t.Errorf("seq %d token %d: target %d, want %d", i, p-lo, b.Targets[p], want)
				}
			}
		}
	}
	return tags
}

func TestPackBestFitDecreasing(t *testing.T) {
	lengths := []int{6, 5, 4, 3, 2}
	var seqs []Sequence
	for i, n := range lengths {
		seqs = append(seqs, seqOf(i+1, n))
	}
	batches, err := Pack(seqs, 10)
	if err != nil {
		t.Fatal(err)
	}
	// 20 tokens in bins of 10: best fit decreasing finds {6,4} and {5,3,2}.
	if len(batches) != 2 {
		t.Fatalf("%d batches, want 2", len(batches))
	}
	var all []int
	for _, b := range batches {
		if b.NumTokens() != 10 {
			t.Errorf("batch holds %d tokens, want a full 10", b.NumTokens())
		}
		all = append(all, checkBatch(t, b, 10, -1)...)
	}
	sort.Ints(all)
	if len(all) != 5 || all[0] != 1 || all[4] != 5 {
		t.Errorf("sequences packed: %v", all)
	}
}

func TestPackEverySequenceOnce(t *testing.T) {
	rng := NewRand(7)
	var seqs []Sequence
	total := 0
	for i := 0; i < 300; i++ {
		n := 1 + rng.IntN(64)
		total += n
		seqs = append(seqs, seqOf(i+1, n))
	}
	batches, err := Pack(seqs, 128)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[int]int{}
	tokens := 0
	for _, b := range batches {
		for _, tag := range checkBatch(t, b, 128, -1) {
			seen[tag]++
		}
		tokens += b.NumTokens()
	}
	if len(seen) != 300 || tokens != total {
		t.Errorf("%d distinct sequences, %d tokens; want 300, %d", len(seen), tokens, total)
	}
	for tag, c := range seen {
		if c != 1 {
			t.Errorf("sequence %d packed %d times", tag, c)
		}
	}
	// Best fit should leave little room: within 10%% of the lower bound.
	lower := (total + 127) / 128
	if len(batches) > lower+lower/10+1 {
		t.Errorf("%d batches for a lower bound of %d", len(batches), lower)
	}
	if _, err := Pack([]Sequence{seqOf(1, 200)}, 128); err == nil {
		t.Error("a sequence longer than the budget was packed")
	}
}

func TestPackPairsKeepsPairsAdjacent(t *testing.T) {
	var pairs []Pair
	for i := 0; i < 20; i++ {
		pairs = append(pairs, Pair{Chosen: seqOf(2*i+1, 3+i%5), Rejected: seqOf(2*i+2, 4+i%3)})
	}
	batches, err := PackPairs(pairs, 40)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, b := range batches {
		tags := checkBatch(t, b, 40, -1)
		if len(tags)%2 != 0 {
			t.Fatalf("odd number of sequences in a pair batch: %v", tags)
		}
		for k := 0; k < len(tags); k += 2 {
			if tags[k]%2 != 1 || tags[k+1] != tags[k]+1 {
				t.Errorf("pair order broken: %v", tags)
			}
		}
		n += len(tags) / 2
	}
	if n != 20 {
		t.Errorf("%d pairs packed, want 20", n)
	}
}

func TestPadBatchesGroupsByLength(t *testing.T) {
	var seqs []Sequence
	for i := 0; i < 40; i++ {
		seqs = append(seqs, seqOf(i+1, 2+(i*7)%30))
	}
	const pad = int32(-7)
	batches, err := PadBatches(seqs, 4, pad, NewRand(1))
	if err != nil {
		t.Fatal(err)
	}
	if len(batches) != 10 {
		t.Fatalf("%d batches, want 10", len(batches))
	}
	padding := 0
	for _, b := range batches {
		tags := checkBatch(t, b, 0, pad)
		if len(tags) != 4 {
			t.Errorf("batch of %d sequences, want 4", len(tags))
		}
		// Every sequence is padded to the batch's longest.
		l0 := b.SeqStarts[1] - b.SeqStarts[0]
		for i := 1; i+1 < len(b.SeqStarts); i++ {
			if b.SeqStarts[i+1]-b.SeqStarts[i] != l0 {
				t.Errorf("uneven padded lengths %v", b.SeqStarts)
			}
		}
		for _, tok := range b.Tokens {
			if tok == pad {
				padding++
			}
		}
	}
	// Sorted within the mega-batch, neighbours differ little: far less
	// padding than grouping in a random order leaves.
	randomPad := 0
	perm := NewRand(1).Perm(len(seqs))
	for lo := 0; lo < len(perm); lo += 4 {
		longest, sum := 0, 0
		for _, i := range perm[lo : lo+4] {
			longest = max(longest, seqs[i].Len())
			sum += seqs[i].Len()
		}
		randomPad += 4*longest - sum
	}
	if padding*3 > randomPad {
		t.Errorf("%d padding tokens against %d for random groups: length grouping is not grouping", padding, randomPad)
	}
	// Same seed, same batches.
	again, _ := PadBatches(seqs, 4, pad, NewRand(1))
	for i := range batches {
		if batches[i].Tokens[0] != again[i].Tokens[0] {
			t.Fatal("PadBatches is not deterministic for a seed")
		}
	}
}
