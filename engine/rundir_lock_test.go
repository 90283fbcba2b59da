//go:build unix

package engine_test

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

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

// Sessions that start in the same second propose the same default name
// (two whet serve viewers, two terminals): claiming it gives each its own
// folder, the next free one where a run has the name, and none is
// refused. Run with -race -count=20.
func TestClaimRunNameConcurrent(t *testing.T) {
	runs := filepath.Join(t.TempDir(), "runs") // made by the claim
	base := engine.RunNameAt(time.Date(2026, 12, 7, 23, 0, 0, 0, time.UTC))
	const n = 8
	names := make([]string, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			names[i], errs[i] = engine.ClaimRunName(runs, base)
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("claim %d: %v", i, err)
		}
	}
	want := []string{base}
	for i := 2; i <= n; i++ {
		want = append(want, fmt.Sprintf("%s-%d", base, i))
	}
	sort.Strings(want)
	got := append([]string(nil), names...)
	sort.Strings(got)
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("claimed %v, want each of %v once", got, want)
	}
	for _, name := range got {
		if st, err := os.Stat(filepath.Join(runs, name)); err != nil || !st.IsDir() {
			t.Errorf("claimed %s but its folder is not there: %v", name, err)
		}
	}
	// A folder that exists, whatever it holds, is never claimed again.
	if name, err := engine.ClaimRunName(runs, base); err != nil || name != fmt.Sprintf("%s-%d", base, n+1) {
		t.Errorf("next claim: %q, %v; want %s-%d", name, err, base, n+1)
	}
	if _, err := engine.ClaimRunName(runs, "../out"); err == nil {
		t.Error("a base that is no run name was claimed")
	}
}

// Two runs without a name started in the same second train in two
// folders (before, the second resumed or was refused by the first's
// lock); a name the user gave is never changed: a folder in use refuses
// it, as before.
func TestUnnamedRunsInOneSecondGetTwoFolders(t *testing.T) {
	runs := t.TempDir()
	at := time.Date(2026, 12, 7, 23, 0, 0, 0, time.UTC)
	engine.SetRunNameClock(t, func() time.Time { return at })
	base := engine.RunNameAt(at)
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cfg := smallRun(runs, "")
			cfg.Train.MaxSteps, cfg.Train.SampleEvery, cfg.Train.EvalEvery = 1, 0, 0
			events, _, err := engine.Start(context.Background(), cfg)
			if err != nil {
				errs[i] = err
				return
			}
			for ev := range events {
				if d, ok := ev.(engine.DoneEvent); ok && d.Err != nil {
					errs[i] = d.Err
				}
			}
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("run %d: %v", i, err)
		}
	}
	for _, name := range []string{base, base + "-2"} {
		st, err := engine.RunDir(filepath.Join(runs, name)).ReadStatus()
		if err != nil || st.State != "done" {
			t.Errorf("run %s: %+v, %v; want done", name, st, err)
		}
	}
	l, err := engine.RunDir(filepath.Join(runs, base)).Acquire()
	if err != nil {
		t.Fatal(err)
	}
	defer l.Release()
	if _, err := engine.Prepare(smallRun(runs, base)); err == nil || !strings.Contains(err.Error(), "is in use by") {
		t.Errorf("an explicit name whose folder is in use: %v; want it refused", err)
	}
}
