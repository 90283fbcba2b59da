package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	tea "charm.land/bubbletea/v2"
	"charm.land/ssh"
	"charm.land/wish/v2"
	"charm.land/wish/v2/bubbletea"

	gossh "golang.org/x/crypto/ssh"

	"whet/tui"
)

func init() {
	register("serve", "serve the studio over SSH to the keys in an authorized_keys file: whet serve [--listen 127.0.0.1:2222]", runServe)
}

// serveConfig is what whet serve needs; its flags fill it.
type serveConfig struct {
	listen         string
	authorizedKeys string
	hostKey        string
	idleTimeout    time.Duration
	maxSessions    int
	modelsDir      string
	runsDir        string
	dataDirs       []string
}

func runServe(args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	home, _ := os.UserHomeDir()
	confDir, _ := os.UserConfigDir()
	var c serveConfig
	fs.StringVar(&c.listen, "listen", "127.0.0.1:2222", "address to listen on (loopback unless you say otherwise)")
	fs.StringVar(&c.authorizedKeys, "authorized-keys", filepath.Join(home, ".ssh", "authorized_keys"), "the public keys that may connect (OpenSSH authorized_keys format); no passwords")
	fs.StringVar(&c.hostKey, "host-key", filepath.Join(confDir, "whet", "ssh_host_ed25519_key"), "the server's private host key, made (mode 0600) on the first start")
	fs.DurationVar(&c.idleTimeout, "idle-timeout", 30*time.Minute, "close a connection idle this long (its runs go on)")
	fs.IntVar(&c.maxSessions, "max-sessions", 20, "the most sessions at once; more are told to try later")
	defModels := "models"
	if home != "" {
		defModels = filepath.Join(home, "models") // as whet studio's --models-dir
	}
	fs.StringVar(&c.modelsDir, "models", defModels, "folder of local models for the studio (whet studio's --models-dir)")
	fs.StringVar(&c.runsDir, "runs", "runs", "the runs folder")
	dataDirs := fs.String("data", ".,testdata", "comma-separated folders the data page lists")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	c.dataDirs = strings.Split(*dataDirs, ",")
	ctx, cancel := signal.NotifyContext(context.Background(), stopSignals...)
	defer cancel()
	return serveStudio(ctx, c, stdout)
}

