package datasets

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"whet/datasets/vision"
)

// imageTemplates are the templates tools/templates/render_images.py
// renders over conversations-images.json, with the built-in family that
// must match (empty: the interpreter only).
var imageTemplates = map[string]struct{ file, builtin, bos, eos string }{
	"gemma-3":          {"templates/gemma-3.jinja", "gemma-3", "<bos>", "<end_of_turn>"},
	"llama-3.2-vision": {"../testdata/templates/llama-3.2-vision.jinja", "", "<|begin_of_text|>", "<|eot_id|>"},
}

// loadImageConversations reads conversations-images.json, whose content is
// a string or a list of parts, through vision.ParseContent and
// ContentParts, the path a multimodal data row takes.
func loadImageConversations(t *testing.T) map[string][]Message {
	t.Helper()
	data, err := os.ReadFile("../testdata/templates/conversations-images.json")
	if err != nil {
		t.Fatal(err)
	}
	var raw map[string][]struct {
		Role    string `json:"role"`
		Content any    `json:"content"`
	}
	if err := json.Unmarshal(data, &raw); err != nil {
		t.Fatal(err)
	}
	out := map[string][]Message{}
	for name, msgs := range raw {
		for i, m := range msgs {
			msg := Message{Role: m.Role}
			if s, ok := m.Content.(string); ok {
				msg.Content = s
			} else {
				parts, err := vision.ParseContent(m.Content)
				if err != nil {
					t.Fatalf("%s message %d: %v", name, i, err)
				}
				msg.Parts = ContentParts(parts)
			}
			out[name] = append(out[name], msg)
		}
	}
	return out
}

// The built-in gemma-3 family and the interpreter render content lists
// with image parts byte for byte as jinja2 renders the real Gemma 3 and
// Llama 3.2 Vision templates (testdata/templates/golden-images), errors
// included (Mllama refuses a system message next to images).
func TestImageTemplatesMatchJinjaGoldens(t *testing.T) {
	convs := loadImageConversations(t)
	checked := 0
	for name, spec := range imageTemplates {
		src, err := os.ReadFile(spec.file)
		if err != nil {
			t.Fatal(err)
		}
		interp, err := NewJinjaTemplate(string(src))
		if err != nil {
			t.Fatal(err)
		}
		renderers := map[string]*Template{"interpreter": interp}
		if spec.builtin != "" {
			b, ok := LookupTemplate(spec.builtin)
			if !ok {
				t.Fatalf("no built-in %s", spec.builtin)
			}
			renderers["built-in"] = b
		}
		dir := filepath.Join("../testdata/templates/golden-images", name)
		files, err := os.ReadDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		if len(files) != 2*len(convs) {
			t.Errorf("%s: %d goldens for %d conversations", name, len(files), len(convs))
		}
		for _, f := range files {
			file := f.Name()
			ext := filepath.Ext(file)
			base := strings.TrimSuffix(file, ext)
			gen := strings.HasSuffix(base, ".gen")
			msgs, ok := convs[strings.TrimSuffix(base, ".gen")]
			if !ok {
				t.Errorf("%s/%s: no conversation", name, file)
				continue
			}
			want, err := os.ReadFile(filepath.Join(dir, file))
			if err != nil {
				t.Fatal(err)
			}
			for rname, tpl := range renderers {
				got, err := tpl.Render(msgs, RenderOptions{AddGenerationPrompt: gen, BOS: spec.bos, EOS: spec.eos, Now: goldenNow})
				switch {
				case ext == ".err":
					if err == nil || !strings.Contains(err.Error(), strings.TrimSpace(string(want))) {
						t.Errorf("%s %s %s: want error %q, got %v", name, rname, file, want, err)
					}
				case err != nil:
					t.Errorf("%s %s %s: %v", name, rname, file, err)
				case got.Text != string(want):
					t.Errorf("%s %s %s:\n got %q\nwant %q", name, rname, file, got.Text, want)
				}
				checked++
			}
		}
	}
	if checked < 60 {
		t.Fatalf("only %d renders checked", checked)
	}
}

// The built-in gemma-3's assistant spans over image conversations equal
// the interpreter's, and each covers the reply and <end_of_turn>.
func TestImageTemplateSpans(t *testing.T) {
	convs := loadImageConversations(t)
	src, err := os.ReadFile("templates/gemma-3.jinja")
	if err != nil {
		t.Fatal(err)
	}
	interp, err := NewJinjaTemplate(string(src))
	if err != nil {
		t.Fatal(err)
	}
	builtin, _ := LookupTemplate("gemma-3")
	for name, msgs := range convs {
		b, err := builtin.Render(msgs, RenderOptions{})
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		for _, s := range b.Assistant {
			if !strings.HasSuffix(b.Text[s.Start:s.End], "<end_of_turn>") {
				t.Errorf("%s: span %q", name, b.Text[s.Start:s.End])
			}
		}
		i, err := interp.Render(msgs, RenderOptions{BOS: "<bos>", EOS: "<end_of_turn>", SpecialTokens: []string{"<bos>", "<eos>", "<start_of_turn>", "<end_of_turn>", "<start_of_image>"}})
		if err != nil {
			t.Fatalf("%s interpreter: %v", name, err)
		}
		if i.Text != b.Text || len(i.Assistant) != len(b.Assistant) || len(b.Assistant) == 0 {
			t.Errorf("%s: interpreter spans %v, built-in %v", name, pieces(i), pieces(b))
			continue
		}
		for k := range b.Assistant {
			if i.Assistant[k] != b.Assistant[k] {
				t.Errorf("%s: interpreter spans %v, built-in %v", name, pieces(i), pieces(b))
			}
		}
	}
}

