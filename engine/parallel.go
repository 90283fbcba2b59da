package engine

import (
	"errors"
	"fmt"
	"math"
	"sort"
	"sync"

	"whet/datasets"
	"whet/engine/envswitch"
)

// Data parallelism. N ranks, each a Trainer with its own backend, model
// copy and activations, train one model over the same global batches as a
// one-rank run: an optimizer step's micro-batches (MicroBatch × GradAccum
// rows, in the same seeded order) are dealt out between the ranks, each
// adds the gradient of its share of the step's mean loss, and the
// gradients are summed across the ranks, so the step equals the one-rank
// step up to the order of float32 additions. The global batch, the step
// count, the schedule and the data cursor are those of the one-rank run,
// which is why a checkpoint resumes with any number of ranks.
//
// Gradients live in flat buckets (a layer or more, in backward order);
// each trainable parameter's Grad is a view of its bucket. A bucket is
// reduced by the rank's communication goroutine as soon as the backward of
// the rank's last micro-batch has passed its lowest layer, while the
// backward goes on below it.
//
// With Shard (full fine-tuning: ZeRO-1/2) the buckets are reduce-scattered
// instead of all-reduced: rank r keeps the r-th chunk of each bucket's
// fp32 master weights and AdamW moments, steps that chunk, and the ranks
// all-gather the bucket's compute weights (each parameter's W is a view of
// its bucket's flat weights) for the next forward. Each rank then holds
// 1/N of the optimizer state and masters instead of all of it.
//
// Rank 0 (the leader) runs Trainer.Run: it decides every step,
// evaluation, sample, pause, checkpoint and stop, and writes the run
// folder. The other ranks run Trainer.Follow, which does what the leader
// broadcasts (a step, a checkpoint gather, the end), so every rank calls
// the same collectives in the same order.

// DataParallel makes a Trainer one rank of a data-parallel group.
type DataParallel struct {
	C     Collective
	Shard bool

	m       *Model
	decay   func(*Param) bool
	buckets []*gradBucket
	next    int // the next bucket to reduce in this step
	cmd     Tensor
	jobs    chan commJob
	pending []chan error
	// async is C's queued reductions (nil: reductions go through the
	// communication goroutine); waits are those of this step.
	async    AsyncCollective
	waits    []func() error
	asyncErr error
	ended    bool
	closeMu  sync.Once
}

// gradBucket is a run of trainable parameters whose gradients (and, when
// sharded, compute weights) are one flat tensor, padded to a multiple of
// the rank count so that it splits into equal chunks.
type gradBucket struct {
	params []*Param
	offs   []int // each parameter's element offset in the flat tensors
	n      int   // elements before padding
	chunk  int   // padded length / ranks
	// ready is the layer after whose backward the bucket is final (-1:
	// only at the end of the backward: embeddings, final norm, head).
	ready int
	grad  Tensor // F32 [chunk*ranks]
	// Sharded only: the compute weights [chunk*ranks], and this rank's
	// chunk of the fp32 masters (a view of weight when the compute dtype
	// is F32) and moments.
	weight, master, mom, vel Tensor
	segs                     []shardSeg
}

// shardSeg is the part of one parameter that falls in this rank's chunk.
type shardSeg struct {
	p                  *Param
	at, n              int // element offset in the bucket, count
	master, grad, m, v Tensor
	paramOff           int // offset inside the parameter
}

type commJob struct {
	run  func() error
	done chan error
}

// DefaultBucketBytes is the gradient bucket size: PyTorch DDP's 25 MB,
// large enough that a collective's fixed cost is small against its
// transfer, small enough that the first bucket's reduction starts early in
// the backward.
const DefaultBucketBytes = 25 << 20

// DPNoOverlapEnv set to 1 makes a data-parallel run all-reduce its
// gradient buckets after the backward instead of overlapping the
// all-reduce with it (an AsyncCollective's).
const DPNoOverlapEnv = "WHET_DP_NO_OVERLAP"

