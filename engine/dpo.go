package engine

import (
	"fmt"
	"math"

	"whet/datasets"
)

// DPO (Rafailov et al.) as TRL computes it. A batch holds pairs laid out
// as consecutive sequences: chosen_0, rejected_0, chosen_1, rejected_1, …,
// each with its prompt masked (targets -100), so a sequence's log-prob is
// the sum over its response tokens: pi = -sum(token losses).
//
//	h_i     = (pi_c - ref_c) - (pi_r - ref_r)
//	sigmoid: loss_i = -(1-ls)*log σ(β h_i) - ls*log σ(-β h_i)
//	ipo:     loss_i = (h_i - 1/(2β))^2, with log-probs averaged over tokens
//	loss    = mean_i loss_i
//
// Metrics (TRL's names): rewards/chosen = β(pi_c - ref_c), rewards/rejected
// = β(pi_r - ref_r), rewards/margins = their difference, rewards/accuracies
// = fraction with chosen reward > rejected reward, logps/chosen and
// logps/rejected = mean policy log-probs.
//
// The gradient reaches the network through each sequence's token losses:
// dL/d(token loss) = -dL/dpi_seq (÷ tokens for ipo), which the head applies
// as a per-sequence scale on the cross-entropy gradient.

// DPOLoss holds the loss settings.
type DPOLoss struct {
	Beta           float64
	LabelSmoothing float64
	Type           string // sigmoid (default) | ipo
}

// PairLogps are the summed (or, for ipo, averaged) response log-probs of
// one preference pair.
type PairLogps struct{ Chosen, Rejected float64 }

// average reports whether the loss works on per-token mean log-probs.
func (d DPOLoss) average() bool { return d.Type == "ipo" }

// Validate checks the settings.
func (d DPOLoss) Validate() error {
	if err := inRange("dpo.beta", d.Beta, 0, math.MaxFloat64, false, true); err != nil {
		return err
	}
	if err := inRange("dpo.label_smoothing", d.LabelSmoothing, 0, 0.5, true, false); err != nil {
		return err
	}
	switch d.Type {
	case "", "sigmoid", "ipo":
		return nil
	}
	return fmt.Errorf("dpo.loss_type: unknown %q (want sigmoid or ipo)", d.Type)
}

// logSigmoid is log σ(x), stable for large |x|.
func logSigmoid(x float64) float64 {
	if x >= 0 {
		return -math.Log1p(math.Exp(-x))
	}
	return x - math.Log1p(math.Exp(x))
}

func sigmoid(x float64) float64 { return 1 / (1 + math.Exp(-x)) }

// Compute returns the mean loss over the pairs, dL/dpi for each chosen and
// rejected sequence (for the mean loss), and the metrics.
func (d DPOLoss) Compute(pol, ref []PairLogps) (loss float64, dChosen, dRejected []float64, metrics map[string]float64) {
	n := float64(len(pol))
	dChosen = make([]float64, len(pol))
	dRejected = make([]float64, len(pol))
	var rc, rr, acc, lc, lr float64
	for i := range pol {
		h := (pol[i].Chosen - ref[i].Chosen) - (pol[i].Rejected - ref[i].Rejected)
		var li, dh float64
		if d.Type == "ipo" {
			e := h - 1/(2*d.Beta)
			li, dh = e*e, 2*e
		} else {
			b, ls := d.Beta, d.LabelSmoothing
			li = -(1-ls)*logSigmoid(b*h) - ls*logSigmoid(-b*h)
			// d/dh of -log σ(βh) is -β σ(-βh); of -log σ(-βh) is β σ(βh).
			dh = -(1-ls)*b*sigmoid(-b*h) + ls*b*sigmoid(b*h)
		}
		loss += li / n
		dChosen[i] = dh / n
		dRejected[i] = -dh / n
		c := d.Beta * (pol[i].Chosen - ref[i].Chosen)
		r := d.Beta * (pol[i].Rejected - ref[i].Rejected)
		rc += c
		rr += r
		if c > r {
			acc++
		}
		lc += pol[i].Chosen
		lr += pol[i].Rejected
	}
	metrics = map[string]float64{
		"rewards/chosen": rc / n, "rewards/rejected": rr / n, "rewards/margins": (rc - rr) / n,
		"rewards/accuracies": acc / n, "logps/chosen": lc / n, "logps/rejected": lr / n,
	}
	// dpoMetricNames below lists these keys.
	return loss, dChosen, dRejected, metrics
}

