package engine

import (
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync"
)

// DeviceBackends opens a backend on one device of a kind (a CUDA GPU by
// index) and counts the devices, for runs over several GPUs.
type DeviceBackends struct {
	Count func() (int, error)
	Open  func(device int) (Backend, error)
}

var (
	devicesMu  sync.Mutex
	devicesReg = map[string]DeviceBackends{}
)

// RegisterDevices makes a backend's per-device factory available by the
// backend's name ("cuda"); the program registers it next to the backend.
func RegisterDevices(name string, d DeviceBackends) {
	devicesMu.Lock()
	defer devicesMu.Unlock()
	devicesReg[name] = d
}

// ParseGPUs reads a GPU choice (whet train --gpus, parallel.gpus): "all",
// a count N (the first N devices), or a comma-separated list of distinct
// device indices, against count devices. "" is one GPU, the first.
func ParseGPUs(spec string, count int) ([]int, error) {
	spec = strings.TrimSpace(spec)
	switch {
	case spec == "":
		spec = "1"
	case spec == "all":
		if count < 1 {
			return nil, errors.New("gpus: all: no GPU found")
		}
		out := make([]int, count)
		for i := range out {
			out[i] = i
		}
		return out, nil
	}
	if !strings.Contains(spec, ",") {
		n, err := strconv.Atoi(spec)
		if err != nil || n < 1 {
			return nil, fmt.Errorf("gpus: %q is not all, a count of at least 1, or a list of device indices such as 0,2,3", spec)
		}
		if n > count {
			return nil, fmt.Errorf("gpus: %d asked for, %d found", n, count)
		}
		return ParseGPUs("all", n)
	}
	seen := map[int]bool{}
	var out []int
	for _, f := range strings.Split(spec, ",") {
		i, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || i < 0 {
			return nil, fmt.Errorf("gpus: %q in %q is not a device index", f, spec)
		}
		if i >= count {
			return nil, fmt.Errorf("gpus: device %d asked for, %d found (indices 0 to %d)", i, count, count-1)
		}
		if seen[i] {
			return nil, fmt.Errorf("gpus: device %d listed twice in %q", i, spec)
		}
		seen[i] = true
		out = append(out, i)
	}
	sort.Ints(out)
	return out, nil
}

// validate checks the settings that need no hardware to check.
func (p ParallelConfig) validate(backend string) error {
	if p.Ranks < 0 {
		return fmt.Errorf("parallel.ranks: must be 0 or more, got %d", p.Ranks)
	}
	if p.Ranks > 1 && p.GPUs != "" {
		return errors.New("parallel: ranks (CPU ranks) and gpus cannot both be set")
	}
	if p.Ranks > 1 && backend == "cuda" {
		return errors.New("parallel.ranks: CPU ranks need backend cpu (for GPUs set parallel.gpus)")
	}
	if p.GPUs != "" && backend == "cpu" {
		return errors.New("parallel.gpus: needs backend cuda or auto")
	}
	// parallel.collective names a registered collective (nccl, ring):
	// an unknown name is refused when the run opens it, with the list.
	if p.BucketMB < 0 {
		return fmt.Errorf("parallel.bucket_mb: must be 0 or more, got %v", p.BucketMB)
	}
	return nil
}

