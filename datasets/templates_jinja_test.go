package datasets

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

// An interpreted template gives the same text and the same assistant spans
// (what is trained on) as the built-in family that renders the same Jinja.
func TestInterpretedTemplateSpansMatchBuiltins(t *testing.T) {
	dir := filepath.Join("..", "testdata", "templates")
	raw, err := os.ReadFile(filepath.Join(dir, "conversations.json"))
	if err != nil {
		t.Fatal(err)
	}
	var convs map[string][]Message
	if err := json.Unmarshal(raw, &convs); err != nil {
		t.Fatal(err)
	}
	families := map[string]struct {
		file     string
		bos, eos string
		specials []string
	}{
		"chatml":       {"chatml.jinja", "", "<|im_end|>", []string{"<|endoftext|>", "<|im_start|>", "<|im_end|>"}},
		"qwen-2.5":     {"qwen-2.5.jinja", "", "<|im_end|>", []string{"<|endoftext|>", "<|im_start|>", "<|im_end|>"}},
		"qwen-3":       {"qwen-3.jinja", "", "<|im_end|>", []string{"<|endoftext|>", "<|im_start|>", "<|im_end|>"}},
		"llama-3.0":    {"llama-3.0.jinja", "<|begin_of_text|>", "<|eot_id|>", []string{"<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"}},
		"llama-3.1":    {"llama-3.1.jinja", "<|begin_of_text|>", "<|eot_id|>", []string{"<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"}},
		"gemma-3":      {"gemma-3.jinja", "<bos>", "<end_of_turn>", []string{"<bos>", "<eos>", "<start_of_turn>", "<end_of_turn>"}},
		"mistral-v0.3": {"mistral-v0.3.jinja", "<s>", "</s>", []string{"<s>", "</s>", "[INST]", "[/INST]"}},
		"phi-3.5":      {"phi-3.5.jinja", "<s>", "<|endoftext|>", []string{"<s>", "<|endoftext|>", "<|user|>", "<|assistant|>", "<|system|>", "<|end|>"}},
		"phi-4-mini":   {"phi-4-mini.jinja", "<|endoftext|>", "<|endoftext|>", []string{"<|endoftext|>", "<|user|>", "<|assistant|>", "<|system|>", "<|end|>"}},
	}
	now := func() time.Time { return time.Date(2026, 1, 5, 12, 0, 0, 0, time.UTC) }
	compared := 0
	for name, fam := range families {
		src, err := os.ReadFile(filepath.Join("templates", fam.file))
		if err != nil {
			t.Fatal(err)
		}
		interp, err := NewJinjaTemplate(string(src))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		builtin, _ := LookupTemplate(name)
		for cname, msgs := range convs {
			for _, gen := range []bool{false, true} {
				o := RenderOptions{AddGenerationPrompt: gen, BOS: fam.bos, EOS: fam.eos, Now: now, SpecialTokens: fam.specials}
				want, werr := builtin.Render(msgs, o)
				got, gerr := interp.Render(msgs, o)
				if werr != nil {
					if gerr == nil {
						t.Errorf("%s %s: built-in failed (%v), interpreted rendered", name, cname, werr)
					}
					continue
				}
				if name == "qwen-3" && thinkInContent(msgs) && gerr != nil {
					// Qwen 3 splits a <think> block out of the content of a
					// turn after the last query, so a marker in its place
					// changes the layout: the interpreted path says it cannot
					// find the span (the built-in family renders Qwen 3
					// itself). Before the last query the block is dropped
					// either way and the texts must agree.
					if !strings.Contains(gerr.Error(), "lays out the rest of the conversation differently") {
						t.Errorf("%s %s: want the layout error, got %v", name, cname, gerr)
					}
					continue
				}
				if gerr != nil {
					t.Errorf("%s %s gen=%v: %v", name, cname, gen, gerr)
					continue
				}
				if got.Text != want.Text {
					t.Errorf("%s %s gen=%v: text differs:\n got %q\nwant %q", name, cname, gen, got.Text, want.Text)
					continue
				}
				compared++
				if !reflect.DeepEqual(got.Assistant, want.Assistant) {
					t.Errorf("%s %s gen=%v: spans differ:\n got %v %q\nwant %v %q", name, cname, gen, got.Assistant, pieces(got), want.Assistant, pieces(want))
				}
			}
		}
	}
	if compared < 100 {
		t.Fatalf("only %d renders compared", compared)
	}
}

func pieces(r Rendered) []string {
	var out []string
	for _, s := range r.Assistant {
		out = append(out, r.Text[s.Start:s.End])
	}
	return out
}

// A template that marks {% generation %} gets exactly those spans.
func TestInterpretedTemplateGenerationBlocks(t *testing.T) {
	src := "{% for m in messages %}<{{ m.role }}>{% if m.role == 'assistant' %}{% generation %}{{ m.content }}</s>{% endgeneration %}{% else %}{{ m.content }}{% endif %}\n{% endfor %}"
	tpl, err := NewJinjaTemplate(src)
	if err != nil {
		t.Fatal(err)
	}
	r, err := tpl.Render([]Message{{Role: "user", Content: "q"}, {Role: "assistant", Content: "a1"}, {Role: "user", Content: "q2"}, {Role: "assistant", Content: "a2"}}, RenderOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(pieces(r), "|"); got != "a1</s>|a2</s>" {
		t.Fatalf("spans %q in %q", got, r.Text)
	}
}

// Templates that hide or rewrite the assistant's text get a clear error
// instead of a wrong mask; a template's own refusal keeps its message.
func TestInterpretedTemplateSpanErrors(t *testing.T) {
	msgs := []Message{{Role: "user", Content: "q"}, {Role: "assistant", Content: "answer"}}
	for src, want := range map[string]string{
		"{% for m in messages %}{{ m.content | upper }}{% endfor %}":                                   "does not print the turn's content as it is",
		"{% for m in messages %}{{ m.content }}{% endfor %}{{ messages[-1].content | length }}":        "lays out the rest of the conversation differently",
		"{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}": "Conversation roles must alternate",
	} {
		tpl, err := NewJinjaTemplate(src)
		if err != nil {
			t.Fatal(err)
		}
		_, err = tpl.Render(msgs, RenderOptions{})
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: want %q, got %v", src, want, err)
		}
	}
	if _, err := NewJinjaTemplate("{% if %}"); err == nil || !strings.Contains(err.Error(), "line 1") {
		t.Errorf("syntax error without its line: %v", err)
	}
}

// thinkInContent: some assistant turn carries its reasoning as a <think>
// block inside the content rather than in reasoning_content.
func thinkInContent(msgs []Message) bool {
	for _, m := range msgs {
		if m.Role == "assistant" && m.Reasoning == nil && strings.Contains(m.Content, "</think>") {
			return true
		}
	}
	return false
}
