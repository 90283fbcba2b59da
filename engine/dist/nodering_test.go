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
	"sync"
	"testing"
	"time"

	"whet/engine"
	"whet/engine/cpu"
)

// runNode is one node of a ring test: its ranks (2, on CPU backends)
// join through the roster and each checks every collective.
func runNode(ctx context.Context, node int, ringLn net.Listener, roster Roster) error {
	bs := []engine.Backend{cpu.New(), cpu.New()}
	rs, err := NewNodeRing(ctx, bs, node, 2, ringLn, roster)
	if err != nil {
		return err
	}
	defer rs[0].Close()
	var wg sync.WaitGroup
	errs := make([]error, len(rs))
	for i, r := range rs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for _, length := range []int{4, 12, 9} {
				if errs[i] = checkCollectives(r, length); errs[i] != nil {
					errs[i] = fmt.Errorf("rank %d, %d values: %w", r.Rank(), length, errs[i])
					return
				}
			}
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// TestNodeRingProcess is node 1 of TestNodeRingAcrossProcesses, run in a
// child process; it does nothing when run on its own.
func TestNodeRingProcess(t *testing.T) {
	addr := os.Getenv("WHET_TEST_RING_MASTER")
	if addr == "" {
		t.Skip("run by TestNodeRingAcrossProcesses")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port, _ := strconv.Atoi(strings.TrimPrefix(ln.Addr().String(), "127.0.0.1:"))
	roster, err := Fetch(ctx, addr, 1, 2, port, 10*time.Millisecond)
	if err == nil {
		err = runNode(ctx, 1, ln, roster)
	}
	if err != nil {
		fmt.Printf("NODE-ERROR %v\n", err)
		return
	}
	fmt.Println("NODE-OK")
}

// TestNodeRingAcrossProcesses: a ring of 4 ranks over two processes (2
// ranks each, this one node 0), joined through the rendezvous on
// loopback, gives every collective's defined result on every rank.
func TestNodeRingAcrossProcesses(t *testing.T) {
	rdv, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Skipf("no loopback: %v", err)
	}
	ringLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port, _ := strconv.Atoi(strings.TrimPrefix(ringLn.Addr().String(), "127.0.0.1:"))
	cmd := exec.Command(os.Args[0], "-test.run=^TestNodeRingProcess$", "-test.v")
	cmd.Env = append(os.Environ(), "WHET_TEST_RING_MASTER="+rdv.Addr().String())
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	roster, err := ServeOn(ctx, rdv, 2, nil, port)
	if err == nil {
		err = runNode(ctx, 0, ringLn, roster)
	}
	werr := cmd.Wait()
	if err != nil {
		t.Fatalf("node 0: %v\nnode 1:\n%s", err, out.String())
	}
	if werr != nil || !strings.Contains(out.String(), "NODE-OK") {
		t.Fatalf("node 1: %v\n%s", werr, out.String())
	}
}