// Families whose real template does not render content lists refuse them
// by name instead of printing what that template would not.
func TestBuiltinWithoutPartsRefusesContentLists(t *testing.T) {
	msgs := []Message{{Role: "user", Parts: []ContentPart{{Type: "image"}, {Type: "text", Text: "hi"}}}}
	for _, name := range []string{"llama-3.2", "chatml", "gemma-2", "qwen-3"} {
		_, err := RenderWith(name, msgs, RenderOptions{})
		if err == nil || !strings.Contains(err.Error(), "content lists (text and image parts) are not supported") {
			t.Errorf("%s: %v", name, err)
		}
	}
	if _, err := RenderWith("gemma-3", []Message{{Role: "system", Parts: []ContentPart{{Type: "image"}}}, {Role: "user", Content: "x"}}, RenderOptions{}); err == nil || !strings.Contains(err.Error(), "must start with a text part") {
		t.Errorf("gemma-3 system list without text: %v", err)
	}
}

// The rendered text hands its <start_of_image> placeholders to the
// processor's text side: one per image, in order, expanded to the full
// image sequence.
func TestGemma3RenderFeedsImageExpansion(t *testing.T) {
	msgs := loadImageConversations(t)["two_images_two_turns"]
	r, err := RenderWith("gemma-3", msgs, RenderOptions{})
	if err != nil {
		t.Fatal(err)
	}
	tok := vision.DefaultGemma3Tokens()
	if n := strings.Count(r.Text, tok.BOI); n != 3 {
		t.Fatalf("%d placeholders in %q", n, r.Text)
	}
	got, err := vision.ExpandGemma3Images(r.Text, []int{0, 0, 0}, tok)
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(got, tok.Image); n != 3*tok.SeqLen {
		t.Errorf("%d image tokens after expansion", n)
	}
	if !strings.HasPrefix(got, "<bos><start_of_turn>user\n\n\n<start_of_image><image_soft_token>") {
		t.Errorf("expansion starts %q", got[:60])
	}
	if _, err := vision.ExpandGemma3Images(r.Text, []int{0, 0}, tok); err == nil {
		t.Error("two images for three placeholders accepted")
	}
}

// DetectTemplate leaves Llama 3.2 Vision's template to the interpreter, so
// train_on: responses depends on the interpreter's marker spans for it:
// one per assistant turn, each the reply (untrimmed, as this template
// prints it) and <|eot_id|>.
func TestMllamaInterpretedSpans(t *testing.T) {
	convs := loadImageConversations(t)
	src, err := os.ReadFile("../testdata/templates/llama-3.2-vision.jinja")
	if err != nil {
		t.Fatal(err)
	}
	tpl, err := NewJinjaTemplate(string(src))
	if err != nil {
		t.Fatal(err)
	}
	opts := RenderOptions{BOS: "<|begin_of_text|>", EOS: "<|eot_id|>", Now: goldenNow,
		SpecialTokens: []string{"<|begin_of_text|>", "<|eot_id|>", "<|start_header_id|>", "<|end_header_id|>", "<|image|>"}}
	spans := 0
	for name, msgs := range convs {
		r, err := tpl.Render(msgs, opts)
		if err != nil {
			if strings.Contains(err.Error(), "incompatible with system messages") {
				continue
			}
			t.Fatalf("%s: %v", name, err)
		}
		var answers []string
		for _, m := range msgs {
			if m.Role != "assistant" {
				continue
			}
			a := m.Content
			for _, p := range m.Parts {
				a += p.Text
			}
			answers = append(answers, a)
		}
		if len(r.Assistant) != len(answers) {
			t.Errorf("%s: spans %q for %d replies", name, pieces(r), len(answers))
			continue
		}
		for k, s := range r.Assistant {
			if got := r.Text[s.Start:s.End]; got != answers[k]+"<|eot_id|>" {
				t.Errorf("%s: span %d %q, want %q", name, k, got, answers[k]+"<|eot_id|>")
			}
			spans++
		}
	}
	if spans < 8 {
		t.Fatalf("only %d spans checked", spans)
	}
}
