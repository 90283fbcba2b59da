package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
	"unicode/utf8"

	"whet/engine"
)

// signalWriter collects what whet train prints and sends this process
// sig (SIGINT if unset) once a line starting with trigger appears.
type signalWriter struct {
	mu      sync.Mutex
	buf     bytes.Buffer
	trigger string
	sig     syscall.Signal
	sent    bool
}

func (w *signalWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf.Write(p)
	if !w.sent && strings.Contains("\n"+w.buf.String(), "\n"+w.trigger) {
		w.sent = true
		sig := w.sig
		if sig == 0 {
			sig = syscall.SIGINT
		}
		syscall.Kill(os.Getpid(), sig)
	}
	return len(p), nil
}

// TestTrainSIGINTStopsWithCheckpoint runs `whet train` and sends the
// process a real SIGINT (or SIGTERM) after a step line, while the trainer
// is most likely generating its per-step sample (sample_every 1, a long
// sample): the run must end with a checkpoint, status "stopped" and the
// final "stopped at step N" line, never with "context canceled"; and
// whet must exit 130 (SIGINT) or 143 (SIGTERM), as a shell reports a
// process that signal ended, saying how to resume. (It exited 0, so
// `whet train -c run.yaml && whet export …` exported a half-trained run.)
func TestTrainSIGINTStopsWithCheckpoint(t *testing.T) {
	dir := t.TempDir()
	abs := func(p string) string { a, _ := filepath.Abs(p); return a }
	run := fmt.Sprintf(`name: sigint
model: %s
method: lora
backend: cpu
runs_dir: %s
lora: {r: 4, alpha: 8}
data: {path: %s, max_length: 128, packing: true, seed: 1}
train: {max_steps: 1000, micro_batch: 1, lr: 0.001, schedule: constant, max_grad_norm: 1, seed: 1,
  sample_every: 1, sample_tokens: 64, sample_prompts: ["What is a variable?"]}
`, abs("testdata/tiny-llama"), dir, abs("testdata/datasets/tiny-chat.jsonl"))
	cfgPath := filepath.Join(dir, "run.yaml")
	if err := os.WriteFile(cfgPath, []byte(run), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		trigger  string
		sig      syscall.Signal
		wantCode int
		wantStop string // what the stop line says ends the process at once
	}{
		{"step 1/", syscall.SIGINT, 130, "whet train: Ctrl-C again quits at once, without the checkpoint"},
		{"sample step 2", syscall.SIGINT, 130, "whet train: Ctrl-C again quits at once, without the checkpoint"},
		// SIGTERM came from kill or a scheduler: no Ctrl-C was pressed.
		{"step 1/", syscall.SIGTERM, 143, "whet train: a second SIGTERM or Ctrl-C quits at once, without the checkpoint"},
	} {
		t.Run(tc.trigger+"/"+tc.sig.String(), func(t *testing.T) {
			os.RemoveAll(filepath.Join(dir, "sigint"))
			out := &signalWriter{trigger: tc.trigger, sig: tc.sig}
			var errOut bytes.Buffer
			if code := runMain([]string{"train", "-c", cfgPath}, strings.NewReader(""), out, &errOut); code != tc.wantCode {
				t.Fatalf("whet train stopped by %v: exit status %d, want %d\nstderr:\n%s\nstdout:\n%s", tc.sig, code, tc.wantCode, errOut.String(), out.buf.String())
			}
			resume := "resume: whet train -c " + filepath.Join(dir, "sigint", "run.yaml")
			if !strings.Contains(errOut.String(), resume) {
				t.Errorf("stderr %q does not say %q", errOut.String(), resume)
			}
			text := strings.TrimRight(out.buf.String(), "\n")
			lastLine := text[strings.LastIndex(text, "\n")+1:]
			var step int
			if _, err := fmt.Sscanf(lastLine, "stopped at step %d", &step); err != nil || step == 0 {
				t.Fatalf("last line %q, want \"stopped at step N\"; output:\n%s", lastLine, text)
			}
			if !strings.Contains(errOut.String(), "whet train: stopping after the current step, with a checkpoint\n"+tc.wantStop+"\n") {
				t.Errorf("stderr %q does not say that the run is stopping and %s", errOut.String(), tc.wantStop)
			}
			cps, err := engine.ListCheckpoints(filepath.Join(dir, "sigint", "checkpoints"))
			if err != nil || len(cps) == 0 || cps[len(cps)-1].Step != step {
				t.Fatalf("checkpoints %v (%v), want one at step %d", cps, err, step)
			}
			var st engine.RunStatus
			js, _ := os.ReadFile(filepath.Join(dir, "sigint", "status.json"))
			if err := json.Unmarshal(js, &st); err != nil || st.State != "stopped" || st.Step != step {
				t.Fatalf("status.json %s, want stopped at step %d", js, step)
			}
		})
	}
}

