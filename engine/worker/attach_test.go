package worker

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
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
		os.WriteFile(rd.Metrics(), []byte("{\"step\":1,\"loss\":3,\"elapsed_s\":2.5}\n"), 0o644)
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
		if d, ok := last.(engine.DoneEvent); n != 2 || !ok || !check(d) || d.Step != 1 || d.Elapsed != 2500*time.Millisecond {
			t.Errorf("%s: %d events ending with %+v", state, n, last)
		}
	}
}

// A viewer that leaves mid-run (its context cancelled) stops reading:
// the channel closes without a DoneEvent, its connection is closed (the
// worker counts one viewer less) and the run is not stopped.
func TestAttachContextLeaves(t *testing.T) {
	s, ctl, rd := listen(t)
	ctx, cancel := context.WithCancel(context.Background())
	events, _, _, err := AttachContext(ctx, rd)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; s.Viewers() < 1; i++ {
		if i > 10000 {
			t.Fatal("the viewer never connected")
		}
		time.Sleep(time.Millisecond)
	}
	// More events than any queue holds, none read: leaving must not hang.
	for step := 1; step <= clientQueue+200; step++ {
		s.Broadcast(engine.StepEvent{Step: step, TotalSteps: 1 << 20, Loss: 1})
	}
	if ev := <-events; ev.(engine.StepEvent).Step != 1 {
		t.Fatalf("first event %+v", ev)
	}
	cancel()
	for ev := range events {
		if _, ok := ev.(engine.DoneEvent); ok {
			t.Fatal("a viewer that left was told the run ended")
		}
	}
	for i := 0; s.Viewers() > 0; i++ {
		if i > 10000 {
			t.Fatalf("%d viewers still connected after the viewer left", s.Viewers())
		}
		time.Sleep(time.Millisecond)
	}
	if ctl.got() != "" {
		t.Errorf("leaving sent %q to the run", ctl.got())
	}
}

// List tells a live run (its lock held) from a crashed one (says running,
// nobody holds its lock) and gives the crashed one's last words and the
// checkpoint it resumes from.
func TestListLiveAndCrashed(t *testing.T) {
	dir := t.TempDir()
	mk := func(name, status string) engine.RunDir {
		rd := engine.RunDir(filepath.Join(dir, name))
		ck := filepath.Join(rd.Checkpoints(), "step-000004")
		os.MkdirAll(ck, 0o755)
		os.WriteFile(filepath.Join(ck, "trainer_state.json"), []byte("{}"), 0o644)
		os.WriteFile(rd.Config(), []byte("name: "+name+"\nmodel: m\nmethod: lora\n"), 0o644)
		os.WriteFile(rd.Status(), []byte(status), 0o644)
		os.WriteFile(rd.Metrics(), []byte("{\"step\":5,\"loss\":2.5}\n"), 0o644)
		os.WriteFile(rd.LockFile(), []byte("999999\n"), 0o644)
		os.WriteFile(Log(rd), []byte("step 5 loss 2.5\npanic: out of cheese\n\n"), 0o644)
		return rd
	}
	mk("crashed", `{"state":"running","step":5,"total_steps":9,"last_loss":2.5}`)
	live := mk("live", `{"state":"running","step":5,"total_steps":9,"last_loss":2.5}`)
	mk("done", `{"state":"done","step":9,"total_steps":9,"last_loss":2}`)
	mk("stopped", `{"state":"stopped","step":4,"total_steps":9,"last_loss":2.5}`)
	l, err := live.Acquire()
	if err != nil {
		t.Fatal(err)
	}
	defer l.Release()
	runs, warnings, err := List(dir, time.Now())
	if err != nil || len(warnings) > 0 || len(runs) != 4 {
		t.Fatalf("List = %+v, %v, %v", runs, warnings, err)
	}
	c, d, lv, sp := runs[0], runs[1], runs[2], runs[3]
	// A stopped run resumes from its checkpoint too (the studio's runs
	// page said "no checkpoint: … starts it over" under "stopped with a
	// checkpoint").
	if sp.State != "stopped" || sp.ResumeStep != 4 || !strings.HasSuffix(sp.ResumeFrom, "step-000004") || sp.Crash() != "" {
		t.Errorf("stopped run: %+v", sp)
	}
	if c.State != "crashed" || c.Live || c.LastWords != "panic: out of cheese" || c.ResumeStep != 4 || !strings.HasSuffix(c.ResumeFrom, "step-000004") {
		t.Errorf("crashed run: %+v", c)
	}
	if want := "resumes from " + c.ResumeFrom + " (step 4)"; !strings.Contains(c.Crash(), want) || !strings.Contains(c.Crash(), "out of cheese") {
		t.Errorf("crash line %q lacks %q and the last words", c.Crash(), want)
	}
	if d.State != "done" || d.Live || d.Crash() != "" || d.Step != 9 {
		t.Errorf("done run: %+v", d)
	}
	if lv.State != "running" || !lv.Live || lv.PID != os.Getpid() || lv.Crash() != "" {
		t.Errorf("live run: %+v", lv)
	}
}

