// Package dist holds the collectives that data-parallel training runs
// over: a ring in Go (in-process ranks over channels, or processes over
// TCP) that lets CI test the data-parallel logic without GPUs, NCCL bound
// at run time through purego for GPUs, and the TCP rendezvous that passes
// NCCL's unique id (or the ring's addresses) between nodes.
package dist

import (
	"errors"
	"fmt"
	"sync"

	"whet/engine"
)

// link carries float32 messages around the ring: send goes to the next
// rank, recv comes from the previous one. Messages on one link arrive in
// the order sent.
type link interface {
	send(v []float32) error
	recv() ([]float32, error)
}

// Ring is one rank of a ring collective. Each op downloads the tensor from
// the rank's backend, passes chunks around the ring, and uploads the
// result: 2(n-1) steps of 1/n of the data each for AllReduce (the
// bandwidth-optimal schedule NCCL also uses), n-1 for ReduceScatter and
// AllGather. It is meant for the CPU backend and for tests; GPUs use NCCL.
type Ring struct {
	rank, size int
	b          engine.Backend
	l          link
	abort      *abortState
	// mu serialises ops: the trainer's gradient buckets are reduced by a
	// worker goroutine while the leader's commands come from another.
	mu sync.Mutex
}

var (
	_ engine.Collective        = (*Ring)(nil)
	_ engine.CollectiveAborter = (*Ring)(nil)
)

func init() {
	engine.RegisterCollective("ring", func(bs []engine.Backend) ([]engine.Collective, error) {
		rs := NewLocalRing(bs)
		out := make([]engine.Collective, len(rs))
		for i, r := range rs {
			out[i] = r
		}
		return out, nil
	})
}

// abortState is shared by the ranks of a group: once set, every blocked
// and later op fails with its error.
type abortState struct {
	once sync.Once
	done chan struct{}
	err  error
	// closers end what would keep other processes' ranks waiting (the
	// TCP edges of a ring across nodes), so that they fail too.
	mu      sync.Mutex
	closers []func()
}

// onAbort registers f to run when the group is aborted.
func (a *abortState) onAbort(f func()) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.closers = append(a.closers, f)
}

func newAbortState() *abortState { return &abortState{done: make(chan struct{})} }

func (a *abortState) set(err error) {
	a.once.Do(func() {
		a.err = err
		close(a.done)
		a.mu.Lock()
		defer a.mu.Unlock()
		for _, f := range a.closers {
			f()
		}
	})
}

// ErrAborted wraps the error a group was aborted with.
var ErrAborted = errors.New("collective aborted")

func (a *abortState) error() error { return fmt.Errorf("%w: %v", ErrAborted, a.err) }

// chanLink is an in-process link: a buffered channel per ring edge.
type chanLink struct {
	out, in chan []float32
	abort   *abortState
}

func (c chanLink) send(v []float32) error {
	select {
	case c.out <- v:
		return nil
	case <-c.abort.done:
		return c.abort.error()
	}
}

func (c chanLink) recv() ([]float32, error) {
	select {
	case v := <-c.in:
		return v, nil
	case <-c.abort.done:
		return nil, c.abort.error()
	}
}

// NewLocalRing makes a ring of len(bs) ranks in this process, rank i
// working on bs[i].
func NewLocalRing(bs []engine.Backend) []*Ring {
	n := len(bs)
	ab := newAbortState()
	edges := make([]chan []float32, n) // edge i: rank i -> rank i+1
	for i := range edges {
		edges[i] = make(chan []float32, 1)
	}
	out := make([]*Ring, n)
	for i := range out {
		out[i] = &Ring{rank: i, size: n, b: bs[i], abort: ab,
			l: chanLink{out: edges[i], in: edges[(i+n-1)%n], abort: ab}}
	}
	return out
}

func (r *Ring) Rank() int { return r.rank }
func (r *Ring) Size() int { return r.size }

// Abort fails every rank's pending and later ops (on other nodes too:
// their TCP edges close).
func (r *Ring) Abort(err error) { r.abort.set(err) }

// Close ends the group, closing its TCP edges; ops fail afterwards.
func (r *Ring) Close() error {
	r.abort.set(errors.New("ring closed"))
	return nil
}

// chunkBounds splits n elements into size near-equal chunks.
func chunkBounds(n, size, c int) (int, int) {
	return c * n / size, (c + 1) * n / size
}

func mod(a, n int) int { return ((a % n) + n) % n }

