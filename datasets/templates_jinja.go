package datasets

import (
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"whet/datasets/jinja"
)

// InterpretedName is the Template.Name of a chat template that has no
// built-in family and is rendered by the Jinja interpreter.
const InterpretedName = "jinja"

// ModelTemplate is the chat template a model folder's tokenizer carries
// (tok: its Jinja and the file holding it), as TemplateForJinja reads it;
// nil, with no error, when the tokenizer has none. Errors name the file
// (chat_template.jinja, else modelDir's tokenizer_config.json), and so do
// an interpreted template's render errors.
func ModelTemplate(tok interface {
	ChatTemplate() string
	ChatTemplateFile() string
}, modelDir string) (*Template, error) {
	jinja := tok.ChatTemplate()
	if jinja == "" {
		return nil, nil
	}
	file := tok.ChatTemplateFile()
	if file == "" {
		file = filepath.Join(modelDir, "tokenizer_config.json")
	}
	t, _, err := TemplateForJinja(jinja)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	if t.Interpreted() {
		t.Origin = file // a render error names the file too
	}
	return t, nil
}

// TemplateForJinja returns the template for a tokenizer's Jinja
// chat_template: the built-in family that renders it when one is known
// (the fast path, proven equal to jinja2), otherwise the template itself
// through the interpreter. detected reports the built-in case.
func TemplateForJinja(source string) (t *Template, detected bool, err error) {
	if n, ok := DetectTemplate(source); ok {
		t, _ = LookupTemplate(n)
		return t, true, nil
	}
	t, err = NewJinjaTemplate(source)
	return t, false, err
}

// NewJinjaTemplate parses a Hugging Face chat template for the
// interpreter. The text it renders equals jinja2's in transformers'
// environment; its assistant spans are found as jinjaSpans describes.
func NewJinjaTemplate(source string) (*Template, error) {
	if strings.TrimSpace(source) == "" {
		return nil, errors.New("chat template is empty")
	}
	tmpl, err := jinja.Parse(source)
	if err != nil {
		return nil, fmt.Errorf("chat template: %w", err)
	}
	jt := &jinjaTemplate{tmpl: tmpl}
	return &Template{Name: InterpretedName, render: jt.render, source: source}, nil
}

type jinjaTemplate struct {
	tmpl *jinja.Template
}

// vars are the variables transformers' apply_chat_template passes.
func (jt *jinjaTemplate) vars(msgs []Message, o *RenderOptions, gen bool) map[string]any {
	list := make([]any, len(msgs))
	for i, m := range msgs {
		d := jinja.NewDict()
		d.Set("role", m.Role)
		if m.Parts != nil {
			parts := make([]any, len(m.Parts))
			for j, p := range m.Parts {
				pd := jinja.NewDict()
				pd.Set("type", p.Type)
				if p.Type == "text" {
					pd.Set("text", p.Text)
				}
				parts[j] = pd
			}
			d.Set("content", &jinja.List{Items: parts})
		} else {
			d.Set("content", m.Content)
		}
		if m.Reasoning != nil {
			d.Set("reasoning_content", *m.Reasoning)
		}
		list[i] = d
	}
	v := map[string]any{
		"messages":              list,
		"add_generation_prompt": gen,
		"tools":                 nil,
		"documents":             nil,
		"bos_token":             o.BOS,
		"eos_token":             o.EOS,
	}
	if o.DateString != "" {
		v["date_string"] = o.DateString
	}
	if o.EnableThinking != nil {
		v["enable_thinking"] = *o.EnableThinking
	}
	return v
}

func (jt *jinjaTemplate) run(msgs []Message, o *RenderOptions, gen bool) (jinja.Result, error) {
	now := o.Now
	res, err := jt.tmpl.Render(jt.vars(msgs, o, gen), jinja.Options{Now: func() time.Time { return now() }})
	var raised *jinja.RaisedError
	if errors.As(err, &raised) {
		// The template's own refusal, e.g. "Conversation roles must alternate".
		return res, errors.New(raised.Message)
	}
	return res, err
}

func (jt *jinjaTemplate) render(w *renderWriter, msgs []Message, o *RenderOptions) error {
	full, err := jt.run(msgs, o, o.AddGenerationPrompt)
	if err != nil {
		return err
	}
	w.text(full.Text)
	if len(full.Generation) > 0 {
		// The template marks what the assistant produces itself, as
		// transformers' return_assistant_tokens_mask reads it.
		for _, g := range full.Generation {
			w.spans = append(w.spans, Span{g.Start, g.End})
		}
		return nil
	}
	spans, err := jt.spans(msgs, o, full.Text)
	if err != nil {
		return err
	}
	w.spans = spans
	return nil
}

