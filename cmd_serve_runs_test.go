package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"whet/engine"
	"whet/engine/worker"
)

// tmuxServer is a tmux server of the test's own: each session is a real
// terminal (80x24) whose screen the test reads as the user would see it,
// however the studio's renderer drew it.
type tmuxServer struct {
	t    *testing.T
	sock string
}

func startTmux(t *testing.T) *tmuxServer {
	t.Helper()
	if _, err := exec.LookPath("tmux"); err != nil {
		t.Skip("no tmux to read the sessions' screens (tools/setup/openssh.sh installs it)")
	}
	s := &tmuxServer{t: t, sock: filepath.Join(t.TempDir(), "tmux")}
	t.Cleanup(func() { exec.Command("tmux", "-S", s.sock, "kill-server").Run() })
	return s
}

func (s *tmuxServer) tmux(args ...string) string {
	s.t.Helper()
	out, err := exec.Command("tmux", append([]string{"-S", s.sock}, args...)...).CombinedOutput()
	if err != nil {
		s.t.Fatalf("tmux %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// session opens terminal name running the ssh client against f.
func (s *tmuxServer) session(f *sshFixture, name string) {
	s.t.Helper()
	line := fmt.Sprintf("exec ssh -F /dev/null -p %s -i %s -o IdentitiesOnly=yes -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o BatchMode=yes -o LogLevel=ERROR -tt whet@127.0.0.1",
		f.port, f.listed)
	s.command(name, line)
}

// command opens terminal name running a shell command line in the
// repository's folder.
func (s *tmuxServer) command(name, line string) {
	s.t.Helper()
	s.tmux("new-session", "-d", "-s", name, "-x", "80", "-y", "24", line)
}

func (s *tmuxServer) screen(name string) string {
	out, _ := exec.Command("tmux", "-S", s.sock, "capture-pane", "-p", "-t", name).CombinedOutput()
	return string(out)
}

// wait polls name's screen until it shows every text (bounded) and
// returns it.
func (s *tmuxServer) wait(name string, texts ...string) string {
	s.t.Helper()
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		scr := s.screen(name)
		all := true
		for _, t := range texts {
			all = all && strings.Contains(scr, t)
		}
		if all {
			return scr
		}
		if time.Now().After(deadline) || strings.Contains(scr, "no server running") || strings.Contains(scr, "can't find session") {
			s.t.Fatalf("terminal %s never showed %q; it shows:\n%s", name, texts, scr)
		}
	}
}

// keys types tmux key names (Enter, Down, C-u) or text into name.
func (s *tmuxServer) keys(name string, keys ...string) {
	s.t.Helper()
	s.tmux(append([]string{"send-keys", "-t", name}, keys...)...)
}

func (s *tmuxServer) pid(name string) int {
	s.t.Helper()
	pid, err := strconv.Atoi(strings.TrimSpace(s.tmux("display-message", "-p", "-t", name, "#{pane_pid}")))
	if err != nil {
		s.t.Fatal(err)
	}
	return pid
}

// onlyRun is the one run folder under dir.
func onlyRun(t *testing.T, dir string) engine.RunDir {
	t.Helper()
	var rd engine.RunDir
	waitFor(t, "a run folder in "+dir, func() bool {
		entries, _ := os.ReadDir(dir)
		if len(entries) != 1 {
			return false
		}
		rd = engine.RunDir(filepath.Join(dir, entries[0].Name()))
		return true
	})
	return rd
}

// startDemoRun walks the wizard in terminal name as a new user would (the
// demo model is first, its data preselected), makes the run short on the
// settings page (steps steps of micro-batch 1, no sample prompts), starts
// it and waits for its first step on the dashboard.
func startDemoRun(tm *tmuxServer, name string, steps int) {
	tm.t.Helper()
	tm.wait(name, "Choose the base model", "whet-demo")
	tm.keys(name, "Enter")
	tm.wait(name, "How should it learn?")
	tm.keys(name, "Enter")
	tm.wait(name, "format messages")
	tm.keys(name, "Enter")
	tm.wait(name, "Run settings")
	tm.keys(name, "Down", "Right", "Down", "C-u", strconv.Itoa(steps), "Down", "Down", "C-u", "1", "Down", "Down", "Down", "Down", "C-u")
	tm.wait(name, fmt.Sprintf("Max steps           %d\n", steps), "Micro-batch         1\n")
	tm.keys(name, "Enter")
	tm.wait(name, "fits")
	tm.keys(name, "Enter")
	tm.wait(name, "enter starts training")
	tm.keys(name, "Enter")
	tm.wait(name, fmt.Sprintf("step 1/%d", steps))
}

// A run started in a session over ssh (the demo model on the CPU, made
// short on the settings page) goes on when the ssh client is killed
// mid-run, and finishes; a new session opens it from the runs page and
// shows its whole loss history (the chart from step 1 to the last) and
// the final summary.
func TestServeRunOutlivesTheClient(t *testing.T) {
	if _, ok := demoModelDir(); !ok {
		t.Fatal("the demo model is missing")
	}
	t.Setenv(asWhetEnv, "1") // the worker is this test binary acting as whet
	f := startServe(t, 4)
	tm := startTmux(t)
	const steps = 12
	tm.session(f, "a")
	startDemoRun(tm, "a", steps)
	rd := onlyRun(t, f.runs)
	pid := workerPID(t, rd)
	t.Cleanup(func() { killPID(pid) })
	if err := syscall.Kill(tm.pid("a"), syscall.SIGKILL); err != nil { // the ssh client
		t.Fatal(err)
	}
	st, _ := rd.ReadStatus()
	if st.Step >= steps {
		t.Fatalf("the run had ended (step %d) before the client was killed", st.Step)
	}
	waitFor(t, "the run to finish without its client", func() bool {
		st, err := rd.ReadStatus()
		_, held, _, _ := rd.Holder()
		return err == nil && st.State == "done" && !held
	})
	_, loss, _, err := worker.LastMetric(rd.Metrics(), "loss")
	if err != nil {
		t.Fatal(err)
	}
	name := filepath.Base(rd.Path())
	tm.session(f, "b")
	tm.wait("b", "Choose the base model")
	tm.keys("b", "r")
	tm.wait("b", "Runs in", name, "✓ finished", fmt.Sprintf("%d/%d", steps, steps))
	tm.keys("b", "Enter")
	scr := tm.wait("b", "✓ finished", fmt.Sprintf("%d of %d steps · last loss %.4f", steps, steps, loss), "esc runs")
	// The chart spans the whole history: its x axis runs from step 1 to
	// the last.
	if !regexp.MustCompile(fmt.Sprintf(`└1─+%d\n`, steps)).MatchString(scr) {
		t.Errorf("the summary's chart does not span steps 1..%d:\n%s", steps, scr)
	}
	if strings.Contains(scr, "time 0m00s") {
		t.Errorf("the summary has no training time:\n%s", scr)
	}
	tm.keys("b", "q")
}

// Two sessions attached to the same live run see the same steps: after a
// pause from one, both screens settle on the step the run's status says;
// a stop from the other ends the run and both show the same summary.
func TestServeTwoViewersSeeTheSameSteps(t *testing.T) {
	rd, _ := startDetachedRun(t, "shared")
	f := startServeRuns(t, 4, filepath.Dir(rd.Path()))
	tm := startTmux(t)
	for _, v := range []string{"a", "b"} {
		tm.session(f, v)
		tm.wait(v, "Choose the base model")
		tm.keys(v, "r")
		tm.wait(v, "shared", "● training")
		tm.keys(v, "Enter")
		tm.wait(v, "/1000000 · epoch", "q/esc runs (run goes on)")
	}
	tm.keys("a", "p")
	waitFor(t, "the run to pause", func() bool { st, err := rd.ReadStatus(); return err == nil && st.State == "paused" })
	st, _ := rd.ReadStatus()
	at := fmt.Sprintf("step %d/1000000 ", st.Step)
	tm.wait("a", at, "‖ paused")
	tm.wait("b", at)
	tm.keys("b", "s")
	tm.wait("b", "Stop the run?")
	tm.keys("b", "y")
	summary := fmt.Sprintf("%d of 1000000 steps", st.Step)
	tm.wait("a", "■ stopped", summary)
	tm.wait("b", "■ stopped", summary)
	waitFor(t, "the worker to end", func() bool { _, held, _, _ := rd.Holder(); return !held })
	if st, err := rd.ReadStatus(); err != nil || st.State != "stopped" {
		t.Errorf("status %+v %v, want stopped", st, err)
	}
}

// Twenty sessions at once (the bound, on loopback) all get the studio,
// each one's keys reach its own studio (each opens the runs page and sees
// the live run), none is refused or dropped, and a twenty-first is told
// to come back later.
func TestServeTwentySessions(t *testing.T) {
	const n = 20
	rd, _ := startDetachedRun(t, "busy")
	f := startServeRuns(t, n, filepath.Dir(rd.Path()))
	if !strings.HasPrefix(f.addr, "127.0.0.1:") {
		t.Fatalf("whet serve listens on %s, want loopback", f.addr)
	}
	tm := startTmux(t)
	names := make([]string, n)
	for i := range names {
		names[i] = fmt.Sprintf("s%02d", i)
		tm.session(f, names[i])
	}
	for _, s := range names {
		tm.wait(s, "Choose the base model")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	extra := f.open(t, ctx)
	extra.wait(t, "refusal over the bound", "sessions already")
	for _, s := range names {
		tm.keys(s, "r")
	}
	for _, s := range names {
		tm.wait(s, "Runs in", "busy", "● training")
	}
	for _, s := range names {
		tm.keys(s, "q")
	}
	// Session names, one a line; once the last session ends the tmux
	// server exits and the command fails with a message naming the socket,
	// whose path (the test's temporary folder) may itself hold "s0" or
	// "s1": so only the names are looked at, never the error text.
	waitFor(t, "every session to end", func() bool {
		out, err := exec.Command("tmux", "-S", tm.sock, "list-sessions", "-F", "#{session_name}").Output()
		if err != nil {
			return true
		}
		for _, name := range strings.Fields(string(out)) {
			if slices.Contains(names, name) {
				return false
			}
		}
		return true
	})
	if _, held, _, _ := rd.Holder(); !held {
		t.Error("the run ended with the sessions")
	}
}

// The plain studio (whet) starts its runs in a worker of their own: kill
// -9 of the studio mid-run leaves the run training to its end, and whet
// runs shows it finished.
func TestStudioKilledRunGoesOn(t *testing.T) {
	if _, ok := demoModelDir(); !ok {
		t.Fatal("the demo model is missing")
	}
	t.Setenv(asWhetEnv, "1")
	dir, err := os.MkdirTemp("", "ws") // short: the socket's path must fit
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	runs := filepath.Join(dir, "runs")
	tm := startTmux(t)
	const steps = 12
	tm.command("studio", fmt.Sprintf("exec env %s=1 %s --runs %s --models-dir %s --data-dirs %s", asWhetEnv, exe, runs, filepath.Join(dir, "models"), dir))
	startDemoRun(tm, "studio", steps)
	rd := onlyRun(t, runs)
	pid := workerPID(t, rd)
	t.Cleanup(func() { killPID(pid) })
	studio := tm.pid("studio")
	if pid == studio {
		t.Fatal("the studio trains the run itself")
	}
	if err := syscall.Kill(studio, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if st, _ := rd.ReadStatus(); st.Step >= steps {
		t.Fatalf("the run had ended (step %d) before the studio was killed", st.Step)
	}
	waitFor(t, "the run to finish without its studio", func() bool {
		st, err := rd.ReadStatus()
		_, held, _, _ := rd.Holder()
		return err == nil && st.State == "done" && !held
	})
	var out strings.Builder
	if err := runRuns([]string{"--dir", runs}, nil, &out, &out); err != nil {
		t.Fatal(err)
	}
	if want := fmt.Sprintf("done     %d/%d", steps, steps); !strings.Contains(strings.Join(strings.Fields(out.String()), " "), strings.Join(strings.Fields(want), " ")) {
		t.Errorf("whet runs after the run:\n%s", out.String())
	}
}
