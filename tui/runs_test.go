package tui_test

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	tea "charm.land/bubbletea/v2"

	"whet/engine"
	"whet/tui"
	"whet/tui/fake"
)

// scriptedRuns is a runs folder with a live run (its history, then it
// trains on until the viewer leaves), a finished one, a crashed one with
// a checkpoint and a stopped one.
func scriptedRuns() *fake.Runs {
	live := []fake.Step{}
	for _, ev := range goldenEvents(false) {
		if ck, ok := ev.(engine.CheckpointEvent); ok { // the fake puts it in the run's folder
			ck.Path = strings.TrimPrefix(ck.Path, "runs/persona-lora/")
			ev = ck
		}
		live = append(live, fake.Step{Event: ev})
	}
	live = append(live, fake.Step{After: time.Hour, Event: engine.StepEvent{Step: 61, TotalSteps: 200, Loss: 1}})
	finished := []fake.Step{}
	for i := 1; i <= 20; i++ {
		finished = append(finished, fake.Step{Event: engine.StepEvent{Step: i, TotalSteps: 20, Loss: 3 - float64(i)*0.1, Elapsed: time.Duration(i) * time.Second}})
	}
	finished = append(finished, fake.Step{Event: engine.DoneEvent{Step: 20, Elapsed: 20 * time.Second, FinalDir: "runs/old-done"}})
	crashed := []fake.Step{
		{Event: engine.StepEvent{Step: 1, TotalSteps: 50, Loss: 2.9}},
		{Event: engine.StepEvent{Step: 2, TotalSteps: 50, Loss: 2.7}},
		{Event: engine.DoneEvent{Step: 2, Err: errors.New("no process trains run runs/crashed-run and its status says \"running\": it crashed; last words in runs/crashed-run/worker.log: cuda: an illegal memory access was encountered (700); whet train -c runs/crashed-run/run.yaml resumes from runs/crashed-run/checkpoints/step-000002 (step 2)"), Checkpointed: true}},
	}
	return &fake.Runs{RunsDir: "runs", Runs: []tui.RunInfo{
		{Name: "crashed-run", Method: "qlora", Model: "llama-3.2-1b-instruct", State: "crashed", Step: 2, Total: 50, Last: 2.7, HasLast: true,
			LastWords: "cuda: an illegal memory access was encountered (700)", LastWordsFile: "runs/crashed-run/worker.log",
			ResumeFrom: "runs/crashed-run/checkpoints/step-000002", ResumeStep: 2, Config: "runs/crashed-run/run.yaml"},
		{Name: "old-done", Method: "lora", Model: "whet-demo-8m", State: "done", Step: 20, Total: 20, Last: 1, HasLast: true, Config: "runs/old-done/run.yaml"},
		{Name: "persona-lora", Method: "lora", Model: "qwen2.5-0.5b-instruct", State: "running", Live: true, PID: 4242, Step: 60, Total: 200, Last: 1.2, HasLast: true, Config: "runs/persona-lora/run.yaml"},
		{Name: "stopped-full", Method: "full", Model: "qwen2.5-0.5b-instruct", State: "stopped", Step: 40, Total: 500, Last: 1.5, HasLast: true, Config: "runs/stopped-full/run.yaml"},
	}, Scripts: map[string][]fake.Step{"persona-lora": live, "old-done": finished, "crashed-run": crashed}}
}

// The runs page at both sizes: every state marked in words, the crashed
// run's last words and the checkpoint it resumes from; the model page
// offers it with r.
func TestGoldenRunsPage(t *testing.T) {
	for _, sz := range sizes {
		name := fmt.Sprintf("%dx%d", sz.w, sz.h)
		o := testOptions(&fake.Engine{})
		o.Runs = scriptedRuns()
		d := newDriver(t, o, sz.w, sz.h)
		if sz.w == 80 {
			golden(t, "wizard_1model_runs_"+name, d.view())
		}
		d.keys("r")
		d.waitScreen("persona-lora")
		checkSize(t, d.view(), sz.w, sz.h)
		golden(t, "runs_crashed_"+name, d.view())
		d.keys("down", "down")
		checkSize(t, d.view(), sz.w, sz.h)
		golden(t, "runs_live_"+name, d.view())
	}
	o := testOptions(&fake.Engine{})
	o.Runs = &fake.Runs{RunsDir: "runs"}
	d := newDriver(t, o, 80, 24)
	d.keys("r")
	d.waitScreen("No runs in ./runs yet")
	golden(t, "runs_empty_80x24", d.view())
}

