package engine

import (
	"fmt"
	"math"

	"whet/datasets"
)

// GRPO (Shao et al., DeepSeekMath) as TRL's GRPOTrainer computes it, with
// multi_objective_aggregation "sum_then_normalize" and token-level
// importance sampling. For every prompt G completions o_1..o_G are sampled
// from the policy; reward functions score them; then
//
//	r_i   = Σ_k w_k r_ik                      (NaN rewards skipped; all NaN: unscorable)
//	A_i   = r_i - mean_group(r)               ÷ (std + 1e-4) unless scale_rewards is none
//	        (std of the group, or of the whole batch for scale_rewards batch; Bessel-corrected)
//	ρ_t   = exp(logp_t - old_t)               (old = the policy that generated; ρ = 1 when μ = 1)
//	l_t   = -min(ρ_t A_i, clip(ρ_t, 1-ε, 1+ε_high) A_i) + β kl_t
//	kl_t  = exp(ref_t - logp_t) - (ref_t - logp_t) - 1
//
// and the loss aggregates l_t over the completion tokens by loss type:
//
//	grpo:    mean over sequences of (Σ_t l_t / |o_i|), ÷ grad_accum
//	bnpo:    Σ l_t / (completion tokens of the micro-batch), ÷ grad_accum
//	dr_grpo: Σ l_t / (sequences of the micro-batch × max_completion_length), ÷ grad_accum
//	dapo:    Σ l_t / (completion tokens of the whole step)
//
// so every loss type is Σ_i w_i Σ_t l_t with a per-sequence weight w_i
// (GRPOLoss.SeqWeights). The gradient reaches the network through the
// per-token log-probs: with g_t = dl_t/dlogp_t,
//
//	g_t = -A_i ρ_t  unless the clipped branch is taken (A>0, ρ>1+ε_high or A<0, ρ<1-ε): 0
//	    + β (1 - exp(ref_t - logp_t))
//
// and logp_t = -(token loss), so the head's cross-entropy gradient of each
// completion token is scaled by -w_i g_t.

// GRPOLoss holds the objective's settings (TRL's names).
type GRPOLoss struct {
	Type        string  // dapo | grpo | dr_grpo | bnpo
	Beta        float64 // KL coefficient (0: no reference pass)
	Epsilon     float64 // lower clip
	EpsilonHigh float64 // upper clip (0: Epsilon)
	// MaxCompletion is dr_grpo's constant, max_completion_length.
	MaxCompletion int
	// Sequence takes one ratio per completion, exp of the mean of its
	// tokens' log-ratios (importance_sampling_level "sequence", GSPO),
	// instead of one per token; its clip ratios count completions.
	Sequence bool
}

// GRPOLossTypes are the loss aggregations, TRL's default first.
var GRPOLossTypes = []string{"dapo", "grpo", "dr_grpo", "bnpo"}

// GRPOScaleRewards are scale_rewards' choices, TRL's default first.
var GRPOScaleRewards = []string{"group", "batch", "none"}

// GRPOAggregations are multi_objective_aggregation's choices, TRL's
// default first.
var GRPOAggregations = []string{"sum_then_normalize", "normalize_then_sum"}

func (l GRPOLoss) epsHigh() float64 {
	if l.EpsilonHigh == 0 {
		return l.Epsilon
	}
	return l.EpsilonHigh
}

// Validate checks the settings.
func (l GRPOLoss) Validate() error {
	if !oneOf(l.Type, GRPOLossTypes) {
		return fmt.Errorf("grpo.loss_type: unknown %q (want one of %v)", l.Type, GRPOLossTypes)
	}
	if err := inRange("grpo.beta", l.Beta, 0, math.MaxFloat64, true, true); err != nil {
		return err
	}
	if err := inRange("grpo.epsilon", l.Epsilon, 0, 1, false, false); err != nil {
		return err
	}
	if err := inRange("grpo.epsilon_high", l.EpsilonHigh, 0, math.MaxFloat64, true, true); err != nil {
		return err
	}
	if l.Type == "dr_grpo" && l.MaxCompletion <= 0 {
		return fmt.Errorf("grpo.max_completion_length must be positive for dr_grpo, got %d", l.MaxCompletion)
	}
	return nil
}

