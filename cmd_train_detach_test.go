package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"whet/engine"
	"whet/engine/worker"
)

// asWhetEnv makes the test binary behave as the whet binary, so that a
// detached run's worker (a re-exec of "this binary") is whet in tests too.
const asWhetEnv = "WHET_TEST_AS_WHET"

func TestMain(m *testing.M) {
	if os.Getenv(asWhetEnv) == "1" {
		os.Exit(runMain(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}

// detachRunFile writes a long CPU run on the tiny model: the tests steer
// it through its control socket and never wait for it to finish.
func detachRunFile(t *testing.T, name string) (cfgPath string, rd engine.RunDir) {
	t.Helper()
	if runtime.GOOS != "linux" {
		t.Skip("detached runs check their viewers' credentials on Linux only")
	}
	t.Setenv(asWhetEnv, "1")
	// Short: the control socket's path must fit a Unix socket address.
	dir, err := os.MkdirTemp("", "wd")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	abs := func(p string) string { a, _ := filepath.Abs(p); return a }
	run := fmt.Sprintf(`name: %s
model: %s
backend: cpu
runs_dir: %s
lora: {r: 2, alpha: 4}
data: {path: %s, max_length: 64, packing: true, seed: 1}
train: {max_steps: 1000000, lr: 0.001, seed: 1, save_every: 1, keep_checkpoints: 2}
`, name, abs("testdata/tiny-llama"), dir, abs("testdata/datasets/tiny-chat.jsonl"))
	cfgPath = filepath.Join(dir, name+".yaml")
	if err := os.WriteFile(cfgPath, []byte(run), 0o644); err != nil {
		t.Fatal(err)
	}
	return cfgPath, engine.RunDir(filepath.Join(dir, name))
}

// waitFor polls cond (bounded) instead of sleeping a fixed time.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(60 * time.Second); !cond(); {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// nextEvent is the next live event of type T, skipping others (bounded).
func nextEvent[T engine.Event](t *testing.T, c *worker.Conn) T {
	t.Helper()
	timeout := time.After(60 * time.Second)
	for {
		select {
		case ev, ok := <-c.Events:
			if !ok {
				t.Fatalf("the worker hung up before a %T", *new(T))
			}
			if e, ok := ev.(T); ok {
				return e
			}
		case <-timeout:
			t.Fatalf("no %T within a minute", *new(T))
		}
	}
}

// startDetachedRun starts detachRunFile's run in a worker, as whet train
// --detach does, and kills the worker when the test ends.
func startDetachedRun(t *testing.T, name string) (engine.RunDir, int) {
	t.Helper()
	cfgPath, rd := detachRunFile(t, name)
	cfg, err := engine.LoadRunConfig(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	if err := startDetached(context.Background(), cfg, cfgPath, "", false, io.Discard); err != nil {
		t.Fatal(err)
	}
	pid := workerPID(t, rd)
	t.Cleanup(func() { killPID(pid) })
	return rd, pid
}

func workerPID(t *testing.T, rd engine.RunDir) int {
	t.Helper()
	pid, held, _, err := rd.Holder()
	if err != nil || !held || pid == 0 {
		t.Fatalf("run folder lock: pid %d held %v: %v", pid, held, err)
	}
	return pid
}

// kill -9 of the process that started a detached run, and SIGHUP to the
// worker, leave the run training; a viewer steers it to a clean stop.
func TestDetachedRunOutlivesItsStarter(t *testing.T) {
	cfgPath, rd := detachRunFile(t, "outlive")
	starter := exec.Command(os.Args[0], "train", "-c", cfgPath, "--detach")
	out, err := starter.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := starter.Start(); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "worker pid ") {
		t.Fatalf("starter's first line %q: %v", line, err)
	}
	starter.Process.Kill() // SIGKILL, while it waits for the worker
	starter.Wait()
	var conn *worker.Conn
	waitFor(t, "the worker's control socket", func() bool {
		conn, err = worker.Dial(rd)
		return err == nil
	})
	defer conn.Close()
	pid := workerPID(t, rd)
	t.Cleanup(func() { syscall.Kill(pid, syscall.SIGKILL) })
	if pid == starter.Process.Pid {
		t.Fatal("the starter holds the run itself")
	}
	if err := syscall.Kill(pid, syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	first := nextEvent[engine.StepEvent](t, conn)
	later := nextEvent[engine.StepEvent](t, conn)
	if later.Step <= first.Step {
		t.Fatalf("steps %d then %d after SIGHUP", first.Step, later.Step)
	}
	if st, err := os.Stat(worker.Socket(rd)); err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("control socket: %v %v, want mode 0600", st, err)
	}
	conn.Send(worker.CmdStop)
	done := nextEvent[engine.DoneEvent](t, conn)
	if !done.Stopped || done.Err != nil {
		t.Fatalf("done %+v, want a clean stop", done)
	}
	waitFor(t, "the worker to let go of the run", func() bool {
		_, held, _, _ := rd.Holder()
		return !held
	})
	if st, err := rd.ReadStatus(); err != nil || st.State != "stopped" {
		t.Errorf("status %+v %v, want stopped", st, err)
	}
	if b, _ := os.ReadFile(worker.Log(rd)); !bytes.Contains(b, []byte("stopped at step")) {
		t.Errorf("worker.log lacks the stop line:\n%s", b)
	}
}

// kill -9 of the worker is shown as crashed by whet runs, with the
// checkpoint to resume from, and whet train resumes from it.
func TestKilledWorkerIsCrashedAndResumes(t *testing.T) {
	cfgPath, rd := detachRunFile(t, "crash")
	var out bytes.Buffer
	if err := runTrain([]string{"-c", cfgPath, "--detach"}, nil, &out, &out); err != nil {
		t.Fatalf("whet train --detach: %v\n%s", err, out.String())
	}
	if !strings.Contains(out.String(), "whet attach crash") {
		t.Errorf("--detach does not say how to follow the run:\n%s", out.String())
	}
	conn, err := worker.Dial(rd)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	pid := workerPID(t, rd)
	t.Cleanup(func() { syscall.Kill(pid, syscall.SIGKILL) })
	nextEvent[engine.CheckpointEvent](t, conn)
	conn.Send(worker.CmdPause)
	waitFor(t, "the run to pause", func() bool {
		st, err := rd.ReadStatus()
		return err == nil && st.State == "paused"
	})
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the kernel to drop the killed worker's lock", func() bool {
		_, held, _, _ := rd.Holder()
		return !held
	})
	cps, err := engine.ListCheckpoints(rd.Checkpoints())
	if err != nil || len(cps) == 0 {
		t.Fatalf("checkpoints: %v %v", cps, err)
	}
	newest := cps[len(cps)-1]
	var list bytes.Buffer
	if err := runRuns([]string{"--dir", filepath.Dir(rd.Path())}, nil, &list, &list); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"crash  crashed", "crash crashed: last words in " + worker.Log(rd), fmt.Sprintf("resumes from %s (step %d)", newest.Path, newest.Step)} {
		if !strings.Contains(list.String(), want) {
			t.Errorf("whet runs lacks %q:\n%s", want, list.String())
		}
	}
	// The studio's runs page says the same, and opening the run replays
	// it and ends it with that crash.
	b := studioRuns{dir: filepath.Dir(rd.Path())}
	runs, _, err := b.List()
	if err != nil || len(runs) != 1 {
		t.Fatalf("runs page: %+v %v", runs, err)
	}
	if r := runs[0]; r.State != "crashed" || r.Live || r.ResumeFrom != newest.Path || r.ResumeStep != newest.Step || r.LastWordsFile != worker.Log(rd) {
		t.Errorf("runs page lists the killed run as %+v", r)
	}
	a, err := b.Attach(context.Background(), "crash")
	if err != nil {
		t.Fatal(err)
	}
	var end engine.DoneEvent
	replayed := 0
	for ev := range a.Events {
		switch e := ev.(type) {
		case engine.StepEvent:
			replayed++
		case engine.DoneEvent:
			end = e
		}
	}
	if replayed == 0 || end.Err == nil || !strings.Contains(end.Err.Error(), fmt.Sprintf("resumes from %s (step %d)", newest.Path, newest.Step)) {
		t.Errorf("opening the crashed run: %d steps replayed, end %v", replayed, end.Err)
	}
	// Resume in this process; SIGINT once it has resumed stops it cleanly
	// (with a checkpoint, and the interrupted run's status 130).
	w := &signalWriter{trigger: "resumed "}
	var intr *interruptedError
	if err := runTrain([]string{"-c", cfgPath}, nil, w, w); !errors.As(err, &intr) || intr.exitCode() != 130 {
		t.Fatalf("resume stopped by SIGINT: %v, want the interrupted run's error (exit status 130)\n%s", err, w.buf.String())
	}
	var step int
	text := w.buf.String()
	if i := strings.Index(text, "resumed "); i < 0 {
		t.Fatalf("no resume:\n%s", text)
	} else if _, err := fmt.Sscanf(text[i:], "resumed "+rd.Path()+" at step %d", &step); err != nil || step != newest.Step {
		t.Errorf("resumed at step %d (%v), want the newest checkpoint's %d:\n%s", step, err, newest.Step, text)
	}
}

