package engine

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"sort"

	"whet/datasets"
)

// SampleOptions are the decoding settings, with transformers' meanings.
// Temperature 0 means greedy (argmax).
type SampleOptions struct {
	MaxNewTokens      int
	Temperature       float64
	TopK              int     // 0 = off
	TopP              float64 // 0 or 1 = off
	MinP              float64 // 0 = off
	RepetitionPenalty float64 // 0 or 1 = off
	Seed              uint64
	// StopIDs end generation when sampled (the template's EOS and
	// end-of-turn tokens); the stop token is included in the output.
	StopIDs []int32
}

// Greedy is deterministic decoding, used for samples during training.
func Greedy(maxNew int, stop []int32) SampleOptions {
	return SampleOptions{MaxNewTokens: maxNew, StopIDs: stop}
}

// kvCache holds every layer's rotated keys and values for one sequence.
type kvCache struct {
	k, v []Tensor // per layer [MaxLen, KVDim]
	pos  int      // positions filled
	kva  KVAttention
	// lanes, when set, are sequences decoded together (GRPO's completions
	// of one prompt): row i of a pass is lanes[i]'s next token, so the
	// projections run on all rows at once and attention lane by lane.
	lanes []*kvCache
}

// attend stores this chunk's k and v at the cache's next positions and
// runs attention of the chunk's queries over everything cached so far.
func (c *kvCache) attend(a *Activations, l int, q, k, v, att Tensor) error {
	if c.lanes != nil {
		return c.attendLanes(a, l, q, k, v, att)
	}
	B, T, kvd := a.m.B, Rows(k), a.m.Cfg.KVDim()
	for _, pair := range [][2]Tensor{{c.k[l], k}, {c.v[l], v}} {
		dst, err := B.View(pair[0], c.pos*kvd, T, kvd)
		if err != nil {
			return err
		}
		if err := B.Copy(dst, pair[1]); err != nil {
			return err
		}
	}
	kAll, err := B.View(c.k[l], 0, c.pos+T, kvd)
	if err != nil {
		return err
	}
	vAll, err := B.View(c.v[l], 0, c.pos+T, kvd)
	if err != nil {
		return err
	}
	return c.kva.AttentionKV(att, q, kAll, vAll, c.pos, a.attnParams(l))
}

// Generator decodes with a KV cache: one prefill over the prompt, then one
// token at a time. It shares the model's weights (and adapters: switch
// them with Model.SetLoRAEnabled to talk to the base or the tuned model).
type Generator struct {
	m      *Model
	acts   *Activations
	cache  *kvCache
	MaxLen int
	host   []float32
}

// NewGenerator plans buffers for prompt + new tokens up to maxLen.
func (m *Model) NewGenerator(maxLen int) (*Generator, error) {
	kva, ok := m.B.(KVAttention)
	if !ok {
		return nil, fmt.Errorf("backend %s cannot generate: it has no cached attention", m.B.Name())
	}
	acts, err := m.NewActivations(maxLen, true)
	if err != nil {
		return nil, err
	}
	g := &Generator{m: m, acts: acts, MaxLen: maxLen, cache: &kvCache{kva: kva}, host: make([]float32, m.Cfg.VocabSize)}
	for range m.Layers {
		for _, dst := range []*[]Tensor{&g.cache.k, &g.cache.v} {
			t, err := m.B.Alloc(m.Compute, maxLen, m.Cfg.KVDim())
			if err != nil {
				g.Free()
				return nil, fmt.Errorf("allocate kv cache for %d tokens: %w", maxLen, err)
			}
			*dst = append(*dst, t)
		}
	}
	return g, nil
}

// Free releases the generator's buffers.
func (g *Generator) Free() {
	g.acts.Free()
	for _, t := range append(g.cache.k, g.cache.v...) {
		g.m.B.Free(t)
	}
	g.cache.k, g.cache.v = nil, nil
}

// step feeds tokens at the cache's next positions and returns the logits
// of the last one (in g.host).
func (g *Generator) step(tokens []int32) ([]float32, error) {
	a, B := g.acts, g.m.B
	p0 := g.cache.pos
	if p0+len(tokens) > g.MaxLen {
		return nil, fmt.Errorf("generation: %d tokens exceed the planned %d", p0+len(tokens), g.MaxLen)
	}
	b := &datasets.Batch{Tokens: tokens, SeqStarts: []int32{0, int32(len(tokens))}}
	for i := range tokens {
		b.Targets = append(b.Targets, datasets.IgnoreIndex)
		b.Positions = append(b.Positions, int32(p0+i))
	}
	if err := a.setBatch(b); err != nil {
		return nil, err
	}
	a.training = false
	a.kv = g.cache
	err := a.forward()
	a.kv = nil
	if err != nil {
		return nil, err
	}
	g.cache.pos += len(tokens)
	V := g.m.Cfg.VocabSize
	logits, err := B.View(a.logits, 0, 1, V)
	if err != nil {
		return nil, err
	}
	last := a.rowRange(a.hN, len(tokens)-1, len(tokens))
	if err := B.MatMul(logits, last, g.m.Head.W.W, false, true, 1, 0); err != nil {
		return nil, fmt.Errorf("lm head: %w", err)
	}
	if err := B.Download(logits, g.host); err != nil {
		return nil, err
	}
	if c := g.m.Cfg.FinalSoftCap; c > 0 {
		// Gemma 2 caps its final logits; one row, so on the host.
		for i, x := range g.host {
			g.host[i] = float32(c * math.Tanh(float64(x)/c))
		}
	}
	return g.host, nil
}

