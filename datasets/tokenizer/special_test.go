package tokenizer

import (
	"slices"
	"strings"
	"testing"
)

// TestSpecialTokens checks BOS, EOS, special-token detection and the
// handling of special tokens written inline, against facts of the four
// reference tokenizer files.
func TestSpecialTokens(t *testing.T) {
	cases := []struct {
		name      string
		vocabSize int
		bos       string // "" when the tokenizer has none
		eos       []string
		addsBOS   bool   // whether Encode(x, true) starts with BOS
		inline    string // a special token written in text
		plain     string // a non-special added token, "" if none
		template  bool   // ships a chat template
	}{
		{"llama3", 128256, "<|begin_of_text|>", []string{"<|end_of_text|>"}, false, "<|eot_id|>", "", true},
		{"qwen3", 151669, "", []string{"<|im_end|>"}, false, "<|im_start|>", "<think>", true},
		{"gemma3", 262145, "<bos>", []string{"<end_of_turn>"}, true, "<start_of_turn>", "<table>", true},
		{"llama2", 32000, "<s>", []string{"</s>"}, true, "</s>", "", false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			tok := referenceTokenizer(t, c.name)
			if got := tok.VocabSize(); got != c.vocabSize {
				t.Errorf("VocabSize = %d, want %d", got, c.vocabSize)
			}
			bos, hasBOS := tok.BOS()
			if hasBOS != (c.bos != "") || (hasBOS && tok.Token(bos) != c.bos) {
				t.Errorf("BOS = %d (%q), %v; want %q", bos, tok.Token(bos), hasBOS, c.bos)
			}
			var eos []string
			for _, id := range tok.EOSIDs() {
				eos = append(eos, tok.Token(id))
			}
			if !slices.Equal(eos, c.eos) {
				t.Errorf("EOSIDs name %q, want %q", eos, c.eos)
			}

			plain, withSpecial := tok.Encode("Hello there", false), tok.Encode("Hello there", true)
			wantSpecial := plain
			if c.addsBOS {
				wantSpecial = append([]int{bos}, plain...)
			}
			if !slices.Equal(withSpecial, wantSpecial) {
				t.Errorf("Encode with special = %v, want %v", withSpecial, wantSpecial)
			}
			if empty := tok.Encode("", true); c.addsBOS != (len(empty) == 1) {
				t.Errorf("Encode(\"\", true) = %v", empty)
			}

			// An inline special token is one id, is special, and is
			// dropped by Decode with skipSpecial.
			id, ok := tok.TokenID(c.inline)
			if !ok || !tok.IsSpecial(id) {
				t.Fatalf("%q: id %d found=%v special=%v", c.inline, id, ok, tok.IsSpecial(id))
			}
			text := "Hi" + c.inline + "there"
			ids := tok.Encode(text, false)
			n := 0
			for _, x := range ids {
				if x == id {
					n++
				}
			}
			if n != 1 {
				t.Errorf("Encode(%q) = %v: %q should appear once as id %d", text, ids, c.inline, id)
			}
			if got := tok.Decode(ids, true); strings.Contains(got, c.inline) || !strings.Contains(got, "there") {
				t.Errorf("Decode(skipSpecial) = %q", got)
			}
			if got := tok.Decode(ids, false); !strings.Contains(got, c.inline) {
				t.Errorf("Decode = %q, lost %q", got, c.inline)
			}

			if c.plain != "" {
				pid, ok := tok.TokenID(c.plain)
				if !ok || tok.IsSpecial(pid) {
					t.Fatalf("%q: id %d found=%v special=%v; want a non-special added token", c.plain, pid, ok, tok.IsSpecial(pid))
				}
				ids := tok.Encode("a"+c.plain+"b", false)
				if !slices.Contains(ids, pid) {
					t.Errorf("Encode of inline %q = %v, want its id %d", c.plain, ids, pid)
				}
				if got := tok.Decode(ids, true); !strings.Contains(got, c.plain) {
					t.Errorf("Decode(skipSpecial) = %q dropped the non-special %q", got, c.plain)
				}
			}
			if tmpl := tok.ChatTemplate(); (tmpl != "") != c.template || (c.template && !strings.Contains(tmpl, "message")) {
				t.Errorf("ChatTemplate = %.60q, want present=%v", tmpl, c.template)
			}
			if _, ok := tok.Config()["tokenizer_class"].(string); !ok {
				t.Errorf("Config() lacks tokenizer_class: %v", tok.Config()["tokenizer_class"])
			}
			// Token and TokenID are inverse on every id.
			for id := 0; id < tok.VocabSize(); id += 97 {
				if s := tok.Token(id); s != "" {
					if back, ok := tok.TokenID(s); !ok || back != id {
						t.Fatalf("TokenID(Token(%d)=%q) = %d, %v", id, s, back, ok)
					}
				}
			}
		})
	}
}

// TestTinyEOSOrder: generation_config.json's ids come first, then the
// tokenizer_config.json eos_token.
func TestTinyEOSOrder(t *testing.T) {
	tok := tinyTokenizer(t)
	var names []string
	for _, id := range tok.EOSIDs() {
		names = append(names, tok.Token(id))
	}
	if want := []string{"<|eot|>", "<|eos|>"}; !slices.Equal(names, want) {
		t.Fatalf("EOSIDs name %q, want %q", names, want)
	}
}

// TestEncodeBatch: the parallel batch gives what Encode gives, in order.
func TestEncodeBatch(t *testing.T) {
	tok := referenceTokenizer(t, "qwen3")
	corpus := readCorpus(t)
	got := tok.EncodeBatch(corpus, true)
	if len(got) != len(corpus) {
		t.Fatalf("%d results for %d texts", len(got), len(corpus))
	}
	for i, text := range corpus {
		if want := tok.Encode(text, true); !slices.Equal(got[i], want) {
			t.Fatalf("text %d: batch %v, Encode %v", i, got[i], want)
		}
	}
	if len(tok.EncodeBatch(nil, false)) != 0 {
		t.Fatal("EncodeBatch(nil) not empty")
	}
}
