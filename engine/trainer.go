package engine

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
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
	// GRPO, when set, trains on completions it samples and scores (Train
	// and Eval are then empty).
	GRPO *GRPORun
	// Sampler, when set, makes greedy sample generations every
	// Cfg.SampleEvery steps (and at the end).
	Sampler *Sampler
	// DP, when set, makes this trainer one rank of a data-parallel run
	// (parallel.go): rank 0 runs Run, the others Follow.
	DP *DataParallel
	// images, when set, runs a vision run's micro-batches with their
	// images (train_vision.go); nil for text.
	images imageRunner

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
	// unwritten holds lines for metrics.jsonl or samples.jsonl (by file
	// name) that a failed write could not store; the checkpoint the run
	// stops with carries them, and a resume writes them.
	unwritten map[string][]string
	// ResumeNotes says what Resume passed over (a damaged checkpoint), for
	// the user.
	ResumeNotes []string
	// statusErr is the first failed status.json write, which stops the run.
	statusErr error
	start     time.Time
	startStep int // the step Run began at (a resumed run's checkpoint)
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
	rows := len(t.Train)
	if t.GRPO != nil {
		rows = t.GRPO.rowsPerEpoch(mb, t.Cfg.GradAccum)
	}
	return (rows + mb - 1) / mb
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
		out.Images = append(out.Images, r.Images...)
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
//
// On the leader of a data-parallel run it first tells the other ranks to
// step with it.
func (t *Trainer) TrainStep() (StepEvent, error) {
	if t.DP != nil && t.DP.leader() {
		if _, err := t.DP.command(cmdStep); err != nil {
			return StepEvent{}, err
		}
	}
	ev, err := t.trainStep()
	var nf *NonFiniteError
	if err != nil && t.DP != nil && !errors.As(err, &nf) {
		t.DP.abort(err)
	}
	return ev, err
}

func (t *Trainer) trainStep() (StepEvent, error) {
	m := t.Model
	began := time.Now()
	accum := max(1, t.Cfg.GradAccum)
	// Clipping is folded into the AdamW step where the backend says so
	// (GradScaleFolder): apply reads each gradient once, times the
	// clipping coefficient, bit-equal to scaling the gradients first, which
	// clip does otherwise.
	zero, norm2, clip, apply := m.ZeroGrads, func() (float64, error) { return GradNorm(m) },
		func(coef float32) error { return scaleGrads(m, coef) },
		func(lr float64, coef float32) error { return t.Opt.ApplyScaled(m, lr, coef) }
	if d := t.DP; d != nil {
		zero, norm2, clip = d.zero, d.gradNorm, d.clip
		apply = func(lr float64, coef float32) error { return d.apply(t.Opt, lr, coef) }
	}
	if err := zero(); err != nil {
		return StepEvent{}, err
	}
	r, err := t.objective().accumulate(t, t.cursor, accum)
	if err == nil && t.DP != nil {
		r, err = t.DP.finishStep(r)
	}
	if err != nil {
		return StepEvent{}, err
	}
	if !finite(r.Loss) {
		return StepEvent{}, t.nonFiniteLoss(r.Loss)
	}
	norm, err := norm2()
	if err != nil {
		return StepEvent{}, err
	}
	if !finite(norm) {
		return StepEvent{}, t.nonFiniteGrads(norm)
	}
	coef := ClipCoef(norm, t.Cfg.MaxGradNorm)
	if f, ok := m.B.(GradScaleFolder); coef != 1 && (!ok || !f.FoldsGradScale()) {
		if err := clip(coef); err != nil {
			return StepEvent{}, err
		}
		coef = 1
	}
	lr := t.LR(t.step)
	if err := apply(lr, coef); err != nil {
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
		Epoch: float64(t.cursor) / float64(max(1, t.microBatchesPerEpoch())), Unwritten: t.unwritten}
}

// Resume restores the newest checkpoint in the run directory, if any.
func (t *Trainer) Resume() (bool, error) {
	all, err := ListCheckpoints(RunDir(t.Dir).Checkpoints())
	if err != nil {
		return false, err
	}
	if len(all) == 0 {
		// The run starts over: lines of steps it made before a crash
		// that left no checkpoint would be written again.
		return false, t.trimRunFiles(0, nil)
	}
	// The newest checkpoint that is whole: a damaged one is reported and
	// passed over for the one before it.
	var st TrainerState
	var last CheckpointInfo
	for i := len(all) - 1; i >= 0; i-- {
		last = all[i]
		st, err = t.loadCheckpoint(last.Path)
		var damaged *DamagedCheckpointError
		if i > 0 && errors.As(err, &damaged) {
			t.ResumeNotes = append(t.ResumeNotes, fmt.Sprintf("%v; resuming from %s instead", err, filepath.Base(all[i-1].Path)))
			continue
		}
		if err != nil {
			return false, err
		}
		break
	}
	t.step, t.cursor, t.Opt.Step, t.lastLoss = st.Step, st.Cursor, st.OptStep, st.LastLoss
	t.saved, t.savedStep = true, st.Step
	if st.Seed != t.Seed {
		return false, fmt.Errorf("checkpoint %s was made with seed %d, the run config says %d", last.Path, st.Seed, t.Seed)
	}
	if err := t.trimRunFiles(st.Step, st.Unwritten); err != nil {
		return false, err
	}
	return true, nil
}

