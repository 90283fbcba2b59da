package engine

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"time"

	"whet/datasets"
	"whet/datasets/tokenizer"
	"whet/engine/reward"
)

// GRPO's training loop, TRL's way: one optimizer step takes
// train.micro_batch × train.grad_accum completions, num_generations per
// prompt, so a step covers micro_batch × grad_accum / num_generations
// prompts (a "generation batch"). The completions are sampled from the
// current policy, scored, turned into advantages, and the same batch is
// trained on for num_iterations (μ) steps; with μ > 1 the log-probs of the
// generating policy are kept as the ratio's "old" side. An epoch visits
// every prompt once per iteration, in a seeded order per epoch, so a
// resumed run regenerates exactly the batch it stopped in.

// GRPOPrompt is one prompt row, tokenized with the chat template.
type GRPOPrompt struct {
	Text   string // the last user turn, as reward functions see it
	IDs    []int32
	Answer string
	Fields map[string]any
}

// GRPORun is GRPO's part of a trainer: prompts, reward functions, the
// generator and the current generation batch.
type GRPORun struct {
	Cfg      GRPOConfig
	Funcs    []reward.Func
	Weights  []float64
	Prompts  []GRPOPrompt
	Tok      *tokenizer.Tokenizer
	Template *datasets.Template
	// TruncatedPrompts counts prompts cut (from the left, keeping their
	// end) to data.max_length tokens.
	TruncatedPrompts int

	// GenSeconds and GenTokens time the last generation batch's sampling
	// (whet bench reports generation and update rates apart).
	GenSeconds float64
	GenTokens  int

	maxPrompt int
	gen       *GroupGenerator
	stop      []int32
	cur       *grpoRollout
	samples   []SampleEvent
}

// grpoRollout is one generation batch, ready to train on.
type grpoRollout struct {
	epoch, block int
	comps        []grpoCompletion
	metrics      map[string]float64
}

// grpoCompletion is one sampled completion as a training sequence.
type grpoCompletion struct {
	batch  *datasets.Batch
	seq    GRPOSeq
	tokens int // completion tokens in the loss (0 when masked as truncated)
}

// NewGRPORun tokenizes the prompt rows (each rendered as a conversation
// with the generation prompt, left-truncated to maxPrompt tokens) and
// builds the reward functions.
func NewGRPORun(cfg GRPOConfig, rows []datasets.Example, tok *tokenizer.Tokenizer, tpl *datasets.Template, maxPrompt int) (*GRPORun, error) {
	funcs, weights, err := reward.Build(cfg.Rewards)
	if err != nil {
		return nil, err
	}
	g := &GRPORun{Cfg: cfg, Funcs: funcs, Weights: weights, Tok: tok, Template: tpl, stop: StopIDs(tok, tpl)}
	for _, ex := range rows {
		ids, err := EncodeChat(tok, tpl, ex.Messages)
		if err != nil {
			return nil, fmt.Errorf("%s: prompt: %w", ex.Loc, err)
		}
		if maxPrompt > 0 && len(ids) > maxPrompt {
			ids = ids[len(ids)-maxPrompt:]
			g.TruncatedPrompts++
		}
		text := ""
		for _, m := range ex.Messages {
			if m.Role == "user" {
				text = m.Content
			}
		}
		g.Prompts = append(g.Prompts, GRPOPrompt{Text: text, IDs: ids, Answer: ex.Answer, Fields: ex.Fields})
		g.maxPrompt = max(g.maxPrompt, len(ids))
	}
	if len(g.Prompts) == 0 {
		return nil, fmt.Errorf("grpo: no prompts to train on")
	}
	return g, nil
}

// NewGRPORunTokens is a GRPO run over prompts given as token ids, without
// a tokenizer: the reward functions see empty prompt and completion texts
// and the completions' token counts (whet bench on random weights).
func NewGRPORunTokens(cfg GRPOConfig, prompts [][]int32) (*GRPORun, error) {
	funcs, weights, err := reward.Build(cfg.Rewards)
	if err != nil {
		return nil, err
	}
	g := &GRPORun{Cfg: cfg, Funcs: funcs, Weights: weights}
	for _, ids := range prompts {
		if len(ids) == 0 {
			return nil, fmt.Errorf("grpo: an empty prompt")
		}
		g.Prompts = append(g.Prompts, GRPOPrompt{IDs: ids})
		g.maxPrompt = max(g.maxPrompt, len(ids))
	}
	if len(g.Prompts) == 0 {
		return nil, fmt.Errorf("grpo: no prompts to train on")
	}
	return g, nil
}