// dpoMetricNames are the keys of Compute's metrics.
var dpoMetricNames = []string{"rewards/chosen", "rewards/rejected", "rewards/margins", "rewards/accuracies", "logps/chosen", "logps/rejected"}

// sequenceLogps sums (or averages) -token loss over each sequence's target
// tokens; it also returns the target count of each sequence.
func sequenceLogps(losses []float32, b *datasets.Batch, average bool) ([]float64, []int) {
	ns := len(b.SeqStarts) - 1
	out := make([]float64, ns)
	counts := make([]int, ns)
	for s := 0; s < ns; s++ {
		for t := b.SeqStarts[s]; t < b.SeqStarts[s+1]; t++ {
			if b.Targets[t] != datasets.IgnoreIndex {
				out[s] -= float64(losses[t])
				counts[s]++
			}
		}
		if average && counts[s] > 0 {
			out[s] /= float64(counts[s])
		}
	}
	return out, counts
}

// pairsOf splits per-sequence values into pairs (chosen, rejected).
func pairsOf(b *datasets.Batch, seq []float64) ([]PairLogps, error) {
	if len(seq)%2 != 0 {
		return nil, fmt.Errorf("dpo batch has %d sequences; pairs need an even number", len(seq))
	}
	out := make([]PairLogps, len(seq)/2)
	for i := range out {
		out[i] = PairLogps{Chosen: seq[2*i], Rejected: seq[2*i+1]}
	}
	return out, nil
}

// PairLogprobs runs a forward pass without gradients and returns each
// pair's log-probs under the current weights (adapters as they are set):
// the reference values when the adapters are off or before training.
func (a *Activations) PairLogprobs(b *datasets.Batch, d DPOLoss) ([]PairLogps, error) {
	if _, err := a.ForwardBackward(b, 0, false, 0); err != nil {
		return nil, err
	}
	losses, err := a.TokenLosses()
	if err != nil {
		return nil, err
	}
	seq, _ := sequenceLogps(losses, b, d.average())
	return pairsOf(b, seq)
}

// DPOResult is one micro-batch's DPO loss and metrics.
type DPOResult struct {
	Loss    float64
	Metrics map[string]float64
	Pairs   int
}

// DPOForwardBackward computes the DPO loss of the batch's pairs against
// ref and accumulates weight·dL/dθ into the trainable gradients; weight
// scales the mean-over-pairs loss (pairs in this micro-batch / pairs in
// the optimizer step, under gradient accumulation).
func (a *Activations) DPOForwardBackward(b *datasets.Batch, ref []PairLogps, d DPOLoss, weight float64, dropoutSeed uint64) (DPOResult, error) {
	if err := a.setBatch(b); err != nil {
		return DPOResult{}, err
	}
	a.dropoutSeed = dropoutSeed
	a.training = true
	if err := a.forward(); err != nil {
		return DPOResult{}, err
	}
	// First pass over the head: log-probs only.
	if err := a.headLoss(0, false); err != nil {
		return DPOResult{}, err
	}
	losses, err := a.TokenLosses()
	if err != nil {
		return DPOResult{}, err
	}
	seq, counts := sequenceLogps(losses, b, d.average())
	pol, err := pairsOf(b, seq)
	if err != nil {
		return DPOResult{}, err
	}
	if len(ref) != len(pol) {
		return DPOResult{}, fmt.Errorf("dpo: %d reference pairs for %d in the batch", len(ref), len(pol))
	}
	loss, dc, dr, metrics := d.Compute(pol, ref)
	scales := make([]float32, len(seq))
	for i := range pol {
		for k, g := range []float64{dc[i], dr[i]} {
			s := 2*i + k
			// pi = -sum(losses) (÷ count for ipo): dL/dloss_t = -dL/dpi.
			v := -g * weight
			if d.average() && counts[s] > 0 {
				v /= float64(counts[s])
			}
			scales[s] = float32(v)
		}
	}
	// Second pass over the head with the per-sequence gradient scales,
	// then the backward through the network.
	if err := a.headLossPerSequence(scales); err != nil {
		return DPOResult{}, err
	}
	if err := a.backward(); err != nil {
		return DPOResult{}, err
	}
	return DPOResult{Loss: loss, Metrics: metrics, Pairs: len(pol)}, nil
}