func oneOf(s string, list []string) bool {
	for _, x := range list {
		if s == x {
			return true
		}
	}
	return false
}

// SeqWeights returns w_i for the completions of one micro-batch (lens are
// their completion token counts), in a step of accum micro-batches holding
// stepTokens completion tokens in all.
func (l GRPOLoss) SeqWeights(lens []int, accum, stepTokens int) []float64 {
	w := make([]float64, len(lens))
	n := float64(len(lens))
	acc := float64(max(1, accum))
	tokens := 0
	for _, k := range lens {
		tokens += k
	}
	for i, k := range lens {
		switch l.Type {
		case "grpo":
			w[i] = 1 / (float64(max(k, 1)) * n * acc)
		case "bnpo":
			w[i] = 1 / (float64(max(tokens, 1)) * acc)
		case "dr_grpo":
			w[i] = 1 / (n * float64(l.MaxCompletion) * acc)
		default: // dapo
			w[i] = 1 / float64(max(stepTokens, 1))
		}
	}
	return w
}

// GRPOSeq is one completion of a micro-batch: its advantage and, per
// completion token, the log-probs of the policy that generated it (nil:
// the current policy, μ = 1) and of the reference (nil when β = 0).
type GRPOSeq struct {
	Advantage float64
	Old, Ref  []float64
}

// GRPOTokenStats are token sums a step turns into TRL's token-mean
// metrics, and the extremes over completions of their clipped shares
// (TRL's clip_ratio/low_min and high_max; completions with no token in the
// loss are left out).
type GRPOTokenStats struct {
	Tokens                int
	KL, Low, High, Region float64
	Seqs                  int // completions with tokens in the loss
	LowMin, HighMax       float64
	// ClipUnits is what Low, High and Region count among: tokens, or
	// completions with sequence-level ratios.
	ClipUnits float64
}

func (s *GRPOTokenStats) add(o GRPOTokenStats) {
	if o.Seqs > 0 {
		if s.Seqs == 0 {
			s.LowMin, s.HighMax = o.LowMin, o.HighMax
		}
		s.LowMin, s.HighMax = math.Min(s.LowMin, o.LowMin), math.Max(s.HighMax, o.HighMax)
	}
	s.Seqs += o.Seqs
	s.ClipUnits += o.ClipUnits
	s.Tokens += o.Tokens
	s.KL += o.KL
	s.Low += o.Low
	s.High += o.High
	s.Region += o.Region
}

// Metrics are TRL's kl (only with β > 0) and clip ratios.
func (s GRPOTokenStats) Metrics(beta float64) map[string]float64 {
	n, c := float64(max(s.Tokens, 1)), math.Max(s.ClipUnits, 1)
	m := map[string]float64{"clip_ratio/low_mean": s.Low / c, "clip_ratio/high_mean": s.High / c, "clip_ratio/region_mean": s.Region / c,
		"clip_ratio/low_min": s.LowMin, "clip_ratio/high_max": s.HighMax}
	if beta != 0 {
		m["kl"] = s.KL / n
	}
	return m
}

// token is the loss of one completion token and its derivative by the
// token's log-prob, with whether it was clipped low or high.
//
// r is the probability ratio: the token's own, exp(lp - old), or its
// completion's with sequence-level ratios, where the completion's loss
// -min(r A, clip(r) A) counted on each of its n tokens has the derivative
// n · (-A r) · 1/n = -A r by each token's log-prob: the same form.
func (l GRPOLoss) token(r, lp, ref, adv float64, hasRef bool) (loss, grad, kl float64, low, high bool) {
	lo, hi := 1-l.Epsilon, 1+l.epsHigh()
	c := math.Min(math.Max(r, lo), hi)
	loss = -math.Min(r*adv, c*adv)
	low = r < lo && adv < 0
	high = r > hi && adv > 0
	if !low && !high {
		grad = -adv * r
	}
	if hasRef && l.Beta != 0 {
		d := ref - lp
		kl = math.Exp(d) - d - 1
		loss += l.Beta * kl
		grad += l.Beta * (1 - math.Exp(d))
	}
	return loss, grad, kl, low, high
}

