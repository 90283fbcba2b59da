package engine

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"

	"whet/datasets"
)

// Group sampling: GRPO samples G completions of one prompt. Decoding them
// one after the other reads every weight once per token per completion;
// decoding them together, one row per completion, reads the weights once
// per token for all G (the projections and the head see G rows), while
// attention runs lane by lane over each completion's own cache. The prompt
// is run once and its keys and values copied into every lane.

// attendLanes is attend for a pass whose row i is lanes[i]'s next token.
func (c *kvCache) attendLanes(a *Activations, l int, q, k, v, att Tensor) error {
	B := a.m.B
	if Rows(k) != len(c.lanes) {
		return fmt.Errorf("generation: %d rows for %d lanes", Rows(k), len(c.lanes))
	}
	for i, lane := range c.lanes {
		row := func(t Tensor) (Tensor, error) { return B.View(t, i*Cols(t), 1, Cols(t)) }
		qi, err := row(q)
		if err != nil {
			return err
		}
		ki, err := row(k)
		if err != nil {
			return err
		}
		vi, err := row(v)
		if err != nil {
			return err
		}
		ai, err := row(att)
		if err != nil {
			return err
		}
		if err := lane.attend(a, l, qi, ki, vi, ai); err != nil {
			return fmt.Errorf("lane %d: %w", i, err)
		}
	}
	return nil
}

// GroupGenerator samples several continuations of one prompt together.
type GroupGenerator struct {
	m      *Model
	acts   *Activations
	lanes  []*kvCache
	MaxLen int
	host   []float32
	pool   *kvPool // the lanes' paged cache (NewPagedGroupGenerator), else nil
	// TunedFrom, when > 0, makes GenerateMany run lanes [0, TunedFrom)
	// without the model's adapters and the lanes from it with them, in
	// the same passes (side-by-side chat: the base and the tuned answer
	// in one batch; the adapters' switches are restored after); 0 leaves
	// every lane to the switches as they stand.
	TunedFrom int
	// LaneToken, when set, sees each lane's new token as GenerateMany
	// chooses it (before the stop ids are checked) and may return false
	// to end that lane, as a stop id does.
	LaneToken func(lane int, id int32) bool
}

// NewGroupGenerator plans n lanes of maxLen tokens (prompt and
// completion).
func (m *Model) NewGroupGenerator(n, maxLen int) (*GroupGenerator, error) {
	kva, ok := m.B.(KVAttention)
	if !ok {
		return nil, fmt.Errorf("backend %s cannot generate: it has no cached attention", m.B.Name())
	}
	if n < 1 {
		return nil, fmt.Errorf("generation: %d lanes", n)
	}
	acts, err := m.NewActivations(max(maxLen, n), true)
	if err != nil {
		return nil, err
	}
	g := &GroupGenerator{m: m, acts: acts, MaxLen: maxLen, host: make([]float32, n*m.Cfg.VocabSize)}
	for i := 0; i < n; i++ {
		lane := &kvCache{kva: kva}
		g.lanes = append(g.lanes, lane)
		for range m.Layers {
			for _, dst := range []*[]Tensor{&lane.k, &lane.v} {
				t, err := m.B.Alloc(m.Compute, maxLen, m.Cfg.KVDim())
				if err != nil {
					g.Free()
					return nil, fmt.Errorf("allocate kv cache of lane %d for %d tokens: %w", i, maxLen, err)
				}
				*dst = append(*dst, t)
			}
		}
	}
	return g, nil
}

