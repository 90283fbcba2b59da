package engine

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"sync"
	"time"

	"whet/datasets"
	"whet/engine/atomicfile"
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
	// saved and savedStep say whether a checkpoint of some step was
	// written or resumed, and which, so that a stop right after a
	// checkpoint does not write the same one again.
	saved     bool
	savedStep int
	lastLoss  float64
	// onPhase, when set (by tests), is called as each phase of Run begins.
	onPhase func(phase string)
	ctl     *control
	metrics *os.File
	start   time.Time
}

// control implements RunControl with flags the loop polls between steps.
type control struct {
	mu              sync.Mutex
	cond            *sync.Cond
	paused, ckptNow bool
	stop            bool
	// cancel ends the running Run's context (nil between runs); a Stop
	// before Run starts is kept in stop and acted on when it does.
	cancel context.CancelFunc
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
	if c.cancel != nil {
		c.cancel()
	}
	c.cond.Broadcast()
	c.mu.Unlock()
}

// setCancel installs the running Run's cancel function (nil when it
// ends); a Stop that came earlier cancels at once.
func (c *control) setCancel(cancel context.CancelFunc) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.cancel = cancel
	if cancel != nil && c.stop {
		cancel()
	}
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

// TrainStep runs one optimizer step: the objective's GradAccum
// micro-batches, then (the same for every method) the finiteness checks of
// the loss and the gradient norm before anything changes, clipping, and
// AdamW at the scheduled rate. A non-finite loss or gradient leaves the
// weights, the optimizer state and the counters as they were and returns
// a *NonFiniteError.
func (t *Trainer) TrainStep() (StepEvent, error) {
	m := t.Model
	began := time.Now()
	accum := max(1, t.Cfg.GradAccum)
	if err := m.ZeroGrads(); err != nil {
		return StepEvent{}, err
	}
	r, err := t.objective().accumulate(t, t.cursor, accum)
	if err != nil {
		return StepEvent{}, err
	}
	if !finite(r.Loss) {
		return StepEvent{}, t.nonFiniteLoss(r.Loss)
	}
	norm, err := GradNorm(m)
	if err != nil {
		return StepEvent{}, err
	}
	if !finite(norm) {
		return StepEvent{}, t.nonFiniteGrads(norm)
	}
	if err := clipTo(m, norm, t.Cfg.MaxGradNorm); err != nil {
		return StepEvent{}, err
	}
	lr := t.LR(t.step)
	if err := t.Opt.Apply(m, lr); err != nil {
		return StepEvent{}, err
	}
	t.cursor += accum
	t.step++
	t.lastLoss = r.Loss
	dt := time.Since(began)
	return StepEvent{Step: t.step, TotalSteps: t.TotalSteps(), Epoch: r.Epoch, Loss: r.Loss, LR: lr, GradNorm: norm,
		Tokens: r.Tokens, TokensPerSec: float64(r.Tokens) / dt.Seconds(), Elapsed: time.Since(t.start), Metrics: r.Metrics}, nil
}

// LR is the learning rate of a 0-based optimizer step: the run's rate
// times the schedule's multiplier.
func (t *Trainer) LR(step int) float64 { return t.Cfg.LR * t.Sched.Multiplier(step) }

// Evaluate returns the objective's mean loss over the eval rows (token
// cross-entropy, or for DPO the mean DPO loss over the eval pairs).
func (t *Trainer) Evaluate() (float64, error) { return t.objective().evaluate(t) }

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
	t.saved, t.savedStep = true, st.Step
	if st.Seed != t.Seed {
		return false, fmt.Errorf("checkpoint %s was made with seed %d, the run config says %d", last.Path, st.Seed, t.Seed)
	}
	return true, nil
}

// Checkpoint writes a checkpoint now.
// It refuses (with a *NonFiniteError) when a trainable weight is NaN or
// infinite, so the checkpoints on disk stay good.
func (t *Trainer) Checkpoint() (string, error) {
	if err := t.checkWeights(); err != nil {
		return "", err
	}
	return SaveCheckpoint(RunDir(t.Dir).Checkpoints(), t.Model, t.state(), t.Cfg.KeepCheckpoints)
}

// Step returns the number of optimizer steps done.
func (t *Trainer) Step() int { return t.step }

