//go:build unix

package engine_test

import (
	"bufio"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"whet/engine"
)

// TestLockHolderProcess is not a test on its own: run by
// TestRunDirLockRefusesSecondRun as a child process, it takes the lock of
// the folder named by WHET_TEST_LOCK_DIR, says so, and waits to be killed.
func TestLockHolderProcess(t *testing.T) {
	dir := os.Getenv("WHET_TEST_LOCK_DIR")
	if dir == "" {
		t.Skip("helper process for TestRunDirLockRefusesSecondRun")
	}
	if _, err := engine.RunDir(dir).Acquire(); err != nil {
		t.Fatal(err)
	}
	os.Stdout.WriteString("locked\n")
	bufio.NewReader(os.Stdin).ReadString('\n') // until the parent kills us
}

// A run folder another process trains in is refused with that process's
// pid; once the process is killed, its lock no longer blocks anyone.
func TestRunDirLockRefusesSecondRun(t *testing.T) {
	runs := t.TempDir()
	d := engine.RunDir(filepath.Join(runs, "busy"))
	os.MkdirAll(d.Path(), 0o755)

	child := exec.Command(os.Args[0], "-test.run=^TestLockHolderProcess$")
	child.Env = append(os.Environ(), "WHET_TEST_LOCK_DIR="+d.Path())
	stdin, _ := child.StdinPipe()
	defer stdin.Close()
	out, _ := child.StdoutPipe()
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil || line != "locked\n" {
		child.Process.Kill()
		t.Fatalf("helper process: %q %v", line, err)
	}
	pid := strconv.Itoa(child.Process.Pid)

	_, err = d.Acquire()
	if err == nil || !strings.Contains(err.Error(), "process "+pid) || !strings.Contains(err.Error(), d.Path()) {
		t.Errorf("second lock while process %s holds it: %v", pid, err)
	}
	// The whole run refuses too, before it loads the model.
	if _, err := engine.Prepare(smallRun(runs, "busy")); err == nil || !strings.Contains(err.Error(), "process "+pid) {
		t.Errorf("Prepare on a locked folder: %v", err)
	}

	child.Process.Kill() // SIGKILL: no chance to clean up
	child.Wait()
	l, err := d.Acquire()
	if err != nil {
		t.Fatalf("the lock of a killed process still blocks: %v", err)
	}
	if b, _ := os.ReadFile(d.LockFile()); strings.TrimSpace(string(b)) != strconv.Itoa(os.Getpid()) {
		t.Errorf("lock file names %q, want this process %d", b, os.Getpid())
	}
	l.Release()
}

// In one process: a run holds its folder until it ends; two locks on one
// folder exclude each other (flock is per open file, not per process).
func TestRunHoldsLockUntilItEnds(t *testing.T) {
	runs := t.TempDir()
	cfg := smallRun(runs, "held")
	cfg.Train.MaxSteps = 1 << 20 // it cannot end before it is stopped
	events, ctl, err := engine.Start(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	d := engine.RunDir(filepath.Join(runs, "held"))
	ctl.Pause()
	if _, err := d.Acquire(); err == nil || !strings.Contains(err.Error(), "process "+strconv.Itoa(os.Getpid())) {
		t.Errorf("lock while the run trains: %v", err)
	}
	ctl.Stop()
	for range events {
	}
	l, err := d.Acquire()
	if err != nil {
		t.Fatalf("lock after the run ended: %v", err)
	}
	l.Release()
}
