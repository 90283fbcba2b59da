package cuda_test

import (
	"math"
	"math/rand/v2"
	"testing"

	"whet/datasets"
	"whet/engine"
	"whet/engine/cpu"
	"whet/engine/cuda"
	"whet/engine/testmodels"
)

// gpuTinyGemma3Vision is engine's tiny Gemma3ForConditionalGeneration
// (engine/gemma3_vision_test.go, tools/reference/make_vision_model_reference.py):
// a 2-layer SigLIP tower over 32-pixel images of 8-pixel patches pooled to
// 4 image tokens, a 2-layer Gemma 3 language model with a window of 3 on
// its first layer.
const gpuTinyGemma3Vision = `{
  "architectures": ["Gemma3ForConditionalGeneration"],
  "model_type": "gemma3",
  "boi_token_index": 509, "eoi_token_index": 510, "image_token_index": 511,
  "mm_tokens_per_image": 4,
  "text_config": {
    "model_type": "gemma3_text", "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
    "num_attention_heads": 2, "num_key_value_heads": 1, "head_dim": 16, "query_pre_attn_scalar": 24,
    "vocab_size": 512, "max_position_embeddings": 512, "rope_scaling": {"factor": 8.0, "rope_type": "linear"},
    "rope_theta": 1000000.0, "sliding_window": 3, "sliding_window_pattern": 2,
    "layer_types": ["sliding_attention", "full_attention"], "pad_token_id": null, "bos_token_id": null,
    "eos_token_id": 2, "tie_word_embeddings": true
  },
  "vision_config": {
    "model_type": "siglip_vision_model", "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
    "num_attention_heads": 2, "image_size": 32, "patch_size": 8, "vision_use_head": false
  }
}`

const gpuG3Image, gpuG3BOI, gpuG3EOI = 511, 509, 510

// writeGPUGemma3Vision writes the tiny model's config and seeded weights
// (N(0, 0.1²), LayerNorm scales around 1) under the released names.
func writeGPUGemma3Vision(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	if err := (testmodels.Gemma3Vision{Config: gpuTinyGemma3Vision, Seed: [2]uint64{24, 5}}).Write(dir); err != nil {
		t.Fatal(err)
	}
	return dir
}

// gpuG3Batches are n batches of 3 sequences: a prompt token, an image
// (BOI, 4 image tokens, EOI), then 6 tokens counting by a stride the
// image's brightness sets; targets skip the image tokens.
func gpuG3Batches(n int) ([]*datasets.Batch, [][]float32) {
	rng := rand.New(rand.NewPCG(25, 6))
	var bs []*datasets.Batch
	var pxs [][]float32
	for range n {
		b := &datasets.Batch{SeqStarts: []int32{0}}
		var px []float32
		for range 3 {
			stride := 1 + rng.IntN(3)
			img := make([]float32, 3*32*32)
			for i := range img {
				img[i] = float32(stride)/2 - 1 + 0.2*float32(rng.NormFloat64())
			}
			px = append(px, img...)
			seq := []int32{5, gpuG3BOI, gpuG3Image, gpuG3Image, gpuG3Image, gpuG3Image, gpuG3EOI}
			start := 20 + rng.IntN(200)
			for i := range 6 {
				seq = append(seq, int32(start+i*stride))
			}
			for i, id := range seq {
				b.Tokens = append(b.Tokens, id)
				b.Positions = append(b.Positions, int32(i))
				tgt := int32(datasets.IgnoreIndex)
				if i+1 < len(seq) && seq[i+1] != gpuG3Image {
					tgt = seq[i+1]
				}
				b.Targets = append(b.Targets, tgt)
			}
			b.SeqStarts = append(b.SeqStarts, int32(len(b.Tokens)))
		}
		bs = append(bs, b)
		pxs = append(pxs, px)
	}
	return bs, pxs
}

// trainGemma3Vision loads the model on b, adds LoRA (language model and
// projector, the tower frozen) and the final norm, and returns every
// step's mean loss over steps AdamW steps clipped at norm 1.
func trainGemma3Vision(t *testing.T, dir string, b engine.Backend, steps int, lr float64) []float64 {
	t.Helper()
	m, err := engine.LoadGemma3Vision(dir, b, engine.ModelOptions{})
	if err != nil {
		t.Fatalf("%s: %v", b.Name(), err)
	}
	defer m.Free()
	if err := m.AddLoRA(engine.LoRAOptions{Rank: 8, Alpha: 16, Seed: 1}); err != nil {
		t.Fatal(err)
	}
	if err := m.AddGemma3ProjectorLoRA(engine.LoRAOptions{Rank: 8, Alpha: 16, Seed: 2}); err != nil {
		t.Fatal(err)
	}
	if err := m.MakeTrainable(m.Norm); err != nil {
		t.Fatal(err)
	}
	batches, pixels := gpuG3Batches(4)
	a, err := m.NewActivations(len(batches[0].Tokens), false)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Free()
	opt := &engine.Optimizer{Beta1: 0.9, Beta2: 0.999, Eps: 1e-8, WeightDecay: 0.01}
	var losses []float64
	for s := range steps {
		bt, px := batches[s%len(batches)], pixels[s%len(batches)]
		if err := m.ZeroGrads(); err != nil {
			t.Fatal(err)
		}
		if err := a.SetImages(px, 3); err != nil {
			t.Fatalf("%s: %v", b.Name(), err)
		}
		r, err := a.ForwardBackward(bt, float32(1/float64(bt.NumTargets())), true, uint64(s))
		if err != nil {
			t.Fatalf("%s: step %d: %v", b.Name(), s+1, err)
		}
		if _, err := engine.ClipGrads(m, 1); err != nil {
			t.Fatal(err)
		}
		if err := opt.Apply(m, lr); err != nil {
			t.Fatal(err)
		}
		losses = append(losses, r.LossSum/float64(r.Count))
	}
	return losses
}

// TestGemma3VisionTrainingMatchesCPU trains the tiny Gemma 3 vision model
// (SigLIP tower frozen, images pooled into the language model's
// bidirectional image spans) for 40 LoRA steps on the GPU (bf16) and on
// the CPU (float32) from the same weights and batches: every step's loss
// within 1 % of the CPU's.
func TestGemma3VisionTrainingMatchesCPU(t *testing.T) {
	gpu := newGPU(t, cuda.Options{})
	dir := writeGPUGemma3Vision(t)
	const steps = 40
	want := trainGemma3Vision(t, dir, cpu.New(), steps, 3e-3)
	got := trainGemma3Vision(t, dir, gpu, steps, 3e-3)
	worst, at := 0.0, 0
	for i := range steps {
		d := math.Abs(got[i]-want[i]) / (0.01 * math.Abs(want[i]))
		if d > worst || math.IsNaN(got[i]) {
			worst, at = d, i
		}
	}
	t.Logf("loss cpu  %.4f -> %.4f", want[0], want[steps-1])
	t.Logf("loss cuda %.4f -> %.4f; largest difference %.2f of the 1%% bound, at step %d (cpu %.5f, cuda %.5f)",
		got[0], got[steps-1], worst, at+1, want[at], got[at])
	if !(want[steps-1] < want[0]) {
		t.Errorf("the CPU's loss did not fall (%.4f -> %.4f): the comparison would measure nothing", want[0], want[steps-1])
	}
	if worst > 1 || math.IsNaN(worst) {
		t.Errorf("GPU loss curve leaves 1%% of the CPU's at step %d\ncpu  %v\ncuda %v", at+1, want, got)
	}
}
