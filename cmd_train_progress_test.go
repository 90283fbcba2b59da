package main

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/creack/pty"

	"whet/datasets"
)

// longReads makes every data read of whet train take longer than
// dataProgressAfter (each reading of the clock is an hour later), for the
// test's duration.
func longReads(t *testing.T) {
	t.Helper()
	now := time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)
	dataProgressNow = func() time.Time { now = now.Add(time.Hour); return now }
	t.Cleanup(func() { dataProgressNow = time.Now })
}

// The progress line: nothing in the read's first second, then one line
// redrawn in place with the stage's percentage and counts, drawn again
// only when it changes, and erased at the end.
func TestDataProgressLine(t *testing.T) {
	start := time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)
	now := start
	var b bytes.Buffer
	p := &dataProgress{w: &b, name: "data.jsonl", width: 80, start: start, now: func() time.Time { return now }}
	p.report(datasets.Progress{Stage: datasets.StageReading, Bytes: 1 << 20, TotalBytes: 36 << 20})
	if b.Len() != 0 {
		t.Fatalf("a read shorter than %v printed %q", dataProgressAfter, b.String())
	}
	now = start.Add(dataProgressAfter)
	p.report(datasets.Progress{Stage: datasets.StageReading, Bytes: 9 << 20, TotalBytes: 36 << 20})
	p.report(datasets.Progress{Stage: datasets.StageTokenizing, Rows: 45_000, TotalRows: 100_000})
	p.report(datasets.Progress{Stage: datasets.StageTokenizing, Rows: 45_000, TotalRows: 100_000})
	p.end()
	want := "\r\x1b[Kreading data.jsonl: 25% (9.00 MiB of 36.0 MiB read)" +
		"\r\x1b[Kreading data.jsonl: 45% (45.0k of 100k rows tokenized)" + "\r\x1b[K"
	if b.String() != want {
		t.Errorf("progress output\n%q\nwant\n%q", b.String(), want)
	}
	// A narrow terminal: the line is cut one column short of its width.
	b.Reset()
	p = &dataProgress{w: &b, name: "a-very-long-name-for-a-data-file.jsonl", width: 40, start: start, now: func() time.Time { return now }}
	p.report(datasets.Progress{Stage: datasets.StageTokenizing, Rows: 45_000, TotalRows: 100_000})
	if line := strings.TrimPrefix(b.String(), "\r\x1b[K"); len([]rune(line)) != 39 || !strings.HasSuffix(line, "…") {
		t.Errorf("on 40 columns the line is %q, want 39 columns ending in …", line)
	}
}

