package memplan

import (
	"strings"
	"testing"

	"whet/datasets"
	"whet/engine"
	"whet/engine/cpu"
)

const tinyGemma3Vision = `{"architectures": ["Gemma3ForConditionalGeneration"], "model_type": "gemma3",
  "boi_token_index": 509, "eoi_token_index": 510, "image_token_index": 511, "mm_tokens_per_image": 4,
  "text_config": {"model_type": "gemma3_text", "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
    "num_attention_heads": 2, "num_key_value_heads": 1, "head_dim": 16, "vocab_size": 512, "max_position_embeddings": 512,
    "sliding_window": 3, "sliding_window_pattern": 2, "pad_token_id": null},
  "vision_config": {"hidden_size": 32, "intermediate_size": 48, "num_hidden_layers": 2,
    "num_attention_heads": 2, "image_size": 32, "patch_size": 8, "vision_use_head": false}}`

// TestPlanGemma3VisionMatchesEngine: the plan's image buffers are exactly
// what the CPU engine allocates when a LoRA pass (projector adapter on and
// off; adapters on the tower's layers, which keep its activations) first
// meets images, the tower and projector weights add up to the attached
// model's parameters, and the trained elements to the model's.
func TestPlanGemma3VisionMatchesEngine(t *testing.T) {
	text, err := engine.ParseModelConfig("config.json", []byte(tinyGemma3Vision))
	if err != nil {
		t.Fatal(err)
	}
	vis, err := engine.ParseGemma3VisionConfig([]byte(tinyGemma3Vision), text.HiddenSize)
	if err != nil {
		t.Fatal(err)
	}
	const seqLen, micro = 24, 2
	for _, mode := range []string{"lm", "projector", "vision_layers"} {
		projector, visionLayers := mode == "projector", mode == "vision_layers"
		b := cpu.New()
		m, err := engine.NewModel(*text, b)
		if err != nil {
			t.Fatal(err)
		}
		if err := m.AttachGemma3Vision(vis, nil); err != nil {
			t.Fatal(err)
		}
		if err := m.AddLoRA(engine.LoRAOptions{Rank: 8, Alpha: 16}); err != nil {
			t.Fatal(err)
		}
		if projector {
			if err := m.AddGemma3ProjectorLoRA(engine.LoRAOptions{Rank: 8, Alpha: 16}); err != nil {
				t.Fatal(err)
			}
		}
		if visionLayers {
			if err := m.AddGemma3VisionLayersLoRA(engine.LoRAOptions{Rank: 8, Alpha: 16}); err != nil {
				t.Fatal(err)
			}
		}
		p, err := PlanGemma3Vision(text, vis, Options{Method: LoRA, SeqLen: seqLen, MicroBatch: micro, LoRARank: 8, WeightDType: F32},
			Gemma3VisionOptions{Projector: projector, VisionLayers: visionLayers})
		if err != nil {
			t.Fatal(err)
		}
		if got, want := p.Params, m.NumParams(); got != want {
			t.Errorf("%s: plan counts %d parameters, the model %d", mode, got, want)
		}
		var trained int64
		for _, q := range m.TrainableParams() {
			trained += int64(q.W.Len())
		}
		if p.Trainable != trained {
			t.Errorf("%s: plan trains %d elements, the model %d", mode, p.Trainable, trained)
		}
		acts, err := m.NewActivations(seqLen*micro, false)
		if err != nil {
			t.Fatal(err)
		}
		// Two sequences of 24 tokens, one image each.
		batch := &datasets.Batch{SeqStarts: []int32{0}}
		for s := 0; s < micro; s++ {
			for i := 0; i < seqLen; i++ {
				id := int32(5 + i)
				if i >= 3 && i < 7 {
					id = 511
				}
				batch.Tokens = append(batch.Tokens, id)
				batch.Positions = append(batch.Positions, int32(i))
				batch.Targets = append(batch.Targets, datasets.IgnoreIndex)
			}
			batch.Targets[len(batch.Targets)-2] = 9
			batch.SeqStarts = append(batch.SeqStarts, int32(len(batch.Tokens)))
		}
		text := &datasets.Batch{Tokens: make([]int32, len(batch.Tokens)), Targets: batch.Targets, Positions: batch.Positions, SeqStarts: batch.SeqStarts}
		for i := range text.Tokens {
			text.Tokens[i] = 5
		}
		// A text pass first, so that only the images' buffers are new below.
		if _, err := acts.ForwardBackward(text, 1, true, 0); err != nil {
			t.Fatal(err)
		}
		before := b.InUseBytes()
		if err := acts.SetImages(make([]float32, micro*vis.PixelsPerImage()), micro); err != nil {
			t.Fatal(err)
		}
		if _, err := acts.ForwardBackward(batch, 1, true, 0); err != nil {
			t.Fatal(err)
		}
		got := b.InUseBytes() - before
		var want int64
		for _, buf := range p.Buffers {
			for _, pre := range []string{"vision.", "projector.", "backward.projector.", "backward.vision.", "lm.image_groups"} {
				if strings.HasPrefix(buf.Name, pre) {
					want += int64(buf.Repeat) * buf.Bytes()
				}
			}
		}
		if got != want {
			t.Errorf("%s: the engine allocated %d bytes for the images, the plan %d", mode, got, want)
		}
		acts.Free()
		m.Free()
	}
}

