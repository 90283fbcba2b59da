package datasets

import (
	"embed"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"
)

// Message is one turn of a conversation.
type Message struct {
	Role    string `json:"role"`
	Content string `json:"content"`
	// Reasoning is Qwen 3's reasoning_content: when set, the template uses it
	// instead of splitting a <think> block out of Content.
	Reasoning *string `json:"reasoning_content,omitempty"`
	// Parts, when set, is the content as a list of text and image parts
	// (Content is then ignored), as Hugging Face processors pass it: the
	// templates that know images (gemma-3, and interpreted ones such as
	// Llama 3.2 Vision's) write their image token where each image part
	// is. Other built-in families refuse it.
	Parts []ContentPart `json:"-"`
}

// ContentPart is one part of a content list: Type "text" with Text, or
// Type "image" (the template writes the model's image placeholder; the
// pixels travel separately, see datasets/vision).
type ContentPart struct {
	Type string
	Text string
}

// hasParts reports whether any message carries a content list.
func hasParts(msgs []Message) bool {
	for _, m := range msgs {
		if m.Parts != nil {
			return true
		}
	}
	return false
}

// Span is a byte range [Start, End) of rendered text.
type Span struct{ Start, End int }

// Rendered is a conversation laid out by a chat template.
type Rendered struct {
	Text string
	// Assistant holds, in order, the byte range of every assistant turn's
	// content together with the template's end-of-turn token: the part a
	// model learns to produce. Headers such as "<|im_start|>assistant\n"
	// are outside the spans.
	Assistant []Span
}

// RenderOptions are the template variables transformers passes to
// apply_chat_template beyond the messages.
type RenderOptions struct {
	AddGenerationPrompt bool
	// BOS and EOS replace the family's special-token text where the template
	// prints bos_token or eos_token (the tokenizer's own strings). Empty
	// means the family's usual token.
	BOS, EOS string
	// DateString is Llama 3.x's date_string variable ("26 Jul 2024" style).
	// Empty means the template's default: a fixed date for Llama 3.1,
	// today's date (Now) for Llama 3.2.
	DateString string
	// Now stands in for strftime_now; nil means time.Now.
	Now func() time.Time
	// EnableThinking is Qwen 3's enable_thinking; nil leaves it undefined,
	// as transformers does unless the caller passes it.
	EnableThinking *bool
	// SpecialTokens are the tokenizer's special tokens (RenderOptionsFor
	// reads them from tokenizer_config.json). An interpreted template's
	// assistant span ends after the one that closes the turn.
	SpecialTokens []string
}

// Template is a built-in chat template: a Go rendering of one family's
// Hugging Face Jinja template plus what a trainer and a generator need to
// know about it.
type Template struct {
	Name string
	// RendersBOS is true when the rendered text already starts with the BOS
	// token, so the encoder must not add another.
	RendersBOS bool
	// AddSpecialTokens says how to encode rendered text. transformers'
	// apply_chat_template(tokenize=True) encodes with add_special_tokens
	// off, so for real chat templates this is false; whet's alpaca layout is
	// encoded like plain text and gets the tokenizer's BOS.
	AddSpecialTokens bool
	// BOS and EOS are the family's special-token strings used when
	// RenderOptions leaves them empty.
	BOS, EOS string
	// StopTokens end generation when produced (resolve to ids with the
	// tokenizer; the tokenizer's own EOS ids also stop). StopStrings end it
	// when they appear in decoded text, for tokenizers that split them.
	StopTokens  []string
	StopStrings []string

	render func(w *renderWriter, msgs []Message, opts *RenderOptions) error
	// parts is true for built-in families whose real template renders
	// content lists (Message.Parts); the others refuse them rather than
	// print something the real template would not.
	parts bool
	// Origin is the file an interpreted template was read from (a
	// tokenizer_config.json or chat_template.jinja); its render errors
	// name it, since a template can fail on a conversation long after it
	// was parsed.
	Origin string
	// source is the Jinja text of an interpreted template (empty for the
	// built-in families, whose text is known by name).
	source string
}

// Interpreted reports whether the template is rendered by the Jinja
// interpreter rather than a built-in family.
func (t *Template) Interpreted() bool { return t.source != "" }

// Source is an interpreted template's Jinja text.
func (t *Template) Source() string { return t.source }

// familyJinja holds each built-in family's Jinja: the real template its Go
// rendering is proven equal to (the goldens render these very files), or
// for whet's own alpaca and plain the Jinja written for them.
//
//go:embed templates/*.jinja
var familyJinja embed.FS

