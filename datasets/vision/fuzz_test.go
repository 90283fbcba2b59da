package vision

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzParseContent feeds arbitrary JSON to the content parser: it must
// never panic, and what it accepts must be well formed (every part text
// or an image with a source or marked as a placeholder, no URL taken for a
// path).
func FuzzParseContent(f *testing.F) {
	for _, s := range []string{
		`"plain text"`,
		`[{"type": "text", "text": "hi"}, {"type": "image"}]`,
		`[{"type": "image", "path": "a/b.png"}, {"type": "image", "image": {"bytes": "iVBORw0KGgo=", "path": "x.png"}}]`,
		`[{"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}]`,
		`[{"type": "image_url", "image_url": "https://example.invalid/x.png"}]`,
		`[{"type": "image", "url": "file:///tmp/x.jpg"}, {"type": 3}]`,
		`[{"type": "image", "image": {"bytes": 5}}]`,
		`null`, `[[]]`, `{"type": "text"}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var v any
		if json.Unmarshal(data, &v) != nil {
			return
		}
		parts, err := ParseContent(v)
		if err != nil {
			if err.Error() == "" {
				t.Fatal("empty error")
			}
			return
		}
		for i, p := range parts {
			if !p.IsImage() {
				continue
			}
			r := p.Image
			if !r.Placeholder && r.Path == "" && len(r.Bytes) == 0 {
				t.Fatalf("part %d: image without a source: %+v", i, r)
			}
			if r.Placeholder && (r.Path != "" || len(r.Bytes) > 0) {
				t.Fatalf("part %d: placeholder with a source: %+v", i, r)
			}
			if urlScheme(r.Path) != "" {
				t.Fatalf("part %d: URL accepted as a path: %q", i, r.Path)
			}
		}
	})
}

// FuzzDecode feeds arbitrary bytes to the image decoder (with a small
// pixel limit, so a forged header cannot ask for gigabytes): it must
// never panic, and an image it accepts converts to RGB of its size under
// both alpha rules and survives both processors' resize.
func FuzzDecode(f *testing.F) {
	for _, ti := range testImages() {
		if ti.w*ti.h <= 4096 && !strings.HasSuffix(ti.name, ".ppm") {
			data, err := os.ReadFile(filepath.Join(testdata, ti.name))
			if err != nil {
				f.Fatal(err)
			}
			f.Add(data)
		}
	}
	f.Add([]byte("GIF89a"))
	f.Fuzz(func(t *testing.T, data []byte) {
		d, err := decode(data, 4096)
		if err != nil {
			return
		}
		for _, a := range []AlphaRule{AlphaDrop, AlphaOverWhite} {
			img := d.RGB(a, Gray16Clip)
			if img.W != d.Width || img.H != d.Height || len(img.Pix) != 3*d.Width*d.Height {
				t.Fatalf("RGB %dx%d with %d bytes for a %dx%d image", img.W, img.H, len(img.Pix), d.Width, d.Height)
			}
			if _, err := Resize(img, 7, 5, Bicubic); err != nil {
				t.Fatal(err)
			}
		}
		m := DefaultMllama()
		m.TileSize = 8
		// A strip far thinner than it is long can shrink to zero rows on
		// the canvas; that is the one refusal allowed.
		if _, err := m.Process(d); err != nil && !strings.Contains(err.Error(), "has no pixels") {
			t.Fatal(err)
		}
	})
}

// FuzzParseProcessorConfig: any JSON must give a processor that can run
// or an error, never a panic; an accepted processor runs on a test image.
func FuzzParseProcessorConfig(f *testing.F) {
	f.Add([]byte(gemma3Config))
	f.Add([]byte(mllamaConfig))
	f.Add([]byte(`{"image_processor_type": "Gemma3ImageProcessor", "size": {"height": 3, "width": 3}, "do_pan_and_scan": true, "pan_and_scan_min_crop_size": 1}`))
	f.Add([]byte(`{"image_processor_type": "MllamaImageProcessorPil", "max_image_tiles": 9, "size": {"height": 2, "width": 2}, "image_mean": 1e308}`))
	d := solid(23, 9, 200)
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := ParseProcessorConfig(data)
		if err != nil {
			return
		}
		switch {
		case c.Gemma3 != nil:
			g := *c.Gemma3
			if g.Size > 64 {
				g.Size = 64 // keep the fuzzer fast; the size is not what is tested
			}
			if _, err := g.Process(d); err != nil {
				t.Fatalf("accepted config fails: %v", err)
			}
		case c.Mllama != nil:
			m := *c.Mllama
			m.TileSize = min(m.TileSize, 16) // the tile count is left as parsed: it must be bounded there
			if _, err := m.Process(d); err != nil && !strings.Contains(err.Error(), "has no pixels") {
				t.Fatalf("accepted config fails: %v", err)
			}
		default:
			t.Fatal("no processor and no error")
		}
	})
}

// FuzzDecodeJPEG drives the libjpeg-compatible JPEG decoder directly (the
// fuzzer rarely gets a JPEG past image/jpeg's header check in
// FuzzDecode): it must never panic or loop, and a frame it returns has
// planes that hold its size.
func FuzzDecodeJPEG(f *testing.F) {
	for _, name := range []string{"color_37x23.jpg", "color_37x23_progressive.jpg", "color_48x40_restart.jpg", "color422_48x40.jpg", "gray_30x50_progressive.jpg"} {
		data, err := os.ReadFile(filepath.Join(testdata, name))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		fr, err := decodeJPEGFrame(data, 4096)
		if err != nil {
			return
		}
		for i, p := range fr.comps {
			if p.w > p.stride || len(p.pix) < p.hgt*p.stride {
				t.Fatalf("component %d: %dx%d samples in a plane of stride %d and %d bytes", i, p.w, p.hgt, p.stride, len(p.pix))
			}
		}
		libjpegPixels(fr, make([]uint8, 4*fr.w*fr.h))
	})
}
