package engine_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"whet/engine"
	"whet/engine/worker"
)

// A NaN or infinite value is written as null, not dropped (and not a
// line that fails to encode), and reads back as NaN; zeros are written.
func TestMetricLineWritesNaNAsNull(t *testing.T) {
	l := engine.MetricLine{Step: 7, Values: map[string]float64{"loss": math.NaN(), "grad_norm": math.Inf(1), "lr": 0, "epoch": 0.5}}
	js, err := json.Marshal(l)
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"step":7,"epoch":0.5,"grad_norm":null,"loss":null,"lr":0}`; string(js) != want {
		t.Fatalf("got %s, want %s", js, want)
	}
	back, err := engine.ParseMetricLine(js)
	if err != nil {
		t.Fatal(err)
	}
	if loss, ok := back.Loss(); !ok || !math.IsNaN(loss) || !math.IsNaN(back.Values["grad_norm"]) || back.Values["lr"] != 0 || back.Step != 7 {
		t.Fatalf("read back %+v", back)
	}
	if _, err := engine.ParseMetricLine([]byte(`{"step":1,"loss":"high"}`)); err == nil || !strings.Contains(err.Error(), "loss") {
		t.Errorf("a string loss: %v", err)
	}
	// status.json too: a NaN last loss is null, and reads back as NaN.
	st := engine.RunStatus{State: "failed", Step: 3, Total: 9, LastLoss: math.NaN()}
	js, err = json.Marshal(st)
	if err != nil || string(js) != `{"state":"failed","step":3,"total_steps":9,"last_loss":null}` {
		t.Fatalf("status %s %v", js, err)
	}
	var st2 engine.RunStatus
	if err := json.Unmarshal(js, &st2); err != nil || !math.IsNaN(st2.LastLoss) || st2.Step != 3 {
		t.Fatalf("status read back %+v %v", st2, err)
	}
}

func FuzzParseMetricLine(f *testing.F) {
	f.Add([]byte(`{"step":3,"loss":null,"lr":1e-4}`))
	f.Add([]byte(`{"step":3,"eval_loss":2.5}`))
	f.Add([]byte(`{"step":"x"}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		l, err := engine.ParseMetricLine(b)
		if err != nil {
			return
		}
		// What parses writes back to a line that parses to the same.
		js, err := json.Marshal(l)
		if err != nil {
			t.Fatal(err)
		}
		again, err := engine.ParseMetricLine(js)
		if err != nil || again.Step != l.Step || len(again.Values) != len(l.Values) {
			t.Fatalf("%s -> %s -> %+v %v", b, js, again, err)
		}
	})
}

// metricSteps reads metrics.jsonl: every line must be whole JSON; it
// returns the training steps in order.
func metricSteps(t *testing.T, path string) []int {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var steps []int
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		l, err := engine.ParseMetricLine(sc.Bytes())
		if err != nil {
			t.Fatalf("%s: line %q: %v", path, sc.Text(), err)
		}
		if _, ok := l.Loss(); ok {
			steps = append(steps, l.Step)
		}
	}
	return steps
}

func oneToN(n int) string {
	var s []string
	for i := 1; i <= n; i++ {
		s = append(s, fmt.Sprint(i))
	}
	return "[" + strings.Join(s, " ") + "]"
}

// Steps redone after a resume are not written twice: a crash after step 6
// left the checkpoint of step 4, metrics of steps 1-6 and half a line.
func TestResumeDoesNotDuplicateMetrics(t *testing.T) {
	dir := t.TempDir()
	a := tinyTrainer(t, dir)
	a.Cfg.MaxSteps, a.Cfg.SaveEvery = 6, 4
	if err := a.Run(context.Background(), make(chan engine.Event, 100)); err != nil {
		t.Fatal(err)
	}
	d := engine.RunDir(dir)
	os.RemoveAll(filepath.Join(d.Checkpoints(), "step-00000006"))
	f, _ := os.OpenFile(d.Metrics(), os.O_APPEND|os.O_WRONLY, 0)
	f.WriteString(`{"step":7,"lo`)
	f.Close()

	b := tinyTrainer(t, dir)
	b.Cfg.MaxSteps, b.Cfg.SaveEvery = 6, 4
	if ok, err := b.Resume(); err != nil || !ok || b.Step() != 4 {
		t.Fatalf("resume: %v %v step %d", ok, err, b.Step())
	}
	if got := fmt.Sprint(metricSteps(t, d.Metrics())); got != oneToN(4) {
		t.Fatalf("after resume metrics hold steps %s, want %s", got, oneToN(4))
	}
	if err := b.Run(context.Background(), make(chan engine.Event, 100)); err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(metricSteps(t, d.Metrics())); got != oneToN(6) {
		t.Fatalf("metrics hold steps %s, want each of 1-6 once", got)
	}
}

