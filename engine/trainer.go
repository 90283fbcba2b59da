package engine

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"sync"
	"time"

	"whet/datasets"
)

// Trainer runs the optimisation loop for one model over prepared batches.
// It never touches the UI: it reports through Events and obeys Control.
type Trainer struct {
	Model *Model
	Acts  *Activations
	Opt   *Optimizer
	Sched Schedule
	Cfg   TrainConfig

	Train, Eval []datasets.Batch // packed rows; MicroBatch rows make one micro-batch
	Dir         string           // run directory ("" = no files written)
	Seed        int64
	// Export, when set, writes the result (adapter or model) into the run
	// directory at the end of the run and after a stop; it returns a line
	// for the user.
	Export func() (string, error)
	// DPO, when set, trains on preference pairs against RefTrain (the
	// reference log-probs of every training row's pairs).
	DPO      *DPOLoss
	RefTrain [][]PairLogps
	RefEval  [][]PairLogps
	// Sampler, when set, makes greedy sample generations every
	// Cfg.SampleEvery steps (and at the end).
	Sampler *Sampler

	step, cursor int
	lastLoss     float64
	ctl          *control
	metrics      *os.File
	start        time.Time
}

// control implements RunControl with flags the loop polls between steps.
type control struct {
	mu                    sync.Mutex
	cond                  *sync.Cond
	paused, stop, ckptNow bool
}

func newControl() *control {
	c := &control{}
	c.cond = sync.NewCond(&c.mu)
	return c
}

func (c *control) Pause()      { c.mu.Lock(); c.paused = true; c.mu.Unlock() }
func (c *control) Resume()     { c.mu.Lock(); c.paused = false; c.cond.Broadcast(); c.mu.Unlock() }
func (c *control) Checkpoint() { c.mu.Lock(); c.ckptNow = true; c.mu.Unlock() }
func (c *control) Stop() {
	c.mu.Lock()
	c.stop = true
	c.paused = false
	c.cond.Broadcast()
	c.mu.Unlock()
}

// microBatchesPerEpoch is the number of micro-batches one pass over the
// packed training rows makes.
func (t *Trainer) microBatchesPerEpoch() int {
	mb := max(1, t.Cfg.MicroBatch)
	return (len(t.Train) + mb - 1) / mb
}

// StepsPerEpoch is the number of optimizer steps in one epoch.
func (t *Trainer) StepsPerEpoch() int {
	return (t.microBatchesPerEpoch() + max(1, t.Cfg.GradAccum) - 1) / max(1, t.Cfg.GradAccum)
}

// TotalSteps is max_steps, or epochs × steps per epoch.
func (t *Trainer) TotalSteps() int {
	if t.Cfg.MaxSteps > 0 {
		return t.Cfg.MaxSteps
	}
	ep := t.Cfg.Epochs
	if ep <= 0 {
		ep = 1
	}
	return max(1, int(math.Ceil(ep*float64(t.StepsPerEpoch()))))
}

// order is the seeded permutation of training rows for an epoch.
func (t *Trainer) order(epoch int) []int {
	rng := rand.New(rand.NewPCG(uint64(t.Seed), uint64(epoch)+1))
	return rng.Perm(len(t.Train))
}

// microBatch joins the MicroBatch rows that cursor points at into one
// flat batch (packed sequences stay separate through SeqStarts).
func (t *Trainer) microBatch(cursor int) (*datasets.Batch, float64) {
	b, _, ep := t.microBatchRows(cursor)
	return b, ep
}

// microBatchRows also returns the indices of the training rows joined.
func (t *Trainer) microBatchRows(cursor int) (*datasets.Batch, []int, float64) {
	per := t.microBatchesPerEpoch()
	epoch, idx := cursor/per, cursor%per
	ord := t.order(epoch)
	mb := max(1, t.Cfg.MicroBatch)
	var rows []*datasets.Batch
	var index []int
	for i := idx * mb; i < min(len(ord), (idx+1)*mb); i++ {
		rows = append(rows, &t.Train[ord[i]])
		index = append(index, ord[i])
	}
	return JoinBatches(rows), index, float64(epoch) + float64(idx+1)/float64(per)
}

