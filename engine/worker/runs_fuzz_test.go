package worker

import (
	"bytes"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"whet/engine"
)

// FuzzRunFolder: a run folder whose status.json, metrics.jsonl and
// samples.jsonl hold anything (a crash's empty or torn files among them)
// is still listed by whet runs and the studio's runs page, with what can
// be read, the problems named in warnings that name the file; and it
// still opens (replays) in a viewer.
func FuzzRunFolder(f *testing.F) {
	status := []byte(`{"state":"running","step":2,"total_steps":9,"last_loss":2.5}`)
	metrics := []byte("{\"step\":1,\"elapsed_s\":1,\"epoch\":0.1,\"grad_norm\":1,\"loss\":3,\"lr\":0.0002,\"tokens\":64,\"tokens_per_sec\":64}\n" +
		"{\"step\":1,\"eval_loss\":2.9}\n{\"step\":2,\"loss\":null}\n")
	samples := []byte("{\"step\":1,\"prompt\":\"p\",\"text\":\"t\"}\n{\"step\":2,\"prompt\":\"p\",\"text\":\"t\",\"rewards\":{\"reward\":1}}\n")
	f.Add(status, metrics, samples)
	f.Add([]byte{}, metrics, samples)                                      // status.json empty after a crash
	f.Add(status[:20], metrics[:len(metrics)-9], samples[:len(samples)-5]) // every file torn
	f.Add([]byte(`{"state":"done","step":9,"total_steps":9,"last_loss":1}`), []byte{}, []byte{})
	f.Add([]byte(`{"state":"failed","step":3,"total_steps":9,"last_loss":null}`), []byte("not json\n{\"step\":3,\"loss\":1}"), []byte("\x00\x00\x00"))
	f.Add([]byte("null"), []byte("{\"step\":1,\"loss\":\"x\"}\n"), []byte("{\"step\":\"x\"}\n"))
	f.Add([]byte(`{"state":"stopped","step":-4}`), bytes.Repeat([]byte{'{'}, 300), []byte("\n\n"))
	// One folder per fuzzing process, its files overwritten for each
	// input: a folder made and removed for each made the minimizer's
	// candidates too slow to get through.
	rd := engine.RunDir(f.TempDir())
	if err := os.WriteFile(rd.Config(), []byte("name: r\nmodel: m\nmethod: lora\n"), 0o644); err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, status, metrics, samples []byte) {
		for _, file := range []struct {
			path string
			data []byte
		}{{rd.Status(), status}, {rd.Metrics(), metrics}, {rd.Samples(), samples}} {
			if err := os.WriteFile(file.path, file.data, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		_, statusErr := rd.ReadStatus()
		lines, _, err := rd.ReadMetrics()
		if err != nil {
			t.Fatal(err)
		}

		r, isRun, warnings := Read(rd, time.Now())
		if !isRun || r.State == "" || r.Method != "lora" {
			t.Fatalf("status %q metrics %q: listed as %+v (a run: %v)", status, metrics, r, isRun)
		}
		for _, w := range warnings {
			if !strings.Contains(w, rd.Path()) {
				t.Errorf("a warning that names no file of the run: %q", w)
			}
		}
		if statusErr != nil && !strings.Contains(strings.Join(warnings, "\n"), rd.Status()) {
			t.Errorf("status %q is unreadable (%v) and no warning says so: %q", status, statusErr, warnings)
		}
		// The last training line's step and loss, as the loss curve reads
		// the file.
		var step int
		var loss float64
		hasLoss := false
		for _, l := range lines {
			if v, ok := l.Loss(); ok {
				step, loss, hasLoss = l.Step, v, true
			}
		}
		if hasLoss && (!r.HasLast || r.Step < step || !(r.Last == loss || math.IsNaN(loss) && math.IsNaN(r.Last))) {
			t.Errorf("metrics %q end at step %d loss %v; listed at step %d loss %v (%v)", metrics, step, loss, r.Step, r.Last, r.HasLast)
		}

		// A viewer opens it: the history, then the end.
		events, _, _, err := Attach(rd)
		if err != nil {
			t.Fatalf("status %q: %v", status, err)
		}
		var last engine.Event
		steps := 0
		for ev := range events {
			last = ev
			if _, ok := ev.(engine.StepEvent); ok {
				steps++
			}
		}
		if _, ok := last.(engine.DoneEvent); !ok {
			t.Errorf("the replay ends with %#v, not a DoneEvent", last)
		}
		want := 0
		for _, l := range lines {
			if _, ok := l.Event().(engine.StepEvent); ok {
				want++
			}
		}
		if steps != want {
			t.Errorf("replayed %d steps of %d", steps, want)
		}
	})
}