// MaxSeqTokens is the longest training sequence: prompt and completion.
func (g *GRPORun) MaxSeqTokens() int { return g.maxPrompt + g.Cfg.MaxCompletionLength }

// Names are the reward functions' metric names.
func (g *GRPORun) Names() []string {
	out := make([]string, len(g.Funcs))
	for i, f := range g.Funcs {
		out[i] = f.Name()
	}
	return out
}

// Free releases the generator.
func (g *GRPORun) Free() {
	if g.gen != nil {
		g.gen.Free()
		g.gen = nil
	}
}

// Samples are the latest generation batch's first completions (one per
// prompt, at most three) with their rewards, for the samples stream.
func (g *GRPORun) Samples(step int) []SampleEvent {
	out := make([]SampleEvent, len(g.samples))
	for i, s := range g.samples {
		s.Step = step
		out[i] = s
	}
	return out
}

// promptsPerStep is the prompts of one generation batch.
func (g *GRPORun) promptsPerStep(microBatch, accum int) int {
	return max(1, microBatch*max(1, accum)/g.Cfg.NumGenerations)
}

// rowsPerEpoch counts the completions trained on in one epoch (each
// generation batch μ times), in whole generation batches.
func (g *GRPORun) rowsPerEpoch(microBatch, accum int) int {
	pps := g.promptsPerStep(microBatch, accum)
	blocks := (len(g.Prompts) + pps - 1) / pps
	return blocks * pps * g.Cfg.NumGenerations * g.Cfg.NumIterations
}

// grpoObjective trains on the trainer's GRPO run.
type grpoObjective struct{ g *GRPORun }

var _ objective = grpoObjective{}

func (o grpoObjective) accumulate(t *Trainer, cursor, n int) (stepLoss, error) {
	g := o.g
	out := stepLoss{Metrics: map[string]float64{}}
	mb := max(1, t.Cfg.MicroBatch)
	spe := t.StepsPerEpoch()
	stepIdx := cursor / max(1, n)
	epoch, within := stepIdx/spe, stepIdx%spe
	block := within / g.Cfg.NumIterations
	if g.cur == nil || g.cur.epoch != epoch || g.cur.block != block {
		r, err := g.rollout(t, epoch, block, g.promptsPerStep(mb, n))
		if err != nil {
			return out, fmt.Errorf("step %d: %w", t.step+1, err)
		}
		g.cur = r
	}
	comps := g.cur.comps
	stepTokens := 0
	for _, c := range comps {
		stepTokens += c.tokens
	}
	used := min(n, (len(comps)+mb-1)/mb)
	loss := g.Cfg.Loss()
	var stats GRPOTokenStats
	for i := 0; i < used; i++ {
		part := comps[i*mb : min((i+1)*mb, len(comps))]
		rows := make([]*datasets.Batch, len(part))
		seqs := make([]GRPOSeq, len(part))
		lens := make([]int, len(part))
		for k, c := range part {
			rows[k], seqs[k], lens[k] = c.batch, c.seq, c.tokens
		}
		b := JoinBatches(rows)
		r, err := t.Acts.GRPOForwardBackward(b, seqs, loss, loss.SeqWeights(lens, used, stepTokens), t.dropoutSeed(cursor+i))
		if err != nil {
			return out, fmt.Errorf("step %d micro-batch %d: %w", t.step+1, i, err)
		}
		out.Loss += r.Loss
		stats.add(r.Stats)
		out.Tokens += b.NumTokens()
	}
	for k, v := range g.cur.metrics {
		out.Metrics[k] = v
	}
	for k, v := range stats.Metrics(loss.Beta) {
		out.Metrics[k] = v
	}
	out.Epoch = float64(epoch) + float64(within+1)/float64(spe)
	return out, nil
}

// evaluate: GRPO has no held-out loss (its loss is ~0 by construction);
// Prepare gives it no eval rows, so this only answers a direct call.
func (grpoObjective) evaluate(*Trainer) (float64, error) {
	return 0, fmt.Errorf("grpo has no evaluation loss; watch the reward metrics")
}

// errStepStopped ends a step whose sampling a stop request interrupted:
// nothing was updated, and Run stops at the previous step.
var errStepStopped = errors.New("stopped while sampling")

