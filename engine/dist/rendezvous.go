package dist

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"time"
)

// The rendezvous passes what rank 0 makes (NCCL's unique id) to the other
// nodes over TCP, before NCCL's own bootstrap takes over, and tells every
// node every other node's address (for the ring collective's links):
// node 0 listens on --master-addr, every other node dials it (retrying
// until node 0 is up or the context ends) and says who it is and where it
// listens; once all nodes are in, node 0 answers each with the roster.
//
// The exchange, one connection per node:
//
//	node -> master: "whet-rendezvous 1 NODE NNODES PORT\n"
//	master -> node: uint32 big-endian length, then the Roster as JSON
//
// A node's address is the IP its connection to node 0 came from (the
// interface node 0 can reach it on) with the port it named. The master
// refuses a node rank out of range or seen twice, and a node that counts
// the nodes differently, with a line "error: ..." instead of the roster,
// so a misconfigured launch fails on both sides with a reason.

const rendezvousMagic = "whet-rendezvous 1"

// maxRoster bounds what a node accepts.
const maxRoster = 1 << 20

// Roster is what every node learns: node 0's payload and each node's
// address (HOST:PORT, by node rank; node 0's is the master address's host
// with the port it named).
type Roster struct {
	Payload []byte   `json:"payload"`
	Addrs   []string `json:"addrs"`
}

// Serve listens on addr and runs ServeOn.
func Serve(ctx context.Context, addr string, nnodes int, payload []byte, port int) (Roster, error) {
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", addr)
	if err != nil {
		return Roster{}, fmt.Errorf("rendezvous: listen on %s: %w", addr, err)
	}
	return ServeOn(ctx, ln, nnodes, payload, port)
}

// ServeOn is node 0's side on a listener already open (tests listen on
// port 0); it closes ln. port is where node 0 itself listens for its
// ring link (0: none).
func ServeOn(ctx context.Context, ln net.Listener, nnodes int, payload []byte, port int) (Roster, error) {
	defer ln.Close()
	stop := context.AfterFunc(ctx, func() { ln.Close() })
	defer stop()
	roster := Roster{Payload: payload, Addrs: make([]string, nnodes)}
	host, _, _ := net.SplitHostPort(ln.Addr().String())
	roster.Addrs[0] = net.JoinHostPort(host, strconv.Itoa(port))
	conns := map[int]net.Conn{}
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for len(conns) < nnodes-1 {
		conn, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return roster, fmt.Errorf("rendezvous: %d of %d nodes joined before %w", len(conns)+1, nnodes, ctx.Err())
			}
			return roster, fmt.Errorf("rendezvous: accept: %w", err)
		}
		node, addr, err := readHello(conn, nnodes, conns)
		if err != nil {
			conn.Close()
			return roster, err
		}
		conns[node] = conn
		roster.Addrs[node] = addr
	}
	js, err := json.Marshal(roster)
	if err != nil {
		return roster, err
	}
	var hdr [4]byte
	binary.BigEndian.PutUint32(hdr[:], uint32(len(js)))
	for node, conn := range conns {
		if _, err := conn.Write(append(hdr[:], js...)); err != nil {
			return roster, fmt.Errorf("rendezvous: send to node %d: %w", node, err)
		}
	}
	return roster, nil
}

// readHello reads one node's hello and checks it against the nodes
// already in.
func readHello(conn net.Conn, nnodes int, seen map[int]net.Conn) (int, string, error) {
	conn.SetDeadline(time.Now().Add(30 * time.Second))
	defer conn.SetDeadline(time.Time{})
	line, err := bufio.NewReader(io.LimitReader(conn, 256)).ReadString('\n')
	if err != nil {
		return 0, "", fmt.Errorf("rendezvous: read a node's hello from %s: %w", conn.RemoteAddr(), err)
	}
	refuse := func(format string, args ...any) (int, string, error) {
		msg := fmt.Sprintf(format, args...)
		fmt.Fprintf(conn, "error: %s\n", msg)
		return 0, "", fmt.Errorf("rendezvous: %s (from %s)", msg, conn.RemoteAddr())
	}
	node, n, port, err := parseHello(line)
	switch {
	case err != nil:
		return refuse("%v", err)
	case n != nnodes:
		return refuse("node %d was started with --nnodes %d, node 0 with %d", node, n, nnodes)
	case node < 1 || node >= nnodes:
		return refuse("--node-rank %d is out of range 1..%d", node, nnodes-1)
	case seen[node] != nil:
		return refuse("two nodes were started with --node-rank %d", node)
	}
	host, _, _ := net.SplitHostPort(conn.RemoteAddr().String())
	return node, net.JoinHostPort(host, strconv.Itoa(port)), nil
}