// NewDataParallel turns m (trainable parameters already made) into one
// rank of c's group. It must come before the model's activations and
// sampler are made, since it moves gradients (and, sharded, weights) into
// flat buckets. decay says which parameters take weight decay (nil: all
// but those marked NoDecay).
func NewDataParallel(m *Model, c Collective, shard bool, bucketBytes int) (*DataParallel, error) {
	if bucketBytes <= 0 {
		bucketBytes = DefaultBucketBytes
	}
	d := &DataParallel{C: c, Shard: shard, m: m, jobs: make(chan commJob, 64)}
	if a, ok := c.(AsyncCollective); ok && !envswitch.On(DPNoOverlapEnv) {
		d.async = a
	}
	var err error
	if d.cmd, err = m.B.Alloc(F32, 1); err != nil {
		return nil, fmt.Errorf("data parallel: %w", err)
	}
	inLayer := map[*Param]bool{}
	var cur []*Param
	curBytes, low := 0, -1
	flush := func() error {
		if len(cur) == 0 {
			return nil
		}
		err := d.addBucket(cur, low)
		cur, curBytes = nil, 0
		return err
	}
	for l := len(m.Layers) - 1; l >= 0; l-- {
		for _, p := range layerParams(m.Layers[l], m) {
			if !p.Trainable {
				continue
			}
			inLayer[p] = true
			cur = append(cur, p)
			curBytes += 4 * numel(p.Shape)
			low = l
		}
		if curBytes >= bucketBytes {
			if err := flush(); err != nil {
				d.Free()
				return nil, err
			}
		}
	}
	if err := flush(); err != nil {
		d.Free()
		return nil, err
	}
	var rest []*Param
	for _, p := range m.TrainableParams() {
		if !inLayer[p] {
			rest = append(rest, p)
		}
	}
	cur, low = rest, -1
	if err := flush(); err != nil {
		d.Free()
		return nil, err
	}
	go d.serve()
	return d, nil
}

// MarkShardedTrainable prepares full fine-tuning for a data-parallel run
// with sharded state: every base weight becomes trainable, but nothing is
// allocated for it yet. NewDataParallel then gives each its gradient in a
// bucket and this rank's chunk of masters and moments, so a rank never
// holds the whole optimizer state, not even while the run starts
// (MakeAllTrainable would allocate every master and moment first).
func (m *Model) MarkShardedTrainable() error {
	if m.BF16Masters {
		return fmt.Errorf("train.master_weights: %s is not supported with data-parallel full fine-tuning (its masters are sharded fp32); use %s", MastersBF16, MastersFP32)
	}
	for _, p := range m.Params() {
		if isLoRAName(p.Name) || p.Trainable {
			continue
		}
		if p.Quant != nil {
			return fmt.Errorf("%s is stored in NF4 and cannot be trained (QLoRA trains adapters only)", p.Name)
		}
		p.Trainable = true
	}
	return nil
}

// layerParams lists a decoder block's parameters (with its adapters).
func layerParams(l *Layer, m *Model) []*Param {
	var out []*Param
	for _, p := range []*Param{l.AttnNorm, l.QNorm, l.KNorm, l.AttnOutNorm, l.MLPNorm, l.MLPOutNorm} {
		if p != nil {
			out = append(out, p)
		}
	}
	for _, lin := range l.linears() {
		for _, p := range []*Param{lin.W, lin.B} {
			if p != nil {
				out = append(out, p)
			}
		}
		lo := lin.LoRA
		switch {
		case lo == nil:
		case lo.stack == nil:
			out = append(out, lo.A, lo.B)
		default:
			// Stacked adapters (lorafuse.go): the group's A matrices side
			// by side, where its first member's would be, so that their
			// gradients stay one stack inside the bucket.
			if lo.stack.lins[0] == lin {
				for _, m := range lo.stack.lins {
					out = append(out, m.LoRA.A)
				}
			}
			out = append(out, lo.B)
		}
	}
	return out
}

