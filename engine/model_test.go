package engine_test

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"whet/datasets"
	"whet/engine"
	"whet/engine/cpu"
)

// tinyConfig is a small random decoder exercising GQA, q/k/v bias, llama3
// rope scaling and an untied head.
func tinyConfig(bias, tied bool) engine.ModelConfig {
	return engine.ModelConfig{ModelType: "llama", VocabSize: 37, HiddenSize: 16, IntermediateSize: 24,
		NumLayers: 2, NumHeads: 4, NumKVHeads: 2, HeadDim: 4, RMSNormEps: 1e-5, RopeTheta: 10000,
		MaxPositions: 64, TieWordEmbeddings: tied, AttentionBias: bias,
		RopeScaling: &engine.RopeScaling{Type: "llama3", Factor: 4, LowFreqFactor: 1, HighFreqFactor: 2, OriginalMaxPositionEmbeddings: 8}}
}

// tinyBatch packs two sequences (7 and 5 tokens) with a masked prompt.
func tinyBatch(vocab int, seed uint64) *datasets.Batch {
	rng := rand.New(rand.NewPCG(seed, 2))
	lens := []int{7, 5}
	b := &datasets.Batch{SeqStarts: []int32{0}}
	for _, n := range lens {
		start := len(b.Tokens)
		for i := 0; i < n; i++ {
			b.Tokens = append(b.Tokens, int32(rng.IntN(vocab)))
			b.Positions = append(b.Positions, int32(i))
		}
		for i := 0; i < n; i++ {
			if i == n-1 || (start == 0 && i < 2) {
				b.Targets = append(b.Targets, datasets.IgnoreIndex)
			} else {
				b.Targets = append(b.Targets, b.Tokens[start+i+1])
			}
		}
		b.SeqStarts = append(b.SeqStarts, int32(len(b.Tokens)))
	}
	return b
}

func newTiny(t *testing.T, bias, tied bool) *engine.Model {
	t.Helper()
	return newRandomModel(t, tinyConfig(bias, tied), func(v []float32, rng *rand.Rand) {
		for i := range v {
			v[i] += float32(rng.NormFloat64() * 0.2)
		}
	})
}

// newRandomModel builds cfg on the CPU with InitRandom(3, 0.3) weights,
// then passes every vector parameter (norm weights, biases: constant or
// zero at init) to perturb with one rng, so that their gradients matter.
func newRandomModel(t *testing.T, cfg engine.ModelConfig, perturb func(v []float32, rng *rand.Rand)) *engine.Model {
	t.Helper()
	m, err := engine.NewModel(cfg, cpu.New())
	if err != nil {
		t.Fatal(err)
	}
	if err := m.InitRandom(3, 0.3); err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(9, 9))
	for _, p := range m.Params() {
		if len(p.Shape) == 1 {
			v := make([]float32, p.Shape[0])
			if err := m.B.Download(p.W, v); err != nil {
				t.Fatal(err)
			}
			perturb(v, rng)
			if err := m.B.Upload(p.W, v); err != nil {
				t.Fatal(err)
			}
		}
	}
	return m
}

// lossOf is the mean token loss of b under m's current weights.
func lossOf(t *testing.T, a *engine.Activations, b *datasets.Batch) float64 {
	r, err := a.ForwardBackward(b, 0, false, 0)
	if err != nil {
		t.Fatal(err)
	}
	return r.LossSum / float64(r.Count)
}

// checkWholeModelFD runs m's backward once on tinyBatch(…, 1) (mean
// token loss, checkpointing as ckpt says) and checks three coordinates of
// every trainable parameter's gradient against central differences of the
// loss, with a step wide enough for float32 losses.
func checkWholeModelFD(t *testing.T, m *engine.Model, ckpt bool) {
	t.Helper()
	b := tinyBatch(m.Cfg.VocabSize, 1)
	a, err := m.NewActivations(len(b.Tokens), ckpt)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.ForwardBackward(b, float32(1/float64(b.NumTargets())), true, 0); err != nil {
		t.Fatal(err)
	}
	checkFiniteDiffAt(t, m, rand.New(rand.NewPCG(5, 5)), trainableGrads(m), func() float64 { return lossOf(t, a, b) }, "",
		fdStep{h: 1e-2, tol: 2e-3, coords: 3})
}