func killPID(pid int) { syscall.Kill(pid, syscall.SIGKILL) }

func selfPID() int { return os.Getpid() }

// A worker that refuses to start (here: resuming a finished run with
// another learning rate) is an error that quotes its reasons, every line
// of them, not "run finished": the run folder's status, left by the run
// before, said done, which read as this worker finishing at once (the
// studio then showed the old run's summary and nothing of the refusal).
func TestDetachedWorkerRefusalIsAnError(t *testing.T) {
	cfgPath, rd := detachRunFile(t, "refused")
	body, err := os.ReadFile(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	short := strings.Replace(string(body), "max_steps: 1000000", "max_steps: 2", 1)
	if err := os.WriteFile(cfgPath, []byte(short), 0o644); err != nil {
		t.Fatal(err)
	}
	if code, _, errs := runCLI(t, "train", "-c", cfgPath); code != 0 {
		t.Fatalf("the first run: exit %d: %s", code, errs)
	}
	if st, err := rd.ReadStatus(); err != nil || st.State != "done" {
		t.Fatalf("the first run's status: %+v, %v", st, err)
	}
	other := strings.Replace(short, "lr: 0.001", "lr: 0.002", 1)
	if err := os.WriteFile(cfgPath, []byte(other), 0o644); err != nil {
		t.Fatal(err)
	}
	code, out, errs := runCLI(t, "train", "-c", cfgPath, "--detach")
	if code != 1 || strings.Contains(out, "finished") {
		t.Fatalf("exit %d, stdout %q, stderr %q; want exit 1 and no 'finished'", code, out, errs)
	}
	for _, want := range []string{"the worker for run refused ended (exit status 1):", "train.lr: 0.001 → 0.002", "--resume-anyway"} {
		if !strings.Contains(errs, want) {
			t.Errorf("stderr lacks %q:\n%s", want, errs)
		}
	}
}
