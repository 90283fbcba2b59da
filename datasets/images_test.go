package datasets

import (
	"encoding/base64"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/parquet-go/parquet-go"
)

const visionTestdata = "vision/testdata/"

func imageFixture(t *testing.T) (dir string, png []byte) {
	t.Helper()
	png, err := os.ReadFile(visionTestdata + "rgb8_37x23.png")
	if err != nil {
		t.Fatal(err)
	}
	dir = t.TempDir()
	must(t, os.MkdirAll(filepath.Join(dir, "img"), 0o755))
	must(t, os.WriteFile(filepath.Join(dir, "img", "a.png"), png, 0o644))
	must(t, os.WriteFile(filepath.Join(dir, "img", "cut.png"), png[:len(png)/2], 0o644))
	must(t, os.WriteFile(filepath.Join(dir, "img", "photo.gif"), []byte("GIF89a\x01\x00\x01\x00"), 0o644))
	return dir, png
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// TestImageRowsJSONL: images inline in the content, placeholders bound to
// the images column, data: URLs; missing, truncated and unsupported files
// reported by line, field and file.
func TestImageRowsJSONL(t *testing.T) {
	dir, png := imageFixture(t)
	dataURL := "data:image/png;base64," + base64.StdEncoding.EncodeToString(png)
	lines := []string{
		`{"messages": [{"role": "user", "content": [{"type": "image", "path": "img/a.png"}, {"type": "text", "text": "What is this?"}]}, {"role": "assistant", "content": "A pattern."}]}`,
		`{"messages": [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Describe."}]}, {"role": "assistant", "content": "Stripes."}], "images": ["img/a.png"]}`,
		`{"messages": [{"role": "user", "content": [{"type": "image", "path": "img/missing.png"}]}, {"role": "assistant", "content": "?"}]}`,
		`{"messages": [{"role": "user", "content": [{"type": "image", "image": "img/cut.png"}]}, {"role": "assistant", "content": "?"}]}`,
		`{"messages": [{"role": "user", "content": "Look"}, {"role": "assistant", "content": "ok"}], "image": "img/photo.gif"}`,
		`{"messages": [{"role": "user", "content": [{"type": "image"}, {"type": "image"}]}, {"role": "assistant", "content": "two"}], "images": ["img/a.png"]}`,
		`{"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "` + dataURL + `"}}]}, {"role": "assistant", "content": "inline"}]}`,
		`{"messages": [{"role": "user", "content": [{"type": "video", "path": "v.mp4"}]}, {"role": "assistant", "content": "no"}]}`,
		`{"conversations": [{"from": "human", "value": [{"type": "image", "path": "img/a.png"}]}, {"from": "gpt", "value": "ShareGPT"}]}`,
		`{"conversations": [{"role": "user", "content": [{"type": "image", "path": "img/a.png"}]}, {"role": "assistant", "content": "renamed list"}]}`,
	}
	path := filepath.Join(dir, "data.jsonl")
	must(t, os.WriteFile(path, []byte(strings.Join(lines, "\n")+"\n"), 0o644))

	rows, bad, err := ReadImageRows(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 8 || len(bad) != 2 {
		t.Fatalf("%d rows, %d bad: %v", len(rows), len(bad), bad)
	}
	if bad[0].Reason != ReasonImageCount || bad[0].Loc.Line != 6 || !strings.Contains(bad[0].Error(), "2 image placeholder(s) in the conversation but 1 image(s)") {
		t.Errorf("bad row 0: %v", bad[0])
	}
	if !strings.Contains(bad[1].Error(), `data.jsonl:8: field "messages[0].content": part 0: type "video" is not supported`) {
		t.Errorf("bad row 1: %v", bad[1])
	}
	if got := rows[1].Images; len(got) != 1 || got[0].Field != "messages[0].content[0] = images[0]" || got[0].Ref.Path != "img/a.png" {
		t.Errorf("placeholder binding: %+v", got)
	}
	if got := rows[4].Images; len(got) != 1 || got[0].Field != "image" {
		t.Errorf("image column: %+v", got)
	}
	if got := rows[6].Images; len(got) != 1 || got[0].Field != "conversations[0].value[0]" {
		t.Errorf("ShareGPT turn: %+v", got)
	}
	if got := rows[7].Images; len(got) != 1 || got[0].Field != "conversations[0].content[0]" {
		t.Errorf("conversations with content: %+v", got)
	}

	problems := CheckImages(path, rows, nil)
	var msgs []string
	for _, p := range problems {
		msgs = append(msgs, p.Error())
	}
	joined := strings.Join(msgs, "\n")
	for _, want := range []string{
		`data.jsonl:3: field "messages[0].content[0]": image img/missing.png:`,
		"no such file",
		`data.jsonl:4: field "messages[0].content[0]": `,
		"cut.png: truncated png",
		`data.jsonl:5: field "image": `,
		"photo.gif: unsupported image format: gif",
	} {
		if !strings.Contains(joined, want) {
			t.Errorf("problems lack %q:\n%s", want, joined)
		}
	}
	if len(problems) != 3 {
		t.Errorf("%d problems, want 3:\n%s", len(problems), joined)
	}
}

// TestTextLoaderRefusesImageParts: the format reader keeps image parts
// (Message.Parts); a run that cannot use them refuses the row by name.
func TestTextLoaderRefusesImageParts(t *testing.T) {
	rec := Record{Fields: map[string]any{"messages": []any{
		map[string]any{"role": "user", "content": []any{map[string]any{"type": "image", "path": "x.png"}}},
		map[string]any{"role": "assistant", "content": "hi"},
	}}, Loc: Location{File: "d.jsonl", Line: 1, kind: kindJSONL}}
	ex, err := ToExample(rec, FormatMessages, nil)
	if err != nil || len(ex.Messages[0].Parts) != 1 || ex.Messages[0].Parts[0].Type != "image" {
		t.Fatalf("got %+v, %v", ex, err)
	}
	rowErr := refuseImages(ex, "")
	if rowErr == nil || !strings.Contains(rowErr.Error(), "d.jsonl:1") || !strings.Contains(rowErr.Error(), "does not read images") {
		t.Errorf("got %v", rowErr)
	}
}

type pqPart struct {
	Type string  `parquet:"type"`
	Text *string `parquet:"text,optional"`
}

type pqMessage struct {
	Role    string   `parquet:"role"`
	Content []pqPart `parquet:"content,list"`
}

type pqImage struct {
	Bytes []byte  `parquet:"bytes,optional"`
	Path  *string `parquet:"path,optional"`
}

type pqRow struct {
	Messages []pqMessage `parquet:"messages,list"`
	Images   []pqImage   `parquet:"images,list"`
}

// TestImageRowsParquet: the images column holds {bytes, path} structs as
// Hugging Face datasets writes its Image feature; bytes win over the path,
// a struct with only a path is read from disk, and corrupt bytes are
// reported by row.
func TestImageRowsParquet(t *testing.T) {
	dir, png := imageFixture(t)
	s := func(v string) *string { return &v }
	user := func() pqMessage {
		return pqMessage{Role: "user", Content: []pqPart{{Type: "image"}, {Type: "text", Text: s("What is it?")}}}
	}
	answer := pqMessage{Role: "assistant", Content: []pqPart{{Type: "text", Text: s("A pattern.")}}}
	rows := []pqRow{
		{Messages: []pqMessage{user(), answer}, Images: []pqImage{{Bytes: png, Path: s("scan-001.png")}}},
		{Messages: []pqMessage{user(), answer}, Images: []pqImage{{Path: s("img/a.png")}}},
		{Messages: []pqMessage{user(), answer}, Images: []pqImage{{Bytes: png[:100], Path: s("scan-003.png")}}},
	}
	path := filepath.Join(dir, "train.parquet")
	must(t, parquet.WriteFile(path, rows))

	got, bad, err := ReadImageRows(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 || len(bad) != 0 {
		t.Fatalf("%d rows, bad %v", len(got), bad)
	}
	if im := got[0].Images[0]; len(im.Ref.Bytes) != len(png) || im.Ref.Path != "scan-001.png" {
		t.Errorf("row 1 image: path %q, %d bytes", im.Ref.Path, len(im.Ref.Bytes))
	}
	problems := CheckImages(path, got, nil)
	if len(problems) != 1 || !strings.Contains(problems[0].Error(), `train.parquet: row 3: field "messages[0].content[0] = images[0]": scan-003.png (100 embedded bytes): `) {
		t.Errorf("problems: %v", problems)
	}

	// The text reader does not mistake the image bytes for badly encoded text.
	f, err := os.Open(path)
	must(t, err)
	defer f.Close()
	st, _ := f.Stat()
	res, err := ReadParquet(f, st.Size(), path, true)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Bad) == 0 || !strings.Contains(res.Bad[0].Error(), "an image column?") {
		t.Errorf("text reader on image bytes: %v", res.Bad)
	}
}
