package cuda_test

import (
	"math"
	"path/filepath"
	"testing"

	"whet/datasets"
	"whet/engine"
	"whet/engine/cuda"
	"whet/engine/safetensors"
)

// TestReferenceDPOOnGPU repeats engine's TestReferenceDPO on the GPU in
// bf16, on Llama, Qwen2 and the 2025 families that have a DPO reference:
// loss, TRL's metrics and the LoRA gradients against the PyTorch
// implementation of TRL's formula (tools/reference/make_dpo_reference.py),
// within bf16 tolerance.
func TestReferenceDPOOnGPU(t *testing.T) {
	gpu, err := cuda.New(cuda.Options{})
	if err != nil {
		t.Skipf("no GPU: %v", err)
	}
	defer gpu.Close()
	settings := map[string]engine.DPOLoss{
		"sigmoid": {Beta: 0.1, LabelSmoothing: 0.1, Type: "sigmoid"},
		"ipo":     {Beta: 0.1, Type: "ipo"},
	}
	metrics := []string{"rewards/chosen", "rewards/rejected", "rewards/margins", "rewards/accuracies", "logps/chosen", "logps/rejected"}
	root := filepath.Join("..", "..", "testdata")
	for _, name := range []string{"tiny-llama", "tiny-qwen2", "tiny-qwen3", "tiny-gemma3", "tiny-phi3"} {
		for key, d := range settings {
			t.Run(name+"/"+key, func(t *testing.T) {
				ref, err := safetensors.Open(filepath.Join(root, "reference", name+".safetensors"))
				if err != nil {
					t.Fatal(err)
				}
				defer ref.Close()
				st, err := safetensors.Open(filepath.Join(root, "reference", name+".dpo.safetensors"))
				if err != nil {
					t.Fatal(err)
				}
				defer st.Close()
				i32 := func(n string) []int32 { v, _ := st.Int32(n); return v }
				f32 := func(f *safetensors.File, n string) []float32 {
					v, err := f.Float32(n)
					if err != nil {
						t.Fatal(err)
					}
					return v
				}
				b := &datasets.Batch{Tokens: i32("input_ids"), Targets: i32("targets"), Positions: i32("positions"), SeqStarts: i32("seq_starts")}
				m, err := engine.LoadModel(filepath.Join(root, name), gpu)
				if err != nil {
					t.Fatal(err)
				}
				defer m.Free()
				if err := m.AddLoRA(engine.LoRAOptions{Rank: 4, Alpha: 8, Seed: 1}); err != nil {
					t.Fatal(err)
				}
				for _, lin := range m.Linears() {
					for _, p := range []*engine.Param{lin.LoRA.A, lin.LoRA.B} {
						if err := gpu.Upload(p.Master, f32(ref, "lora."+p.Name)); err != nil {
							t.Fatal(err)
						}
					}
				}
				if err := m.SyncFromMasters(); err != nil {
					t.Fatal(err)
				}
				a, err := m.NewActivations(len(b.Tokens), false)
				if err != nil {
					t.Fatal(err)
				}
				defer a.Free()
				m.SetLoRAEnabled(false)
				refLogps, err := a.PairLogprobs(b, d)
				if err != nil {
					t.Fatal(err)
				}
				m.SetLoRAEnabled(true)
				r, err := a.DPOForwardBackward(b, refLogps, d, 1, 0)
				if err != nil {
					t.Fatal(err)
				}
				want := float64(f32(st, key+".loss")[0])
				if math.Abs(r.Loss-want) > 2e-2*math.Abs(want) {
					t.Errorf("loss %.5g, torch %.5g", r.Loss, want)
				}
				wm := f32(st, key+".metrics")
				for i, k := range metrics {
					w := float64(wm[i])
					// Rewards are β·(logp differences): bf16 log-probs of
					// 20-token responses carry ~0.05 absolute error.
					if math.Abs(r.Metrics[k]-w) > 2e-2*math.Abs(w)+2e-2 {
						t.Errorf("%s = %.5g, torch %.5g", k, r.Metrics[k], w)
					}
				}
				// Per tensor, bf16 activations through attention leave up
				// to ~8% relative error on the smallest gradients; over all
				// adapters together the error must stay within 3% (Gemma 3:
				// 4.5%, bf16ReferenceBounds says why).
				var allNum, allDen float64
				for _, p := range m.TrainableParams() {
					got := make([]float32, p.Grad.Len())
					if err := gpu.Download(p.Grad, got); err != nil {
						t.Fatal(err)
					}
					w := f32(st, key+".lora_grad."+p.Name)
					var num, den float64
					for i := range w {
						e := float64(got[i] - w[i])
						num += e * e
						den += float64(w[i]) * float64(w[i])
					}
					allNum += num
					allDen += den
					if e := math.Sqrt(num / den); e > 1e-1 {
						t.Errorf("grad %s relative error %.3g > 1e-1", p.Name, e)
					}
				}
				e := math.Sqrt(allNum / allDen)
				t.Logf("all LoRA gradients: relative error %.3g", e)
				if lim := bf16ReferenceBounds(name).overall; e > lim {
					t.Errorf("LoRA gradients overall: relative error %.3g > %.3g", e, lim)
				}
			})
		}
	}
}
