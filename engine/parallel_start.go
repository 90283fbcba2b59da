package engine

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
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

// DeviceCount counts the devices of a kind ("cuda") through its
// registered per-device factory; known is false when none is registered
// (a program without that backend), so the count cannot be told.
func DeviceCount(name string) (n int, known bool, err error) {
	devicesMu.Lock()
	dev, ok := devicesReg[name]
	devicesMu.Unlock()
	if !ok {
		return 0, false, nil
	}
	n, err = dev.Count()
	if err != nil {
		return 0, true, err
	}
	return n, true, nil
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

// PlannedRanks is the number of data-parallel ranks the run file asks
// for where it can be told without the hardware (CPU ranks, a GPU count
// or a list); 0 for "all" or nothing set (one, or as many as are found).
func (p ParallelConfig) PlannedRanks() int {
	if p.Ranks > 1 {
		return p.Ranks
	}
	if p.GPUs == "" || p.GPUs == "all" {
		return 0
	}
	ids, err := ParseGPUs(p.GPUs, math.MaxInt32)
	if err != nil {
		return 0
	}
	return len(ids)
}

// validate checks the settings that need no hardware to check.
func (p ParallelConfig) validate(c *RunConfig) error {
	backend := c.Backend
	if p.Nodes.NNodes > 1 && c.Name == "" {
		return errors.New("name: required for a multi-node run (every node must find the same run folder)")
	}
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
	if n := p.Nodes; n.NNodes > 1 {
		if n.NodeRank < 0 || n.NodeRank >= n.NNodes {
			return fmt.Errorf("node-rank %d: out of range 0..%d for %d nodes", n.NodeRank, n.NNodes-1, n.NNodes)
		}
		host, port, err := net.SplitHostPort(n.MasterAddr)
		if pn, perr := strconv.Atoi(port); err != nil || host == "" || perr != nil || pn < 1 || pn > 65535 {
			return fmt.Errorf("master-addr %q: want HOST:PORT, where node 0 listens for the other nodes", n.MasterAddr)
		}
	} else if p.Nodes.NodeRank != 0 {
		return fmt.Errorf("node-rank %d without nnodes", p.Nodes.NodeRank)
	}
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
		rest, err := RankBackends(b, p.Ranks)
		if err != nil {
			return nil, err
		}
		backends = append(backends, rest...)
		s.followerBackends = append(s.followerBackends, rest...)
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
	if p.Nodes.NNodes > 1 {
		return s.openNodeGroup(backends, kind)
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
	what := "collective " + name // one registered by another package, as tests do
	switch name {
	case "ring":
		what = "ring all-reduce in Go"
	case "nccl":
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

// RankBackends opens the backends of ranks 1 to n-1 of a data-parallel
// group whose rank 0 runs on first: more CPU backends, or for a CUDA
// backend (on device 0) the devices 1 to n-1 through the per-device
// factory registered as "cuda". whet bench uses it; a run picks its
// devices with parallel.gpus instead. On error nothing stays open; the
// caller closes what it gets.
func RankBackends(first Backend, n int) ([]Backend, error) {
	var out []Backend
	fail := func(err error) ([]Backend, error) {
		for _, b := range out {
			if c, ok := b.(Closer); ok {
				c.Close()
			}
		}
		return nil, err
	}
	if _, ok := first.(ComputeDTyper); !ok && !strings.HasPrefix(first.Name(), "cuda") {
		for i := 1; i < n; i++ {
			rb, _, err := OpenBackend("cpu")
			if err != nil {
				return fail(fmt.Errorf("data-parallel rank %d: %w", i, err))
			}
			out = append(out, rb)
		}
		return out, nil
	}
	if n <= 1 {
		return nil, nil
	}
	devicesMu.Lock()
	dev, ok := devicesReg["cuda"]
	devicesMu.Unlock()
	if !ok {
		return nil, errors.New("this program has no per-device CUDA backend linked in")
	}
	count, err := dev.Count()
	if err != nil {
		return nil, fmt.Errorf("count GPUs: %w", err)
	}
	if n > count {
		return nil, fmt.Errorf("%d GPUs asked for, %d found", n, count)
	}
	for i := 1; i < n; i++ {
		rb, err := dev.Open(i)
		if err != nil {
			return fail(fmt.Errorf("GPU %d: %w", i, err))
		}
		out = append(out, rb)
	}
	return out, nil
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

// NodeGroupFactory opens this node's ranks (one per backend) of a group
// spanning n.NNodes processes with as many ranks each, meeting through
// the rendezvous at n.MasterAddr.
type NodeGroupFactory func(ctx context.Context, backends []Backend, n NodeConfig) ([]Collective, error)

var nodeGroupReg = map[string]NodeGroupFactory{}

// RegisterNodeCollective makes a multi-node collective available by name.
func RegisterNodeCollective(name string, f NodeGroupFactory) {
	groupMu.Lock()
	defer groupMu.Unlock()
	nodeGroupReg[name] = f
}

// nodeJoinTimeout is how long a node waits for the others to start.
const nodeJoinTimeout = 10 * time.Minute

// openNodeGroup joins the other nodes of a multi-node run.
func (s *Session) openNodeGroup(backends []Backend, kind string) ([]Collective, error) {
	p := s.Cfg.Parallel
	name := p.Collective
	if name == "" {
		name = "ring"
		if kind == "cuda" {
			name = "nccl"
		}
	}
	groupMu.Lock()
	f, ok := nodeGroupReg[name]
	groupMu.Unlock()
	if !ok {
		return nil, fmt.Errorf("parallel.collective: %q cannot span nodes in this program", name)
	}
	ctx, cancel := context.WithTimeout(context.Background(), nodeJoinTimeout)
	defer cancel()
	group, err := f(ctx, backends, p.Nodes)
	if err != nil {
		return nil, fmt.Errorf("node %d of %d: %w", p.Nodes.NodeRank, p.Nodes.NNodes, err)
	}
	s.Notices = append(s.Notices, fmt.Sprintf("data parallel: node %d of %d, ranks %d-%d of %d (%s over TCP from %s); global batch %d rows per step as with one",
		p.Nodes.NodeRank, p.Nodes.NNodes, group[0].Rank(), group[0].Rank()+len(group)-1, group[0].Size(), name, p.Nodes.MasterAddr,
		s.Cfg.Train.MicroBatch*s.Cfg.Train.GradAccum))
	return group, nil
}

// readyNode prepares the ranks of a node other than 0, which are all
// followers: DPO's reference log-probs computed here (the same as node
// 0's: the same model and data), and the run folder's newest checkpoint,
// which must be on a filesystem every node sees.
func (s *Session) readyNode() error {
	rd, err := RunDirOf(s.Cfg)
	if err != nil {
		return err
	}
	s.Dir = rd.Path()
	first := s.followers[0]
	if first.DPO != nil {
		if first.RefTrain, err = first.Acts.ReferenceLogprobs(first.Train, *first.DPO); err != nil {
			return err
		}
		if first.RefEval, err = first.Acts.ReferenceLogprobs(first.Eval, *first.DPO); err != nil {
			return err
		}
	}
	for _, f := range s.followers {
		f.RefTrain, f.RefEval = first.RefTrain, first.RefEval
		if err := f.ResumeFollower(rd.Checkpoints()); err != nil {
			return fmt.Errorf("data-parallel rank %d: resume: %w", f.DP.C.Rank(), err)
		}
	}
	return nil
}

// agree checks, at the start, that every rank resumed at the leader's
// step: rank 0 broadcasts its step and every rank adds whether its own
// differs, so all fail together, with the reason, or none does.
func (d *DataParallel) agree(step int) error {
	lead, err := d.command(float32(step))
	if err != nil {
		return err
	}
	off := 0.0
	if int(lead) != step {
		off = 1
	}
	n, err := d.sum([]float64{off})
	if err != nil {
		return err
	}
	if n[0] > 0 {
		return fmt.Errorf("%v of %d ranks resumed at another step than rank 0's %d: every node must see the run folder's checkpoints (a shared filesystem)", n[0], d.C.Size(), int(lead))
	}
	return nil
}