// NewPagedGroupGenerator plans n lanes of up to maxLen tokens whose keys
// and values share a pool of blocks of blockTokens tokens (0: the
// default, DefaultKVBlockTokens): each generation reserves for each lane
// the blocks its own prompt and limit need, and fails before running
// anything when the pool cannot hold them all.
func (m *Model) NewPagedGroupGenerator(n, maxLen, blockTokens, blocks int) (*GroupGenerator, error) {
	kva, ok := m.B.(KVAttention)
	if !ok {
		return nil, fmt.Errorf("backend %s cannot generate: it has no cached attention", m.B.Name())
	}
	if n < 1 {
		return nil, fmt.Errorf("generation: %d lanes", n)
	}
	if blockTokens == 0 {
		blockTokens = DefaultKVBlockTokens
	}
	pool, err := newKVPool(m, blocks, blockTokens, maxLen)
	if err != nil {
		return nil, err
	}
	acts, err := m.NewActivations(max(maxLen, n), true)
	if err != nil {
		pool.freeAll()
		return nil, err
	}
	g := &GroupGenerator{m: m, acts: acts, MaxLen: maxLen, host: make([]float32, n*m.Cfg.VocabSize), pool: pool}
	for i := 0; i < n; i++ {
		g.lanes = append(g.lanes, &kvCache{kva: kva, pool: pool})
	}
	return g, nil
}

// KVBlocks is the paged cache's pool: blocks of blockTokens tokens (0, 0
// for a generator with contiguous caches).
func (g *GroupGenerator) KVBlocks() (blocks, blockTokens int) {
	if g.pool == nil {
		return 0, 0
	}
	return g.pool.blocks, g.pool.blockTokens
}

// reserve gives lane i of a paged generator the blocks for needs[i]
// positions, after taking back every lane's blocks; a generator with
// contiguous caches holds MaxLen per lane already.
func (g *GroupGenerator) reserve(needs []int) error {
	p := g.pool
	if p == nil {
		return nil
	}
	for _, lane := range g.lanes {
		p.release(lane.table)
		lane.table = nil
	}
	total := 0
	for _, n := range needs {
		total += p.blocksFor(n)
	}
	if total > len(p.free) {
		return fmt.Errorf("kv pool exhausted: %d sequences of %v tokens need %d blocks of %d tokens, the pool has %d", len(needs), needs, total, p.blockTokens, p.blocks)
	}
	for i, n := range needs {
		t, err := p.reserve(p.blocksFor(n))
		if err != nil {
			return fmt.Errorf("lane %d: %w", i, err)
		}
		g.lanes[i].table = t
	}
	return nil
}

// Free releases the buffers.
func (g *GroupGenerator) Free() {
	g.acts.Free()
	if g.pool != nil {
		g.pool.freeAll()
		g.pool = nil
	}
	for _, lane := range g.lanes {
		for _, t := range append(lane.k, lane.v...) {
			g.m.B.Free(t)
		}
		lane.k, lane.v = nil, nil
	}
}

// pass runs tokens through the model with cache c (a lane, or the lanes
// together) and returns the logits of the last rows rows.
func (g *GroupGenerator) pass(c *kvCache, tokens, positions []int32, starts []int32, rows int) ([]float32, error) {
	a, B := g.acts, g.m.B
	b := &datasets.Batch{Tokens: tokens, Positions: positions, SeqStarts: starts}
	for range tokens {
		b.Targets = append(b.Targets, datasets.IgnoreIndex)
	}
	if err := a.setBatch(b); err != nil {
		return nil, err
	}
	a.training = false
	a.kv = c
	err := a.forward()
	a.kv = nil
	if err != nil {
		return nil, err
	}
	V := g.m.Cfg.VocabSize
	out := g.host[:rows*V]
	for r0 := 0; r0 < rows; r0 += a.chunk {
		n := min(a.chunk, rows-r0)
		logits, err := B.View(a.logits, 0, n, V)
		if err != nil {
			return nil, err
		}
		first := len(tokens) - rows + r0
		h, err := a.finalNorm(first, first+n)
		if err != nil {
			return nil, err
		}
		if err := B.MatMul(logits, h, g.m.Head.W.W, false, true, 1, 0); err != nil {
			return nil, fmt.Errorf("lm head: %w", err)
		}
		if err := B.Download(logits, out[r0*V:(r0+n)*V]); err != nil {
			return nil, err
		}
	}
	if c := g.m.Cfg.FinalSoftCap; c > 0 {
		for i, x := range out {
			out[i] = float32(c * math.Tanh(float64(x)/c))
		}
	}
	return out, nil
}