// GRPOResult is one micro-batch's weighted loss and token statistics.
type GRPOResult struct {
	Loss  float64
	Stats GRPOTokenStats
	// Logps are the policy's per-token log-probs of each completion.
	Logps [][]float64
}

// completionLogps splits -token losses into each sequence's completion
// (target) tokens.
func completionLogps(losses []float32, b *datasets.Batch) [][]float64 {
	ns := len(b.SeqStarts) - 1
	out := make([][]float64, ns)
	for s := 0; s < ns; s++ {
		for t := b.SeqStarts[s]; t < b.SeqStarts[s+1]; t++ {
			if b.Targets[t] != datasets.IgnoreIndex {
				out[s] = append(out[s], -float64(losses[t]))
			}
		}
	}
	return out
}

// CompletionLogprobs runs a forward pass without gradients and returns the
// per-token log-probs of every sequence's target tokens under the current
// weights (adapters as they are set): the reference with the adapters
// off, the generating policy's "old" log-probs before an update.
func (a *Activations) CompletionLogprobs(b *datasets.Batch) ([][]float64, error) {
	if _, err := a.ForwardBackward(b, 0, false, 0); err != nil {
		return nil, err
	}
	losses, err := a.TokenLosses()
	if err != nil {
		return nil, err
	}
	return completionLogps(losses, b), nil
}

// GRPOForwardBackward computes Σ_i weights[i] Σ_t l_t over the batch's
// sequences (one completion each, the prompt's targets ignored) and
// accumulates its gradient into the trainable gradients.
func (a *Activations) GRPOForwardBackward(b *datasets.Batch, seqs []GRPOSeq, l GRPOLoss, weights []float64, dropoutSeed uint64) (GRPOResult, error) {
	ns := len(b.SeqStarts) - 1
	if len(seqs) != ns || len(weights) != ns {
		return GRPOResult{}, fmt.Errorf("grpo: %d completions and %d weights for %d sequences", len(seqs), len(weights), ns)
	}
	if err := a.setBatch(b); err != nil {
		return GRPOResult{}, err
	}
	a.dropoutSeed = dropoutSeed
	a.training = true
	if err := a.forward(); err != nil {
		return GRPOResult{}, err
	}
	// First pass over the head: log-probs only.
	if err := a.headLoss(0, false); err != nil {
		return GRPOResult{}, err
	}
	losses, err := a.TokenLosses()
	if err != nil {
		return GRPOResult{}, err
	}
	lps := completionLogps(losses, b)
	res := GRPOResult{Logps: lps}
	scales := make([]float32, len(b.Tokens))
	for s, sq := range seqs {
		lp := lps[s]
		if (sq.Old != nil && len(sq.Old) != len(lp)) || (sq.Ref != nil && len(sq.Ref) != len(lp)) {
			return GRPOResult{}, fmt.Errorf("grpo: sequence %d has %d completion tokens but %d old and %d reference log-probs", s, len(lp), len(sq.Old), len(sq.Ref))
		}
		if l.Beta != 0 && len(sq.Ref) != len(lp) {
			return GRPOResult{}, fmt.Errorf("grpo: sequence %d has no reference log-probs and beta is %g", s, l.Beta)
		}
		var seq GRPOTokenStats
		// Sequence-level ratio: exp of the mean log-ratio of the tokens.
		seqRatio := 1.0
		if l.Sequence && sq.Old != nil && len(lp) > 0 {
			sum := 0.0
			for k := range lp {
				sum += lp[k] - sq.Old[k]
			}
			seqRatio = math.Exp(sum / float64(len(lp)))
		}
		k := 0
		for t := b.SeqStarts[s]; t < b.SeqStarts[s+1]; t++ {
			if b.Targets[t] == datasets.IgnoreIndex {
				continue
			}
			old, ref := lp[k], 0.0
			if sq.Old != nil {
				old = sq.Old[k]
			}
			if sq.Ref != nil {
				ref = sq.Ref[k]
			}
			r := math.Exp(lp[k] - old)
			if l.Sequence {
				r = seqRatio
			}
			li, g, kl, low, high := l.token(r, lp[k], ref, sq.Advantage, sq.Ref != nil)
			res.Loss += weights[s] * li
			// logp = -(token loss): dL/d(token loss) = -w g.
			scales[t] = float32(-weights[s] * g)
			seq.Tokens++
			seq.KL += kl
			if low {
				seq.Low++
			}
			if high {
				seq.High++
			}
			if low || high {
				seq.Region++
			}
			k++
		}
		seq.ClipUnits = float64(seq.Tokens)
		if l.Sequence {
			// One clip decision per completion, counted once (TRL counts
			// every completion, empty ones too).
			seq.ClipUnits = 1
			seq.Low, seq.High, seq.Region = min(seq.Low, 1), min(seq.High, 1), min(seq.Region, 1)
		}
		if seq.ClipUnits > 0 {
			seq.Seqs = 1
			seq.LowMin, seq.HighMax = seq.Low/seq.ClipUnits, seq.High/seq.ClipUnits
		}
		res.Stats.add(seq)
	}
	// Second pass over the head with a gradient scale per token, then the
	// backward through the network.
	if err := a.headLossPerToken(scales); err != nil {
		return GRPOResult{}, err
	}
	if err := a.backward(); err != nil {
		return GRPOResult{}, err
	}
	return res, nil
}

