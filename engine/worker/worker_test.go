package worker

import (
	"bufio"
	"encoding/json"
	"fmt"
	"math"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"whet/engine"
)

type fakeControl struct {
	mu   sync.Mutex
	cmds []string
}

func (f *fakeControl) add(s string) { f.mu.Lock(); f.cmds = append(f.cmds, s); f.mu.Unlock() }
func (f *fakeControl) Pause()       { f.add("pause") }
func (f *fakeControl) Resume()      { f.add("resume") }
func (f *fakeControl) Checkpoint()  { f.add("checkpoint") }
func (f *fakeControl) Stop()        { f.add("stop") }
func (f *fakeControl) got() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return strings.Join(f.cmds, ",")
}

func listen(t *testing.T) (*Server, *fakeControl, engine.RunDir) {
	t.Helper()
	rd := engine.RunDir(t.TempDir())
	ctl := &fakeControl{}
	s, err := Listen(rd, ctl)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, ctl, rd
}

func dialRaw(t *testing.T, rd engine.RunDir) (net.Conn, *bufio.Reader) {
	t.Helper()
	c, err := net.Dial("unix", Socket(rd))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(10 * time.Second))
	return c, bufio.NewReader(c)
}

func readMsg(t *testing.T, r *bufio.Reader) Message {
	t.Helper()
	line, err := r.ReadBytes('\n')
	if err != nil {
		t.Fatalf("read reply: %v (got %q)", err, line)
	}
	var m Message
	if err := json.Unmarshal(line, &m); err != nil {
		t.Fatalf("reply %q: %v", line, err)
	}
	return m
}

// readReply reads past the events a viewer is sent (a pause is told to
// every viewer, and a new one is told the pause state as it connects) to
// the next reply.
func readReply(t *testing.T, r *bufio.Reader) Message {
	t.Helper()
	for {
		if m := readMsg(t, r); m.Event == "" {
			return m
		}
	}
}

// The socket is the owner's only, and a stale one a dead worker left is
// replaced.
func TestSocketMode(t *testing.T) {
	rd := engine.RunDir(t.TempDir())
	if err := os.WriteFile(Socket(rd), []byte("left by a dead worker"), 0o644); err != nil {
		t.Fatal(err)
	}
	s, err := Listen(rd, &fakeControl{})
	if err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(Socket(rd))
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode()&os.ModeSocket == 0 || st.Mode().Perm() != 0o600 {
		t.Errorf("control socket mode %v, want a socket with 0600", st.Mode())
	}
	s.Close()
	if _, err := os.Stat(Socket(rd)); !os.IsNotExist(err) {
		t.Errorf("socket left after Close: %v", err)
	}
}

func TestCheckPeer(t *testing.T) {
	if err := CheckPeer(PeerCred{PID: 7, UID: 1000}, 1000); err != nil {
		t.Errorf("own uid refused: %v", err)
	}
	err := CheckPeer(PeerCred{PID: 7, UID: 1001}, 1000)
	if err == nil || !strings.Contains(err.Error(), "uid 1001") {
		t.Errorf("other uid: %v, want a refusal naming uid 1001", err)
	}
	if err := CheckPeer(PeerCred{UID: 0}, 1000); err == nil {
		t.Error("root's connection to another user's run accepted")
	}
}

// A connection from this process's own uid is served, and the kernel's
// credentials are what CheckPeer is given.
func TestPeerCredOfOwnConnection(t *testing.T) {
	s, ctl, rd := listen(t)
	c, r := dialRaw(t, rd)
	c.Write([]byte(`{"cmd":"checkpoint"}` + "\n"))
	if m := readReply(t, r); !m.OK || m.Reply != "checkpoint" {
		t.Fatalf("reply %+v", m)
	}
	if ctl.got() != "checkpoint" {
		t.Errorf("control got %q", ctl.got())
	}
	s.mu.Lock()
	refused := s.refused
	s.mu.Unlock()
	if refused != 0 {
		t.Errorf("own connection refused")
	}
}

// Malformed messages get an error reply naming the line; the connection
// and the worker go on. A line that is too long is skipped.
func TestMalformedMessages(t *testing.T) {
	_, ctl, rd := listen(t)
	c, r := dialRaw(t, rd)
	for _, bad := range []string{`not json`, `{"cmd":"explode"}`, `{"cmd":1}`, `{}`, `{"cmd":"pause","x":1}`, `{"cmd":"pause"} {"cmd":"stop"}`, `[]`} {
		c.Write([]byte(bad + "\n"))
		if m := readReply(t, r); m.Error == "" || m.OK {
			t.Errorf("%s: reply %+v, want an error", bad, m)
		}
	}
	c.Write([]byte(`{"cmd":"pause"}` + "\n"))
	if m := readReply(t, r); !m.OK {
		t.Fatalf("pause after malformed lines: %+v", m)
	}
	if ctl.got() != "pause" {
		t.Errorf("control got %q, want only pause", ctl.got())
	}
	c.Write([]byte(strings.Repeat("x", maxLine+10) + "\n"))
	if m := readReply(t, r); !strings.Contains(m.Error, "longer than") {
		t.Errorf("long line: %+v", m)
	}
	c.Write([]byte(`{"cmd":"stop"}` + "\n"))
	if m := readReply(t, r); !m.OK {
		t.Fatalf("stop after a long line: %+v", m)
	}
	// The worker still serves others.
	c2, r2 := dialRaw(t, rd)
	c2.Write([]byte(`{"cmd":"resume"}` + "\n"))
	if m := readReply(t, r2); !m.OK {
		t.Fatalf("new connection after a bad one: %+v", m)
	}
}

