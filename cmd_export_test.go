package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

func runExportCLI(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = runMain(append([]string{"export"}, args...), strings.NewReader(""), &out, &errb)
	return code, out.String(), errb.String()
}

// copyTree copies a folder of folders (the committed chat run).
func copyTree(t *testing.T, src, dst string) {
	t.Helper()
	err := filepath.WalkDir(src, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		if d.IsDir() {
			return os.MkdirAll(filepath.Join(dst, rel), 0o755)
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dst, rel), data, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestExportCommandWritesGGUFAndMerged(t *testing.T) {
	run := filepath.Join(t.TempDir(), "chat-run")
	copyTree(t, "testdata/export/chat-run", run)

	code, out, errs := runExportCLI(t, "--run", run, "--format", "gguf", "--quant", "q8_0")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	dir := filepath.Join(run, "export", "gguf-q8_0")
	for _, want := range []string{"[1/", "token_embd.weight", "Modelfile", "exported gguf to " + dir} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	for _, f := range []string{"model.gguf", "Modelfile"} {
		if st, err := os.Stat(filepath.Join(dir, f)); err != nil || st.Size() == 0 {
			t.Errorf("%s: %v", f, err)
		}
	}

	out2 := filepath.Join(t.TempDir(), "merged")
	if code, _, errs := runExportCLI(t, "--run", run, "--format", "merged", "--quant", "f16", "--out", out2); code != 0 {
		t.Fatalf("merged: exit %d: %s", code, errs)
	}
	if _, err := os.Stat(filepath.Join(out2, "model.safetensors")); err != nil {
		t.Error(err)
	}
}

func TestExportCommandErrors(t *testing.T) {
	run := filepath.Join(t.TempDir(), "chat-run")
	copyTree(t, "testdata/export/chat-run", run)
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--format", "gguf"}, "--run is required: whet export --run runs/NAME --format gguf"},
		{[]string{"--run", run}, "--format is required: whet export --run " + run + " --format peft|merged|gguf"},
		{[]string{"--run", run, "--format", "onnx"}, `unknown format "onnx"`},
		// The names people try for a format are answered with the one to use.
		{[]string{"--run", run, "--format", "ollama"}, `unknown format "ollama": use --format gguf: it writes the GGUF and an Ollama Modelfile`},
		{[]string{"--run", run, "--format", "lora"}, `unknown format "lora": use --format peft`},
		{[]string{"--run", run, "--format", "gguf", "--quant", "q2_k"}, "--quant q2_k is not a GGUF type"},
		{[]string{"--run", run, "--format", "merged", "--quant", "q8_0"}, "not available for merged"},
		{[]string{"--run", run, "--format", "peft"}, "full fine-tuning run"},
		// --quant was ignored without a word for a PEFT export.
		{[]string{"--run", run, "--format", "peft", "--quant", "q8_0"}, "--quant q8_0: a PEFT export writes the adapter as trained, unquantised"},
		{[]string{"--run", t.TempDir(), "--format", "gguf"}, "not a run directory"},
		{[]string{"--run", run, "--format", "gguf", "--template", "nope"}, `unknown chat template "nope"`},
		{[]string{"--run", run, "--format", "gguf", "--qlora-base", "nf8"}, "--qlora-base nf8 is not a merge base"},
		{[]string{"--run", run, "--format", "gguf", "--qlora-base", "full"}, "is a full run, not a QLoRA one"},
	} {
		code, _, errs := runExportCLI(t, c.args...)
		if code == 0 || !strings.Contains(errs, c.want) {
			t.Errorf("%v: exit %d, stderr %q; want an error containing %q", c.args, code, errs, c.want)
		}
	}
}

// exportOutput collects output from several goroutines and closes seen
// once the output contains a given text.
type exportOutput struct {
	mu   sync.Mutex
	buf  bytes.Buffer
	want string
	seen chan struct{}
	once sync.Once
	// onWrite runs (outside the lock) after each write.
	onWrite func(text string)
}

func newExportOutput(want string) *exportOutput {
	return &exportOutput{want: want, seen: make(chan struct{})}
}

func (w *exportOutput) Write(p []byte) (int, error) {
	w.mu.Lock()
	w.buf.Write(p)
	text := w.buf.String()
	w.mu.Unlock()
	if w.want != "" && strings.Contains(text, w.want) {
		w.once.Do(func() { close(w.seen) })
	}
	if w.onWrite != nil {
		w.onWrite(text)
	}
	return len(p), nil
}

func (w *exportOutput) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.String()
}

