package datasets_test

import (
	"bytes"
	"encoding/json"
	"image"
	"image/color"
	"image/png"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/parquet-go/parquet-go"

	"whet/datasets"
	"whet/datasets/tokenizer"
	"whet/datasets/vision"
)

// gemma3VisionTokenizer is tiny-gemma3's tokenizer with Gemma 3's three
// image tokens added (ids 512-514).
func gemma3VisionTokenizer(t testing.TB) *tokenizer.Tokenizer {
	t.Helper()
	dir := t.TempDir()
	data, err := os.ReadFile(filepath.Join("..", "testdata", "tiny-gemma3", "tokenizer.json"))
	if err != nil {
		t.Fatal(err)
	}
	var tj map[string]any
	if err := json.Unmarshal(data, &tj); err != nil {
		t.Fatal(err)
	}
	added := tj["added_tokens"].([]any)
	for i, s := range []string{"<start_of_image>", "<end_of_image>", "<image_soft_token>"} {
		added = append(added, map[string]any{"id": 512 + i, "content": s, "special": true, "normalized": false})
	}
	tj["added_tokens"] = added
	data, _ = json.Marshal(tj)
	if err := os.WriteFile(filepath.Join(dir, "tokenizer.json"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := os.ReadFile(filepath.Join("..", "testdata", "tiny-gemma3", "tokenizer_config.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "tokenizer_config.json"), cfg, 0o644); err != nil {
		t.Fatal(err)
	}
	tok, err := tokenizer.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func pngBytes(t testing.TB, w, h int) []byte {
	t.Helper()
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			img.Set(x, y, color.RGBA{uint8(7 * x), uint8(5 * y), 80, 255})
		}
	}
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func gemma3VisionOptions() *datasets.VisionOptions {
	tokens := vision.DefaultGemma3Tokens()
	tokens.SeqLen = 4
	return &datasets.VisionOptions{Model: "Gemma 3", Gemma3: &tokens, ImageToken: tokens.Image, NoLabel: []string{tokens.BOI, tokens.EOI}}
}

type visionPart struct {
	Type string  `parquet:"type"`
	Text *string `parquet:"text,optional"`
}

type visionMessage struct {
	Role    string       `parquet:"role"`
	Content []visionPart `parquet:"content,list"`
}

type visionImage struct {
	Bytes []byte  `parquet:"bytes,optional"`
	Path  *string `parquet:"path,optional"`
}

type visionRow struct {
	Messages []visionMessage `parquet:"messages,list"`
	Images   []visionImage   `parquet:"images,list"`
}

// Prepare with Options.Vision on Parquet rows whose images column holds
// {bytes, path} structs bound to {"type": "image"} placeholders: each
// image becomes Gemma 3's image sequence in the ids, no image token ever
// carries a label (train_on: all too), a corrupt image is named by row
// before tokenizing, and skip_bad_rows drops its row.
func TestPrepareVisionParquet(t *testing.T) {
	dir := t.TempDir()
	good := pngBytes(t, 20, 12)
	s := func(v string) *string { return &v }
	row := func(img visionImage, answer string) visionRow {
		return visionRow{Messages: []visionMessage{
			{Role: "user", Content: []visionPart{{Type: "image"}, {Type: "text", Text: s("What is it?")}}},
			{Role: "assistant", Content: []visionPart{{Type: "text", Text: s(answer)}}},
		}, Images: []visionImage{img}}
	}
	path := filepath.Join(dir, "train.parquet")
	if err := parquet.WriteFile(path, []visionRow{
		row(visionImage{Bytes: good, Path: s("a.png")}, "A ramp."),
		row(visionImage{Bytes: good[:60], Path: s("cut.png")}, "Broken."),
		row(visionImage{Bytes: good}, "Another ramp."),
	}); err != nil {
		t.Fatal(err)
	}
	tok := gemma3VisionTokenizer(t)
	opts := datasets.Options{Path: path, Template: "gemma-3", MaxLength: 128, Vision: gemma3VisionOptions()}
	_, err := datasets.Prepare(opts, tok)
	if err == nil || !strings.Contains(err.Error(), `train.parquet: row 2: field "messages[0].content[0] = images[0]": cut.png (60 embedded bytes)`) {
		t.Fatalf("corrupt image: %v", err)
	}
	opts.SkipBadRows, opts.TrainOn = true, "all"
	p, err := datasets.Prepare(opts, tok)
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Train) != 2 || p.Stats.BadRows != 1 || p.Stats.Images != 2 {
		t.Fatalf("%d sequences, %d bad rows, %d images; want 2, 1, 2", len(p.Train), p.Stats.BadRows, p.Stats.Images)
	}
	imageIDs := map[int32]bool{512: true, 513: true, 514: true}
	for _, seq := range p.Train {
		soft := 0
		for i, id := range seq.Tokens {
			if id == 514 {
				soft++
			}
			if imageIDs[id] && seq.Labels[i] != datasets.IgnoreIndex {
				t.Errorf("image token %d at %d carries a label", id, i)
			}
		}
		if soft != 4 || len(seq.Images) != 1 || len(seq.Images[0].Ref.Bytes) != len(good) {
			t.Errorf("%d image tokens, images %v", soft, seq.Images)
		}
		if d, err := seq.Images[0].Load(); err != nil || d.Width != 20 {
			t.Errorf("load: %v", err)
		}
	}
	// Packed into batches, the images travel with their sequences.
	for _, b := range p.TrainBatches {
		if len(b.Images) != 1 {
			t.Errorf("batch with %d images", len(b.Images))
		}
	}
}

// An images column beside plain-text messages: the images go at the start
// of the first user turn (as TRL does), and the assistant answer is still
// the only thing trained with train_on: responses.
func TestPrepareVisionImageColumn(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "p.png"), pngBytes(t, 8, 8), 0o644); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "d.jsonl")
	row := `{"messages": [{"role": "user", "content": "Describe."}, {"role": "assistant", "content": "Stripes."}], "images": ["p.png"]}` + "\n"
	if err := os.WriteFile(path, []byte(row), 0o644); err != nil {
		t.Fatal(err)
	}
	tok := gemma3VisionTokenizer(t)
	p, err := datasets.Prepare(datasets.Options{Path: path, Template: "gemma-3", MaxLength: 128, Vision: gemma3VisionOptions()}, tok)
	if err != nil {
		t.Fatal(err)
	}
	seq := p.Train[0]
	ids := make([]int, len(seq.Tokens))
	var trained []int
	for i, id := range seq.Tokens {
		ids[i] = int(id)
		if seq.Labels[i] != datasets.IgnoreIndex {
			trained = append(trained, int(id))
		}
	}
	text := tok.Decode(ids, false)
	if !strings.Contains(text, "user\n\n\n<start_of_image><image_soft_token><image_soft_token><image_soft_token><image_soft_token><end_of_image>\n\nDescribe.") {
		t.Errorf("the image is not at the start of the user turn:\n%q", text)
	}
	if got := tok.Decode(trained, false); !strings.HasPrefix(got, "Stripes.") {
		t.Errorf("trained on %q, want the answer", got)
	}
	// Too short a max_length to hold the image is refused by row.
	_, err = datasets.Prepare(datasets.Options{Path: path, Template: "gemma-3", MaxLength: 8, Vision: gemma3VisionOptions()}, tok)
	if err == nil || !strings.Contains(err.Error(), "d.jsonl:1") || !strings.Contains(err.Error(), "cuts into the row's image tokens") {
		t.Errorf("max_length through the image: %v", err)
	}
}

