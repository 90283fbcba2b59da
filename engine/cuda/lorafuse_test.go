package cuda_test

import (
	"math"
	"math/rand/v2"
	"testing"

	"whet/datasets"
	"whet/engine"
	"whet/engine/cpu"
	"whet/engine/cuda"
)

// TestLoRAStackedMatchesCPU checks the stacked adapters (LoRAOptions.Fused,
// engine/lorafuse.go) on the GPU, without dropout so that the training
// passes run them stacked: each family's tiny model with adapters on every
// linear, first one backward's adapter gradients (with random B, so that
// A's gradients are not zero) from the GPU stacked and unstacked against
// the CPU's (unstacked, float32): the stacked error may be at most three
// times the unstacked one plus 1e-2 (both are bf16 rounding, summed in
// another order; a wrong product is off by order 1); then 40 optimizer steps stacked on the GPU against
// the CPU unstacked, every step's loss within 1%.
func TestLoRAStackedMatchesCPU(t *testing.T) {
	gpu := newGPU(t, cuda.Options{})
	t.Setenv(engine.LoRAFusedEnv, "0") // Fused: false is unstacked
	const steps = 40
	for _, family := range gpuFamilyNames {
		t.Run(family, func(t *testing.T) {
			cfg := gpuFamilyConfig(t, family)
			batches := patternBatches(cfg.VocabSize, 4)
			model := func(b engine.Backend, fused bool) *engine.Model {
				m := newFamilyModel(t, cfg, b, 0.15)
				if err := m.AddLoRA(engine.LoRAOptions{Rank: 8, Alpha: 16, Seed: 1, Fused: fused}); err != nil {
					t.Fatal(err)
				}
				return m
			}
			grads := func(b engine.Backend, fused bool) ([][]float32, int) {
				m := model(b, fused)
				rng := rand.New(rand.NewPCG(6, 6))
				for _, lin := range m.Linears() {
					v := make([]float32, lin.LoRA.B.W.Len())
					for i := range v {
						v[i] = float32(rng.NormFloat64() * 0.1)
					}
					if err := b.Upload(lin.LoRA.B.Master, v); err != nil {
						t.Fatal(err)
					}
				}
				if err := m.SyncFromMasters(); err != nil {
					t.Fatal(err)
				}
				a, err := m.NewActivations(len(batches[0].Tokens), false)
				if err != nil {
					t.Fatal(err)
				}
				defer a.Free()
				bt := batches[0]
				if _, err := a.ForwardBackward(bt, float32(1/float64(bt.NumTargets())), true, 1); err != nil {
					t.Fatalf("%s fused=%v: %v", b.Name(), fused, err)
				}
				var out [][]float32
				for _, p := range m.TrainableParams() {
					g := make([]float32, p.Grad.Len())
					if err := b.Download(p.Grad, g); err != nil {
						t.Fatal(err)
					}
					out = append(out, g)
				}
				return out, a.StackedLoRAProducts()
			}
			want, _ := grads(cpu.New(), false)
			plain, n0 := grads(gpu, false)
			stacked, n1 := grads(gpu, true)
			groups := len(engine.FamilyOf(cfg.ModelType).LoRAStackGroups())
			if n0 != 0 || (n1 > 0) != (groups > 0) {
				t.Fatalf("stacked products: %d unstacked, %d stacked (%d groups a layer)", n0, n1, groups)
			}
			worstPlain, worstStacked := 0.0, 0.0
			for i := range want {
				ep, es := relL2(plain[i], want[i]), relL2(stacked[i], want[i])
				worstPlain, worstStacked = max(worstPlain, ep), max(worstStacked, es)
				if !(es <= 3*ep+1e-2) {
					t.Errorf("adapter gradient %d: stacked off the CPU's by %.3g relative, unstacked by %.3g", i, es, ep)
				}
			}
			t.Logf("adapter gradients against the CPU: worst relative error %.3g unstacked, %.3g stacked (%d stacked products)", worstPlain, worstStacked, n1)

			ref := trainLoRA(t, model(cpu.New(), false), batches, steps, 2e-3)
			got := trainLoRA(t, model(gpu, true), batches, steps, 2e-3)
			worst, at := 0.0, 0
			for i := range steps {
				if d := math.Abs(got[i]-ref[i]) / (0.01 * math.Abs(ref[i])); d > worst || math.IsNaN(got[i]) {
					worst, at = d, i
				}
			}
			t.Logf("loss cpu %.4f -> %.4f, cuda stacked %.4f -> %.4f; largest difference %.2f of the 1%% bound at step %d",
				ref[0], ref[steps-1], got[0], got[steps-1], worst, at+1)
			if !(ref[steps-1] < ref[0]) {
				t.Errorf("the CPU's loss did not fall (%.4f -> %.4f)", ref[0], ref[steps-1])
			}
			if worst > 1 || math.IsNaN(worst) {
				t.Errorf("stacked GPU loss curve leaves 1%% of the CPU's at step %d\ncpu  %v\ncuda %v", at+1, ref, got)
			}
		})
	}
}

// trainLoRA runs steps optimizer steps of one micro-batch each (cycling
// through batches) on a model whose adapters (or trainable weights) are
// made already, with gradient clipping at 1 and AdamW, and returns every
// step's mean token loss. trainFamily sets the method up, then calls it.
func trainLoRA(t *testing.T, m *engine.Model, batches []*datasets.Batch, steps int, lr float64) []float64 {
	t.Helper()
	a, err := m.NewActivations(len(batches[0].Tokens), false)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Free()
	opt := &engine.Optimizer{Beta1: 0.9, Beta2: 0.999, Eps: 1e-8, WeightDecay: 0.01}
	var losses []float64
	for s := range steps {
		b := batches[s%len(batches)]
		if err := m.ZeroGrads(); err != nil {
			t.Fatal(err)
		}
		res, err := a.ForwardBackward(b, float32(1/float64(b.NumTargets())), true, uint64(1000+s))
		if err != nil {
			t.Fatalf("%s: step %d: %v", m.B.Name(), s+1, err)
		}
		if _, err := engine.ClipGrads(m, 1); err != nil {
			t.Fatal(err)
		}
		if err := opt.Apply(m, lr); err != nil {
			t.Fatal(err)
		}
		losses = append(losses, res.LossSum/float64(res.Count))
	}
	return losses
}

// relL2 is |got-want| / |want| over a whole tensor.
func relL2(got, want []float32) float64 {
	var d, n float64
	for i := range want {
		d += math.Pow(float64(got[i])-float64(want[i]), 2)
		n += math.Pow(float64(want[i]), 2)
	}
	if n == 0 {
		return math.Sqrt(d)
	}
	return math.Sqrt(d / n)
}