// trimRunFiles makes metrics.jsonl and samples.jsonl end at step: lines
// of later steps, which the resumed run will make again, are dropped, and
// the lines a failed write left in the checkpoint are added.
func (t *Trainer) trimRunFiles(step int, unwritten map[string][]string) error {
	if t.Dir == "" {
		return nil
	}
	for _, path := range []string{RunDir(t.Dir).Metrics(), RunDir(t.Dir).Samples()} {
		have, err := trimAfterStep(path, step)
		if err != nil {
			return err
		}
		var add [][]byte
		for _, l := range unwritten[filepath.Base(path)] {
			if !have[l] { // resumed from this checkpoint before
				add = append(add, []byte(l))
			}
		}
		if err := appendLines(path, add); err != nil {
			return err
		}
	}
	return nil
}

// Checkpoint writes a checkpoint now.
// It refuses (with a *NonFiniteError) when a trainable weight is NaN or
// infinite, so the checkpoints on disk stay good.
func (t *Trainer) Checkpoint() (string, error) {
	if err := t.checkWeights(); err != nil {
		return "", err
	}
	return t.saveCheckpoint()
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
	t.start, t.startStep = time.Now(), t.step
	if t.DP != nil {
		// However the run ends, the other ranks stop following it.
		defer t.DP.end()
		if err := t.DP.agree(t.step); err != nil {
			return err
		}
	}
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
		// Refuse an unwritable or linked metrics file before any step.
		f, err := atomicfile.OpenAppend(RunDir(t.Dir).Metrics())
		if err != nil {
			return fmt.Errorf("open metrics: %w", err)
		}
		f.Close()
		if err := t.writeStatus("running"); err != nil {
			return err
		}
	}
	fail := func(err error) error {
		t.writeStatus("failed")
		return err
	}
	total := t.TotalSteps()
	logEvery := max(1, t.Cfg.LogEvery)
	for t.step < total {
		ckptNow := t.waitControls(ctx)
		if t.statusErr != nil {
			return t.writeFailed(send, t.statusErr)
		}
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
		if errors.Is(err, errStepStopped) {
			// A stop while GRPO sampled: the step was dropped before any
			// update, and the run stops like any other.
			return t.stopped(send)
		}
		if err != nil {
			return fail(err)
		}
		if err := t.logMetrics(ev); err != nil {
			return t.writeFailed(send, err)
		}
		if ev.Step%logEvery == 0 || ev.Step == total {
			send(ev)
		}
		if ctx.Err() == nil && t.Cfg.EvalEvery > 0 && len(t.Eval) > 0 && (ev.Step%t.Cfg.EvalEvery == 0 || ev.Step == total) {
			t.enter(phaseEval)
			l, err := t.Evaluate()
			if err != nil {
				return fail(err)
			}
			if err := t.logEval(ev.Step, l); err != nil {
				return t.writeFailed(send, err)
			}
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
			if err := t.logSamples(samples); err != nil {
				return t.writeFailed(send, err)
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
		if err := t.writeStatus("done"); err != nil {
			return err
		}
	}
	send(DoneEvent{Step: t.step, Elapsed: time.Since(t.start), FinalDir: t.Dir, FromStep: t.startStep, Checkpointed: t.saved})
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
	if err := t.writeStatus("stopped"); err != nil {
		return err
	}
	send(DoneEvent{Step: t.step, Stopped: true, Elapsed: time.Since(t.start), FinalDir: t.Dir, FromStep: t.startStep, Checkpointed: t.saved})
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

// logMetrics appends a step's line to metrics.jsonl.
func (t *Trainer) logMetrics(ev StepEvent) error {
	return t.appendRunFile(RunDir(t.Dir).Metrics(), stepMetrics(ev))
}

// logEval appends an evaluation's line to metrics.jsonl.
func (t *Trainer) logEval(step int, loss float64) error {
	return t.appendRunFile(RunDir(t.Dir).Metrics(), MetricLine{Step: step, Values: map[string]float64{"eval_loss": loss}})
}

// logSamples appends generations to samples.jsonl.
func (t *Trainer) logSamples(samples []SampleEvent) error {
	lines := make([]any, len(samples))
	for i, s := range samples {
		lines[i] = newSampleLine(s)
	}
	return t.appendRunFile(RunDir(t.Dir).Samples(), lines...)
}

// appendRunFile writes values as JSON lines to a file of the run folder.
// Lines that cannot be written are kept for the checkpoint the run then
// stops with.
func (t *Trainer) appendRunFile(path string, values ...any) error {
	if t.Dir == "" {
		return nil
	}
	var lines [][]byte
	for _, v := range values {
		js, err := json.Marshal(v)
		if err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		lines = append(lines, js)
	}
	err := appendLines(path, lines)
	if err != nil {
		if t.unwritten == nil {
			t.unwritten = map[string][]string{}
		}
		name := filepath.Base(path)
		for _, l := range lines {
			t.unwritten[name] = append(t.unwritten[name], string(l))
		}
	}
	return err
}

// writeFailed ends a run whose metrics, samples or status could not be
// written (a full disk): a checkpoint of the last step, which keeps the
// lines not written, then status "failed" and the write's error. Going on
// would leave a gap in the files; stopping loses nothing.
func (t *Trainer) writeFailed(send func(Event), err error) error {
	if !t.checkpointed() {
		t.enter(phaseCheckpoint)
		if cerr := t.checkpointEvent(send); cerr != nil {
			t.writeStatus("failed")
			return fmt.Errorf("%w; the checkpoint of step %d failed too: %v", err, t.step, cerr)
		}
	}
	t.writeStatus("failed")
	return fmt.Errorf("%w; stopped at step %d with a checkpoint: free space and run again to resume", err, t.step)
}

// rewriteInPlace overwrites an existing small file (status.json) in place,
// padding data with spaces (still valid JSON) to the old length so that no
// new block is needed: the fallback when a full disk refuses the temporary
// file of an atomic write. Not atomic, but a status is well inside one
// block.
func rewriteInPlace(path string, data []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return err
	}
	if pad := int(st.Size()) - len(data); pad > 0 {
		data = append(data, bytes.Repeat([]byte(" "), pad)...)
	}
	if _, err := f.WriteAt(data, 0); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// RunStatus is status.json in a run directory.
type RunStatus struct {
	State    string  `json:"state"` // running | paused | done | stopped | failed
	Step     int     `json:"step"`
	Total    int     `json:"total_steps"`
	LastLoss float64 `json:"last_loss"` // null in the file when NaN or infinite
}

// MarshalJSON writes a NaN or infinite last loss as null. The state is
// quoted by encoding/json: strconv.Quote's escapes (\x00, \a) are not JSON.
func (s RunStatus) MarshalJSON() ([]byte, error) {
	state, err := json.Marshal(s.State)
	if err != nil {
		return nil, err
	}
	return fmt.Appendf(nil, `{"state":%s,"step":%d,"total_steps":%d,"last_loss":%s}`,
		state, s.Step, s.Total, jsonNumber(s.LastLoss)), nil
}

// UnmarshalJSON reads a null last loss as NaN.
func (s *RunStatus) UnmarshalJSON(b []byte) error {
	var raw struct {
		State    string          `json:"state"`
		Step     int             `json:"step"`
		Total    int             `json:"total_steps"`
		LastLoss json.RawMessage `json:"last_loss"`
	}
	if err := json.Unmarshal(b, &raw); err != nil {
		return err
	}
	*s = RunStatus{State: raw.State, Step: raw.Step, Total: raw.Total}
	switch {
	case len(raw.LastLoss) == 0:
	case string(raw.LastLoss) == "null":
		s.LastLoss = math.NaN()
	default:
		if err := json.Unmarshal(raw.LastLoss, &s.LastLoss); err != nil {
			return fmt.Errorf("last_loss: %w", err)
		}
	}
	return nil
}

// writeStatus replaces status.json atomically. A failure is returned and
// also kept in statusErr, which Run checks between steps.
func (t *Trainer) writeStatus(state string) error {
	if t.ctl != nil {
		t.ctl.mu.Lock()
		defer t.ctl.mu.Unlock()
	}
	return t.writeStatusLocked(state)
}

func (t *Trainer) writeStatusLocked(state string) error {
	if t.Dir == "" {
		return nil
	}
	js, err := json.Marshal(RunStatus{State: state, Step: t.step, Total: t.TotalSteps(), LastLoss: t.lastLoss})
	if err != nil {
		err = fmt.Errorf("write %s: %w", RunDir(t.Dir).Status(), err)
	} else {
		err = writeFileAtomic(RunDir(t.Dir).Status(), js) // names the file
		if err != nil && state == "failed" && rewriteInPlace(RunDir(t.Dir).Status(), js) == nil {
			// A full disk has no room for the new file beside the old
			// one, but the old one's block takes the "failed" state: the
			// run then reads as failed, not as crashed.
			err = nil
		}
	}
	if err != nil {
		if t.statusErr == nil {
			t.statusErr = err
		}
	}
	return err
}
