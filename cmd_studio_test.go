package main

import (
	"bytes"
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	tea "charm.land/bubbletea/v2"

	"whet/engine"
	"whet/tui"
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

// A malformed HF_ENDPOINT does not keep the studio from opening: the
// model page says what is wrong where it lists the cache.
func TestStudioHubBadEndpointIsShown(t *testing.T) {
	t.Setenv("HF_ENDPOINT", "ftp:/nowhere")
	h, err := newStudioHub()
	if err == nil {
		t.Fatalf("newStudioHub with a bad HF_ENDPOINT: %v, no error", h)
	}
	m := tui.New(tui.Options{Hub: unavailableHub{err: err}, RecentData: filepath.Join(t.TempDir(), "recent")})
	m.Update(tea.WindowSizeMsg{Width: 120, Height: 40})
	if s := m.View().Content; !strings.Contains(s, "Hugging Face Hub: HF_ENDPOINT") {
		t.Errorf("the model page should say why the Hub is not available:\n%s", s)
	}
}
