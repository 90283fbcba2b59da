package main

import (
	"bytes"
	"context"
	"image/color"
	"path/filepath"
	"strings"
	"testing"

	"whet/datasets"
	"whet/datasets/vision"
	"whet/engine"
	"whet/engine/chat"
	"whet/engine/cpu"
	"whet/engine/testmodels"
)

// mllamaChatFolder writes the tiny chatting Llama 3.2 Vision model
// (testmodels.MllamaChat), a random PEFT adapter for it (every
// language-model linear and the projector) and a picture.
func mllamaChatFolder(t *testing.T) (model, adapter, img string) {
	t.Helper()
	model, adapter = t.TempDir(), t.TempDir()
	if err := (testmodels.MllamaChat{TestdataDir: "testdata", Seed: [2]uint64{9, 24}}).Write(model); err != nil {
		t.Fatal(err)
	}
	if err := (testmodels.MllamaChatAdapter{Seed: [2]uint64{3, 4}, Scale: 0.5}).Write(adapter, model); err != nil {
		t.Fatal(err)
	}
	img = filepath.Join(model, "look.png")
	if err := testmodels.WritePNG(img, 40, 30, func(x, y int) color.RGBA {
		return color.RGBA{uint8(6 * x), uint8(8 * y), 90, 255}
	}); err != nil {
		t.Fatal(err)
	}
	return model, adapter, img
}

// whet chat on Llama 3.2 Vision: --image with --prompt answers with the
// image (the reply is engine/chat's MllamaSession's for the same
// conversation), --compare prints the base's and the tuned model's answers,
// and /image PATH attaches an image in the interactive chat (a missing
// file is reported and the chat goes on).
func TestChatMllamaImage(t *testing.T) {
	model, adapter, img := mllamaChatFolder(t)
	s, err := chat.OpenMllama(cpu.New(), chat.Options{ModelDir: model, AdapterDir: adapter})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	im, err := s.ProcessImage(img)
	if err != nil {
		t.Fatal(err)
	}
	msgs := []datasets.Message{{Role: "user", Content: "what is this?", Parts: []datasets.ContentPart{{Type: "image"}, {Type: "text", Text: "what is this?"}}}}
	want := map[bool]chat.Reply{}
	for _, tuned := range []bool{false, true} {
		if want[tuned], err = s.Generate(context.Background(), msgs, []*vision.MllamaOutput{im}, engine.SampleOptions{MaxNewTokens: 6}, tuned, nil); err != nil {
			t.Fatal(err)
		}
	}
	if want[false].Text == want[true].Text {
		t.Fatalf("base and tuned answer alike (%q): the test cannot tell them apart", want[true].Text)
	}
	code, out, errs := runCLI(t, "chat", "--model", model, "--adapter", adapter, "--backend", "cpu", "--max-new-tokens", "6",
		"--temperature", "0", "--image", img, "--prompt", "what is this?", "--compare")
	if code != 0 {
		t.Fatalf("--image --compare: exit %d, stderr %q\n%s", code, errs, out)
	}
	if !strings.Contains(out, "[base] "+want[false].Text+"\n") || !strings.Contains(out, "[tuned] "+want[true].Text+"\n") {
		t.Errorf("whet chat printed\n%s\nwant [base] %q and [tuned] %q", out, want[false].Text, want[true].Text)
	}
	in := strings.NewReader("/image " + filepath.Join(model, "missing.png") + "\n/image " + img + "\nwhat is this?\nand now?\n\n")
	var o, e bytes.Buffer
	if code := runMain([]string{"chat", "--model", model, "--adapter", adapter, "--backend", "cpu", "--max-new-tokens", "3", "--temperature", "0"}, in, &o, &e); code != 0 {
		t.Fatalf("/image: exit %d, stderr %q\n%s", code, e.String(), o.String())
	}
	for _, w := range []string{"Llama 3.2 Vision", "image: ", "missing.png", "attached to your next message"} {
		if !strings.Contains(o.String(), w) {
			t.Errorf("chat output lacks %q:\n%s", w, o.String())
		}
	}
	if n := strings.Count(o.String(), "tok/s"); n != 2 {
		t.Errorf("%d replies, want 2:\n%s", n, o.String())
	}
}
