package engine_test

import (
	"math/rand/v2"
	"testing"

	"whet/engine"
	"whet/engine/cpu"
)

// TestMllamaCheckpointing: with MllamaModel.Checkpointing the tiny Llama
// 3.2 Vision (LoRA on every language-model linear and the projector, the
// final norm and a cross-attention gate trainable) gives exactly the loss
// and every gradient it gives without (the backward reruns each layer's
// forward from its saved input, the same ops on the same values), in
// float32 and in bf16, for samples with images and without, and its peak
// memory on the CPU backend (which counts device bytes) is lower.
func TestMllamaCheckpointing(t *testing.T) {
	for _, dt := range []engine.DType{engine.F32, engine.BF16} {
		t.Run(dt.String(), func(t *testing.T) {
			f, m, cfg := tinyMllamaBF16Pair(t, 51, false)
			if dt == engine.F32 {
				m = f
			}
			rng := rand.New(rand.NewPCG(52, 53))
			samples := append(tinyMllamaSamples(cfg, rng), mllamaSample(cfg, rng, 40, []int{2}, [][2]int{{6, 4}}, 3), mllamaSample(cfg, rng, 9, nil, nil, 1))
			grads := func(ckpt bool) (float64, map[string][]float32, int64) {
				m.Checkpointing = ckpt
				if err := m.ZeroGrads(); err != nil {
					t.Fatal(err)
				}
				b := m.B.(*cpu.Backend)
				b.ResetPeak()
				r, err := m.Run(samples, true, false)
				if err != nil {
					t.Fatalf("checkpointing %v: %v", ckpt, err)
				}
				out := map[string][]float32{}
				for _, p := range m.Params() {
					if p.Trainable {
						v := make([]float32, p.Grad.Len())
						if err := m.B.Download(p.Grad, v); err != nil {
							t.Fatal(err)
						}
						out[p.Name] = v
					}
				}
				return r.Loss, out, b.PeakBytes()
			}
			l0, g0, peak0 := grads(false)
			l1, g1, peak1 := grads(true)
			if l0 != l1 {
				t.Errorf("loss %v with checkpointing, %v without", l1, l0)
			}
			if len(g0) == 0 {
				t.Fatal("no trainable parameter")
			}
			for name, want := range g0 {
				got := g1[name]
				for i := range want {
					if got[i] != want[i] {
						t.Errorf("%s[%d]: gradient %v with checkpointing, %v without", name, i, got[i], want[i])
						break
					}
				}
			}
			t.Logf("%s: peak %d bytes without checkpointing, %d with", dt, peak0, peak1)
			if peak1 >= peak0 {
				t.Errorf("checkpointing did not lower the peak: %d bytes, %d without", peak1, peak0)
			}
		})
	}
}

// TestMllamaForwardOnlyPeak: a forward without a backward (evaluation,
// generation) frees each layer's tensors once its output exists, so its
// peak on the CPU backend (which counts device bytes) is below the
// checkpointed training step's, whatever MllamaModel.Checkpointing says,
// and its loss is the training pass's. On an H100 the 11B model's
// forward-only pass held every layer's activations (17.2 GB against the
// checkpointed step's 10.8 GB), so an evaluation during a checkpointed run
// needed more than the plan.
func TestMllamaForwardOnlyPeak(t *testing.T) {
	for _, dt := range []engine.DType{engine.F32, engine.BF16} {
		t.Run(dt.String(), func(t *testing.T) {
			f, m, cfg := tinyMllamaBF16Pair(t, 61, false)
			if dt == engine.F32 {
				m = f
			}
			rng := rand.New(rand.NewPCG(62, 63))
			samples := []engine.MllamaSample{mllamaSample(cfg, rng, 40, []int{2}, [][2]int{{6, 4}}, 3)}
			b := m.B.(*cpu.Backend)
			run := func(ckpt, backward bool) (float64, int64) {
				m.Checkpointing = ckpt
				if err := m.ZeroGrads(); err != nil {
					t.Fatal(err)
				}
				b.ResetPeak()
				r, err := m.Run(samples, backward, false)
				if err != nil {
					t.Fatalf("checkpointing %v, backward %v: %v", ckpt, backward, err)
				}
				return r.Loss, b.PeakBytes()
			}
			lossStep, peakStep := run(true, true)
			for _, ckpt := range []bool{false, true} {
				loss, peak := run(ckpt, false)
				t.Logf("%s: forward-only peak %d bytes (checkpointing %v), checkpointed step %d", dt, peak, ckpt, peakStep)
				if peak >= peakStep {
					t.Errorf("forward only (checkpointing %v) peaked at %d bytes, the checkpointed training step at %d", ckpt, peak, peakStep)
				}
				if loss != lossStep {
					t.Errorf("forward-only loss %v, training pass %v", loss, lossStep)
				}
			}
		})
	}
}