// op downloads t, runs f on its values and uploads them back.
func (r *Ring) op(name string, t engine.Tensor, f func(v []float32) error) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	select {
	case <-r.abort.done:
		return r.abort.error()
	default:
	}
	v := make([]float32, t.Len())
	if err := r.b.Download(t, v); err != nil {
		return fmt.Errorf("ring %s: %w", name, err)
	}
	if r.size > 1 {
		if err := f(v); err != nil {
			r.abort.set(fmt.Errorf("rank %d: %s: %w", r.rank, name, err))
			return fmt.Errorf("ring %s on rank %d: %w", name, r.rank, err)
		}
	}
	if err := r.b.Upload(t, v); err != nil {
		return fmt.Errorf("ring %s: %w", name, err)
	}
	return nil
}

// exchange sends chunk sc of v to the next rank and returns the chunk the
// previous rank sent, checked to be chunk rc's length.
func (r *Ring) exchange(v []float32, sc, rc int) ([]float32, error) {
	lo, hi := chunkBounds(len(v), r.size, sc)
	if err := r.l.send(append([]float32(nil), v[lo:hi]...)); err != nil {
		return nil, err
	}
	got, err := r.l.recv()
	if err != nil {
		return nil, err
	}
	lo, hi = chunkBounds(len(v), r.size, rc)
	if len(got) != hi-lo {
		return nil, fmt.Errorf("the previous rank sent %d values where %d were due (ranks called different ops or lengths)", len(got), hi-lo)
	}
	return got, nil
}

// reduceScatter leaves the sum of chunk r on rank r: at step s rank r
// sends chunk r-s-1 and adds the previous rank's chunk r-s-2 into its own,
// so after n-1 steps the chunk it last added to, r, holds every rank's part.
func (r *Ring) reduceScatter(v []float32) error {
	n := r.size
	for s := 0; s < n-1; s++ {
		rc := mod(r.rank-s-2, n)
		got, err := r.exchange(v, mod(r.rank-s-1, n), rc)
		if err != nil {
			return err
		}
		lo, _ := chunkBounds(len(v), n, rc)
		for i, x := range got {
			v[lo+i] += x
		}
	}
	return nil
}

// allGather passes each rank's chunk r around: at step s rank r sends
// chunk r-s and stores the previous rank's chunk r-s-1.
func (r *Ring) allGather(v []float32) error {
	n := r.size
	for s := 0; s < n-1; s++ {
		rc := mod(r.rank-s-1, n)
		got, err := r.exchange(v, mod(r.rank-s, n), rc)
		if err != nil {
			return err
		}
		lo, _ := chunkBounds(len(v), n, rc)
		copy(v[lo:], got)
	}
	return nil
}

// AllReduce is a reduce-scatter followed by an all-gather.
func (r *Ring) AllReduce(t engine.Tensor) error {
	return r.op("AllReduce", t, func(v []float32) error {
		if err := r.reduceScatter(v); err != nil {
			return err
		}
		return r.allGather(v)
	})
}

func (r *Ring) checkEven(name string, t engine.Tensor) error {
	if t.Len()%r.size != 0 {
		return fmt.Errorf("ring %s: %d elements do not split into %d equal chunks", name, t.Len(), r.size)
	}
	return nil
}

// ReduceScatter leaves the sum of chunk Rank() in place.
func (r *Ring) ReduceScatter(t engine.Tensor) error {
	if err := r.checkEven("ReduceScatter", t); err != nil {
		return err
	}
	return r.op("ReduceScatter", t, r.reduceScatter)
}

// AllGather fills every chunk from its rank.
func (r *Ring) AllGather(t engine.Tensor) error {
	if err := r.checkEven("AllGather", t); err != nil {
		return err
	}
	return r.op("AllGather", t, r.allGather)
}

// Broadcast passes root's values around the ring; the rank before root
// does not forward them.
func (r *Ring) Broadcast(t engine.Tensor, root int) error {
	if root < 0 || root >= r.size {
		return fmt.Errorf("ring Broadcast: root %d of %d ranks", root, r.size)
	}
	return r.op("Broadcast", t, func(v []float32) error {
		if r.rank != root {
			got, err := r.l.recv()
			if err != nil {
				return err
			}
			if len(got) != len(v) {
				return fmt.Errorf("the previous rank sent %d values where %d were due", len(got), len(v))
			}
			copy(v, got)
		}
		if mod(r.rank+1, r.size) != root {
			return r.l.send(append([]float32(nil), v...))
		}
		return nil
	})
}