// Ctrl-C during an export stops it at the next write and removes the
// half-written GGUF's temporary file, and the output folder the export
// made, instead of killing the process with the file left behind. The
// interrupt is sent once the first tensor is written; the export goes on
// only after whet has said it is stopping.
func TestExportCommandInterrupt(t *testing.T) {
	run := filepath.Join(t.TempDir(), "chat-run")
	copyTree(t, "testdata/export/chat-run", run)
	out := filepath.Join(t.TempDir(), "gguf")
	stderr := newExportOutput("stopping")
	stdout := newExportOutput("")
	var sent sync.Once
	stdout.onWrite = func(text string) {
		if !strings.Contains(text, "[1/") {
			return
		}
		sent.Do(func() {
			// Still mid-file: the GGUF's temporary file is there.
			if tmp, _ := filepath.Glob(filepath.Join(out, ".model.gguf.tmp*")); len(tmp) != 1 {
				t.Errorf("mid-export temporary files %q, want one", tmp)
			}
			if err := syscall.Kill(os.Getpid(), syscall.SIGINT); err != nil {
				t.Errorf("kill: %v", err)
				return
			}
			<-stderr.seen
		})
	}
	code := runMain([]string{"export", "--run", run, "--format", "gguf", "--quant", "f16", "--out", out}, strings.NewReader(""), stdout, stderr)
	if code == 0 {
		t.Fatalf("an interrupted export succeeded:\n%s", stdout.String())
	}
	if !strings.Contains(stderr.String(), "cancelled") {
		t.Errorf("stderr should say the export was cancelled:\n%s", stderr.String())
	}
	if _, err := os.Stat(out); !os.IsNotExist(err) {
		entries, _ := os.ReadDir(out)
		t.Errorf("the interrupted export left its folder behind (%v): %v", err, entries)
	}
}

// A second Ctrl-C ends whet export at once, for when the first cannot
// stop it soon (loading a large model cannot be cut short). The export
// runs in a child process (this test binary, re-run as the helper below)
// that interrupts itself twice: once mid-export, and again once whet has
// said it is stopping; the child must die of the second signal.
func TestExportCommandSecondInterruptQuits(t *testing.T) {
	if os.Getenv("WHET_EXPORT_TWICE") != "" {
		return // the helper is TestExportCommandInterruptHelper
	}
	run := filepath.Join(t.TempDir(), "chat-run")
	copyTree(t, "testdata/export/chat-run", run)
	// Without the fix the child would wait forever for its death: the
	// deadline turns that into a failure.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestExportCommandInterruptHelper$")
	cmd.Env = append(os.Environ(), "WHET_EXPORT_TWICE="+run, "WHET_EXPORT_OUT="+filepath.Join(t.TempDir(), "out"))
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	if !errors.As(err, &exit) {
		t.Fatalf("the child should have been killed by the second SIGINT, got %v:\n%s", err, out)
	}
	ws, ok := exit.Sys().(syscall.WaitStatus)
	if !ok || !ws.Signaled() || ws.Signal() != syscall.SIGINT || ctx.Err() != nil {
		t.Fatalf("the child ended with %v, want death by SIGINT:\n%s", exit, out)
	}
}

func TestExportCommandInterruptHelper(t *testing.T) {
	run := os.Getenv("WHET_EXPORT_TWICE")
	if run == "" {
		t.Skip("run by TestExportCommandSecondInterruptQuits")
	}
	stderr := newExportOutput("stopping")
	stdout := newExportOutput("")
	var sent sync.Once
	stdout.onWrite = func(text string) {
		if !strings.Contains(text, "[1/") {
			return
		}
		sent.Do(func() {
			syscall.Kill(os.Getpid(), syscall.SIGINT)
			<-stderr.seen
			syscall.Kill(os.Getpid(), syscall.SIGINT)
			select {} // the second signal ends the process
		})
	}
	runMain([]string{"export", "--run", run, "--format", "gguf", "--quant", "f16", "--out", os.Getenv("WHET_EXPORT_OUT")}, strings.NewReader(""), stdout, stderr)
	t.Fatal("whet export returned after a second SIGINT")
}
