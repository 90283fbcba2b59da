package engine_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"whet/engine"
)

// TestGemma3ImageProcessor: a folder without preprocessor_config.json gets
// the released defaults at the tower's size; a file is read, and training
// refuses one whose size is not the tower's or that turns pan-and-scan on,
// naming the file; chat (LoadGemma3ImageProcessor) takes pan-and-scan.
func TestGemma3ImageProcessor(t *testing.T) {
	v := &engine.Gemma3VisionConfig{ImageSize: 64, PatchSize: 16, Channels: 3}
	write := func(t *testing.T, body string) string {
		dir := t.TempDir()
		if body != "" {
			if err := os.WriteFile(filepath.Join(dir, "preprocessor_config.json"), []byte(body), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		return dir
	}
	t.Run("defaults", func(t *testing.T) {
		p, err := engine.Gemma3ImageProcessor(write(t, ""), v)
		if err != nil || p.Size != 64 || p.PanAndScan {
			t.Fatalf("got %+v, %v; want the defaults at 64 pixels", p, err)
		}
	})
	t.Run("file", func(t *testing.T) {
		p, err := engine.Gemma3ImageProcessor(write(t, `{"image_processor_type": "Gemma3ImageProcessor", "size": {"height": 64, "width": 64}, "image_mean": [0.25, 0.5, 0.5]}`), v)
		if err != nil || p.Size != 64 || p.Normalize.Mean[0] != 0.25 {
			t.Fatalf("got %+v, %v; want the file's mean", p, err)
		}
	})
	for name, c := range map[string]struct{ body, want string }{
		"size":         {`{"image_processor_type": "Gemma3ImageProcessor", "size": {"height": 32, "width": 32}}`, "size 32, but the vision tower takes 64×64 images"},
		"pan and scan": {`{"image_processor_type": "Gemma3ImageProcessor", "size": {"height": 64, "width": 64}, "do_pan_and_scan": true}`, "do_pan_and_scan is on, which whet does not train with yet"},
		"not gemma 3":  {`{"image_processor_type": "MllamaImageProcessor"}`, "is not Gemma 3's"},
	} {
		t.Run(name, func(t *testing.T) {
			dir := write(t, c.body)
			_, err := engine.Gemma3ImageProcessor(dir, v)
			if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), filepath.Join(dir, "preprocessor_config.json")) {
				t.Fatalf("error %v, want the file's path and %q", err, c.want)
			}
		})
	}
	t.Run("chat takes pan and scan", func(t *testing.T) {
		p, err := engine.LoadGemma3ImageProcessor(write(t, `{"image_processor_type": "Gemma3ImageProcessor", "size": {"height": 64, "width": 64}, "do_pan_and_scan": true}`), v)
		if err != nil || !p.PanAndScan || p.Size != 64 {
			t.Fatalf("got %+v, %v; want pan-and-scan on at 64 pixels", p, err)
		}
	})
}
