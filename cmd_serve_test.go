package main

import (
	"bytes"
	"context"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/creack/pty"
	gossh "golang.org/x/crypto/ssh"
)

// syncBuffer is a bytes.Buffer safe to write from one goroutine while
// the test reads it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

type sshFixture struct {
	dir, addr, port string
	runs            string // the sessions' runs folder
	listed, other   string // private key files
	hostKey         string
	out             *syncBuffer // whet serve's output
	stop            func()      // stops whet serve (as Ctrl-C on it does)
}

// startServe makes two client keys (one listed in authorized_keys), then
// runs whet serve on a free loopback port until the test ends.
func startServe(t *testing.T, maxSessions int) *sshFixture {
	t.Helper()
	return startServeRuns(t, maxSessions, "")
}

// startServeRuns is startServe with the sessions' runs folder (default:
// runs in the fixture's folder).
func startServeRuns(t *testing.T, maxSessions int, runsDir string) *sshFixture {
	t.Helper()
	if _, err := exec.LookPath("ssh"); err != nil {
		t.Skip("no OpenSSH client (tools/setup/openssh.sh installs it)")
	}
	f := &sshFixture{dir: t.TempDir(), runs: runsDir}
	if f.runs == "" {
		f.runs = filepath.Join(f.dir, "runs")
	}
	f.listed, f.other = filepath.Join(f.dir, "listed"), filepath.Join(f.dir, "other")
	for _, k := range []string{f.listed, f.other} {
		if out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", k).CombinedOutput(); err != nil {
			t.Fatalf("ssh-keygen: %v\n%s", err, out)
		}
	}
	pub, err := os.ReadFile(f.listed + ".pub")
	if err != nil {
		t.Fatal(err)
	}
	auth := filepath.Join(f.dir, "authorized_keys")
	os.WriteFile(auth, append([]byte("# whet test\n"), pub...), 0o600)
	f.hostKey = filepath.Join(f.dir, "host", "key")
	ctx, cancel := context.WithCancel(context.Background())
	out := &syncBuffer{}
	f.out, f.stop = out, cancel
	errc := make(chan error, 1)
	go func() {
		errc <- serveStudio(ctx, serveConfig{listen: "127.0.0.1:0", authorizedKeys: auth, hostKey: f.hostKey,
			idleTimeout: time.Minute, maxSessions: maxSessions, runsDir: f.runs,
			modelsDir: filepath.Join(f.dir, "models"), dataDirs: []string{f.dir}}, out)
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-errc; err != nil {
			t.Errorf("whet serve: %v", err)
		}
	})
	waitFor(t, "whet serve to listen", func() bool {
		select {
		case err := <-errc:
			t.Fatalf("whet serve ended: %v", err)
		default:
		}
		return strings.Contains(out.String(), "listening on ")
	})
	line := out.String()
	f.addr = strings.Fields(line[strings.Index(line, "listening on ")+len("listening on "):])[0]
	f.port = f.addr[strings.LastIndex(f.addr, ":")+1:]
	return f
}

// ssh is the OpenSSH client against the fixture, with no user config and
// no known_hosts; extra options come first.
func (f *sshFixture) ssh(ctx context.Context, extra ...string) *exec.Cmd {
	args := append([]string{"-F", "/dev/null", "-p", f.port, "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
		"-o", "BatchMode=yes", "-o", "ConnectTimeout=10", "-o", "IdentitiesOnly=yes", "-o", "LogLevel=ERROR"}, extra...)
	return exec.CommandContext(ctx, "ssh", append(args, "whet@127.0.0.1")...)
}

// A listed key gets the studio through a real terminal: PTY, colours,
// the client's size and its resizes; q leaves. The host key was made with
// mode 0600.
func TestServeListedKeyGetsTheStudio(t *testing.T) {
	f := startServe(t, 4)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := f.ssh(ctx, "-tt", "-i", f.listed)
	cmd.Env = append(os.Environ(), "TERM=xterm-256color")
	tty, err := pty.StartWithSize(cmd, &pty.Winsize{Rows: 24, Cols: 80})
	if err != nil {
		t.Fatal(err)
	}
	defer tty.Close()
	out := &syncBuffer{}
	go io.Copy(out, tty)
	waitOutput := func(what, s string) {
		t.Helper()
		for deadline := time.Now().Add(30 * time.Second); !strings.Contains(out.String(), s); time.Sleep(10 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("no %s over ssh; the session showed:\n%q", what, out.String())
			}
		}
	}
	waitOutput("studio", "Choose the base model")
	if !strings.Contains(out.String(), "\x1b[38;") && !strings.Contains(out.String(), "\x1b[3") {
		t.Errorf("no colours in the session:\n%q", out.String())
	}
	// Too small for the studio: it says so; back to 80x24: the studio again.
	pty.Setsize(tty, &pty.Winsize{Rows: 10, Cols: 40})
	waitOutput("too-small notice after a resize", "This one is 40×10")
	pty.Setsize(tty, &pty.Winsize{Rows: 24, Cols: 80})
	io.WriteString(tty, "q")
	if err := cmd.Wait(); err != nil {
		t.Fatalf("ssh: %v\n%q", err, out.String())
	}
	st, err := os.Stat(f.hostKey)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("host key: %v %v, want mode 0600", st, err)
	}
}

