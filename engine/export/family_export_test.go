package export

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"whet/engine"
	"whet/engine/cpu"
	"whet/engine/safetensors"
)

// TestFamilyPEFTAndMerged exports a LoRA run of each family as a PEFT
// adapter and as merged bf16 safetensors:
//   - the adapter keeps PEFT's module names (Phi-3: qkv_proj and
//     gate_up_proj, as PEFT names the fused linears) in its keys and
//     target_modules, and loaded onto the base gives the run's logits;
//   - the merged folder holds exactly the source checkpoint's tensor names
//     (a tied head is not written twice), all BF16, Gemma's norm weights
//     as transformers stores them (w, scaled by 1 + w at run time), and
//     reloaded by whet gives the run's logits within bf16 rounding.
func TestFamilyPEFTAndMerged(t *testing.T) {
	tmp := t.TempDir()
	wantTargets := map[string][]string{
		"qwen3":  {"down_proj", "gate_proj", "k_proj", "o_proj", "q_proj", "up_proj", "v_proj"},
		"gemma3": {"down_proj", "gate_proj", "k_proj", "o_proj", "q_proj", "up_proj", "v_proj"},
		"gemma2": {"down_proj", "gate_proj", "k_proj", "o_proj", "q_proj", "up_proj", "v_proj"},
		"phi3":   {"down_proj", "gate_up_proj", "o_proj", "qkv_proj"},
	}
	for i, name := range []string{"qwen3", "gemma3", "gemma2", "phi3"} {
		t.Run(name, func(t *testing.T) {
			base := makeFamilyModel(t, filepath.Join(tmp, name, "base"), name)
			run := familyLoRARun(t, filepath.Join(tmp, name, "run"), base, uint64(40+i))
			src := loadRun(t, run)
			want := whetLogits(t, src.Model, transformersInputs[0])

			peft := filepath.Join(tmp, name, "peft")
			if err := Run(Options{RunDir: run, Format: "peft", OutDir: peft}, nil); err != nil {
				t.Fatal(err)
			}
			cfg, err := readJSONMap(filepath.Join(peft, "adapter_config.json"))
			if err != nil {
				t.Fatal(err)
			}
			var targets []string
			for _, v := range cfg["target_modules"].([]any) {
				targets = append(targets, v.(string))
			}
			slices.Sort(targets)
			if !slices.Equal(targets, wantTargets[name]) {
				t.Errorf("target_modules %v, want %v", targets, wantTargets[name])
			}
			keys := safetensorNames(t, filepath.Join(peft, "adapter_model.safetensors"))
			for _, mod := range wantTargets[name] {
				key := "base_model.model.model.layers.1." + peftBlock(strings.TrimSuffix(mod, "_proj")) + "." + mod + ".lora_B.weight"
				if !slices.Contains(keys, key) {
					t.Errorf("adapter lacks %s", key)
				}
			}
			m, err := engine.LoadModel(base, cpu.New())
			if err != nil {
				t.Fatal(err)
			}
			if _, err := engine.LoadAdapter(peft, m); err != nil {
				t.Fatal(err)
			}
			if got := whetLogits(t, m, transformersInputs[0]); !slices.Equal(got, want) {
				t.Error("the exported adapter computes other logits than the run")
			}
			m.Free()

			merged := filepath.Join(tmp, name, "merged")
			if err := Run(Options{RunDir: run, Format: "merged", Quant: "bf16", OutDir: merged}, nil); err != nil {
				t.Fatal(err)
			}
			checkMergedLike(t, base, merged, src, want)
		})
	}
}

// checkMergedLike checks a merged bf16 folder against its source
// checkpoint (same tensor names and shapes, every tensor BF16, 1-D
// weights equal to the source's after bf16 rounding: the norms are not
// shifted) and that whet reloading it computes want within bf16 rounding.
func checkMergedLike(t *testing.T, base, merged string, src *Source, want []float32) {
	t.Helper()
	in, err := safetensors.OpenDir(base)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := safetensors.OpenDir(merged)
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	if a, b := slices.Sorted(slices.Values(in.Names())), slices.Sorted(slices.Values(out.Names())); !slices.Equal(a, b) {
		t.Errorf("merged tensors\n %v\nsource\n %v", b, a)
	}
	for _, n := range out.Names() {
		info, _ := out.Info(n)
		srcInfo, _ := in.Info(n)
		if !slices.Equal(info.Shape, srcInfo.Shape) {
			t.Errorf("%s: shape %v, source %v", n, info.Shape, srcInfo.Shape)
		}
		if srcInfo.DType == "F32" && info.DType != "BF16" {
			t.Errorf("%s stored as %s, want BF16", n, info.DType)
		}
		if len(info.Shape) == 1 {
			a, _ := in.Float32(n)
			b, _ := out.Float32(n)
			for i := range a {
				if r := safetensors.BF16ToFloat32(safetensors.Float32ToBF16(a[i])); b[i] != r {
					t.Fatalf("%s[%d] = %v, source %v (bf16 %v)", n, i, b[i], a[i], r)
				}
			}
		}
	}
	m, err := engine.LoadModel(merged, cpu.New())
	if err != nil {
		t.Fatal(err)
	}
	defer m.Free()
	got := whetLogits(t, m, transformersInputs[0])
	diff, top := maxDiff(got, want)
	if diff > 0.02*top {
		t.Errorf("reloaded merged model's logits differ by %g (largest %g)", diff, top)
	}
}