// A metrics write that fails half-way (a full disk) stops the run with a
// checkpoint; the file holds no half line, and the line that could not be
// written is kept in the checkpoint and written by the resume.
func TestMetricsWriteFailureStopsWithCheckpoint(t *testing.T) {
	dir := t.TempDir()
	d := engine.RunDir(dir)
	writes := 0
	engine.SetJSONLWrite(func(path string, f *os.File, b []byte) (int, error) {
		if filepath.Base(path) == "metrics.jsonl" {
			if writes++; writes == 3 {
				n, _ := f.Write(b[:len(b)/2])
				return n, syscall.ENOSPC
			}
		}
		return f.Write(b)
	})
	defer engine.SetJSONLWrite(nil)
	a := tinyTrainer(t, dir)
	a.Cfg.MaxSteps = 6
	err := a.Run(context.Background(), make(chan engine.Event, 100))
	if err == nil || !strings.Contains(err.Error(), "metrics.jsonl") || !strings.Contains(err.Error(), "no space left") {
		t.Fatalf("run with a full disk: %v", err)
	}
	if got := fmt.Sprint(metricSteps(t, d.Metrics())); got != oneToN(2) {
		t.Errorf("metrics after the failed write: steps %s, want %s and no half line", got, oneToN(2))
	}
	all, _ := engine.ListCheckpoints(d.Checkpoints())
	if len(all) != 1 || all[0].Step != 3 {
		t.Fatalf("checkpoints %+v, want step 3", all)
	}
	var st engine.RunStatus
	js, _ := os.ReadFile(d.Status())
	if json.Unmarshal(js, &st) != nil || st.State != "failed" {
		t.Errorf("status.json %s", js)
	}
	engine.SetJSONLWrite(nil)
	for range 2 { // resuming twice from the same checkpoint adds the line once
		b := tinyTrainer(t, dir)
		b.Cfg.MaxSteps = 6
		if ok, err := b.Resume(); err != nil || !ok || b.Step() != 3 {
			t.Fatalf("resume: %v %v", ok, err)
		}
	}
	if got := fmt.Sprint(metricSteps(t, d.Metrics())); got != oneToN(3) {
		t.Errorf("after resume: steps %s, want %s", got, oneToN(3))
	}
}

// A status.json that cannot be written stops the run instead of being
// ignored.
func TestStatusWriteFailureStopsRun(t *testing.T) {
	dir := t.TempDir()
	if err := os.Mkdir(engine.RunDir(dir).Status(), 0o755); err != nil { // a rename cannot replace a folder
		t.Fatal(err)
	}
	tr := tinyTrainer(t, dir)
	err := tr.Run(context.Background(), make(chan engine.Event, 100))
	if err == nil || !strings.Contains(err.Error(), "status.json") {
		t.Fatalf("run with an unwritable status.json: %v", err)
	}
}