// JoinBatches lays batches end to end as one packed batch.
func JoinBatches(rows []*datasets.Batch) *datasets.Batch {
	if len(rows) == 1 {
		return rows[0]
	}
	out := &datasets.Batch{SeqStarts: []int32{0}}
	for _, r := range rows {
		off := int32(len(out.Tokens))
		out.Tokens = append(out.Tokens, r.Tokens...)
		out.Targets = append(out.Targets, r.Targets...)
		out.Positions = append(out.Positions, r.Positions...)
		for _, s := range r.SeqStarts[1:] {
			out.SeqStarts = append(out.SeqStarts, off+s)
		}
	}
	return out
}

// mix64 spreads a counter into a dropout seed.
func mix64(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	return x ^ x>>31
}

// TrainStep runs one optimizer step: GradAccum micro-batches, loss
// normalised by the targets of the whole step (transformers'
// num_items_in_batch), clipping, AdamW at the scheduled rate.
func (t *Trainer) TrainStep() (StepEvent, error) {
	if t.DPO != nil {
		return t.dpoStep()
	}
	m := t.Model
	began := time.Now()
	accum := max(1, t.Cfg.GradAccum)
	var batches []*datasets.Batch
	var epoch float64
	total := 0
	for i := 0; i < accum; i++ {
		b, ep := t.microBatch(t.cursor + i)
		batches = append(batches, b)
		epoch = ep
		total += b.NumTargets()
	}
	if err := m.ZeroGrads(); err != nil {
		return StepEvent{}, err
	}
	var lossSum float64
	tokens := 0
	for i, b := range batches {
		if total == 0 {
			break
		}
		r, err := t.Acts.ForwardBackward(b, float32(1/float64(total)), true, mix64(uint64(t.Seed)^uint64(t.cursor+i)*0x9e37))
		if err != nil {
			return StepEvent{}, fmt.Errorf("step %d micro-batch %d: %w", t.step+1, i, err)
		}
		lossSum += r.LossSum
		tokens += b.NumTokens()
	}
	t.cursor += accum
	norm, err := ClipGrads(m, t.Cfg.MaxGradNorm)
	if err != nil {
		return StepEvent{}, err
	}
	lr := t.Cfg.LR * t.Sched.Multiplier(t.step)
	if err := t.Opt.Apply(m, lr); err != nil {
		return StepEvent{}, err
	}
	t.step++
	loss := 0.0
	if total > 0 {
		loss = lossSum / float64(total)
	}
	t.lastLoss = loss
	dt := time.Since(began)
	return StepEvent{Step: t.step, TotalSteps: t.TotalSteps(), Epoch: epoch, Loss: loss, LR: lr,
		GradNorm: norm, Tokens: tokens, TokensPerSec: float64(tokens) / dt.Seconds(), Elapsed: time.Since(t.start)}, nil
}