// From the runs page a live run opens in a viewer: its whole history
// first, then live; the dashboard's keys steer it; q goes back to the
// runs page, leaving the run training (the viewer's connection is
// closed, nothing stops it). A finished run opens on its summary, and
// esc goes back.
func TestRunsPageFlow(t *testing.T) {
	runs := scriptedRuns()
	o := testOptions(&fake.Engine{})
	o.Runs = runs
	d := newDriver(t, o, 80, 24)
	d.keys("r")
	d.waitScreen("persona-lora")
	d.keys("down", "down", "enter")
	// The whole history (step 60's eval is its last event) and the GPU
	// sampler's first reading, which may come before or after it.
	d.waitScreen("eval loss 1.1818", fake.DemoGPU.Stats.Name)
	if s := d.screen(); !strings.Contains(s, "q/esc runs (run goes on)") || !strings.Contains(s, "checkpoint #1") {
		t.Errorf("viewer of a live run:\n%s", s)
	}
	golden(t, "runs_viewer_80x24", d.view())
	d.keys("p", "c")
	if p, _, c, s := runs.Control("persona-lora").Counts(); p != 1 || c != 1 || s != 0 {
		t.Errorf("pauses %d checkpoints %d stops %d, want 1 1 0", p, c, s)
	}
	d.keys("q")
	d.waitScreen("Runs in ./runs")
	poll(t, "the viewer to leave the run", func() bool { return runs.Left() == 1 })
	if ev, _ := d.m.Running(); ev != nil || d.quit {
		t.Fatal("leaving a viewer quit the studio or left a run to stop")
	}
	if _, _, _, s := runs.Control("persona-lora").Counts(); s != 0 {
		t.Error("leaving the viewer stopped the run")
	}
	d.keys("up", "enter") // old-done
	d.waitScreen("20 of 20 steps")
	if s := d.screen(); !strings.Contains(s, "20 of 20 steps") || !strings.Contains(s, "esc runs") {
		t.Errorf("summary of a finished run:\n%s", s)
	}
	d.keys("esc")
	d.waitScreen("Runs in ./runs")
	d.keys("up", "enter") // crashed-run: its history, then why it ended
	d.waitScreen("2 of 50 steps")
	if s := d.screen(); !strings.Contains(s, "crashed;") || !strings.Contains(s, "(step 2)") || !strings.Contains(s, "resume it: whet train -c runs/crashed-run/run.yaml") {
		t.Errorf("summary of a crashed run:\n%s", s)
	}
	d.keys("esc")
	d.waitScreen("Runs in ./runs")
	d.keys("esc")
	d.waitScreen("Choose the base model")
	if cfg := d.m.Config(); cfg.Name != "run-20261126-120000" {
		t.Errorf("viewing runs changed the wizard's config to %+v", cfg)
	}
	if got := strings.Join(runs.Attached(), ","); got != "persona-lora,old-done,crashed-run" {
		t.Errorf("attached %s", got)
	}
	d.keys("q")
	d.waitFor("q on the model page to quit", func() bool { return d.quit })
}

// An error listing the folder or opening a run is shown on the page.
func TestRunsPageErrors(t *testing.T) {
	o := testOptions(&fake.Engine{})
	o.Runs = &fake.Runs{RunsDir: "runs", ListErr: errors.New("reading runs directory runs: permission denied")}
	d := newDriver(t, o, 80, 24)
	d.keys("r")
	d.waitScreen("permission denied")
	runs := scriptedRuns()
	o.Runs = runs
	d = newDriver(t, o, 80, 24)
	d.keys("r")
	d.waitScreen("persona-lora")
	d.keys("end", "enter") // stopped-full has no script here: Attach fails
	d.waitScreen("no run stopped-full in runs")
	if !strings.Contains(d.screen(), "Runs in ./runs") {
		t.Errorf("an attach error left the runs page:\n%s", d.screen())
	}
}