// A viewer replays a run from its folder: ReadMetrics gives back the step
// and eval events the run sent (null as NaN), ReadSamples its samples; a
// torn last line is dropped and a damaged line is named.
func TestReadMetricsReplaysRun(t *testing.T) {
	runs := t.TempDir()
	var sent []engine.Event
	for _, ev := range runToEnd(t, smallRun(runs, "replay")) {
		switch ev.(type) {
		case engine.StepEvent, engine.EvalEvent, engine.SampleEvent:
			sent = append(sent, ev)
		}
	}
	d := engine.RunDir(filepath.Join(runs, "replay"))
	lines, warnings, err := d.ReadMetrics()
	if err != nil || len(warnings) > 0 {
		t.Fatalf("ReadMetrics: %v %v", warnings, err)
	}
	samples, _, err := d.ReadSamples()
	if err != nil {
		t.Fatal(err)
	}
	var replayed []engine.Event
	for _, l := range lines {
		replayed = append(replayed, l.Event())
		if _, isEval := l.Event().(engine.EvalEvent); isEval && len(samples) > 0 && samples[0].Step == l.Step {
			for _, s := range samples {
				replayed = append(replayed, s)
			}
		}
	}
	if len(replayed) != len(sent) {
		t.Fatalf("replayed %d events, the run sent %d", len(replayed), len(sent))
	}
	for i := range sent {
		want, got := sent[i], replayed[i]
		if w, ok := want.(engine.StepEvent); ok {
			g, _ := got.(engine.StepEvent)
			if g.Step != w.Step || g.Loss != w.Loss || g.LR != w.LR || g.GradNorm != w.GradNorm || g.Tokens != w.Tokens {
				t.Errorf("event %d: replayed %+v, sent %+v", i, g, w)
			}
			continue
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("event %d: replayed %+v, sent %+v", i, got, want)
		}
	}

	f, _ := os.OpenFile(d.Metrics(), os.O_APPEND|os.O_WRONLY, 0)
	f.WriteString("{\"step\":5,\"loss\":null}\nnot json\n{\"step\":6,\"lo")
	f.Close()
	lines, warnings, err = d.ReadMetrics()
	if err != nil || len(warnings) != 1 || !strings.Contains(warnings[0], "metrics.jsonl:") {
		t.Fatalf("warnings %q, %v: want the damaged line named", warnings, err)
	}
	last := lines[len(lines)-1]
	if loss, _ := last.Loss(); last.Step != 5 || !math.IsNaN(loss) {
		t.Errorf("last line read %+v, want step 5 with a NaN loss", last)
	}
}

// A status.json that a full disk refuses is named once in the error
// ("write X: write X: no space left on device" before).
func TestStatusWriteFailureNamesTheFileOnce(t *testing.T) {
	dir := t.TempDir()
	engine.SetAtomicWrite(func(path string, f *os.File, b []byte) (int, error) {
		if filepath.Base(path) == "status.json" {
			return 0, syscall.ENOSPC
		}
		return f.Write(b)
	})
	defer engine.SetAtomicWrite(nil)
	err := tinyTrainer(t, dir).Run(context.Background(), make(chan engine.Event, 100))
	want := "write " + engine.RunDir(dir).Status() + ": no space left on device"
	if err == nil || err.Error() != want || !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("run with a full disk: %v, want %q", err, want)
	}
}

// When the disk fills mid-run, the metrics line, the checkpoint and a new
// status.json all fail; the run still ends as "failed" (status.json is
// rewritten in place, in the block it has), not "running", which the runs
// list would show as crashed. Each file is named once in the error.
func TestFullDiskLeavesTheRunFailed(t *testing.T) {
	dir := t.TempDir()
	d := engine.RunDir(dir)
	full := false
	engine.SetJSONLWrite(func(path string, f *os.File, b []byte) (int, error) {
		if filepath.Base(path) == "metrics.jsonl" && !full {
			if n, _ := metricsLines(d.Metrics()); n == 2 {
				full = true
			}
		}
		if full { // as os.File's Write reports it
			return 0, &fs.PathError{Op: "write", Path: path, Err: syscall.ENOSPC}
		}
		return f.Write(b)
	})
	engine.SetAtomicWrite(func(path string, f *os.File, b []byte) (int, error) {
		if full {
			return 0, syscall.ENOSPC
		}
		return f.Write(b)
	})
	defer engine.SetJSONLWrite(nil)
	defer engine.SetAtomicWrite(nil)
	a := tinyTrainer(t, dir)
	a.Cfg.MaxSteps = 6
	err := a.Run(context.Background(), make(chan engine.Event, 100))
	if err == nil || !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("run with a full disk: %v", err)
	}
	for _, name := range []string{"metrics.jsonl", "trainer_state.json"} {
		if n := strings.Count(err.Error(), name); n != 1 {
			t.Errorf("%s named %d times in %q", name, n, err)
		}
	}
	st, rerr := d.ReadStatus()
	if rerr != nil || st.State != "failed" {
		js, _ := os.ReadFile(d.Status())
		t.Errorf("status.json after a full disk: %s (%v), want state failed", js, rerr)
	}
}

func metricsLines(path string) (int, error) {
	b, err := os.ReadFile(path)
	return bytes.Count(b, []byte("\n")), err
}

