package engine

import (
	"fmt"
	"slices"
)

// Block-paged key/value cache for the batched generator. Every layer's
// keys (and values) of all lanes live in one pool of fixed-size blocks of
// BlockTokens rows; each lane holds a block table, its i-th block holding
// its positions [i·BlockTokens, (i+1)·BlockTokens). A lane reserves, when
// a generation starts, the blocks its own prompt and limit need (not the
// plan's longest), so prompts of different lengths share the pool instead
// of each reserving the longest. The storage is the compute dtype (bf16 on
// CUDA, f32 on the CPU), as the contiguous cache's.
//
// Attention runs the backend's cached attention (KVAttention) over one
// contiguous span of keys and values: a lane whose blocks are consecutive
// in the pool (always so when the pool is reserved afresh, as
// GenerateMany does: lanes reserve in order from an empty pool) is viewed
// in place; otherwise its blocks are first gathered into a scratch span.
// The tokens are those of the contiguous cache either way: the same rows
// reach the same kernel.

// DefaultKVBlockTokens is the block size of a paged cache when none is
// given.
const DefaultKVBlockTokens = 16

// kvPool is the pool of blocks.
type kvPool struct {
	b           Backend
	k, v        []Tensor // per layer [blocks·blockTokens, KVDim]
	blockTokens int
	blocks      int
	kvd         int
	free        []int  // free block ids, ascending
	gk, gv      Tensor // gather scratch [maxLen, KVDim]
	gathers     int    // spans gathered (not viewed in place), for tests
}

func newKVPool(m *Model, blocks, blockTokens, maxLen int) (*kvPool, error) {
	if blockTokens < 1 || blocks < 1 {
		return nil, fmt.Errorf("kv pool: %d blocks of %d tokens, want at least 1 of 1", blocks, blockTokens)
	}
	p := &kvPool{b: m.B, blockTokens: blockTokens, blocks: blocks, kvd: m.Cfg.KVDim()}
	for l := range m.Layers {
		for _, dst := range []*[]Tensor{&p.k, &p.v} {
			t, err := m.B.Alloc(m.Compute, blocks*blockTokens, p.kvd)
			if err != nil {
				p.freeAll()
				return nil, fmt.Errorf("allocate kv pool of %d blocks of %d tokens (layer %d): %w", blocks, blockTokens, l, err)
			}
			*dst = append(*dst, t)
		}
	}
	var err error
	if p.gk, err = m.B.Alloc(m.Compute, maxLen, p.kvd); err == nil {
		p.gv, err = m.B.Alloc(m.Compute, maxLen, p.kvd)
	}
	if err != nil {
		p.freeAll()
		return nil, fmt.Errorf("allocate kv gather span of %d tokens: %w", maxLen, err)
	}
	p.free = make([]int, blocks)
	for i := range p.free {
		p.free[i] = i
	}
	return p, nil
}

func (p *kvPool) freeAll() {
	for _, t := range append(p.k, p.v...) {
		p.b.Free(t)
	}
	for _, t := range []Tensor{p.gk, p.gv} {
		if t != nil {
			p.b.Free(t)
		}
	}
	p.k, p.v, p.gk, p.gv = nil, nil, nil, nil
}

// blocksFor is how many blocks hold tokens positions.
func (p *kvPool) blocksFor(tokens int) int {
	return (tokens + p.blockTokens - 1) / p.blockTokens
}

// reserve takes n blocks: the first run of n consecutive free blocks if
// there is one, else the n lowest free ones.
func (p *kvPool) reserve(n int) ([]int, error) {
	if n > len(p.free) {
		return nil, fmt.Errorf("kv pool exhausted: %d blocks of %d tokens wanted, %d of %d free", n, p.blockTokens, len(p.free), p.blocks)
	}
	start := 0
	for s := 0; s+n <= len(p.free); s++ {
		// free is ascending and distinct: a span of n ids is a run when
		// its ends are n-1 apart.
		if p.free[s+n-1]-p.free[s] == n-1 {
			start = s
			break
		}
	}
	got := slices.Clone(p.free[start : start+n])
	p.free = slices.Delete(p.free, start, start+n)
	return got, nil
}

// release gives blocks back.
func (p *kvPool) release(ids []int) {
	p.free = append(p.free, ids...)
	slices.Sort(p.free)
}

// pagedRows is a view of the rows of storage (the pool's k or v of one
// layer) holding the lane's positions from pos, at most n of them (they
// end at a block's end), and how many it holds.
func (c *kvCache) pagedRows(storage Tensor, pos, n int) (Tensor, int, error) {
	p := c.pool
	bt := p.blockTokens
	i := pos / bt
	if i >= len(c.table) {
		return nil, 0, fmt.Errorf("kv cache: position %d is past the lane's %d blocks of %d tokens", pos, len(c.table), bt)
	}
	off := pos % bt
	rows := min(n, bt-off)
	v, err := p.b.View(storage, (c.table[i]*bt+off)*p.kvd, rows, p.kvd)
	return v, rows, err
}