// Jinja is the template's Jinja text: an interpreted template's own, or a
// built-in family's (templates/NAME.jinja). An export writes it where
// transformers, llama.cpp and Ollama read the chat template, so a model
// trained with a template other than its base's is prompted as trained.
func (t *Template) Jinja() string {
	if t.Interpreted() {
		return t.source
	}
	b, err := familyJinja.ReadFile("templates/" + t.Name + ".jinja")
	if err != nil {
		return "" // every registered family has one (TestBuiltinJinja)
	}
	return string(b)
}

var templates = map[string]*Template{}

// templateAliases maps other common names to the built-in one that renders
// the same text.
var templateAliases = map[string]string{
	// Llama 3 (April 2024) has no dated system header; 3.1 added it.
	"llama-3":   "llama-3.0",
	"llama-3.3": "llama-3.1",
	"llama3":    "llama-3.0",
	"qwen2.5":   "qwen-2.5",
	"qwen3":     "qwen-3",
	"gemma":     "gemma-3",
	"gemma-3n":  "gemma-3",
	"mistral":   "mistral-v0.3",
	"phi3":      "phi-3",
	"phi4-mini": "phi-4-mini",
}

func register(t *Template) { templates[t.Name] = t }

// LookupTemplate returns the built-in template with that name or alias.
func LookupTemplate(name string) (*Template, bool) {
	n := strings.ToLower(strings.TrimSpace(name))
	if a, ok := templateAliases[n]; ok {
		n = a
	}
	t, ok := templates[n]
	return t, ok
}

// TemplateNames lists the built-in templates, sorted.
func TemplateNames() []string {
	names := make([]string, 0, len(templates))
	for n := range templates {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Render lays out msgs with the named built-in template and its default
// variables.
func Render(name string, msgs []Message, addGenerationPrompt bool) (string, error) {
	r, err := RenderWith(name, msgs, RenderOptions{AddGenerationPrompt: addGenerationPrompt})
	return r.Text, err
}

// RenderWith lays out msgs with the named template and returns the text with
// the assistant spans.
func RenderWith(name string, msgs []Message, opts RenderOptions) (Rendered, error) {
	t, ok := LookupTemplate(name)
	if !ok {
		return Rendered{}, fmt.Errorf("unknown chat template %q (known: %s)", name, strings.Join(TemplateNames(), ", "))
	}
	return t.Render(msgs, opts)
}

// Render lays out msgs with this template.
func (t *Template) Render(msgs []Message, opts RenderOptions) (Rendered, error) {
	if len(msgs) == 0 {
		return Rendered{}, errors.New("chat template " + t.Name + ": conversation has no messages")
	}
	if !t.parts && !t.Interpreted() && hasParts(msgs) {
		return Rendered{}, fmt.Errorf("chat template %s: content lists (text and image parts) are not supported by this built-in template; gemma-3 and interpreted templates render them", t.Name)
	}
	if opts.BOS == "" {
		opts.BOS = t.BOS
	}
	if opts.EOS == "" {
		opts.EOS = t.EOS
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	var w renderWriter
	if err := t.render(&w, msgs, &opts); err != nil {
		if t.Origin != "" {
			return Rendered{}, fmt.Errorf("%s: chat template: %w", t.Origin, err)
		}
		return Rendered{}, fmt.Errorf("chat template %s: %w", t.Name, err)
	}
	return Rendered{Text: w.sb.String(), Assistant: w.spans}, nil
}

// renderWriter accumulates rendered text and the assistant spans.
type renderWriter struct {
	sb    strings.Builder
	spans []Span
}

func (w *renderWriter) text(parts ...string) {
	for _, p := range parts {
		w.sb.WriteString(p)
	}
}

// assistant writes text that belongs to an assistant span, joining it to a
// span that ends exactly where it starts.
func (w *renderWriter) assistant(parts ...string) {
	start := w.sb.Len()
	w.text(parts...)
	end := w.sb.Len()
	if start == end {
		return
	}
	if n := len(w.spans); n > 0 && w.spans[n-1].End == start {
		w.spans[n-1].End = end
		return
	}
	w.spans = append(w.spans, Span{start, end})
}

// pyStrip is Python's str.strip() (Jinja's trim filter): it removes the
// characters Python calls whitespace, which include the ASCII separators
// U+001C..U+001F that Go's unicode.IsSpace leaves alone.
func pyStrip(s string) string {
	return strings.TrimFunc(s, isPySpace)
}

func isPySpace(r rune) bool {
	switch {
	case r >= 0x1c && r <= 0x1f:
		return true
	case r == '\t', r == '\n', r == '\v', r == '\f', r == '\r', r == ' ', r == 0x85, r == 0xa0:
		return true
	case r == 0x1680, r >= 0x2000 && r <= 0x200a, r == 0x2028, r == 0x2029, r == 0x202f, r == 0x205f, r == 0x3000:
		return true
	}
	return false
}

// errAlternate is the error several templates raise for user/user turns.
var errAlternate = errors.New("conversation roles must alternate user/assistant/user/assistant/...")