// addBucket moves params' gradients (and, sharded, weights, masters and
// moments) into one new bucket.
func (d *DataParallel) addBucket(params []*Param, ready int) error {
	B, size, rank := d.m.B, d.C.Size(), d.C.Rank()
	bk := &gradBucket{params: params, ready: ready}
	for _, p := range params {
		bk.offs = append(bk.offs, bk.n)
		bk.n += numel(p.Shape)
	}
	bk.chunk = (bk.n + size - 1) / size
	padded := bk.chunk * size
	var err error
	if bk.grad, err = B.Alloc(F32, padded); err != nil {
		return fmt.Errorf("data parallel: gradient bucket of %d elements: %w", padded, err)
	}
	d.buckets = append(d.buckets, bk)
	views := make([]Tensor, len(params))
	for i, p := range params {
		if views[i], err = B.View(bk.grad, bk.offs[i], p.Shape...); err != nil {
			return err
		}
	}
	if d.Shard {
		if err := d.shardBucket(bk); err != nil {
			return err
		}
	}
	for i, p := range params {
		B.Free(p.Grad)
		p.Grad = views[i]
	}
	_ = rank
	return d.m.restackGrads(bk)
}

// shardBucket gives a bucket its flat compute weights and this rank's
// chunk of masters and moments, filled from the parameters' own tensors,
// which it then frees.
func (d *DataParallel) shardBucket(bk *gradBucket) error {
	m, B := d.m, d.m.B
	rank := d.C.Rank()
	padded := bk.chunk * d.C.Size()
	var err error
	if bk.weight, err = B.Alloc(m.Compute, padded); err != nil {
		return fmt.Errorf("data parallel: weight bucket of %d elements: %w", padded, err)
	}
	lo, hi := rank*bk.chunk, (rank+1)*bk.chunk
	if m.Compute == F32 {
		bk.master, err = B.View(bk.weight, lo, bk.chunk)
	} else {
		bk.master, err = B.Alloc(F32, bk.chunk)
	}
	if err != nil {
		return fmt.Errorf("data parallel: master shard: %w", err)
	}
	if bk.mom, err = B.Alloc(F32, bk.chunk); err != nil {
		return fmt.Errorf("data parallel: moment shard: %w", err)
	}
	if bk.vel, err = B.Alloc(F32, bk.chunk); err != nil {
		return fmt.Errorf("data parallel: moment shard: %w", err)
	}
	view := func(t Tensor, off, n int) Tensor {
		if err != nil {
			return nil
		}
		var v Tensor
		v, err = B.View(t, off, n)
		return v
	}
	for i, p := range bk.params {
		off, n := bk.offs[i], numel(p.Shape)
		w, werr := B.View(bk.weight, off, p.Shape...)
		if werr != nil {
			return werr
		}
		if err := B.Copy(w, p.W); err != nil {
			return fmt.Errorf("data parallel: copy %s: %w", p.Name, err)
		}
		s0, s1 := max(off, lo), min(off+n, hi)
		if s0 < s1 {
			seg := shardSeg{p: p, at: s0, n: s1 - s0, paramOff: s0 - off}
			seg.master = view(bk.master, s0-lo, seg.n)
			seg.grad = view(bk.grad, s0, seg.n)
			seg.m = view(bk.mom, s0-lo, seg.n)
			seg.v = view(bk.vel, s0-lo, seg.n)
			if err != nil {
				return err
			}
			if m.Compute != F32 {
				// From the fp32 master when the parameter has one, else
				// from the weight as loaded (MarkShardedTrainable).
				from := p.Master
				if from == nil {
					from = p.W
				}
				src := view(from, seg.paramOff, seg.n)
				if err != nil {
					return err
				}
				if err := B.Copy(seg.master, src); err != nil {
					return fmt.Errorf("data parallel: master of %s: %w", p.Name, err)
				}
			}
			bk.segs = append(bk.segs, seg)
		}
		// The parameter's own copies go: its compute weight is the
		// bucket's view (full after every all-gather), which also stands
		// for its master wherever the model reads one (export, checks).
		if p.Master != nil && p.Master != p.W {
			B.Free(p.Master)
		}
		B.Free(p.W)
		B.Free(p.M)
		B.Free(p.V)
		p.W, p.Master, p.M, p.V = w, w, nil, nil
	}
	return nil
}

