package jinja

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"
)

// The family templates in datasets/templates, rendered by jinja2
// into testdata/templates/golden (tools/templates/render.py): the
// interpreter must give the same text, and fail where jinja2 raised.
func TestInterpreterMatchesBuiltinFamilyGoldens(t *testing.T) {
	dir := filepath.Join("..", "..", "testdata", "templates")
	// name -> template file, bos, eos as render.py's SPECS has them.
	specs := map[string][3]string{
		"llama-3.0":    {"llama-3.0.jinja", "<|begin_of_text|>", "<|eot_id|>"},
		"llama-3.1":    {"llama-3.1.jinja", "<|begin_of_text|>", "<|eot_id|>"},
		"llama-3.2":    {"llama-3.2.jinja", "<|begin_of_text|>", "<|eot_id|>"},
		"chatml":       {"chatml.jinja", "", "<|im_end|>"},
		"qwen-2.5":     {"qwen-2.5.jinja", "", "<|im_end|>"},
		"qwen-3":       {"qwen-3.jinja", "", "<|im_end|>"},
		"gemma-2":      {"gemma-2.jinja", "<bos>", "<eos>"},
		"gemma-3":      {"gemma-3.jinja", "<bos>", "<end_of_turn>"},
		"mistral-v0.3": {"mistral-v0.3.jinja", "<s>", "</s>"},
		"phi-3":        {"phi-3.jinja", "<s>", "<|endoftext|>"},
		"phi-3.5":      {"phi-3.5.jinja", "<s>", "<|endoftext|>"},
		"phi-4-mini":   {"phi-4-mini.jinja", "<|endoftext|>", "<|endoftext|>"},
		"alpaca":       {"alpaca.jinja", "<s>", "</s>"},
		"plain":        {"plain.jinja", "<s>", "</s>"},
	}
	raw, err := os.ReadFile(filepath.Join(dir, "conversations.json"))
	if err != nil {
		t.Fatal(err)
	}
	convs, err := FromJSON(raw)
	if err != nil {
		t.Fatal(err)
	}
	names := make([]string, 0, len(specs))
	for n := range specs {
		names = append(names, n)
	}
	sort.Strings(names)
	now := func() time.Time { return time.Date(2026, 1, 5, 12, 0, 0, 0, time.UTC) }
	checked := 0
	for _, name := range names {
		spec := specs[name]
		src, err := os.ReadFile(filepath.Join("..", "templates", spec[0]))
		if err != nil {
			t.Fatal(err)
		}
		tmpl, err := Parse(string(src))
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		d := convs.(*Dict)
		for i, k := range d.Keys() {
			msgs := d.vals[i]
			for _, gen := range []bool{false, true} {
				variants := []struct {
					suffix string
					extra  map[string]any
				}{{"", nil}}
				if gen && name == "qwen-3" {
					variants = append(variants, struct {
						suffix string
						extra  map[string]any
					}{".nothink", map[string]any{"enable_thinking": false}}, struct {
						suffix string
						extra  map[string]any
					}{".think", map[string]any{"enable_thinking": true}})
				}
				for _, v := range variants {
					vars := map[string]any{"messages": msgs, "tools": nil, "documents": nil, "add_generation_prompt": gen, "eos_token": spec[2]}
					if spec[1] != "" {
						vars["bos_token"] = spec[1]
					} else {
						vars["bos_token"] = nil
					}
					for ek, ev := range v.extra {
						vars[ek] = ev
					}
					base := filepath.Join(dir, "golden", name, k.(string))
					if gen {
						base += ".gen"
					}
					base += v.suffix
					res, rerr := tmpl.Render(vars, Options{Now: now})
					checked++
					if want, err := os.ReadFile(base + ".txt"); err == nil {
						if rerr != nil {
							t.Errorf("%s: %v", base, rerr)
						} else if res.Text != string(want) {
							t.Errorf("%s:\n got %q\nwant %q", base, res.Text, want)
						}
						continue
					}
					want, err := os.ReadFile(base + ".err")
					if err != nil {
						t.Fatalf("%s: no golden", base)
					}
					var raised *RaisedError
					if !errors.As(rerr, &raised) || raised.Message != strings.TrimSuffix(string(want), "\n") {
						t.Errorf("%s: want raise %q, got %v", base, want, rerr)
					}
				}
			}
		}
	}
	t.Logf("checked %d renders", checked)
	if checked < 400 {
		t.Fatalf("only %d renders checked", checked)
	}
	_ = json.Valid
}
