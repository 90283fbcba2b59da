package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"whet/datasets"
	"whet/datasets/vision"
	"whet/engine"
	"whet/engine/chat"
	"whet/engine/cpu"
	"whet/tui"
)

// TestStudioChatMllama: the studio's chat opens a Llama 3.2 Vision LoRA run
// (the base folder and the run's adapter) through chat.MllamaSession;
// /image's check processes the file and names a missing one; both sides
// answer a turn with the image as MllamaSession does (the tuned side with
// the adapter, the base without), one after the other (no GenerateBoth);
// a text-only turn is answered too.
func TestStudioChatMllama(t *testing.T) {
	model, adapter, img := mllamaChatFolder(t)
	run := t.TempDir()
	if err := os.Rename(adapter, engine.RunDir(run).Adapter()); err != nil {
		t.Fatal(err)
	}
	cfg := engine.RunConfig{Backend: "cpu", Method: "lora", Model: model}
	s, err := (studioChatter{}).OpenChat(context.Background(), run, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if !s.HasTuned() {
		t.Fatal("the run's adapter was not loaded")
	}
	if _, ok := s.(tui.BothChat); ok {
		t.Error("the Mllama chat claims to answer both sides in one batch")
	}
	ic, ok := s.(tui.ImageChat)
	if !ok {
		t.Fatal("the studio's Mllama chat cannot take images")
	}
	if err := ic.CheckImage(img); err != nil {
		t.Fatalf("CheckImage(%s): %v", img, err)
	}
	if err := ic.CheckImage(filepath.Join(model, "missing.png")); err == nil || !strings.Contains(err.Error(), "missing.png") {
		t.Errorf("a missing image: %v", err)
	}
	ref, err := chat.OpenMllama(cpu.New(), chat.Options{ModelDir: model, AdapterDir: engine.RunDir(run).Adapter()})
	if err != nil {
		t.Fatal(err)
	}
	defer ref.Close()
	im, err := ref.ProcessImage(img)
	if err != nil {
		t.Fatal(err)
	}
	o := engine.SampleOptions{MaxNewTokens: 5, Temperature: 0}
	turns := []tui.ChatTurn{{Role: "user", Content: "what is this?", Images: []string{img}}}
	msgs := []datasets.Message{{Role: "user", Content: "what is this?", Parts: []datasets.ContentPart{{Type: "image"}, {Type: "text", Text: "what is this?"}}}}
	for _, tuned := range []bool{false, true} {
		got, err := s.Generate(context.Background(), turns, o, tuned, func(string) {})
		if err != nil {
			t.Fatal(err)
		}
		want, err := ref.Generate(context.Background(), msgs, []*vision.MllamaOutput{im}, o, tuned, nil)
		if err != nil {
			t.Fatal(err)
		}
		if got.Text != want.Text || got.Tokens != want.Tokens {
			t.Errorf("tuned %v: studio %q (%d tokens), MllamaSession %q (%d)", tuned, got.Text, got.Tokens, want.Text, want.Tokens)
		}
	}
	turns[0].Images = []string{filepath.Join(model, "missing.png")}
	if _, err := s.Generate(context.Background(), turns, o, false, func(string) {}); err == nil || !strings.Contains(err.Error(), "missing.png") {
		t.Errorf("a turn with a missing image answered: %v", err)
	}
	if r, err := s.Generate(context.Background(), []tui.ChatTurn{{Role: "user", Content: "hi"}}, o, true, func(string) {}); err != nil || r.Tokens == 0 {
		t.Errorf("a text-only turn: %+v, %v", r, err)
	}
}
