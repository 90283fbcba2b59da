package main

import (
	"bytes"
	"image"
	"image/color"
	"image/png"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestImagesCommand checks a small multimodal data file: a good PNG, a
// 16-bit X-ray-like PNG, a missing file and a truncated one.
func TestImagesCommand(t *testing.T) {
	dir := t.TempDir()
	for _, name := range []string{"rgb8_700x150.png", "gray16_64x48.png"} {
		data, err := os.ReadFile(filepath.Join("datasets/vision/testdata", name))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
		if name == "gray16_64x48.png" {
			if err := os.WriteFile(filepath.Join(dir, "cut.png"), data[:len(data)-30], 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	// A 12-bit X-ray in a 16-bit PNG: its high byte is nearly black.
	xray := image.NewGray16(image.Rect(0, 0, 40, 30))
	for i := 0; i < 40*30; i++ {
		xray.SetGray16(i%40, i/40, color.Gray16{Y: uint16(i * 3 % 4096)})
	}
	var buf bytes.Buffer
	if err := png.Encode(&buf, xray); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "xray12.png"), buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	row := func(img string) string {
		return `{"messages": [{"role": "user", "content": [{"type": "image", "path": "` + img + `"}, {"type": "text", "text": "Findings?"}]}, {"role": "assistant", "content": "Normal."}]}`
	}
	data := filepath.Join(dir, "xrays.jsonl")
	lines := []string{row("rgb8_700x150.png"), row("gray16_64x48.png"), row("missing.png"), row("cut.png"), row("xray12.png")}
	if err := os.WriteFile(data, []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	code, out, errs := runCLI(t, "images", "--processor", "mllama", data)
	if code != 1 || !strings.Contains(errs, "2 problem(s) with images in ") {
		t.Errorf("exit %d, stderr %q", code, errs)
	}
	for _, want := range []string{
		"xrays.jsonl: 5 rows, 5 with images; 5 images, 3 readable\n",
		"png I;16 16-bit: 2, png RGB 8-bit: 1\n",
		"2 are 16-bit grayscale: whet keeps their high byte",
		"1 of those use 12 bits or fewer",
		"MllamaImageProcessor:\n  1×1 tiles of 560: 2, 1×2 tiles of 560: 1\n",
		`xrays.jsonl:3: field "messages[0].content[0]": image missing.png: `,
		`xrays.jsonl:4: field "messages[0].content[0]": `,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if i, j := strings.Index(out, "xrays.jsonl:3:"), strings.Index(out, "xrays.jsonl:4:"); i < 0 || j < i {
		t.Errorf("problems not in file order:\n%s", out)
	}

	// A model's preprocessor_config.json; all images readable: exit 0.
	cfg := filepath.Join(dir, "preprocessor_config.json")
	if err := os.WriteFile(cfg, []byte(`{"image_processor_type": "Gemma3ImageProcessor", "do_pan_and_scan": true, "pan_and_scan_min_crop_size": 64}`), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(data, []byte(lines[0]+"\n"+lines[1]+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	code, out, errs = runCLI(t, "images", "--processor", dir, data) // the folder holding preprocessor_config.json
	if code != 0 || errs != "" || !strings.Contains(out, "Gemma3ImageProcessor:\n  the image alone (no pan-and-scan crops): 1, the image and 4 crops: 1\n") {
		t.Errorf("exit %d, stderr %q, output:\n%s", code, errs, out)
	}
	code, out, errs = runCLI(t, "images", "--show", "2", "--cols", "16", data)
	if code != 0 || errs != "" {
		t.Fatalf("--show: exit %d, stderr %q", code, errs)
	}
	if first, art, _ := strings.Cut(out, "\n"); !strings.HasSuffix(first, `: messages[0].content[0]: [image: gray16_64x48.png 64×48 gray16]`) ||
		strings.Count(art, "\x1b[0m\n") != 6 || strings.Count(art, "▀") != 16*6 {
		t.Errorf("--show output:\n%q", out)
	}
	if code, _, errs := runCLI(t, "images", "--show", "9", data); code != 1 || !strings.Contains(errs, "no row 9 with images") {
		t.Errorf("--show of a missing row: exit %d, %q", code, errs)
	}
	if code, _, errs := runCLI(t, "images", data, "extra"); code != 1 || !strings.Contains(errs, "want one data file") {
		t.Errorf("two arguments: exit %d, %q", code, errs)
	}
}

// --processor MODEL_DIR uses the processor that model's runs use: its
// preprocessor_config.json, else the defaults at its tower's size. The
// tests' tiny vision models have no preprocessor_config.json, and whet
// images refused them ("open …/preprocessor_config.json: no such file")
// although whet train and whet chat read their images.
func TestImagesProcessorOfAModelFolder(t *testing.T) {
	for model, want := range map[string]string{
		"testdata/tiny-gemma3-vision-shapes": "one 32×32 image: 72",
		"testdata/tiny-mllama-shapes":        "2×2 tiles of 16: 72",
	} {
		code, out, errs := runCLI(t, "images", "--processor", model, "testdata/datasets/shapes/train.jsonl")
		if code != 0 || !strings.Contains(out, want) {
			t.Errorf("--processor %s: exit %d, stderr %q, want %q in:\n%s", model, code, errs, want, out)
		}
	}
	if code, _, errs := runCLI(t, "images", "--processor", "testdata/tiny-llama", "testdata/datasets/shapes/train.jsonl"); code != 1 || !strings.Contains(errs, "is not a vision model") {
		t.Errorf("--processor on a text model: exit %d, stderr %q", code, errs)
	}
}
