package worker

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sync"
	"time"

	"whet/engine"
)

// Socket is the control socket's path in run folder rd.
func Socket(rd engine.RunDir) string { return filepath.Join(rd.Path(), SocketName) }

// Log is the worker's log in run folder rd.
func Log(rd engine.RunDir) string { return filepath.Join(rd.Path(), LogName) }

// maxSocketPath is the longest path a Unix socket can be bound to
// (sun_path is 108 bytes with its terminating NUL on Linux).
const maxSocketPath = 107

// clientQueue is how many lines may wait for a slow viewer; one that
// falls this far behind is disconnected rather than slowing the run.
const clientQueue = 1024

// Server is a worker's control socket: it fans the run's events out to
// every connected viewer and passes their commands to the run.
type Server struct {
	ln   *net.UnixListener
	path string
	ctl  engine.RunControl
	uid  int

	mu      sync.Mutex
	clients map[*client]struct{}
	closed  bool
	wg      sync.WaitGroup
	// Refused counts connections refused for their peer (tests read it).
	refused int
	// logs is the run's newest log lines: a viewer that connects late
	// gets them first (they are in no file of the run folder to replay).
	logs [][]byte
	// paused: a viewer paused the run and none resumed it since; a viewer
	// that connects meanwhile is told so after the log lines.
	paused bool
}

// keepLogs is how many log lines a late viewer is given.
const keepLogs = 20

type client struct {
	conn *net.UnixConn
	out  chan []byte
	once sync.Once
}

// close ends c's queue; its writer sends what is queued, then hangs up.
func (c *client) close() { c.once.Do(func() { close(c.out) }) }

// writeTimeout is how long a viewer may leave one line unread before it is
// disconnected.
const writeTimeout = 10 * time.Second

// Listen creates run folder rd's control socket, mode 0600, replacing one
// a dead worker left (the caller holds the folder's lock, so no live
// worker owns it), and starts accepting viewers.
func Listen(rd engine.RunDir, ctl engine.RunControl) (*Server, error) {
	path := Socket(rd)
	if len(path) > maxSocketPath {
		return nil, fmt.Errorf("control socket %s: the path is %d bytes, longer than the %d a Unix socket allows; use a shorter runs folder", path, len(path), maxSocketPath)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("control socket %s: remove the old one: %w", path, err)
	}
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("control socket: %w", err)
	}
	ln.SetUnlinkOnClose(true)
	// Between bind and chmod the umask's mode applies: a peer that gets in
	// then is still refused by its uid.
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return nil, fmt.Errorf("control socket %s: %w", path, err)
	}
	s := &Server{ln: ln, path: path, ctl: ctl, uid: os.Getuid(), clients: map[*client]struct{}{}}
	s.wg.Add(1)
	go s.accept()
	return s, nil
}

// Path is the socket's path.
func (s *Server) Path() string { return s.path }

func (s *Server) accept() {
	defer s.wg.Done()
	for {
		conn, err := s.ln.AcceptUnix()
		if err != nil {
			return // closed
		}
		peer, err := peerCred(conn)
		if err == nil {
			err = CheckPeer(peer, s.uid)
		}
		if err != nil {
			s.mu.Lock()
			s.refused++
			s.mu.Unlock()
			writeMessage(conn, Message{Error: err.Error()})
			conn.Close()
			continue
		}
		c := &client{conn: conn, out: make(chan []byte, clientQueue)}
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			conn.Close()
			return
		}
		s.clients[c] = struct{}{}
		// Under the lock that Broadcast takes: the hello (Dial waits for
		// it) and the backlog come before any line broadcast after it.
		c.out <- helloLine
		for _, line := range s.logs {
			c.out <- line
		}
		if s.paused {
			js, _ := EncodeEvent(engine.PauseEvent{Paused: true})
			c.out <- append(js, '\n')
		}
		s.mu.Unlock()
		s.wg.Add(2)
		go s.write(c)
		go s.read(c)
	}
}

func writeMessage(conn net.Conn, m Message) {
	js, _ := json.Marshal(m)
	conn.Write(append(js, '\n'))
}

func (s *Server) write(c *client) {
	defer s.wg.Done()
	defer c.conn.Close()
	for line := range c.out {
		c.conn.SetWriteDeadline(time.Now().Add(writeTimeout))
		if _, err := c.conn.Write(line); err != nil {
			c.conn.Close()
			s.drop(c)
			for range c.out { // drain until drop closes it
			}
			return
		}
	}
}

// send queues line for c without ever blocking the run.
func (s *Server) send(c *client, line []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.clients[c]; !ok || s.closed {
		return
	}
	select {
	case c.out <- line:
	default: // too slow: let it go
		delete(s.clients, c)
		c.close()
	}
}

