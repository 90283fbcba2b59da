package tui_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/charmbracelet/x/ansi"

	"whet/engine"
	"whet/engine/worker"
	"whet/tui"
	"whet/tui/fake"
)

type recordingControl struct {
	mu   sync.Mutex
	cmds []string
}

func (r *recordingControl) add(s string) { r.mu.Lock(); r.cmds = append(r.cmds, s); r.mu.Unlock() }
func (r *recordingControl) Pause()       { r.add("pause") }
func (r *recordingControl) Resume()      { r.add("resume") }
func (r *recordingControl) Checkpoint()  { r.add("checkpoint") }
func (r *recordingControl) Stop()        { r.add("stop") }
func (r *recordingControl) got() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return strings.Join(r.cmds, ",")
}

// serveAttached starts a worker control socket in a fresh run folder and
// attaches a viewer to it.
func serveAttached(t *testing.T) (*worker.Server, *recordingControl, <-chan engine.Event, engine.RunControl) {
	t.Helper()
	rd := engine.RunDir(t.TempDir())
	ctl := &recordingControl{}
	srv, err := worker.Listen(rd, ctl)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	events, rc, _, err := worker.Attach(rd)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; srv.Viewers() < 1; i++ {
		if i > 10000 {
			t.Fatal("the viewer never connected")
		}
		time.Sleep(time.Millisecond)
	}
	return srv, ctl, events, rc
}

// The dashboard and the summary of a run followed through its worker's
// control socket are the very goldens of the same run in-process.
func TestGoldenAttachedSameAsInProcess(t *testing.T) {
	srv, _, events, _ := serveAttached(t)
	sent := goldenEvents(true)
	for _, ev := range sent {
		srv.Broadcast(ev)
	}
	var got []engine.Event
	for ev := range events {
		got = append(got, ev)
	}
	if len(got) != len(sent) {
		t.Fatalf("viewer got %d events, the run sent %d", len(got), len(sent))
	}
	gpu := &tui.GPUStats{Name: "NVIDIA H100 80GB HBM3", Util: 93, MemUsed: 21 << 30, MemTotal: 80 << 30, TempC: 64, PowerW: 455, PowerCapW: 700}
	live := len(goldenEvents(false))
	for _, sz := range sizes {
		name := fmt.Sprintf("%dx%d", sz.w, sz.h)
		golden(t, "dashboard_"+name, tui.RenderDashboard(goldenRun(), sz.w, sz.h, got[:live], gpu, nil))
		golden(t, "summary_stopped_"+name, tui.RenderDashboard(goldenRun(), sz.w, sz.h, got, gpu, nil))
	}
}

// An attached viewer steers the run with the dashboard's keys through the
// socket; q leaves the viewer at once and never stops the run.
func TestAttachedViewerKeys(t *testing.T) {
	srv, ctl, events, rc := serveAttached(t)
	o := testOptions(nil)
	o.Attach = &tui.AttachedRun{Config: goldenRun(), Events: events, Control: rc}
	d := newDriver(t, o, 80, 24)
	d.run(d.m.Init())
	for _, ev := range goldenEvents(false) {
		srv.Broadcast(ev)
	}
	// Every event broadcast: the last is step 60's eval (events that come
	// together are applied in one message, so "60/200" alone may or may
	// not have its eval yet); and the GPU sampler's first reading, which
	// comes on a command of its own in any order with the events (the
	// golden once showed "GPU: reading…" on a loaded machine).
	d.waitScreen("eval loss 1.1818", fake.DemoGPU.Stats.Name)
	golden(t, "dashboard_attached_80x24", d.view())
	d.keys("p", "c")
	for i := 0; ctl.got() != "pause,checkpoint"; i++ {
		if i > 10000 {
			t.Fatalf("worker got %q, want pause,checkpoint", ctl.got())
		}
		time.Sleep(time.Millisecond)
	}
	d.keys("q")
	d.waitFor("the viewer to quit", func() bool { return d.quit })
	if ev, _ := d.m.Running(); ev != nil {
		t.Error("an attached run is reported as the studio's own, to be stopped on exit")
	}
	if ctl.got() != "pause,checkpoint" {
		t.Errorf("worker got %q; quitting the viewer must not stop the run", ctl.got())
	}
}