// Generate continues prompt and returns the new token ids. onToken, when
// set, sees each new id as it is chosen and may return false to stop
// (stop strings are checked by the caller, which decodes text).
func (g *Generator) Generate(ctx context.Context, prompt []int32, o SampleOptions, onToken func(id int32) bool) ([]int32, error) {
	if len(prompt) == 0 {
		return nil, fmt.Errorf("generation: empty prompt")
	}
	if o.MaxNewTokens <= 0 {
		o.MaxNewTokens = g.MaxLen - len(prompt)
	}
	if len(prompt)+o.MaxNewTokens > g.MaxLen {
		return nil, fmt.Errorf("generation: prompt of %d tokens + %d new exceeds the planned %d", len(prompt), o.MaxNewTokens, g.MaxLen)
	}
	g.cache.pos = 0
	rng := rand.New(rand.NewPCG(o.Seed, 0x6e6))
	seen := map[int32]bool{}
	for _, id := range prompt {
		seen[id] = true
	}
	logits, err := g.step(prompt)
	if err != nil {
		return nil, err
	}
	var out []int32
	for len(out) < o.MaxNewTokens {
		if err := ctx.Err(); err != nil {
			return out, err
		}
		id := Sample(logits, o, seen, rng)
		out = append(out, id)
		seen[id] = true
		if onToken != nil && !onToken(id) {
			break
		}
		if isStop(id, o.StopIDs) || len(out) == o.MaxNewTokens {
			break
		}
		if logits, err = g.step([]int32{id}); err != nil {
			return out, err
		}
	}
	return out, nil
}

func isStop(id int32, stops []int32) bool {
	for _, s := range stops {
		if id == s {
			return true
		}
	}
	return false
}

// Sample picks the next token from logits (modified in place), applying in
// transformers' order: repetition penalty, temperature, top-k, top-p,
// min-p. Temperature 0 is greedy; ties go to the lowest id, as argmax does.
func Sample(logits []float32, o SampleOptions, seen map[int32]bool, rng *rand.Rand) int32 {
	if o.RepetitionPenalty > 0 && o.RepetitionPenalty != 1 {
		pen := float32(o.RepetitionPenalty)
		for id := range seen {
			if int(id) < len(logits) {
				if logits[id] < 0 {
					logits[id] *= pen
				} else {
					logits[id] /= pen
				}
			}
		}
	}
	if o.Temperature <= 0 {
		best := 0
		for i, v := range logits {
			if v > logits[best] {
				best = i
			}
		}
		return int32(best)
	}
	negInf := float32(math.Inf(-1))
	for i := range logits {
		logits[i] /= float32(o.Temperature)
	}
	if o.TopK > 0 && o.TopK < len(logits) {
		sorted := append([]float32(nil), logits...)
		sort.Slice(sorted, func(i, j int) bool { return sorted[i] > sorted[j] })
		kth := sorted[o.TopK-1]
		for i, v := range logits {
			if v < kth {
				logits[i] = negInf
			}
		}
	}
	probs := softmax64(logits)
	if o.TopP > 0 && o.TopP < 1 {
		idx := make([]int, len(probs))
		for i := range idx {
			idx[i] = i
		}
		// Ascending, as transformers' TopPLogitsWarper: drop the tokens
		// whose cumulative probability stays within 1-top_p, keep >= 1.
		sort.SliceStable(idx, func(a, b int) bool { return probs[idx[a]] < probs[idx[b]] })
		var cum float64
		for n, i := range idx {
			cum += probs[i]
			if cum <= 1-o.TopP && n < len(idx)-1 {
				logits[i] = negInf
			}
		}
		probs = softmax64(logits)
	}
	if o.MinP > 0 {
		top := 0.0
		for _, p := range probs {
			top = math.Max(top, p)
		}
		for i, p := range probs {
			if p < o.MinP*top {
				logits[i] = negInf
			}
		}
		probs = softmax64(logits)
	}
	u := rng.Float64()
	var cum float64
	last := 0
	for i, p := range probs {
		if p == 0 {
			continue
		}
		last = i
		cum += p
		if u < cum {
			return int32(i)
		}
	}
	return int32(last)
}

func softmax64(logits []float32) []float64 {
	m := math.Inf(-1)
	for _, v := range logits {
		m = math.Max(m, float64(v))
	}
	out := make([]float64, len(logits))
	var sum float64
	for i, v := range logits {
		out[i] = math.Exp(float64(v) - m)
		sum += out[i]
	}
	for i := range out {
		out[i] /= sum
	}
	return out
}
