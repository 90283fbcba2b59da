package chat

import (
	"context"
	"image/color"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"whet/datasets"
	"whet/datasets/vision"
	"whet/engine"
	"whet/engine/cpu"
	"whet/engine/testmodels"
)

// A tiny random Gemma 3 vision model with tiny-gemma3's byte-level
// tokenizer plus the three image tokens (ids 512-514).
const chatVisionConfig = `{
  "architectures": ["Gemma3ForConditionalGeneration"], "model_type": "gemma3",
  "boi_token_index": 512, "eoi_token_index": 513, "image_token_index": 514, "mm_tokens_per_image": 4,
  "text_config": {"model_type": "gemma3_text", "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
    "num_attention_heads": 2, "num_key_value_heads": 1, "head_dim": 16, "vocab_size": 515, "max_position_embeddings": 512,
    "sliding_window": 3, "sliding_window_pattern": 2, "layer_types": ["sliding_attention", "full_attention"],
    "pad_token_id": null, "eos_token_id": 2},
  "vision_config": {"model_type": "siglip_vision_model", "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
    "num_attention_heads": 2, "image_size": 32, "patch_size": 8, "vision_use_head": false}
}`

func writeChatVisionModel(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	g := testmodels.Gemma3Vision{Config: chatVisionConfig, TokenizerDir: filepath.Join("..", "..", "testdata", "tiny-gemma3"), Seed: [2]uint64{5, 24}}
	if err := g.Write(dir); err != nil {
		t.Fatal(err)
	}
	return dir
}

func writeTestPNG(t *testing.T, dir string, w, h int) string {
	t.Helper()
	path := filepath.Join(dir, "look.png")
	if err := testmodels.WritePNG(path, w, h, func(x, y int) color.RGBA {
		return color.RGBA{uint8(4 * x), uint8(3 * y), 200, 255}
	}); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestChatWithImage: a conversation with an image part renders, expands to
// the image sequence, tokenizes to exactly mm_tokens_per_image image tokens
// and is answered; the reply is what greedy decoding by recomputing the
// whole prefix with that image gives.
func TestChatWithImage(t *testing.T) {
	dir := writeChatVisionModel(t)
	s, err := Open(cpu.New(), Options{ModelDir: dir, Template: "gemma-3", MaxLen: 96, Gemma3Vision: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	proc, err := s.Gemma3Processor(dir)
	if err != nil {
		t.Fatal(err)
	}
	d, err := vision.DecodeFile(writeTestPNG(t, t.TempDir(), 50, 40))
	if err != nil {
		t.Fatal(err)
	}
	im, err := proc.Process(d)
	if err != nil {
		t.Fatal(err)
	}
	msgs := []datasets.Message{{Role: "user", Content: "what is this?", Parts: []datasets.ContentPart{
		{Type: "image"}, {Type: "text", Text: "what is this?"}}}}
	p, err := s.EncodeWithImages(msgs, []*vision.Gemma3Output{im})
	if err != nil {
		t.Fatal(err)
	}
	text := s.Tok.Decode(toInts(p.IDs), false)
	if !strings.Contains(text, "<start_of_image><image_soft_token><image_soft_token><image_soft_token><image_soft_token><end_of_image>") {
		t.Fatalf("prompt %q lacks the image sequence", text)
	}
	const n = 5
	want := recomputeGreedy(t, s.Model, p, n)
	var got []int32
	g, err := s.Model.NewGenerator(len(p.IDs) + n)
	if err != nil {
		t.Fatal(err)
	}
	defer g.Free()
	if err := g.SetImages(p.Pixels, p.Images); err != nil {
		t.Fatal(err)
	}
	if got, err = g.Generate(context.Background(), p.IDs, engine.Greedy(n, nil), nil); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got, want) {
		t.Errorf("generated %v, recomputed %v", got, want)
	}
	r, err := s.GenerateWithImages(context.Background(), msgs, []*vision.Gemma3Output{im}, engine.SampleOptions{MaxNewTokens: n}, false, func(string) {})
	if err != nil {
		t.Fatal(err)
	}
	if r.Tokens == 0 {
		t.Errorf("empty reply %+v", r)
	}
	// The session's generator used the image up: a text turn after it runs as text.
	if _, err := s.Generate(context.Background(), []datasets.Message{{Role: "user", Content: "hi"}}, engine.SampleOptions{MaxNewTokens: 2}, false, func(string) {}); err != nil {
		t.Errorf("a text turn after an image turn: %v", err)
	}
	if _, err := s.GenerateWithImages(context.Background(), msgs, nil, engine.SampleOptions{MaxNewTokens: 2}, false, func(string) {}); err == nil {
		t.Error("an image part without an image was answered")
	}
}

// recomputeGreedy decodes n tokens by running the whole prefix each time.
func recomputeGreedy(t *testing.T, m *engine.Model, p *ImagePrompt, n int) []int32 {
	t.Helper()
	acts, err := m.NewActivations(len(p.IDs)+n, false)
	if err != nil {
		t.Fatal(err)
	}
	defer acts.Free()
	if err := acts.SetImages(p.Pixels, p.Images); err != nil {
		t.Fatal(err)
	}
	ids := append([]int32(nil), p.IDs...)
	V := m.Cfg.VocabSize
	for range n {
		b := &datasets.Batch{Tokens: ids, SeqStarts: []int32{0, int32(len(ids))}}
		for i := range ids {
			b.Positions = append(b.Positions, int32(i))
			b.Targets = append(b.Targets, datasets.IgnoreIndex)
		}
		logits, err := acts.Logits(b)
		if err != nil {
			t.Fatal(err)
		}
		row := logits[(len(ids)-1)*V:]
		best := 0
		for j, v := range row {
			if v > row[best] {
				best = j
			}
		}
		ids = append(ids, int32(best))
	}
	return ids[len(p.IDs):]
}
