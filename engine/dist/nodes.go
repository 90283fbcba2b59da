package dist

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"sync"
	"time"

	"whet/engine"
)

// The multi-node collectives engine opens for whet train --nnodes: node 0
// serves the rendezvous on --master-addr, every node joins it, and the
// group is made from what it passed (the ring's addresses, or NCCL's id).

func init() {
	engine.RegisterNodeCollective("ring", nodeRing)
	engine.RegisterNodeCollective("nccl", nodeNCCL)
}

// rendezvous runs node n's side: node 0 serves payload, the others fetch
// it; every node names port, where it listens for its ring edge (0: none).
func rendezvous(ctx context.Context, n engine.NodeConfig, payload []byte, port int) (Roster, error) {
	if n.NodeRank == 0 {
		return Serve(ctx, n.MasterAddr, n.NNodes, payload, port)
	}
	return Fetch(ctx, n.MasterAddr, n.NodeRank, n.NNodes, port, 200*time.Millisecond)
}

// nodeRing is the ring across nodes (CPU ranks, or any backend through
// host memory).
func nodeRing(ctx context.Context, bs []engine.Backend, n engine.NodeConfig) ([]engine.Collective, error) {
	// The ring edge listens on every interface; the other nodes learn
	// the address node 0 saw this node's rendezvous come from.
	ln, err := net.Listen("tcp", ":0")
	if err != nil {
		return nil, fmt.Errorf("ring: listen: %w", err)
	}
	defer ln.Close()
	_, portStr, _ := net.SplitHostPort(ln.Addr().String())
	port, _ := strconv.Atoi(portStr)
	roster, err := rendezvous(ctx, n, nil, port)
	if err != nil {
		return nil, err
	}
	rs, err := NewNodeRing(ctx, bs, n.NodeRank, n.NNodes, ln, roster)
	if err != nil {
		return nil, err
	}
	out := make([]engine.Collective, len(rs))
	for i, r := range rs {
		out[i] = r
	}
	return out, nil
}

// nodeNCCL makes NCCL's communicator across nodes: node 0 makes the
// unique id, the rendezvous passes it, and every local GPU joins at once
// (ncclCommInitRank returns only when every rank of every node has).
func nodeNCCL(ctx context.Context, bs []engine.Backend, n engine.NodeConfig) ([]engine.Collective, error) {
	var id UniqueID
	if n.NodeRank == 0 {
		var err error
		if id, err = NewUniqueID(); err != nil {
			return nil, err
		}
	} else if _, _, err := OpenNCCL(); err != nil {
		return nil, err
	}
	roster, err := rendezvous(ctx, n, id[:], 0)
	if err != nil {
		return nil, err
	}
	if copy(id[:], roster.Payload) != len(id) {
		return nil, fmt.Errorf("nccl: the rendezvous passed %d bytes, an NCCL id has %d", len(roster.Payload), len(id))
	}
	L := len(bs)
	out := make([]engine.Collective, L)
	errs := make([]error, L)
	var wg sync.WaitGroup
	for i, b := range bs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var c *NCCL
			c, errs[i] = JoinNCCL(b, id, n.NodeRank*L+i, n.NNodes*L)
			out[i] = c
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return nil, err
		}
	}
	return out, nil
}