// TestModelFiniteDiff checks the whole decoder's backward (every layer
// chained: embedding, norms, projections with bias, rope, GQA attention
// over packed sequences, SwiGLU, head, cross-entropy) against central
// differences of the loss on a few coordinates of every parameter.
func TestModelFiniteDiff(t *testing.T) {
	for _, tc := range []struct {
		name       string
		bias, tied bool
		ckpt       bool
	}{{"untied", false, false, false}, {"bias-tied", true, true, false}, {"checkpointing", true, false, true}} {
		t.Run(tc.name, func(t *testing.T) {
			m := newTiny(t, tc.bias, tc.tied)
			if err := m.MakeAllTrainable(); err != nil {
				t.Fatal(err)
			}
			checkWholeModelFD(t, m, tc.ckpt)
		})
	}
}

// TestLoRAFiniteDiff checks adapter gradients (with a non-zero B, with and
// without dropout) against finite differences; also with the MLP in tiles
// of 5 rows and checkpointing, where each tile's dropout mask must be the
// same in the forward and in the backward's recomputes.
func TestLoRAFiniteDiff(t *testing.T) {
	for _, tc := range []struct {
		drop  float64
		chunk int
		ckpt  bool
	}{{0, 0, false}, {0.3, 0, false}, {0.3, 5, true}} {
		drop := tc.drop
		m := newTiny(t, true, false)
		if err := m.AddLoRA(engine.LoRAOptions{Rank: 2, Alpha: 4, Dropout: drop, Seed: 4}); err != nil {
			t.Fatal(err)
		}
		rng := rand.New(rand.NewPCG(6, 6))
		randomLoRAB(t, m, rng)
		b := tinyBatch(m.Cfg.VocabSize, 2)
		a, err := m.NewActivationsTiled(len(b.Tokens), tc.ckpt, engine.Tiling{MLPRows: tc.chunk})
		if err != nil {
			t.Fatal(err)
		}
		const seed = 77
		// Loss in training mode (dropout on, same mask); the backward it
		// also runs only adds to gradients already read below.
		loss := func() float64 {
			r, err := a.ForwardBackward(b, 0, true, seed)
			if err != nil {
				t.Fatal(err)
			}
			return r.LossSum / float64(r.Count)
		}
		if _, err := a.ForwardBackward(b, float32(1/float64(b.NumTargets())), true, seed); err != nil {
			t.Fatal(err)
		}
		for _, p := range m.TrainableParams() {
			if len(p.Shape) != 2 || p.W.Len() == 0 {
				t.Fatalf("trainable %s %v is no adapter matrix", p.Name, p.Shape)
			}
		}
		checkFiniteDiffAt(t, m, rng, trainableGrads(m), loss, fmt.Sprintf("dropout %.1f mlp chunk %d checkpointing %v ", drop, tc.chunk, tc.ckpt), fdStep{h: 1e-2, tol: 2e-3, coords: 1})
	}
}

// TestLoRAStartsAsBase: with PEFT's init (B = 0) the adapted model's logits
// equal the base's, and switching adapters off restores them after training.
func TestLoRAStartsAsBase(t *testing.T) {
	m := newTiny(t, false, false)
	b := tinyBatch(m.Cfg.VocabSize, 3)
	a0, _ := m.NewActivations(len(b.Tokens), false)
	base, err := a0.Logits(b)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.AddLoRA(engine.LoRAOptions{Rank: 4, Alpha: 8, Targets: []string{"q_proj", "v_proj"}, Seed: 1}); err != nil {
		t.Fatal(err)
	}
	a, _ := m.NewActivations(len(b.Tokens), false)
	got, _ := a.Logits(b)
	for i := range base {
		if got[i] != base[i] {
			t.Fatalf("logit %d changed by a zero-initialised adapter: %g vs %g", i, got[i], base[i])
		}
	}
	if n := len(m.TrainableParams()); n != 2*2*len(m.Layers) {
		t.Fatalf("%d trainable tensors, want %d (q and v adapters)", n, 4*len(m.Layers))
	}
}
