package dist

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestRendezvousNodeProcess is the node side of
// TestRendezvousAcrossProcesses, run in a child process; it does nothing
// when run on its own.
func TestRendezvousNodeProcess(t *testing.T) {
	addr := os.Getenv("WHET_TEST_RDV_ADDR")
	if addr == "" {
		t.Skip("run by TestRendezvousAcrossProcesses")
	}
	node, _ := strconv.Atoi(os.Getenv("WHET_TEST_RDV_NODE"))
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	got, err := Fetch(ctx, addr, node, 3, 1000+node, 10*time.Millisecond)
	if err != nil {
		fmt.Printf("NODE-ERROR %v\n", err)
		return
	}
	fmt.Printf("NODE-GOT %x %s\n", got.Payload, strings.Join(got.Addrs, ","))
}

// TestRendezvousAcrossProcesses: node 0 serves an NCCL-sized id on
// loopback and two node processes (this test binary again) each get it.
func TestRendezvousAcrossProcesses(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Skipf("no loopback: %v", err)
	}
	var id UniqueID
	for i := range id {
		id[i] = byte(i*7 + 3)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	served := make(chan error, 1)
	go func() {
		_, err := ServeOn(ctx, ln, 3, id[:], 999)
		served <- err
	}()
	var outs []*bytes.Buffer
	var cmds []*exec.Cmd
	for node := 1; node <= 2; node++ {
		cmd := exec.Command(os.Args[0], "-test.run=^TestRendezvousNodeProcess$", "-test.v")
		cmd.Env = append(os.Environ(), "WHET_TEST_RDV_ADDR="+ln.Addr().String(), fmt.Sprintf("WHET_TEST_RDV_NODE=%d", node))
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		cmds, outs = append(cmds, cmd), append(outs, &out)
	}
	for i, cmd := range cmds {
		if err := cmd.Wait(); err != nil {
			t.Fatalf("node %d: %v\n%s", i+1, err, outs[i])
		}
		// Every node learns the id and where each node listens.
		if want := fmt.Sprintf("NODE-GOT %x 127.0.0.1:999,127.0.0.1:1001,127.0.0.1:1002", id[:]); !strings.Contains(outs[i].String(), want) {
			t.Fatalf("node %d did not get the id:\n%s", i+1, outs[i])
		}
	}
	if err := <-served; err != nil {
		t.Fatal(err)
	}
}

// TestRendezvousRefusesMisconfiguredNodes: a node rank seen twice, out of
// range, or a different node count is refused on both sides with the
// reason.
func TestRendezvousRefusesMisconfiguredNodes(t *testing.T) {
	for _, c := range []struct {
		nodes  [][2]int // node rank, nnodes as each node says
		reason string
	}{
		{[][2]int{{1, 3}, {1, 3}}, "two nodes were started with --node-rank 1"},
		{[][2]int{{3, 3}}, "--node-rank 3 is out of range 1..2"},
		{[][2]int{{1, 4}}, "node 1 was started with --nnodes 4, node 0 with 3"},
	} {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Skipf("no loopback: %v", err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		served := make(chan error, 1)
		go func() {
			_, err := ServeOn(ctx, ln, 3, []byte("id"), 1)
			served <- err
		}()
		// The nodes dial at once: node 0 answers only when all are in.
		nodeErrs := make(chan error, len(c.nodes))
		for _, n := range c.nodes {
			go func() {
				_, err := Fetch(ctx, ln.Addr().String(), n[0], n[1], 1, time.Millisecond)
				nodeErrs <- err
			}()
		}
		var nodeErr error
		for range c.nodes {
			if err := <-nodeErrs; err != nil && strings.Contains(err.Error(), c.reason) {
				nodeErr = err
			}
		}
		err = <-served
		cancel()
		if err == nil || !strings.Contains(err.Error(), c.reason) || nodeErr == nil || !strings.Contains(nodeErr.Error(), c.reason) {
			t.Errorf("want %q on both sides; node 0: %v; node: %v", c.reason, err, nodeErr)
		}
	}
}

func FuzzParseHello(f *testing.F) {
	f.Add(rendezvousMagic + " 1 2 29501\n")
	f.Add("whet-rendezvous 1 -1 0 70000")
	f.Add("GET / HTTP/1.1")
	f.Fuzz(func(t *testing.T, line string) {
		node, n, port, err := parseHello(line)
		if err == nil && (node < 0 || n < 1 || port < 0 || port > 65535) {
			t.Fatalf("%q gave node %d of %d, port %d", line, node, n, port)
		}
	})
}
