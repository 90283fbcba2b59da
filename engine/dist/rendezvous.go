package dist

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"time"
)

// The rendezvous passes what rank 0 makes (NCCL's unique id) to the other
// nodes over TCP, before NCCL's own bootstrap takes over: node 0 listens
// on --master-addr, every other node dials it (retrying until node 0 is
// up or the context ends), says who it is, and reads the payload.
//
// The exchange, one connection per node:
//
//	node -> master: "whet-rendezvous 1 NODE NNODES\n"
//	master -> node: uint32 big-endian length, then the payload
//
// The master refuses a node rank out of range or seen twice, and a node
// that counts the nodes differently, with a line "error: ..." instead of
// the payload, so a misconfigured launch fails on both sides with a reason.

const rendezvousMagic = "whet-rendezvous 1"

// maxPayload bounds what a node accepts (an NCCL id is 128 bytes).
const maxPayload = 1 << 20

// Serve listens on addr and gives payload to each of the other nnodes-1
// nodes. It returns once all have it, or with ctx's error.
func Serve(ctx context.Context, addr string, nnodes int, payload []byte) error {
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", addr)
	if err != nil {
		return fmt.Errorf("rendezvous: listen on %s: %w", addr, err)
	}
	return ServeOn(ctx, ln, nnodes, payload)
}

// ServeOn is Serve on a listener already open (tests listen on port 0);
// it closes ln.
func ServeOn(ctx context.Context, ln net.Listener, nnodes int, payload []byte) error {
	defer ln.Close()
	stop := context.AfterFunc(ctx, func() { ln.Close() })
	defer stop()
	seen := map[int]bool{}
	for len(seen) < nnodes-1 {
		conn, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return fmt.Errorf("rendezvous: %d of %d nodes joined before %w", len(seen)+1, nnodes, ctx.Err())
			}
			return fmt.Errorf("rendezvous: accept: %w", err)
		}
		node, err := serveOne(conn, nnodes, seen, payload)
		conn.Close()
		if err != nil {
			return err
		}
		seen[node] = true
	}
	return nil
}

// serveOne reads one node's hello and answers it.
func serveOne(conn net.Conn, nnodes int, seen map[int]bool, payload []byte) (int, error) {
	conn.SetDeadline(time.Now().Add(30 * time.Second))
	line, err := bufio.NewReader(io.LimitReader(conn, 256)).ReadString('\n')
	if err != nil {
		return 0, fmt.Errorf("rendezvous: read a node's hello from %s: %w", conn.RemoteAddr(), err)
	}
	refuse := func(format string, args ...any) (int, error) {
		msg := fmt.Sprintf(format, args...)
		fmt.Fprintf(conn, "error: %s\n", msg)
		return 0, fmt.Errorf("rendezvous: %s (from %s)", msg, conn.RemoteAddr())
	}
	node, n, err := parseHello(line)
	switch {
	case err != nil:
		return refuse("%v", err)
	case n != nnodes:
		return refuse("node %d was started with --nnodes %d, node 0 with %d", node, n, nnodes)
	case node < 1 || node >= nnodes:
		return refuse("--node-rank %d is out of range 1..%d", node, nnodes-1)
	case seen[node]:
		return refuse("two nodes were started with --node-rank %d", node)
	}
	var hdr [4]byte
	binary.BigEndian.PutUint32(hdr[:], uint32(len(payload)))
	if _, err := conn.Write(append(hdr[:], payload...)); err != nil {
		return 0, fmt.Errorf("rendezvous: send to node %d: %w", node, err)
	}
	return node, nil
}

// parseHello reads a node's hello line: its node rank and node count.
func parseHello(line string) (node, nnodes int, err error) {
	rest, ok := strings.CutPrefix(strings.TrimSpace(line), rendezvousMagic+" ")
	f := strings.Fields(rest)
	if !ok || len(f) != 2 {
		return 0, 0, fmt.Errorf("not a whet node: %q", strings.TrimSpace(line))
	}
	node, err1 := strconv.Atoi(f[0])
	nnodes, err2 := strconv.Atoi(f[1])
	if err1 != nil || err2 != nil || node < 0 || nnodes < 1 {
		return 0, 0, fmt.Errorf("bad hello %q (want %q NODE NNODES)", strings.TrimSpace(line), rendezvousMagic)
	}
	return node, nnodes, nil
}

// Fetch dials the master at addr as node node of nnodes and returns the
// payload; it retries a refused connection every retry until ctx ends
// (the master may not be listening yet).
func Fetch(ctx context.Context, addr string, node, nnodes int, retry time.Duration) ([]byte, error) {
	var d net.Dialer
	for {
		conn, err := d.DialContext(ctx, "tcp", addr)
		if err == nil {
			defer conn.Close()
			return fetchOne(conn, node, nnodes)
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("rendezvous: node 0 at %s did not answer: %w (last: %v)", addr, ctx.Err(), err)
		case <-time.After(retry):
		}
	}
}

func fetchOne(conn net.Conn, node, nnodes int) ([]byte, error) {
	conn.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := fmt.Fprintf(conn, "%s %d %d\n", rendezvousMagic, node, nnodes); err != nil {
		return nil, fmt.Errorf("rendezvous: %w", err)
	}
	r := bufio.NewReader(conn)
	head, err := r.Peek(4)
	if err != nil {
		return nil, fmt.Errorf("rendezvous: read from node 0: %w", err)
	}
	if string(head) == "erro" {
		line, _ := r.ReadString('\n')
		return nil, fmt.Errorf("rendezvous: node 0 refused: %s", strings.TrimPrefix(strings.TrimSpace(line), "error: "))
	}
	var hdr [4]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return nil, err
	}
	n := binary.BigEndian.Uint32(hdr[:])
	if n > maxPayload {
		return nil, fmt.Errorf("rendezvous: node 0 announced %d bytes (more than %d)", n, maxPayload)
	}
	out := make([]byte, n)
	if _, err := io.ReadFull(r, out); err != nil {
		return nil, fmt.Errorf("rendezvous: payload cut short: %w", err)
	}
	return out, nil
}

// ErrBadAddr is wrapped when a --master-addr is not HOST:PORT.
var ErrBadAddr = errors.New("not HOST:PORT")

// CheckAddr validates a --master-addr value.
func CheckAddr(addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil || host == "" {
		return fmt.Errorf("master-addr %q: %w", addr, ErrBadAddr)
	}
	if p, err := strconv.Atoi(port); err != nil || p < 1 || p > 65535 {
		return fmt.Errorf("master-addr %q: port %q: %w", addr, port, ErrBadAddr)
	}
	return nil
}