// openGroup opens the other ranks' backends and the collective group of a
// data-parallel run; b is rank 0's backend, already open. A run of one
// rank gets []Collective{nil}.
func (s *Session) openGroup(b Backend) ([]Collective, error) {
	p := s.Cfg.Parallel
	backends := []Backend{b}
	kind := "cpu"
	if _, ok := b.(ComputeDTyper); ok || strings.HasPrefix(b.Name(), "cuda") {
		kind = "cuda"
	}
	switch {
	case kind == "cpu" && p.GPUs != "" && p.GPUs != "1" && p.GPUs != "0":
		return nil, fmt.Errorf("parallel.gpus %q: the run is on the CPU backend (%s); no GPU is usable", p.GPUs, b.Name())
	case kind == "cpu":
		for i := 1; i < p.Ranks; i++ {
			rb, _, err := OpenBackend("cpu")
			if err != nil {
				return nil, fmt.Errorf("data-parallel rank %d: %w", i, err)
			}
			backends = append(backends, rb)
			s.followerBackends = append(s.followerBackends, rb)
		}
	default:
		devicesMu.Lock()
		dev, ok := devicesReg["cuda"]
		devicesMu.Unlock()
		if p.GPUs == "" {
			break
		}
		if !ok {
			return nil, errors.New("parallel.gpus: this program has no per-device CUDA backend linked in")
		}
		count, err := dev.Count()
		if err != nil {
			return nil, fmt.Errorf("parallel.gpus: count GPUs: %w", err)
		}
		ids, err := ParseGPUs(p.GPUs, count)
		if err != nil {
			return nil, fmt.Errorf("parallel.%w", err)
		}
		if len(ids) > 1 || ids[0] != 0 {
			// Rank 0 moves to the first device chosen.
			first, err := dev.Open(ids[0])
			if err != nil {
				return nil, fmt.Errorf("GPU %d: %w", ids[0], err)
			}
			if c, ok := s.Backend.(Closer); ok {
				c.Close()
			}
			s.Backend, backends[0] = first, first
			for _, id := range ids[1:] {
				rb, err := dev.Open(id)
				if err != nil {
					return nil, fmt.Errorf("GPU %d: %w", id, err)
				}
				backends = append(backends, rb)
				s.followerBackends = append(s.followerBackends, rb)
			}
		}
	}
	if len(backends) == 1 && p.Collective == "" {
		// One rank: no collective, unless one is named (a check of the
		// data-parallel path on one GPU, as the NCCL test does).
		return []Collective{nil}, nil
	}
	name := p.Collective
	if name == "" {
		name = "ring"
		if kind == "cuda" {
			name = "nccl"
		}
	}
	group, err := OpenGroup(name, backends)
	if err != nil {
		return nil, fmt.Errorf("parallel.collective: %w", err)
	}
	what := "ring all-reduce in Go"
	if name == "nccl" {
		what = "NCCL"
	}
	shard := ""
	if !s.Cfg.usesLoRA() {
		shard = ", AdamW moments and fp32 masters sharded across the ranks"
	}
	s.Notices = append(s.Notices, fmt.Sprintf("data parallel: %d ranks on %s (%s)%s; global batch %d rows per step as with one",
		len(backends), kind, what, shard, s.Cfg.Train.MicroBatch*s.Cfg.Train.GradAccum))
	return group, nil
}

// readyFollowers gives the followers what the leader computed or read
// while making the run folder: DPO's reference log-probs and the newest
// checkpoint's state (every rank reads it: the run folder must be on a
// filesystem every node sees).
func (s *Session) readyFollowers() error {
	for _, f := range s.followers {
		f.RefTrain, f.RefEval = s.Trainer.RefTrain, s.Trainer.RefEval
		if err := f.ResumeFollower(RunDir(s.Dir).Checkpoints()); err != nil {
			return fmt.Errorf("data-parallel rank %d: resume: %w", f.DP.C.Rank(), err)
		}
		if f.Step() != s.Trainer.Step() {
			return fmt.Errorf("data-parallel rank %d resumed at step %d, rank 0 at step %d", f.DP.C.Rank(), f.Step(), s.Trainer.Step())
		}
	}
	return nil
}

// runFollowers starts every follower; the returned func waits for them
// and returns the first error.
func (s *Session) runFollowers() func() error {
	errs := make(chan error, len(s.followers))
	for _, f := range s.followers {
		go func() { errs <- f.Follow() }()
	}
	return func() error {
		var first error
		for range s.followers {
			if err := <-errs; err != nil && first == nil {
				first = err
			}
		}
		return first
	}
}

// closeFollowers frees the followers' models and backends.
func (s *Session) closeFollowers() {
	for _, f := range s.followers {
		if f.Acts != nil {
			f.Acts.Free()
		}
		f.DP.Free()
		f.Model.Free()
	}
	s.followers = nil
	for _, b := range s.followerBackends {
		if c, ok := b.(Closer); ok {
			c.Close()
		}
	}
	s.followerBackends = nil
}