// serve runs the rank's collectives in the order they were launched.
func (d *DataParallel) serve() {
	for j := range d.jobs {
		j.done <- j.run()
	}
}

// launch queues a collective on the communication goroutine.
func (d *DataParallel) launch(run func() error) {
	done := make(chan error, 1)
	d.pending = append(d.pending, done)
	d.jobs <- commJob{run: run, done: done}
}

// wait returns the first error of the launched collectives, once all ended
// (queued ones: once the rank's later ops wait for them).
func (d *DataParallel) wait() error {
	first := d.asyncErr
	d.asyncErr = nil
	for _, w := range d.waits {
		if err := w(); err != nil && first == nil {
			first = err
		}
	}
	d.waits = d.waits[:0]
	for _, c := range d.pending {
		if err := <-c; err != nil && first == nil {
			first = err
		}
	}
	d.pending = d.pending[:0]
	return first
}

// zero clears the gradient buckets before a step's micro-batches.
func (d *DataParallel) zero() error {
	d.next = 0
	ts := make([]Tensor, len(d.buckets))
	for i, bk := range d.buckets {
		ts[i] = bk.grad
	}
	if all, ok := d.m.B.(FillOfAll); ok {
		return all.FillAll(ts, 0)
	}
	for _, t := range ts {
		if err := d.m.B.Fill(t, 0); err != nil {
			return fmt.Errorf("zero gradient bucket: %w", err)
		}
	}
	return nil
}

// reduce launches a bucket's reduction: queued beside the compute when
// the collective can, else on the communication goroutine.
func (d *DataParallel) reduce(bk *gradBucket) {
	if d.async != nil {
		start := d.async.AllReduceAsync
		if d.Shard {
			start = d.async.ReduceScatterAsync
		}
		w, err := start(bk.grad)
		if err != nil {
			if d.asyncErr == nil {
				d.asyncErr = err
				d.abort(err) // the other ranks would wait for this one
			}
			return
		}
		d.waits = append(d.waits, w)
		return
	}
	if d.Shard {
		d.launch(func() error { return d.C.ReduceScatter(bk.grad) })
	} else {
		d.launch(func() error { return d.C.AllReduce(bk.grad) })
	}
}

// afterLayer is called by the backward of the rank's last micro-batch
// once layer l's gradients are final: buckets whose lowest layer is l go.
func (d *DataParallel) afterLayer(l int) error {
	for d.next < len(d.buckets) && d.buckets[d.next].ready == l {
		d.reduce(d.buckets[d.next])
		d.next++
	}
	return nil
}

