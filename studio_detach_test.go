package main

import (
	"context"
	"testing"

	"whet/engine"
)

// A studio run (as whet serve sessions start them) trains in a worker of
// its own: another process holds the run's lock, the studio follows and
// stops it through the socket, and the worker's log is in the run folder.
func TestStudioRunsInAWorker(t *testing.T) {
	cfgPath, rd := detachRunFile(t, "studio")
	cfg, err := engine.LoadRunConfig(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	events, ctl, err := detachedStudioEngine{}.Start(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	pid := workerPID(t, rd)
	t.Cleanup(func() { killPID(pid) })
	if pid == 0 || pid == selfPID() {
		t.Fatalf("run lock held by %d, want a worker process", pid)
	}
	var steps int
	for ev := range events {
		switch e := ev.(type) {
		case engine.StepEvent:
			if steps++; steps == 3 {
				ctl.Stop()
			}
		case engine.DoneEvent:
			if !e.Stopped || e.Err != nil {
				t.Errorf("done %+v, want stopped", e)
			}
		}
	}
	if steps < 3 {
		t.Errorf("%d steps followed", steps)
	}
	waitFor(t, "the worker to end", func() bool { _, held, _, _ := rd.Holder(); return !held })
	if st, err := rd.ReadStatus(); err != nil || st.State != "stopped" {
		t.Errorf("status %+v %v, want stopped", st, err)
	}
}
