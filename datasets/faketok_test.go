package datasets

import (
	"regexp"
	"strings"
	"sync"
)

// fakeTok is a small reversible tokenizer for tests: special tokens are
// matched first, the rest is cut into pieces of "optional whitespace +
// non-space run" or whitespace runs, and every distinct piece gets an id.
// Like real BPE it can merge across a template's span edge ("\nParis").
type fakeTok struct {
	mu       sync.Mutex // Prepare encodes on several goroutines
	specials []string
	vocab    map[string]int
	rev      []string
	bos      string // prepended by Encode(addSpecial) when set
	eos      []string
	cfg      map[string]any
	chat     string
}

var fakePiece = regexp.MustCompile(`\s?[^\s]+|\s+`)

func newFakeTok(specials ...string) *fakeTok {
	t := &fakeTok{vocab: map[string]int{}, cfg: map[string]any{}}
	for _, s := range specials {
		t.specials = append(t.specials, s)
		t.id(s)
	}
	return t
}

func (t *fakeTok) id(piece string) int {
	if id, ok := t.vocab[piece]; ok {
		return id
	}
	t.vocab[piece] = len(t.rev)
	t.rev = append(t.rev, piece)
	return len(t.rev) - 1
}

func (t *fakeTok) isSpecial(s string) bool {
	for _, sp := range t.specials {
		if sp == s {
			return true
		}
	}
	return false
}

func (t *fakeTok) Encode(text string, addSpecial bool) []int {
	t.mu.Lock()
	defer t.mu.Unlock()
	var ids []int
	if addSpecial && t.bos != "" {
		ids = append(ids, t.id(t.bos))
	}
	for text != "" {
		at, which := len(text), ""
		for _, sp := range t.specials {
			if i := strings.Index(text, sp); i >= 0 && (i < at || (i == at && len(sp) > len(which))) {
				at, which = i, sp
			}
		}
		for _, p := range fakePiece.FindAllString(text[:at], -1) {
			ids = append(ids, t.id(p))
		}
		if which == "" {
			break
		}
		ids = append(ids, t.id(which))
		text = text[at+len(which):]
	}
	return ids
}

func (t *fakeTok) Decode(ids []int, skipSpecial bool) string {
	var b strings.Builder
	for _, id := range ids {
		p := t.rev[id]
		if skipSpecial && t.isSpecial(p) {
			continue
		}
		b.WriteString(p)
	}
	return b.String()
}

func (t *fakeTok) TokenID(s string) (int, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	id, ok := t.vocab[s]
	return id, ok && t.isSpecial(s)
}

func (t *fakeTok) EOSIDs() []int {
	t.mu.Lock()
	defer t.mu.Unlock()
	var ids []int
	for _, e := range t.eos {
		ids = append(ids, t.id(e))
	}
	return ids
}

func (t *fakeTok) ChatTemplate() string   { return t.chat }
func (t *fakeTok) Config() map[string]any { return t.cfg }

// chatmlTok is a Qwen-like fake: ChatML specials, no BOS, eos <|im_end|>.
func chatmlTok(template string) *fakeTok {
	t := newFakeTok("<|im_start|>", "<|im_end|>", "<|endoftext|>", "<think>", "</think>")
	t.eos = []string{"<|im_end|>", "<|endoftext|>"}
	t.cfg["eos_token"] = "<|im_end|>"
	t.cfg["pad_token"] = "<|endoftext|>"
	t.chat = template
	return t
}

// llamaTok is a Llama-3-like fake with its header specials and a BOS.
func llamaTok(template string) *fakeTok {
	t := newFakeTok("<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>", "<|eom_id|>")
	t.bos = "<|begin_of_text|>"
	t.eos = []string{"<|end_of_text|>", "<|eot_id|>"}
	t.cfg["bos_token"] = "<|begin_of_text|>"
	t.cfg["eos_token"] = map[string]any{"content": "<|eot_id|>"}
	t.chat = template
	return t
}
