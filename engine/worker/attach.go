package worker

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"sort"
	"time"

	"whet/engine"
)

// Attach opens run folder rd for a viewer: the channel first carries the
// run's history replayed from the folder (metrics, samples, checkpoints),
// then the worker's live events, without repeating a step, and ends with
// a DoneEvent. A run no worker trains any more is replayed and ended
// with what its status says. The RunControl steers the worker (a no-op
// for a finished run). Warnings name lines of the folder's files that
// could not be read.
func Attach(rd engine.RunDir) (<-chan engine.Event, engine.RunControl, []string, error) {
	return AttachContext(context.Background(), rd)
}

// AttachContext is Attach for a viewer that may leave before the run
// ends: when ctx is done the connection is closed and the channel closed
// (without a DoneEvent), so nothing is left waiting on a reader that went
// away. The run goes on.
func AttachContext(ctx context.Context, rd engine.RunDir) (<-chan engine.Event, engine.RunControl, []string, error) {
	// A status.json that cannot be read (empty after a crash, garbled)
	// does not keep the run from being shown: its history is replayed
	// with a warning that names the file, and a run no worker trains ends
	// saying its state is not known.
	st, statusErr := rd.ReadStatus()
	if errors.Is(statusErr, fs.ErrNotExist) {
		statusErr = nil
	}
	// Connect before reading the history: what happens while it is read
	// waits in the connection and is deduplicated below.
	conn, dialErr := Dial(rd)
	pid, held, _, _ := rd.Holder()
	if dialErr != nil && held {
		return nil, nil, nil, fmt.Errorf("run %s is trained by process %d, which serves no control socket (%v); runs started with whet train --detach or from the studio can be attached to", rd.Path(), pid, dialErr)
	}
	history, warnings, err := replay(rd, st)
	if err != nil {
		if conn != nil {
			conn.Close()
		}
		return nil, nil, nil, err
	}
	if statusErr != nil {
		warnings = append(warnings, statusErr.Error())
	}
	out := make(chan engine.Event, 64)
	var last marks
	for _, ev := range history {
		last.see(ev)
	}
	send := func(ev engine.Event) bool {
		select {
		case out <- ev:
			return true
		case <-ctx.Done():
			return false
		}
	}
	go func() {
		defer close(out)
		if conn != nil {
			defer conn.Close()
		}
		for _, ev := range history {
			if !send(ev) {
				return
			}
		}
		if conn == nil {
			send(finished(rd, st, statusErr, last))
			return
		}
		for {
			var ev engine.Event
			var ok bool
			select {
			case ev, ok = <-conn.Events:
			case <-ctx.Done():
				return
			}
			if !ok {
				break
			}
			if !last.isNew(ev) {
				continue
			}
			last.see(ev)
			if !send(ev) {
				return
			}
			if _, ok := ev.(engine.DoneEvent); ok {
				return
			}
		}
		// The worker hung up without a DoneEvent: it ended between the
		// history and now, or it was killed.
		st, err := rd.ReadStatus()
		if errors.Is(err, fs.ErrNotExist) {
			err = nil
		}
		send(finished(rd, st, err, last))
	}()
	var ctl engine.RunControl = finishedControl{}
	if conn != nil {
		ctl = conn
	}
	return out, ctl, warnings, nil
}

// finishedControl steers nothing: the run has ended.
type finishedControl struct{}

func (finishedControl) Pause()      {}
func (finishedControl) Resume()     {}
func (finishedControl) Checkpoint() {}
func (finishedControl) Stop()       {}

var _ engine.RunControl = finishedControl{}

// marks is the newest step of each kind of event a viewer has shown, and
// the time the run had trained by its newest step.
type marks struct {
	step, eval, sample, ckpt int
	elapsed                  time.Duration
}

