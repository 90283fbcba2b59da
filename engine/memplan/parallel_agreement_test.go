package memplan_test

import (
	"testing"

	"whet/engine"
	"whet/engine/cpu"
	"whet/engine/dist"
)

// TestShardedPlanMatchesRankAllocations builds rank 0 of a 4-rank
// data-parallel full fine-tune (the ring's ranks exchange nothing while
// they are set up) on the CPU backend and checks the per-GPU plan within
// 5% of that rank's peak: the gradient buckets, a quarter of the
// moments, and no moment of the whole model allocated even while the run
// starts.
func TestShardedPlanMatchesRankAllocations(t *testing.T) {
	cfg := agreementLlama
	bs := []engine.Backend{cpu.New(), cpu.New(), cpu.New(), cpu.New()}
	ring := dist.NewLocalRing(bs)
	b := bs[0].(*cpu.Backend)
	m, err := engine.NewModel(cfg, b)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Free()
	if err := m.MarkShardedTrainable(); err != nil {
		t.Fatal(err)
	}
	dp, err := engine.NewDataParallel(m, ring[0], true, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer dp.Free()
	const batch, seq = 4, 256
	a, err := m.NewActivations(batch*seq, false)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Free()
	rc := engine.RunConfig{Method: "full", Backend: "cpu", Data: engine.DataConfig{MaxLength: seq},
		Train: engine.TrainConfig{MicroBatch: batch, GradAccum: 1}, Parallel: engine.ParallelConfig{Ranks: 4}}
	p := planOf(t, cfg, &rc)
	// The plan also holds the buffer a checkpoint gathers through, which
	// this rank allocates only while a checkpoint is written (by hand in
	// TestPlanFullShardedByHand).
	gather, ok := p.Find("dp.checkpoint_gather")
	if !ok {
		t.Fatal("the plan has no checkpoint gather buffer")
	}
	got, plan := b.PeakBytes(), p.Peak()-gather.Elems()*4
	ratio := float64(plan) / float64(got)
	t.Logf("rank 0 allocated %d bytes at its peak, plan %d without the gather buffer (%.3f)", got, plan, ratio)
	if ratio < 0.95 || ratio > 1.05 {
		t.Fatalf("plan %d bytes vs rank 0's peak %d: off by %.1f%%", plan, got, 100*(ratio-1))
	}
}