// ReferenceLogprobs computes the reference log-probs of every row's pairs
// with the adapters switched off (for LoRA that is the frozen base; for
// full fine-tuning call it before the first update).
func (a *Activations) ReferenceLogprobs(rows []datasets.Batch, d DPOLoss) ([][]PairLogps, error) {
	m := a.m
	m.SetLoRAEnabled(false)
	defer m.SetLoRAEnabled(true)
	out := make([][]PairLogps, len(rows))
	for i := range rows {
		ref, err := a.PairLogprobs(&rows[i], d)
		if err != nil {
			return nil, fmt.Errorf("reference log-probs of row %d: %w", i, err)
		}
		out[i] = ref
	}
	return out, nil
}

// dpoObjective trains on preference pairs against the reference
// log-probs of every training row's pairs: each micro-batch's mean loss
// is weighted by its share of the step's pairs, so the gradient is that of
// the mean over every pair of the step.
type dpoObjective struct {
	loss              DPOLoss
	refTrain, refEval [][]PairLogps
}

func (d dpoObjective) accumulate(t *Trainer, cursor, n int) (stepLoss, error) {
	// Every rank reports every metric (0 without a micro-batch), so that
	// a data-parallel run sums the same keys on every rank.
	out := stepLoss{Metrics: map[string]float64{}}
	for _, k := range dpoMetricNames {
		out.Metrics[k] = 0
	}
	refs := func(rows []int) []PairLogps {
		var ref []PairLogps
		for _, r := range rows {
			ref = append(ref, d.refTrain[r]...)
		}
		return ref
	}
	// Weights are shares of the whole step's pairs (every rank's).
	all, mine := t.stepBatches(cursor, n)
	pairs := 0
	for _, mb := range all {
		pairs += len(refs(mb.rows))
		out.Epoch = mb.epoch
	}
	err := t.forShare(mine, func(i int, mb stepBatch) error {
		ref := refs(mb.rows)
		w := float64(len(ref)) / float64(pairs)
		r, err := t.Acts.DPOForwardBackward(mb.b, ref, d.loss, w, mb.seed)
		if err != nil {
			return fmt.Errorf("step %d micro-batch %d: %w", t.step+1, i, err)
		}
		out.Loss += w * r.Loss
		for k, v := range r.Metrics {
			out.Metrics[k] += w * v
		}
		out.Tokens += mb.b.NumTokens()
		return nil
	})
	return out, err
}

// evaluate is the mean DPO loss over the eval pairs.
func (d dpoObjective) evaluate(t *Trainer) (float64, error) {
	var sum float64
	n := 0
	for i := range t.Eval {
		pol, err := t.Acts.PairLogprobs(&t.Eval[i], d.loss)
		if err != nil {
			return 0, err
		}
		l, _, _, _ := d.loss.Compute(pol, d.refEval[i])
		sum += l * float64(len(pol))
		n += len(pol)
	}
	if n == 0 {
		return 0, fmt.Errorf("eval set has no pairs")
	}
	return sum / float64(n), nil
}