// FuzzPrepareVision feeds arbitrary JSONL to Prepare with Gemma 3's image
// options: it must never panic, and every sequence it makes must hold
// exactly its images' tokens, none of them with a label.
func FuzzPrepareVision(f *testing.F) {
	f.Add([]byte(`{"messages": [{"role": "user", "content": [{"type": "image", "path": "p.png"}, {"type": "text", "text": "What?"}]}, {"role": "assistant", "content": "Stripes."}]}`), false)
	f.Add([]byte(`{"messages": [{"role": "user", "content": "Look <start_of_image>"}, {"role": "assistant", "content": "x"}], "images": ["p.png", "p.png"]}`), true)
	f.Add([]byte(`{"conversations": [{"from": "human", "value": [{"type": "image"}]}, {"from": "gpt", "value": "a"}], "image": "missing.png"}`), true)
	dir := f.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "p.png"), pngBytes(f, 6, 5), 0o644); err != nil {
		f.Fatal(err)
	}
	tok := gemma3VisionTokenizer(f)
	f.Fuzz(func(t *testing.T, data []byte, skip bool) {
		path := filepath.Join(dir, "fuzz.jsonl")
		if err := os.WriteFile(path, data, 0o644); err != nil {
			t.Fatal(err)
		}
		p, err := datasets.Prepare(datasets.Options{Path: path, Template: "gemma-3", MaxLength: 64, SkipBadRows: skip, TrainOn: "all",
			Vision: gemma3VisionOptions()}, tok)
		if err != nil {
			return
		}
		for _, seq := range append(p.Train, p.Eval...) {
			soft := 0
			for i, id := range seq.Tokens {
				if id == 514 {
					soft++
				}
				if id >= 512 && id <= 514 && seq.Labels[i] != datasets.IgnoreIndex {
					t.Fatalf("image token %d at %d has a label", id, i)
				}
			}
			if soft != 4*len(seq.Images) {
				t.Fatalf("%d image tokens for %d images", soft, len(seq.Images))
			}
		}
	})
}