// An empty status.json (a crash while it was written) does not hide the
// run: whet runs lists it with the step and loss of its metrics and a
// warning that names the file, and the studio opens it, saying that how
// it ended is not known.
func TestRunWithEmptyStatusIsListedAndOpens(t *testing.T) {
	dir := t.TempDir()
	rd := engine.RunDir(filepath.Join(dir, "r"))
	os.MkdirAll(rd.Path(), 0o755)
	os.WriteFile(rd.Config(), []byte("name: r\nmodel: m\nmethod: lora\n"), 0o644)
	os.WriteFile(rd.Status(), nil, 0o644)
	os.WriteFile(rd.Metrics(), []byte("{\"step\":1,\"loss\":3}\n{\"step\":2,\"loss\":2.5}\n{\"step\":3,\"lo"), 0o644)
	runs, warnings, err := List(dir, time.Now())
	if err != nil || len(runs) != 1 {
		t.Fatalf("List = %+v, %v", runs, err)
	}
	if r := runs[0]; r.State != "unreadable" || r.StatusErr != rd.Status()+" is empty" || r.Step != 2 || !r.HasLast || r.Last != 2.5 {
		t.Errorf("listed as %+v", r)
	}
	if want := rd.Status() + " is empty"; len(warnings) != 1 || warnings[0] != want {
		t.Errorf("warnings %q, want %q", warnings, want)
	}
	events, _, warnings, err := Attach(rd)
	if err != nil {
		t.Fatal(err)
	}
	if want := rd.Status() + " is empty"; len(warnings) != 1 || warnings[0] != want {
		t.Errorf("attach warnings %q, want %q", warnings, want)
	}
	var done engine.DoneEvent
	n := 0
	for ev := range events {
		n++
		if d, ok := ev.(engine.DoneEvent); ok {
			done = d
		}
	}
	if n != 3 || done.Step != 2 || done.Err == nil || !strings.Contains(done.Err.Error(), "how it ended is not known ("+rd.Status()+" is empty); no checkpoint") {
		t.Errorf("%d events, done %+v", n, done)
	}
}

// LastMetric reads a tail that holds no newline (one long torn line
// after the last whole one) without failing: the bufio.Scanner it used
// said "token too long" and the run lost its step and loss.
func TestLastMetricLongTornLine(t *testing.T) {
	path := filepath.Join(t.TempDir(), "metrics.jsonl")
	js, _ := json.Marshal(engine.MetricLine{Step: 7, Values: map[string]float64{"loss": 1.5}})
	data := append(append(js, '\n'), bytes.Repeat([]byte("x"), MetricsTail)...)
	os.WriteFile(path, data, 0o644)
	if _, _, _, err := LastMetric(path, "loss"); err != nil {
		t.Fatalf("a long torn last line: %v", err)
	}
	// A whole line that fills the tail exactly is read.
	line := append(js[:len(js)-1:len(js)-1], strings.Repeat(" ", MetricsTail-len(js))+"}"...)
	if len(line) != MetricsTail {
		t.Fatalf("line of %d bytes", len(line))
	}
	os.WriteFile(path, line, 0o644)
	if step, loss, ok, err := LastMetric(path, "loss"); err != nil || !ok || step != 7 || loss != 1.5 {
		t.Fatalf("a line of MetricsTail bytes: step %d loss %v %v %v", step, loss, ok, err)
	}
}