// A run opened from the runs page or with whet attach carries absolute
// paths (its run.yaml records them): inside the working folder the
// summary shows them relative to it, so that "resume it: whet train -c
// runs/NAME/run.yaml" fits 80 columns instead of ending in "…".
func TestSummaryPathsRelativeToTheWorkingFolder(t *testing.T) {
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	cfg := goldenRun()
	cfg.Name = "run-20261207-133040"
	cfg.RunsDir = filepath.Join(wd, "runs")
	evs := goldenEvents(true)
	for i, ev := range evs {
		switch e := ev.(type) {
		case engine.DoneEvent:
			e.FinalDir = filepath.Join(cfg.RunsDir, cfg.Name)
			evs[i] = e
		case engine.CheckpointEvent:
			e.Path = filepath.Join(cfg.RunsDir, cfg.Name, "checkpoints", fmt.Sprintf("step-%08d", e.Step))
			evs[i] = e
		}
	}
	s := ansi.Strip(tui.RenderDashboard(cfg, 80, 24, evs, nil, nil))
	for _, want := range []string{"resume it: whet train -c runs/run-20261207-133040/run.yaml\n",
		"output      runs/run-20261207-133040\n", "checkpoint  runs/run-20261207-133040/checkpoints/step-"} {
		if !strings.Contains(s, want) {
			t.Errorf("summary lacks %q:\n%s", want, s)
		}
	}
}

// The dashboard's checkpoint line shows its path relative to the working
// folder too (a worker reports it absolute).
func TestDashboardCheckpointPathRelative(t *testing.T) {
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(wd, "runs", "persona-lora", "checkpoints", "step-00000030")
	evs := []engine.Event{engine.StepEvent{Step: 30, TotalSteps: 200, Loss: 2}, engine.CheckpointEvent{Step: 30, Path: path}}
	s := ansi.Strip(tui.RenderDashboard(goldenRun(), 80, 24, evs, nil, nil))
	if !strings.Contains(s, "step 30 → runs/persona-lora/checkpoints/step-00000030") {
		t.Errorf("checkpoint line:\n%s", s)
	}
}

// A run followed with whet attach (or opened from the runs page) carries
// its model's absolute folder from run.yaml; the header of its dashboard,
// summary, export page and chat shows it as the studio's own run does,
// relative to the working folder. Before, the studio's dashboard read
// "lora on tiny-llama" and whet attach on the same run "lora on
// /tmp/walkhome/proj/tiny-llama".
func TestHeadersShowTheModelRelativeToTheWorkingFolder(t *testing.T) {
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	cfg := goldenRun()
	cfg.Model = filepath.Join(wd, "testdata", "acme", "tiny-llama")
	want := "lora on testdata/acme/tiny-llama"
	live := goldenEvents(false)
	if s := ansi.Strip(tui.RenderDashboard(cfg, 80, 24, live, nil, nil)); !strings.Contains(strings.Split(s, "\n")[0], want) {
		t.Errorf("dashboard header, want %q:\n%s", want, s)
	}
	if s := ansi.Strip(tui.RenderDashboard(cfg, 80, 24, goldenEvents(true), nil, nil)); !strings.Contains(strings.Split(s, "\n")[0], want) {
		t.Errorf("summary header, want %q:\n%s", want, s)
	}
	for _, page := range []struct{ key, wait string }{{"e", "GGUF"}, {"t", "Ask both"}} {
		all := goldenEvents(true)
		events := make(chan engine.Event, len(all))
		for _, ev := range all {
			events <- ev
		}
		close(events)
		o := testOptions(nil)
		o.Exporter, o.Chat = &fake.Exporter{}, &fake.Chat{}
		o.Attach = &tui.AttachedRun{Config: cfg, Events: events, Control: &recordingControl{}}
		d := newDriver(t, o, 80, 24)
		d.run(d.m.Init())
		d.waitScreen("t chat")
		d.keys(page.key)
		d.waitScreen(page.wait)
		if head := strings.Split(d.screen(), "\n")[0]; !strings.Contains(head, want) {
			t.Errorf("%s page header %q, want %q", page.key, head, want)
		}
	}
}