// A run started from the wizard on an engine whose runs live in a worker
// of their own is only watched: q leaves it training and the studio says
// how to follow it again.
func TestDetachedStudioRunIsWatchedOnly(t *testing.T) {
	script := scriptSteps(3)
	script = append(script, fake.Step{After: time.Hour, Event: engine.StepEvent{Step: 4, TotalSteps: 100}})
	eng := &detachedFake{Engine: fake.Engine{Script: script}}
	d := newDriver(t, testOptions(eng), 80, 24)
	d.run(d.m.Init())
	startDefaultRun(t, d)
	d.waitScreen("3/100")
	if !strings.Contains(d.screen(), "quit viewer (run goes on)") {
		t.Errorf("help line of a detached run's dashboard:\n%s", d.screen())
	}
	d.keys("q")
	d.waitFor("q to leave the studio", func() bool { return d.quit })
	if ev, _ := d.m.Running(); ev != nil {
		t.Error("a detached run is handed back to be stopped on exit")
	}
	if _, _, _, stops := eng.LastControl().Counts(); stops != 0 {
		t.Error("quitting stopped the detached run")
	}
	if got := d.m.Outcome(); got != tui.GoesOn(d.m.Config().Name) {
		t.Errorf("outcome %q", got)
	}
}

type detachedFake struct{ fake.Engine }

func (*detachedFake) Detached() bool { return true }

