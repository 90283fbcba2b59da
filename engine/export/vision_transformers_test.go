package export

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"whet/engine"
	"whet/engine/cpu"
)

// TestWriteVisionExportInputs writes what tools/export/check_vision_exports.py
// (the GPU machine's batch tools/gpu/vision-export) loads in transformers and
// PEFT: per model (gemma3: the tiny Gemma 3 vision model of
// TestGemma3VisionExports; mllama: the tiny Llama 3.2 Vision of
// TestMllamaExports, both with LoRA on the language model and the
// projector) base/, peft/, merged-bf16/ and inputs.json (token ids, the
// image inputs as the processors lay them out, and whet's float32 logits of
// the base with the adapter applied). It writes only when
// WHET_VISION_EXPORT_DEV names a folder.
func TestWriteVisionExportInputs(t *testing.T) {
	dir := os.Getenv("WHET_VISION_EXPORT_DEV")
	if dir == "" {
		t.Skip("set WHET_VISION_EXPORT_DEV=DIR to write the vision export check's inputs (tools/gpu/vision-export)")
	}
	write := func(path string, v any) {
		js, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, js, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	exportAll := func(run, out string) {
		for _, o := range []Options{{RunDir: run, Format: "peft", OutDir: filepath.Join(out, "peft"), Force: true},
			{RunDir: run, Format: "merged", Quant: "bf16", OutDir: filepath.Join(out, "merged-bf16"), Force: true}} {
			if err := Run(o, nil); err != nil {
				t.Fatal(err)
			}
		}
	}

	g := filepath.Join(dir, "gemma3")
	if err := os.MkdirAll(g, 0o755); err != nil {
		t.Fatal(err)
	}
	base := makeGemma3VisionModel(t, filepath.Join(g, "base"))
	os.RemoveAll(filepath.Join(g, "base-text"))
	run, want := makeGemma3VisionRun(t, filepath.Join(t.TempDir(), "run"), base, true)
	exportAll(run, g)
	b, px := visionBatch()
	types := make([]int, len(b.Tokens))
	for i, id := range b.Tokens {
		if id == vImage {
			types[i] = 1
		}
	}
	write(filepath.Join(g, "inputs.json"), map[string]any{"input_ids": b.Tokens, "token_type_ids": types,
		"pixel_values": px, "pixel_shape": []int{1, 3, 32, 32}, "logits": want, "vocab": 512})

	ml := filepath.Join(dir, "mllama")
	mbase, cfg := makeMllamaModel(t, filepath.Join(ml, "base"))
	mrun, _ := makeMllamaRun(t, filepath.Join(t.TempDir(), "mrun"), mbase, cfg)
	exportAll(mrun, ml)
	m, err := engine.LoadMllama(mbase, cpu.New())
	if err != nil {
		t.Fatal(err)
	}
	defer m.Free()
	if _, err := engine.LoadMllamaAdapter(filepath.Join(mrun, "adapter"), m); err != nil {
		t.Fatal(err)
	}
	s := mllamaSamples(cfg)[0]
	res, err := m.Run([]engine.MllamaSample{s}, false, true)
	if err != nil {
		t.Fatal(err)
	}
	v := &cfg.Vision
	write(filepath.Join(ml, "inputs.json"), map[string]any{"input_ids": s.IDs, "pixel_values": s.Pixels,
		"pixel_shape":      []int{1, 1, v.MaxTiles, v.Channels, v.ImageSize, v.ImageSize},
		"aspect_ratio_ids": s.AspectRatioIDs, "aspect_ratio_mask": s.AspectRatioMask, "cross_attention_mask": s.CrossMask,
		"cross_attention_shape": []int{1, len(s.IDs), 1, v.MaxTiles}, "logits": res.Logits[0], "vocab": cfg.Text.VocabSize})
}

// TestVisionExportTransformersReference checks what
// tools/export/check_vision_exports.py wrote on the GPU machine
// (testdata/export/vision-transformers.json, committed once the batch
// tools/gpu/vision-export has run): PEFT took every adapter key and no
// other, base + PEFT computes whet's float32 logits (with the image) within
// 1e-3 of the largest logit, the merged bf16 folder within 3 %, and the
// base alone is farther (the adapter was applied). Until the file exists
// it skips.
func TestVisionExportTransformersReference(t *testing.T) {
	data, err := os.ReadFile(testdata("export/vision-transformers.json"))
	if os.IsNotExist(err) {
		t.Skip("testdata/export/vision-transformers.json not written yet (tools/gpu/vision-export)")
	}
	if err != nil {
		t.Fatal(err)
	}
	type cmp struct {
		MaxAbsDiff  float64 `json:"max_abs_diff"`
		MaxLogit    float64 `json:"max_logit"`
		ArgmaxAgree float64 `json:"argmax_agree"`
	}
	var res map[string]struct {
		Error        string   `json:"error"`
		Base         cmp      `json:"base"`
		PEFTResult   cmp      `json:"peft"`
		Merged       cmp      `json:"merged_bf16"`
		FileNotModel []string `json:"keys_in_file_not_model"`
		ModelNotFile []string `json:"keys_in_model_not_file"`
	}
	if err := json.Unmarshal(data, &res); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"gemma3", "mllama"} {
		r, ok := res[name]
		if !ok {
			t.Errorf("%s: no result", name)
			continue
		}
		if r.Error != "" {
			t.Errorf("%s: transformers/PEFT failed: %s", name, r.Error)
			continue
		}
		if len(r.FileNotModel) > 0 || len(r.ModelNotFile) > 0 {
			t.Errorf("%s: PEFT did not take adapter keys %v, wanted ones the file lacks %v", name, r.FileNotModel, r.ModelNotFile)
		}
		p := r.PEFTResult
		if p.MaxAbsDiff > 1e-3*max(1, p.MaxLogit) || p.ArgmaxAgree < 1 {
			t.Errorf("%s: base + PEFT is %g from whet's logits (largest %g, argmax agree %g)", name, p.MaxAbsDiff, p.MaxLogit, p.ArgmaxAgree)
		}
		if m := r.Merged; m.MaxAbsDiff > 0.03*max(1, m.MaxLogit) {
			t.Errorf("%s: merged bf16 is %g from whet's logits (largest %g)", name, m.MaxAbsDiff, m.MaxLogit)
		}
		if r.Base.MaxAbsDiff < 10*p.MaxAbsDiff {
			t.Errorf("%s: the base alone is %g from whet's adapted logits, base + PEFT %g: was the adapter applied?", name, r.Base.MaxAbsDiff, p.MaxAbsDiff)
		}
	}
}
