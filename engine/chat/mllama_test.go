package chat

import (
	"context"
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

func writeChatMllama(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	if err := (testmodels.MllamaChat{TestdataDir: filepath.Join("..", "..", "testdata"), Seed: [2]uint64{9, 24}}).Write(dir); err != nil {
		t.Fatal(err)
	}
	return dir
}

// writeMllamaAdapter saves a random PEFT adapter (every language-model
// linear and the projector) for the model in modelDir.
func writeMllamaAdapter(t *testing.T, modelDir string) string {
	t.Helper()
	dir := t.TempDir()
	if err := (testmodels.MllamaChatAdapter{Seed: [2]uint64{3, 4}, Scale: 0.5}).Write(dir, modelDir); err != nil {
		t.Fatal(err)
	}
	return dir
}

// TestChatMllamaWithImage: a Llama 3.2 Vision conversation with an image
// part renders with one <|image|>, is laid out with the processor's tiles
// and cross-attention mask, and is answered with the tokens that rerunning
// the training forward for every token gives (MllamaModel.Greedy); the
// tuned model (the run's PEFT adapter on the language model and the
// projector) answers differently and the base with the adapter switched
// off answers as a session without it; text-only turns are answered too.
func TestChatMllamaWithImage(t *testing.T) {
	dir := writeChatMllama(t)
	if !IsMllama(dir) {
		t.Fatal("IsMllama false for an mllama folder")
	}
	adapter := writeMllamaAdapter(t, dir)
	s, err := OpenMllama(cpu.New(), Options{ModelDir: dir, AdapterDir: adapter, MaxLen: 128})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	plain, err := OpenMllama(cpu.New(), Options{ModelDir: dir, MaxLen: 128})
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	if !s.HasAdapter || plain.HasAdapter {
		t.Fatalf("HasAdapter %v / %v", s.HasAdapter, plain.HasAdapter)
	}
	im, err := s.ProcessImage(writeTestPNG(t, t.TempDir(), 37, 23))
	if err != nil {
		t.Fatal(err)
	}
	msgs := []datasets.Message{{Role: "user", Content: "what is this?", Parts: []datasets.ContentPart{
		{Type: "image"}, {Type: "text", Text: "what is this?"}}}}
	smp, err := s.Encode(msgs, []*vision.MllamaOutput{im})
	if err != nil {
		t.Fatal(err)
	}
	ints := make([]int, len(smp.IDs))
	for i, id := range smp.IDs {
		ints[i] = int(id)
	}
	if text := s.Tok.Decode(ints, false); !strings.Contains(text, "<|image|>what is this?<|eot_id|>") {
		t.Fatalf("prompt %q lacks the image token before the question", text)
	}
	if smp.Images != 1 || len(smp.CrossMask) != len(smp.IDs)*s.Model.Cfg.Vision.MaxTiles || smp.CrossMask[0] != 0 || smp.CrossMask[len(smp.CrossMask)-s.Model.Cfg.Vision.MaxTiles] != 1 {
		t.Fatalf("cross mask %v for %d tokens", smp.CrossMask, len(smp.IDs))
	}
	const n = 8
	answer := func(s *MllamaSession, msgs []datasets.Message, images []*vision.MllamaOutput, tuned bool) (Reply, []int32) {
		t.Helper()
		smp, err := s.Encode(msgs, images)
		if err != nil {
			t.Fatal(err)
		}
		var streamed strings.Builder
		r, err := s.Generate(context.Background(), msgs, images, engine.SampleOptions{MaxNewTokens: n}, tuned, func(p string) { streamed.WriteString(p) })
		if err != nil {
			t.Fatal(err)
		}
		if streamed.String() != r.Text {
			t.Fatalf("streamed %q, reply %q", streamed.String(), r.Text)
		}
		s.Model.SetLoRAEnabled(tuned && s.HasAdapter)
		want, err := s.Model.Greedy(smp, r.Tokens, nil)
		s.Model.SetLoRAEnabled(true)
		if err != nil {
			t.Fatal(err)
		}
		return r, want
	}
	images := []*vision.MllamaOutput{im}
	tuned, tunedIDs := answer(s, msgs, images, true)
	base, baseIDs := answer(s, msgs, images, false)
	alone, aloneIDs := answer(plain, msgs, images, false)
	for _, c := range []struct {
		name string
		r    Reply
		ids  []int32
	}{{"tuned", tuned, tunedIDs}, {"base", base, baseIDs}, {"no adapter", alone, aloneIDs}} {
		ints := make([]int, 0, len(c.ids))
		for _, id := range c.ids {
			if slices.Contains(s.text.stopIDs, id) {
				break
			}
			ints = append(ints, int(id))
		}
		if want := s.Tok.Decode(ints, true); c.r.Text != want && (c.r.Stop != "stop string" || !strings.HasPrefix(want, c.r.Text)) {
			t.Errorf("%s: reply %q, the training forward's greedy tokens decode to %q", c.name, c.r.Text, want)
		}
		t.Logf("%s: %q (%d tokens, %s)", c.name, c.r.Text, c.r.Tokens, c.r.Stop)
	}
	if base.Text != alone.Text {
		t.Errorf("base with the adapter off %q, the model without the adapter %q", base.Text, alone.Text)
	}
	if tuned.Text == base.Text {
		t.Errorf("the tuned model answers as the base: %q", tuned.Text)
	}
	// A follow-up turn re-reads the image; a text-only conversation is
	// answered without the cross-attention layers.
	follow := append(slices.Clone(msgs), datasets.Message{Role: "assistant", Content: tuned.Text}, datasets.Message{Role: "user", Content: "and?"})
	answer(s, follow, images, true)
	answer(s, []datasets.Message{{Role: "user", Content: "hi"}}, nil, true)
	// Cancelled after the first piece: the reply ends "cancelled", no error.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	r, err := s.Generate(ctx, msgs, images, engine.SampleOptions{MaxNewTokens: 50}, true, func(string) { cancel() })
	if err != nil || r.Stop != "cancelled" || r.Tokens >= 50 {
		t.Errorf("cancelled reply: %+v, %v", r, err)
	}
	if _, err := s.Generate(context.Background(), msgs, nil, engine.SampleOptions{MaxNewTokens: 2}, false, nil); err == nil || !strings.Contains(err.Error(), "1 image parts but 0 images") {
		t.Errorf("an image part without an image: %v", err)
	}
}

// TestSessionLen: Options.MaxLen when set, else defaultMaxLen within the
// model's positions; the tiny Mllama (512 positions) opens with 512.
func TestSessionLen(t *testing.T) {
	for _, c := range []struct{ maxLen, positions, want int }{
		{100, 512, 100}, {4096, 512, 4096}, {0, 512, 512}, {0, 0, defaultMaxLen}, {0, 8192, defaultMaxLen},
	} {
		if got := sessionLen(c.maxLen, c.positions); got != c.want {
			t.Errorf("sessionLen(%d, %d) = %d, want %d", c.maxLen, c.positions, got, c.want)
		}
	}
	s, err := OpenMllama(cpu.New(), Options{ModelDir: writeChatMllama(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if s.MaxLen != 512 {
		t.Errorf("the tiny Mllama opens with MaxLen %d, want its 512 positions", s.MaxLen)
	}
}