// A run no worker trains any more ends its replay saying whether its
// folder holds a checkpoint: a viewer's summary offers to resume a failed
// or crashed run only then (whet train -c starts one without over).
func TestAttachSaysWhetherACheckpointExists(t *testing.T) {
	for _, state := range []string{"failed", "running"} {
		for _, withCkpt := range []bool{false, true} {
			rd := engine.RunDir(t.TempDir())
			os.WriteFile(rd.Metrics(), []byte("{\"step\":1,\"loss\":3,\"elapsed_s\":2.5}\n"), 0o644)
			os.WriteFile(rd.Status(), []byte(`{"state":"`+state+`","step":1,"total_steps":9,"last_loss":3}`), 0o644)
			if withCkpt {
				ck := filepath.Join(rd.Checkpoints(), "step-000001")
				os.MkdirAll(ck, 0o755)
				os.WriteFile(filepath.Join(ck, "trainer_state.json"), []byte("{}"), 0o644)
			}
			events, _, _, err := Attach(rd)
			if err != nil {
				t.Fatal(err)
			}
			var done engine.DoneEvent
			for ev := range events {
				if d, ok := ev.(engine.DoneEvent); ok {
					done = d
				}
			}
			if done.Err == nil || done.Checkpointed != withCkpt {
				t.Errorf("%s run, checkpoint %v: done %+v", state, withCkpt, done)
			}
		}
	}
}

// A run folder without status.json whose lock no process holds was left
// by a process that ended before its first status (a full disk): it is
// failed, with its worker's last words when it has a log. One whose lock
// is held is training (still loading); one that was never locked (no
// lock file) stays unknown.
func TestListRunThatEndedBeforeItsStatus(t *testing.T) {
	dir := t.TempDir()
	mk := func(name string, lock, log bool) engine.RunDir {
		rd := engine.RunDir(filepath.Join(dir, name))
		os.MkdirAll(rd.Path(), 0o755)
		os.WriteFile(rd.Config(), []byte("name: "+name+"\nmodel: m\nmethod: lora\n"), 0o644)
		os.WriteFile(rd.Metrics(), nil, 0o644)
		if lock {
			os.WriteFile(rd.LockFile(), []byte("999999\n"), 0o644)
		}
		if log {
			os.WriteFile(Log(rd), []byte(SessionMarker+"2026-12-07T20:20:00Z\nwhet train: write "+rd.Status()+": no space left on device\n"), 0o644)
		}
		return rd
	}
	mk("a-detached", true, true)
	mk("b-terminal", true, false)
	live := mk("c-loading", true, false)
	mk("d-unlocked", false, false)
	l, err := live.Acquire()
	if err != nil {
		t.Fatal(err)
	}
	defer l.Release()
	runs, warnings, err := List(dir, time.Now())
	if err != nil || len(warnings) > 0 || len(runs) != 4 {
		t.Fatalf("List = %+v, %v, %v", runs, warnings, err)
	}
	det, term, load, unlocked := runs[0], runs[1], runs[2], runs[3]
	if det.State != "failed" || !det.NoStatus || !strings.Contains(det.Failure(), "last words in "+Log(engine.RunDir(filepath.Join(dir, "a-detached")))+": whet train: write ") ||
		!strings.Contains(det.Failure(), "no space left on device") || !strings.Contains(det.Failure(), "starts it over") {
		t.Errorf("detached run: %+v, failure %q", det, det.Failure())
	}
	if term.State != "failed" || !strings.Contains(term.Failure(), "it ended before writing its first status.json; no worker log") {
		t.Errorf("run trained in a terminal: %+v, failure %q", term, term.Failure())
	}
	if load.State != "unknown" || !load.Live || load.Failure() != "" {
		t.Errorf("run whose process holds its lock: %+v", load)
	}
	if unlocked.State != "unknown" || unlocked.NoStatus {
		t.Errorf("run never locked: %+v", unlocked)
	}
}