// Every viewer sees every event, in order, decoded as sent (NaN included).
func TestBroadcastToSeveralViewers(t *testing.T) {
	s, _, rd := listen(t)
	var conns []*Conn
	for range 3 {
		c, err := Dial(rd)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		conns = append(conns, c)
	}
	for i := 0; s.Viewers() < 3; i++ {
		if i > 10000 {
			t.Fatalf("%d viewers connected, want 3", s.Viewers())
		}
		time.Sleep(time.Millisecond)
	}
	sent := []engine.Event{
		engine.LogEvent{Text: "hello"},
		engine.StepEvent{Step: 1, TotalSteps: 3, Loss: 2.5, LR: 1e-3, GradNorm: 0.5, Elapsed: time.Second},
		engine.StepEvent{Step: 2, TotalSteps: 3, Loss: math.NaN(), GradNorm: math.Inf(1)},
		engine.EvalEvent{Step: 2, Loss: 2},
		engine.SampleEvent{Step: 2, Prompt: "p", Text: "t"},
		engine.CheckpointEvent{Step: 2, Path: "/x"},
		engine.DoneEvent{Step: 3, Stopped: true, FinalDir: "/r"},
	}
	for _, ev := range sent {
		s.Broadcast(ev)
	}
	for i, c := range conns {
		for j, want := range sent {
			got := <-c.Events
			if st, ok := got.(engine.StepEvent); ok && j == 2 {
				if !math.IsNaN(st.Loss) || !math.IsNaN(st.GradNorm) || st.Step != 2 {
					t.Errorf("viewer %d: NaN step came back as %+v", i, st)
				}
				continue
			}
			if js1, js2 := mustJSON(got), mustJSON(want); js1 != js2 {
				t.Errorf("viewer %d event %d: got %s, want %s", i, j, js1, js2)
			}
		}
	}
	s.Close()
	for _, c := range conns {
		if _, open := <-c.Events; open {
			t.Error("events still open after the worker closed")
		}
	}
}

func mustJSON(v any) string { js, _ := json.Marshal(v); return string(js) }

func FuzzParseRequest(f *testing.F) {
	f.Add([]byte(`{"cmd":"pause"}`))
	f.Add([]byte(`{"cmd":"x"}`))
	f.Fuzz(func(t *testing.T, line []byte) {
		req, err := ParseRequest(line)
		if err == nil && req.Cmd != CmdPause && req.Cmd != CmdResume && req.Cmd != CmdCheckpoint && req.Cmd != CmdStop {
			t.Fatalf("accepted %q as %+v", line, req)
		}
	})
}

func FuzzDecodeEvent(f *testing.F) {
	js, _ := EncodeEvent(engine.StepEvent{Step: 1, Loss: 1})
	f.Add(js)
	f.Add([]byte(`{"event":"done","run_error":"x"}`))
	f.Fuzz(func(t *testing.T, line []byte) {
		ev, err := DecodeEvent(line)
		if err == nil && ev == nil {
			t.Fatal("nil event without an error")
		}
	})
}

// A viewer that connects after the run logged its first lines (the data
// summary, the backend) gets the newest of them first, then live events.
func TestLateViewerGetsTheLog(t *testing.T) {
	s, _, rd := listen(t)
	for i := 1; i <= keepLogs+3; i++ {
		s.Broadcast(engine.LogEvent{Text: fmt.Sprintf("line %d", i)})
	}
	s.Broadcast(engine.StepEvent{Step: 1, Loss: 1}) // not kept: steps are replayed from metrics.jsonl
	c, err := Dial(rd)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for i := 4; i <= keepLogs+3; i++ {
		if ev := <-c.Events; ev != (engine.LogEvent{Text: fmt.Sprintf("line %d", i)}) {
			t.Fatalf("backlog line %d: %+v", i, ev)
		}
	}
	for i := 0; s.Viewers() < 1; i++ {
		if i > 10000 {
			t.Fatal("the viewer never connected")
		}
		time.Sleep(time.Millisecond)
	}
	s.Broadcast(engine.StepEvent{Step: 2, Loss: 1})
	if ev := <-c.Events; ev.(engine.StepEvent).Step != 2 {
		t.Fatalf("after the backlog: %+v, want step 2", ev)
	}
}

