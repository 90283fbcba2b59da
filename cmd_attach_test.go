package main

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"whet/engine"
	"whet/engine/worker"
)

// collectSteps reads an attached stream to its end: the step numbers in
// order, and the DoneEvent.
func collectSteps(t *testing.T, events <-chan engine.Event) ([]int, engine.DoneEvent) {
	t.Helper()
	var steps []int
	timeout := time.After(60 * time.Second)
	for {
		select {
		case ev, ok := <-events:
			if !ok {
				t.Fatal("attached stream ended without a DoneEvent")
			}
			switch e := ev.(type) {
			case engine.StepEvent:
				steps = append(steps, e.Step)
			case engine.DoneEvent:
				if _, open := <-events; open {
					t.Error("events after the DoneEvent")
				}
				return steps, e
			}
		case <-timeout:
			t.Fatal("attached stream did not end within a minute")
		}
	}
}

// Viewers attached at different times, and one attached after the end,
// all see every step exactly once, the same as metrics.jsonl, and the
// same end; a viewer steers the run.
func TestAttachReplaysThenFollows(t *testing.T) {
	cfgPath, rd := detachRunFile(t, "watch")
	var out bytes.Buffer
	if err := runTrain([]string{"-c", cfgPath, "--detach"}, nil, &out, &out); err != nil {
		t.Fatalf("--detach: %v\n%s", err, out.String())
	}
	pid := workerPID(t, rd)
	t.Cleanup(func() { killPID(pid) })
	early, ctlA, _, err := worker.Attach(rd)
	if err != nil {
		t.Fatal(err)
	}
	// The second viewer comes once the run has history to replay.
	waitFor(t, "a few steps in metrics.jsonl", func() bool {
		ms, _, _ := rd.ReadMetrics()
		return len(ms) >= 3
	})
	late, _, _, err := worker.Attach(rd)
	if err != nil {
		t.Fatal(err)
	}
	ctlA.Stop()
	stepsA, doneA := collectSteps(t, early)
	stepsB, doneB := collectSteps(t, late)
	waitFor(t, "the worker to end", func() bool { _, held, _, _ := rd.Holder(); return !held })
	ms, _, err := rd.ReadMetrics()
	if err != nil {
		t.Fatal(err)
	}
	var want []int
	for _, m := range ms {
		if _, ok := m.Loss(); ok {
			want = append(want, m.Step)
		}
	}
	for i := range want {
		if want[i] != i+1 {
			t.Fatalf("metrics.jsonl steps %v, want 1..N", want)
		}
	}
	after, _, _, err := worker.Attach(rd)
	if err != nil {
		t.Fatal(err)
	}
	stepsC, doneC := collectSteps(t, after)
	for name, got := range map[string][]int{"first viewer": stepsA, "second viewer": stepsB, "viewer after the end": stepsC} {
		if !slices.Equal(got, want) {
			t.Errorf("%s saw steps %v, want %v", name, got, want)
		}
	}
	for name, d := range map[string]engine.DoneEvent{"first": doneA, "second": doneB, "after": doneC} {
		if !d.Stopped || d.Err != nil || d.Step != want[len(want)-1] {
			t.Errorf("%s viewer's end %+v, want stopped at step %d", name, d, want[len(want)-1])
		}
	}
}

// Without a name, whet attach picks the one run a worker trains, else the
// newest; two live runs must be named.
func TestAttachPicksTheLiveRun(t *testing.T) {
	dir := t.TempDir()
	for _, name := range []string{"old", "live", "newest"} {
		writeRun(t, dir, name, map[string]string{"status.json": `{"state":"done","step":1,"total_steps":1}`})
	}
	now := time.Now()
	os.Chtimes(filepath.Join(dir, "newest", "status.json"), now, now.Add(time.Hour))
	if got, err := liveRun(dir); err != nil || got != "newest" {
		t.Errorf("no live run: picked %q, %v; want newest", got, err)
	}
	l, err := engine.RunDir(filepath.Join(dir, "live")).Acquire()
	if err != nil {
		t.Fatal(err)
	}
	defer l.Release()
	if got, err := liveRun(dir); err != nil || got != "live" {
		t.Errorf("one live run: picked %q, %v; want live", got, err)
	}
	l2, err := engine.RunDir(filepath.Join(dir, "old")).Acquire()
	if err != nil {
		t.Fatal(err)
	}
	defer l2.Release()
	if _, err := liveRun(dir); err == nil || !strings.Contains(err.Error(), "name one") {
		t.Errorf("two live runs: %v, want a request to name one", err)
	}
	var out, errb bytes.Buffer
	if err := runAttach([]string{"--dir", dir, "nosuch"}, strings.NewReader(""), &out, &errb); err == nil || !strings.Contains(err.Error(), "no run nosuch") {
		t.Errorf("attach to a missing run: %v", err)
	}
}
