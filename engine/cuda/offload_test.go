package cuda

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"whet/datasets"
	"whet/engine"
)

// TestHostCopies: a bf16 tensor copied to pinned host memory, the device
// copy overwritten, and the host copy fetched into another tensor after
// an AwaitCopies reads back as it was; HostBytes counts the buffer until
// FreeHost. Needs a GPU.
func TestHostCopies(t *testing.T) {
	b := newTestBackend(t)
	rng := rand.New(rand.NewPCG(1, 2))
	const n = 1<<20 + 3
	vals := randVals(rng, n)
	for i := range vals {
		vals[i] = bf16Value(bf16Bits(vals[i]))
	}
	src, err := b.Alloc(engine.BF16, n)
	if err != nil {
		t.Fatal(err)
	}
	dst, err := b.Alloc(engine.BF16, n)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Upload(src, vals); err != nil {
		t.Fatal(err)
	}
	h, err := b.AllocHost(engine.BF16, n+5)
	if err != nil {
		t.Fatal(err)
	}
	if got := b.HostBytes(); got != 2*(n+5) {
		t.Errorf("HostBytes %d, want %d", got, 2*(n+5))
	}
	if err := b.CopyToHost(h, src); err != nil {
		t.Fatal(err)
	}
	if err := b.AwaitCopies(src); err != nil {
		t.Fatal(err)
	}
	if err := b.Fill(src, 7); err != nil { // after the await: must not reach the host copy
		t.Fatal(err)
	}
	if err := b.CopyFromHost(dst, h); err != nil {
		t.Fatal(err)
	}
	if err := b.AwaitCopies(dst); err != nil {
		t.Fatal(err)
	}
	got := make([]float32, n)
	if err := b.Download(dst, got); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got, vals) {
		t.Error("the values fetched back from host memory differ from those copied out")
	}
	b.FreeHost(h)
	if b.HostBytes() != 0 {
		t.Errorf("HostBytes %d after FreeHost", b.HostBytes())
	}
	if err := b.CopyToHost(h, src); err == nil {
		t.Error("a copy into a freed host tensor was accepted")
	}
}

// TestOffloadedCheckpointsOnDevice trains a six-layer LoRA model (1024
// tokens, checkpointing, dropout) for three micro-batches with the
// checkpoints on the device and offloaded to pinned host memory: the
// losses and gradients must be bit-equal when two runs on the device are
// (deterministic kernels), else within twice the spread of those two.
// The activations must hold less device memory by the offloaded streams. Needs a GPU.
func TestOffloadedCheckpointsOnDevice(t *testing.T) {
	b := newTestBackend(t)
	cfg := engine.ModelConfig{ModelType: "llama", VocabSize: 4096, HiddenSize: 256, IntermediateSize: 704,
		NumLayers: 6, NumHeads: 4, NumKVHeads: 2, HeadDim: 64, RMSNormEps: 1e-5, RopeTheta: 10000,
		MaxPositions: 1024, TieWordEmbeddings: true}
	m, err := engine.NewModel(cfg, b)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Free()
	if err := m.InitRandom(1, 0.05); err != nil {
		t.Fatal(err)
	}
	if err := m.AddLoRA(engine.LoRAOptions{Rank: 8, Alpha: 16, Dropout: 0.1, Seed: 3}); err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(5, 5))
	for _, lin := range m.Linears() {
		if err := b.Upload(lin.LoRA.B.W, randVals(rng, lin.LoRA.B.W.Len())); err != nil {
			t.Fatal(err)
		}
	}
	const T = 1024
	var batches []*datasets.Batch
	for range 3 {
		bt := &datasets.Batch{SeqStarts: []int32{0, 600, T}}
		for i := range T {
			bt.Tokens = append(bt.Tokens, int32(rng.IntN(cfg.VocabSize)))
			bt.Positions = append(bt.Positions, int32(i%600))
		}
		for i := range T {
			tg := int32(datasets.IgnoreIndex)
			if i+1 < T && i != 599 {
				tg = bt.Tokens[i+1]
			}
			bt.Targets = append(bt.Targets, tg)
		}
		batches = append(batches, bt)
	}
	run := func(mode string) ([]float64, [][]float32, int64) {
		before := b.InUseBytes()
		a, err := m.NewActivationsWith(T, engine.ActivationOptions{Checkpointing: true, Offload: mode})
		if err != nil {
			t.Fatal(err)
		}
		defer a.Free()
		if a.OffloadsCheckpoints() != (mode == engine.OffloadOn) {
			t.Fatalf("offload %s: offloads %v", mode, a.OffloadsCheckpoints())
		}
		held := b.InUseBytes() - before
		var losses []float64
		var grads [][]float32
		for i, bt := range batches {
			if err := m.ZeroGrads(); err != nil {
				t.Fatal(err)
			}
			r, err := a.ForwardBackward(bt, 1/float32(bt.NumTargets()), true, uint64(11+i))
			if err != nil {
				t.Fatal(err)
			}
			losses = append(losses, r.LossSum)
		}
		for _, p := range m.TrainableParams() {
			g := make([]float32, p.Grad.Len())
			if err := b.Download(p.Grad, g); err != nil {
				t.Fatal(err)
			}
			grads = append(grads, g)
		}
		return losses, grads, held
	}
	l0, g0, held0 := run(engine.OffloadOff)
	l0b, g0b, _ := run(engine.OffloadOff)
	l1, g1, held1 := run(engine.OffloadOn)
	spread := func(x, y [][]float32) float64 {
		d := 0.0
		for i := range x {
			for j := range x[i] {
				d = max(d, math.Abs(float64(x[i][j]-y[i][j])))
			}
		}
		return d
	}
	det := slices.Equal(l0, l0b) && spread(g0, g0b) == 0
	t.Logf("losses on the device %v, again %v, offloaded %v; gradient spread device/device %g, device/offloaded %g",
		l0, l0b, l1, spread(g0, g0b), spread(g0, g1))
	if det {
		if !slices.Equal(l0, l1) || spread(g0, g1) != 0 {
			t.Errorf("deterministic on the device but offloaded differs: losses %v vs %v, gradients by up to %g", l0, l1, spread(g0, g1))
		}
	} else {
		for i := range l0 {
			if math.Abs(l1[i]-l0[i]) > 2*math.Abs(l0b[i]-l0[i])+1e-9*math.Abs(l0[i]) {
				t.Errorf("micro-batch %d: offloaded loss %v, device %v and %v", i, l1[i], l0[i], l0b[i])
			}
		}
		if s := spread(g0, g1); s > 2*spread(g0, g0b) {
			t.Errorf("offloaded gradients differ by %g, twice the device runs' own %g", s, spread(g0, g0b))
		}
	}
	saved := int64(cfg.NumLayers+1-engine.OffloadSlots) * T * int64(cfg.HiddenSize) * 2
	if held0-held1 != saved {
		t.Errorf("device memory held: %d on the device, %d offloaded; want %d less", held0, held1, saved)
	}
}
