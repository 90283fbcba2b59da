package main

import (
	"bytes"
	"flag"
	"fmt"
	"math"
	"path/filepath"
	"strings"
	"testing"

	"whet/engine"
	"whet/engine/cpu"
	"whet/engine/safetensors"
)

// bf16CPUBackend is engine/cpu claiming bf16 compute
// (engine.ComputeDTyper), as the CUDA backend does, so that whet train's
// Llama 3.2 Vision path takes its bf16 compute on a machine without
// a GPU (engine/cpu holds bf16 tensors as rounded float32 values). Its
// Name is still "cpu", which the vision runs accept even with
// WHET_CUDA_VISION=0.
type bf16CPUBackend struct{ *cpu.Backend }

func (bf16CPUBackend) ComputeDType() engine.DType { return engine.BF16 }

// withBF16CPU makes run files' "backend: cpu" open bf16CPUBackend until
// the test ends (then backends.go's plain CPU factory again).
func withBF16CPU(t *testing.T) {
	engine.RegisterBackend("cpu", func() (engine.Backend, error) { return bf16CPUBackend{cpu.New()}, nil })
	t.Cleanup(func() { engine.RegisterBackend("cpu", func() (engine.Backend, error) { return cpu.New(), nil }) })
}

// whet train on a bf16 backend trains Llama 3.2 Vision in bf16 by default
// (QLoRA, projector adapter): the log says so, the four
// steps' losses (two, then a resume from the step-2 checkpoint for two
// more) stay within 2 % of the same run in float32 on the CPU while they
// fall, and the adapter holds float32 values that are not all bf16 ones
// (the masters, not the compute copies). With WHET_MLLAMA_BF16=0 the same
// backend trains in float32, with the same losses as the CPU backend.
func TestTrainMllamaVisionBF16(t *testing.T) {
	modelDir := mllamaTinyModel(t)
	train := func(name string) ([]float64, string, string) {
		dir := t.TempDir()
		writeShapeData(t, dir, "train.jsonl", 7, 0, 12)
		runFile := func(steps int) string {
			run := fmt.Sprintf(`name: %s
model: %s
backend: cpu
runs_dir: %s
method: qlora
lora: {r: 4, alpha: 8, dropout: 0, projector: true}
data: {path: %s, max_length: 128, packing: false, seed: 1}
train: {max_steps: %d, micro_batch: 3, lr: 0.01, schedule: constant, warmup_steps: 0, seed: 1, save_every: 2, log_every: 1, sample_every: 0}
`, name, modelDir, dir, filepath.Join(dir, "train.jsonl"), steps)
			return writeRunYAML(t, dir, run)
		}
		var out bytes.Buffer
		if err := runTrain([]string{"-c", runFile(2)}, nil, &out, &out); err != nil {
			t.Fatalf("%s: first run: %v\n%s", name, err, out.String())
		}
		log := out.String()
		out.Reset()
		if err := runTrain([]string{"-c", runFile(4), "--resume-anyway"}, nil, &out, &out); err != nil {
			t.Fatalf("%s: resumed run: %v\n%s", name, err, out.String())
		}
		if !strings.Contains(out.String(), "at step 2") || !strings.Contains(out.String(), "step 4/4") {
			t.Errorf("%s: the second run did not resume at step 2:\n%s", name, out.String())
		}
		log += out.String()
		losses := textStepLosses(log)
		if len(losses) != 4 {
			t.Fatalf("%s: %d step lines, want 4:\n%s", name, len(losses), log)
		}
		return losses, log, filepath.Join(engine.RunDir(filepath.Join(dir, name)).Adapter(), "adapter_model.safetensors")
	}
	bf16Notice := "vision: Llama 3.2 Vision computes in bf16"

	t.Setenv(engine.MllamaBF16Env, "")
	ref, refLog, _ := train("mf")
	withBF16CPU(t)
	t.Setenv(engine.MllamaBF16Env, "0")
	same, sameLog, _ := train("mf2")
	if strings.Contains(refLog, bf16Notice) || strings.Contains(sameLog, bf16Notice) || !strings.Contains(sameLog, "LM head stay float32") {
		t.Errorf("on the float32 CPU, and with %s=0, the runs must say float32:\n%s\n%s", engine.MllamaBF16Env, refLog, sameLog)
	}
	for i := range ref {
		if same[i] != ref[i] {
			t.Errorf("%s=0, step %d: loss %v on the bf16 backend, %v on the CPU (want the same float32 run)", engine.MllamaBF16Env, i+1, same[i], ref[i])
		}
	}

	// The default on a bf16 backend: bf16.
	t.Setenv(engine.MllamaBF16Env, "")
	got, log, adapter := train("mb")
	if !strings.Contains(log, bf16Notice) || !strings.Contains(log, "LM head stay bf16") {
		t.Errorf("the bf16 run's log does not say it computes in bf16:\n%s", log)
	}
	t.Logf("losses f32 %v", ref)
	t.Logf("losses bf16 %v", got)
	differ := false
	for i := range ref {
		if d := math.Abs(got[i]-ref[i]) / ref[i]; d > 2e-2 || math.IsNaN(d) {
			t.Errorf("step %d: bf16 loss %.5f, float32 %.5f", i+1, got[i], ref[i])
		}
		differ = differ || got[i] != ref[i]
	}
	if !differ {
		t.Errorf("the bf16 run's losses equal float32's exactly: it did not compute in bf16")
	}
	if !(got[3] < got[0]) {
		t.Errorf("bf16 losses %v: want the last below the first", got)
	}
	f, err := safetensors.Open(adapter)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	name := "base_model.model.multi_modal_projector.lora_A.weight"
	v, err := f.Float32(name)
	if err != nil {
		t.Fatal(err)
	}
	notBF16 := 0
	for _, x := range v {
		if x != cpu.RoundBF16(x) {
			notBF16++
		}
	}
	if notBF16 == 0 {
		t.Errorf("%s holds only bf16 values: the adapter was written from the compute copies, not the float32 masters", name)
	}
}

