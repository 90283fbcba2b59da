package memplan_test

import (
	"fmt"
	"testing"

	"whet/engine"
	"whet/engine/cpu"
	"whet/engine/memplan"
)

// TestPlanMatchesEngineAllocations builds the real model, adapters,
// optimizer state and activations on the CPU backend (which counts
// device-equivalent bytes) and checks that the plan for the same run is
// within 5% of what the engine actually allocated, for LoRA, QLoRA-free
// full fine-tuning, with and without checkpointing. It keeps the plan and
// the engine from drifting apart: a buffer added to one and not the other
// fails here.
func TestPlanMatchesEngineAllocations(t *testing.T) {
	for _, method := range []string{"lora", "full"} {
		for _, ckpt := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/checkpointing=%v", method, ckpt), func(t *testing.T) {
				checkPlanAgreement(t, agreementLlama, method, ckpt, engine.Tiling{})
			})
		}
	}
}

// TestPlanMatchesEngineAllocationsTiledMLP is the same check with the MLP
// in tiles of 128 of the 1024 tokens (engine and plan both drop the
// [tokens, I] buffers), on Llama, Gemma 2 (sandwich norms, GeGLU) and
// Phi-3 (fused gate_up).
func TestPlanMatchesEngineAllocationsTiledMLP(t *testing.T) {
	gemma2, phi3 := agreementLlama, agreementLlama
	gemma2.ModelType, gemma2.AttnSoftCap, gemma2.FinalSoftCap, gemma2.SlidingWindow = "gemma2", 50, 30, 64
	gemma2.LayerTypes = []string{"sliding_attention", "full_attention", "sliding_attention", "full_attention"}
	phi3.ModelType, phi3.TieWordEmbeddings, phi3.PartialRotaryFactor = "phi3", false, 0.75
	for _, cfg := range []engine.ModelConfig{agreementLlama, gemma2, phi3} {
		for _, method := range []string{"lora", "full"} {
			for _, ckpt := range []bool{false, true} {
				t.Run(fmt.Sprintf("%s/%s/checkpointing=%v", cfg.ModelType, method, ckpt), func(t *testing.T) {
					checkPlanAgreement(t, cfg, method, ckpt, engine.Tiling{MLPRows: 128})
				})
			}
		}
	}
}

// TestPlanMatchesEngineAllocationsLogitsChunk: with the LM head in chunks
// of 100 of the 1024 tokens the plan stays within 5% of the engine on
// Llama and Gemma 2 (final soft-cap), LoRA and full, and the plan's drop
// from the one-chunk run (1024 rows of logits) equals the engine's within
// 1%: both hold [100, V] logits and Gemma 2 keeps no capped copy in either.
func TestPlanMatchesEngineAllocationsLogitsChunk(t *testing.T) {
	gemma2 := agreementLlama
	gemma2.ModelType, gemma2.AttnSoftCap, gemma2.FinalSoftCap, gemma2.SlidingWindow = "gemma2", 50, 30, 64
	gemma2.LayerTypes = []string{"sliding_attention", "full_attention", "sliding_attention", "full_attention"}
	for _, cfg := range []engine.ModelConfig{agreementLlama, gemma2} {
		for _, method := range []string{"lora", "full"} {
			t.Run(fmt.Sprintf("%s/%s", cfg.ModelType, method), func(t *testing.T) {
				whole := checkPlanAgreement(t, cfg, method, false, engine.Tiling{LogitsRows: 1024})
				chunked := checkPlanAgreement(t, cfg, method, false, engine.Tiling{LogitsRows: 100})
				// The CPU plans fp32: logits only, no separate gradient.
				drop := int64(1024-100) * int64(cfg.VocabSize) * 4
				if d := whole - chunked; d < -drop/100 || d > drop/100 {
					t.Errorf("engine minus plan: %d bytes with one chunk, %d in chunks of 100 (the chunking saves %d)", whole, chunked, drop)
				}
			})
		}
	}
}

// agreementLlama is the small Llama both agreement checks build (the
// sharded one in parallel_agreement_test.go as well).
var agreementLlama = engine.ModelConfig{ModelType: "llama", VocabSize: 4096, HiddenSize: 256, IntermediateSize: 704,
	NumLayers: 4, NumHeads: 4, NumKVHeads: 2, HeadDim: 64, RMSNormEps: 1e-5, RopeTheta: 10000,
	MaxPositions: 512, TieWordEmbeddings: true}