// parseHello reads a node's hello line: its node rank, the node count
// and the port it listens on.
func parseHello(line string) (node, nnodes, port int, err error) {
	rest, ok := strings.CutPrefix(strings.TrimSpace(line), rendezvousMagic+" ")
	f := strings.Fields(rest)
	if !ok || len(f) != 3 {
		return 0, 0, 0, fmt.Errorf("not a whet node: %q", strings.TrimSpace(line))
	}
	node, err1 := strconv.Atoi(f[0])
	nnodes, err2 := strconv.Atoi(f[1])
	port, err3 := strconv.Atoi(f[2])
	if err1 != nil || err2 != nil || err3 != nil || node < 0 || nnodes < 1 || port < 0 || port > 65535 {
		return 0, 0, 0, fmt.Errorf("bad hello %q (want %q NODE NNODES PORT)", strings.TrimSpace(line), rendezvousMagic)
	}
	return node, nnodes, port, nil
}

// Fetch dials node 0 at addr as node node of nnodes, listening on port,
// and returns the roster; it retries a refused connection every retry
// until ctx ends (node 0 may not be listening yet).
func Fetch(ctx context.Context, addr string, node, nnodes, port int, retry time.Duration) (Roster, error) {
	var d net.Dialer
	for {
		conn, err := d.DialContext(ctx, "tcp", addr)
		if err == nil {
			defer conn.Close()
			return fetchOne(ctx, conn, node, nnodes, port)
		}
		select {
		case <-ctx.Done():
			return Roster{}, fmt.Errorf("rendezvous: node 0 at %s did not answer: %w (last: %v)", addr, ctx.Err(), err)
		case <-time.After(retry):
		}
	}
}

func fetchOne(ctx context.Context, conn net.Conn, node, nnodes, port int) (Roster, error) {
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	if _, err := fmt.Fprintf(conn, "%s %d %d %d\n", rendezvousMagic, node, nnodes, port); err != nil {
		return Roster{}, fmt.Errorf("rendezvous: %w", err)
	}
	r := bufio.NewReader(conn)
	head, err := r.Peek(4)
	if err != nil {
		return Roster{}, fmt.Errorf("rendezvous: read from node 0: %w", err)
	}
	if string(head) == "erro" {
		line, _ := r.ReadString('\n')
		return Roster{}, fmt.Errorf("rendezvous: node 0 refused: %s", strings.TrimPrefix(strings.TrimSpace(line), "error: "))
	}
	var hdr [4]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return Roster{}, err
	}
	n := binary.BigEndian.Uint32(hdr[:])
	if n > maxRoster {
		return Roster{}, fmt.Errorf("rendezvous: node 0 announced %d bytes (more than %d)", n, maxRoster)
	}
	js := make([]byte, n)
	if _, err := io.ReadFull(r, js); err != nil {
		return Roster{}, fmt.Errorf("rendezvous: roster cut short: %w", err)
	}
	var roster Roster
	if err := json.Unmarshal(js, &roster); err != nil || len(roster.Addrs) != nnodes {
		return Roster{}, fmt.Errorf("rendezvous: node 0 sent a roster of %d nodes for %d (%v)", len(roster.Addrs), nnodes, err)
	}
	// Node 0 is where this node reached it (node 0 may listen on a
	// wildcard address it cannot name).
	host, _, _ := net.SplitHostPort(conn.RemoteAddr().String())
	if _, port, err := net.SplitHostPort(roster.Addrs[0]); err == nil {
		roster.Addrs[0] = net.JoinHostPort(host, port)
	}
	return roster, nil
}
