package datasets

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzImageRows feeds arbitrary JSONL to the multimodal row reader: it
// must never panic, every problem must name the file, and every image it
// finds must have a source (placeholders bound or refused).
func FuzzImageRows(f *testing.F) {
	f.Add([]byte(`{"messages": [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "hi"}]}], "images": ["a.png"]}`))
	f.Add([]byte(`{"conversations": [{"from": "human", "value": [{"type": "image", "path": "x.png"}]}], "image": {"bytes": "iVBORw0KGgo=", "path": "y.png"}}`))
	f.Add([]byte(`{"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}]}]}` + "\n" + `{"images": 3}`))
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, data []byte) {
		path := filepath.Join(dir, "fuzz.jsonl")
		if err := os.WriteFile(path, data, 0o644); err != nil {
			t.Fatal(err)
		}
		rows, bad, err := ReadImageRows(path)
		if err != nil {
			if !strings.Contains(err.Error(), "fuzz.jsonl") {
				t.Fatalf("file error without the file's name: %v", err)
			}
			return
		}
		for _, b := range bad {
			if !strings.HasPrefix(b.Error(), path) {
				t.Fatalf("row error without a location: %q", b.Error())
			}
		}
		for _, r := range rows {
			for _, im := range r.Images {
				if im.Ref.Placeholder || (im.Ref.Path == "" && len(im.Ref.Bytes) == 0) {
					t.Fatalf("%s %s: image without a source: %+v", r.Loc, im.Field, im.Ref)
				}
			}
		}
	})
}
