package main

import (
	"container/heap"
	"fmt"
	"runtime"
	"sort"
	"strings"
	"sync"

	"github.com/dlclark/regexp2/v2"
)

// splitPattern is the pre-tokenizer split of Llama 3 (OpenAI's cl100k): the
// same string whet's tokenizer recognizes and runs with its fast scanner.
// Letters keep one leading non-letter (usually the space), numbers split
// into groups of at most three digits, and punctuation runs stay together.
const splitPattern = `(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`

// countWords cuts each line of text (with its newline) into pre-tokens
// and counts how often each occurs. BPE never merges across pre-tokens,
// so these counts are all that training needs to see of the corpus.
func countWords(text string, workers int) (map[string]int64, error) {
	re, err := regexp2.Compile(splitPattern, regexp2.None)
	if err != nil {
		return nil, fmt.Errorf("compile split pattern: %w", err)
	}
	if workers < 1 {
		workers = runtime.GOMAXPROCS(0)
	}
	// Hand each worker whole lines so that no pre-token is cut in two.
	chunks := splitAtNewlines(text, workers*8)
	results := make([]map[string]int64, len(chunks))
	errs := make([]error, len(chunks))
	var wg sync.WaitGroup
	next := make(chan int)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				counts := map[string]int64{}
				for _, line := range strings.SplitAfter(chunks[i], "\n") {
					if line == "" {
						continue
					}
					idx, err := re.FindAllStringIndex(line, -1)
					if err != nil {
						errs[i] = fmt.Errorf("split pattern: %w", err)
						break
					}
					for _, m := range idx {
						if m[1] > m[0] {
							counts[line[m[0]:m[1]]]++
						}
					}
				}
				results[i] = counts
			}
		}()
	}
	for i := range chunks {
		next <- i
	}
	close(next)
	wg.Wait()
	total := map[string]int64{}
	for i, r := range results {
		if errs[i] != nil {
			return nil, errs[i]
		}
		for w, c := range r {
			total[w] += c
		}
	}
	return total, nil
}

// splitAtNewlines cuts text into about n pieces, each ending at a newline
// (or at the end of the text).
func splitAtNewlines(text string, n int) []string {
	size := len(text)/n + 1
	var out []string
	for len(text) > 0 {
		end := min(size, len(text))
		if k := strings.IndexByte(text[end:], '\n'); k >= 0 {
			end += k + 1
		} else {
			end = len(text)
		}
		out = append(out, text[:end])
		text = text[end:]
	}
	return out
}

// pair is two adjacent token ids packed into one map key.
type pair uint64

func mkPair(a, b int32) pair       { return pair(uint64(uint32(a))<<32 | uint64(uint32(b))) }
func (p pair) ids() (int32, int32) { return int32(uint32(p >> 32)), int32(uint32(p)) }

// word is one distinct pre-token: its current token ids and its count.
type word struct {
	ids   []int32
	count int64
}

// Merge is one learned rule: Left and Right (token ids) become Result.
type Merge struct{ Left, Right, Result int32 }

// trainer holds the state of the merge loop. Pair counts are kept up to
// date incrementally: merging a pair touches only the words that contain
// it (found through where), so each step costs what those words cost, not
// a pass over the whole word table.
type trainer struct {
	words  []word
	counts map[pair]int64
	where  map[pair][]int32 // word indices that held the pair when it was recorded; may hold stale or repeated entries
	queue  pairQueue
}