// Generate samples one continuation of prompt per lane, lane i with
// opts[i] (its seed; every lane shares MaxNewTokens and StopIDs of
// opts[0]). A lane that samples a stop token is done; the others go on.
// onToken, when set, is called after each pass and may return false to
// end every lane.
func (g *GroupGenerator) Generate(ctx context.Context, prompt []int32, opts []SampleOptions, onToken func() bool) ([][]int32, error) {
	n := len(opts)
	if n == 0 || n > len(g.lanes) {
		return nil, fmt.Errorf("generation: %d lanes asked of %d", n, len(g.lanes))
	}
	if len(prompt) == 0 {
		return nil, fmt.Errorf("generation: empty prompt")
	}
	maxNew := opts[0].MaxNewTokens
	if len(prompt)+maxNew > g.MaxLen {
		return nil, fmt.Errorf("generation: prompt of %d tokens + %d new exceeds the planned %d", len(prompt), maxNew, g.MaxLen)
	}
	B, V, kvd := g.m.B, g.m.Cfg.VocabSize, g.m.Cfg.KVDim()
	needs := make([]int, n)
	for i := range needs {
		needs[i] = len(prompt) + max(maxNew, 1)
	}
	if err := g.reserve(needs); err != nil {
		return nil, err
	}
	// The prompt once, into lane 0; then its keys and values into the rest.
	first := g.lanes[0]
	first.pos = 0
	pos := make([]int32, len(prompt))
	for i := range pos {
		pos[i] = int32(i)
	}
	logits, err := g.pass(first, prompt, pos, []int32{0, int32(len(prompt))}, 1)
	if err != nil {
		return nil, err
	}
	first.pos = len(prompt)
	for _, lane := range g.lanes[1:n] {
		if err := lane.copyPrefix(B, len(g.m.Layers), kvd, len(prompt), first); err != nil {
			return nil, err
		}
		lane.pos = len(prompt)
	}
	rngs := make([]*rand.Rand, n)
	seen := make([]map[int32]bool, n)
	out := make([][]int32, n)
	done := make([]bool, n)
	row := make([]float32, V)
	for i := range rngs {
		rngs[i] = rand.New(rand.NewPCG(opts[i].Seed, 0x6e6))
		seen[i] = map[int32]bool{}
		for _, id := range prompt {
			seen[i][id] = true
		}
	}
	// The first token of every lane comes from the prompt's logits.
	lastRow := func(i int) []float32 {
		if len(logits) == V {
			copy(row, logits)
		} else {
			copy(row, logits[i*V:(i+1)*V])
		}
		return row
	}
	group := &kvCache{lanes: g.lanes[:n]}
	tokens := make([]int32, n)
	positions := make([]int32, n)
	starts := make([]int32, n+1)
	for i := range starts {
		starts[i] = int32(i)
	}
	for step := 0; step < maxNew; step++ {
		if err := ctx.Err(); err != nil {
			return out, err
		}
		live := 0
		for i := 0; i < n; i++ {
			if done[i] {
				continue
			}
			id := Sample(lastRow(i), opts[i], seen[i], rngs[i])
			out[i] = append(out[i], id)
			seen[i][id] = true
			if isStop(id, opts[0].StopIDs) {
				done[i] = true
			} else {
				live++
			}
		}
		if onToken != nil && !onToken() {
			break
		}
		if live == 0 || step == maxNew-1 {
			break
		}
		// Every lane takes a row, finished ones too (their output is
		// ignored), so the lanes stay at one position.
		p := g.lanes[0].pos
		for i := 0; i < n; i++ {
			tokens[i] = out[i][len(out[i])-1]
			positions[i] = int32(p)
		}
		if logits, err = g.pass(group, tokens, positions, starts, n); err != nil {
			return out, err
		}
		for _, lane := range g.lanes[:n] {
			lane.pos++
		}
	}
	return out, nil
}