func (m *marks) see(ev engine.Event) {
	switch e := ev.(type) {
	case engine.StepEvent:
		if e.Step >= m.step {
			m.step, m.elapsed = e.Step, e.Elapsed
		}
	case engine.EvalEvent:
		m.eval = max(m.eval, e.Step)
	case engine.SampleEvent:
		m.sample = max(m.sample, e.Step)
	case engine.CheckpointEvent:
		m.ckpt = max(m.ckpt, e.Step)
	}
}

// isNew says whether a live event was not in the replayed history.
func (m *marks) isNew(ev engine.Event) bool {
	switch e := ev.(type) {
	case engine.StepEvent:
		return e.Step > m.step
	case engine.EvalEvent:
		return e.Step > m.eval
	case engine.SampleEvent:
		return e.Step > m.sample
	case engine.CheckpointEvent:
		return e.Step > m.ckpt
	}
	return true
}

// replay is the run's history as events, in the order the trainer sent
// them: each step's line, then its evaluation, samples and checkpoint.
func replay(rd engine.RunDir, st engine.RunStatus) ([]engine.Event, []string, error) {
	metrics, warnings, err := rd.ReadMetrics()
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, warnings, err
	}
	samples, w, err := rd.ReadSamples()
	warnings = append(warnings, w...)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, warnings, err
	}
	cps, err := engine.ListCheckpoints(rd.Checkpoints())
	if err != nil {
		return nil, warnings, err
	}
	type item struct {
		step, order int
		ev          engine.Event
	}
	var items []item
	for _, m := range metrics {
		ev := m.Event()
		order := 0
		if s, ok := ev.(engine.StepEvent); ok {
			s.TotalSteps = st.Total
			ev = s
		} else {
			order = 1
		}
		items = append(items, item{m.Step, order, ev})
	}
	for _, s := range samples {
		items = append(items, item{s.Step, 2, s})
	}
	for _, c := range cps {
		items = append(items, item{c.Step, 3, engine.CheckpointEvent{Step: c.Step, Path: c.Path}})
	}
	sort.SliceStable(items, func(i, j int) bool {
		if items[i].step != items[j].step {
			return items[i].step < items[j].step
		}
		return items[i].order < items[j].order
	})
	out := make([]engine.Event, len(items))
	for i, it := range items {
		out[i] = it.ev
	}
	return out, warnings, nil
}

// finished is the DoneEvent of a run no worker trains: what its status
// says (a run whose process ended before its first status failed), or a
// crash; its time is the newest step's. statusErr is why status.json
// could not be read (nil if it was, or is missing).
func finished(rd engine.RunDir, st engine.RunStatus, statusErr error, last marks) engine.DoneEvent {
	d := engine.DoneEvent{Step: max(st.Step, last.step), FinalDir: rd.Path(), Elapsed: last.elapsed, Checkpointed: rd.HasCheckpoint()}
	// Why it failed, as whet runs says it (its worker's last words, or
	// that it ended before its first status.json); what whet train does
	// next is the summary's own line (DoneEvent.Checkpointed).
	r, _, _ := Read(rd, time.Now())
	switch {
	case statusErr != nil:
		// Done, stopped or crashed: the file that said it is lost.
		r := Run{State: "crashed", Config: rd.Config()}
		r.resumeFacts(rd)
		d.Err = fmt.Errorf("no process trains run %s and how it ended is not known (%v); %s", rd.Path(), statusErr, r.next())
	case st.State == "done":
	case st.State == "stopped":
		d.Stopped = true
	case st.State == "failed" || r.State == "failed":
		r.State = "failed"
		d.Err = fmt.Errorf("the run failed at step %d; %s", d.Step, r.Why())
	default:
		// What Run.Crash says in whet runs: the worker's last words and the
		// checkpoint a new whet train starts from.
		r := Run{State: "crashed", Config: rd.Config()}
		r.crashFacts(rd)
		d.Err = fmt.Errorf("no process trains run %s and its status says %q: it crashed; %s", rd.Path(), st.State, r.Crash())
	}
	return d
}
