package engine

import (
	"fmt"
	"sort"
	"strings"
	"sync"
)

// Collective is one rank of a group of ranks, each with its own backend,
// that combine tensors of that backend: NCCL's four collectives, in
// place. Every rank calls the same ops in the same order with tensors of
// the same dtype and length; sums are taken in float32. An op returns when
// its result may be read by the rank's next backend op.
type Collective interface {
	Rank() int
	Size() int
	// AllReduce sums t over the ranks; every rank gets the sum.
	AllReduce(t Tensor) error
	// ReduceScatter reads t as Size() equal chunks (Len a multiple of
	// Size). Afterwards chunk Rank() holds the sum over the ranks of their
	// chunk Rank(); the other chunks are left undefined.
	ReduceScatter(t Tensor) error
	// AllGather reads t as Size() equal chunks, chunk r written by rank r.
	// Afterwards every rank holds every chunk.
	AllGather(t Tensor) error
	// Broadcast copies root's t to every rank.
	Broadcast(t Tensor, root int) error
}

// AsyncCollective is implemented by collectives that can run a reduction
// beside the rank's compute (NCCL on a second CUDA stream): the call
// returns once the reduction is queued after every op before it, and wait
// makes the rank's later backend ops wait for its result. Data-parallel
// training reduces gradient buckets this way while the backward goes on.
type AsyncCollective interface {
	AllReduceAsync(t Tensor) (wait func() error, err error)
	ReduceScatterAsync(t Tensor) (wait func() error, err error)
}

// CollectiveAborter is implemented by groups that can fail every rank's
// pending and later ops at once: a rank that fails between collectives
// calls it so that the others do not wait for it forever.
type CollectiveAborter interface {
	Abort(err error)
}

// GroupFactory opens a group of len(backends) ranks in this process,
// rank i on backends[i].
type GroupFactory func(backends []Backend) ([]Collective, error)

var (
	groupMu  sync.Mutex
	groupReg = map[string]GroupFactory{}
)

// RegisterCollective makes a collective implementation available by name
// ("ring": the CPU ring of package engine/dist; "nccl"). Packages call it
// from init; the program imports the ones it ships, as with backends.
func RegisterCollective(name string, f GroupFactory) {
	groupMu.Lock()
	defer groupMu.Unlock()
	groupReg[name] = f
}

// OpenGroup opens an in-process group of the named collective.
func OpenGroup(name string, backends []Backend) ([]Collective, error) {
	groupMu.Lock()
	f, ok := groupReg[name]
	var names []string
	for n := range groupReg {
		names = append(names, n)
	}
	groupMu.Unlock()
	if !ok {
		sort.Strings(names)
		return nil, fmt.Errorf("unknown collective %q (linked into this program: %s)", name, strings.Join(names, ", "))
	}
	return f(backends)
}