// spanMarker stands in for one assistant turn's content while its place is
// found: private-use characters and no whitespace, so that filters such as
// trim and tests such as '</think>' in content leave it alone.
func spanMarker(i int) string { return fmt.Sprintf("\ue000whet-span-%d\ue001", i) }

// spans finds each assistant turn's span in text, the full render, with
// marker renders: the conversation is rendered again with that turn's
// content replaced by a marker, which shows where the content begins and
// what the template writes after it. The span starts where the model starts
// producing, right after the generation prompt (so a reasoning block or a
// space the template puts before the content is included), and ends after
// the content plus the end-of-turn special token that follows it, as the
// built-in families' spans do.
func (jt *jinjaTemplate) spans(msgs []Message, o *RenderOptions, text string) ([]Span, error) {
	var out []Span
	for i, m := range msgs {
		if m.Role != "assistant" {
			continue
		}
		marked := append([]Message(nil), msgs...)
		marked[i].Content = spanMarker(i)
		marked[i].Parts = nil // a content list's place is found as one string
		probe, err := jt.run(marked, o, o.AddGenerationPrompt)
		if err != nil {
			return nil, fmt.Errorf("finding assistant turn %d: %w", i+1, err)
		}
		p := probe.Text
		at := strings.Index(p, spanMarker(i))
		if at < 0 || strings.Count(p, spanMarker(i)) != 1 {
			return nil, fmt.Errorf("assistant turn %d: the template does not print the turn's content as it is, so whet cannot tell which tokens to train on; set data.train_on: all, or data.template to a built-in family", i+1)
		}
		after := p[at+len(spanMarker(i)):]
		if !strings.HasPrefix(text, p[:at]) || !strings.HasSuffix(text, after) || len(text)-len(after) < at {
			return nil, fmt.Errorf("assistant turn %d: the template lays out the rest of the conversation differently depending on this turn's content, so whet cannot tell which tokens to train on; set data.train_on: all, or data.template to a built-in family", i+1)
		}
		contentStart, contentEnd := at, len(text)-len(after)
		start := contentStart
		if tail := jt.promptTail(msgs[:i], o); tail != "" {
			// The model starts producing where the generation prompt ends:
			// a <think> block or a space the template writes before the
			// content is the model's to learn.
			if q := strings.LastIndex(text[:contentStart], tail); q >= 0 {
				start = q + len(tail)
			}
		}
		end := contentEnd
		if k := leadingEndToken(after, o); k > 0 {
			end += k
		}
		if end > start {
			out = append(out, Span{start, end})
		}
	}
	return out, nil
}

// promptTail is what the template writes after the last message's content
// when it asks for a reply: the end of that turn and the generation prompt
// (for ChatML "<|im_end|>\n<|im_start|>assistant\n"). Empty when it cannot
// be told.
func (jt *jinjaTemplate) promptTail(msgs []Message, o *RenderOptions) string {
	if len(msgs) == 0 {
		return ""
	}
	marked := append([]Message(nil), msgs...)
	marker := spanMarker(-1)
	marked[len(marked)-1].Content = marker
	res, err := jt.run(marked, o, true)
	if err != nil || strings.Count(res.Text, marker) != 1 {
		return ""
	}
	return res.Text[strings.Index(res.Text, marker)+len(marker):]
}

// leadingEndToken returns the length of the whitespace and the special token
// that open s when s starts (after optional whitespace) with one of the
// tokenizer's special tokens: the end-of-turn token after a turn's content.
func leadingEndToken(s string, o *RenderOptions) int {
	trimmed := strings.TrimLeftFunc(s, isPySpace)
	lead := len(s) - len(trimmed)
	best := 0
	for _, tok := range o.SpecialTokens {
		if tok != "" && strings.HasPrefix(trimmed, tok) && len(tok) > best {
			best = len(tok)
		}
	}
	if best == 0 && o.EOS != "" && strings.HasPrefix(trimmed, o.EOS) {
		best = len(o.EOS)
	}
	if best == 0 {
		return 0
	}
	return lead + best
}

func commonPrefix(a, b string) int {
	n := min(len(a), len(b))
	for i := 0; i < n; i++ {
		if a[i] != b[i] {
			return i
		}
	}
	return n
}
