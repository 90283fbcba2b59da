package main

import (
	"context"
	"path/filepath"
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