// span is layer l's keys and values of positions [0, n) as contiguous
// tensors: views of the pool when the lane's blocks are consecutive, else
// the gather scratch filled block run by block run.
func (c *kvCache) span(l, n int) (Tensor, Tensor, error) {
	p := c.pool
	bt, B := p.blockTokens, p.b
	used := p.blocksFor(n)
	if used > len(c.table) {
		return nil, nil, fmt.Errorf("kv cache: %d positions need %d blocks of %d tokens, the lane holds %d", n, used, bt, len(c.table))
	}
	if t := c.table[:used]; consecutive(t) {
		k, err := B.View(p.k[l], t[0]*bt*p.kvd, n, p.kvd)
		if err != nil {
			return nil, nil, err
		}
		v, err := B.View(p.v[l], t[0]*bt*p.kvd, n, p.kvd)
		return k, v, err
	}
	p.gathers++
	for i := 0; i < used; {
		j := i + 1
		for j < used && c.table[j] == c.table[j-1]+1 {
			j++
		}
		rows := min((j-i)*bt, n-i*bt)
		for _, pair := range [][2]Tensor{{p.gk, p.k[l]}, {p.gv, p.v[l]}} {
			dst, err := B.View(pair[0], i*bt*p.kvd, rows, p.kvd)
			if err != nil {
				return nil, nil, err
			}
			src, err := B.View(pair[1], c.table[i]*bt*p.kvd, rows, p.kvd)
			if err != nil {
				return nil, nil, err
			}
			if err := B.Copy(dst, src); err != nil {
				return nil, nil, fmt.Errorf("gather kv blocks: %w", err)
			}
		}
		i = j
	}
	k, err := B.View(p.gk, 0, n, p.kvd)
	if err != nil {
		return nil, nil, err
	}
	v, err := B.View(p.gv, 0, n, p.kvd)
	return k, v, err
}

func consecutive(t []int) bool {
	for i := 1; i < len(t); i++ {
		if t[i] != t[i-1]+1 {
			return false
		}
	}
	return true
}

// attendPaged is attend over a paged lane: the chunk's k and v go into
// the lane's blocks at its next positions, then attention runs over the
// lane's span.
func (c *kvCache) attendPaged(a *Activations, l int, q, k, v, att Tensor) error {
	B, T := a.m.B, Rows(k)
	if err := c.writeRows(l, c.pos, k, v, T); err != nil {
		return err
	}
	kAll, vAll, err := c.span(l, c.pos+T)
	if err != nil {
		return err
	}
	return B.(KVAttention).AttentionKV(att, q, kAll, vAll, c.pos, a.attnParams(l))
}

// writeRows stores T rows of k and v (layer l) at the lane's positions
// from pos.
func (c *kvCache) writeRows(l, pos int, k, v Tensor, T int) error {
	p := c.pool
	for _, pair := range [][2]Tensor{{p.k[l], k}, {p.v[l], v}} {
		for r := 0; r < T; {
			dst, n, err := c.pagedRows(pair[0], pos+r, T-r)
			if err != nil {
				return err
			}
			src, err := p.b.View(pair[1], r*p.kvd, n, p.kvd)
			if err != nil {
				return err
			}
			if err := p.b.Copy(dst, src); err != nil {
				return fmt.Errorf("store kv rows: %w", err)
			}
			r += n
		}
	}
	return nil
}

// copyPrefix copies positions [0, n) of every layer from src to c (both
// lanes of one generator, paged or not).
func (c *kvCache) copyPrefix(B Backend, layers, kvd, n int, src *kvCache) error {
	for l := 0; l < layers; l++ {
		for kv := 0; kv < 2; kv++ {
			for r := 0; r < n; {
				d, dn, err := c.rowsAt(B, l, kv, r, n-r, kvd)
				if err != nil {
					return err
				}
				s, sn, err := src.rowsAt(B, l, kv, r, dn, kvd)
				if err != nil {
					return err
				}
				if sn < dn {
					if d, err = B.View(d, 0, sn, kvd); err != nil {
						return err
					}
				}
				if err := B.Copy(d, s); err != nil {
					return fmt.Errorf("copy the prompt's kv: %w", err)
				}
				r += sn
			}
		}
	}
	return nil
}

// rowsAt is a view of layer l's keys (kv 0) or values (kv 1) at positions
// from pos, at most n rows, contiguous in storage, and how many.
func (c *kvCache) rowsAt(B Backend, l, kv, pos, n, kvd int) (Tensor, int, error) {
	if c.pool != nil {
		st := c.pool.k[l]
		if kv == 1 {
			st = c.pool.v[l]
		}
		return c.pagedRows(st, pos, n)
	}
	st := c.k[l]
	if kv == 1 {
		st = c.v[l]
	}
	t, err := B.View(st, pos*kvd, n, kvd)
	return t, n, err
}

// ScatterKVBlocks takes every other free block of a paged generator's
// pool out of use for good, so that no lane's blocks are consecutive and
// attention gathers them every time: for checking the gather path on a
// backend (tests). It does nothing to a generator with contiguous caches.
func (g *GroupGenerator) ScatterKVBlocks() {
	if g.pool == nil {
		return
	}
	var keep []int
	for i, id := range g.pool.free {
		if i%2 == 0 {
			keep = append(keep, id)
		}
	}
	g.pool.free = keep
}
