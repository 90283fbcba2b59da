package demo

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"whet/datasets"
	"whet/datasets/tokenizer"
)

// conversation is one JSONL row, decoded strictly: any key other than
// "messages", "role" and "content" is a mistake in these hand-written files.
type conversation struct {
	Messages []struct {
		Role    string `json:"role"`
		Content string `json:"content"`
	} `json:"messages"`
}

// maxRenderedWords bounds a conversation rendered with ChatML: the demo
// model trains on sequences of about 128 tokens, and its small vocabulary
// spends a little over one token per word.
const maxRenderedWords = 100

// checkConversations reads a persona file and returns its rows, or the
// first problem, named by file and line.
func checkConversations(r io.Reader, name string) ([]conversation, error) {
	var out []conversation
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 1<<16), 1<<20)
	for line := 1; sc.Scan(); line++ {
		raw := sc.Bytes()
		where := fmt.Sprintf("%s:%d", name, line)
		if len(bytes.TrimSpace(raw)) == 0 {
			return nil, fmt.Errorf("%s: blank line", where)
		}
		for i, c := range raw {
			if c < 0x20 || c > 0x7e {
				return nil, fmt.Errorf("%s: byte %d is %#x, want printable ASCII", where, i, c)
			}
		}
		dec := json.NewDecoder(bytes.NewReader(raw))
		dec.DisallowUnknownFields()
		var c conversation
		if err := dec.Decode(&c); err != nil {
			return nil, fmt.Errorf("%s: %w", where, err)
		}
		if dec.More() {
			return nil, fmt.Errorf("%s: more than one JSON value on the line", where)
		}
		msgs := c.Messages
		if len(msgs) > 0 && msgs[0].Role == "system" {
			msgs = msgs[1:]
		}
		if len(msgs) < 2 || len(msgs)%2 != 0 {
			return nil, fmt.Errorf("%s: want user/assistant turns in pairs after an optional system message, got %d messages", where, len(c.Messages))
		}
		words := 0
		for i, m := range c.Messages {
			field := fmt.Sprintf("messages[%d]", i)
			want := "user"
			if m.Role == "system" && i == 0 {
				want = "system"
			} else if (i-(len(c.Messages)-len(msgs)))%2 == 1 {
				want = "assistant"
			}
			if m.Role != want {
				return nil, fmt.Errorf("%s: %s.role is %q, want %q", where, field, m.Role, want)
			}
			if strings.TrimSpace(m.Content) != m.Content || m.Content == "" {
				return nil, fmt.Errorf("%s: %s.content is empty or has surrounding space", where, field)
			}
			if m.Role == "assistant" && !strings.HasSuffix(m.Content, "?") {
				return nil, fmt.Errorf("%s: %s.content does not end with a question mark: %q", where, field, m.Content)
			}
			words += len(strings.Fields(m.Content)) + 1 // the role line
		}
		if words > maxRenderedWords {
			return nil, fmt.Errorf("%s: %d words rendered, want at most %d (the demo's sequences are short)", where, words, maxRenderedWords)
		}
		out = append(out, c)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return out, nil
}

func readFile(t *testing.T, name string) []conversation {
	t.Helper()
	f, err := os.Open(name)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	convs, err := checkConversations(f, name)
	if err != nil {
		t.Fatal(err)
	}
	return convs
}

func TestPersonaFilesAreValid(t *testing.T) {
	for _, tc := range []struct {
		name     string
		min, max int
	}{{TrainFile, 80, 150}, {HeldoutFile, 20, 20}} {
		convs := readFile(t, tc.name)
		if len(convs) < tc.min || len(convs) > tc.max {
			t.Errorf("%s: %d conversations, want %d to %d", tc.name, len(convs), tc.min, tc.max)
		}
	}
}

