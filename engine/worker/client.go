package worker

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net"
	"sync"
	"time"

	"whet/engine"
)

// Conn is a viewer's connection to a worker: live events in, commands out.
type Conn struct {
	conn *net.UnixConn
	mu   sync.Mutex
	// done is closed by Close, so a reader blocked on a full Events queue
	// nobody reads any more ends.
	done chan struct{}
	once sync.Once
	// Events carries the run's live events; it is closed when the worker
	// goes away (or Close is called). Replies and errors from the worker
	// arrive on Replies.
	Events  <-chan engine.Event
	Replies <-chan Message
}

// Dial connects to run folder rd's worker.
func Dial(rd engine.RunDir) (*Conn, error) {
	c, err := net.DialUnix("unix", nil, &net.UnixAddr{Name: Socket(rd), Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("attach to %s: %w", rd.Path(), err)
	}
	events := make(chan engine.Event, clientQueue)
	replies := make(chan Message, 16)
	done := make(chan struct{})
	heard := make(chan struct{}) // closed at the worker's first line, or its end
	var once sync.Once
	hear := func() { once.Do(func() { close(heard) }) }
	go func() {
		defer close(events)
		defer close(replies)
		defer hear()
		r := bufio.NewReaderSize(c, 4096)
		for {
			line, err := readLine(r)
			if err != nil {
				return
			}
			hear()
			var m Message
			if json.Unmarshal(line, &m) != nil || m.Event == helloEvent {
				continue
			}
			if m.Event == "" {
				select {
				case replies <- m:
				default:
				}
				continue
			}
			if ev, err := DecodeEvent(line); err == nil {
				select {
				case events <- ev:
				case <-done:
					return
				}
			}
		}
	}()
	// The connect completes in the kernel before the worker has accepted
	// and registered this viewer: an event it broadcast in between never
	// came, and AttachContext, which reads the run's history after Dial,
	// could miss it in the files too (a viewer showed step 5 of a run
	// paused at step 6, whose StepEvent went out in that gap). The hello,
	// the first line the worker queues for a registered viewer, ends the
	// gap. A worker from before the hello says nothing until its next
	// event: Dial then waits helloWait and goes on as it did.
	t := time.NewTimer(helloWait)
	defer t.Stop()
	select {
	case <-heard:
	case <-t.C:
	}
	return &Conn{conn: c, Events: events, Replies: replies, done: done}, nil
}

// helloWait bounds Dial's wait for the worker's hello; a worker answers
// at once, so only one from before the hello (or a stalled machine)
// makes Dial wait this long.
const helloWait = 5 * time.Second

// Send sends one command (CmdPause, …); the worker's answer comes on Replies.
func (c *Conn) Send(cmd string) error {
	js, _ := json.Marshal(Request{Cmd: cmd})
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, err := c.conn.Write(append(js, '\n')); err != nil {
		return fmt.Errorf("send %s to the worker: %w", cmd, err)
	}
	return nil
}

// Pause, Resume, Checkpoint and Stop make a Conn an engine.RunControl, so
// a viewer steers a detached run as it steers one in its own process.
func (c *Conn) Pause()      { c.Send(CmdPause) }
func (c *Conn) Resume()     { c.Send(CmdResume) }
func (c *Conn) Checkpoint() { c.Send(CmdCheckpoint) }
func (c *Conn) Stop()       { c.Send(CmdStop) }

var _ engine.RunControl = (*Conn)(nil)

// Close disconnects; the run goes on.
func (c *Conn) Close() error {
	c.once.Do(func() { close(c.done) })
	return c.conn.Close()
}
