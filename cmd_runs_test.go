package main

import (
	"bytes"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"whet/engine"
	"whet/engine/worker"
)

// writeRun makes a run folder with the given files (name → content).
func writeRun(t *testing.T, dir, name string, files map[string]string) {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.MkdirAll(p, 0o755); err != nil {
		t.Fatal(err)
	}
	for f, content := range files {
		if err := os.MkdirAll(filepath.Dir(filepath.Join(p, f)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(p, f), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func TestRunsListsRunDirectories(t *testing.T) {
	dir := t.TempDir()
	writeRun(t, dir, "persona-lora", map[string]string{
		"run.yaml":    "name: persona-lora\nmodel: whet-demo-8m\nmethod: lora\n",
		"status.json": `{"state":"done","step":120,"total_steps":120,"last_loss":0.91}`,
		"metrics.jsonl": `{"step":119,"epoch":2.9,"loss":0.95,"lr":1e-5}
{"step":120,"epoch":3,"loss":0.9123,"lr":0}
{"step":120,"epoch":3,"eval_loss":1.02}
`,
	})
	writeRun(t, dir, "big-full", map[string]string{
		"run.yaml":      "name: big-full\nmodel: /models/qwen\nmethod: full\n",
		"status.json":   `{"state":"stopped","step":40,"total_steps":500}`,
		"metrics.jsonl": "{\"step\":40,\"loss\":1.5}\n{\"step\":41,\"lo", // torn last line
	})
	writeRun(t, dir, "broken", map[string]string{"status.json": `{"state":`})
	if err := os.MkdirAll(filepath.Join(dir, "not-a-run"), 0o755); err != nil {
		t.Fatal(err)
	}

	var out, errOut bytes.Buffer
	if err := runRuns([]string{"--dir", dir}, nil, &out, &errOut); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimRight(out.String(), "\n"), "\n")
	if len(lines) != 5 {
		t.Fatalf("want a header, 3 runs and the unreadable one's note, got:\n%s", out.String())
	}
	want := [][]string{
		{"NAME", "STATUS", "STEPS", "LAST", "METHOD", "MODEL"},
		{"big-full", "stopped", "40/500", "loss", "1.5000", "full", "/models/qwen"},
		{"broken", "unreadable", "0", "–", "–", "–"},
		{"persona-lora", "done", "120/120", "loss", "0.9123", "lora", "whet-demo-8m"},
	}
	for i, w := range want {
		if got := strings.Fields(lines[i]); fmt.Sprint(got) != fmt.Sprint(w) {
			t.Errorf("line %d = %q, want fields %v", i, lines[i], w)
		}
	}
	// Columns are aligned: STATUS starts at the same column on every line.
	col := strings.Index(lines[0], "STATUS")
	for _, l := range lines[1:4] {
		if l[col-1] != ' ' || l[col] == ' ' {
			t.Errorf("status column not aligned at %d: %q", col, l)
		}
	}
	// The listing says why the run's state is unknown (once: not again
	// on stderr) and what whet train -c does with it.
	note := "broken unreadable: " + filepath.Join(dir, "broken", "status.json") + ": unexpected end of JSON input; how it ended is not known; no checkpoint: whet train -c " +
		filepath.Join(dir, "broken", "run.yaml") + " starts it over"
	if lines[4] != note {
		t.Errorf("the unreadable run's note:\n%s\nwant\n%s", lines[4], note)
	}
	if errOut.Len() != 0 {
		t.Errorf("stderr: %q, want nothing (the listing names the status.json)", errOut.String())
	}
}

func TestRunsEmptyOrMissingDir(t *testing.T) {
	var out bytes.Buffer
	missing := filepath.Join(t.TempDir(), "nope")
	if err := runRuns([]string{"--dir", missing}, nil, &out, &out); err != nil {
		t.Fatal(err)
	}
	// A missing folder is named absolute, and how the default is found.
	if want := "no runs: there is no folder " + missing + " (runs go to ./runs of the folder whet starts in; --dir names another)\n"; out.String() != want {
		t.Errorf("got %q, want %q", out.String(), want)
	}
	out.Reset()
	t.Chdir(t.TempDir())
	if err := runRuns(nil, nil, &out, &out); err != nil {
		t.Fatal(err)
	}
	if wd, _ := os.Getwd(); !strings.Contains(out.String(), "no folder "+filepath.Join(wd, "runs")+" ") {
		t.Errorf("the default runs folder missing: %q", out.String())
	}
	empty := t.TempDir()
	out.Reset()
	if err := runRuns([]string{"--dir", empty}, nil, &out, &out); err != nil || !strings.Contains(out.String(), "no runs in "+empty) {
		t.Errorf("an empty folder: %q, %v", out.String(), err)
	}
	if err := runRuns([]string{"extra"}, nil, &out, &out); err == nil {
		t.Error("a stray argument should be an error")
	}
}

// A long metrics file is read from its end only; the last loss is still
// found.
func TestRunsReadsTailOfLongMetrics(t *testing.T) {
	dir := t.TempDir()
	var b strings.Builder
	for i := 1; i <= 5000; i++ {
		fmt.Fprintf(&b, "{\"step\":%d,\"epoch\":1,\"loss\":%.4f,\"lr\":0.0001,\"grad_norm\":0.5}\n", i, 3-float64(i)/5000)
	}
	writeRun(t, dir, "long", map[string]string{"metrics.jsonl": b.String()})
	if len(b.String()) <= worker.MetricsTail {
		t.Fatalf("fixture too small (%d bytes) to exercise the tail read", len(b.String()))
	}
	runs, _, err := listRuns(dir)
	if err != nil || len(runs) != 1 {
		t.Fatalf("listRuns = %v, %v", runs, err)
	}
	if r := runs[0]; r.step != 5000 || r.lastValue != 2 || r.state != "unknown" {
		t.Errorf("got step %d loss %v state %q, want 5000, 2, unknown", r.step, r.lastValue, r.state)
	}
}

func TestRunsFlagsSilentRunningRun(t *testing.T) {
	dir := t.TempDir()
	writeRun(t, dir, "crashed", map[string]string{
		"status.json":   `{"state":"running","step":7,"total_steps":100}`,
		"metrics.jsonl": "{\"step\":7,\"loss\":2.5}\n",
	})
	writeRun(t, dir, "live", map[string]string{
		"status.json":   `{"state":"running","step":3,"total_steps":100}`,
		"metrics.jsonl": "{\"step\":3,\"loss\":2.9}\n",
	})
	old := time.Now().Add(-2 * time.Hour)
	if err := os.Chtimes(filepath.Join(dir, "crashed", "metrics.jsonl"), old, old); err != nil {
		t.Fatal(err)
	}
	runs, _, err := listRuns(dir)
	if err != nil {
		t.Fatal(err)
	}
	if runs[0].state != "running? (no step for 2h00m)" {
		t.Errorf("a run silent for 2h is shown as %q", runs[0].state)
	}
	if runs[1].state != "running" {
		t.Errorf("a live run is shown as %q", runs[1].state)
	}
}

// A run whose loss went NaN has null in its metrics and status: it is
// shown as NaN, not skipped for an older loss.
func TestRunsShowsNullLossAsNaN(t *testing.T) {
	dir := t.TempDir()
	writeRun(t, dir, "diverged", map[string]string{
		"status.json":   `{"state":"failed","step":2,"total_steps":10,"last_loss":null}`,
		"metrics.jsonl": "{\"step\":1,\"loss\":2.5}\n{\"step\":2,\"loss\":null,\"grad_norm\":null}\n",
	})
	runs, warnings, err := listRuns(dir)
	if err != nil || len(warnings) > 0 || len(runs) != 1 {
		t.Fatalf("listRuns = %v, %v, %v", runs, warnings, err)
	}
	if r := runs[0]; r.step != 2 || !r.hasLast || !math.IsNaN(r.lastValue) || r.state != "failed" {
		t.Errorf("got step %d loss %v (has %v) state %q, want 2, NaN, failed", r.step, r.lastValue, r.hasLast, r.state)
	}
}

// A run that says "running" while no process holds its lock was killed:
// it is shown as crashed, with what resumes it; one whose lock is held shows the pid.
func TestRunsTellsCrashedFromRunning(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("run folder locks need a Unix system")
	}
	dir := t.TempDir()
	for _, name := range []string{"killed", "live"} {
		writeRun(t, dir, name, map[string]string{
			"status.json":   `{"state":"running","step":3,"total_steps":100}`,
			"metrics.jsonl": "{\"step\":3,\"loss\":2.9}\n",
			"lock":          "999999\n", // left by a process that is gone
		})
	}
	l, err := engine.RunDir(filepath.Join(dir, "live")).Acquire()
	if err != nil {
		t.Fatal(err)
	}
	defer l.Release()
	runs, warnings, err := listRuns(dir)
	if err != nil || len(warnings) > 0 || len(runs) != 2 {
		t.Fatalf("listRuns = %v, %v, %v", runs, warnings, err)
	}
	if runs[0].name != "killed" || runs[0].state != "crashed" || !strings.Contains(runs[0].crash, "starts it over") {
		t.Errorf("a running run nobody holds: %+v", runs[0])
	}
	if want := fmt.Sprintf("running (pid %d)", os.Getpid()); runs[1].state != want {
		t.Errorf("a held run: state %q, want %q", runs[1].state, want)
	}
}

// whet runs and whet attach take the runs folder as --runs too, the name
// the studio (whet --runs DIR) and whet serve give it, besides --dir.
func TestRunsAndAttachTakeRunsFlag(t *testing.T) {
	dir := t.TempDir()
	writeRun(t, dir, "persona-lora", map[string]string{
		"run.yaml":    "name: persona-lora\nmodel: whet-demo-8m\nmethod: lora\n",
		"status.json": `{"state":"done","step":120,"total_steps":120,"last_loss":0.91}`,
	})
	var out, errOut bytes.Buffer
	if err := runRuns([]string{"--runs", dir}, nil, &out, &errOut); err != nil || !strings.Contains(out.String(), "persona-lora") {
		t.Fatalf("whet runs --runs %s: %v, %q %q", dir, err, out.String(), errOut.String())
	}
	out.Reset()
	err := runAttach([]string{"--runs", dir, "nosuch"}, nil, &out, &out)
	if err == nil || !strings.Contains(err.Error(), "no run nosuch in "+dir) {
		t.Fatalf("whet attach --runs %s nosuch: %v, want the run looked for in %s", dir, err, dir)
	}
}

// A run whose process ended before its first status.json (a full disk
// refused it) is listed as failed, with the reason its worker's log holds,
// not as "unknown" with the reason only in worker.log.
func TestRunsListsARunThatEndedBeforeItsStatusAsFailed(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("run folder locks need a Unix system")
	}
	dir := t.TempDir()
	writeRun(t, dir, "full", map[string]string{
		"run.yaml":      "name: full\nmodel: m\nmethod: lora\n",
		"metrics.jsonl": "",
		"lock":          "999999\n", // its process is gone
		"worker.log":    worker.SessionMarker + "2026-12-07T20:20:00Z\nwhet train: write runs/full/status.json: no space left on device\n",
	})
	var out, errOut bytes.Buffer
	if err := runRuns([]string{"--dir", dir}, nil, &out, &errOut); err != nil {
		t.Fatal(err)
	}
	want := "full failed: it ended before writing its first status.json; last words in " + filepath.Join(dir, "full", "worker.log") +
		": whet train: write runs/full/status.json: no space left on device; no checkpoint: whet train -c " + filepath.Join(dir, "full", "run.yaml") + " starts it over\n"
	if s := out.String(); !strings.Contains(s, "full  failed") || !strings.Contains(s, want) || strings.Contains(s, "unknown") {
		t.Errorf("whet runs:\n%s\nwant a failed row and %q", s, want)
	}
}

// A GRPO run's loss is near 0 by construction: whet runs lists its mean
// reward, named, from the run folder the trainer wrote; a LoRA run beside
// it still lists its loss.
func TestRunsListsGRPORewardAndLoRALoss(t *testing.T) {
	dir := t.TempDir()
	abs := func(p string) string { a, _ := filepath.Abs(p); return a }
	prompts := filepath.Join(t.TempDir(), "prompts.jsonl")
	var rows strings.Builder
	for i := 0; i < 4; i++ {
		fmt.Fprintf(&rows, `{"prompt": "What is %d plus %d?", "answer": %d}`+"\n", i, i, 2*i)
	}
	if err := os.WriteFile(prompts, []byte(rows.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	grpo := fmt.Sprintf(`model: %s
method: grpo
backend: cpu
runs_dir: %s
lora: {r: 4, alpha: 8}
data: {path: %s, max_length: 32, seed: 1}
train: {max_steps: 2, micro_batch: 2, grad_accum: 1, lr: 0.01, schedule: constant, seed: 1}
grpo: {num_generations: 2, max_completion_length: 6, rewards: [{type: length, target_length: 3}]}
`, abs("testdata/tiny-qwen2"), dir, prompts)
	lora := fmt.Sprintf(`model: %s
method: lora
backend: cpu
runs_dir: %s
data: {path: %s, max_length: 64, seed: 1}
train: {max_steps: 1, micro_batch: 1, grad_accum: 1, lr: 0.001, schedule: constant, seed: 1}
`, abs("testdata/tiny-qwen2"), dir, abs("testdata/datasets/tiny-chat.jsonl"))
	for name, run := range map[string]string{"g": grpo, "l": lora} {
		cfgPath := filepath.Join(t.TempDir(), "run.yaml")
		if err := os.WriteFile(cfgPath, []byte(run), 0o644); err != nil {
			t.Fatal(err)
		}
		if code, out, errs := runCLI(t, "train", "-c", cfgPath, "--name", name); code != 0 {
			t.Fatalf("train %s: exit %d: %s%s", name, code, out, errs)
		}
	}
	last := func(name string) engine.MetricLine {
		lines, _, err := engine.RunDir(filepath.Join(dir, name)).ReadMetrics()
		if err != nil || len(lines) == 0 {
			t.Fatalf("%s metrics: %d lines, %v", name, len(lines), err)
		}
		return lines[len(lines)-1]
	}
	g, l := last("g"), last("l")
	reward, ok := g.Values["reward"]
	if !ok {
		t.Fatalf("the GRPO run's last metrics line has no reward: %v", g.Values)
	}
	if loss, _ := g.Loss(); reward == loss {
		t.Fatalf("the fixture cannot tell reward from loss: both %v", loss)
	}
	loss, _ := l.Loss()
	var out, errOut bytes.Buffer
	if err := runRuns([]string{"--dir", dir}, nil, &out, &errOut); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimRight(out.String(), "\n"), "\n")
	// The run files hold the model's absolute folder; the table shows it
	// relative to the working folder it lies in, as the studio does.
	if b, err := os.ReadFile(filepath.Join(dir, "g", "run.yaml")); err != nil || !strings.Contains(string(b), abs("testdata/tiny-qwen2")) {
		t.Fatalf("the fixture's run file does not hold the model's absolute folder")
	}
	want := [][]string{
		{"NAME", "STATUS", "STEPS", "LAST", "METHOD", "MODEL"},
		{"g", "done", "2/2", "reward", fmt.Sprintf("%.3g", reward), "grpo", "testdata/tiny-qwen2"},
		{"l", "done", "1/1", "loss", fmt.Sprintf("%.4f", loss), "lora", "testdata/tiny-qwen2"},
	}
	if len(lines) != len(want) {
		t.Fatalf("want a header and 2 runs, got:\n%s%s", out.String(), errOut.String())
	}
	for i, w := range want {
		if got := strings.Fields(lines[i]); fmt.Sprint(got) != fmt.Sprint(w) {
			t.Errorf("line %d = %q, want fields %v", i, lines[i], w)
		}
	}
}

// status.json records only the loss: a GRPO run without metrics lines
// shows no value rather than its loss under the reward's name.
func TestRunsGRPOWithoutMetricsShowsNoReward(t *testing.T) {
	dir := t.TempDir()
	writeRun(t, dir, "g", map[string]string{
		"run.yaml":    "name: g\nmodel: m\nmethod: grpo\n",
		"status.json": `{"state":"stopped","step":3,"total_steps":10,"last_loss":0.0001}`,
	})
	runs, _, err := listRuns(dir)
	if err != nil || len(runs) != 1 {
		t.Fatalf("listRuns = %v, %v", runs, err)
	}
	if r := runs[0]; r.last != "–" || r.hasLast {
		t.Errorf("a GRPO run without metrics shows %q (has %v), want –", r.last, r.hasLast)
	}
}

// A run whose status.json a crash left empty, with a good checkpoint and a
// newer one whose trainer_state.json is torn: whet runs names the reason
// and the good checkpoint, which the resume falls back to.
func TestRunsUnreadableStatusNamesTheGoodCheckpoint(t *testing.T) {
	dir := t.TempDir()
	writeRun(t, dir, "empty", map[string]string{
		"run.yaml":      "name: empty\nmodel: whet-demo-8m\nmethod: lora\n",
		"status.json":   "",
		"metrics.jsonl": `{"step":60,"loss":1.25}` + "\n",
		"checkpoints/step-00000040/trainer_state.json": `{"step":40,"cursor":40,"seed":1,"opt_step":40}`,
		"checkpoints/step-00000060/trainer_state.json": `{"step":6`,
	})
	var out, errOut bytes.Buffer
	if err := runRuns([]string{"--dir", dir}, nil, &out, &errOut); err != nil {
		t.Fatal(err)
	}
	run := filepath.Join(dir, "empty")
	want := "empty unreadable: " + filepath.Join(run, "status.json") + " is empty; how it ended is not known; whet train -c " +
		filepath.Join(run, "run.yaml") + " resumes from " + filepath.Join(run, "checkpoints", "step-00000040") + " (step 40)\n"
	if !strings.HasSuffix(out.String(), want) || !strings.Contains(out.String(), "empty  unreadable  60") {
		t.Errorf("whet runs:\n%s\nwant it to end with\n%s", out.String(), want)
	}
}

// TestRunsNotesWrapAtTheTerminalWidth: a crashed or unreadable run's note
// (its files and the resume command, under a long runs path) is wrapped at
// spaces to a terminal's width, its further lines indented, and no word is
// lost or broken; a path longer than a line stays whole. Piped (width 0)
// each note is one line, as scripts read it.
func TestRunsNotesWrapAtTheTerminalWidth(t *testing.T) {
	long := "/home/someone/projects/fine-tunes/runs/persona"
	huge := "/" + strings.Repeat("very-long-folder/", 6) + "run.yaml"
	runs := []runSummary{
		{name: "persona", unreadable: long + "/status.json is empty; how it ended is not known; whet train -c " + long + "/run.yaml resumes from " + long + "/checkpoints/step-00000040 (step 40)"},
		{name: "short", crash: "no checkpoint: whet train -c runs/short/run.yaml starts it over"},
		{name: "deep", failure: "last words in " + huge + " say it ran out of memory"},
	}
	var piped bytes.Buffer
	if err := writeRunNotes(&piped, runs, 0); err != nil {
		t.Fatal(err)
	}
	if got := strings.Count(piped.String(), "\n"); got != len(runs) {
		t.Errorf("piped: %d lines, want one a note:\n%s", got, piped.String())
	}
	var tty bytes.Buffer
	if err := writeRunNotes(&tty, runs, 80); err != nil {
		t.Fatal(err)
	}
	if strings.Fields(tty.String()) == nil || strings.Join(strings.Fields(tty.String()), " ") != strings.Join(strings.Fields(piped.String()), " ") {
		t.Errorf("wrapped notes lost or changed words:\n%s\nwant the words of\n%s", tty.String(), piped.String())
	}
	lines := strings.Split(strings.TrimSuffix(tty.String(), "\n"), "\n")
	starts := 0
	for _, l := range lines {
		if len(l) > 80 && len(strings.Fields(l)) > 1 {
			t.Errorf("line of %d columns: %q", len(l), l)
		}
		if !strings.HasPrefix(l, runNoteIndent) {
			starts++
		}
	}
	if starts != len(runs) {
		t.Errorf("%d lines start a note, want %d (further lines indented):\n%s", starts, len(runs), tty.String())
	}
	if !strings.Contains(tty.String(), "\n"+runNoteIndent+huge+"\n") {
		t.Errorf("the path longer than a line is not kept whole on its own line:\n%s", tty.String())
	}
	if !strings.Contains(tty.String(), "short crashed: no checkpoint: whet train -c runs/short/run.yaml starts it over\n") {
		t.Errorf("a note that fits was changed:\n%s", tty.String())
	}
}