// serveStudio runs the SSH server until ctx ends. It prints the address
// it listens on (the port is chosen when --listen ends in :0).
func serveStudio(ctx context.Context, c serveConfig, stdout io.Writer) error {
	if c.maxSessions < 1 {
		return fmt.Errorf("--max-sessions %d: at least 1", c.maxSessions)
	}
	if _, err := os.Stat(c.authorizedKeys); err != nil {
		return fmt.Errorf("--authorized-keys %s: %w (whet serve lets in only the keys listed there)", c.authorizedKeys, err)
	}
	keys, bad, err := readAuthorizedKeys(c.authorizedKeys)
	if err != nil {
		return fmt.Errorf("--authorized-keys: %w", err)
	}
	for _, b := range bad {
		fmt.Fprintf(stdout, "whet serve: %s\n", b)
	}
	for _, k := range keys {
		if !k.expiry.IsZero() && time.Now().After(k.expiry) {
			fmt.Fprintf(stdout, "whet serve: %s line %d: expiry-time %s has passed; this key is refused\n", c.authorizedKeys, k.line, k.expiry.Format(time.RFC3339))
		}
	}
	if len(keys) == 0 {
		return fmt.Errorf("--authorized-keys %s lists no public key whet serve accepts: add the line of your key's .pub file (ssh-ed25519 AAAA… you@host)", c.authorizedKeys)
	}
	if err := os.MkdirAll(filepath.Dir(c.hostKey), 0o700); err != nil {
		return fmt.Errorf("host key folder: %w", err)
	}
	if st, err := os.Stat(c.hostKey); err == nil && st.Mode().Perm()&0o077 != 0 {
		return fmt.Errorf("host key %s can be read by others (mode %04o); chmod 600 it", c.hostKey, st.Mode().Perm())
	}
	// Lines written while serving come from the connections' goroutines.
	var logMu sync.Mutex
	logf := func(format string, a ...any) {
		logMu.Lock()
		defer logMu.Unlock()
		fmt.Fprintf(stdout, "whet serve: "+format+"\n", a...)
	}
	var sessions, conns atomic.Int64
	srv, err := wish.NewServer(
		wish.WithHostKeyPath(c.hostKey),
		// The file is read at every attempt, so keys added or removed
		// take effect at once; a line that is not a key is skipped, as
		// OpenSSH's sshd does (wish's own reader refused every key
		// after such a line). A line's from= and expiry-time= are
		// checked against the client; no-port-forwarding and the other
		// no-* of features this server never offers already hold
		// (authorizedKey.take); a line with an option whet serve cannot
		// enforce (command=, no-pty, ...) lets no one in.
		//
		// A refused key is named on the server's output (the client
		// only hears "Permission denied (publickey)"), with the reason.
		wish.WithPublicKeyAuth(func(ctx ssh.Context, key ssh.PublicKey) bool {
			keys, _, err := readAuthorizedKeys(c.authorizedKeys)
			if err != nil {
				logf("cannot read --authorized-keys (%v); refused key %s from %s", err, gossh.FingerprintSHA256(key), ctx.RemoteAddr())
				return false
			}
			now := time.Now()
			listed := 0
			for _, k := range keys {
				if ssh.KeysEqual(key, k.key) {
					if k.permits(ctx.RemoteAddr(), now) {
						return true
					}
					if listed == 0 {
						listed = k.line
					}
				}
			}
			if listed > 0 {
				logf("refused key %s from %s: %s line %d lists it, but its from= or expiry-time= refuses it now", gossh.FingerprintSHA256(key), ctx.RemoteAddr(), c.authorizedKeys, listed)
			} else {
				logf("refused key %s from %s: not in %s", gossh.FingerprintSHA256(key), ctx.RemoteAddr(), c.authorizedKeys)
			}
			return false
		}),
		wish.WithIdleTimeout(c.idleTimeout),
		wish.WithMiddleware(
			bubbletea.MiddlewareWithProgramHandler(func(s ssh.Session) *tea.Program {
				// No signal handler: a Ctrl-C to whet serve reached every
				// session's program as its own interrupt, which ended each
				// studio with "ERROR app exit with error ... program was
				// interrupted" on the server's output. The server's stop
				// quits the studios instead.
				opts := append([]tea.ProgramOption{tea.WithoutSignalHandler()}, bubbletea.MakeOptions(s)...)
				p := tea.NewProgram(tui.New(servedStudioOptions(c, s.Context())), opts...)
				go func() {
					select {
					case <-ctx.Done():
						p.Quit()
					case <-s.Context().Done():
					}
				}()
				return p
			}),
			// Outermost: a session over the bound is told so and closed
			// before any studio is built for it.
			func(next ssh.Handler) ssh.Handler {
				return func(s ssh.Session) {
					key := "no key"
					if k := s.PublicKey(); k != nil {
						key = gossh.FingerprintSHA256(k)
					}
					if n := sessions.Add(1); n > int64(c.maxSessions) {
						sessions.Add(-1)
						logf("refused a session for key %s from %s: %d sessions already (--max-sessions)", key, s.RemoteAddr(), c.maxSessions)
						wish.Fatalf(s, "whet serve: %d sessions already (--max-sessions); try again later\r\n", c.maxSessions)
						return
					}
					defer sessions.Add(-1)
					// Who is in, and when they leave: the server's output
					// said nothing of the sessions it let in.
					size := "no pty"
					if p, _, ok := s.Pty(); ok {
						size = fmt.Sprintf("%d×%d", p.Window.Width, p.Window.Height)
					}
					start := time.Now()
					logf("session for key %s from %s (%s)", key, s.RemoteAddr(), size)
					defer func() {
						logf("session for key %s from %s ended after %s", key, s.RemoteAddr(), time.Since(start).Round(time.Second))
					}()
					next(s)
					if ctx.Err() != nil {
						// The studio has quit and given the terminal back:
						// say why the connection closes (it closed with
						// a blank screen) and that the runs go on.
						fmt.Fprint(s, "whet serve stopped on the server. Runs started in this session go on training;\r\n"+
							"ssh in again once it is back, or follow them there with whet attach.\r\n")
					}
				}
			},
		),
	)
	if err != nil {
		return fmt.Errorf("ssh server: %w", err)
	}
	// Connections that have not opened a session yet are bounded too.
	srv.ConnCallback = func(_ ssh.Context, conn net.Conn) net.Conn {
		if conns.Add(1) > int64(4*c.maxSessions) {
			conns.Add(-1)
			return nil
		}
		return &countedConn{Conn: conn, n: &conns}
	}
	if err := os.Chmod(c.hostKey, 0o600); err != nil {
		return fmt.Errorf("host key: %w", err)
	}
	ln, err := net.Listen("tcp", c.listen)
	if err != nil {
		return fmt.Errorf("--listen %s: %w", c.listen, err)
	}
	fmt.Fprintf(stdout, "whet serve: listening on %s (keys from %s; host key %s)\n", ln.Addr(), c.authorizedKeys, c.hostKey)
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	select {
	case err := <-done:
		return fmt.Errorf("ssh server: %w", err)
	case <-ctx.Done():
	}
	shut, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(shut); err != nil && !errors.Is(err, ssh.ErrServerClosed) {
		srv.Close()
	}
	return nil
}

// countedConn gives its place back when closed.
type countedConn struct {
	net.Conn
	n    *atomic.Int64
	once atomic.Bool
}

func (c *countedConn) Close() error {
	if c.once.CompareAndSwap(false, true) {
		c.n.Add(-1)
	}
	return c.Conn.Close()
}

// servedStudioOptions is the studio one SSH session gets: the real
// dependencies, as `whet` has them.
func servedStudioOptions(c serveConfig, ctx context.Context) tui.Options {
	opts := tui.Options{ModelsDir: c.modelsDir, RunsDir: c.runsDir, DataDirs: c.dataDirs}
	// Runs started from a session are detached runs (fillStudioDeps): they
	// go on when the connection drops or the server stops. The session's
	// context ends its viewers' connections to them, and its checks.
	fillStudioDeps(&opts)
	opts.Context = ctx
	return opts
}