// headLossPerToken is headLoss with one gradient scale per token row. The
// cross-entropy op takes one scale per call, so rows are run in runs of
// equal scale (a prompt's ignored rows together, each completion token on
// its own): the same arithmetic as one pass, in more, smaller head GEMMs.
func (a *Activations) headLossPerToken(scales []float32) error {
	if len(scales) != a.t {
		return fmt.Errorf("%d token scales for %d tokens", len(scales), a.t)
	}
	for r0 := 0; r0 < len(scales); {
		r1 := r0 + 1
		for r1 < len(scales) && scales[r1] == scales[r0] {
			r1++
		}
		if err := a.headLossRange(r0, r1, scales[r0], true); err != nil {
			return err
		}
		r0 = r1
	}
	return nil
}

// GRPOAdvantages turns the rewards of n = groups×g completions (rewards[i][k]
// is function k's reward of completion i, NaN when it gave none) into
// advantages, and TRL's reward metrics under the functions' names, with
// TRL's default aggregation (sum_then_normalize).
func GRPOAdvantages(rewards [][]float64, weights []float64, names []string, g int, scale string) ([]float64, map[string]float64, error) {
	return GRPOAdvantagesWith(rewards, weights, names, g, scale, GRPOAggregations[0])
}

// GRPOAdvantagesWith is GRPOAdvantages with multi_objective_aggregation:
// sum_then_normalize weighs and sums the rewards, then normalises the sum
// per group as scale_rewards says; normalize_then_sum (GDPO) normalises each
// function's rewards within each group (÷ std + 1e-4), sums them with the
// weights, and normalises that sum over the whole batch (scale_rewards
// plays no part).
func GRPOAdvantagesWith(rewards [][]float64, weights []float64, names []string, g int, scale, aggregation string) ([]float64, map[string]float64, error) {
	n := len(rewards)
	if g <= 0 || n%g != 0 {
		return nil, nil, fmt.Errorf("grpo: %d completions do not make groups of %d", n, g)
	}
	if len(weights) != len(names) {
		return nil, nil, fmt.Errorf("grpo: %d reward weights for %d reward functions", len(weights), len(names))
	}
	total := make([]float64, n)
	for i, row := range rewards {
		if len(row) != len(weights) {
			return nil, nil, fmt.Errorf("grpo: completion %d has %d rewards for %d functions", i, len(row), len(weights))
		}
		sum, any := 0.0, false
		for k, r := range row {
			if !math.IsNaN(r) {
				sum += weights[k] * r
				any = true
			}
		}
		total[i] = sum
		if !any {
			total[i] = math.NaN()
		}
	}
	std := make([]float64, n)
	mean := make([]float64, n)
	batchStd := nanStd(total)
	for s := 0; s < n; s += g {
		m, sd := nanMean(total[s:s+g]), nanStd(total[s:s+g])
		if g == 1 {
			sd = 0
		}
		for i := s; i < s+g; i++ {
			mean[i], std[i] = m, sd
			if scale == "batch" {
				std[i] = batchStd
			}
		}
	}
	// The weighted sums are what the metrics report, whatever advantages
	// are made of.
	scored := total
	if aggregation == "normalize_then_sum" {
		scored = normalizedSums(rewards, weights, g)
		m, sd := nanMean(scored), nanStd(scored)
		for i := range scored {
			// Normalised over the batch; the zero-spread count follows
			// the batch's spread.
			mean[i], std[i] = m, sd
		}
		scale = "batch"
	}
	adv := make([]float64, n)
	zero := 0
	for i := range adv {
		a := scored[i] - mean[i]
		if scale != "none" {
			a /= std[i] + 1e-4
		}
		if math.IsNaN(a) {
			a = 0 // unscorable: no learning signal
		}
		adv[i] = a
		// torch.isclose(std, 0): |std| <= 1e-8.
		if math.Abs(std[i]) <= 1e-8 {
			zero++
		}
	}
	metrics := map[string]float64{"reward": zeroNaN(nanMean(total)), "reward_std": zeroNaN(nanStd(total)),
		"frac_reward_zero_std": float64(zero) / float64(n)}
	col := make([]float64, n)
	for k, name := range names {
		for i := range rewards {
			col[i] = rewards[i][k]
		}
		metrics["rewards/"+name+"/mean"] = zeroNaN(nanMean(col))
		metrics["rewards/"+name+"/std"] = zeroNaN(nanStd(col))
	}
	return adv, metrics, nil
}

