package cuda

import (
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"whet/engine"
	"whet/engine/cpu"
)

func init() {
	// The program registers the CPU backend from package main; this test
	// binary needs it for the reference runs.
	engine.RegisterBackend("cpu", func() (engine.Backend, error) { return cpu.New(), nil })
}

// TestTrainingMatchesCPU trains the tiny reference models on the GPU (bf16
// weights and activations, fp32 masters and moments) and on the CPU
// (float32 throughout), from the same RunConfig and data, and requires
// every step's loss to agree within 1%: LoRA with dropout (both backends
// draw the mask from the same hash) on Llama and on Qwen2 (whose q, k, v
// biases go through AddBias and BiasBackward), QLoRA (NF4 base), full
// fine-tuning, and DPO. DPO's loss is a function of differences of
// summed log-probabilities (policy minus reference, chosen minus
// rejected), and the engine computes logits in the compute dtype: bf16
// logits move each sequence's log-probability by a few hundredths of a
// nat, so the GPU's DPO loss wanders by up to about 0.007 from the CPU's
// at any loss value (seen on an H200: 1.06% of log 2 at step 3, with the
// first step at 0.6938 where the CPU has exactly log 2). DPO's steps are
// therefore held within 2% of the starting loss rather than 1% of each
// step's own value.
func TestTrainingMatchesCPU(t *testing.T) {
	newTestBackend(t) // skips without a GPU
	abs := func(p string) string {
		a, err := filepath.Abs(p)
		if err != nil {
			t.Fatal(err)
		}
		return a
	}
	chat := engine.DataConfig{Path: abs("../../testdata/datasets/tiny-chat.jsonl"), MaxLength: 256, Packing: true, EvalSplit: 0.1, Seed: 1}
	prefs := engine.DataConfig{Path: writePreferences(t, 16), MaxLength: 64, Packing: true, Seed: 1}
	lora := engine.LoRAConfig{Rank: 8, Alpha: 16, Dropout: 0.05}
	// Phi-3's projections are fused: its adapters go on qkv_proj and
	// gate_up_proj (the method preset's q, k, v, ..., gate, up name modules
	// it does not have).
	phi3LoRA := lora
	phi3LoRA.TargetModules = []string{"qkv", "o", "gate_up", "down"}
	cases := []struct {
		name, model, method string
		data                engine.DataConfig
		steps               int
		lr                  float64
		lora                *engine.LoRAConfig // nil: lora
		masters             string             // train.master_weights
	}{
		{"lora_llama", "tiny-llama", "lora", chat, 50, 1e-3, nil, ""},
		{"lora_qwen2", "tiny-qwen2", "lora", chat, 50, 1e-3, nil, ""},
		{"qlora_llama", "tiny-llama", "qlora", chat, 30, 1e-3, nil, ""},
		{"full_llama", "tiny-llama", "full", chat, 50, 1e-4, nil, ""},
		// bf16 masters with stochastic rounding: the same random bits on
		// both backends (bf16 weights on the GPU, bf16 values in fp32 on
		// the CPU).
		{"full_llama_bf16_masters", "tiny-llama", "full", chat, 50, 1e-4, nil, "bf16"},
		// A gentle rate keeps the DPO loss away from 0, where a relative
		// comparison measures nothing but rounding.
		{"dpo_qwen2", "tiny-qwen2", "dpo", prefs, 20, 5e-4, nil, ""},
		// The 2025 families, as transformers built them (tools/reference):
		// q/k norm, sliding windows, GELU-tanh, soft-caps, fused and
		// partial-rotary projections, each through its own tokenizer and
		// chat template.
		{"lora_qwen3", "tiny-qwen3", "lora", chat, 50, 1e-3, nil, ""},
		{"lora_gemma3", "tiny-gemma3", "lora", chat, 50, 1e-3, nil, ""},
		{"lora_gemma2", "tiny-gemma2", "lora", chat, 50, 1e-3, nil, ""},
		{"lora_phi3", "tiny-phi3", "lora", chat, 50, 1e-3, &phi3LoRA, ""},
		{"full_gemma3", "tiny-gemma3", "full", chat, 50, 1e-4, nil, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			losses := map[string][]float64{}
			runLoRA := lora
			if c.lora != nil {
				runLoRA = *c.lora
			}
			for _, backend := range []string{"cpu", "cuda"} {
				cfg := engine.RunConfig{Name: c.name + "-" + backend, Model: abs("../../testdata/" + c.model), Method: c.method,
					Backend: backend, RunsDir: t.TempDir(), LoRA: runLoRA, DPO: engine.DPOConfig{Beta: 0.1}, Data: c.data,
					Train: engine.TrainConfig{Epochs: 100, MaxSteps: c.steps, MicroBatch: 2, GradAccum: 1, LR: c.lr, Schedule: "cosine",
						WarmupSteps: 2, MaxGradNorm: 1, Seed: 1, MasterWeights: c.masters}}
				if err := cfg.FillDefaults(); err != nil {
					t.Fatal(err)
				}
				s, err := engine.Prepare(cfg)
				if err != nil {
					t.Fatalf("%s: Prepare: %v", backend, err)
				}
				for i := 0; i < c.steps; i++ {
					ev, err := s.Trainer.TrainStep()
					if err != nil {
						s.Close()
						t.Fatalf("%s: step %d: %v", backend, i+1, err)
					}
					losses[backend] = append(losses[backend], ev.Loss)
				}
				if mr, ok := s.Backend.(engine.MemoryReporter); ok {
					t.Logf("%s: peak %d bytes", s.Backend.Name(), mr.PeakBytes())
				}
				s.Close()
			}
			// worst is the largest difference as a fraction of its bound.
			worst, at := 0.0, 0
			for i := range c.steps {
				cl, gl := losses["cpu"][i], losses["cuda"][i]
				bound := 0.01 * math.Abs(cl)
				if c.method == "dpo" {
					bound = 0.02 * math.Abs(losses["cpu"][0])
				}
				if d := math.Abs(gl-cl) / bound; d > worst || math.IsNaN(gl) {
					worst, at = d, i
				}
			}
			last := c.steps - 1
			t.Logf("loss cpu  %.4f -> %.4f", losses["cpu"][0], losses["cpu"][last])
			t.Logf("loss cuda %.4f -> %.4f; largest difference %.2f of its bound, at step %d (cpu %.5f, cuda %.5f)",
				losses["cuda"][0], losses["cuda"][last], worst, at+1, losses["cpu"][at], losses["cuda"][at])
			if worst > 1 || math.IsNaN(worst) {
				t.Errorf("GPU loss curve leaves its bound at step %d\ncpu  %v\ncuda %v", at+1, losses["cpu"], losses["cuda"])
			}
		})
	}
}

// writePreferences writes n preference pairs whose chosen answer is always
// polite and rejected one curt, so DPO has something to learn.
func writePreferences(t *testing.T, n int) string {
	var b strings.Builder
	for i := 0; i < n; i++ {
		fmt.Fprintf(&b, `{"prompt": "Question %d: can you help me?", "chosen": "Of course, here is how.", "rejected": "No."}`+"\n", i)
	}
	p := filepath.Join(t.TempDir(), "prefs.jsonl")
	if err := os.WriteFile(p, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}