// train learns merges over byte-level words until the vocabulary (the 256
// bytes, the merges and firstID ids reserved before them) reaches
// vocabSize, or no pair occurs at least minCount times. Byte b has id
// firstID+b; the merge results follow in order.
func train(counts map[string]int64, firstID, vocabSize int, minCount int64) ([]Merge, error) {
	nMerges := vocabSize - firstID - 256
	if nMerges < 0 {
		return nil, fmt.Errorf("vocabulary size %d is smaller than the %d special tokens and 256 bytes", vocabSize, firstID)
	}
	// Sort the words so that the result does not depend on map order.
	keys := make([]string, 0, len(counts))
	for w := range counts {
		keys = append(keys, w)
	}
	sort.Strings(keys)
	t := &trainer{counts: map[pair]int64{}, where: map[pair][]int32{}}
	for i, k := range keys {
		ids := make([]int32, len(k))
		for j := 0; j < len(k); j++ {
			ids[j] = int32(firstID) + int32(k[j])
		}
		t.words = append(t.words, word{ids: ids, count: counts[k]})
		for j := 0; j+1 < len(ids); j++ {
			p := mkPair(ids[j], ids[j+1])
			t.counts[p] += counts[k]
			t.where[p] = append(t.where[p], int32(i))
		}
	}
	for p, c := range t.counts {
		t.queue.items = append(t.queue.items, queued{p, c})
	}
	heap.Init(&t.queue)

	merges := make([]Merge, 0, nMerges)
	for len(merges) < nMerges {
		best, ok := t.best()
		if !ok || t.counts[best] < minCount {
			break
		}
		a, b := best.ids()
		id := int32(firstID + 256 + len(merges))
		t.apply(best, id)
		merges = append(merges, Merge{a, b, id})
	}
	return merges, nil
}

// best pops the most frequent pair, skipping queue entries whose count has
// changed since they were pushed (a fresher entry is in the queue).
func (t *trainer) best() (pair, bool) {
	for t.queue.Len() > 0 {
		q := heap.Pop(&t.queue).(queued)
		if c, ok := t.counts[q.p]; ok && c == q.count && c > 0 {
			return q.p, true
		}
	}
	return 0, false
}

// apply merges every occurrence of p into id, left to right, and updates
// the pair counts of the words it touched.
func (t *trainer) apply(p pair, id int32) {
	a, b := p.ids()
	changed := map[pair]bool{}
	for _, wi := range t.where[p] {
		w := &t.words[wi]
		if !contains(w.ids, a, b) {
			continue // stale or repeated entry
		}
		for j := 0; j+1 < len(w.ids); j++ {
			q := mkPair(w.ids[j], w.ids[j+1])
			t.counts[q] -= w.count
			changed[q] = true
		}
		out := w.ids[:0]
		for j := 0; j < len(w.ids); j++ {
			if j+1 < len(w.ids) && w.ids[j] == a && w.ids[j+1] == b {
				out = append(out, id)
				j++
			} else {
				out = append(out, w.ids[j])
			}
		}
		w.ids = out
		for j := 0; j+1 < len(w.ids); j++ {
			q := mkPair(w.ids[j], w.ids[j+1])
			t.counts[q] += w.count
			changed[q] = true
			if w.ids[j] == id || w.ids[j+1] == id {
				t.where[q] = append(t.where[q], wi)
			}
		}
	}
	delete(t.where, p)
	// Push in a fixed order so that ties break the same way on every run.
	keys := make([]pair, 0, len(changed))
	for q := range changed {
		keys = append(keys, q)
	}
	sort.Slice(keys, func(i, j int) bool { return keys[i] < keys[j] })
	for _, q := range keys {
		if c := t.counts[q]; c > 0 {
			heap.Push(&t.queue, queued{q, c})
		} else {
			delete(t.counts, q)
		}
	}
}

func contains(ids []int32, a, b int32) bool {
	for j := 0; j+1 < len(ids); j++ {
		if ids[j] == a && ids[j+1] == b {
			return true
		}
	}
	return false
}

// queued is a pair with the count it had when pushed.
type queued struct {
	p     pair
	count int64
}

// pairQueue is a max-heap on count; equal counts go to the smaller pair
// key, which makes training deterministic.
type pairQueue struct{ items []queued }

func (q *pairQueue) Len() int { return len(q.items) }
func (q *pairQueue) Less(i, j int) bool {
	if q.items[i].count != q.items[j].count {
		return q.items[i].count > q.items[j].count
	}
	return q.items[i].p < q.items[j].p
}
func (q *pairQueue) Swap(i, j int) { q.items[i], q.items[j] = q.items[j], q.items[i] }
func (q *pairQueue) Push(x any)    { q.items = append(q.items, x.(queued)) }
func (q *pairQueue) Pop() any {
	n := len(q.items) - 1
	x := q.items[n]
	q.items = q.items[:n]
	return x
}
