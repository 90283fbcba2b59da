package engine_test

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"whet/datasets"
	"whet/engine"
	"whet/engine/cpu"
)

// offloadModels are six-layer models (so that streams 0..3 go to the host
// and rotate through the three device slots) of three families: Llama
// (GQA, bias, untied head), Gemma 2 (sandwich norms, which also rerun the
// MLP in the recompute) and Phi-3 (fused projections).
func offloadModels() map[string]func(t *testing.T) *engine.Model {
	const layers = 6
	return map[string]func(t *testing.T) *engine.Model{
		"llama": func(t *testing.T) *engine.Model {
			c := tinyConfig(true, false)
			c.NumLayers = layers
			return newRandomModel(t, c, func(v []float32, rng *rand.Rand) {
				for i := range v {
					v[i] += float32(rng.NormFloat64() * 0.2)
				}
			})
		},
		"gemma2": func(t *testing.T) *engine.Model {
			return newTinyFamilyWith(t, "gemma2", func(c *engine.ModelConfig) {
				for len(c.LayerTypes) < layers {
					c.LayerTypes = append(c.LayerTypes, c.LayerTypes[len(c.LayerTypes)%2])
				}
				c.NumLayers = layers
			})
		},
		"phi3": func(t *testing.T) *engine.Model {
			return newTinyFamilyWith(t, "phi3", func(c *engine.ModelConfig) { c.NumLayers = layers })
		},
	}
}

// TestOffloadedCheckpointsBitEqual: with the checkpoints offloaded to host
// memory (train.offload_checkpoints: on, on the CPU backend, whose copies
// run at the latest moment the contract allows) the losses and every
// trainable gradient equal, bit for bit, those of checkpoints kept on the
// device, over three micro-batches in a row (the second shorter than the
// planned capacity) with an evaluation forward between them, for three
// families, LoRA with dropout and full fine-tuning, the MLP whole or in
// tiles of 5 rows.
func TestOffloadedCheckpointsBitEqual(t *testing.T) {
	models := offloadModels()
	for _, name := range []string{"llama", "gemma2", "phi3"} {
		for _, method := range []string{"lora", "full"} {
			for _, chunk := range []int{0, 5} {
				t.Run(fmt.Sprintf("%s/%s/mlp_chunk=%d", name, method, chunk), func(t *testing.T) {
					m := models[name](t)
					if method == "lora" {
						if err := m.AddLoRA(engine.LoRAOptions{Rank: 2, Alpha: 4, Dropout: 0.3, Seed: 4}); err != nil {
							t.Fatal(err)
						}
						randomLoRAB(t, m, rand.New(rand.NewPCG(6, 6)))
					} else if err := m.MakeAllTrainable(); err != nil {
						t.Fatal(err)
					}
					batches := []*datasets.Batch{tinyBatch(m.Cfg.VocabSize, 1), tinyBatchOf([]int32{3, 1, 4, 1, 5}), tinyBatch(m.Cfg.VocabSize, 2)}
					capTokens := len(batches[0].Tokens)
					run := func(mode string) (losses []float64, grads [][][]float32, evals []float64) {
						a, err := m.NewActivationsWith(capTokens, engine.ActivationOptions{Checkpointing: true, Tiling: engine.Tiling{MLPRows: chunk}, Offload: mode})
						if err != nil {
							t.Fatal(err)
						}
						defer a.Free()
						if got, want := a.OffloadsCheckpoints(), mode == engine.OffloadOn; got != want {
							t.Fatalf("offload %q: offloads %v", mode, got)
						}
						for i, b := range batches {
							if err := m.ZeroGrads(); err != nil {
								t.Fatal(err)
							}
							r, err := a.ForwardBackward(b, float32(1/float64(b.NumTargets())), true, uint64(7+i))
							if err != nil {
								t.Fatal(err)
							}
							losses = append(losses, r.LossSum)
							grads = append(grads, trainableGrads(m))
							e, err := a.ForwardBackward(batches[0], 1, false, 0)
							if err != nil {
								t.Fatal(err)
							}
							evals = append(evals, e.LossSum)
						}
						return losses, grads, evals
					}
					l0, g0, e0 := run(engine.OffloadOff)
					l1, g1, e1 := run(engine.OffloadOn)
					if !slices.Equal(l0, l1) || !slices.Equal(e0, e1) {
						t.Errorf("losses on the device %v, offloaded %v; evaluation %v, %v", l0, l1, e0, e1)
					}
					params := m.TrainableParams()
					for s := range g0 {
						for i := range g0[s] {
							if !slices.Equal(g0[s][i], g1[s][i]) {
								t.Errorf("micro-batch %d: %s gradient differs offloaded", s, params[i].Name)
							}
						}
					}
				})
			}
		}
	}
}