// stopRequested reports a Stop, which sampling checks between tokens (a
// GRPO step can sample for minutes).
func (c *control) stopRequested() bool {
	if c == nil {
		return false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.stop
}

// grpoSeed is the sampling seed of one completion: fixed by the run seed
// and the completion's place, so a resumed run samples the same batch.
func grpoSeed(seed int64, epoch, block, i int) uint64 {
	return mix64(uint64(seed) ^ uint64(epoch)<<44 ^ uint64(block)<<22 ^ uint64(i)*0x9e3779b9)
}

// rollout samples, scores and prepares one generation batch.
func (g *GRPORun) rollout(t *Trainer, epoch, block, pps int) (*grpoRollout, error) {
	rng := rand.New(rand.NewPCG(uint64(t.Seed), uint64(epoch)+0x67))
	order := rng.Perm(len(g.Prompts))
	lo := block * pps
	if lo >= len(order) {
		return nil, fmt.Errorf("grpo: generation batch %d starts past the %d prompts", block, len(order))
	}
	idx := order[lo:min(lo+pps, len(order))]
	c := g.Cfg
	G := c.NumGenerations
	if g.gen == nil {
		// The completions of several prompts are sampled together, in a
		// paged cache as large as the G contiguous lanes of one longest
		// prompt would be (the memory plan's): prompts shorter than the
		// longest leave room for more of them in one pass.
		lanes := G * max(1, min(pps, g.MaxSeqTokens()/G))
		perLane := (g.MaxSeqTokens() + DefaultKVBlockTokens - 1) / DefaultKVBlockTokens
		gen, err := t.Model.NewPagedGroupGenerator(lanes, g.MaxSeqTokens(), DefaultKVBlockTokens, G*perLane)
		if err != nil {
			return nil, err
		}
		g.gen = gen
	}
	r := &grpoRollout{epoch: epoch, block: block}
	var inputs []reward.Input
	ctx := context.Background()
	minLen, maxLen, truncated, total := math.MaxInt, 0, 0, 0
	began := time.Now()
	poolBlocks, blockTokens := g.gen.KVBlocks()
	for a := 0; a < len(idx); {
		// A pack of prompts whose G completions each fit the lanes and
		// the pool, at least one.
		b, used := a, 0
		for b < len(idx) && (b-a+1)*G <= len(g.gen.lanes) {
			need := G * ((len(g.Prompts[idx[b]].IDs) + c.MaxCompletionLength + blockTokens - 1) / blockTokens)
			if b > a && used+need > poolBlocks {
				break
			}
			used += need
			b++
		}
		var prompts [][]int32
		var opts []SampleOptions
		for k := a; k < b; k++ {
			// Each completion with its own seed, by its place in the
			// generation batch.
			for j := 0; j < G; j++ {
				prompts = append(prompts, g.Prompts[idx[k]].IDs)
				opts = append(opts, SampleOptions{MaxNewTokens: c.MaxCompletionLength, Temperature: c.Temperature, TopK: c.TopK, TopP: c.TopP,
					MinP: c.MinP, RepetitionPenalty: c.RepetitionPenalty, Seed: grpoSeed(t.Seed, epoch, block, k*G+j), StopIDs: g.stop})
			}
		}
		stopped := false
		outs, err := g.gen.GenerateMany(ctx, prompts, opts, func() bool {
			stopped = t.ctl.stopRequested()
			return !stopped
		})
		if stopped {
			return nil, errStepStopped
		}
		if err != nil {
			return nil, fmt.Errorf("generate the completions of prompts %v: %w", idx[a:b], err)
		}
		for k := a; k < b; k++ {
			pr := g.Prompts[idx[k]]
			for _, ids := range outs[(k-a)*G : (k-a+1)*G] {
				cut := len(ids) == c.MaxCompletionLength && !isStop(ids[len(ids)-1], g.stop)
				text := ""
				if g.Tok != nil {
					text = g.Tok.Decode(toInts(ids), true)
				}
				inputs = append(inputs, reward.Input{Prompt: pr.Text, Completion: text, Answer: pr.Answer, Tokens: len(ids), Truncated: cut, Row: pr.Fields})
				comp := grpoCompletion{batch: completionRow(pr.IDs, ids, cut && c.MaskTruncated), tokens: len(ids)}
				if cut && c.MaskTruncated {
					comp.tokens = 0
				}
				r.comps = append(r.comps, comp)
				minLen, maxLen, total = min(minLen, len(ids)), max(maxLen, len(ids)), total+len(ids)
				if cut {
					truncated++
				}
			}
		}
		a = b
	}
	g.GenSeconds, g.GenTokens = time.Since(began).Seconds(), total
	rewards := make([][]float64, len(inputs))
	for i := range rewards {
		rewards[i] = make([]float64, len(g.Funcs))
	}
	for k, f := range g.Funcs {
		got, err := f.Score(ctx, inputs)
		if err != nil {
			return nil, err
		}
		if len(got) != len(inputs) {
			return nil, fmt.Errorf("reward %s: %d rewards for %d completions", f.Name(), len(got), len(inputs))
		}
		for i, v := range got {
			rewards[i][k] = v
		}
	}
	adv, metrics, err := GRPOAdvantagesWith(rewards, g.Weights, g.Names(), G, c.ScaleRewards, c.MultiObjectiveAggregation)
	if err != nil {
		return nil, err
	}
	n := float64(len(inputs))
	metrics["completions/mean_length"] = float64(total) / n
	metrics["completions/min_length"] = float64(minLen)
	metrics["completions/max_length"] = float64(maxLen)
	metrics["completions/clipped_ratio"] = float64(truncated) / n
	r.metrics = metrics
	for i := range r.comps {
		r.comps[i].seq.Advantage = adv[i]
	}
	if err := g.policyLogprobs(t, r); err != nil {
		return nil, err
	}
	g.samples = g.samples[:0]
	for k := 0; k < len(idx) && k < 3; k++ {
		i := k * G
		rw := map[string]float64{}
		sum := 0.0
		for f, name := range g.Names() {
			rw[name] = zeroNaN(rewards[i][f])
			if !math.IsNaN(rewards[i][f]) {
				sum += g.Weights[f] * rewards[i][f]
			}
		}
		rw["reward"] = sum
		g.samples = append(g.samples, SampleEvent{Prompt: inputs[i].Prompt, Text: strings.TrimSpace(inputs[i].Completion), Rewards: rw})
	}
	return r, nil
}

// policyLogprobs fills the batch's "old" log-probs (μ > 1: the policy that
// generated) and reference log-probs (β > 0: the adapters off), by forward
// passes without gradients, a micro-batch at a time.
func (g *GRPORun) policyLogprobs(t *Trainer, r *grpoRollout) error {
	needOld, needRef := g.Cfg.NumIterations > 1, g.Cfg.Beta != 0
	if !needOld && !needRef {
		return nil
	}
	mb := max(1, t.Cfg.MicroBatch)
	pass := func(set func(c *grpoCompletion, lp []float64)) error {
		for s := 0; s < len(r.comps); s += mb {
			part := r.comps[s:min(s+mb, len(r.comps))]
			rows := make([]*datasets.Batch, len(part))
			for k := range part {
				rows[k] = part[k].batch
			}
			lps, err := t.Acts.CompletionLogprobs(JoinBatches(rows))
			if err != nil {
				return err
			}
			for k := range part {
				set(&part[k], lps[k])
			}
		}
		return nil
	}
	if needOld {
		if err := pass(func(c *grpoCompletion, lp []float64) { c.seq.Old = lp }); err != nil {
			return fmt.Errorf("old log-probs: %w", err)
		}
	}
	if needRef {
		t.Model.SetLoRAEnabled(false)
		err := pass(func(c *grpoCompletion, lp []float64) { c.seq.Ref = lp })
		t.Model.SetLoRAEnabled(true)
		if err != nil {
			return fmt.Errorf("reference log-probs: %w", err)
		}
	}
	return nil
}

// completionRow is one training sequence: the prompt, whose targets are
// ignored but for its last token (which predicts the completion's first),
// then the completion (its last token predicts nothing). masked leaves
// every target ignored (mask_truncated_completions).
func completionRow(prompt, completion []int32, masked bool) *datasets.Batch {
	toks := append(append([]int32(nil), prompt...), completion...)
	b := &datasets.Batch{Tokens: toks, SeqStarts: []int32{0, int32(len(toks))}}
	for i := range toks {
		b.Positions = append(b.Positions, int32(i))
		if masked || i < len(prompt)-1 || i == len(toks)-1 {
			b.Targets = append(b.Targets, datasets.IgnoreIndex)
		} else {
			b.Targets = append(b.Targets, toks[i+1])
		}
	}
	return b
}

// notice says what the run will do, for the log.
func (g *GRPORun) notice() string {
	var fs []string
	for i, f := range g.Funcs {
		fs = append(fs, fmt.Sprintf("%s×%g", f.Name(), g.Weights[i]))
	}
	s := fmt.Sprintf("grpo: %d prompts, %d completions each (up to %d tokens), loss %s, rewards %s",
		len(g.Prompts), g.Cfg.NumGenerations, g.Cfg.MaxCompletionLength, g.Cfg.LossType, strings.Join(fs, " + "))
	if g.TruncatedPrompts > 0 {
		s += fmt.Sprintf("; %d prompts cut to data.max_length from the left", g.TruncatedPrompts)
	}
	return s
}
