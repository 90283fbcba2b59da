package main

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"whet/engine"
	"whet/tui/fake"
)

// When the program ends with a run still going (SIGTERM, a closed SSH
// session), the run is stopped with a checkpoint before whet exits.
func TestStopAndDrainCheckpointsLiveRun(t *testing.T) {
	var script []fake.Step
	for i := 1; i <= 1000; i++ {
		script = append(script, fake.Step{After: time.Millisecond, Event: engine.StepEvent{Step: i, TotalSteps: 1000, Loss: 1}})
	}
	eng := &fake.Engine{Script: script}
	events, ctl, err := eng.Start(context.Background(), engine.RunConfig{Name: "r", RunsDir: "runs"})
	if err != nil {
		t.Fatal(err)
	}
	<-events // the run is under way
	var log bytes.Buffer
	if err := stopAndDrain(events, ctl, &log); err != nil {
		t.Fatalf("stopAndDrain: %v", err)
	}
	if _, _, _, stops := eng.LastControl().Counts(); stops != 1 {
		t.Errorf("Stop calls = %d, want 1", stops)
	}
	for _, want := range []string{"writing a checkpoint first", "checkpoint at step", "run stopped at step"} {
		if !strings.Contains(log.String(), want) {
			t.Errorf("log lacks %q:\n%s", want, log.String())
		}
	}
}

func TestStopAndDrainReportsRunError(t *testing.T) {
	// The checkpoint written on stop fails: the engine reports it in the
	// DoneEvent, and whet must say so rather than exit quietly.
	events := make(chan engine.Event, 1)
	events <- engine.DoneEvent{Err: errors.New("disk full writing checkpoint")}
	var log bytes.Buffer
	if err := stopAndDrain(events, &fake.Control{}, &log); err == nil || !strings.Contains(err.Error(), "disk full") {
		t.Errorf("stopAndDrain = %v, want the run's error", err)
	}
}

func TestUnavailableEngineSaysWhy(t *testing.T) {
	_, _, err := unavailableEngine{err: errors.New("training engine not available")}.Start(context.Background(), engine.RunConfig{})
	if err == nil || err.Error() != "training engine not available" {
		t.Errorf("got %v", err)
	}
}