// TestOffloadAllocations: offloaded, the device holds three [Cap, D]
// residual buffers instead of L+1 and the host L-2; "auto" keeps them on
// the CPU backend (offloading saves it nothing), "on" needs checkpointing
// to mean anything, and a bad mode is refused.
func TestOffloadAllocations(t *testing.T) {
	m := offloadModels()["llama"](t)
	b := m.B.(*cpu.Backend)
	const capTokens = 64
	D, L := m.Cfg.HiddenSize, m.Cfg.NumLayers
	measure := func(o engine.ActivationOptions) (device, host int64, offloads bool) {
		before := b.InUseBytes()
		a, err := m.NewActivationsWith(capTokens, o)
		if err != nil {
			t.Fatal(err)
		}
		defer a.Free()
		if a.HostBytes() != b.HostBytes() {
			t.Errorf("activations report %d host bytes, the backend holds %d", a.HostBytes(), b.HostBytes())
		}
		return b.InUseBytes() - before, b.HostBytes(), a.OffloadsCheckpoints()
	}
	dOff, hOff, _ := measure(engine.ActivationOptions{Checkpointing: true, Offload: engine.OffloadOff})
	dOn, hOn, on := measure(engine.ActivationOptions{Checkpointing: true, Offload: engine.OffloadOn})
	stream := int64(capTokens * D * 4) // float32 on the CPU
	if !on || hOff != 0 || hOn != int64(L-2)*stream || dOff-dOn != int64(L+1-engine.OffloadSlots)*stream {
		t.Errorf("offloaded: device %d (kept %d), host %d (kept %d); want the device %d lower and the host %d",
			dOn, dOff, hOn, hOff, int64(L+1-engine.OffloadSlots)*stream, int64(L-2)*stream)
	}
	if b.HostBytes() != 0 {
		t.Errorf("host memory not released: %d bytes", b.HostBytes())
	}
	if _, h, on := measure(engine.ActivationOptions{Checkpointing: true, Offload: engine.OffloadAuto}); on || h != 0 {
		t.Errorf("auto on the CPU backend offloaded (%d host bytes)", h)
	}
	if _, h, on := measure(engine.ActivationOptions{Checkpointing: false, Offload: engine.OffloadOn}); on || h != 0 {
		t.Errorf("on without checkpointing offloaded (%d host bytes)", h)
	}
	if _, err := m.NewActivationsWith(capTokens, engine.ActivationOptions{Checkpointing: true, Offload: "sometimes"}); err == nil {
		t.Error("offload mode \"sometimes\" accepted")
	}
}

// TestOffloadRule is the one rule's table.
func TestOffloadRule(t *testing.T) {
	for _, c := range []struct {
		mode        string
		ckpt        bool
		need, avail int64
		want        bool
	}{
		{engine.OffloadOn, true, 1, 100, true},
		{engine.OffloadOn, false, 1, 100, false},
		{engine.OffloadOff, true, 200, 100, false},
		{engine.OffloadAuto, true, 200, 100, true},
		{engine.OffloadAuto, true, 100, 100, false},
		{engine.OffloadAuto, false, 200, 100, false},
		{engine.OffloadAuto, true, 200, 0, false}, // unknown memory: keep it simple
		{"", true, 200, 100, false},               // the default is off
	} {
		if got := engine.OffloadCheckpoints(c.mode, c.ckpt, c.need, c.avail); got != c.want {
			t.Errorf("OffloadCheckpoints(%q, %v, %d, %d) = %v, want %v", c.mode, c.ckpt, c.need, c.avail, got, c.want)
		}
	}
	for in, want := range map[string]string{"": "off", "AUTO": "auto", " on ": "on", "off": "off"} {
		if got, err := engine.ParseOffloadMode(in); err != nil || got != want {
			t.Errorf("ParseOffloadMode(%q) = %q, %v", in, got, err)
		}
	}
	if _, err := engine.ParseOffloadMode("yes"); err == nil {
		t.Error("ParseOffloadMode accepted yes")
	}
}

// TestStartOffloadedRunEqualsKept trains a five-layer Llama from a run
// config, as whet train does, with train.offload_checkpoints on and off:
// every step's loss is the same to the bit, and only the offloaded run
// says (in its log) that the checkpoints went to host memory.
func TestStartOffloadedRunEqualsKept(t *testing.T) {
	src := t.TempDir()
	copyDir(t, "../testdata/tiny-llama", src)
	raw, err := os.ReadFile(filepath.Join(src, "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	var js map[string]any
	if err := json.Unmarshal(raw, &js); err != nil {
		t.Fatal(err)
	}
	js["num_hidden_layers"] = 5
	if raw, err = json.Marshal(js); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(src, "config.json"), raw, 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := engine.LoadModelConfig(src)
	if err != nil {
		t.Fatal(err)
	}
	m, err := engine.NewModel(*cfg, cpu.New())
	if err != nil {
		t.Fatal(err)
	}
	if err := m.InitRandom(5, 0.1); err != nil {
		t.Fatal(err)
	}
	model := t.TempDir()
	if err := engine.SaveModel(model, m, src); err != nil {
		t.Fatal(err)
	}
	m.Free()
	run := func(mode string) ([]float64, bool) {
		rc := engine.RunConfig{Name: "offload-" + mode, Model: model, Method: "lora", Backend: "cpu", RunsDir: t.TempDir(),
			LoRA: engine.LoRAConfig{Rank: 4, Alpha: 8, Dropout: 0.1},
			Data: engine.DataConfig{Path: abs("../testdata/datasets/tiny-chat.jsonl"), MaxLength: 128, Packing: true, Seed: 1},
			Train: engine.TrainConfig{MaxSteps: 4, MicroBatch: 2, GradAccum: 2, LR: 1e-3, Schedule: "constant", MaxGradNorm: 1, Seed: 1,
				Checkpointing: true, OffloadCheckpoints: mode}}
		var losses []float64
		said := false
		for _, ev := range runToEnd(t, noWarmupNoDecay(withDefaults(t, rc))) {
			switch e := ev.(type) {
			case engine.StepEvent:
				losses = append(losses, e.Loss)
			case engine.LogEvent:
				said = said || strings.Contains(e.Text, "activation checkpoints offloaded to host memory (train.offload_checkpoints on)")
			}
		}
		return losses, said
	}
	kept, saidKept := run(engine.OffloadOff)
	off, saidOff := run(engine.OffloadOn)
	if len(kept) != 4 || !slices.Equal(kept, off) {
		t.Errorf("losses with the checkpoints kept %v, offloaded %v", kept, off)
	}
	if saidKept || !saidOff {
		t.Errorf("offload notice: kept run %v, offloaded run %v", saidKept, saidOff)
	}
}
