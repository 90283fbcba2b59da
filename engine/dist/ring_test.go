package dist

import (
	"errors"
	"fmt"
	"sync"
	"testing"

	"whet/engine"
	"whet/engine/cpu"
)

// onRanks runs f on every rank of a fresh ring of n CPU ranks at once.
func onRanks(t *testing.T, n int, f func(r *Ring) error) {
	t.Helper()
	bs := make([]engine.Backend, n)
	for i := range bs {
		bs[i] = cpu.New()
	}
	rs := NewLocalRing(bs)
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i, r := range rs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = f(r)
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("rank %d: %v", i, err)
		}
	}
}

// values is rank r's input: distinct per rank and element.
func values(r, n int) []float32 {
	v := make([]float32, n)
	for i := range v {
		v[i] = float32((r+1)*1000 + i)
	}
	return v
}

func TestRingCollectivesMatchTheirDefinition(t *testing.T) {
	for _, n := range []int{1, 2, 3, 4} {
		for _, length := range []int{n, 7 * n, 13} {
			t.Run(fmt.Sprintf("ranks%d-len%d", n, length), func(t *testing.T) {
				onRanks(t, n, func(r *Ring) error { return checkCollectives(r, length) })
			})
		}
	}
}

// checkCollectives runs each collective on rank r's values(rank) and
// checks the result against its definition.
func checkCollectives(r *Ring, length int) error {
	n := r.Size()
	var sum []float32
	for k := 0; k < n; k++ {
		for i, x := range values(k, length) {
			if k == 0 {
				sum = append(sum, 0)
			}
			sum[i] += x
		}
	}
	ten, _ := r.b.Alloc(engine.F32, length)
	r.b.Upload(ten, values(r.Rank(), length))
	if err := r.AllReduce(ten); err != nil {
		return err
	}
	got := make([]float32, length)
	r.b.Download(ten, got)
	for i := range got {
		if got[i] != sum[i] {
			return fmt.Errorf("AllReduce[%d] = %v, want %v", i, got[i], sum[i])
		}
	}
	if length%n != 0 {
		if err := r.ReduceScatter(ten); err == nil {
			return errors.New("ReduceScatter of uneven chunks passed")
		}
		return nil
	}
	chunk := length / n
	r.b.Upload(ten, values(r.Rank(), length))
	if err := r.ReduceScatter(ten); err != nil {
		return err
	}
	r.b.Download(ten, got)
	for i := r.Rank() * chunk; i < (r.Rank()+1)*chunk; i++ {
		if got[i] != sum[i] {
			return fmt.Errorf("ReduceScatter[%d] = %v, want %v", i, got[i], sum[i])
		}
	}
	// AllGather: chunk r from rank r's values.
	mine := make([]float32, length)
	copy(mine[r.Rank()*chunk:], values(r.Rank(), length)[r.Rank()*chunk:(r.Rank()+1)*chunk])
	r.b.Upload(ten, mine)
	if err := r.AllGather(ten); err != nil {
		return err
	}
	r.b.Download(ten, got)
	for i := range got {
		if want := values(i/chunk, length)[i]; got[i] != want {
			return fmt.Errorf("AllGather[%d] = %v, want %v", i, got[i], want)
		}
	}
	for root := 0; root < n; root++ {
		r.b.Upload(ten, values(r.Rank(), length))
		if err := r.Broadcast(ten, root); err != nil {
			return err
		}
		r.b.Download(ten, got)
		for i, want := range values(root, length) {
			if got[i] != want {
				return fmt.Errorf("Broadcast from %d: [%d] = %v, want %v", root, i, got[i], want)
			}
		}
	}
	return nil
}

// TestRingAbortFreesWaitingRanks: a rank that fails aborts the group, and
// a rank waiting in a collective gets the error instead of hanging.
func TestRingAbortFreesWaitingRanks(t *testing.T) {
	bs := []engine.Backend{cpu.New(), cpu.New()}
	rs := NewLocalRing(bs)
	done := make(chan error)
	go func() {
		ten, _ := bs[1].Alloc(engine.F32, 4)
		done <- rs[1].AllReduce(ten)
	}()
	rs[0].Abort(errors.New("rank 0 ran out of memory"))
	err := <-done
	if !errors.Is(err, ErrAborted) {
		t.Fatalf("waiting rank got %v, want ErrAborted", err)
	}
}

// TestRingMismatchedLengthsFail: ranks that call with different lengths
// get an error naming the cause, not a wrong sum.
func TestRingMismatchedLengthsFail(t *testing.T) {
	bs := []engine.Backend{cpu.New(), cpu.New()}
	rs := NewLocalRing(bs)
	errs := make(chan error, 2)
	for i, n := range []int{4, 6} {
		go func() {
			ten, _ := bs[i].Alloc(engine.F32, n)
			errs <- rs[i].AllReduce(ten)
		}()
	}
	if a, b := <-errs, <-errs; a == nil && b == nil {
		t.Fatal("mismatched lengths passed")
	}
}
