package vision

import (
	"bytes"
	"strings"
	"testing"
)

func TestParseContent(t *testing.T) {
	parts, err := ParseContent([]any{
		map[string]any{"type": "text", "text": "Compare "},
		map[string]any{"type": "image", "path": "a.png"},
		map[string]any{"type": "image"},
		map[string]any{"type": "image_url", "image_url": map[string]any{"url": "data:image/png;base64,AAEC"}},
		map[string]any{"type": "image", "image": map[string]any{"bytes": []byte{1, 2}, "path": "b.png"}},
		map[string]any{"type": "image", "url": "file:///data/c.jpg"},
	})
	if err != nil {
		t.Fatal(err)
	}
	if parts[0].Text != "Compare " || parts[0].IsImage() {
		t.Errorf("text part: %+v", parts[0])
	}
	if r := parts[1].Image; r.Path != "a.png" || r.Placeholder {
		t.Errorf("path part: %+v", r)
	}
	if r := parts[2].Image; !r.Placeholder {
		t.Errorf("placeholder: %+v", r)
	}
	if r := parts[3].Image; !bytes.Equal(r.Bytes, []byte{0, 1, 2}) {
		t.Errorf("data URL: %+v", r)
	}
	if r := parts[4].Image; r.Path != "b.png" || !bytes.Equal(r.Bytes, []byte{1, 2}) {
		t.Errorf("struct: %+v", r)
	}
	if r := parts[5].Image; r.Path != "/data/c.jpg" {
		t.Errorf("file URL: %+v", r)
	}
	for _, tc := range []struct {
		v    any
		want string
	}{
		{[]any{map[string]any{"type": "image", "url": "https://x.invalid/a.png"}}, "part 0: type image: \"url\": https://x.invalid/a.png: whet does not download images"},
		{[]any{map[string]any{"type": "audio"}}, `part 0: type "audio" is not supported`},
		{[]any{map[string]any{"text": "no type"}}, `part 0: no "type"`},
		{[]any{"bare"}, "part 0: want an object, got a string"},
		{[]any{map[string]any{"type": "image", "image": map[string]any{"bytes": "%%%"}}}, "not base64"},
		{[]any{map[string]any{"type": "image", "image": map[string]any{}}}, `needs "bytes" or "path"`},
		{[]any{map[string]any{"type": "image_url", "image_url": map[string]any{"url": "data:image/png,raw"}}}, "must be base64"},
		{nil, "content is null"},
		{[]any{map[string]any{"type": "image", "path": "s3://bucket/a.png"}}, `part 0: type image: "path": s3://bucket/a.png: a s3:// URL; whet reads images from files`},
		{[]any{map[string]any{"type": "image_url", "image_url": map[string]any{"url": "data:;base64,"}}}, "type image_url: the data: URL holds no bytes"},
		{[]any{map[string]any{"type": "image", "url": "file://"}}, "file:// URL without a path"},
	} {
		if _, err := ParseContent(tc.v); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: %v, want %q", tc.v, err, tc.want)
		}
	}
}