// checkPlanAgreement builds cfg with LoRA (rank 16) or all of it trainable,
// and activations for 4×256 tokens tiled as tiling says, on the CPU
// backend, and checks the plan for the same run within 5% of the bytes the
// engine allocated and counting the model's parameters. It returns the
// engine's bytes less the plan's.
func checkPlanAgreement(t *testing.T, cfg engine.ModelConfig, method string, ckpt bool, tiling engine.Tiling) int64 {
	t.Helper()
	b := cpu.New()
	m, err := engine.NewModel(cfg, b)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Free()
	if method == "lora" {
		err = m.AddLoRA(engine.LoRAOptions{Rank: 16, Alpha: 16})
	} else {
		err = m.MakeAllTrainable()
	}
	if err != nil {
		t.Fatal(err)
	}
	const batch, seq = 4, 256
	a, err := m.NewActivationsTiled(batch*seq, ckpt, tiling)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Free()
	rc := engine.RunConfig{Method: method, Backend: "cpu", LoRA: engine.LoRAConfig{Rank: 16},
		Data: engine.DataConfig{MaxLength: seq}, Train: engine.TrainConfig{MicroBatch: batch, GradAccum: 1, Checkpointing: ckpt,
			MLPChunk: tiling.MLPRows, LogitsChunk: tiling.LogitsRows}}
	p := planOf(t, cfg, &rc)
	got, plan := b.PeakBytes(), p.Peak()
	ratio := float64(plan) / float64(got)
	t.Logf("engine allocated %d bytes, plan %d (%.3f)", got, plan, ratio)
	if ratio < 0.95 || ratio > 1.05 {
		t.Fatalf("plan %d bytes vs engine %d: off by %.1f%%", plan, got, 100*(ratio-1))
	}
	if n := int64(m.NumParams()); p.Params != n {
		t.Errorf("plan counts %d parameters, the model has %d", p.Params, n)
	}
	return got - plan
}

// TestPlanMatchesEngineAllocationsFamilies is the same check on the 2025
// families, whose layers hold more: per-head q/k norms and their saved
// inputs (Qwen3, Gemma 3), four norms a layer and their saved inputs
// (Gemma), capped logits (Gemma 2), fused projections and their adapters
// (Phi-3).
func TestPlanMatchesEngineAllocationsFamilies(t *testing.T) {
	base := engine.ModelConfig{VocabSize: 4096, HiddenSize: 256, IntermediateSize: 704,
		NumLayers: 4, NumHeads: 4, NumKVHeads: 2, HeadDim: 64, RMSNormEps: 1e-6, RopeTheta: 10000,
		MaxPositions: 512, TieWordEmbeddings: true, BOSTokenID: 1, EOSTokenIDs: []int{2}}
	qwen3 := base
	qwen3.ModelType, qwen3.HeadDim = "qwen3", 96
	gemma3 := base
	gemma3.ModelType, gemma3.QueryPreAttnScalar, gemma3.SlidingWindow, gemma3.RopeLocalTheta = "gemma3_text", 64, 64, 10000
	gemma3.LayerTypes = []string{"sliding_attention", "sliding_attention", "sliding_attention", "full_attention"}
	gemma2 := base
	gemma2.ModelType, gemma2.AttnSoftCap, gemma2.FinalSoftCap, gemma2.SlidingWindow = "gemma2", 50, 30, 64
	gemma2.LayerTypes = []string{"sliding_attention", "full_attention", "sliding_attention", "full_attention"}
	phi3 := base
	phi3.ModelType, phi3.TieWordEmbeddings, phi3.PartialRotaryFactor = "phi3", false, 0.75
	for _, cfg := range []engine.ModelConfig{qwen3, gemma3, gemma2, phi3} {
		for _, method := range []string{"lora", "full"} {
			for _, ckpt := range []bool{false, true} {
				t.Run(fmt.Sprintf("%s/%s/checkpointing=%v", cfg.ModelType, method, ckpt), func(t *testing.T) {
					checkPlanAgreement(t, cfg, method, ckpt, engine.Tiling{})
				})
			}
		}
	}
}