// Run trains until TotalSteps, a Stop, or ctx's end, sending events on
// out. A stop request (Stop or a cancelled ctx) always ends the same way,
// whatever the trainer was doing when it came (a step, an evaluation, a
// sample generation, a checkpoint): a checkpoint of the last finished
// step, the export, status "stopped" and DoneEvent{Stopped: true}. Every
// event is delivered, after a stop too, so the caller must read out until
// it closes it (out is the caller's; Run closes nothing).
func (t *Trainer) Run(ctx context.Context, out chan<- Event) error {
	t.start = time.Now()
	if t.ctl == nil {
		t.ctl = newControl()
	}
	// One context ends every phase of the run: the caller's, or a Stop,
	// which cancels it so that a sample generation in progress ends too.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	t.ctl.setCancel(cancel)
	defer t.ctl.setCancel(nil)
	send := func(e Event) { out <- e }
	if t.Dir != "" {
		f, err := atomicfile.OpenAppend(RunDir(t.Dir).Metrics())
		if err != nil {
			return fmt.Errorf("open metrics: %w", err)
		}
		t.metrics = f
		defer f.Close()
		t.writeStatus("running")
	}
	fail := func(err error) error {
		t.writeStatus("failed")
		return err
	}
	total := t.TotalSteps()
	logEvery := max(1, t.Cfg.LogEvery)
	for t.step < total {
		ckptNow := t.waitControls(ctx)
		if ctx.Err() != nil {
			return t.stopped(send)
		}
		if ckptNow {
			t.enter(phaseCheckpoint)
			if err := t.checkpointEvent(send); err != nil {
				return err
			}
		}
		t.enter(phaseStep)
		ev, err := t.TrainStep()
		if err != nil {
			return fail(err)
		}
		t.logMetrics(ev)
		if ev.Step%logEvery == 0 || ev.Step == total {
			send(ev)
		}
		if ctx.Err() == nil && t.Cfg.EvalEvery > 0 && len(t.Eval) > 0 && (ev.Step%t.Cfg.EvalEvery == 0 || ev.Step == total) {
			t.enter(phaseEval)
			l, err := t.Evaluate()
			if err != nil {
				return fail(err)
			}
			t.logEval(ev.Step, l)
			send(EvalEvent{Step: ev.Step, Loss: l})
		}
		if ctx.Err() == nil && t.Sampler != nil && t.Cfg.SampleEvery > 0 && (ev.Step%t.Cfg.SampleEvery == 0 || ev.Step == total) {
			t.enter(phaseSample)
			samples, err := t.Sampler.Run(ctx, ev.Step)
			if err != nil && ctx.Err() != nil {
				// Stopped while generating: the samples are dropped and
				// the stop is handled below like any other.
				return t.stopped(send)
			}
			if err != nil {
				return fail(err)
			}
			if err := appendSamples(t.Dir, samples); err != nil {
				return fail(fmt.Errorf("write samples: %w", err))
			}
			for _, s := range samples {
				send(s)
			}
		}
		if ctx.Err() == nil && t.Dir != "" && t.Cfg.SaveEvery > 0 && ev.Step%t.Cfg.SaveEvery == 0 && ev.Step != total {
			t.enter(phaseCheckpoint)
			if err := t.checkpointEvent(send); err != nil {
				return err
			}
		}
	}
	// Every step is done: a stop that comes now changes nothing, the run
	// ends "done" with its final checkpoint and export.
	if t.Dir != "" {
		if !t.checkpointed() {
			t.enter(phaseCheckpoint)
			if err := t.checkpointEvent(send); err != nil {
				return err
			}
		}
		t.enter(phaseExport)
		if err := t.export(send); err != nil {
			return err
		}
		t.writeStatus("done")
	}
	send(DoneEvent{Step: t.step, Elapsed: time.Since(t.start), FinalDir: t.Dir})
	return nil
}

// Run's phases, named for the test hook that acts at a known moment.
const (
	phaseStep       = "step"
	phaseEval       = "eval"
	phaseSample     = "sample"
	phaseCheckpoint = "checkpoint"
	phaseExport     = "export"
)

// enter calls the test hook, if any, as a phase of Run begins.
func (t *Trainer) enter(phase string) {
	if t.onPhase != nil {
		t.onPhase(phase)
	}
}

// stopped ends a run on a stop request: a checkpoint of the last finished
// step (unless one was just written), the export, status "stopped" and
// the DoneEvent.
func (t *Trainer) stopped(send func(Event)) error {
	if t.Dir != "" && !t.checkpointed() {
		t.enter(phaseCheckpoint)
		if err := t.checkpointEvent(send); err != nil {
			return fmt.Errorf("stop at step %d: %w", t.step, err)
		}
	}
	t.enter(phaseExport)
	if err := t.export(send); err != nil {
		return err
	}
	t.writeStatus("stopped")
	send(DoneEvent{Step: t.step, Stopped: true, Elapsed: time.Since(t.start), FinalDir: t.Dir})
	return nil
}

// checkpointed reports whether the run directory holds a checkpoint of
// the current step.
func (t *Trainer) checkpointed() bool { return t.saved && t.savedStep == t.step }

func (t *Trainer) export(send func(Event)) error {
	if t.Export == nil || t.step == 0 {
		return nil
	}
	if err := t.checkWeights(); err != nil {
		t.writeStatus("failed")
		return err
	}
	line, err := t.Export()
	if err != nil {
		t.writeStatus("failed")
		return fmt.Errorf("export after step %d: %w", t.step, err)
	}
	send(LogEvent{Text: line})
	return nil
}

func (t *Trainer) checkpointEvent(send func(Event)) error {
	path, err := t.Checkpoint()
	if err != nil {
		t.writeStatus("failed")
		return err
	}
	t.saved, t.savedStep = true, t.step
	send(CheckpointEvent{Step: t.step, Path: path})
	return nil
}

// waitControls blocks while paused (until a resume or ctx's end) and
// reports a checkpoint request. A stop shows as ctx's end: Stop cancels
// the context Run made.
func (t *Trainer) waitControls(ctx context.Context) (ckpt bool) {
	c := t.ctl
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.paused && ctx.Err() == nil {
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
		for c.paused && ctx.Err() == nil {
			c.cond.Wait()
		}
		close(done)
		t.writeStatusLocked("running")
	}
	ckpt = c.ckptNow
	c.ckptNow = false
	return ckpt
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