// poll waits for cond, which no message of the studio's signals (bounded).
func poll(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !cond(); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// While shown, the runs page reads the folder again by itself: a run
// that ends meanwhile is shown finished without a key.
func TestRunsPageRefreshesItself(t *testing.T) {
	runs := scriptedRuns()
	o := testOptions(&fake.Engine{})
	o.Runs, o.RunsEvery = runs, 10*time.Millisecond
	d := newDriver(t, o, 80, 24)
	d.keys("r")
	d.waitScreen("● training")
	list, _, _ := runs.List()
	for i := range list {
		if list[i].Name == "persona-lora" {
			list[i].State, list[i].Live, list[i].Step = "done", false, 200
		}
	}
	runs.SetRuns(list)
	d.waitScreen("200/200")
	if strings.Contains(d.screen(), "● training") {
		t.Errorf("the ended run is still shown training:\n%s", d.screen())
	}
}

// A run opened from the runs page is a detail of that list: q and esc go
// back to it, as in any list and its detail. Before, q on the summary of
// an ended run quit the whole studio (and over whet serve, the session).
// Leaving a live run's viewer either way leaves it training, and a run
// that ends while watched ends on a summary that q also leaves for the
// list. q quits only from the top (here the runs page itself).
func TestRunsPageQAndEscGoBack(t *testing.T) {
	runs := scriptedRuns()
	ending := []fake.Step{
		{Event: engine.StepEvent{Step: 1, TotalSteps: 2, Loss: 2}},
		{Event: engine.StepEvent{Step: 2, TotalSteps: 2, Loss: 1.5}},
		{After: 50 * time.Millisecond, Event: engine.DoneEvent{Step: 2, Elapsed: 2 * time.Second, FinalDir: "runs/ending-now"}},
	}
	runs.Runs = append(runs.Runs, tui.RunInfo{Name: "ending-now", Method: "lora", Model: "whet-demo-8m", State: "running", Live: true, Step: 1, Total: 2, Config: "runs/ending-now/run.yaml"})
	runs.Scripts["ending-now"] = ending
	o := testOptions(&fake.Engine{})
	o.Runs = runs
	for _, size := range []struct{ w, h int }{{80, 24}, {30, 8}} { // 30x8: the "too small" screen takes q too
		d := newDriver(t, o, 80, 24)
		d.keys("r")
		d.waitScreen("persona-lora")
		onList := func(after string) {
			t.Helper()
			d.waitFor("the runs page after "+after, func() bool { return d.quit || strings.Contains(d.screen(), "NAME") })
			if d.quit {
				t.Fatalf("%dx%d: %s quit the studio instead of going back to the runs page", size.w, size.h, after)
			}
		}
		d.keys("home", "down", "enter") // old-done: its summary
		d.waitScreen("20 of 20 steps")
		if s := d.screen(); !strings.Contains(s, "q/esc runs") || strings.Contains(s, "q quit") {
			t.Errorf("help line of a summary opened from the runs page:\n%s", s)
		}
		d.send(tea.WindowSizeMsg{Width: size.w, Height: size.h})
		d.keys("q")
		d.send(tea.WindowSizeMsg{Width: 80, Height: 24})
		onList("q on an ended run's summary")
		d.keys("home", "down", "down", "enter") // persona-lora: live
		d.waitScreen("eval loss 1.1818")
		left := runs.Left()
		d.keys("esc")
		onList("esc on a live run's viewer")
		poll(t, "the viewer to leave the run", func() bool { return runs.Left() == left+1 })
		if _, _, _, s := runs.Control("persona-lora").Counts(); s != 0 {
			t.Error("leaving the viewer with esc stopped the run")
		}
		d.keys("end", "enter") // ending-now: watched until it ends
		d.waitScreen("2 of 2 steps")
		d.keys("q")
		onList("q on the summary a watched run ended on")
		d.keys("q")
		d.waitFor("q on the runs page to quit", func() bool { return d.quit })
	}
}

// The runs page's header names its folder as a folder ("Runs in ./runs",
// it read "Runs in runs"), and a path too long for the line keeps its
// end, the folder's own name, rather than being cut off at the right.
func TestRunsPageHeaderNamesTheFolder(t *testing.T) {
	long := "/srv/" + strings.Repeat("a-rather-long-folder-name/", 4) + "team-runs"
	for _, c := range []struct{ dir, want string }{
		{"runs", "whet  Runs in ./runs"},
		{"runs/", "whet  Runs in ./runs"},
		{"../shared/runs", "whet  Runs in ../shared/runs"},
		{long, "whet  Runs in …"},
	} {
		o := testOptions(&fake.Engine{})
		o.Runs = scriptedRuns()
		o.RunsDir = c.dir
		d := newDriver(t, o, 80, 24)
		d.keys("r")
		d.waitScreen("persona-lora")
		checkSize(t, d.view(), 80, 24)
		head := strings.TrimRight(strings.SplitN(d.screen(), "\n", 2)[0], " ")
		if !strings.HasPrefix(head, c.want) || (c.dir == long && !strings.HasSuffix(head, "folder-name/team-runs")) {
			t.Errorf("runs folder %s: header %q, want %q…", c.dir, head, c.want)
		}
	}
}

// The export page opened from such a summary is one level further down:
// q goes back to the summary (it quit the studio), and q again to the
// runs page.
func TestRunsPageExportQGoesBack(t *testing.T) {
	o := testOptions(&fake.Engine{})
	o.Runs = scriptedRuns()
	o.Exporter = &fake.Exporter{}
	d := newDriver(t, o, 80, 24)
	d.keys("r")
	d.waitScreen("persona-lora")
	d.keys("home", "down", "enter") // old-done
	d.waitScreen("20 of 20 steps")
	d.keys("e")
	d.waitScreen("whet export")
	if s := d.screen(); !strings.Contains(s, "q/esc back") || strings.Contains(s, "q quit") {
		t.Errorf("help line of the export page of a run opened from the runs page:\n%s", s)
	}
	d.keys("q")
	d.waitFor("the summary again", func() bool { return d.quit || strings.Contains(d.screen(), "q/esc runs") })
	if d.quit {
		t.Fatal("q on the export page of a run opened from the runs page quit the studio")
	}
	d.keys("q")
	d.waitFor("the runs page", func() bool { return d.quit || strings.Contains(d.screen(), "NAME") })
	if d.quit {
		t.Fatal("q on the summary quit the studio")
	}
}

// c on a stopped or crashed run trains it again from its newest checkpoint
// (the browser's Resume: a worker with the run's own run.yaml) and follows
// it in the viewer; a finished or live run offers no c. Before, the page
// only said to run whet train -c RUN/run.yaml in a shell. A refusal is
// shown on the page.
func TestRunsPageContinuesAStoppedRun(t *testing.T) {
	runs := scriptedRuns()
	runs.Scripts["crashed-run"] = []fake.Step{
		{Event: engine.LogEvent{Text: "resumed runs/crashed-run at step 2"}},
		{Event: engine.StepEvent{Step: 3, TotalSteps: 50, Loss: 2.5}},
		{After: time.Hour, Event: engine.StepEvent{Step: 4, TotalSteps: 50, Loss: 2.4}},
	}
	o := testOptions(&fake.Engine{})
	o.Runs = runs
	d := newDriver(t, o, 80, 24)
	d.keys("r")
	d.waitScreen("persona-lora")
	s := d.screen()
	if !strings.Contains(s, "c continues training from its checkpoint at step 2") || !strings.Contains(s, "c continue") {
		t.Errorf("the crashed run should offer c:\n%s", s)
	}
	for _, row := range []string{"down", "down"} { // old-done, then the live persona-lora
		d.keys(row)
		d.keys("c")
		if s := d.screen(); strings.Contains(s, "c continue") || len(runs.Resumed()) != 0 {
			t.Fatalf("c offered or taken on a finished or live run (resumed %v):\n%s", runs.Resumed(), s)
		}
	}
	d.keys("end") // stopped-full: no checkpoint, c starts it over
	if s := d.screen(); !strings.Contains(s, "no checkpoint: c starts it over, as whet train -c runs/stopped-full/run.yaml") {
		t.Errorf("the stopped run without a checkpoint:\n%s", s)
	}
	d.keys("home", "c")
	d.waitScreen("step 3/50")
	if s := d.screen(); !strings.Contains(s, "q/esc runs (run goes on)") {
		t.Errorf("the resumed run should be followed in the viewer:\n%s", s)
	}
	if got := runs.Resumed(); len(got) != 1 || got[0] != "crashed-run" {
		t.Errorf("resumed %v, want [crashed-run]", got)
	}
	d.keys("q")
	d.waitScreen("Runs in ./runs")

	runs.ResumeErr = errors.New("the worker for run crashed-run ended (exit status 1): whet train: model folder /gone does not exist")
	d.keys("home", "c")
	d.waitScreen("/gone does not exist")
	if !strings.Contains(d.screen(), "Runs in ./runs") {
		t.Errorf("a refused resume left the runs page:\n%s", d.screen())
	}
	// The next listing keeps it; the next key clears it.
	d.send(d.m.RunsListForTest())
	if !strings.Contains(d.screen(), "/gone does not exist") {
		t.Errorf("a listing wiped the error:\n%s", d.screen())
	}
	d.keys("down")
	if strings.Contains(d.screen(), "/gone does not exist") {
		t.Errorf("a key should clear the error:\n%s", d.screen())
	}
	checkSize(t, d.view(), 80, 24)
}

// The summary of a run stopped in this studio offers c too: it trains the
// run on in a new worker (the runs page's Resume) and follows it, q then
// going to the runs page. A finished run offers no c.
func TestSummaryContinuesAStoppedRun(t *testing.T) {
	const name = "run-20261126-120000" // testOptions' run name
	script := append(scriptSteps(5), fake.Step{Event: engine.CheckpointEvent{Step: 5, Path: "runs/" + name + "/checkpoints/step-00000005"}},
		fake.Step{Event: engine.DoneEvent{Step: 5, Stopped: true, FinalDir: "runs/" + name}})
	runs := &fake.Runs{RunsDir: "runs", Runs: []tui.RunInfo{{Name: name, Method: "lora", State: "stopped", Step: 5, Total: 100}},
		Scripts: map[string][]fake.Step{name: {
			{Event: engine.StepEvent{Step: 6, TotalSteps: 100, Loss: 2}},
			{After: time.Hour, Event: engine.StepEvent{Step: 7, TotalSteps: 100, Loss: 1.9}},
		}}}
	o := testOptions(&fake.Engine{Script: script})
	o.Runs = runs
	d := newDriver(t, o, 80, 24)
	startDefaultRun(t, d)
	d.waitScreen("stopped")
	d.waitScreen("c continue")
	if s := d.screen(); !strings.Contains(s, "c continues it (whet train -c runs/"+name+"/run.yaml)") {
		t.Errorf("the summary should say what c does:\n%s", s)
	}
	checkSize(t, d.view(), 80, 24)
	d.keys("c")
	d.waitScreen("step 6/100")
	if got := runs.Resumed(); len(got) != 1 || got[0] != name {
		t.Errorf("resumed %v, want [%s]", got, name)
	}
	d.keys("q")
	d.waitScreen("Runs in ./runs")

	// A finished run: no c.
	done := append(scriptSteps(3), fake.Step{Event: engine.DoneEvent{Step: 3, FinalDir: "runs/" + name}})
	o = testOptions(&fake.Engine{Script: done})
	o.Runs = &fake.Runs{RunsDir: "runs"}
	d = newDriver(t, o, 80, 24)
	startDefaultRun(t, d)
	d.waitScreen("3 of 100 steps")
	if s := d.screen(); strings.Contains(s, "c continue") {
		t.Errorf("a finished run offers c:\n%s", s)
	}
}

// Below the minimum size the page's help line is not drawn, so the window
// names the keys that still work there, and each does what it says: in
// the viewer of a live run, on the summary and on the export page of runs
// opened from the runs page. Before, it said only "please enlarge it".
func TestTooSmallNamesTheKeys(t *testing.T) {
	o := testOptions(&fake.Engine{})
	o.Runs = scriptedRuns()
	o.Exporter = &fake.Exporter{}
	d := newDriver(t, o, 80, 24)
	d.keys("r")
	d.waitScreen("persona-lora")
	d.keys("down", "down", "enter")
	d.waitScreen("eval loss 1.1818")
	d.send(windowSize(60, 20))
	if s := d.screen(); !strings.Contains(s, "q runs (run goes on) • ctrl+c quit") {
		t.Errorf("small viewer of a live run:\n%s", s)
	}
	golden(t, "toosmall_viewer_60x20", d.view())
	d.keys("q")
	d.send(windowSize(80, 24))
	d.waitScreen("Runs in ./runs")
	d.keys("up", "enter") // old-done
	d.waitScreen("20 of 20 steps")
	d.keys("e")
	d.waitScreen("whet export")
	d.send(windowSize(60, 20))
	if s := d.screen(); !strings.Contains(s, "q back to the summary • ctrl+c quit") {
		t.Errorf("small export page:\n%s", s)
	}
	d.keys("q")
	if s := d.screen(); !strings.Contains(s, "q back to the runs • ctrl+c quit") {
		t.Errorf("small summary:\n%s", s)
	}
	d.keys("q")
	d.send(windowSize(80, 24))
	d.waitScreen("Runs in ./runs")
	if d.quit {
		t.Error("q on the small summary quit the studio")
	}
}

// A run's model is its run file's: an absolute folder for a local model.
// The MODEL column keeps the end of a long one (the model's name) and
// shows a folder inside the working one relative to it. Before, at 80
// columns every local run read "/tmp/ws-clone/pr…" (seen in tmux).
func TestRunsPageShowsTheModelsName(t *testing.T) {
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	o := testOptions(&fake.Engine{})
	o.Runs = &fake.Runs{RunsDir: "runs", Runs: []tui.RunInfo{
		{Name: "run-20261207-193344", Method: "lora", Model: "/srv/shared/models/Meta-Llama-3.1-8B-Instruct", State: "done", Step: 4, Total: 4, Last: 3.18, HasLast: true},
		{Name: "run-20261207-193623", Method: "lora", Model: filepath.Join(wd, "testdata", "models", "acme", "tiny-llama"), State: "stopped", Step: 6, Total: 60, Last: 4.34, HasLast: true},
		{Name: "hub-run", Method: "qlora", Model: "Qwen/Qwen2.5-0.5B-Instruct", State: "done", Step: 9, Total: 9, Last: 1.5, HasLast: true},
	}}
	for _, sz := range sizes {
		t.Run(fmt.Sprintf("%dx%d", sz.w, sz.h), func(t *testing.T) {
			d := newDriver(t, o, sz.w, sz.h)
			d.keys("r")
			d.waitScreen("hub-run")
			s := d.screen()
			for _, want := range []string{"…ama-3.1-8B-Instruct", "…els/acme/tiny-llama", "…en2.5-0.5B-Instruct"} {
				if sz.w == 80 && !strings.Contains(s, want) {
					t.Errorf("the MODEL column should show %q:\n%s", want, s)
				}
			}
			if sz.w == 120 && (!strings.Contains(s, " testdata/models/acme/tiny-llama") || !strings.Contains(s, "Meta-Llama-3.1-8B-Instruct")) {
				t.Errorf("at 120 columns the models fit, one inside the working folder relative to it:\n%s", s)
			}
			checkSize(t, d.view(), sz.w, sz.h)
			golden(t, fmt.Sprintf("runs_models_%dx%d", sz.w, sz.h), d.view())
		})
	}
}

// After a run started in the studio its summary offers esc: the runs page,
// where it is listed, and esc there goes back to the wizard's review page
// with the same settings under a new run name, so that enter trains a new
// run. Before, esc did nothing on that summary, and the only way to train
// again was to quit and start whet again; and coming back with the old
// name, enter would have resumed the run just finished.
func TestSummaryEscOpensRunsThenTheWizard(t *testing.T) {
	eng := &fake.Engine{Script: scriptSteps(2)}
	o := testOptions(eng)
	runs := scriptedRuns()
	// The run about to finish, as the runs folder will list it.
	runs.Runs = append(runs.Runs, tui.RunInfo{Name: "run-" + fixedNow().Format("20060102-150405"), Method: "lora", Model: "llama-3.2-1b", State: "done", Step: 2, Total: 2})
	o.Runs = runs
	d := finishRun(t, o)
	first := d.m.Config().Name
	if s := d.screen(); !strings.Contains(s, "esc runs • q quit") {
		t.Errorf("the summary should offer esc for the runs page:\n%s", s)
	}
	checkSize(t, d.view(), 80, 24)
	d.keys("esc")
	d.waitScreen("persona-lora")
	if got := cursorRow(d.screen()); !strings.HasPrefix(got, first) {
		t.Errorf("the runs page should open on the run just finished, cursor on %q:\n%s", got, d.screen())
	}
	d.keys("esc")
	d.waitScreen("Review")
	second := d.m.Config().Name
	if second == first || second != first+"-2" {
		t.Errorf("back in the wizard the run is named %q, want a new name (%s-2)", second, first)
	}
	if s := d.screen(); !strings.Contains(s, "name: "+second) || strings.Contains(s, "starting resumes it") {
		t.Errorf("the review page should show the new name and no resume warning:\n%s", s)
	}
	d.keys("enter")
	d.waitFor("the second run to start", func() bool { return len(eng.Started()) == 2 })
	if got := eng.Started()[1]; got.Name != second || got.Method != eng.Started()[0].Method {
		t.Errorf("second run %q (%s), want %q with the first one's settings", got.Name, got.Method, second)
	}
}

// A GRPO run's loss stays near 0 by construction: the runs page lists its
// mean reward, named, where the other runs list their loss, and says the
// viewer shows its reward history.
func TestRunsPageShowsGRPOReward(t *testing.T) {
	o := testOptions(&fake.Engine{})
	o.Runs = &fake.Runs{RunsDir: "runs", Runs: []tui.RunInfo{
		{Name: "math-grpo", Method: "grpo", Model: "qwen2.5-0.5b-instruct", State: "done", Step: 50, Total: 50, Last: 0.42, HasLast: true},
		{Name: "persona-lora", Method: "lora", Model: "qwen2.5-0.5b-instruct", State: "done", Step: 20, Total: 20, Last: 1.5, HasLast: true},
	}}
	d := newDriver(t, o, 80, 24)
	d.keys("r")
	d.waitScreen("math-grpo")
	row := func(name string) string {
		for _, l := range strings.Split(d.screen(), "\n") {
			if strings.Contains(l, name) {
				return l
			}
		}
		t.Fatalf("no row for %s:\n%s", name, d.screen())
		return ""
	}
	if r := row("math-grpo"); !strings.Contains(r, " reward 0.42 ") || strings.Contains(r, "loss") {
		t.Errorf("the GRPO run's row should show its reward: %q", r)
	}
	if r := row("persona-lora"); !strings.Contains(r, " loss 1.5000 ") {
		t.Errorf("the LoRA run's row should show its loss: %q", r)
	}
	if s := d.screen(); !strings.Contains(s, "enter shows its reward history") {
		t.Errorf("the selected GRPO run's line should speak of its reward history:\n%s", s)
	}
	checkSize(t, d.view(), 80, 24)
	golden(t, "runs_grpo_80x24", d.view())
}