func (s *Server) drop(c *client) {
	s.mu.Lock()
	if _, ok := s.clients[c]; ok {
		delete(s.clients, c)
		c.close()
	}
	s.mu.Unlock()
}

func (s *Server) reply(c *client, m Message) {
	js, _ := json.Marshal(m)
	s.send(c, append(js, '\n'))
}

func (s *Server) read(c *client) {
	defer s.wg.Done()
	defer s.drop(c)
	r := bufio.NewReaderSize(c.conn, 4096)
	for n := 1; ; n++ {
		line, err := readLine(r)
		if errors.Is(err, errLineTooLong) {
			s.reply(c, Message{Error: fmt.Sprintf("line %d: longer than %d bytes; skipped", n, maxLine)})
			continue
		}
		if err != nil {
			return
		}
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		s.reply(c, s.handle(n, line))
	}
}

var errLineTooLong = errors.New("line too long")

func readLine(r *bufio.Reader) ([]byte, error) {
	var line []byte
	tooLong := false
	for {
		part, isPrefix, err := r.ReadLine()
		if err != nil {
			return nil, err
		}
		if !tooLong {
			line = append(line, part...)
			if len(line) > maxLine {
				tooLong, line = true, nil // the rest is read and dropped
			}
		}
		if !isPrefix {
			if tooLong {
				return nil, errLineTooLong
			}
			return line, nil
		}
	}
}

// handle answers one request line; n is its line number on the connection.
func (s *Server) handle(n int, line []byte) Message {
	req, err := ParseRequest(line)
	if err != nil {
		return Message{Error: fmt.Sprintf("line %d: %v", n, err)}
	}
	switch req.Cmd {
	case CmdPause, CmdResume:
		paused := req.Cmd == CmdPause
		if paused {
			s.ctl.Pause()
		} else {
			s.ctl.Resume()
		}
		// Every viewer shows the run's state, not only the one whose key
		// changed it: the others said "training" over a paused run.
		s.mu.Lock()
		s.paused = paused
		s.mu.Unlock()
		s.Broadcast(engine.PauseEvent{Paused: paused})
	case CmdCheckpoint:
		s.ctl.Checkpoint()
	case CmdStop:
		s.ctl.Stop() // a stop also ends a pause
		s.mu.Lock()
		s.paused = false
		s.mu.Unlock()
	}
	return Message{Reply: req.Cmd, OK: true}
}

// ParseRequest reads one request line, naming what is wrong with it.
func ParseRequest(line []byte) (Request, error) {
	var req Request
	dec := json.NewDecoder(bytes.NewReader(line))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		return Request{}, fmt.Errorf("malformed request (want {\"cmd\":\"pause|resume|checkpoint|stop\"}): %v", err)
	}
	if dec.More() {
		return Request{}, errors.New("malformed request: more than one JSON value on the line")
	}
	switch req.Cmd {
	case CmdPause, CmdResume, CmdCheckpoint, CmdStop:
		return req, nil
	case "":
		return Request{}, errors.New(`request without "cmd" (pause, resume, checkpoint or stop)`)
	}
	return Request{}, fmt.Errorf("unknown cmd %q (pause, resume, checkpoint or stop)", req.Cmd)
}

// Broadcast sends ev to every connected viewer; it never blocks.
func (s *Server) Broadcast(ev engine.Event) {
	js, ok := EncodeEvent(ev)
	if !ok {
		return
	}
	line := append(js, '\n')
	s.mu.Lock()
	if _, ok := ev.(engine.LogEvent); ok {
		s.logs = append(s.logs, line)
		if len(s.logs) > keepLogs {
			s.logs = s.logs[len(s.logs)-keepLogs:]
		}
	}
	cs := make([]*client, 0, len(s.clients))
	for c := range s.clients {
		cs = append(cs, c)
	}
	s.mu.Unlock()
	for _, c := range cs {
		s.send(c, line)
	}
}

// Viewers is how many viewers are connected now.
func (s *Server) Viewers() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.clients)
}

// Close stops accepting, lets queued lines go out, disconnects every
// viewer and removes the socket.
func (s *Server) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	err := s.ln.Close()
	cs := make([]*client, 0, len(s.clients))
	for c := range s.clients {
		cs = append(cs, c)
	}
	s.mu.Unlock()
	for _, c := range cs {
		// The writer sends what is queued, then hangs up; the reader
		// stops at once.
		c.close()
		c.conn.CloseRead()
	}
	s.wg.Wait()
	return err
}