// An unlisted key, a password and no authentication at all are refused,
// and the server offers public keys only.
func TestServeRefusesOthers(t *testing.T) {
	f := startServe(t, 4)
	for name, extra := range map[string][]string{
		"unlisted key": {"-i", f.other},
		"password":     {"-o", "PubkeyAuthentication=no", "-o", "PreferredAuthentications=password,keyboard-interactive"},
		"none":         {"-o", "PubkeyAuthentication=no", "-o", "PreferredAuthentications=none"},
	} {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		cmd := f.ssh(ctx, append(extra, "-T")...)
		out, err := cmd.CombinedOutput()
		cancel()
		if err == nil || !strings.Contains(string(out), "Permission denied (publickey)") {
			t.Errorf("%s: %v\n%s; want Permission denied (publickey)", name, err, out)
		}
	}
	// The server names the refused key and why; before, it said nothing,
	// so whoever ran whet serve could not tell a wrong key from no
	// connection at all.
	fp, err := exec.Command("ssh-keygen", "-l", "-f", f.other+".pub").Output()
	if err != nil {
		t.Fatal(err)
	}
	want := "whet serve: refused key " + strings.Fields(string(fp))[1] + " from 127.0.0.1:"
	if log := f.out.String(); !strings.Contains(log, want) || !strings.Contains(log, ": not in "+filepath.Join(f.dir, "authorized_keys")) {
		t.Errorf("whet serve's output has no line for the unlisted key (want %q):\n%s", want, log)
	}
	// An authorized_keys file gone after the start refuses every key,
	// and says so.
	os.Remove(filepath.Join(f.dir, "authorized_keys"))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if out, err := f.ssh(ctx, "-i", f.listed, "-T").CombinedOutput(); err == nil || !strings.Contains(string(out), "Permission denied (publickey)") {
		t.Errorf("listed key with authorized_keys removed: %v\n%s", err, out)
	}
	if log := f.out.String(); !strings.Contains(log, "whet serve: cannot read --authorized-keys (") {
		t.Errorf("whet serve's output does not say it cannot read authorized_keys:\n%s", log)
	}
}

// studioSession is one ssh client in a pty of its own.
type studioSession struct {
	cmd *exec.Cmd
	tty *os.File
	out *syncBuffer
}

func (f *sshFixture) open(t *testing.T, ctx context.Context) *studioSession {
	t.Helper()
	cmd := f.ssh(ctx, "-tt", "-i", f.listed)
	cmd.Env = append(os.Environ(), "TERM=xterm-256color")
	tty, err := pty.StartWithSize(cmd, &pty.Winsize{Rows: 24, Cols: 80})
	if err != nil {
		t.Fatal(err)
	}
	s := &studioSession{cmd: cmd, tty: tty, out: &syncBuffer{}}
	go io.Copy(s.out, tty)
	t.Cleanup(func() { cmd.Process.Kill(); tty.Close() })
	return s
}

func (s *studioSession) wait(t *testing.T, what, text string) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); !strings.Contains(s.out.String(), text); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("no %s; the session showed:\n%q", what, s.out.String())
		}
	}
}

