package engine_test

import (
	"math"
	"math/rand/v2"
	"testing"

	"whet/datasets"
	"whet/engine"
)

// pairBatch lays out n pairs (chosen, rejected) with a shared prompt of 3
// masked tokens and responses of different lengths.
func pairBatch(vocab, n int, seed uint64) *datasets.Batch {
	rng := rand.New(rand.NewPCG(seed, 3))
	b := &datasets.Batch{SeqStarts: []int32{0}}
	for p := 0; p < n; p++ {
		prompt := []int32{int32(rng.IntN(vocab)), int32(rng.IntN(vocab)), int32(rng.IntN(vocab))}
		for k := 0; k < 2; k++ {
			resp := 3 + k + p%2
			start := len(b.Tokens)
			toks := append([]int32(nil), prompt...)
			for i := 0; i < resp; i++ {
				toks = append(toks, int32(rng.IntN(vocab)))
			}
			for i, tk := range toks {
				b.Tokens = append(b.Tokens, tk)
				b.Positions = append(b.Positions, int32(i))
				if i+1 < len(prompt) || i == len(toks)-1 {
					b.Targets = append(b.Targets, datasets.IgnoreIndex)
				} else {
					b.Targets = append(b.Targets, toks[i+1])
				}
			}
			_ = start
			b.SeqStarts = append(b.SeqStarts, int32(len(b.Tokens)))
		}
	}
	return b
}

// TestDPOGradientFiniteDiff checks the DPO gradient of LoRA parameters,
// both loss types, against finite differences of the DPO loss.
func TestDPOGradientFiniteDiff(t *testing.T) {
	for _, d := range []engine.DPOLoss{{Beta: 0.5}, {Beta: 0.3, LabelSmoothing: 0.1}, {Beta: 0.2, Type: "ipo"}} {
		m := newTiny(t, true, false)
		b := pairBatch(m.Cfg.VocabSize, 2, 1)
		a, _ := m.NewActivations(len(b.Tokens), false)
		ref, err := a.PairLogprobs(b, d)
		if err != nil {
			t.Fatal(err)
		}
		if err := m.AddLoRA(engine.LoRAOptions{Rank: 2, Alpha: 4, Seed: 3}); err != nil {
			t.Fatal(err)
		}
		rng := rand.New(rand.NewPCG(8, 8))
		randomLoRAB(t, m, rng)
		a, _ = m.NewActivations(len(b.Tokens), false)
		lossAt := func() float64 {
			pol, err := a.PairLogprobs(b, d)
			if err != nil {
				t.Fatal(err)
			}
			l, _, _, _ := d.Compute(pol, ref)
			return l
		}
		m.ZeroGrads()
		r, err := a.DPOForwardBackward(b, ref, d, 1, 0)
		if err != nil {
			t.Fatal(err)
		}
		if math.Abs(r.Loss-lossAt()) > 1e-6 {
			t.Fatalf("%+v: loss %g, recomputed %g", d, r.Loss, lossAt())
		}
		checkFiniteDiff(t, m, rng, trainableGrads(m), lossAt, d)
	}
}

func TestDPOMetricsAtStart(t *testing.T) {
	// With the policy equal to the reference every reward is 0, the
	// sigmoid loss is log 2 and no pair counts as won.
	pol := []engine.PairLogps{{-3, -4}, {-5, -2}}
	loss, dc, dr, m := engine.DPOLoss{Beta: 0.1}.Compute(pol, pol)
	if math.Abs(loss-math.Ln2) > 1e-12 || m["rewards/accuracies"] != 0 || m["rewards/margins"] != 0 {
		t.Fatalf("loss %g metrics %v", loss, m)
	}
	if m["logps/chosen"] != -4 || m["logps/rejected"] != -3 {
		t.Fatalf("logps metrics %v", m)
	}
	if dc[0] >= 0 || dr[0] <= 0 {
		t.Fatalf("the loss must push chosen up and rejected down: %v %v", dc, dr)
	}
}

// TestDPOTrainingRaisesAccuracyAndMargin runs a short DPO optimisation on
// synthetic pairs and checks rewards/accuracies and the margin go up.
func TestDPOTrainingRaisesAccuracyAndMargin(t *testing.T) {
	m := newTiny(t, false, false)
	d := engine.DPOLoss{Beta: 0.5}
	b := pairBatch(m.Cfg.VocabSize, 4, 5)
	a, _ := m.NewActivations(len(b.Tokens), false)
	ref, err := a.PairLogprobs(b, d)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.AddLoRA(engine.LoRAOptions{Rank: 4, Alpha: 8, Seed: 2}); err != nil {
		t.Fatal(err)
	}
	a, _ = m.NewActivations(len(b.Tokens), false)
	opt := &engine.Optimizer{Beta1: 0.9, Beta2: 0.999, Eps: 1e-8}
	var first, last engine.DPOResult
	for step := 0; step < 30; step++ {
		m.ZeroGrads()
		r, err := a.DPOForwardBackward(b, ref, d, 1, uint64(step))
		if err != nil {
			t.Fatal(err)
		}
		if step == 0 {
			first = r
		}
		last = r
		if err := opt.Apply(m, 1e-2); err != nil {
			t.Fatal(err)
		}
	}
	if !(last.Metrics["rewards/accuracies"] > first.Metrics["rewards/accuracies"]) ||
		!(last.Metrics["rewards/margins"] > first.Metrics["rewards/margins"]+0.5) || !(last.Loss < first.Loss) {
		t.Fatalf("DPO did not learn: first %v loss %.4f, last %v loss %.4f", first.Metrics, first.Loss, last.Metrics, last.Loss)
	}
}