// normalizedSums are normalize_then_sum's per-completion sums: each
// function's rewards normalised within each group (NaN stays NaN and is
// left out), weighted and summed; NaN when a completion has no reward.
func normalizedSums(rewards [][]float64, weights []float64, g int) []float64 {
	n := len(rewards)
	out := make([]float64, n)
	any := make([]bool, n)
	col := make([]float64, g)
	for k := range weights {
		for s := 0; s < n; s += g {
			for i := 0; i < g; i++ {
				col[i] = rewards[s+i][k]
			}
			m, sd := nanMean(col), nanStd(col)
			if g == 1 {
				sd = 0
			}
			for i := 0; i < g; i++ {
				if v := (col[i] - m) / (sd + 1e-4); !math.IsNaN(v) {
					out[s+i] += weights[k] * v
					any[s+i] = true
				}
			}
		}
	}
	for i := range out {
		if !any[i] {
			out[i] = math.NaN()
		}
	}
	return out
}

func nanMean(x []float64) float64 {
	s, c := 0.0, 0
	for _, v := range x {
		if !math.IsNaN(v) {
			s += v
			c++
		}
	}
	if c == 0 {
		return math.NaN()
	}
	return s / float64(c)
}

// nanStd is TRL's nanstd: Bessel-corrected, NaNs ignored; NaN below two values.
func nanStd(x []float64) float64 {
	m := nanMean(x)
	s, c := 0.0, 0
	for _, v := range x {
		if !math.IsNaN(v) {
			s += (v - m) * (v - m)
			c++
		}
	}
	if c < 2 {
		return math.NaN()
	}
	return math.Sqrt(s / float64(c-1))
}

// zeroNaN keeps NaN (no reward at all) out of the metrics files.
func zeroNaN(x float64) float64 {
	if math.IsNaN(x) {
		return 0
	}
	return x
}
