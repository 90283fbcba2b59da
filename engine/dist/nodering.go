package dist

import (
	"bufio"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"math"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"whet/engine"
)

// A ring across processes (nodes): node k's ranks are global ranks
// k*L … k*L+L-1, L ranks per node. Inside a node the ring's edges are
// channels; the edge from a node's last rank to the next node's first is
// one TCP connection, which the sending node dials (the address comes from
// the rendezvous roster) and the receiving node accepts on its ring
// listener. Messages on a connection are a uint32 count and that many
// little-endian float32s.

// NewNodeRing makes node node's ranks (one per backend) of a ring over
// nnodes nodes with len(bs) ranks each. ln is this node's ring listener
// (whose port the rendezvous announced); roster gives the next node's
// address. It returns once both of the node's TCP edges are up.
func NewNodeRing(ctx context.Context, bs []engine.Backend, node, nnodes int, ln net.Listener, roster Roster) ([]*Ring, error) {
	if nnodes <= 1 {
		return NewLocalRing(bs), nil
	}
	if len(roster.Addrs) != nnodes {
		return nil, fmt.Errorf("ring: roster of %d nodes for %d", len(roster.Addrs), nnodes)
	}
	L := len(bs)
	ab := newAbortState()
	// Both edges at once: the previous node dials us while we dial the
	// next one.
	type accepted struct {
		c   net.Conn
		err error
	}
	in := make(chan accepted, 1)
	go func() {
		c, err := acceptPrev(ctx, ln, (node+nnodes-1)%nnodes)
		in <- accepted{c, err}
	}()
	out, err := dialNext(ctx, roster.Addrs[(node+1)%nnodes], node)
	a := <-in
	if err != nil || a.err != nil {
		if out != nil {
			out.Close()
		}
		if a.c != nil {
			a.c.Close()
		}
		if err == nil {
			err = a.err
		}
		return nil, err
	}
	ab.onAbort(func() { out.Close(); a.c.Close() })
	edges := make([]chan []float32, L-1) // edge i: local i -> local i+1
	for i := range edges {
		edges[i] = make(chan []float32, 1)
	}
	tin := &tcpLink{r: bufio.NewReader(a.c)}
	tout := &tcpLink{w: bufio.NewWriter(out)}
	rs := make([]*Ring, L)
	for i := range rs {
		var l splitLink
		if i < L-1 {
			l.s = chanLink{out: edges[i], abort: ab}.send
		} else {
			l.s = tout.send
		}
		if i > 0 {
			l.r = chanLink{in: edges[i-1], abort: ab}.recv
		} else {
			l.r = tin.recv
		}
		rs[i] = &Ring{rank: node*L + i, size: nnodes * L, b: bs[i], l: l, abort: ab}
	}
	return rs, nil
}

// splitLink joins a sender and a receiver of different kinds.
type splitLink struct {
	s func([]float32) error
	r func() ([]float32, error)
}

func (l splitLink) send(v []float32) error   { return l.s(v) }
func (l splitLink) recv() ([]float32, error) { return l.r() }

const ringHello = "whet-ring 1"

// dialNext connects to the next node's ring listener, retrying while it
// is not up yet, and says which node is calling.
func dialNext(ctx context.Context, addr string, node int) (net.Conn, error) {
	var d net.Dialer
	for {
		c, err := d.DialContext(ctx, "tcp", addr)
		if err == nil {
			if _, err := fmt.Fprintf(c, "%s %d\n", ringHello, node); err != nil {
				c.Close()
				return nil, fmt.Errorf("ring: node %d -> %s: %w", node, addr, err)
			}
			return c, nil
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("ring: node %d could not reach the next node at %s: %w (last: %v)", node, addr, ctx.Err(), err)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// acceptPrev takes the previous node's connection, checking who it is.
func acceptPrev(ctx context.Context, ln net.Listener, prev int) (net.Conn, error) {
	stop := context.AfterFunc(ctx, func() { ln.Close() })
	defer stop()
	c, err := ln.Accept()
	if err != nil {
		return nil, fmt.Errorf("ring: waiting for node %d: %w", prev, err)
	}
	// One byte at a time: what follows the hello line is ring data.
	var line []byte
	b := make([]byte, 1)
	for len(line) < 64 {
		if _, err := io.ReadFull(c, b); err != nil {
			c.Close()
			return nil, fmt.Errorf("ring: hello from %s: %w", c.RemoteAddr(), err)
		}
		if b[0] == '\n' {
			break
		}
		line = append(line, b[0])
	}
	rest, ok := strings.CutPrefix(string(line), ringHello+" ")
	if n, err := strconv.Atoi(rest); !ok || err != nil || n != prev {
		c.Close()
		return nil, fmt.Errorf("ring: %s said %q, expected node %d", c.RemoteAddr(), line, prev)
	}
	return c, nil
}

// tcpLink is one direction of a TCP ring edge.
type tcpLink struct {
	mu sync.Mutex
	w  *bufio.Writer
	r  *bufio.Reader
}

// maxMessage bounds a received message (1 G floats).
const maxMessage = 1 << 30

func (t *tcpLink) send(v []float32) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	var buf [4]byte
	binary.LittleEndian.PutUint32(buf[:], uint32(len(v)))
	if _, err := t.w.Write(buf[:]); err != nil {
		return fmt.Errorf("ring send: %w", err)
	}
	for _, x := range v {
		binary.LittleEndian.PutUint32(buf[:], math.Float32bits(x))
		t.w.Write(buf[:])
	}
	if err := t.w.Flush(); err != nil {
		return fmt.Errorf("ring send: %w", err)
	}
	return nil
}

func (t *tcpLink) recv() ([]float32, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	var buf [4]byte
	if _, err := io.ReadFull(t.r, buf[:]); err != nil {
		return nil, fmt.Errorf("ring receive: %w", err)
	}
	n := binary.LittleEndian.Uint32(buf[:])
	if n > maxMessage {
		return nil, fmt.Errorf("ring receive: %d values announced", n)
	}
	raw := make([]byte, 4*int(n))
	if _, err := io.ReadFull(t.r, raw); err != nil {
		return nil, fmt.Errorf("ring receive: %w", err)
	}
	v := make([]float32, n)
	for i := range v {
		v[i] = math.Float32frombits(binary.LittleEndian.Uint32(raw[4*i:]))
	}
	return v, nil
}
