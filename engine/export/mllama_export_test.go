package export

import (
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"whet/datasets/vision"
	"whet/engine"
	"whet/engine/cpu"
	"whet/engine/safetensors"
	"whet/engine/testmodels"
)

// makeMllamaModel writes the tiny model with random weights under
// transformers 5's names (model.language_model.*, lm_head.weight,
// model.vision_model.*, model.multi_modal_projector.*) and a
// preprocessor_config.json.
func makeMllamaModel(t *testing.T, dir string) (string, *engine.MllamaConfig) {
	t.Helper()
	cfg, err := engine.ParseMllamaConfig("config.json", []byte(testmodels.TinyMllamaConfig))
	if err != nil {
		t.Fatal(err)
	}
	m, err := engine.NewMllamaModel(*cfg, cpu.New())
	if err != nil {
		t.Fatal(err)
	}
	defer m.Free()
	rng := rand.New(rand.NewPCG(11, 1))
	var ts []safetensors.Tensor
	for _, p := range m.Params() {
		v := make([]float32, numel(p.Shape))
		mean, std := testmodels.MllamaWeightDraw(p.Name)
		for i := range v {
			v[i] = mean + std*float32(rng.NormFloat64())
		}
		names := engine.MllamaCheckpointNames(p.Name)
		ts = append(ts, safetensors.F32Tensor(names[len(names)-1], p.Shape, v))
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := safetensors.Write(filepath.Join(dir, "model.safetensors"), ts, map[string]string{"format": "pt"}); err != nil {
		t.Fatal(err)
	}
	for name, data := range map[string]string{"config.json": testmodels.TinyMllamaConfig,
		"preprocessor_config.json": `{"image_processor_type": "MllamaImageProcessor", "size": {"height": 16, "width": 16}, "max_image_tiles": 4}`} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	tok, err := os.ReadFile(testdata("tiny-llama/tokenizer.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "tokenizer.json"), tok, 0o644); err != nil {
		t.Fatal(err)
	}
	return dir, cfg
}

// mllamaSamples is one sample with a 2×2-tile image after the first token
// and one with a single-tile image, random pixels, the processor's
// cross-attention mask.
func mllamaSamples(cfg *engine.MllamaConfig) []engine.MllamaSample {
	rng := rand.New(rand.NewPCG(5, 5))
	var out []engine.MllamaSample
	for _, im := range [][2]int{{6, 4}, {1, 1}} {
		v := &cfg.Vision
		ids := []int{1, cfg.ImageToken}
		for len(ids) < 10 {
			ids = append(ids, 3+rng.IntN(250))
		}
		s := engine.MllamaSample{Images: 1, AspectRatioIDs: []int32{int32(im[0])}}
		per := v.Channels * v.ImageSize * v.ImageSize
		s.Pixels = make([]float32, v.MaxTiles*per)
		for tile := 0; tile < v.MaxTiles; tile++ {
			on := int32(0)
			if tile < im[1] {
				on = 1
				for j := 0; j < per; j++ {
					s.Pixels[tile*per+j] = float32(rng.NormFloat64())
				}
			}
			s.AspectRatioMask = append(s.AspectRatioMask, on)
		}
		for _, b := range vision.CrossAttentionMask(vision.CrossAttentionSpans(ids, cfg.ImageToken), []int{im[1]}, v.MaxTiles, len(ids)) {
			s.CrossMask = append(s.CrossMask, int32(b))
		}
		for i, id := range ids {
			s.IDs = append(s.IDs, int32(id))
			tg := int32(-100)
			if i+1 < len(ids) && ids[i+1] != cfg.ImageToken {
				tg = int32(ids[i+1])
			}
			s.Targets = append(s.Targets, tg)
		}
		out = append(out, s)
	}
	return out
}

// mllamaFolderLogits is mllamaLogits of the Mllama folder dir, loaded on
// the CPU.
func mllamaFolderLogits(t *testing.T, dir string, cfg *engine.MllamaConfig) []float32 {
	t.Helper()
	m, err := engine.LoadMllama(dir, cpu.New())
	if err != nil {
		t.Fatal(err)
	}
	defer m.Free()
	return mllamaLogits(t, m, cfg)
}

func mllamaLogits(t *testing.T, m *engine.MllamaModel, cfg *engine.MllamaConfig) []float32 {
	t.Helper()
	res, err := m.Run(mllamaSamples(cfg), false, true)
	if err != nil {
		t.Fatal(err)
	}
	return slices.Concat(res.Logits...)
}

// makeMllamaRun makes a finished LoRA run on the tiny Mllama with random
// adapters on every language-model linear and the projector, saved by
// engine.SaveMllamaAdapter; it returns the run and the training model's
// logits.
func makeMllamaRun(t *testing.T, dir, base string, cfg *engine.MllamaConfig) (string, []float32) {
	t.Helper()
	m, err := engine.LoadMllama(base, cpu.New())
	if err != nil {
		t.Fatal(err)
	}
	defer m.Free()
	o := engine.MllamaLoRA{Rank: 4, Alpha: 8, Projector: true}
	if err := m.AddLoRA(o); err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(6, 6))
	for _, p := range m.Params() {
		if !strings.Contains(p.Name, ".lora_") {
			continue
		}
		v := make([]float32, numel(p.Shape))
		for i := range v {
			v[i] = float32(rng.NormFloat64() * 0.1)
		}
		if err := m.B.Upload(p.W, v); err != nil {
			t.Fatal(err)
		}
	}
	abs, _ := filepath.Abs(base)
	if err := engine.SaveMllamaAdapter(filepath.Join(dir, "adapter"), m, o, abs); err != nil {
		t.Fatal(err)
	}
	writeRunYAML(t, dir, filepath.Base(dir), abs, "lora", engine.LoRAConfig{Rank: 4, Alpha: 8})
	return dir, mllamaLogits(t, m, cfg)
}

// TestMllamaExports: a LoRA run on Llama 3.2 Vision (language model with
// its cross-attention layer, and the projector) exports
//   - a PEFT adapter under transformers 5's module names whose target
//     pattern reaches the language model's and projector's linears and not
//     the vision tower's, which whet reads back with the run's logits bit
//     for bit (also from transformers 4's names and a list of modules);
//   - merged safetensors under the checkpoint's names with config.json,
//     preprocessor_config.json and the tokenizer, which LoadMllama reads
//     with the run's logits within bf16 rounding;
//   - and refuses GGUF by name, writing nothing.
func TestMllamaExports(t *testing.T) {
	tmp := t.TempDir()
	base, cfg := makeMllamaModel(t, filepath.Join(tmp, "base"))
	run, want := makeMllamaRun(t, filepath.Join(tmp, "run"), base, cfg)

	peft := filepath.Join(tmp, "peft")
	if err := Run(Options{RunDir: run, Format: "peft", OutDir: peft}, nil); err != nil {
		t.Fatal(err)
	}
	keys := safetensorNames(t, filepath.Join(peft, adapterWeights))
	for _, k := range []string{"base_model.model.model.language_model.layers.0.self_attn.q_proj.lora_A.weight",
		"base_model.model.model.language_model.layers.1.cross_attn.o_proj.lora_B.weight",
		"base_model.model.model.language_model.layers.1.mlp.down_proj.lora_A.weight",
		"base_model.model.model.multi_modal_projector.lora_A.weight"} {
		if !slices.Contains(keys, k) {
			t.Errorf("adapter has no %s", k)
		}
	}
	if len(keys) != 2*(3*7+1) {
		t.Errorf("%d adapter tensors, want %d", len(keys), 2*(3*7+1))
	}
	c, err := readJSONMap(filepath.Join(peft, adapterConfigFile))
	if err != nil {
		t.Fatal(err)
	}
	pattern, _ := c["target_modules"].(string)
	checkTargetPattern(t, pattern, map[string]bool{
		"model.language_model.layers.0.self_attn.q_proj":           true,
		"model.language_model.layers.1.cross_attn.k_proj":          true,
		"model.language_model.layers.2.mlp.up_proj":                true,
		"model.multi_modal_projector":                              true,
		"model.vision_model.transformer.layers.0.self_attn.q_proj": false,
		"model.vision_model.global_transformer.layers.1.mlp.fc1":   false,
		"lm_head": false,
	})
	if c["base_model_name_or_path"] == "" || c["r"] == nil {
		t.Errorf("adapter_config.json %v", c)
	}
	for _, f := range []string{"tokenizer.json", "preprocessor_config.json"} {
		if _, err := os.Stat(filepath.Join(peft, f)); err != nil {
			t.Error(err)
		}
	}
	reload := func(adapter string) []float32 {
		m, err := engine.LoadMllama(base, cpu.New())
		if err != nil {
			t.Fatal(err)
		}
		defer m.Free()
		o, err := engine.LoadMllamaAdapter(adapter, m)
		if err != nil {
			t.Fatal(err)
		}
		if !o.Projector || len(o.Targets) != 7 || o.Rank != 4 || o.Alpha != 8 {
			t.Errorf("loaded options %+v", o)
		}
		return mllamaLogits(t, m, cfg)
	}
	if got := reload(peft); !slices.Equal(got, want) {
		t.Errorf("the reloaded PEFT export's logits differ from the run's")
	}
	// An adapter under transformers 4's names (language_model.model.…,
	// multi_modal_projector at the top) with a list of modules exports the
	// same adapter.
	old := filepath.Join(tmp, "run4")
	writeRunYAML(t, old, "run4", base, "lora", engine.LoRAConfig{Rank: 4, Alpha: 8})
	f, err := safetensors.Open(filepath.Join(peft, adapterWeights))
	if err != nil {
		t.Fatal(err)
	}
	var ts []safetensors.Tensor
	for _, n := range f.Names() {
		info, _ := f.Info(n)
		raw, _ := f.Raw(n)
		n4 := strings.Replace(n, "base_model.model.model.language_model.", "base_model.model.language_model.model.", 1)
		n4 = strings.Replace(n4, "base_model.model.model.multi_modal_projector.", "base_model.model.multi_modal_projector.", 1)
		ts = append(ts, safetensors.Tensor{Name: n4, DType: info.DType, Shape: info.Shape, Data: append([]byte(nil), raw...)})
	}
	f.Close()
	if err := os.MkdirAll(filepath.Join(old, "adapter"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := safetensors.Write(filepath.Join(old, "adapter", adapterWeights), ts, nil); err != nil {
		t.Fatal(err)
	}
	c4 := `{"peft_type": "LORA", "r": 4, "lora_alpha": 8, "base_model_name_or_path": "x",
		"target_modules": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj", "multi_modal_projector"]}`
	if err := os.WriteFile(filepath.Join(old, "adapter", adapterConfigFile), []byte(c4), 0o644); err != nil {
		t.Fatal(err)
	}
	peft4 := filepath.Join(tmp, "peft4")
	if err := Run(Options{RunDir: old, Format: "peft", OutDir: peft4}, nil); err != nil {
		t.Fatal(err)
	}
	if k4 := safetensorNames(t, filepath.Join(peft4, adapterWeights)); !slices.Equal(slices.Sorted(slices.Values(k4)), slices.Sorted(slices.Values(keys))) {
		t.Errorf("transformers 4 names exported as %v", k4[:2])
	}
	if got := reload(peft4); !slices.Equal(got, want) {
		t.Errorf("the transformers 4 adapter's export gives other logits")
	}

	merged := filepath.Join(tmp, "merged")
	if err := Run(Options{RunDir: run, Format: "merged", OutDir: merged}, nil); err != nil {
		t.Fatal(err)
	}
	in, _ := safetensors.OpenDir(base)
	out, _ := safetensors.OpenDir(merged)
	if a, b := slices.Sorted(slices.Values(in.Names())), slices.Sorted(slices.Values(out.Names())); !slices.Equal(a, b) {
		t.Errorf("merged tensors\n %v\nsource\n %v", b, a)
	}
	in.Close()
	out.Close()
	for _, f := range []string{"config.json", "preprocessor_config.json", "tokenizer.json"} {
		if _, err := os.Stat(filepath.Join(merged, f)); err != nil {
			t.Error(err)
		}
	}
	got := mllamaFolderLogits(t, merged, cfg)
	baseLogits := mllamaFolderLogits(t, base, cfg)
	d, top := maxDiff(got, want)
	if d > 0.02*top {
		t.Errorf("the merged model's logits differ by %g (largest %g)", d, top)
	}
	if db, _ := maxDiff(baseLogits, want); db < 5*d {
		t.Errorf("the adapter moves the logits by %g only, the merge is off by %g", db, d)
	}

	gg := filepath.Join(tmp, "gguf")
	err = Run(Options{RunDir: run, Format: "gguf", OutDir: gg}, nil)
	if !errors.Is(err, errMllamaGGUF) || !strings.Contains(err.Error(), "llama.cpp has no Mllama support") {
		t.Errorf("gguf export of an Mllama run: %v", err)
	}
	if _, err := os.Stat(gg); !os.IsNotExist(err) {
		t.Errorf("the refused GGUF export left %s (%v)", gg, err)
	}
}
