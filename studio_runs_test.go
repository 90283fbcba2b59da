package main

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"whet/engine"
)

// The runs page's browser over a real worker: the run is listed live with
// the worker's pid; a viewer gets its history and live steps, steers it,
// and leaving (ctx cancelled) closes the viewer while the run trains on;
// a second viewer then stops it, and the listing says stopped.
func TestStudioRunsBrowsesAWorker(t *testing.T) {
	rd, pid := startDetachedRun(t, "browse")
	b := studioRuns{dir: filepath.Dir(rd.Path())}
	runs, warnings, err := b.List()
	if err != nil || len(warnings) > 0 || len(runs) != 1 {
		t.Fatalf("List = %+v %v %v", runs, warnings, err)
	}
	if r := runs[0]; r.Name != "browse" || !r.Live || r.PID != pid || r.Method != "lora" {
		t.Errorf("listed %+v, want browse live in pid %d", r, pid)
	}
	ctx, leave := context.WithCancel(context.Background())
	a, err := b.Attach(ctx, "browse")
	if err != nil {
		t.Fatal(err)
	}
	if a.Config.Name != "browse" || a.Config.Backend != "cpu" {
		t.Errorf("attached config %+v, want the saved run.yaml", a.Config)
	}
	steps := 0
	for ev := range a.Events {
		if _, ok := ev.(engine.StepEvent); ok {
			if steps++; steps == 3 {
				break
			}
		}
	}
	leave()
	for ev := range a.Events {
		if _, ok := ev.(engine.DoneEvent); ok {
			t.Fatal("a viewer that left was told the run ended")
		}
	}
	if _, held, _, _ := rd.Holder(); !held {
		t.Fatal("leaving the viewer ended the run")
	}
	a2, err := b.Attach(context.Background(), "browse")
	if err != nil {
		t.Fatal(err)
	}
	var last int
	for ev := range a2.Events {
		switch e := ev.(type) {
		case engine.StepEvent:
			if e.Step <= last {
				t.Fatalf("step %d after step %d: history and live overlap", e.Step, last)
			}
			if last = e.Step; last == steps+2 {
				a2.Control.Stop()
			}
		case engine.DoneEvent:
			if !e.Stopped || e.Err != nil {
				t.Errorf("done %+v, want stopped", e)
			}
		}
	}
	waitFor(t, "the worker to end", func() bool { _, held, _, _ := rd.Holder(); return !held })
	if runs, _, _ := b.List(); len(runs) != 1 || runs[0].State != "stopped" || runs[0].Live {
		t.Errorf("after the stop: %+v", runs)
	}
	if _, err := b.Attach(context.Background(), "nope"); err == nil {
		t.Error("attached to a run that does not exist")
	}
}

// The runs page's c: Resume trains a stopped run again in a new worker,
// from its checkpoint, with its own run.yaml, from another working folder
// (the run folder is found from the browser's, not runs_dir), and follows
// it live.
func TestStudioRunsResumesAStoppedRun(t *testing.T) {
	rd, _ := startDetachedRun(t, "again")
	b := studioRuns{dir: filepath.Dir(rd.Path())}
	a, err := b.Attach(context.Background(), "again")
	if err != nil {
		t.Fatal(err)
	}
	stoppedAt := 0
	for ev := range a.Events {
		switch e := ev.(type) {
		case engine.StepEvent:
			if e.Step >= 2 && stoppedAt == 0 {
				stoppedAt = -1
				a.Control.Stop()
			}
		case engine.DoneEvent:
			stoppedAt = e.Step
		}
	}
	waitFor(t, "the worker to end", func() bool { _, held, _, _ := rd.Holder(); return !held })
	if st, err := rd.ReadStatus(); err != nil || st.State != "stopped" || stoppedAt <= 0 {
		t.Fatalf("status %+v (%v), stopped at %d; want stopped", st, err, stoppedAt)
	}
	t.Chdir(t.TempDir())
	r, err := b.Resume(context.Background(), "again")
	if err != nil {
		t.Fatal(err)
	}
	pid := workerPID(t, rd)
	t.Cleanup(func() { killPID(pid) })
	if r.Config.Name != "again" || r.Config.RunsDir != filepath.Dir(rd.Path()) {
		t.Errorf("resumed config: name %q runs_dir %q", r.Config.Name, r.Config.RunsDir)
	}
	resumed := false
	for ev := range r.Events {
		switch e := ev.(type) {
		case engine.LogEvent:
			resumed = resumed || strings.Contains(e.Text, "resumed") && strings.Contains(e.Text, fmt.Sprintf("at step %d", stoppedAt))
		case engine.StepEvent:
			if e.Step <= stoppedAt {
				continue // the history before the stop
			}
			if !resumed {
				t.Fatalf("step %d live with no 'resumed ... at step %d' before it", e.Step, stoppedAt)
			}
			r.Control.Stop()
		}
	}
	if runs, _, _ := b.List(); len(runs) != 1 || runs[0].State != "stopped" {
		t.Errorf("after the second stop: %+v", runs)
	}
	if _, err := b.Resume(context.Background(), "nope"); err == nil {
		t.Error("resumed a run that does not exist")
	}
}
