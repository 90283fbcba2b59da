package tokenizer

import (
	"container/heap"
	"fmt"
	"sync"
	"unicode/utf8"
)

// bpe is the BPE model. Its vocabulary is keyed by the bytes a token
// stands for: for byte-level models the stand-in characters are translated
// back at load time, so words are encoded straight from the input bytes.
type bpe struct {
	vocab     map[string]int
	merges    map[uint64]merge // (left id, right id) -> rank and result
	byteLevel bool
	// byteID[b] is the id of the single-byte token b (byte-level models),
	// or of "<0xNN>" (byte_fallback models); -1 when absent.
	byteID       [256]int
	byteFallback bool
	unk          int // -1 when the model has no unk token
	fuseUnk      bool
	ignoreMerges bool

	mu    sync.RWMutex // guards cache; Encode may run on many goroutines
	cache map[string][]int
}

type merge struct{ rank, id int32 }

func pairKey(a, b int) uint64 { return uint64(uint32(a))<<32 | uint64(uint32(b)) }

// cacheLimit bounds the per-word cache; when full it is simply emptied,
// which costs one re-encode per word and keeps memory flat on huge inputs.
const (
	cacheLimit   = 1 << 17
	cacheMaxWord = 256
)

// encodeWord appends the ids of one pre-tokenized piece to out.
func (m *bpe) encodeWord(word string, out []int) []int {
	if m.ignoreMerges {
		if id, ok := m.vocab[word]; ok {
			return append(out, id)
		}
	}
	cacheable := len(word) <= cacheMaxWord
	if cacheable {
		m.mu.RLock()
		ids, ok := m.cache[word]
		m.mu.RUnlock()
		if ok {
			return append(out, ids...)
		}
	}
	start := len(out)
	out = m.merge(m.initialSymbols(word, out))
	if cacheable {
		ids := append([]int(nil), out[start:]...)
		m.mu.Lock()
		if len(m.cache) >= cacheLimit {
			clear(m.cache)
		}
		m.cache[word] = ids
		m.mu.Unlock()
	}
	return out
}

// symbols is a word being merged: out[start:] holds its current ids.
type symbols struct {
	out   []int
	start int
}

// initialSymbols splits word into single bytes (byte-level) or characters,
// mapped to ids, with byte fallback or unk for characters not in the
// vocabulary, as the Rust library does before any merge.
func (m *bpe) initialSymbols(word string, out []int) symbols {
	start := len(out)
	prevUnk := false
	if m.byteLevel {
		for i := 0; i < len(word); i++ {
			if id := m.byteID[word[i]]; id >= 0 {
				out = append(out, id)
				prevUnk = false
			} else if m.unk >= 0 && !(m.fuseUnk && prevUnk) {
				out = append(out, m.unk)
				prevUnk = true
			}
		}
		return symbols{out, start}
	}
	for i := 0; i < len(word); {
		_, w := utf8.DecodeRuneInString(word[i:])
		ch := word[i : i+w]
		i += w
		if id, ok := m.vocab[ch]; ok {
			out = append(out, id)
			prevUnk = false
			continue
		}
		if m.byteFallback {
			all := true
			for k := 0; k < len(ch); k++ {
				if m.byteID[ch[k]] < 0 {
					all = false
				}
			}
			if all {
				for k := 0; k < len(ch); k++ {
					out = append(out, m.byteID[ch[k]])
				}
				prevUnk = false
				continue
			}
		}
		if m.unk >= 0 && !(m.fuseUnk && prevUnk) {
			out = append(out, m.unk)
			prevUnk = true
		}
	}
	return symbols{out, start}
}

// merge applies merges to out[start:] until none applies, always taking the
// lowest-ranked pair and the leftmost among equals, and returns out.
func (m *bpe) merge(s symbols) []int {
	w := s.out[s.start:]
	if len(w) < 2 {
		return s.out
	}
	if len(w) > 64 {
		n := m.mergeHeap(w)
		return s.out[:s.start+n]
	}
	// Short words: a plain scan is faster than a heap.
	for len(w) > 1 {
		best, bestRank, bestID := -1, int32(0), int32(0)
		for i := 0; i+1 < len(w); i++ {
			if mg, ok := m.merges[pairKey(w[i], w[i+1])]; ok && (best < 0 || mg.rank < bestRank) {
				best, bestRank, bestID = i, mg.rank, mg.id
			}
		}
		if best < 0 {
			break
		}
		w[best] = int(bestID)
		copy(w[best+1:], w[best+2:])
		w = w[:len(w)-1]
	}
	return s.out[:s.start+len(w)]
}

// mergeHeap is merge for long words: a linked list of symbols and a heap of
// candidate pairs ordered by (rank, position), with stale entries skipped.
// It compacts the result into w and returns its length.
func (m *bpe) mergeHeap(w []int) int {
	n := len(w)
	prev := make([]int, n)
	next := make([]int, n)
	alive := make([]bool, n)
	for i := range w {
		prev[i], next[i], alive[i] = i-1, i+1, true
	}
	next[n-1] = -1
	h := &pairHeap{}
	for i := 0; i+1 < n; i++ {
		if mg, ok := m.merges[pairKey(w[i], w[i+1])]; ok {
			h.items = append(h.items, pairItem{mg.rank, int32(i), mg.id, int32(w[i]), int32(w[i+1])})
		}
	}
	heap.Init(h)
	for h.Len() > 0 {
		it := heap.Pop(h).(pairItem)
		i := int(it.pos)
		j := next[i]
		// Skip entries made stale by an earlier merge.
		if !alive[i] || j < 0 || w[i] != int(it.left) || w[j] != int(it.right) {
			continue
		}
		w[i] = int(it.id)
		alive[j] = false
		next[i] = next[j]
		if next[j] >= 0 {
			prev[next[j]] = i
		}
		if p := prev[i]; p >= 0 {
			if mg, ok := m.merges[pairKey(w[p], w[i])]; ok {
				heap.Push(h, pairItem{mg.rank, int32(p), mg.id, int32(w[p]), int32(w[i])})
			}
		}
		if k := next[i]; k >= 0 {
			if mg, ok := m.merges[pairKey(w[i], w[k])]; ok {
				heap.Push(h, pairItem{mg.rank, int32(i), mg.id, int32(w[i]), int32(w[k])})
			}
		}
	}
	k := 0
	for i := 0; i >= 0; i = next[i] {
		w[k] = w[i]
		k++
	}
	return k
}

type pairItem struct{ rank, pos, id, left, right int32 }

type pairHeap struct{ items []pairItem }

func (h *pairHeap) Len() int { return len(h.items) }
func (h *pairHeap) Less(a, b int) bool {
	x, y := h.items[a], h.items[b]
	return x.rank < y.rank || (x.rank == y.rank && x.pos < y.pos)
}
func (h *pairHeap) Swap(a, b int) { h.items[a], h.items[b] = h.items[b], h.items[a] }
func (h *pairHeap) Push(x any)    { h.items = append(h.items, x.(pairItem)) }
func (h *pairHeap) Pop() any {
	it := h.items[len(h.items)-1]
	h.items = h.items[:len(h.items)-1]
	return it
}

// byteFallbackToken is the vocabulary spelling of raw byte b.
func byteFallbackToken(b byte) string { return fmt.Sprintf("<0x%02X>", b) }