// Up to --max-sessions sessions at once each get the studio; one more is
// told to come back later; once one leaves, a new one gets in.
func TestServeBoundsSessions(t *testing.T) {
	const max = 6
	f := startServe(t, max)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var sessions []*studioSession
	for range max {
		sessions = append(sessions, f.open(t, ctx))
	}
	for _, s := range sessions {
		s.wait(t, "studio", "Choose the base model")
	}
	extra := f.open(t, ctx)
	extra.wait(t, "refusal over the bound", "sessions already")
	extra.cmd.Wait()
	io.WriteString(sessions[0].tty, "q")
	if err := sessions[0].cmd.Wait(); err != nil {
		t.Fatalf("leaving: %v", err)
	}
	// The server's output names each session let in, the one refused
	// and the one that left (it said nothing of them).
	fp := keyFingerprint(t, f.listed+".pub")
	waitFor(t, "the session's end on whet serve's output", func() bool {
		return strings.Contains(f.out.String(), "ended after ")
	})
	out := f.out.String()
	if n := strings.Count(out, "whet serve: session for key "+fp+" from 127.0.0.1:"); n < max {
		t.Errorf("whet serve's output names %d sessions for %s, want %d:\n%s", n, fp, max, out)
	}
	if !strings.Contains(out, "(80×24)") || !strings.Contains(out, "refused a session for key "+fp) || !strings.Contains(out, "sessions already (--max-sessions)") {
		t.Errorf("whet serve's output lacks the sessions' size or the refused session:\n%s", out)
	}
	// The freed place is taken by the next session (bounded retries: the
	// server counts the first one out as its handler returns).
	for try := 0; ; try++ {
		s := f.open(t, ctx)
		for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
			if o := s.out.String(); strings.Contains(o, "Choose the base model") || strings.Contains(o, "sessions already") {
				break
			}
		}
		if strings.Contains(s.out.String(), "Choose the base model") {
			break
		}
		if try == 20 {
			t.Fatalf("no place freed after a session left:\n%q", s.out.String())
		}
	}
}

// Stopping whet serve ends each session with a word on why and that its
// runs go on: the connection closed on a blank screen. The studio quits on
// the server's stop rather than on the server's own Ctrl-C, which reached
// every session's program as an interrupt.
func TestServeStopTellsTheSessions(t *testing.T) {
	f := startServe(t, 4)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	s := f.open(t, ctx)
	s.wait(t, "studio", "Choose the base model")
	f.stop()
	s.wait(t, "the server's goodbye", "whet serve stopped on the server")
	done := make(chan error, 1)
	go func() { done <- s.cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		t.Fatalf("the ssh client did not end after whet serve stopped:\n%q", s.out.String())
	}
	if !strings.Contains(s.out.String(), "go on training") {
		t.Errorf("the goodbye does not say the runs go on:\n%q", s.out.String())
	}
}

