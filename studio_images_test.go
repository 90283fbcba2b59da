package main

import (
	"context"
	"image"
	"image/color"
	"image/png"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"whet/datasets"
	"whet/datasets/tokenizer"
	"whet/engine"
	"whet/tui"
	"whet/tui/components/imageview"
)

// writeShapePNG writes a w×h PNG, red on its left half, blue on the right.
func writeShapePNG(t *testing.T, path string, w, h int) {
	t.Helper()
	img := image.NewNRGBA(image.Rect(0, 0, w, h))
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			c := color.NRGBA{200, 30, 30, 255}
			if x >= w/2 {
				c = color.NRGBA{30, 30, 200, 255}
			}
			img.Set(x, y, c)
		}
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := png.Encode(f, img); err != nil {
		t.Fatal(err)
	}
}

// TestStudioPreviewOfImageData: the studio's previewer shows an image
// dataset (which the loader refuses) row by row with its images, a large
// one shrunk, a missing one as its row, field and file, and the refusal.
func TestStudioPreviewOfImageData(t *testing.T) {
	dir := t.TempDir()
	writeShapePNG(t, filepath.Join(dir, "img", "wide.png"), 800, 400)
	data := filepath.Join(dir, "data.jsonl")
	rows := `{"messages": [{"role": "user", "content": [{"type": "image", "path": "img/wide.png"}, {"type": "text", "text": "What is this?"}]}, {"role": "assistant", "content": "Red, then blue."}]}
{"messages": [{"role": "user", "content": [{"type": "image", "path": "img/missing.png"}, {"type": "text", "text": "And this?"}]}, {"role": "assistant", "content": "Nothing."}]}
`
	if err := os.WriteFile(data, []byte(rows), 0o644); err != nil {
		t.Fatal(err)
	}
	model, _ := filepath.Abs("testdata/tiny-llama")
	cfg := engine.RunConfig{Model: model}
	cfg.Data.Path = data
	pv, err := (studioPreviewer{}).Preview(context.Background(), cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(pv.Unusable, "the model tiny-llama is a text model") || pv.Stats.Rows != 2 || len(pv.Examples) != 2 || len(pv.Images) != 2 {
		t.Fatalf("preview = unusable %q, stats %+v, %d examples, %d image lists", pv.Unusable, pv.Stats, len(pv.Examples), len(pv.Images))
	}
	want := []tui.Segment{{Text: "user: [image] What is this?\n", Masked: true}, {Text: "assistant: Red, then blue."}}
	if len(pv.Examples[0]) != 2 || pv.Examples[0][0] != want[0] || pv.Examples[0][1] != want[1] {
		t.Errorf("example 1 = %+v, want %+v", pv.Examples[0], want)
	}
	im := pv.Images[0][0]
	if im.Err != "" || im.Img == nil || im.Img.W != 320 || im.Img.H != 160 || im.Info != "[image: img/wide.png 800×400 rgb]" {
		t.Errorf("image 1: %q %q %v", im.Info, im.Err, im.Img != nil)
	} else if o := 3 * (80*320 + 300); im.Img.Pix[o+2] < 150 || im.Img.Pix[o] > 80 { // the right half stays blue
		t.Errorf("shrunk image lost its colours: %v", im.Img.Pix[o:o+3])
	}
	bad := pv.Images[1][0]
	if bad.Img != nil || !strings.Contains(bad.Err, `data.jsonl:2: field "messages[0].content[0]": image img/missing.png:`) {
		t.Errorf("missing image: %q", bad.Err)
	}

	// A text file's loader error is not turned into an image preview.
	text := filepath.Join(dir, "text.jsonl")
	if err := os.WriteFile(text, []byte(`{"messages": "not a list"}`+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg.Data.Path = text
	if _, err := (studioPreviewer{}).Preview(context.Background(), cfg, nil); err == nil {
		t.Error("a broken text file previewed without an error")
	}
}

// TestStudioChatWithImage: the studio's chat opens a Gemma 3 vision run
// with its tower; /image's check processes the file, a missing file is
// named, and a turn carrying the image is answered through the image API.
// A text-only model says it has no vision tower.
func TestStudioChatWithImage(t *testing.T) {
	model := gemma3ChatModel(t)
	run := t.TempDir()
	if err := os.Symlink(model, filepath.Join(run, "model")); err != nil {
		t.Fatal(err)
	}
	cfg := engine.RunConfig{Backend: "cpu", Method: "full"}
	cfg.Data.Template = "gemma-3"
	s, err := (studioChatter{}).OpenChat(context.Background(), run, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ic, ok := s.(tui.ImageChat)
	if !ok {
		t.Fatal("the studio's chat session cannot take images")
	}
	img := filepath.Join(model, "look.png")
	if err := ic.CheckImage(img); err != nil {
		t.Fatalf("CheckImage(%s): %v", img, err)
	}
	if err := ic.CheckImage(filepath.Join(model, "missing.png")); err == nil || !strings.Contains(err.Error(), "missing.png") {
		t.Errorf("a missing image: %v", err)
	}
	o := engine.SampleOptions{MaxNewTokens: 3, Temperature: 0}
	turns := []tui.ChatTurn{{Role: "user", Content: "what is this?", Images: []string{img}}}
	withImage, err := s.Generate(context.Background(), turns, o, false, func(string) {})
	if err != nil || withImage.Tokens == 0 {
		t.Fatalf("answer with an image: %+v, %v", withImage, err)
	}
	// The turn's images are read by Generate (a missing one fails it).
	turns[0].Images = []string{filepath.Join(model, "missing.png")}
	if _, err := s.Generate(context.Background(), turns, o, false, func(string) {}); err == nil || !strings.Contains(err.Error(), "missing.png") {
		t.Errorf("a turn with a missing image answered: %v", err)
	}

	text := t.TempDir()
	abs, _ := filepath.Abs("testdata/tiny-gemma3")
	if err := os.Symlink(abs, filepath.Join(text, "model")); err != nil {
		t.Fatal(err)
	}
	cfg.Data.Template = ""
	ts, err := (studioChatter{}).OpenChat(context.Background(), text, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer ts.Close()
	if err := ts.(tui.ImageChat).CheckImage(img); err == nil || !strings.Contains(err.Error(), "has no vision tower") {
		t.Errorf("a text-only model should say it has no vision tower: %v", err)
	}
}

// TestStudioPreviewOfVisionRun: with a Gemma 3 vision model the preview
// reads the images as training will: the tokenized example and its image,
// nothing refused.
func TestStudioPreviewOfVisionRun(t *testing.T) {
	model := gemma3ChatModel(t)
	dir := t.TempDir()
	writeShapePNG(t, filepath.Join(dir, "a.png"), 40, 20)
	data := filepath.Join(dir, "data.jsonl")
	row := `{"messages": [{"role": "user", "content": [{"type": "image", "path": "a.png"}, {"type": "text", "text": "What is this?"}]}, {"role": "assistant", "content": "Red and blue."}]}` + "\n"
	if err := os.WriteFile(data, []byte(row+row), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := engine.RunConfig{Model: model, Method: "lora"}
	cfg.Data.Path, cfg.Data.Template, cfg.Data.MaxLength = data, "gemma-3", 256
	pv, err := (studioPreviewer{}).Preview(context.Background(), cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	if pv.Unusable != "" || len(pv.Examples) == 0 || len(pv.Images) == 0 || len(pv.Images[0]) != 1 || pv.Stats.Tokens == 0 {
		t.Fatalf("preview: unusable %q, %d examples, images %v, stats %+v", pv.Unusable, len(pv.Examples), pv.Images, pv.Stats)
	}
	if im := pv.Images[0][0]; im.Img == nil || im.Img.W != 40 || im.Info != "[image: a.png 40×20 rgb]" {
		t.Errorf("image: %q %q", im.Info, im.Err)
	}
	var text strings.Builder
	for _, s := range pv.Examples[0] {
		text.WriteString(s.Text)
	}
	if !strings.Contains(text.String(), "What is this?") || !strings.Contains(text.String(), "Red and blue.") {
		t.Errorf("example text: %q", text.String())
	}
}

// TestSegmentsFoldImageTokenRuns: in a sequence with images a run of one
// token (the image tokens) shows once with its count; text sequences are
// decoded as they are.
func TestSegmentsFoldImageTokenRuns(t *testing.T) {
	tok, err := tokenizer.Load("testdata/tiny-llama")
	if err != nil {
		t.Fatal(err)
	}
	ids := []int32{40, 41}
	for i := 0; i < 12; i++ {
		ids = append(ids, 50)
	}
	ids = append(ids, 42)
	labels := make([]int32, len(ids))
	for i := range labels {
		labels[i] = datasets.IgnoreIndex
	}
	seq := datasets.Sequence{Tokens: ids, Labels: labels}
	plain := segments(tok, seq)
	seq.Images = []datasets.BatchImage{{}}
	folded := segments(tok, seq)
	one := tok.Decode([]int{50}, false)
	want := tok.Decode([]int{40, 41}, false) + one + "×12" + tok.Decode([]int{42}, false)
	if len(folded) != 1 || folded[0].Text != want || !folded[0].Masked {
		t.Errorf("folded = %+v, want %q", folded, want)
	}
	if len(plain) != 1 || strings.Contains(plain[0].Text, "×") || strings.Count(plain[0].Text, one) < 12 {
		t.Errorf("a text sequence should not be folded: %+v", plain)
	}
}

// TestShowRowProtocols: whet images --show draws with kitty graphics,
// iTerm2 inline images, half blocks, or not at all (text), as the terminal
// allows.
func TestShowRowProtocols(t *testing.T) {
	dir := t.TempDir()
	writeShapePNG(t, filepath.Join(dir, "a.png"), 40, 20)
	data := filepath.Join(dir, "data.jsonl")
	row := `{"messages": [{"role": "user", "content": [{"type": "image", "path": "a.png"}, {"type": "text", "text": "?"}]}, {"role": "assistant", "content": "!"}]}` + "\n"
	if err := os.WriteFile(data, []byte(row), 0o644); err != nil {
		t.Fatal(err)
	}
	rows, _, err := datasets.ReadImageRows(data)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		p          imageview.Protocol
		want, dont string
	}{
		{imageview.Kitty, "\x1b_Ga=T,U=1,f=100,t=d,i=1,c=20,r=5,q=2,", "▀"},
		{imageview.ITerm2, "\x1b]1337;File=name=YS5wbmc=;", "▀"},
		{imageview.Blocks, "▀", "\x1b_G"},
		{imageview.Text, "(not drawn: NO_COLOR is set;", "▀"},
	} {
		var out strings.Builder
		if err := showRow(&out, data, rows, 1, 20, tc.p, "NO_COLOR is set"); err != nil {
			t.Fatalf("%v: %v", tc.p, err)
		}
		s := out.String()
		if !strings.HasPrefix(s, data+":1: messages[0].content[0]: [image: a.png 40×20 rgb]\n") || !strings.Contains(s, tc.want) || strings.Contains(s, tc.dont) {
			t.Errorf("%v: %q", tc.p, s[:min(len(s), 300)])
		}
		if tc.p == imageview.Kitty && strings.Count(s, "\U0010EEEE") != 20*5 {
			t.Errorf("kitty: %d placeholder cells, want 20×5", strings.Count(s, "\U0010EEEE"))
		}
	}
}

// The preview of preference data says which example is a pair's chosen
// answer and which its rejected one: they were shown as three plain
// examples, so the rejected "No." looked like an answer to learn.
func TestStudioPreviewLabelsPreferencePairs(t *testing.T) {
	cfg := engine.RunConfig{Model: absPath(t, "testdata/tiny-llama"), Method: "dpo",
		Data: engine.DataConfig{Path: absPath(t, "testdata/datasets/preference.jsonl"), MaxLength: 128}}
	pv, err := (studioPreviewer{}).Preview(context.Background(), cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"chosen", "rejected", "chosen"}; !reflect.DeepEqual(pv.Labels, want) || len(pv.Examples) != 3 {
		t.Errorf("labels %q for %d examples, want %q", pv.Labels, len(pv.Examples), want)
	}
	cfg.Method, cfg.Data.Path = "lora", absPath(t, "testdata/datasets/tiny-chat.jsonl")
	if pv, err := (studioPreviewer{}).Preview(context.Background(), cfg, nil); err != nil || pv.Labels != nil {
		t.Errorf("chat data: labels %q, %v; want none", pv.Labels, err)
	}
}

func absPath(t *testing.T, p string) string {
	t.Helper()
	a, err := filepath.Abs(p)
	if err != nil {
		t.Fatal(err)
	}
	return a
}
