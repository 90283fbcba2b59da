package datasets

import (
	"hash/fnv"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"
)

// wordEncoder is a stand-in tokenizer for span marking: a run of letters
// is one token, any other character one token each, so a span edge inside
// a word makes the piecewise encoding differ from the whole one (the
// prefix-encoding path of EncodeSpans).
type wordEncoder struct{}

func (wordEncoder) Encode(text string, addSpecial bool) []int {
	var ids []int
	if addSpecial {
		ids = append(ids, 1)
	}
	for i := 0; i < len(text); {
		r, n := utf8.DecodeRuneInString(text[i:])
		j := i + n
		if unicode.IsLetter(r) {
			for j < len(text) {
				r2, n2 := utf8.DecodeRuneInString(text[j:])
				if !unicode.IsLetter(r2) {
					break
				}
				j += n2
			}
		}
		h := fnv.New32a()
		h.Write([]byte(text[i:j]))
		ids = append(ids, int(h.Sum32()>>1)+2)
		i = j
	}
	return ids
}

func (wordEncoder) TokenID(string) (int, bool) { return 0, false }
func (wordEncoder) EOSIDs() []int              { return nil }

// FuzzJinjaChatTemplate renders conversations with arbitrary chat
// templates as a model's tokenizer_config.json or chat_template.jinja
// gives them (TemplateForJinja: a known family, else the interpreter) and
// marks the assistant spans as data preparation does. No template panics;
// a render that succeeds has its assistant spans inside the text, not
// empty and in order (the contract of Rendered.Assistant), and marking
// them on the token ids never panics and marks only existing tokens.
func FuzzJinjaChatTemplate(f *testing.F) {
	for _, src := range []string{
		"{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\\n' + m['content'] + '<|im_end|>\\n' }}{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\\n{% endif %}",
		"{{ bos_token }}{% for m in messages %}<|start_header_id|>{{ m.role }}<|end_header_id|>\n\n{{ m.content | trim }}<|eot_id|>{% endfor %}",
		"{% for m in messages %}{% if m.role == 'assistant' %}{% generation %}{{ m.content }}{{ eos_token }}{% endgeneration %}{% else %}[INST] {{ m.content }} [/INST]{% endif %}{% endfor %}",
		"{% for m in messages %}{{ m.content }}{{ m.content }}{% endfor %}",
		"{% for m in messages %}{% if m.role == 'assistant' and '</think>' in m.content %}{{ m.content.split('</think>')[-1] | lower }}{% else %}{{ m.content }}{% endif %}</s>{% endfor %}",
		"{% for m in messages %}{% if loop.last %}{{ m.content | length }}{% endif %}{% endfor %}",
	} {
		f.Add(src, "Paris is the capital.", "What is the capital of France?")
	}
	f.Add("{{ raise_exception('no') }}", "a", "b")
	f.Fuzz(checkJinjaChatTemplate)
}

func checkJinjaChatTemplate(t *testing.T, src, reply, question string) {
	{
		tpl, _, err := TemplateForJinja(src)
		if err != nil {
			return
		}
		msgs := []Message{
			{Role: "system", Content: "Be brief."},
			{Role: "user", Content: question},
			{Role: "assistant", Content: reply},
			{Role: "user", Content: "And " + question},
			{Role: "assistant", Content: "<think>x</think>" + reply},
		}
		for _, gen := range []bool{false, true} {
			opts := RenderOptions{AddGenerationPrompt: gen, BOS: "<s>", EOS: "</s>", SpecialTokens: []string{"<|im_end|>", "<|eot_id|>", "</s>"}}
			r, err := tpl.Render(msgs, opts)
			if err != nil {
				continue
			}
			prev := 0
			for i, sp := range r.Assistant {
				if sp.Start < prev || sp.End <= sp.Start || sp.End > len(r.Text) {
					t.Fatalf("span %d %v (after %d) of a %d-byte render:\n%q\nspans %v", i, sp, prev, len(r.Text), r.Text, r.Assistant)
				}
				prev = sp.End
			}
			ids, in, _ := EncodeSpans(wordEncoder{}, r.Text, r.Assistant, tpl.AddSpecialTokens)
			if len(in) != len(ids) {
				t.Fatalf("%d marks for %d ids", len(in), len(ids))
			}
			if len(r.Assistant) > 0 && !strings.Contains(src, "generation") && !containsTrue(in) {
				t.Fatalf("spans %v of %q marked no token", r.Assistant, r.Text)
			}
		}
	}
}

func containsTrue(b []bool) bool {
	for _, x := range b {
		if x {
			return true
		}
	}
	return false
}
