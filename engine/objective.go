package engine

import (
	"errors"
	"fmt"
)

// objective is what differs between training methods: what one optimizer
// step's micro-batches compute and how the eval set is scored. The step
// around it (zeroing, the finiteness checks, clipping, the learning rate,
// AdamW, the counters) is Trainer.TrainStep, the same for every method.
type objective interface {
	// accumulate runs the forward and backward passes of micro-batches
	// cursor … cursor+n-1, adding the gradient of the step's mean loss into
	// the trainable gradients (already zeroed).
	accumulate(t *Trainer, cursor, n int) (stepLoss, error)
	// evaluate is the mean loss over the eval rows.
	evaluate(t *Trainer) (float64, error)
}

var (
	_ objective = tokenObjective{}
	_ objective = dpoObjective{}
)

// stepLoss is what an objective reports of one step's micro-batches.
type stepLoss struct {
	Loss    float64
	Tokens  int
	Epoch   float64
	Metrics map[string]float64 // method-specific (DPO's rewards/…)
}

// objective picks the trainer's objective: sampled and scored completions
// when GRPO is set, preference pairs when DPO is, next-token
// cross-entropy otherwise.
func (t *Trainer) objective() objective {
	if t.GRPO != nil {
		return grpoObjective{t.GRPO}
	}
	if t.DPO != nil {
		return dpoObjective{loss: *t.DPO, refTrain: t.RefTrain, refEval: t.RefEval}
	}
	return tokenObjective{}
}

// tokenObjective is supervised fine-tuning: the mean cross-entropy over
// every target token of the step (transformers' num_items_in_batch), so
// gradient accumulation gives the same gradient as one big batch.
type tokenObjective struct{}

func (tokenObjective) accumulate(t *Trainer, cursor, n int) (stepLoss, error) {
	var out stepLoss
	// The step's mean is over every rank's targets (all of the step's
	// micro-batches); this rank adds its share.
	all, mine := t.stepBatches(cursor, n)
	total := 0
	for _, mb := range all {
		out.Epoch = mb.epoch
		total += mb.b.NumTargets()
	}
	if total == 0 {
		return out, nil
	}
	var lossSum float64
	err := t.forShare(mine, func(i int, mb stepBatch) error {
		r, err := t.forwardBackward(mb.b, float32(1/float64(total)), true, mb.seed)
		if err != nil {
			return fmt.Errorf("step %d micro-batch %d: %w", t.step+1, i, err)
		}
		lossSum += r.LossSum
		out.Tokens += mb.b.NumTokens()
		return nil
	})
	out.Loss = lossSum / float64(total)
	return out, err
}

func (tokenObjective) evaluate(t *Trainer) (float64, error) {
	var sum float64
	n := 0
	for i := range t.Eval {
		r, err := t.forwardBackward(&t.Eval[i], 0, false, 0)
		if err != nil {
			return 0, fmt.Errorf("eval row %d: %w", i, err)
		}
		sum += r.LossSum
		n += r.Count
	}
	if n == 0 {
		return 0, errors.New("eval set has no target tokens")
	}
	return sum / float64(n), nil
}

// dropoutSeed is the dropout seed of one micro-batch: fixed by the run
// seed and the micro-batch's place in the data, so a resumed run draws
// the same masks.
func (t *Trainer) dropoutSeed(cursor int) uint64 {
	return mix64(uint64(t.Seed) ^ uint64(cursor)*0x9e37)
}
