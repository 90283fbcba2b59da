package tokenizer

import (
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
	if len(w) > 65 {
		n := m.mergeHeap(w)
		return s.out[:s.start+n]
	}
	// Short words: a scan over cached pair ranks beats a heap. rank[i] is
	// the rank of merging w[i] and w[i+1] (noMerge if none) and id[i] the
	// result, so each step costs a scan of ints and two map lookups.
	var rankBuf, idBuf [64]int32
	rank, id := rankBuf[:len(w)-1], idBuf[:len(w)-1]
	for i := range rank {
		rank[i], id[i] = m.pairRank(w[i], w[i+1])
	}
	for len(w) > 1 {
		best := -1
		for i, r := range rank {
			if r != noMerge && (best < 0 || r < rank[best]) {
				best = i
			}
		}
		if best < 0 {
			break
		}
		w[best] = int(id[best])
		copy(w[best+1:], w[best+2:])
		w = w[:len(w)-1]
		copy(rank[best:], rank[best+1:])
		copy(id[best:], id[best+1:])
		rank, id = rank[:len(rank)-1], id[:len(id)-1]
		if best > 0 {
			rank[best-1], id[best-1] = m.pairRank(w[best-1], w[best])
		}
		if best < len(rank) {
			rank[best], id[best] = m.pairRank(w[best], w[best+1])
		}
	}
	return s.out[:s.start+len(w)]
}

const noMerge = int32(-1)

// pairRank looks up the merge of a and b: its rank and resulting id, or
// noMerge.
func (m *bpe) pairRank(a, b int) (int32, int32) {
	if mg, ok := m.merges[pairKey(a, b)]; ok {
		return mg.rank, mg.id
	}
	return noMerge, 0
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
	var h pairHeap
	for i := 0; i+1 < n; i++ {
		if mg, ok := m.merges[pairKey(w[i], w[i+1])]; ok {
			h = append(h, pairItem{mg.rank, int32(i), mg.id, int32(w[i]), int32(w[i+1])})
		}
	}
	h.init()
	for len(h) > 0 {
		it := h.pop()
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
				h.push(pairItem{mg.rank, int32(p), mg.id, int32(w[p]), int32(w[i])})
			}
		}
		if k := next[i]; k >= 0 {
			if mg, ok := m.merges[pairKey(w[i], w[k])]; ok {
				h.push(pairItem{mg.rank, int32(i), mg.id, int32(w[i]), int32(w[k])})
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

// pairHeap is a binary min-heap of candidate merges ordered by rank, then
// position (the leftmost of equal ranks first). It is typed rather than
// built on container/heap so that pushes do not allocate.
type pairHeap []pairItem

func (h pairHeap) less(a, b int) bool {
	return h[a].rank < h[b].rank || (h[a].rank == h[b].rank && h[a].pos < h[b].pos)
}

func (h pairHeap) init() {
	for i := len(h)/2 - 1; i >= 0; i-- {
		h.down(i)
	}
}

func (h *pairHeap) push(it pairItem) {
	*h = append(*h, it)
	s := *h
	for i := len(s) - 1; i > 0; {
		parent := (i - 1) / 2
		if !s.less(i, parent) {
			break
		}
		s[i], s[parent] = s[parent], s[i]
		i = parent
	}
}

func (h *pairHeap) pop() pairItem {
	s := *h
	top := s[0]
	last := len(s) - 1
	s[0] = s[last]
	*h = s[:last]
	h.down(0)
	return top
}

func (h pairHeap) down(i int) {
	for {
		l := 2*i + 1
		if l >= len(h) {
			return
		}
		small := l
		if r := l + 1; r < len(h) && h.less(r, l) {
			small = r
		}
		if !h.less(small, i) {
			return
		}
		h[i], h[small] = h[small], h[i]
		i = small
	}
}

// byteFallbackToken is the vocabulary spelling of raw byte b.
func byteFallbackToken(b byte) string { return fmt.Sprintf("<0x%02X>", b) }
