package cuda_test

import (
	"math"
	"path/filepath"
	"strings"
	"testing"

	"whet/datasets"
	"whet/engine"
	"whet/engine/cuda"
	"whet/engine/safetensors"
)

// gpuReferenceModels are the tiny models whose transformers state
// (tools/reference/make_reference.py) engine's CPU tests match within 1e-4.
var gpuReferenceModels = []string{"tiny-llama", "tiny-qwen2", "tiny-qwen3", "tiny-gemma3", "tiny-gemma2", "tiny-phi3"}

// sqErr accumulates the squared error of got against want and want's
// squared norm, for relative errors over one tensor or many.
type sqErr struct{ num, den float64 }

func (e *sqErr) add(got, want []float32) {
	for i, w := range want {
		d := float64(got[i] - w)
		e.num += d * d
		e.den += float64(w) * float64(w)
	}
}

func (e sqErr) rel() float64 { return math.Sqrt(e.num / e.den) }

// TestReferenceOnGPU runs each reference model on the GPU in bf16 against
// transformers' float32 results: logits (relative error over the whole
// tensor), loss, and the gradients of every weight (full fine-tuning) and
// of the reference's fixed LoRA adapters. Bounds are bf16's: the weights
// and activations carry 2^-9 relative rounding, and attention's bf16
// probabilities and dS add to it. Per tensor, the smallest gradients (a
// norm weight, a rank-4 adapter) may reach 15%; over all tensors together
// the error must stay within 3%.
func TestReferenceOnGPU(t *testing.T) {
	gpu := newGPU(t, cuda.Options{})
	root := filepath.Join("..", "..", "testdata")
	for _, name := range gpuReferenceModels {
		t.Run(name, func(t *testing.T) {
			st, err := safetensors.Open(filepath.Join(root, "reference", name+".safetensors"))
			if err != nil {
				t.Fatal(err)
			}
			defer st.Close()
			f32 := func(t *testing.T, n string) []float32 {
				t.Helper()
				v, err := st.Float32(n)
				if err != nil {
					t.Fatal(err)
				}
				return v
			}
			i32 := func(n string) []int32 {
				v, err := st.Int32(n)
				if err != nil {
					t.Fatal(err)
				}
				return v
			}
			b := &datasets.Batch{Tokens: i32("input_ids"), Targets: i32("targets"), Positions: i32("positions"), SeqStarts: i32("seq_starts")}
			scale := float32(1 / float64(b.NumTargets()))
			load := func(t *testing.T) *engine.Model {
				t.Helper()
				m, err := engine.LoadModel(filepath.Join(root, name), gpu)
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(m.Free)
				return m
			}
			grads := func(t *testing.T, m *engine.Model, prefix string) {
				t.Helper()
				var all sqErr
				n := 0
				for _, p := range m.TrainableParams() {
					got := make([]float32, p.Grad.Len())
					if err := gpu.Download(p.Grad, got); err != nil {
						t.Fatal(err)
					}
					var one sqErr
					one.add(got, f32(t, prefix+p.Name))
					all.num, all.den = all.num+one.num, all.den+one.den
					if e := one.rel(); e > 0.15 {
						t.Errorf("%s%s: relative error %.3g > 0.15", prefix, p.Name, e)
					}
					n++
				}
				inFile := 0
				for _, k := range st.Names() {
					if strings.HasPrefix(k, prefix) {
						inFile++
					}
				}
				if n != inFile {
					t.Errorf("%d trainable tensors, the reference has %d %s gradients", n, inFile, prefix)
				}
				t.Logf("%s gradients: relative error %.3g over all %d tensors", prefix, all.rel(), n)
				if all.rel() > 3e-2 {
					t.Errorf("%s gradients overall: relative error %.3g > 3e-2", prefix, all.rel())
				}
			}

			t.Run("logits_loss", func(t *testing.T) {
				m := load(t)
				a, err := m.NewActivations(len(b.Tokens), false)
				if err != nil {
					t.Fatal(err)
				}
				defer a.Free()
				logits, err := a.Logits(b)
				if err != nil {
					t.Fatal(err)
				}
				var e sqErr
				e.add(logits, f32(t, "logits"))
				t.Logf("logits: relative error %.3g", e.rel())
				if e.rel() > 2e-2 {
					t.Errorf("logits: relative error %.3g > 2e-2", e.rel())
				}
				r, err := a.ForwardBackward(b, 0, false, 0)
				if err != nil {
					t.Fatal(err)
				}
				got, want := r.LossSum/float64(r.Count), float64(f32(t, "loss")[0])
				t.Logf("loss %.5f, transformers %.5f", got, want)
				if math.Abs(got-want) > 1e-2*want {
					t.Errorf("loss %.5f, transformers %.5f: more than 1%% apart", got, want)
				}
			})
			t.Run("full_gradients", func(t *testing.T) {
				m := load(t)
				if err := m.MakeAllTrainable(); err != nil {
					t.Fatal(err)
				}
				a, err := m.NewActivations(len(b.Tokens), false)
				if err != nil {
					t.Fatal(err)
				}
				defer a.Free()
				if _, err := a.ForwardBackward(b, scale, true, 0); err != nil {
					t.Fatal(err)
				}
				grads(t, m, "grad.")
			})
			t.Run("lora_gradients", func(t *testing.T) {
				m := load(t)
				if err := m.AddLoRA(engine.LoRAOptions{Rank: 4, Alpha: 8, Seed: 1}); err != nil {
					t.Fatal(err)
				}
				for _, lin := range m.Linears() {
					for _, p := range []*engine.Param{lin.LoRA.A, lin.LoRA.B} {
						if err := gpu.Upload(p.Master, f32(t, "lora."+p.Name)); err != nil {
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
				r, err := a.ForwardBackward(b, scale, true, 0)
				if err != nil {
					t.Fatal(err)
				}
				got, want := r.LossSum/float64(r.Count), float64(f32(t, "lora_loss")[0])
				if math.Abs(got-want) > 1e-2*want {
					t.Errorf("LoRA loss %.5f, reference %.5f: more than 1%% apart", got, want)
				}
				grads(t, m, "lora_grad.")
			})
		})
	}
}
