package cuda_test

import (
	"context"
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"whet/engine"
	"whet/engine/cpu"
	"whet/engine/cuda"
)

// randomAdapterB gives every lora_B matrix seeded values (newGPUMllama
// leaves them zero), so that the tuned model differs from the base.
func randomAdapterB(t *testing.T, m *engine.MllamaModel) {
	t.Helper()
	rng := rand.New(rand.NewPCG(43, 3))
	for _, p := range m.Params() {
		if strings.HasSuffix(p.Name, "lora_B.weight") {
			v := make([]float32, p.W.Len())
			for i := range v {
				v[i] = float32(0.3 * rng.NormFloat64())
			}
			if err := m.SetValues(p, v); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// mllamaGenerate runs the cached generator greedily and returns its tokens
// and every step's logits.
func mllamaGenerate(t *testing.T, m *engine.MllamaModel, s engine.MllamaSample, n int) ([]int32, [][]float32) {
	t.Helper()
	g, err := m.NewGenerator(64)
	if err != nil {
		t.Fatal(err)
	}
	defer g.Free()
	var steps [][]float32
	g.OnLogits = func(l []float32) { steps = append(steps, l) }
	out, err := g.Generate(context.Background(), s, engine.Greedy(n, nil), nil)
	if err != nil {
		t.Fatalf("%s: %v", m.B.Name(), err)
	}
	return out, steps
}

// TestMllamaGeneratorMatchesCPU: Llama 3.2 Vision generation
// (engine.MllamaGenerator: the vision tower once, the cross-attention
// keys/values once, the self-attention layers' KV cache through
// AttentionKV) on the GPU in float32 gives the CPU's greedy tokens, every
// step's logits within 1e-4 of the largest, for samples with one image,
// two images and none, with the adapter (language model and projector)
// on and off. A token that differs is accepted only at a near tie of the
// CPU's two best logits (within 1e-4 of the largest), and the comparison
// stops there. The bf16 compute (the default on CUDA) is logged beside it (not checked).
func TestMllamaGeneratorMatchesCPU(t *testing.T) {
	gpu := newGPU(t, cuda.Options{})
	ref, cfg := newGPUMllama(t, cpu.New())
	dut, _ := newGPUMllama(t, gpu)
	randomAdapterB(t, ref)
	randomAdapterB(t, dut)
	samples := gpuMllamaSamples(cfg, 4) // 1 image, 2 images, 1 image, none
	const n = 16
	compared := 0
	for _, tuned := range []bool{true, false} {
		ref.SetLoRAEnabled(tuned)
		dut.SetLoRAEnabled(tuned)
		for i, s := range samples {
			want, wantL := mllamaGenerate(t, ref, s, n)
			got, gotL := mllamaGenerate(t, dut, s, n)
			for k := range want {
				if k >= len(got) {
					t.Errorf("tuned %v sample %d: the GPU stopped after %d tokens, the CPU gave %d", tuned, i, len(got), len(want))
					break
				}
				if d := relMax(gotL[k], wantL[k]); d > 1e-4 {
					t.Errorf("tuned %v sample %d step %d: logits differ from the CPU's by %.3g of the largest", tuned, i, k, d)
					break
				}
				if got[k] != want[k] {
					if gap := top2Gap(wantL[k]); gap > 1e-4 {
						t.Errorf("tuned %v sample %d step %d: token %d, the CPU's %d (its two best logits %.3g of the largest apart)", tuned, i, k, got[k], want[k], gap)
					} else {
						t.Logf("tuned %v sample %d step %d: a near tie (%.3g), tokens %d / %d; stopped comparing", tuned, i, k, gap, got[k], want[k])
					}
					break
				}
				compared++
			}
			t.Logf("tuned %v sample %d (%d images): cpu %v", tuned, i, s.Images, want)
		}
	}
	ref.SetLoRAEnabled(true)
	dut.SetLoRAEnabled(true)
	if compared < 3*n {
		t.Errorf("only %d tokens compared", compared)
	}

	// bf16 (the opt-in MllamaOptions.Compute), logged only.
	bf, _ := newGPUMllamaIn(t, gpu, engine.BF16)
	randomAdapterB(t, bf)
	for i, s := range samples[:2] {
		want, wantL := mllamaGenerate(t, ref, s, n)
		got, gotL := mllamaGenerate(t, bf, s, n)
		same := 0
		for same < min(len(got), len(want)) && got[same] == want[same] {
			same++
		}
		t.Logf("bf16 sample %d: first-step logits %.3g of the largest from the f32 CPU's; %d of %d tokens equal before the first difference", i, relMax(gotL[0], wantL[0]), same, len(want))
	}
}

// top2Gap is the gap between the two largest logits over the largest |logit|.
func top2Gap(l []float32) float64 {
	a, b, ref := math.Inf(-1), math.Inf(-1), 0.0
	for _, x := range l {
		v := float64(x)
		ref = max(ref, math.Abs(v))
		if v > a {
			a, b = v, a
		} else if v > b {
			b = v
		}
	}
	return (a - b) / ref
}
