package vision

import (
	"strings"
	"testing"
)

// The preprocessor_config.json files of google/gemma-3-4b-it and
// meta-llama/Llama-3.2-11B-Vision-Instruct as published.
const (
	gemma3Config = `{
  "do_convert_rgb": null, "do_normalize": true, "do_pan_and_scan": null, "do_rescale": true,
  "do_resize": true, "image_mean": [0.5, 0.5, 0.5], "image_processor_type": "Gemma3ImageProcessor",
  "image_seq_length": 256, "image_std": [0.5, 0.5, 0.5], "pan_and_scan_max_num_crops": null,
  "pan_and_scan_min_crop_size": null, "pan_and_scan_min_ratio_to_activate": null,
  "processor_class": "Gemma3Processor", "resample": 2, "rescale_factor": 0.00392156862745098,
  "size": {"height": 896, "width": 896}}`
	mllamaConfig = `{
  "do_convert_rgb": true, "do_normalize": true, "do_pad": true, "do_rescale": true, "do_resize": true,
  "image_mean": [0.48145466, 0.4578275, 0.40821073], "image_processor_type": "MllamaImageProcessor",
  "image_std": [0.26862954, 0.26130258, 0.27577711], "max_image_tiles": 4, "processor_class": "MllamaProcessor",
  "resample": 2, "rescale_factor": 0.00392156862745098, "size": {"height": 560, "width": 560}}`
)

// TestReleasedConfigsAreTheDefaults: the defaults are the released files,
// so reading them changes nothing (one source of truth for both).
func TestReleasedConfigsAreTheDefaults(t *testing.T) {
	g, err := ParseProcessorConfig([]byte(gemma3Config))
	if err != nil {
		t.Fatal(err)
	}
	if g.Gemma3 == nil || *g.Gemma3 != DefaultGemma3() {
		t.Errorf("gemma3: %+v, want %+v", g.Gemma3, DefaultGemma3())
	}
	m, err := ParseProcessorConfig([]byte(mllamaConfig))
	if err != nil {
		t.Fatal(err)
	}
	if m.Mllama == nil || *m.Mllama != DefaultMllama() {
		t.Errorf("mllama: %+v, want %+v", m.Mllama, DefaultMllama())
	}
}

func TestProcessorConfigOverrides(t *testing.T) {
	c, err := ParseProcessorConfig([]byte(`{"image_processor_type": "Gemma3ImageProcessorFast", "size": {"height": 448, "width": 448},
		"resample": 3, "image_mean": 0.25, "do_pan_and_scan": true, "pan_and_scan_max_num_crops": 2}`))
	if err != nil {
		t.Fatal(err)
	}
	g := c.Gemma3
	if g.Size != 448 || g.Filter != Bicubic || g.Mean != [3]float32{0.25, 0.25, 0.25} || !g.PanAndScan || g.PanMaxCrops != 2 || g.PanMinCrop != 256 {
		t.Errorf("%+v", g)
	}
	for _, tc := range []struct{ json, want string }{
		{`{"image_processor_type": "CLIPImageProcessor"}`, `"CLIPImageProcessor" is not supported`},
		{`{}`, `"image_processor_type": want the processor's class name, got null`},
		{`{"image_processor_type": "MllamaImageProcessor", "do_pad": false}`, `"do_pad": false is not supported`},
		{`{"image_processor_type": "MllamaImageProcessor", "max_image_tiles": 0}`, `"max_image_tiles": want a whole number`},
		{`{"image_processor_type": "Gemma3ImageProcessor", "size": {"height": 896, "width": 448}}`, "equal height and width"},
		{`{"image_processor_type": "Gemma3ImageProcessor", "size": {"shortest_edge": 896}}`, "want equal height and width"},
		{`{"image_processor_type": "Gemma3ImageProcessor", "size": {"height": 1.5, "width": 1.5}}`, "size: \"height\": want a whole number"},
		{`{"image_processor_type": "Gemma3ImageProcessor", "resample": 0}`, "resample 0 is not supported"},
		{`{"image_processor_type": "Gemma3ImageProcessor", "image_std": [0.5, 0, 0.5]}`, "image_std[1] = 0 must be a positive number"},
		{`{"image_processor_type": "Gemma3ImageProcessor", "image_mean": [0.5, 0.5]}`, `"image_mean": want 3 numbers`},
		{`{"image_processor_type": "Gemma3ImageProcessor", "rescale_factor": "1/255"}`, `"rescale_factor": want a number`},
		{`[1]`, "not a JSON object"},
	} {
		if _, err := ParseProcessorConfig([]byte(tc.json)); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", tc.json, err, tc.want)
		}
	}
}