// bigChatFile writes rows chat rows (tiny-chat.jsonl's, repeated) to a
// file in dir.
func bigChatFile(t *testing.T, dir string, rows int) string {
	t.Helper()
	body, err := os.ReadFile("testdata/datasets/tiny-chat.jsonl")
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.SplitAfter(strings.TrimRight(string(body), "\n")+"\n", "\n")
	lines = lines[:len(lines)-1] // SplitAfter's empty tail
	var b bytes.Buffer
	for i := 0; i < rows; i++ {
		b.WriteString(lines[i%len(lines)])
	}
	path := filepath.Join(dir, "big-chat.jsonl")
	if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func trainRunFile(t *testing.T, dir, data string, maxSteps int) string {
	t.Helper()
	abs := func(p string) string { a, _ := filepath.Abs(p); return a }
	run := fmt.Sprintf(`name: reading
model: %s
method: lora
backend: cpu
runs_dir: %s
lora: {r: 4, alpha: 8}
data: {path: %s, max_length: 64, packing: true, seed: 1}
train: {max_steps: %d, micro_batch: 1, lr: 0.001, save_every: 0, sample_every: 0, seed: 1}
`, abs("testdata/tiny-llama"), filepath.Join(dir, "runs"), data, maxSteps)
	path := filepath.Join(dir, "run.yaml")
	if err := os.WriteFile(path, []byte(run), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// Ctrl-C while whet train reads a large dataset (on a terminal, which
// shows the read's progress) stops the read at once: whet exits 130,
// saying that the run stopped while reading, before any step, with
// nothing to resume; the progress line is erased, and no run folder is
// left. Before, the read ran to its end (seconds) whatever the signal.
func TestTrainSIGINTWhileReadingData(t *testing.T) {
	ptmx, tty, err := pty.Open()
	if err != nil {
		t.Skipf("no pty: %v", err)
	}
	defer ptmx.Close()
	defer tty.Close()
	if err := pty.Setsize(tty, &pty.Winsize{Cols: 100, Rows: 24}); err != nil {
		t.Fatal(err)
	}
	longReads(t)
	dir := t.TempDir()
	// 50,000 rows: seconds to read and tokenize, so the whole read is far
	// longer than the signal takes to arrive.
	cfgPath := trainRunFile(t, dir, bigChatFile(t, dir, 50_000), 2)
	screen := &signalWriter{trigger: "\r\x1b[Kreading big-chat.jsonl: ", sig: syscall.SIGINT}
	copied := make(chan struct{})
	go func() { io.Copy(screen, ptmx); close(copied) }()
	var stdout bytes.Buffer
	code := runMain([]string{"train", "-c", cfgPath}, strings.NewReader(""), &stdout, tty)
	tty.Close() // the copy ends once the terminal's last bytes are read
	<-copied
	screen.mu.Lock()
	out := strings.ReplaceAll(screen.buf.String(), "\r\n", "\n") // the pty's newlines
	sent := screen.sent
	screen.mu.Unlock()
	if !sent {
		t.Fatalf("no progress line on the terminal:\n%q", out)
	}
	if code != 130 {
		t.Fatalf("exit status %d, want 130\nterminal:\n%q\nstdout:\n%s", code, out, stdout.String())
	}
	want := "stopped by SIGINT (Ctrl-C) while reading the data, before the first step (exit status 130); nothing was trained: start it again with whet train -c " + cfgPath
	if !strings.Contains(out, want) {
		t.Errorf("the terminal does not say %q:\n%q", want, out)
	}
	// Erased before the error, and stopped well before the read's end.
	if i, j := strings.LastIndex(out, "reading big-chat.jsonl: "), strings.LastIndex(out, "\r\x1b[K"); j < i {
		t.Errorf("the progress line was left on screen:\n%q", out)
	}
	if strings.Contains(out, "100%") {
		t.Errorf("the read went on to its end after Ctrl-C:\n%q", out)
	}
	if strings.Contains(stdout.String(), "step ") {
		t.Errorf("training began after Ctrl-C:\n%s", stdout.String())
	}
	if entries, _ := os.ReadDir(filepath.Join(dir, "runs")); len(entries) > 0 {
		t.Errorf("a run folder was left: %v", entries[0].Name())
	}
}

// On anything but a terminal (a log file, a pipe, CI) whet train prints
// nothing of the read's progress, however long the read takes: its
// stderr is what it was.
func TestTrainDataProgressOnlyOnATerminal(t *testing.T) {
	longReads(t)
	dir := t.TempDir()
	cfgPath := trainRunFile(t, dir, bigChatFile(t, dir, 2_000), 1)
	var stdout, stderr bytes.Buffer
	if code := runMain([]string{"train", "-c", cfgPath}, strings.NewReader(""), &stdout, &stderr); code != 0 {
		t.Fatalf("exit status %d\nstderr:\n%s\nstdout:\n%s", code, stderr.String(), stdout.String())
	}
	if stderr.Len() != 0 {
		t.Errorf("stderr of a run that is not on a terminal: %q, want nothing", stderr.String())
	}
	if strings.Contains(stdout.String(), "reading ") || strings.Contains(stdout.String(), "\r") {
		t.Errorf("progress on stdout:\n%q", stdout.String())
	}
	if !strings.Contains(stdout.String(), "data: 2000 rows") {
		t.Errorf("the run's data line is missing:\n%s", stdout.String())
	}
}