func safetensorNames(t *testing.T, path string) []string {
	t.Helper()
	f, err := safetensors.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	return f.Names()
}

// visionNorm is the one vision tower tensor of makeGemma3Multimodal (the
// rest of its tiny SigLIP transformers initialises when it loads the
// folder; the text logits do not depend on it).
var visionNorm = []float32{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16}

// makeGemma3Multimodal writes a Gemma3ForConditionalGeneration-style
// folder holding the text model of the gemma3 model folder textDir: its
// settings in text_config, its tensors under model.language_model. (as
// transformers 5 saves them), beside a vision tower tensor whet does not
// read.
func makeGemma3Multimodal(t *testing.T, textDir, dir string) string {
	t.Helper()
	copyDir(t, textDir, dir)
	text, err := readJSONMap(filepath.Join(textDir, "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	cfg := map[string]any{"architectures": []string{"Gemma3ForConditionalGeneration"}, "model_type": "gemma3",
		"text_config": text, "vision_config": map[string]any{"model_type": "siglip_vision_model", "hidden_size": 16, "intermediate_size": 32,
			"num_hidden_layers": 1, "num_attention_heads": 2, "image_size": 32, "patch_size": 8},
		"eos_token_id": 2, "image_token_index": 511, "mm_tokens_per_image": 4}
	if err := os.WriteFile(filepath.Join(dir, "config.json"), []byte(jsonString(t, cfg)), 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := safetensors.Open(filepath.Join(textDir, "model.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var ts []safetensors.Tensor
	for _, n := range f.Names() {
		info, _ := f.Info(n)
		raw, _ := f.Raw(n)
		ts = append(ts, safetensors.Tensor{Name: "model.language_model." + strings.TrimPrefix(n, "model."), DType: info.DType, Shape: info.Shape, Data: raw})
	}
	ts = append(ts, safetensors.BF16Tensor("model.vision_tower.vision_model.post_layernorm.weight", []int{16}, visionNorm))
	if err := safetensors.Write(filepath.Join(dir, "model.safetensors"), ts, map[string]string{"format": "pt"}); err != nil {
		t.Fatal(err)
	}
	return dir
}

// TestGemma3MultimodalExports: a LoRA run on the text part of a Gemma 3
// 4B-style checkpoint exports
//   - a PEFT adapter whose keys name the modules where PEFT finds them in
//     Gemma3ForConditionalGeneration (base_model.model.model.language_model.
//     layers.N...), with a target_modules pattern that reaches the text
//     model's linears and not the vision tower's q_proj/k_proj/..., and
//     that whet's own LoadAdapter reads back with the run's logits;
//   - a merged folder with the checkpoint's own tensor names and its vision
//     tower carried over as stored, whose text model whet reloads with the
//     run's logits;
//   - a GGUF of llama.cpp's gemma3 (the text model).
func TestGemma3MultimodalExports(t *testing.T) {
	tmp := t.TempDir()
	textDir := makeFamilyModel(t, filepath.Join(tmp, "text"), "gemma3")
	base := makeGemma3Multimodal(t, textDir, filepath.Join(tmp, "mm"))
	run := familyLoRARun(t, filepath.Join(tmp, "run"), base, 50)
	src := loadRun(t, run)
	want := whetLogits(t, src.Model, transformersInputs[0])

	peft := filepath.Join(tmp, "peft")
	if err := Run(Options{RunDir: run, Format: "peft", OutDir: peft}, nil); err != nil {
		t.Fatal(err)
	}
	keys := safetensorNames(t, filepath.Join(peft, "adapter_model.safetensors"))
	if !slices.Contains(keys, "base_model.model.model.language_model.layers.2.mlp.down_proj.lora_A.weight") {
		t.Errorf("adapter keys %v", keys[:3])
	}
	for _, k := range keys {
		if !strings.HasPrefix(k, "base_model.model.model.language_model.layers.") {
			t.Errorf("adapter key %s is not under the language model", k)
		}
	}
	cfg, err := readJSONMap(filepath.Join(peft, "adapter_config.json"))
	if err != nil {
		t.Fatal(err)
	}
	pattern, ok := cfg["target_modules"].(string)
	if !ok {
		t.Fatalf("target_modules %v is not a pattern", cfg["target_modules"])
	}
	checkTargetPattern(t, pattern, map[string]bool{
		"model.language_model.layers.0.self_attn.q_proj":                    true,
		"model.language_model.layers.12.mlp.down_proj":                      true,
		"model.vision_tower.vision_model.encoder.layers.0.self_attn.q_proj": false,
		"model.multi_modal_projector.mm_input_projection":                   false,
		"model.language_model.layers.0.self_attn.q_norm":                    false,
	})
	// whet's own adapter loader (whet chat --adapter) reads the export
	// back onto the multimodal base: its keys and pattern, the run's logits.
	back, err := LoadSource(base, peft, "", "reloaded")
	if err != nil {
		t.Fatalf("reloading the PEFT export: %v", err)
	}
	defer back.Close()
	if got := whetLogits(t, back.Model, transformersInputs[0]); !slices.Equal(got, want) {
		t.Errorf("the reloaded PEFT export's logits differ from the run's")
	}

	merged := filepath.Join(tmp, "merged")
	if err := Run(Options{RunDir: run, Format: "merged", Quant: "bf16", OutDir: merged}, nil); err != nil {
		t.Fatal(err)
	}
	checkMergedLike(t, base, merged, src, want)
	out, _ := safetensors.OpenDir(merged)
	v, err := out.Float32("model.vision_tower.vision_model.post_layernorm.weight")
	out.Close()
	if err != nil || !slices.Equal(v, visionNorm) {
		t.Errorf("vision tower tensor %v (%v)", v, err)
	}

	gg := filepath.Join(tmp, "gguf")
	if err := Run(Options{RunDir: run, Format: "gguf", Quant: "f16", OutDir: gg}, nil); err != nil {
		t.Fatal(err)
	}
	c := &greedyCase{name: "gemma3-multimodal/f16", quant: "f16", prompts: [][]int32{{45, 300, 12, 7, 99, 410, 3}}, src: src,
		path: filepath.Join(gg, "model.gguf"), ref: src.Model}
	replies := runLlama(t, []llamaJob{{Model: c.path, Greedy: c.prompts, MaxTokens: 12}})
	checkGreedy(t, c, replies[0], 12)
}

// TestGGUFRefusesWhatLlamaCppComputesOtherwise: configs whose llama.cpp
// graph would not compute what whet (and transformers) compute are refused
// with the reason, not written.
func TestGGUFRefusesWhatLlamaCppComputesOtherwise(t *testing.T) {
	tmp := t.TempDir()
	for _, c := range []struct {
		name, family string
		edit         func(map[string]any)
		want         string
	}{
		{"qwen3 sliding window", "qwen3", func(c map[string]any) {
			c["use_sliding_window"], c["sliding_window"], c["max_window_layers"] = true, 4, 1
		}, "sliding window"},
		{"gemma3 query_pre_attn_scalar", "gemma3", func(c map[string]any) { c["query_pre_attn_scalar"] = 32 }, "query_pre_attn_scalar"},
		{"gemma3 attention soft-cap", "gemma3", func(c map[string]any) { c["attn_logit_softcapping"] = 50.0 }, "soft-cap"},
		{"gemma2 without soft-caps", "gemma2", func(c map[string]any) { c["final_logit_softcapping"] = nil }, "soft-caps"},
		{"gemma2 untied", "gemma2", func(c map[string]any) { c["tie_word_embeddings"] = false }, "tie_word_embeddings"},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := filepath.Join(tmp, strings.ReplaceAll(c.name, " ", "-"))
			base := makeFamilyModel(t, filepath.Join(dir, "base"), c.family)
			var cfg map[string]any
			if err := json.Unmarshal([]byte(familyConfigs[c.family]), &cfg); err != nil {
				t.Fatal(err)
			}
			c.edit(cfg)
			writeRandomModel(t, base, jsonString(t, cfg))
			run := makeFullRun(t, filepath.Join(dir, "run"), base)
			err := Run(Options{RunDir: run, Format: "gguf", Quant: "f16", OutDir: filepath.Join(dir, "out")}, nil)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("got %v, want an error naming %q", err, c.want)
			}
		})
	}
}