// Evaluate returns the mean token loss over the eval rows (for DPO, the
// mean DPO loss over the eval pairs).
func (t *Trainer) Evaluate() (float64, error) {
	if t.DPO != nil {
		return t.dpoEvaluate()
	}
	var sum float64
	n := 0
	for i := range t.Eval {
		r, err := t.Acts.ForwardBackward(&t.Eval[i], 0, false, 0)
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

func (t *Trainer) state() TrainerState {
	return TrainerState{Step: t.step, Cursor: t.cursor, Seed: t.Seed, OptStep: t.Opt.Step, LastLoss: t.lastLoss,
		Epoch: float64(t.cursor) / float64(max(1, t.microBatchesPerEpoch()))}
}

// Resume restores the newest checkpoint in the run directory, if any.
func (t *Trainer) Resume() (bool, error) {
	all, err := ListCheckpoints(RunDir(t.Dir).Checkpoints())
	if err != nil || len(all) == 0 {
		return false, err
	}
	last := all[len(all)-1]
	st, err := LoadCheckpoint(last.Path, t.Model)
	if err != nil {
		return false, err
	}
	t.step, t.cursor, t.Opt.Step, t.lastLoss = st.Step, st.Cursor, st.OptStep, st.LastLoss
	if st.Seed != t.Seed {
		return false, fmt.Errorf("checkpoint %s was made with seed %d, the run config says %d", last.Path, st.Seed, t.Seed)
	}
	return true, nil
}

// Checkpoint writes a checkpoint now.
func (t *Trainer) Checkpoint() (string, error) {
	return SaveCheckpoint(RunDir(t.Dir).Checkpoints(), t.Model, t.state(), t.Cfg.KeepCheckpoints)
}

// Step returns the number of optimizer steps done.
func (t *Trainer) Step() int { return t.step }

// Run trains until TotalSteps, a Stop, or ctx's end, sending events on
// out. A Stop or a cancelled context writes a checkpoint first. It closes
// nothing: the caller owns out.
func (t *Trainer) Run(ctx context.Context, out chan<- Event) error {
	t.start = time.Now()
	if t.ctl == nil {
		t.ctl = newControl()
	}
	send := func(e Event) {
		select {
		case out <- e:
		case <-ctx.Done():
		}
	}
	if t.Dir != "" {
		f, err := os.OpenFile(RunDir(t.Dir).Metrics(), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
		if err != nil {
			return fmt.Errorf("open metrics: %w", err)
		}
		t.metrics = f
		defer f.Close()
		t.writeStatus("running")
	}
	total := t.TotalSteps()
	logEvery := max(1, t.Cfg.LogEvery)
	for t.step < total {
		stopNow, ckptNow := t.waitControls(ctx)
		if stopNow || ctx.Err() != nil {
			path, err := t.saveIfDir()
			if err != nil {
				t.writeStatus("failed")
				return err
			}
			if path != "" {
				send(CheckpointEvent{Step: t.step, Path: path})
			}
			if err := t.export(send); err != nil {
				return err
			}
			t.writeStatus("stopped")
			send(DoneEvent{Step: t.step, Stopped: true, Elapsed: time.Since(t.start), FinalDir: t.Dir})
			return nil
		}
		if ckptNow {
			if err := t.checkpointEvent(send); err != nil {
				return err
			}
		}
		ev, err := t.TrainStep()
		if err != nil {
			t.writeStatus("failed")
			return err
		}
		if math.IsNaN(ev.Loss) || math.IsInf(ev.Loss, 0) {
			t.writeStatus("failed")
			return fmt.Errorf("step %d: loss is %v (try a lower learning rate)", ev.Step, ev.Loss)
		}
		t.logMetrics(ev)
		if ev.Step%logEvery == 0 || ev.Step == total {
			send(ev)
		}
		if t.Cfg.EvalEvery > 0 && len(t.Eval) > 0 && (ev.Step%t.Cfg.EvalEvery == 0 || ev.Step == total) {
			l, err := t.Evaluate()
			if err != nil {
				return err
			}
			t.logEval(ev.Step, l)
			send(EvalEvent{Step: ev.Step, Loss: l})
		}
		if t.Sampler != nil && t.Cfg.SampleEvery > 0 && (ev.Step%t.Cfg.SampleEvery == 0 || ev.Step == total) {
			samples, err := t.Sampler.Run(ctx, ev.Step)
			if err != nil {
				return err
			}
			if err := appendSamples(t.Dir, samples); err != nil {
				return fmt.Errorf("write samples: %w", err)
			}
			for _, s := range samples {
				send(s)
			}
		}
		if t.Dir != "" && t.Cfg.SaveEvery > 0 && ev.Step%t.Cfg.SaveEvery == 0 && ev.Step != total {
			if err := t.checkpointEvent(send); err != nil {
				return err
			}
		}
	}
	if t.Dir != "" {
		if err := t.checkpointEvent(send); err != nil {
			return err
		}
		if err := t.export(send); err != nil {
			return err
		}
		t.writeStatus("done")
	}
	send(DoneEvent{Step: t.step, Elapsed: time.Since(t.start), FinalDir: t.Dir})
	return nil
}

func (t *Trainer) export(send func(Event)) error {
	if t.Export == nil || t.step == 0 {
		return nil
	}
	line, err := t.Export()
	if err != nil {
		t.writeStatus("failed")
		return fmt.Errorf("export after step %d: %w", t.step, err)
	}
	send(LogEvent{Text: line})
	return nil
}

func (t *Trainer) saveIfDir() (string, error) {
	if t.Dir == "" {
		return "", nil
	}
	return t.Checkpoint()
}

func (t *Trainer) checkpointEvent(send func(Event)) error {
	path, err := t.Checkpoint()
	if err != nil {
		t.writeStatus("failed")
		return err
	}
	send(CheckpointEvent{Step: t.step, Path: path})
	return nil
}

// waitControls blocks while paused and reports stop and checkpoint requests.
func (t *Trainer) waitControls(ctx context.Context) (stop, ckpt bool) {
	c := t.ctl
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.paused {
		t.writeStatusLocked("paused")
		done := make(chan struct{})
		go func() {
			select {
			case <-ctx.Done():
				c.mu.Lock()
				c.cond.Broadcast()
				c.mu.Unlock()
			case <-done:
			}
		}()
		for c.paused && !c.stop && ctx.Err() == nil {
			c.cond.Wait()
		}
		close(done)
		t.writeStatusLocked("running")
	}
	stop, ckpt = c.stop, c.ckptNow
	c.ckptNow = false
	return stop, ckpt
}

type metricLine struct {
	Step         int     `json:"step"`
	Epoch        float64 `json:"epoch"`
	Loss         float64 `json:"loss,omitempty"`
	EvalLoss     float64 `json:"eval_loss,omitempty"`
	LR           float64 `json:"lr,omitempty"`
	GradNorm     float64 `json:"grad_norm,omitempty"`
	Tokens       int     `json:"tokens,omitempty"`
	TokensPerSec float64 `json:"tokens_per_sec,omitempty"`
	ElapsedSec   float64 `json:"elapsed_s,omitempty"`
}

func (t *Trainer) logMetrics(ev StepEvent) {
	if t.metrics == nil {
		return
	}
	js, _ := json.Marshal(metricLine{Step: ev.Step, Epoch: ev.Epoch, Loss: ev.Loss, LR: ev.LR, GradNorm: ev.GradNorm,
		Tokens: ev.Tokens, TokensPerSec: ev.TokensPerSec, ElapsedSec: ev.Elapsed.Seconds()})
	t.metrics.Write(append(js, '\n'))
}

func (t *Trainer) logEval(step int, loss float64) {
	if t.metrics == nil {
		return
	}
	js, _ := json.Marshal(metricLine{Step: step, EvalLoss: loss})
	t.metrics.Write(append(js, '\n'))
}

// RunStatus is status.json in a run directory.
type RunStatus struct {
	State    string  `json:"state"` // running | paused | done | stopped | failed
	Step     int     `json:"step"`
	Total    int     `json:"total_steps"`
	LastLoss float64 `json:"last_loss"`
}

func (t *Trainer) writeStatus(state string) {
	if t.ctl != nil {
		t.ctl.mu.Lock()
		defer t.ctl.mu.Unlock()
	}
	t.writeStatusLocked(state)
}

func (t *Trainer) writeStatusLocked(state string) {
	if t.Dir == "" {
		return
	}
	js, _ := json.Marshal(RunStatus{State: state, Step: t.step, Total: t.TotalSteps(), LastLoss: t.lastLoss})
	writeFileAtomic(RunDir(t.Dir).Status(), js)
}
