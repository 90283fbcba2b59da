package worker

import (
	"os"
	"slices"
	"testing"
	"time"

	"whet/engine"
)

// A viewer that attaches mid-run gets the history from the folder, then
// only the live events it has not seen: steps the worker sends again
// (they happened while the history was read) are not shown twice.
func TestAttachDeduplicatesLiveAfterReplay(t *testing.T) {
	s, ctl, rd := listen(t)
	os.WriteFile(rd.Metrics(), []byte("{\"step\":1,\"loss\":3}\n{\"step\":2,\"loss\":2.5}\n{\"step\":2,\"eval_loss\":2.7}\n{\"step\":3,\"loss\":2}\n"), 0o644)
	os.WriteFile(rd.Samples(), []byte("{\"step\":2,\"prompt\":\"p\",\"text\":\"t\"}\n"), 0o644)
	os.WriteFile(rd.Status(), []byte(`{"state":"running","step":3,"total_steps":9,"last_loss":2}`), 0o644)
	events, rc, warnings, err := Attach(rd)
	if err != nil || len(warnings) > 0 {
		t.Fatal(err, warnings)
	}
	for i := 0; s.Viewers() < 1; i++ {
		if i > 10000 {
			t.Fatal("the viewer never connected")
		}
		time.Sleep(time.Millisecond)
	}
	rc.Stop() // before the end: a viewer hangs up once it has the DoneEvent
	waitCmds(t, ctl, "stop")
	for step := 2; step <= 5; step++ {
		s.Broadcast(engine.StepEvent{Step: step, TotalSteps: 9, Loss: 1})
	}
	s.Broadcast(engine.EvalEvent{Step: 2, Loss: 2.7})
	s.Broadcast(engine.EvalEvent{Step: 4, Loss: 1.5})
	s.Broadcast(engine.DoneEvent{Step: 5, Stopped: true})
	var steps, evals []int
	var samples int
	var done *engine.DoneEvent
	for ev := range events {
		switch e := ev.(type) {
		case engine.StepEvent:
			steps = append(steps, e.Step)
			if e.TotalSteps != 9 {
				t.Errorf("step %d without the total steps", e.Step)
			}
		case engine.EvalEvent:
			evals = append(evals, e.Step)
		case engine.SampleEvent:
			samples++
		case engine.DoneEvent:
			done = &e
		}
	}
	if !slices.Equal(steps, []int{1, 2, 3, 4, 5}) || !slices.Equal(evals, []int{2, 4}) || samples != 1 {
		t.Errorf("steps %v evals %v samples %d, want 1..5, [2 4], 1", steps, evals, samples)
	}
	if done == nil || !done.Stopped {
		t.Errorf("done %+v", done)
	}
}

func waitCmds(t *testing.T, ctl *fakeControl, want string) {
	t.Helper()
	for i := 0; ctl.got() != want; i++ {
		if i > 10000 {
			t.Fatalf("control got %q, want %q", ctl.got(), want)
		}
		time.Sleep(time.Millisecond)
	}
}

// A run no worker trains is replayed and ended as its status says; one
// that says running is a crash.
func TestAttachFinishedAndCrashedRuns(t *testing.T) {
	for state, check := range map[string]func(engine.DoneEvent) bool{
		"done":    func(d engine.DoneEvent) bool { return d.Err == nil && !d.Stopped },
		"stopped": func(d engine.DoneEvent) bool { return d.Err == nil && d.Stopped },
		"running": func(d engine.DoneEvent) bool { return d.Err != nil },
	} {
		rd := engine.RunDir(t.TempDir())
		os.WriteFile(rd.Metrics(), []byte("{\"step\":1,\"loss\":3}\n"), 0o644)
		os.WriteFile(rd.Status(), []byte(`{"state":"`+state+`","step":1,"total_steps":1,"last_loss":3}`), 0o644)
		events, _, _, err := Attach(rd)
		if err != nil {
			t.Fatal(err)
		}
		var last engine.Event
		n := 0
		for ev := range events {
			last, n = ev, n+1
		}
		if d, ok := last.(engine.DoneEvent); n != 2 || !ok || !check(d) || d.Step != 1 {
			t.Errorf("%s: %d events ending with %+v", state, n, last)
		}
	}
}