// TestPlanGemma3Vision4B: the released gemma-3-4b-it planned for LoRA with
// one 896×896 image counts the checkpoint's 4,300,079,472 parameters, and
// the tower's frozen forward over 4096 patches stays under a gigabyte.
func TestPlanGemma3Vision4B(t *testing.T) {
	const released = `{"architectures": ["Gemma3ForConditionalGeneration"], "model_type": "gemma3",
  "boi_token_index": 255999, "eoi_token_index": 256000, "image_token_index": 262144, "mm_tokens_per_image": 256,
  "text_config": {"hidden_size": 2560, "intermediate_size": 10240, "model_type": "gemma3_text", "num_hidden_layers": 34,
    "rope_scaling": {"factor": 8.0, "rope_type": "linear"}, "sliding_window": 1024},
  "vision_config": {"hidden_size": 1152, "image_size": 896, "intermediate_size": 4304, "model_type": "siglip_vision_model",
    "num_attention_heads": 16, "num_hidden_layers": 27, "patch_size": 14, "vision_use_head": false}}`
	text, err := engine.ParseModelConfig("config.json", []byte(released))
	if err != nil {
		t.Fatal(err)
	}
	vis, err := engine.ParseGemma3VisionConfig([]byte(released), text.HiddenSize)
	if err != nil {
		t.Fatal(err)
	}
	p, err := PlanGemma3Vision(text, vis, Options{Method: LoRA, SeqLen: 1024, MicroBatch: 1, LoRARank: 16}, Gemma3VisionOptions{Projector: true})
	if err != nil {
		t.Fatal(err)
	}
	if p.Params != 4_300_079_472 {
		t.Errorf("%d parameters, the checkpoint holds 4,300,079,472", p.Params)
	}
	var tower int64
	for _, b := range p.Buffers {
		if strings.HasPrefix(b.Name, "vision.") {
			tower += b.ArenaBytes()
		}
	}
	if tower <= 0 || tower > 1<<30 {
		t.Errorf("tower activations %d bytes", tower)
	}
	t.Logf("gemma-3-4b-it LoRA r16, 1024 tokens, one image: weights %.2f GiB, tower activations %.0f MiB", float64(p.Bytes(Weights))/(1<<30), float64(tower)/(1<<20))
	if _, err := PlanGemma3Vision(text, vis, Options{Method: Full, SeqLen: 64}, Gemma3VisionOptions{}); err == nil {
		t.Error("full fine-tuning was planned")
	}
}