var writeMllamaTestdata = flag.Bool("write-mllama-testdata", false,
	"write testdata/tiny-mllama-shapes, which the GPU batch tools/gpu/mllama-vtrain trains on")

// The committed tiny Llama 3.2 Vision folder with its tokenizer and chat
// template (made by this test with -write-mllama-testdata: mllamaTinyModel's
// files) trains QLoRA with the projector adapter on the committed shapes
// dataset (testdata/datasets/shapes) through whet train; the GPU batch
// tools/gpu/mllama-vtrain runs the same run on the CPU and on CUDA, in
// float32 (WHET_MLLAMA_BF16=0) and in bf16 (the default there).
func TestMllamaVisionTestdata(t *testing.T) {
	model, data := filepath.Join("testdata", "tiny-mllama-shapes"), filepath.Join("testdata", "datasets", "shapes")
	if *writeMllamaTestdata {
		src := mllamaTinyModel(t)
		copyModelFiles(t, src, model)
	}
	trainTestdata(t, "name: mshapes\nmodel: %s\nbackend: cpu\nruns_dir: %s\nmethod: qlora\nlora: {r: 4, alpha: 8, dropout: 0, projector: true}\n"+
		"data: {path: %s, max_length: 128, packing: false, seed: 1}\ntrain: {max_steps: 2, micro_batch: 3, lr: 0.01, seed: 1, sample_every: 0}\n",
		model, filepath.Join(data, "train.jsonl"), "vision: Llama 3.2 Vision trains on 72 images", "go test . -run TestMllamaVisionTestdata -write-mllama-testdata")
}

// whet train with train.activation_checkpointing on Llama 3.2 Vision
// reruns each text layer's forward in the backward
// (engine.MllamaModel.Checkpointing): on the committed tiny model and
// shapes data its loss lines equal those of the run without, step for
// step, in float32 and in bf16 compute.
func TestTrainMllamaVisionCheckpointing(t *testing.T) {
	model, data := filepath.Join("testdata", "tiny-mllama-shapes"), filepath.Join("testdata", "datasets", "shapes")
	abs := func(p string) string { a, _ := filepath.Abs(p); return a }
	train := func(ckpt bool) []string {
		dir := t.TempDir()
		run := fmt.Sprintf("name: mc\nmodel: %s\nbackend: cpu\nruns_dir: %s\nmethod: qlora\nlora: {r: 4, alpha: 8, dropout: 0, projector: true}\n"+
			"data: {path: %s, max_length: 128, packing: false, seed: 1}\ntrain: {max_steps: 3, micro_batch: 3, lr: 0.01, seed: 1, sample_every: 0, log_every: 1, activation_checkpointing: %v}\n",
			abs(model), dir, abs(filepath.Join(data, "train.jsonl")), ckpt)
		p := writeRunYAML(t, dir, run)
		var out bytes.Buffer
		if err := runTrain([]string{"-c", p}, nil, &out, &out); err != nil {
			t.Fatalf("checkpointing %v: %v\n%s", ckpt, err, out.String())
		}
		var losses []string
		for _, line := range strings.Split(out.String(), "\n") {
			if f := strings.Fields(line); len(f) > 5 && strings.HasPrefix(line, "step ") {
				losses = append(losses, f[5])
			}
		}
		if len(losses) != 3 {
			t.Fatalf("checkpointing %v: %d step lines:\n%s", ckpt, len(losses), out.String())
		}
		return losses
	}
	for _, bf16 := range []bool{false, true} {
		if bf16 {
			withBF16CPU(t)
			t.Setenv(engine.MllamaBF16Env, "1")
		}
		off, on := train(false), train(true)
		t.Logf("bf16 %v: losses %v without checkpointing, %v with", bf16, off, on)
		if strings.Join(off, " ") != strings.Join(on, " ") {
			t.Errorf("bf16 %v: losses %v with checkpointing, %v without", bf16, on, off)
		}
	}
}