// A run that fails says in its DoneEvent whether its folder holds a
// checkpoint: without one (here a full disk refuses the first
// status.json) whet train -c starts it over from step 0, so the summary
// must not offer to resume it; a failure after a checkpoint is resumed.
func TestFailedRunSaysWhetherItHasACheckpoint(t *testing.T) {
	doneOf := func(cfg engine.RunConfig) engine.DoneEvent {
		t.Helper()
		events, _, err := engine.Start(context.Background(), withDefaults(t, cfg))
		if err != nil {
			t.Fatal(err)
		}
		var done engine.DoneEvent
		for ev := range events {
			if d, ok := ev.(engine.DoneEvent); ok {
				done = d
			}
		}
		return done
	}
	runs := t.TempDir()
	engine.SetAtomicWrite(func(path string, f *os.File, b []byte) (int, error) {
		if filepath.Base(path) == "status.json" {
			return 0, syscall.ENOSPC
		}
		return f.Write(b)
	})
	d := doneOf(smallRun(runs, "first-status"))
	engine.SetAtomicWrite(nil)
	if !errors.Is(d.Err, syscall.ENOSPC) || d.Checkpointed {
		t.Errorf("run refused its first status.json: %+v, want an error and no checkpoint", d)
	}
	if engine.RunDir(filepath.Join(runs, "first-status")).HasCheckpoint() {
		t.Error("the run folder holds a checkpoint")
	}

	writes := 0
	engine.SetJSONLWrite(func(path string, f *os.File, b []byte) (int, error) {
		if filepath.Base(path) == "metrics.jsonl" {
			if writes++; writes >= 3 {
				return 0, syscall.ENOSPC
			}
		}
		return f.Write(b)
	})
	defer engine.SetJSONLWrite(nil)
	d = doneOf(smallRun(runs, "later"))
	if d.Err == nil || !d.Checkpointed || !engine.RunDir(filepath.Join(runs, "later")).HasCheckpoint() {
		t.Errorf("run whose metrics failed after its first steps: %+v, want an error and a checkpoint", d)
	}
}

// A full disk that refuses a run's first status.json left its folder
// without one, and whet runs (worker.Read), the runs page and whet attach
// listed it as "unknown" while the reason went only to the terminal. The
// process is gone (its lock is free): it is listed as failed, saying that
// it ended before its first status.json, where its error went and that
// whet train -c starts it over.
func TestFullDiskBeforeTheFirstStatusListsTheRunFailed(t *testing.T) {
	runs := t.TempDir()
	engine.SetAtomicWrite(func(path string, f *os.File, b []byte) (int, error) {
		if filepath.Base(path) == "status.json" {
			return 0, syscall.ENOSPC
		}
		return f.Write(b)
	})
	events, _, err := engine.Start(context.Background(), withDefaults(t, smallRun(runs, "early")))
	if err != nil {
		engine.SetAtomicWrite(nil)
		t.Fatal(err)
	}
	var done engine.DoneEvent
	for ev := range events {
		if d, ok := ev.(engine.DoneEvent); ok {
			done = d
		}
	}
	engine.SetAtomicWrite(nil)
	if !errors.Is(done.Err, syscall.ENOSPC) {
		t.Fatalf("run with a full disk: %+v", done)
	}
	rd := engine.RunDir(filepath.Join(runs, "early"))
	if _, err := os.Stat(rd.Status()); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("status.json: %v, want none", err)
	}
	r, isRun, warnings := worker.Read(rd, time.Now())
	f := r.Failure()
	if !isRun || len(warnings) > 0 || r.State != "failed" || !r.NoStatus || !strings.Contains(f, "it ended before writing its first status.json") ||
		!strings.Contains(f, "no worker log") || !strings.Contains(f, "whet train -c "+rd.Config()+" starts it over") {
		t.Errorf("listed as %+v (%v, %v), failure %q", r, isRun, warnings, f)
	}
	replay, _, _, err := worker.Attach(rd)
	if err != nil {
		t.Fatal(err)
	}
	var end engine.DoneEvent
	for ev := range replay {
		if d, ok := ev.(engine.DoneEvent); ok {
			end = d
		}
	}
	if end.Err == nil || !strings.Contains(end.Err.Error(), "it ended before writing its first status.json") || end.Checkpointed {
		t.Errorf("whet attach ends it with %+v", end)
	}
}
