package engine_test

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"whet/engine"
)

// TestLoRAFusedMatchesUnfused builds each family's tiny model twice, with
// adapters stacked (LoRAOptions.Fused) and without, the same weights and
// adapters in both, and checks that logits, the training loss and every
// adapter gradient agree to float32 tolerance: all targets and subsets,
// with and without dropout (where the groups run unstacked), plain and
// with checkpointing and MLP tiles, and over an NF4 base (QLoRA).
func TestLoRAFusedMatchesUnfused(t *testing.T) {
	t.Setenv(engine.LoRAFusedEnv, "0") // Fused: false is unstacked
	type tc struct {
		family  string
		targets []string
		stacks  int // stacked groups per layer
	}
	cases := []tc{
		{"llama", nil, 2},
		{"llama", []string{"q_proj", "v_proj"}, 1},
		{"llama", []string{"k", "v", "o", "up", "down"}, 1},
		{"qwen3", nil, 2},
		{"qwen3", []string{"q", "k", "gate", "up"}, 2},
		{"gemma3", nil, 2},
		{"gemma3", []string{"v", "gate", "down"}, 0},
		{"phi3", nil, 0},
		{"phi3", []string{"qkv_proj", "o_proj"}, 0},
	}
	build := func(t *testing.T, c tc, fused, nf4 bool, drop float64) *engine.Model {
		var m *engine.Model
		if c.family == "llama" {
			m = newTiny(t, true, false)
		} else {
			m = newTinyFamily(t, c.family)
		}
		t.Cleanup(m.Free)
		if nf4 {
			if err := m.QuantizeBase(); err != nil {
				t.Fatal(err)
			}
		}
		if err := m.AddLoRA(engine.LoRAOptions{Rank: 3, Alpha: 6, Dropout: drop, Targets: c.targets, Seed: 4, Fused: fused}); err != nil {
			t.Fatal(err)
		}
		rng := rand.New(rand.NewPCG(6, 6))
		for _, lin := range m.Linears() {
			if lin.LoRA == nil {
				continue
			}
			v := make([]float32, lin.LoRA.B.W.Len())
			for i := range v {
				v[i] = float32(rng.NormFloat64() * 0.3)
			}
			if err := m.B.Upload(lin.LoRA.B.Master, v); err != nil {
				t.Fatal(err)
			}
		}
		if err := m.SyncFromMasters(); err != nil {
			t.Fatal(err)
		}
		return m
	}
	type variant struct {
		drop     float64
		ckpt     bool
		mlpRows  int
		nf4      bool
		wantRuns bool
	}
	for _, c := range cases {
		for _, v := range []variant{{0, false, 0, false, true}, {0, true, 5, false, true}, {0.3, false, 0, false, false}, {0.3, true, 5, false, false}, {0, false, 0, true, true}} {
			if v.nf4 && c.family != "llama" {
				continue
			}
			name := fmt.Sprintf("%s/%v/drop%.1f/ckpt%v/mlp%d/nf4%v", c.family, c.targets, v.drop, v.ckpt, v.mlpRows, v.nf4)
			t.Run(name, func(t *testing.T) {
				ref, fu := build(t, c, false, v.nf4, v.drop), build(t, c, true, v.nf4, v.drop)
				if n := len(engine.LoRAStackRows(ref)); n != 0 {
					t.Fatalf("unfused model has %d stacks", n)
				}
				rows := engine.LoRAStackRows(fu)
				if len(rows) != c.stacks*len(fu.Layers) {
					t.Fatalf("fused model has stacks %v, want %d per layer", rows, c.stacks)
				}
				b := tinyBatch(ref.Cfg.VocabSize, 2)
				acts := func(m *engine.Model) *engine.Activations {
					a, err := m.NewActivationsTiled(len(b.Tokens), v.ckpt, engine.Tiling{MLPRows: v.mlpRows})
					if err != nil {
						t.Fatal(err)
					}
					t.Cleanup(a.Free)
					return a
				}
				ar, af := acts(ref), acts(fu)
				lr, err := ar.Logits(b)
				if err != nil {
					t.Fatal(err)
				}
				lf, err := af.Logits(b)
				if err != nil {
					t.Fatal(err)
				}
				closeSlices(t, "logits", lf, lr, 1e-5)
				if got := af.StackedLoRAProducts() > 0; got != (c.stacks > 0) {
					t.Fatalf("stacked products in the forward: %d, stacks %d", af.StackedLoRAProducts(), c.stacks)
				}
				before := af.StackedLoRAProducts()
				scale := float32(1 / float64(b.NumTargets()))
				rr, err := ar.ForwardBackward(b, scale, true, 77)
				if err != nil {
					t.Fatal(err)
				}
				rf, err := af.ForwardBackward(b, scale, true, 77)
				if err != nil {
					t.Fatal(err)
				}
				// A second micro-batch adds to the gradients.
				b2 := tinyBatch(ref.Cfg.VocabSize, 5)
				if _, err := ar.ForwardBackward(b2, scale, true, 78); err != nil {
					t.Fatal(err)
				}
				if _, err := af.ForwardBackward(b2, scale, true, 78); err != nil {
					t.Fatal(err)
				}
				if ran := af.StackedLoRAProducts() > before; ran != (v.wantRuns && c.stacks > 0) {
					t.Fatalf("stacked products while training: %v (dropout %v, stacks %d)", ran, v.drop, c.stacks)
				}
				if math.Abs(rr.LossSum-rf.LossSum) > 1e-5*math.Abs(rr.LossSum) || rr.Count != rf.Count {
					t.Fatalf("loss %v over %d fused, %v over %d unfused", rf.LossSum, rf.Count, rr.LossSum, rr.Count)
				}
				pr, pf := ref.TrainableParams(), fu.TrainableParams()
				if len(pr) != len(pf) {
					t.Fatalf("%d trainable tensors fused, %d unfused", len(pf), len(pr))
				}
				gr, gf := trainableGrads(ref), trainableGrads(fu)
				for i := range pr {
					if pr[i].Name != pf[i].Name || !slices.Equal(pr[i].Shape, pf[i].Shape) {
						t.Fatalf("param %d: %s %v fused, %s %v unfused", i, pf[i].Name, pf[i].Shape, pr[i].Name, pr[i].Shape)
					}
					closeSlices(t, pr[i].Name+" grad", gf[i], gr[i], 1e-4)
				}
			})
		}
	}
}

// closeSlices fails unless got and want agree within tol relative to the
// largest |want| (float32 sums in another order).
func closeSlices(t *testing.T, what string, got, want []float32, tol float64) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d values, want %d", what, len(got), len(want))
	}
	scale := 0.0
	for _, w := range want {
		scale = max(scale, math.Abs(float64(w)))
	}
	nonzero := false
	for i := range want {
		if want[i] != 0 {
			nonzero = true
		}
		if d := math.Abs(float64(got[i]) - float64(want[i])); d > tol*max(scale, 1e-30) || math.IsNaN(float64(got[i])) {
			t.Fatalf("%s[%d] = %g, want %g (scale %g)", what, i, got[i], want[i], scale)
		}
	}
	if !nonzero {
		t.Fatalf("%s: all zero", what)
	}
}