func TestNoPromptRepeats(t *testing.T) {
	seen := map[string]string{}
	for _, name := range []string{TrainFile, HeldoutFile} {
		for i, c := range readFile(t, name) {
			for _, m := range c.Messages {
				if m.Role != "user" {
					continue
				}
				key := strings.ToLower(strings.TrimRight(m.Content, "?!. "))
				where := fmt.Sprintf("%s row %d", name, i+1)
				if prev, ok := seen[key]; ok {
					t.Errorf("prompt %q appears in %s and %s", m.Content, prev, where)
				}
				seen[key] = where
			}
		}
	}
}

func TestCheckerRejectsBadRows(t *testing.T) {
	good := `{"messages":[{"role":"user","content":"Why?"},{"role":"assistant","content":"Like a door. Why not?"}]}`
	if _, err := checkConversations(strings.NewReader(good+"\n"), "good.jsonl"); err != nil {
		t.Fatalf("good row rejected: %v", err)
	}
	long := strings.Repeat("word ", maxRenderedWords) + "end?"
	for _, tc := range []struct{ row, want string }{
		{`{"messages":[{"role":"user","content":"Why?"},{"role":"assistant","content":"Because."}]}`, "question mark"},
		{`{"messages":[{"role":"assistant","content":"Hi?"},{"role":"user","content":"Why?"}]}`, `want "user"`},
		{`{"messages":[{"role":"user","content":"Why?"}]}`, "pairs"},
		{`{"messages":[{"role":"user","content":"Why?"},{"role":"assistant","content":"` + long + `"}]}`, "words rendered"},
		{`{"messages":[{"role":"user","content":"Why?"},{"role":"assistant","content":"Ok?"}],"extra":1}`, "unknown field"},
		{`{"messages":[{"role":"user","content":"Caf` + "\u00e9" + `?"},{"role":"assistant","content":"Ok?"}]}`, "printable ASCII"},
		{`{"messages":[{"role":"user","content":" Why?"},{"role":"assistant","content":"Ok?"}]}`, "surrounding space"},
		{`{"messages": [`, "unexpected EOF"},
	} {
		_, err := checkConversations(strings.NewReader(good+"\n"+tc.row+"\n"), "bad.jsonl")
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "bad.jsonl:2") {
			t.Errorf("row %s: got error %v, want one at bad.jsonl:2 mentioning %q", tc.row, err, tc.want)
		}
	}
}

// TestWhetReadsTheEmbeddedFiles proves the embedded copies load through the
// same loader a user's dataset goes through, and match the files on disk.
func TestWhetReadsTheEmbeddedFiles(t *testing.T) {
	for _, name := range []string{TrainFile, HeldoutFile} {
		exs, err := Conversations(name)
		if err != nil {
			t.Fatal(err)
		}
		if want := len(readFile(t, name)); len(exs) != want {
			t.Errorf("%s: whet read %d conversations, the file has %d", name, len(exs), want)
		}
		for _, ex := range exs {
			last := ex.Messages[len(ex.Messages)-1]
			if last.Role != "assistant" || !strings.HasSuffix(last.Content, "?") {
				t.Errorf("%s: whet read the last turn as %+v", ex.Loc, last)
			}
		}
		res, err := datasets.ReadFile(name, false)
		if err != nil {
			t.Fatal(err)
		}
		f, err := datasets.DetectFormat(res.Records, nil)
		if err != nil || f != datasets.FormatMessages {
			t.Errorf("%s: detected format %q (%v), want %q", name, f, err, datasets.FormatMessages)
		}
	}
}

func TestExtractWritesEveryFile(t *testing.T) {
	dir := t.TempDir()
	if err := Extract(dir); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{TrainFile, HeldoutFile, TokenizerDir + "/tokenizer.json", TokenizerDir + "/tokenizer_config.json", TokenizerDir + "/generation_config.json"} {
		got, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		want, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("extracted %s differs from the embedded one", name)
		}
	}
}

// maxTokens is the sequence length the demo LoRA trains with; every
// conversation, rendered with the demo tokenizer's ChatML template, must
// fit so that no answer loses its closing question to truncation.
const maxTokens = 128