// A NaN or infinite value in --json output is written as null, as in
// metrics.jsonl; before, json.Marshal failed and the line came out empty.
func TestTrainJSONWritesNaNAsNull(t *testing.T) {
	var b bytes.Buffer
	writeEventJSON(&b, engine.StepEvent{Step: 3, Loss: math.NaN(), GradNorm: math.Inf(1), LR: 1e-4,
		Metrics: map[string]float64{"rewards/margins": math.NaN()}})
	var got map[string]any
	if err := json.Unmarshal(b.Bytes(), &got); err != nil {
		t.Fatalf("line %q: %v", b.String(), err)
	}
	for _, k := range []string{"loss", "grad_norm", "rewards/margins"} {
		if v, ok := got[k]; !ok || v != nil {
			t.Errorf("%s = %v (present %v), want null", k, v, ok)
		}
	}
	if got["step"] != float64(3) || got["lr"] != 1e-4 {
		t.Errorf("other fields lost: %v", got)
	}
}

// TestTrainClosedOutputStopsWithCheckpoint: whet train's output is a pipe
// whose reader goes away (whet train … | tee log, then Ctrl-C, which ends
// tee too; or | head). The run must still end with a checkpoint and
// status "stopped": before, the next write killed whet with SIGPIPE in the
// middle of its stop checkpoint, leaving a step-N.tmp folder and status
// "running". whet train runs in a child process (this test binary, re-run
// as the helper below) whose stdout and stderr are pipes this test closes
// after the first step line, with and without a SIGINT.
func TestTrainClosedOutputStopsWithCheckpoint(t *testing.T) {
	abs := func(p string) string { a, _ := filepath.Abs(p); return a }
	for _, sigint := range []bool{true, false} {
		t.Run(fmt.Sprintf("sigint=%v", sigint), func(t *testing.T) {
			dir := t.TempDir()
			run := fmt.Sprintf("name: piped\nmodel: %s\nmethod: lora\nbackend: cpu\nruns_dir: %s\nlora: {r: 4, alpha: 8}\n"+
				"data: {path: %s, max_length: 128, packing: true, seed: 1}\n"+
				"train: {max_steps: 100000, micro_batch: 1, lr: 0.001, save_every: 0, sample_every: 0, seed: 1}\n",
				abs("testdata/tiny-llama"), dir, abs("testdata/datasets/tiny-chat.jsonl"))
			cfgPath := filepath.Join(dir, "run.yaml")
			if err := os.WriteFile(cfgPath, []byte(run), 0o644); err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestTrainClosedOutputHelper$")
			cmd.Env = append(os.Environ(), "WHET_TRAIN_PIPED="+cfgPath)
			stdout, err := cmd.StdoutPipe()
			if err != nil {
				t.Fatal(err)
			}
			stderr, err := cmd.StderrPipe()
			if err != nil {
				t.Fatal(err)
			}
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			go io.Copy(io.Discard, stderr)
			lines := bufio.NewScanner(stdout)
			for lines.Scan() && !strings.HasPrefix(lines.Text(), "step 2/") {
			}
			stdout.Close() // the reader is gone: the child's next write fails
			stderr.Close()
			if sigint {
				cmd.Process.Signal(syscall.SIGINT)
			}
			// whet's last line (what was kept, how to resume) may kill it
			// with SIGPIPE on the closed stderr, which a shell reports as
			// 141 too; the run folder says how the run ended.
			werr := cmd.Wait()
			if ctx.Err() != nil {
				t.Fatal("whet train did not stop when its output was closed")
			}
			if werr == nil {
				t.Error("whet train stopped by its closed output exited 0, as if the run had finished")
			} else if code := cmd.ProcessState.ExitCode(); code != -1 && code != 141 && !(sigint && code == 130) {
				t.Errorf("whet train stopped by its closed output: %v, want exit status 141 (130 after SIGINT) or death by SIGPIPE", werr)
			}
			var st engine.RunStatus
			js, _ := os.ReadFile(filepath.Join(dir, "piped", "status.json"))
			if err := json.Unmarshal(js, &st); err != nil || st.State != "stopped" || st.Step < 2 {
				t.Fatalf("status.json %s, want stopped at a step ≥ 2", js)
			}
			cps, err := engine.ListCheckpoints(filepath.Join(dir, "piped", "checkpoints"))
			if err != nil || len(cps) == 0 || cps[len(cps)-1].Step != st.Step {
				t.Fatalf("checkpoints %v (%v), want one at step %d", cps, err, st.Step)
			}
			if tmp, _ := filepath.Glob(filepath.Join(dir, "piped", "checkpoints", "*.tmp")); len(tmp) > 0 {
				t.Errorf("half-written checkpoints left: %v", tmp)
			}
		})
	}
}

func TestTrainClosedOutputHelper(t *testing.T) {
	cfg := os.Getenv("WHET_TRAIN_PIPED")
	if cfg == "" {
		t.Skip("run by TestTrainClosedOutputStopsWithCheckpoint")
	}
	// The exit status goes to the test: an interrupted run must not exit 0.
	os.Exit(runMain([]string{"train", "-c", cfg}, strings.NewReader(""), os.Stdout, os.Stderr))
}

// The lines whet train writes when asked to stop fit an 80-column
// terminal, so that none breaks mid-word.
func TestTrainStopLinesFit80Columns(t *testing.T) {
	for _, l := range []string{stopLine, stopAgainCtrlC, stopAgainSignal, stopClosedLine} {
		if n := utf8.RuneCountInString(l); n >= 80 {
			t.Errorf("%d columns: %q", n, l)
		}
	}
}