// planOf is memplan's plan for the run rc on the model cfg.
func planOf(t *testing.T, cfg engine.ModelConfig, rc *engine.RunConfig) *memplan.MemPlan {
	t.Helper()
	o, err := memplan.FromRunConfig(rc)
	if err != nil {
		t.Fatal(err)
	}
	p, err := memplan.Plan(&cfg, o)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// TestActivationsMatchPlanExactly: every byte the engine allocates for a
// pass's buffers (NewActivationsWith on the CPU backend: saved
// activations, backward scratch, logits, inputs and rotary tables) is the
// plan's Activations, BackwardScratch, Logits and Inputs categories to
// the byte, and the host memory of offloaded checkpoints its
// HostCheckpoints, for four families with an intermediate size several
// times the hidden one (so that a buffer sized by the wrong width shows),
// LoRA with and without dropout and full fine-tuning, checkpointing off,
// on and offloaded, the MLP whole and in tiles of 96 rows.
func TestActivationsMatchPlanExactly(t *testing.T) {
	base := engine.ModelConfig{VocabSize: 512, HiddenSize: 64, IntermediateSize: 448,
		NumLayers: 5, NumHeads: 4, NumKVHeads: 2, HeadDim: 16, RMSNormEps: 1e-6, RopeTheta: 10000,
		MaxPositions: 512, TieWordEmbeddings: true, BOSTokenID: 1, EOSTokenIDs: []int{2}}
	llama := base
	llama.ModelType = "llama"
	qwen3 := base
	qwen3.ModelType, qwen3.HeadDim = "qwen3", 24
	gemma2 := base
	gemma2.ModelType, gemma2.AttnSoftCap, gemma2.FinalSoftCap, gemma2.SlidingWindow = "gemma2", 50, 30, 64
	gemma2.LayerTypes = []string{"sliding_attention", "full_attention", "sliding_attention", "full_attention", "sliding_attention"}
	phi3 := base
	phi3.ModelType, phi3.TieWordEmbeddings, phi3.PartialRotaryFactor = "phi3", false, 0.75
	const batch, seq = 2, 192
	for _, cfg := range []engine.ModelConfig{llama, qwen3, gemma2, phi3} {
		for _, method := range []string{"lora", "lora-dropout", "full"} {
			for _, ck := range []string{"off", "on", "offload"} {
				for _, chunk := range []int{0, 96} {
					name := fmt.Sprintf("%s/%s/checkpointing=%s/mlp_chunk=%d", cfg.ModelType, method, ck, chunk)
					t.Run(name, func(t *testing.T) {
						b := cpu.New()
						m, err := engine.NewModel(cfg, b)
						if err != nil {
							t.Fatal(err)
						}
						defer m.Free()
						dropout := 0.0
						if method == "lora-dropout" {
							dropout = 0.1
						}
						if method == "full" {
							err = m.MakeAllTrainable()
						} else {
							err = m.AddLoRA(engine.LoRAOptions{Rank: 8, Alpha: 16, Dropout: dropout})
						}
						if err != nil {
							t.Fatal(err)
						}
						mode := engine.OffloadOff
						if ck == "offload" {
							mode = engine.OffloadOn
						}
						before := b.InUseBytes()
						a, err := m.NewActivationsWith(batch*seq, engine.ActivationOptions{Checkpointing: ck != "off", Tiling: engine.Tiling{MLPRows: chunk}, Offload: mode})
						if err != nil {
							t.Fatal(err)
						}
						defer a.Free()
						got := b.InUseBytes() - before
						rcMethod := method
						if method != "full" {
							rcMethod = "lora"
						}
						rc := engine.RunConfig{Method: rcMethod, Backend: "cpu", LoRA: engine.LoRAConfig{Rank: 8, Dropout: dropout},
							Data: engine.DataConfig{MaxLength: seq}, Train: engine.TrainConfig{MicroBatch: batch, GradAccum: 1,
								Checkpointing: ck != "off", MLPChunk: chunk, OffloadCheckpoints: mode}}
						p := planOf(t, cfg, &rc)
						var want int64
						for _, c := range []memplan.Category{memplan.Activations, memplan.BackwardScratch, memplan.Logits, memplan.Inputs} {
							want += p.ExactBytes(c)
						}
						if got != want {
							t.Errorf("engine allocated %d bytes for the pass, the plan counts %d (%+d)", got, want, want-got)
						}
						if h, w := a.HostBytes(), p.ExactBytes(memplan.HostCheckpoints); h != w || (ck == "offload") != (w > 0) {
							t.Errorf("host memory: engine %d bytes, plan %d", h, w)
						}
					})
				}
			}
		}
	}
}
