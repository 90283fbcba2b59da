package engine

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
)

// GenerateMany continues several prompts together, lane i continuing
// prompts[i] with opts[i] (its own seed, length limit and stop ids; a
// limit of 0 means up to MaxLen). Each prompt's prefill runs alone in its
// lane; then every pass decodes one token of every lane at once: the
// projections and the LM head read each weight once for all lanes, and
// attention runs lane by lane over the lane's own cache, at its own
// position. A lane that samples a stop id or reaches its limit is done
// (it keeps a row, at a position that no longer moves, whose output is
// ignored) while the others go on. Each lane gets the tokens that
// Generator.Generate gives its prompt alone with the same options. A
// prompt equal to an earlier one is run once: the later lane starts from
// a copy of the earlier lane's keys and values. For
// side-by-side chat (base and tuned model, or several prompts) and for
// samples during training. onToken, when set, is called after each pass
// and may return false to end every lane.
func (g *GroupGenerator) GenerateMany(ctx context.Context, prompts [][]int32, opts []SampleOptions, onToken func() bool) ([][]int32, error) {
	n := len(prompts)
	if n == 0 || n > len(g.lanes) || len(opts) != n {
		return nil, fmt.Errorf("generation: %d prompts with %d options for %d lanes", n, len(opts), len(g.lanes))
	}
	opts = append([]SampleOptions(nil), opts...)
	for i, p := range prompts {
		if len(p) == 0 {
			return nil, fmt.Errorf("generation: prompt %d is empty", i)
		}
		if opts[i].MaxNewTokens <= 0 {
			opts[i].MaxNewTokens = g.MaxLen - len(p)
		}
		if len(p)+opts[i].MaxNewTokens > g.MaxLen {
			return nil, fmt.Errorf("generation: prompt %d of %d tokens + %d new exceeds the planned %d", i, len(p), opts[i].MaxNewTokens, g.MaxLen)
		}
	}
	needs := make([]int, n)
	for i, p := range prompts {
		needs[i] = len(p) + opts[i].MaxNewTokens
	}
	if err := g.reserve(needs); err != nil {
		return nil, err
	}
	tuned := func(i int) bool { return g.TunedFrom > 0 && i >= g.TunedFrom }
	if g.TunedFrom > 0 {
		defer g.m.SetLoRAEnabled(g.m.loraOn())
	}
	V := g.m.Cfg.VocabSize
	rows := make([][]float32, n) // each lane's latest logits
	rngs := make([]*rand.Rand, n)
	seen := make([]map[int32]bool, n)
	for i, p := range prompts {
		lane := g.lanes[i]
		lane.pos = 0
		// A prompt equal to an earlier one (GRPO's completions of one
		// prompt) is not run again: its keys, values and logits are
		// copied from that lane.
		if g.TunedFrom > 0 {
			g.m.SetLoRAEnabled(tuned(i))
		}
		j := slices.IndexFunc(prompts[:i], func(q []int32) bool { return slices.Equal(q, p) })
		if j >= 0 && tuned(j) == tuned(i) {
			if err := lane.copyPrefix(g.m.B, len(g.m.Layers), g.m.Cfg.KVDim(), len(p), g.lanes[j]); err != nil {
				return nil, fmt.Errorf("prompt %d: %w", i, err)
			}
			rows[i] = slices.Clone(rows[j])
		} else {
			pos := make([]int32, len(p))
			for j := range pos {
				pos[j] = int32(j)
			}
			logits, err := g.pass(lane, p, pos, []int32{0, int32(len(p))}, 1)
			if err != nil {
				return nil, fmt.Errorf("prompt %d: %w", i, err)
			}
			rows[i] = append([]float32(nil), logits[:V]...)
		}
		lane.pos = len(p)
		rngs[i] = rand.New(rand.NewPCG(opts[i].Seed, 0x6e6))
		seen[i] = map[int32]bool{}
		for _, id := range p {
			seen[i][id] = true
		}
	}
	out := make([][]int32, n)
	done := make([]bool, n)
	for {
		if err := ctx.Err(); err != nil {
			return out, err
		}
		live := 0
		for i := 0; i < n; i++ {
			if done[i] {
				continue
			}
			id := Sample(rows[i], opts[i], seen[i], rngs[i])
			out[i] = append(out[i], id)
			seen[i][id] = true
			keep := g.LaneToken == nil || g.LaneToken(i, id)
			if !keep || isStop(id, opts[i].StopIDs) || len(out[i]) == opts[i].MaxNewTokens {
				done[i] = true
			} else {
				live++
			}
		}
		if onToken != nil && !onToken() {
			break
		}
		if live == 0 {
			break
		}
		for _, idx := range g.passGroups(n) {
			if err := g.decodePass(idx, out, done, rows, tuned); err != nil {
				return out, err
			}
		}
	}
	return out, nil
}

// passGroups splits lanes [0, n) into the groups decoded in one pass
// each: all of them, except that under LongRoPE, whose factors a forward
// picks by its positions (past the original context or not, as
// transformers and the one-sequence generator do), the lanes within the
// original context and those past it are apart.
func (g *GroupGenerator) passGroups(n int) [][]int {
	var within, past []int
	rs := g.m.Cfg.RopeScaling
	for i, lane := range g.lanes[:n] {
		if rs != nil && rs.Type == "longrope" && lane.pos+1 > rs.OriginalMaxPositionEmbeddings {
			past = append(past, i)
		} else {
			within = append(within, i)
		}
	}
	var out [][]int
	for _, idx := range [][]int{within, past} {
		if len(idx) > 0 {
			out = append(out, idx)
		}
	}
	return out
}

// decodePass runs the latest token of each lane of idx (ascending) at its
// position in one pass and keeps the logits of those not done, moving
// them on; a done lane's row writes its slot again, at a position that no
// longer moves, so it never runs past its planned length. With TunedFrom
// the base lanes' rows come first and the adapters run on the rest.
func (g *GroupGenerator) decodePass(idx []int, out [][]int32, done []bool, rows [][]float32, tuned func(int) bool) error {
	k := len(idx)
	lanes := make([]*kvCache, k)
	tokens := make([]int32, k)
	positions := make([]int32, k)
	starts := make([]int32, k+1)
	base := 0
	for r, i := range idx {
		lanes[r] = g.lanes[i]
		tokens[r] = out[i][len(out[i])-1]
		positions[r] = int32(g.lanes[i].pos)
		starts[r+1] = int32(r + 1)
		if !tuned(i) {
			base++
		}
	}
	if g.TunedFrom > 0 {
		g.m.SetLoRAEnabled(base < k)
		if base > 0 && base < k {
			g.acts.loraFrom = base
		}
	}
	logits, err := g.pass(&kvCache{lanes: lanes}, tokens, positions, starts, k)
	g.acts.loraFrom = 0
	if err != nil {
		return err
	}
	V := g.m.Cfg.VocabSize
	for r, i := range idx {
		if !done[i] {
			copy(rows[i], logits[r*V:(r+1)*V])
			g.lanes[i].pos++
		}
	}
	return nil
}
