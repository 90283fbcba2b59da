package engine_test

import (
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"whet/datasets"
	"whet/datasets/tokenizer"
	"whet/engine"
)

// respelledChatML renders exactly what ChatML renders, but spelled so that
// no built-in family recognises it: only the Jinja interpreter takes it.
const respelledChatML = "{% for message in messages %}{{ '<|im_start|>' ~ message.role ~ '\\n' ~ message.content ~ '<|im_end|>' ~ '\\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"

// modelWithTemplate copies the tiny Qwen2 with another chat template.
func modelWithTemplate(t *testing.T, tmpl string) string {
	t.Helper()
	dir := t.TempDir()
	copyDir(t, "../testdata/tiny-qwen2", dir)
	path := filepath.Join(dir, "tokenizer_config.json")
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var cfg map[string]any
	if err := json.Unmarshal(data, &cfg); err != nil {
		t.Fatal(err)
	}
	cfg["chat_template"] = tmpl
	if data, err = json.Marshal(cfg); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// Training data through an interpreted template has the same tokens and
// the same assistant-only targets as through the built-in family that
// renders the same text, and a LoRA run on it trains on the CPU.
func TestTrainWithInterpretedTemplate(t *testing.T) {
	model := modelWithTemplate(t, respelledChatML)
	tok, err := tokenizer.Load(model)
	if err != nil {
		t.Fatal(err)
	}
	opts := datasets.Options{Path: abs("../testdata/datasets/tiny-chat.jsonl"), MaxLength: 256, TrainOn: "responses", Seed: 1}
	interp, err := datasets.Prepare(opts, tok)
	if err != nil {
		t.Fatal(err)
	}
	if interp.Template == nil || !interp.Template.Interpreted() {
		t.Fatalf("template %v: want the interpreted one", interp.Stats.Template)
	}
	opts.Template = "chatml"
	builtin, err := datasets.Prepare(opts, tok)
	if err != nil {
		t.Fatal(err)
	}
	if len(interp.TrainBatches) == 0 || !reflect.DeepEqual(interp.TrainBatches, builtin.TrainBatches) {
		t.Fatalf("interpreted and built-in ChatML prepare different batches (%d vs %d)", len(interp.TrainBatches), len(builtin.TrainBatches))
	}
	masked, trained := 0, 0
	for _, b := range interp.TrainBatches {
		for _, tg := range b.Targets {
			if tg < 0 {
				masked++
			} else {
				trained++
			}
		}
	}
	if masked == 0 || trained == 0 {
		t.Fatalf("targets: %d masked, %d trained; want both (assistant-only loss)", masked, trained)
	}

	cfg := engine.RunConfig{Name: "jinja", Model: model, Method: "lora", Backend: "cpu", RunsDir: t.TempDir(),
		LoRA: engine.LoRAConfig{Rank: 4, Alpha: 8},
		Data: engine.DataConfig{Path: opts.Path, MaxLength: 256, Packing: true, Seed: 1},
		Train: engine.TrainConfig{Epochs: 2, MicroBatch: 4, LR: 1e-2, Schedule: "constant", MaxGradNorm: 1, Seed: 1,
			SampleEvery: 4, SamplePrompts: []string{"What is a variable?"}, SampleTokens: 4}}
	var losses []float64
	samples := 0
	for _, ev := range runToEnd(t, cfg) {
		switch e := ev.(type) {
		case engine.StepEvent:
			losses = append(losses, e.Loss)
		case engine.SampleEvent:
			samples++
		}
	}
	if len(losses) < 4 || math.IsNaN(losses[len(losses)-1]) || !(losses[len(losses)-1] < losses[0]) {
		t.Fatalf("losses %v", losses)
	}
	if samples == 0 {
		t.Fatal("no samples generated through the interpreted template")
	}
}