// finishStep reduces the buckets not reduced yet (all of them on a rank
// that had no micro-batch), waits for every reduction, and sums the
// step's loss, token count and metrics over the ranks: every objective
// reports its rank's share of the step's mean, so the sum is the step's.
func (d *DataParallel) finishStep(r stepLoss) (stepLoss, error) {
	for ; d.next < len(d.buckets); d.next++ {
		d.reduce(d.buckets[d.next])
	}
	if err := d.wait(); err != nil {
		return r, fmt.Errorf("reduce gradients: %w", err)
	}
	keys := make([]string, 0, len(r.Metrics))
	for k := range r.Metrics {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	vals := []float64{r.Loss, float64(r.Tokens)}
	for _, k := range keys {
		vals = append(vals, r.Metrics[k])
	}
	sums, err := d.sum(vals)
	if err != nil {
		return r, fmt.Errorf("sum the step's loss over the ranks: %w", err)
	}
	r.Loss, r.Tokens = sums[0], int(math.Round(sums[1]))
	for i, k := range keys {
		r.Metrics[k] = sums[2+i]
	}
	return r, nil
}

// sum adds host values over the ranks (in float32, through the backend).
func (d *DataParallel) sum(vals []float64) ([]float64, error) {
	B := d.m.B
	t, err := B.Alloc(F32, len(vals))
	if err != nil {
		return nil, err
	}
	defer B.Free(t)
	f := make([]float32, len(vals))
	for i, v := range vals {
		f[i] = float32(v)
	}
	if err := B.Upload(t, f); err != nil {
		return nil, err
	}
	if err := d.C.AllReduce(t); err != nil {
		return nil, err
	}
	if err := B.Download(t, f); err != nil {
		return nil, err
	}
	out := make([]float64, len(f))
	for i, v := range f {
		out[i] = float64(v)
	}
	return out, nil
}

// ownGrads are the gradient chunks this rank holds the sums of: every
// bucket whole, or its own chunk when sharded.
func (d *DataParallel) ownGrads() ([]Tensor, error) {
	var out []Tensor
	for _, bk := range d.buckets {
		if !d.Shard {
			out = append(out, bk.grad)
			continue
		}
		v, err := d.m.B.View(bk.grad, d.C.Rank()*bk.chunk, bk.chunk)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, nil
}

// gradNorm is the global norm of the summed gradients. Sharded, each rank
// sums the squares of its chunks (padding is zero) and the ranks add them.
func (d *DataParallel) gradNorm() (float64, error) {
	if !d.Shard {
		return GradNorm(d.m)
	}
	ts, err := d.ownGrads()
	if err != nil {
		return 0, err
	}
	var s float64
	if all, ok := d.m.B.(SumSquaresOfAll); ok {
		if s, err = all.SumSquaresAll(ts); err != nil {
			return 0, err
		}
	} else {
		for _, t := range ts {
			x, err := d.m.B.SumSquares(t)
			if err != nil {
				return 0, err
			}
			s += x
		}
	}
	sums, err := d.sum([]float64{s})
	if err != nil {
		return 0, fmt.Errorf("grad norm: %w", err)
	}
	return math.Sqrt(sums[0]), nil
}

// clip scales the gradients by coef (ClipCoef) in a pass of their own,
// for backends whose AdamW does not fold it in: all of them, or sharded
// this rank's chunks.
func (d *DataParallel) clip(coef float32) error {
	if !d.Shard {
		return scaleGrads(d.m, coef)
	}
	if coef == 1 {
		return nil
	}
	ts, err := d.ownGrads()
	if err != nil {
		return err
	}
	for _, t := range ts {
		if err := d.m.B.Scale(t, coef); err != nil {
			return fmt.Errorf("clip grads: %w", err)
		}
	}
	return nil
}

// apply takes the AdamW step: on every rank alike when not sharded (the
// gradients are the same everywhere), else on this rank's chunks, whose
// new weights the ranks then all-gather. The gradients are read times
// gradScale (clipping's coefficient).
func (d *DataParallel) apply(o *Optimizer, lr float64, gradScale float32) error {
	if !d.Shard {
		return o.ApplyScaled(d.m, lr, gradScale)
	}
	o.Step++
	B := d.m.B
	var sets []AdamWSet
	var noDecay []bool
	for _, bk := range d.buckets {
		for _, s := range bk.segs {
			sets = append(sets, AdamWSet{Param: s.master, Grad: s.grad, M: s.m, V: s.v})
			noDecay = append(noDecay, s.p.NoDecay && !o.DecayAll)
		}
	}
	if err := o.stepSets(B, sets, noDecay, lr, gradScale); err != nil {
		return fmt.Errorf("shards: %w", err)
	}
	for _, bk := range d.buckets {
		if d.m.Compute != F32 {
			own, err := B.View(bk.weight, d.C.Rank()*bk.chunk, bk.chunk)
			if err != nil {
				return err
			}
			if err := B.Copy(own, bk.master); err != nil {
				return fmt.Errorf("refresh the compute weights: %w", err)
			}
		}
		if err := d.C.AllGather(bk.weight); err != nil {
			return fmt.Errorf("all-gather weights: %w", err)
		}
	}
	return nil
}

// The leader's commands to the followers.
const (
	cmdStep   = 1 // run TrainStep
	cmdGather = 2 // gather the sharded state for a checkpoint
	cmdEnd    = 3 // the run is over
)

// command broadcasts the leader's command; a follower passes 0 and gets it.
func (d *DataParallel) command(c float32) (float32, error) {
	B := d.m.B
	if err := B.Upload(d.cmd, []float32{c}); err != nil {
		return 0, err
	}
	if err := d.C.Broadcast(d.cmd, 0); err != nil {
		return 0, err
	}
	v := []float32{0}
	if err := B.Download(d.cmd, v); err != nil {
		return 0, err
	}
	return v[0], nil
}

// leader reports whether this rank runs the run.
func (d *DataParallel) leader() bool { return d.C.Rank() == 0 }

// end tells the followers the run is over (once).
func (d *DataParallel) end() {
	if d.ended || !d.leader() {
		return
	}
	d.ended = true
	d.command(cmdEnd)
}

// abort fails the other ranks' collectives after an error on this one.
func (d *DataParallel) abort(err error) {
	if a, ok := d.C.(CollectiveAborter); ok {
		a.Abort(err)
	}
}

// gatherState collects every trainable parameter's fp32 master and
// moments (checkpoint order: master, exp_avg, exp_avg_sq) on rank 0, one
// bucket at a time, so no rank ever holds more than a bucket of full
// state on its device; the other ranks get nil.
func (d *DataParallel) gatherState() (map[*Param][3][]float32, error) {
	B := d.m.B
	var out map[*Param][3][]float32
	if d.leader() {
		out = map[*Param][3][]float32{}
	}
	for _, bk := range d.buckets {
		padded := bk.chunk * d.C.Size()
		var host [3][]float32
		for part, shard := range []Tensor{bk.master, bk.mom, bk.vel} {
			tmp, err := B.Alloc(F32, padded)
			if err != nil {
				return nil, fmt.Errorf("gather state: %w", err)
			}
			own, err := B.View(tmp, d.C.Rank()*bk.chunk, bk.chunk)
			if err == nil {
				err = B.Copy(own, shard)
			}
			if err == nil {
				err = d.C.AllGather(tmp)
			}
			if err == nil && out != nil {
				host[part] = make([]float32, padded)
				err = B.Download(tmp, host[part])
			}
			B.Free(tmp)
			if err != nil {
				return nil, fmt.Errorf("gather state: %w", err)
			}
		}
		if out == nil {
			continue
		}
		for i, p := range bk.params {
			off, n := bk.offs[i], numel(p.Shape)
			out[p] = [3][]float32{host[0][off : off+n], host[1][off : off+n], host[2][off : off+n]}
		}
	}
	return out, nil
}

// loadShard is the checkpoint sink of a sharded rank: the master goes to
// the parameter's full compute weight (every rank reads the whole file)
// and, when separate, to the rank's master chunk; the moments to the
// rank's chunks.
func (d *DataParallel) loadShard(p *Param, part int, v []float32) error {
	B := d.m.B
	if part == 0 {
		if err := B.Upload(p.W, v); err != nil {
			return err
		}
	}
	for _, bk := range d.buckets {
		for _, s := range bk.segs {
			if s.p != p {
				continue
			}
			dst := []Tensor{s.master, s.m, s.v}[part]
			if part == 0 && d.m.Compute == F32 {
				continue // the master chunk is a view of W
			}
			if err := B.Upload(dst, v[s.paramOff:s.paramOff+s.n]); err != nil {
				return err
			}
		}
	}
	return nil
}

// Free stops the communication goroutine and frees the buckets.
func (d *DataParallel) Free() {
	if d == nil {
		return
	}
	d.closeMu.Do(func() {
		close(d.jobs)
		if c, ok := d.C.(Closer); ok {
			c.Close()
		}
		B := d.m.B
		for _, bk := range d.buckets {
			for _, t := range []Tensor{bk.grad, bk.weight, bk.mom, bk.vel} {
				if t != nil {
					B.Free(t)
				}
			}
			if bk.master != nil && d.m.Compute != F32 {
				B.Free(bk.master)
			}
		}
		B.Free(d.cmd)
	})
}

// MakeTrainable makes m's trainable parameters for training: LoRA
// adapters when lora is set, else every weight (full fine-tuning). With a
// collective c it also makes m one rank of c's group (full fine-tuning
// then shards the optimizer state and masters, so the weights are only
// marked and NewDataParallel allocates the rank's share) and returns the
// rank's DataParallel; without, nil. Run preparation and whet bench both
// go through it, so a benchmark measures what a run does.
func MakeTrainable(m *Model, lora *LoRAOptions, c Collective, bucketBytes int) (*DataParallel, error) {
	var err error
	switch {
	case lora != nil:
		err = m.AddLoRA(*lora)
	case c != nil:
		err = m.MarkShardedTrainable()
	default:
		err = m.MakeAllTrainable()
	}
	if err != nil || c == nil {
		return nil, err
	}
	// Before the activations: gradients (and, sharded, weights) move into
	// the buckets.
	return NewDataParallel(m, c, lora == nil, bucketBytes)
}

// Lead readies the leader (rank 0) of a data-parallel group to be driven
// step by step with TrainStep outside Run (whet bench), as Run does when
// it starts: every rank checks that it is at the same step. end tells the
// followers (running Follow) that the work is over; call it once done,
// whatever happened.
func (t *Trainer) Lead() (end func(), err error) {
	if t.DP == nil || !t.DP.leader() {
		return nil, errors.New("Lead is for rank 0 of a data-parallel group")
	}
	if err := t.DP.agree(t.step); err != nil {
		t.DP.end()
		return nil, err
	}
	return t.DP.end, nil
}

// stepBatch is one micro-batch of an optimizer step.
type stepBatch struct {
	b     *datasets.Batch
	rows  []int // indices of the training rows joined
	epoch float64
	seed  uint64 // dropout seed
}

// stepBatches returns the micro-batches of the step that begins at
// cursor, all of them as a one-rank run makes them (objectives take the
// step's totals from these), and this rank's share. With at least as many
// micro-batches as ranks the share is every Size()-th micro-batch from
// Rank(), with the one-rank run's dropout seeds; with fewer, the step's
// rows are dealt out one by one, so that no rank idles (dropout masks then
// differ from a one-rank run's, their distribution does not).
func (t *Trainer) stepBatches(cursor, n int) (all, mine []stepBatch) {
	for i := 0; i < n; i++ {
		b, rows, ep := t.microBatchRows(cursor + i)
		all = append(all, stepBatch{b: b, rows: rows, epoch: ep, seed: t.dropoutSeed(cursor + i)})
	}
	if t.DP == nil || t.DP.C.Size() == 1 {
		return all, all
	}
	size, rank := t.DP.C.Size(), t.DP.C.Rank()
	if n >= size {
		for i := rank; i < n; i += size {
			mine = append(mine, all[i])
		}
		return all, mine
	}
	var rows []int
	for _, mb := range all {
		rows = append(rows, mb.rows...)
	}
	var own []int
	for j := rank; j < len(rows); j += size {
		own = append(own, rows[j])
	}
	per := max(1, t.Cfg.MicroBatch)
	for k := 0; k*per < len(own); k++ {
		idx := own[k*per : min(len(own), (k+1)*per)]
		parts := make([]*datasets.Batch, len(idx))
		for i, r := range idx {
			parts[i] = &t.Train[r]
		}
		mine = append(mine, stepBatch{b: JoinBatches(parts), rows: idx, epoch: all[len(all)-1].epoch,
			seed: mix64(t.dropoutSeed(cursor) + uint64(rank*n+k+1))})
	}
	return all, mine
}

// forShare runs fn on each of the rank's micro-batches; during the last
// one's backward the gradient buckets are reduced as layers finish.
func (t *Trainer) forShare(mine []stepBatch, fn func(i int, mb stepBatch) error) error {
	for i, mb := range mine {
		if t.DP != nil && i == len(mine)-1 {
			t.Acts.afterLayer = t.DP.afterLayer
		}
		err := fn(i, mb)
		if t.Acts != nil { // nil for Llama 3.2 Vision (train_vision.go)
			t.Acts.afterLayer = nil
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// Follow serves a follower rank (not rank 0) of a data-parallel run: it
// does what the leader broadcasts until the leader's run ends. A step
// that fails the finiteness checks fails on every rank alike and the
// leader decides what follows; any other error aborts the group.
func (t *Trainer) Follow() error {
	if t.DP == nil || t.DP.leader() {
		return errors.New("Follow is for the ranks other than 0 of a data-parallel run")
	}
	if err := t.DP.agree(t.step); err != nil {
		return fmt.Errorf("rank %d: %w", t.DP.C.Rank(), err)
	}
	for {
		c, err := t.DP.command(0)
		if err != nil {
			return err
		}
		switch c {
		case cmdStep:
			if _, err := t.trainStep(); err != nil {
				var nf *NonFiniteError
				if errors.As(err, &nf) {
					continue
				}
				t.DP.abort(err)
				return fmt.Errorf("rank %d: %w", t.DP.C.Rank(), err)
			}
		case cmdGather:
			if _, err := t.DP.gatherState(); err != nil {
				t.DP.abort(err)
				return fmt.Errorf("rank %d: %w", t.DP.C.Rank(), err)
			}
		case cmdEnd:
			return nil
		default:
			err := fmt.Errorf("rank %d: unknown command %v from the leader", t.DP.C.Rank(), c)
			t.DP.abort(err)
			return err
		}
	}
}

// ResumeFollower restores a follower rank from the newest good checkpoint
// in dir (the leader's run folder's checkpoints), as Resume does on the
// leader; the run folder itself is the leader's to write.
func (t *Trainer) ResumeFollower(dir string) error {
	all, err := ListCheckpoints(dir)
	if err != nil || len(all) == 0 {
		return err
	}
	for i := len(all) - 1; i >= 0; i-- {
		st, err := t.loadCheckpoint(all[i].Path)
		var damaged *DamagedCheckpointError
		if i > 0 && errors.As(err, &damaged) {
			continue
		}
		if err != nil {
			return err
		}
		t.step, t.cursor, t.Opt.Step, t.lastLoss = st.Step, st.Cursor, st.OptStep, st.LastLoss
		return nil
	}
	return nil
}

// loadCheckpoint restores the trainable state from a checkpoint folder:
// into the parameters, or the rank's shards.
func (t *Trainer) loadCheckpoint(path string) (TrainerState, error) {
	if t.DP != nil && t.DP.Shard {
		return loadCheckpoint(path, t.Model, t.DP.loadShard)
	}
	return LoadCheckpoint(path, t.Model)
}

// saveCheckpoint writes a checkpoint of every rank's state, once, by the
// leader: sharded state is gathered bucket by bucket first (the followers
// join through the command).
func (t *Trainer) saveCheckpoint() (string, error) {
	dir := RunDir(t.Dir).Checkpoints()
	if t.DP == nil || !t.DP.Shard {
		return SaveCheckpoint(dir, t.Model, t.state(), t.Cfg.KeepCheckpoints)
	}
	if _, err := t.DP.command(cmdGather); err != nil {
		return "", err
	}
	state, err := t.DP.gatherState()
	if err != nil {
		// The followers may be inside a gather this rank left: fail
		// them rather than let later collectives pair up wrongly.
		t.DP.abort(err)
		return "", err
	}
	return saveCheckpoint(dir, t.Model, t.state(), t.Cfg.KeepCheckpoints, func(p *Param, part int) ([]float32, error) {
		s, ok := state[p]
		if !ok {
			return nil, fmt.Errorf("no gathered state for %s", p.Name)
		}
		return s[part], nil
	})
}