// A line of authorized_keys that holds no key is skipped, as OpenSSH's
// sshd skips it, and named when whet serve starts: the keys after it still
// get in (wish's reader refused every key after such a line). A file with
// no key at all is refused at start, not served to nobody.
func TestServeSkipsLinesThatAreNotKeys(t *testing.T) {
	f := startServe(t, 4)
	pub, err := os.ReadFile(f.listed + ".pub")
	if err != nil {
		t.Fatal(err)
	}
	auth := filepath.Join(f.dir, "authorized_keys")
	if err := os.WriteFile(auth, append([]byte("ssh-ed25519 pasted-badly\n"), pub...), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s := f.open(t, ctx)
	s.wait(t, "studio for the key after a line that is not a key", "Choose the base model")

	_, bad, err := readAuthorizedKeys(auth)
	if err != nil || len(bad) != 1 || !strings.Contains(bad[0], auth+" line 1 ") {
		t.Errorf("readAuthorizedKeys: bad %q, %v; want line 1 named", bad, err)
	}
	empty := filepath.Join(f.dir, "no_keys")
	os.WriteFile(empty, []byte("# nothing\nnot a key\n"), 0o600)
	var out bytes.Buffer
	err = serveStudio(ctx, serveConfig{listen: "127.0.0.1:0", authorizedKeys: empty, hostKey: f.hostKey, maxSessions: 1}, &out)
	if err == nil || !strings.Contains(err.Error(), empty+" lists no public key") || !strings.Contains(out.String(), empty+" line 2 ") {
		t.Errorf("serve with no key: %v (printed %q), want a refusal naming the file and its line 2", err, out.String())
	}
}

// The options in front of a key are honoured through the real ssh client:
// a from= that leaves out 127.0.0.1 refuses the key from there, one that
// takes it in lets it in, no-port-forwarding and the other no-* of
// features the server never offers let the key in (and port forwarding
// is refused for every key), no-pty and restrict without pty refuse it,
// and a command= key (whet serve cannot run the command instead of the
// studio) is refused and named at start.
func TestServeAuthorizedKeysOptions(t *testing.T) {
	f := startServe(t, 4)
	pub, err := os.ReadFile(f.listed + ".pub")
	if err != nil {
		t.Fatal(err)
	}
	auth := filepath.Join(f.dir, "authorized_keys")
	refused := func(what string) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		out, err := f.ssh(ctx, "-T", "-i", f.listed).CombinedOutput()
		if err == nil || !strings.Contains(string(out), "Permission denied (publickey)") {
			t.Errorf("%s: %v\n%s; want Permission denied (publickey)", what, err, out)
		}
	}
	for _, c := range []struct {
		options string
		in      bool
	}{
		{`from="10.0.0.0/8"`, false},
		{`from="*,!127.0.0.1"`, false},
		{`from="!127.0.0.0/8,*"`, false},
		{`from="::1"`, false},
		{`expiry-time="20000101"`, false},
		{`command="echo hi"`, false},
		{`restrict`, false},
		{`no-pty`, false},
		{`restrict,pty`, true},
		{`no-port-forwarding,no-X11-forwarding`, true},
		{`no-agent-forwarding,no-user-rc,from="127.0.0.1"`, true},
		{`from="10.0.0.0/8,127.0.0.0/8"`, true},
		{`from="127.0.0.?,!10.0.0.1",expiry-time="29991231"`, true},
	} {
		if err := os.WriteFile(auth, []byte(c.options+" "+string(pub)), 0o600); err != nil {
			t.Fatal(err)
		}
		if !c.in {
			refused(c.options)
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		s := f.open(t, ctx)
		s.wait(t, "studio for "+c.options, "Choose the base model")
		cancel()
	}

	// no-port-forwarding holds for every key: an ordinary key's -W (the
	// direct-tcpip channel -L opens) and -R are refused by the server, and
	// nothing reaches the target.
	os.WriteFile(auth, pub, 0o600)
	target, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer target.Close()
	reached := make(chan struct{}, 1)
	go func() {
		if c, err := target.Accept(); err == nil {
			reached <- struct{}{}
			c.Close()
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"-W", target.Addr().String()}, "stdio forwarding failed"},
		{[]string{"-N", "-o", "ExitOnForwardFailure=yes", "-R", "0:" + target.Addr().String()}, "remote port forwarding failed"},
	} {
		out, err := f.ssh(ctx, append([]string{"-T", "-i", f.listed}, c.args...)...).CombinedOutput()
		if err == nil || !strings.Contains(string(out), c.want) {
			t.Errorf("ssh %v: %v\n%s; want it refused (%q)", c.args, err, out, c.want)
		}
	}
	select {
	case <-reached:
		t.Errorf("a forwarded connection reached %s", target.Addr())
	default:
	}

	os.WriteFile(auth, []byte(`command="echo hi" `+string(pub)), 0o600)
	var out bytes.Buffer
	err = serveStudio(ctx, serveConfig{listen: "127.0.0.1:0", authorizedKeys: auth, hostKey: f.hostKey, maxSessions: 1}, &out)
	if err == nil || !strings.Contains(err.Error(), "lists no public key whet serve accepts") ||
		!strings.Contains(out.String(), auth+" line 1: whet serve cannot enforce command=; this key is not accepted") {
		t.Errorf("serve with only a command= key: %v (printed %q), want it named and refused", err, out.String())
	}

	// An expiry-time that has passed is named at start.
	os.WriteFile(auth, []byte(`expiry-time="20000101Z" `+string(pub)+string(pub)), 0o600)
	sctx, stop := context.WithCancel(ctx)
	started := &syncBuffer{}
	errc := make(chan error, 1)
	go func() {
		errc <- serveStudio(sctx, serveConfig{listen: "127.0.0.1:0", authorizedKeys: auth, hostKey: f.hostKey, maxSessions: 1}, started)
	}()
	waitFor(t, "whet serve to listen", func() bool { return strings.Contains(started.String(), "listening on ") })
	stop()
	if err := <-errc; err != nil {
		t.Errorf("whet serve: %v", err)
	}
	if want := auth + " line 1: expiry-time 2000-01-01T00:00:00Z has passed; this key is refused"; !strings.Contains(started.String(), want) {
		t.Errorf("whet serve printed %q, want %q", started.String(), want)
	}
}

// keyFingerprint is the SHA256 fingerprint of a public key file, as
// whet serve prints it.
func keyFingerprint(t *testing.T, pubFile string) string {
	t.Helper()
	raw, err := os.ReadFile(pubFile)
	if err != nil {
		t.Fatal(err)
	}
	k, _, _, _, err := gossh.ParseAuthorizedKey(raw)
	if err != nil {
		t.Fatal(err)
	}
	return gossh.FingerprintSHA256(k)
}