func TestConversationsFitTheDemoTokenizer(t *testing.T) {
	dir := t.TempDir()
	if err := Extract(dir); err != nil {
		t.Fatal(err)
	}
	tok, err := tokenizer.Load(filepath.Join(dir, TokenizerDir))
	if err != nil {
		t.Fatal(err)
	}
	name, ok := datasets.DetectTemplate(tok.ChatTemplate())
	if !ok || name != "chatml" {
		t.Fatalf("demo tokenizer's chat template is detected as %q (%v), want chatml", name, ok)
	}
	imEnd, ok := tok.TokenID("<|im_end|>")
	if !ok {
		t.Fatal("demo tokenizer has no <|im_end|>")
	}
	if eos := tok.EOSIDs(); len(eos) == 0 || eos[0] != imEnd {
		t.Errorf("EOS ids %v, want <|im_end|> (%d) first", eos, imEnd)
	}
	longest := 0
	for _, file := range []string{TrainFile, HeldoutFile} {
		exs, err := Conversations(file)
		if err != nil {
			t.Fatal(err)
		}
		for _, ex := range exs {
			text, err := datasets.Render(name, ex.Messages, false)
			if err != nil {
				t.Fatalf("%s: %v", ex.Loc, err)
			}
			ids := tok.Encode(text, true)
			if len(ids) > maxTokens {
				t.Errorf("%s: %d tokens, want at most %d", ex.Loc, len(ids), maxTokens)
			}
			if got := tok.Decode(ids, false); got != text {
				t.Errorf("%s: decode(encode(text)) = %q, want %q", ex.Loc, got, text)
			}
			longest = max(longest, len(ids))
		}
	}
	t.Logf("longest conversation: %d tokens", longest)
}

// TestTokenizerMatchesReference compares whet's tokenizer and chat template
// with an independent Hugging Face implementation's output, recorded by
// tools/demo/tokref.mjs in testdata/tokref.jsonl: the first lines are each
// persona conversation rendered whole and then as a generation prompt, the
// rest are strings chosen to break tokenizers.
func TestTokenizerMatchesReference(t *testing.T) {
	tok, err := tokenizer.Load(TokenizerDir)
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Open("testdata/tokref.jsonl")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	type ref struct {
		Text    string `json:"text"`
		IDs     []int  `json:"ids"`
		Decoded string `json:"decoded"`
	}
	var refs []ref
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 1<<16), 1<<22)
	for line := 1; sc.Scan(); line++ {
		var r ref
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatalf("testdata/tokref.jsonl:%d: %v", line, err)
		}
		refs = append(refs, r)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}

	var rendered []string
	for _, file := range []string{TrainFile, HeldoutFile} {
		exs, err := Conversations(file)
		if err != nil {
			t.Fatal(err)
		}
		for _, ex := range exs {
			whole, err := datasets.Render("chatml", ex.Messages, false)
			if err != nil {
				t.Fatal(err)
			}
			prompt, err := datasets.Render("chatml", ex.Messages[:len(ex.Messages)-1], true)
			if err != nil {
				t.Fatal(err)
			}
			rendered = append(rendered, whole, prompt)
		}
	}
	if len(refs) <= len(rendered) {
		t.Fatalf("testdata/tokref.jsonl has %d lines, want the %d rendered conversations and more: rerun node tools/demo/tokref.mjs", len(refs), len(rendered))
	}
	for i, text := range rendered {
		if refs[i].Text != text {
			t.Errorf("line %d: whet renders %q, the reference template %q", i+1, text, refs[i].Text)
		}
	}
	for i, r := range refs {
		got := tok.Encode(r.Text, false)
		if !slices.Equal(got, r.IDs) {
			t.Errorf("line %d: %q encodes as %v, reference %v", i+1, r.Text, got, r.IDs)
			continue
		}
		if dec := tok.Decode(r.IDs, false); dec != r.Decoded {
			t.Errorf("line %d: %v decodes as %q, reference %q", i+1, r.IDs, dec, r.Decoded)
		}
	}
}