// LastSessionLines quotes the newest worker's part of the log (after the
// last SessionMarker), its last n lines that say something.
func TestLastSessionLines(t *testing.T) {
	path := filepath.Join(t.TempDir(), "worker.log")
	log := SessionMarker + "2026-12-07T16:00:00Z\nstep 1\nold failure\n" +
		SessionMarker + "2026-12-07T17:00:00Z\nwhet train: refused:\n  train.lr: 1 → 2\n\nput them back\n"
	if err := os.WriteFile(path, []byte(log), 0o600); err != nil {
		t.Fatal(err)
	}
	if got, want := LastSessionLines(path, 8), "whet train: refused:\n  train.lr: 1 → 2\nput them back"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
	if got, want := LastSessionLines(path, 2), "  train.lr: 1 → 2\nput them back"; got != want {
		t.Errorf("n=2: got %q, want %q", got, want)
	}
	if err := os.WriteFile(path, []byte(SessionMarker+"x\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if got := LastSessionLines(path, 8); !strings.Contains(got, "wrote nothing") {
		t.Errorf("empty session: %q", got)
	}
}

// A pause sent by one viewer reaches every viewer, and one that connects
// while the run is paused is told so: a second SSH session following the
// run said "● training" over a run another session had paused.
func TestPauseReachesEveryViewer(t *testing.T) {
	s, ctl, rd := listen(t)
	a, err := Dial(rd)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := Dial(rd)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	for i := 0; s.Viewers() < 2; i++ {
		if i > 10000 {
			t.Fatalf("%d viewers connected, want 2", s.Viewers())
		}
		time.Sleep(time.Millisecond)
	}
	next := func(c *Conn, who string) engine.Event {
		t.Helper()
		select {
		case ev := <-c.Events:
			return ev
		case <-time.After(5 * time.Second):
			t.Fatalf("%s: no event", who)
			return nil
		}
	}
	a.Pause()
	for _, v := range []struct {
		c   *Conn
		who string
	}{{a, "the viewer that paused"}, {b, "the other viewer"}} {
		if ev := next(v.c, v.who); ev != (engine.PauseEvent{Paused: true}) {
			t.Fatalf("%s got %#v, want the pause", v.who, ev)
		}
	}
	late, err := Dial(rd)
	if err != nil {
		t.Fatal(err)
	}
	defer late.Close()
	if ev := next(late, "a viewer connecting while paused"); ev != (engine.PauseEvent{Paused: true}) {
		t.Fatalf("a viewer connecting while paused got %#v first, want the pause", ev)
	}
	b.Resume()
	for _, c := range []*Conn{a, b, late} {
		if ev := next(c, "after the resume"); ev != (engine.PauseEvent{Paused: false}) {
			t.Fatalf("after the resume a viewer got %#v", ev)
		}
	}
	if got := ctl.got(); got != "pause,resume" {
		t.Fatalf("the run was told %q, want pause,resume", got)
	}
	late2, err := Dial(rd)
	if err != nil {
		t.Fatal(err)
	}
	defer late2.Close()
	for i := 0; s.Viewers() < 4; i++ {
		if i > 10000 {
			t.Fatalf("%d viewers connected, want 4", s.Viewers())
		}
		time.Sleep(time.Millisecond)
	}
	s.Broadcast(engine.LogEvent{Text: "live"})
	if ev := next(late2, "a viewer connecting after the resume"); ev != (engine.LogEvent{Text: "live"}) {
		t.Fatalf("a viewer connecting after the resume got %#v first, want the live line", ev)
	}
}

// An event broadcast as soon as Dial returns reaches the viewer. The
// connect completes in the kernel before the worker has registered the
// viewer, and an event broadcast in that gap was lost: a viewer attached
// from the studio's runs page showed step 5 of a run paused at step 6
// (TestServeTwoViewersSeeTheSameSteps, under load), since its history had
// been read before step 6 and the live step 6 went out in the gap. Dial
// now returns once the worker's hello says the viewer is registered.
func TestEventRightAfterDialArrives(t *testing.T) {
	s, _, rd := listen(t)
	for i := 1; i <= 50; i++ {
		c, err := Dial(rd)
		if err != nil {
			t.Fatal(err)
		}
		s.Broadcast(engine.StepEvent{Step: i, TotalSteps: 50, Loss: 1})
		select {
		case ev, ok := <-c.Events:
			if st, isStep := ev.(engine.StepEvent); !ok || !isStep || st.Step != i {
				t.Fatalf("viewer %d got %#v (open %v), want step %d", i, ev, ok, i)
			}
		case <-time.After(60 * time.Second):
			t.Fatalf("viewer %d never got the step broadcast right after its Dial returned", i)
		}
		c.Close()
	}
}
