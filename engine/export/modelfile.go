package export

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"whet/datasets"
)

// Ollama renders a Modelfile's TEMPLATE with Go's text/template over
// .System and .Messages (each with .Role and .Content); the prompt ends
// where the model's reply starts. Each built-in chat template has a
// TEMPLATE below that lays out system/user/assistant conversations as the
// built-in Go renderer (datasets.Template) does for training, with two
// limits: contents are not stripped of surrounding whitespace (Llama 3 and
// Gemma's Jinja templates strip them), and Llama 3.2's date is the fixed
// "26 Jul 2024" of Llama 3.1 rather than today's. The tokenizer's BOS is
// not in the TEMPLATE: llama.cpp adds it (tokenizer.ggml.add_bos_token).

// systemOfFirst sets $sys to the first message's content when it is a
// system message.
const systemOfFirst = `{{- $sys := "" }}{{ if .Messages }}{{ if eq (index .Messages 0).Role "system" }}{{ $sys = (index .Messages 0).Content }}{{ end }}{{ end }}`

// notFirstSystem wraps a per-message body so a leading system message
// (already placed by the template) is skipped.
func notFirstSystem(body string) string {
	return `{{ range $i, $m := .Messages }}{{ if not (and (eq $i 0) (eq $m.Role "system")) }}` + body + `{{ end }}{{ end }}`
}

const chatMLTurns = `{{- range .Messages }}<|im_start|>{{ .Role }}
{{ .Content }}<|im_end|>
{{ end }}<|im_start|>assistant
`

const llama3Header = `<|start_header_id|>assistant<|end_header_id|>

`

var ollamaTemplates = map[string]string{
	"chatml": chatMLTurns,
	"qwen-3": qwen3Template,
	"qwen-2.5": `{{- if or (not .Messages) (ne (index .Messages 0).Role "system") }}<|im_start|>system
You are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>
{{ end }}` + chatMLTurns,
	"llama-3.0": `{{- range .Messages }}<|start_header_id|>{{ .Role }}<|end_header_id|>

{{ .Content }}<|eot_id|>{{ end }}` + llama3Header,
	"llama-3.1": llama31Template,
	"llama-3.2": llama31Template,
	"gemma-2":   gemmaTemplate,
	"gemma-3":   gemmaTemplate,
	"mistral-v0.3": systemOfFirst + notFirstSystem(`{{ if eq $m.Role "user" }}[INST] {{ if and $sys (eq (len (slice $.Messages $i)) 1) }}{{ $sys }}

{{ end }}{{ $m.Content }}[/INST]{{ else }} {{ $m.Content }}</s>{{ end }}`),
	// plain is whet's own layout for completion-style data: the turns
	// back to back, each reply closed by EOS.
	"plain": `{{- range .Messages }}{{ .Content }}{{ if eq .Role "assistant" }}{{ "{{EOS}}" }}{{ end }}{{ end }}`,
	"phi-3": `{{- range .Messages }}<|{{ .Role }}|>
{{ .Content }}<|end|>
{{ end }}<|assistant|>
`,
	"phi-3.5": `{{- range .Messages }}{{ if or (ne .Role "system") .Content }}<|{{ .Role }}|>
{{ .Content }}<|end|>
{{ end }}{{ end }}<|assistant|>
`,
	// Phi-4-mini: no newline after the role tag, an empty system kept.
	"phi-4-mini": `{{- range .Messages }}<|{{ .Role }}|>{{ .Content }}<|end|>{{ end }}<|assistant|>`,
	"alpaca": systemOfFirst + `{{ if $sys }}{{ $sys }}{{ else }}Below is an instruction that describes a task. Write a response that appropriately completes the request.{{ end }}

` + notFirstSystem(`{{ if eq $m.Role "user" }}### Instruction:
{{ $m.Content }}

### Response:
{{ else }}{{ $m.Content }}{{ "{{EOS}}" }}

{{ end }}`),
}

// qwen3Template is Qwen3's template for Ollama, whose messages carry the
// reasoning apart (.Thinking) and whose .Think/.IsThinkSet say whether the
// request asked for thinking: reasoning is printed only for assistant
// turns after the last user turn (earlier turns' is dropped, as Qwen3's
// template drops it), and a request with thinking off gets the empty
// <think></think> block enable_thinking=false writes.
const qwen3Template = `{{- $lastUser := -1 }}{{ range $i, $m := .Messages }}{{ if eq $m.Role "user" }}{{ $lastUser = $i }}{{ end }}{{ end }}
{{- range $i, $m := .Messages }}{{ if eq $m.Role "assistant" }}<|im_start|>assistant
{{ if and (gt $i $lastUser) (or $m.Thinking (eq (len (slice $.Messages $i)) 1)) }}<think>
{{ $m.Thinking }}
</think>

{{ end }}{{ $m.Content }}<|im_end|>
{{ else }}<|im_start|>{{ $m.Role }}
{{ $m.Content }}<|im_end|>
{{ end }}{{ end }}<|im_start|>assistant
{{ if and .IsThinkSet (not .Think) }}<think>

</think>

{{ end }}`

var llama31Template = systemOfFirst + `<|start_header_id|>system<|end_header_id|>

Cutting Knowledge Date: December 2023
Today Date: 26 Jul 2024

{{ $sys }}<|eot_id|>` + notFirstSystem(`<|start_header_id|>{{ $m.Role }}<|end_header_id|>

{{ $m.Content }}<|eot_id|>`) + llama3Header

// gemmaTemplate folds a system message into the first user turn (Gemma 3;
// Gemma 2's own template refuses system messages) and calls the assistant
// "model".
var gemmaTemplate = systemOfFirst + notFirstSystem(`<start_of_turn>{{ if eq $m.Role "assistant" }}model{{ else }}{{ $m.Role }}{{ end }}
{{ if $sys }}{{ $sys }}

{{ $sys = "" }}{{ end }}{{ $m.Content }}<end_of_turn>
`) + `<start_of_turn>model
`

// OllamaTemplate returns the TEMPLATE for a built-in chat template name,
// with eos standing in for the tokenizer's EOS text where the template
// prints it (alpaca's turn end).
func OllamaTemplate(name, eos string) (string, bool) {
	t, ok := ollamaTemplates[name]
	return strings.ReplaceAll(t, `{{ "{{EOS}}" }}`, eos), ok
}

// NoOllamaTemplate says why a Modelfile has no TEMPLATE for c's template
// and what Ollama does instead. A run's own training template (c.Custom)
// is named by its setting, so the user knows which template Ollama has to
// be taught.
func NoOllamaTemplate(c *ChatTemplate) string {
	t := c.Template
	if c.Custom() && t.Interpreted() {
		return "No Ollama TEMPLATE: the run's " + settingLabel(c) + " is Jinja, and whet translates only its built-in families (" + strings.Join(datasets.TemplateNames(), ", ") + ") to Ollama's Go templates. The GGUF's tokenizer.chat_template holds the run's template, but Ollama may not understand it: check its replies, or write a TEMPLATE by hand."
	}
	if t.Interpreted() {
		return "No Ollama TEMPLATE: this model's own Jinja chat template has no Go translation in whet; Ollama reads the GGUF's tokenizer.chat_template instead (check its replies, or write a TEMPLATE by hand)."
	}
	return "No Ollama TEMPLATE for chat template " + t.Name + ": write one by hand if Ollama's guess from the GGUF is wrong."
}

// settingLabel names a custom template's setting for a message: the field
// and its value, or for Jinja text in the run file the field alone.
func settingLabel(c *ChatTemplate) string {
	if datasets.IsTemplateText(c.Setting) {
		return c.Field + " (Jinja text)"
	}
	return c.Field + " " + c.Setting
}

// ollamaTemplateFor is the TEMPLATE for src's chat template, false when
// whet has none (the Modelfile then says why: NoOllamaTemplate).
func ollamaTemplateFor(src *Source) (string, bool) {
	if src.Template == nil {
		return "", false
	}
	eos := src.Template.EOS
	if s, ok := src.Tok.Config()["eos_token"].(string); ok && s != "" {
		eos = s
	}
	tpl, ok := OllamaTemplate(src.Template.Name, eos)
	return tpl, ok && !strings.Contains(tpl, `"""`)
}

// Modelfile writes an Ollama Modelfile for src's GGUF at from: FROM, the
// chat TEMPLATE when the template is known, and a stop PARAMETER for every
// stop token and string.
func Modelfile(src *Source, from string) (string, error) {
	var b strings.Builder
	fmt.Fprintf(&b, "# Ollama Modelfile written by whet export for %s.\n", src.Name)
	fmt.Fprintf(&b, "# Create the model with: ollama create %s -f Modelfile\n", ollamaName(src.Name))
	fmt.Fprintf(&b, "FROM %s\n", from)
	var stops []string
	if src.Template != nil {
		if c := src.Chat; c.Custom() {
			fmt.Fprintf(&b, "# Chat template: the run's %s, which it was trained with (not the base model's own).\n", settingLabel(c))
		}
		if tpl, ok := ollamaTemplateFor(src); ok {
			fmt.Fprintf(&b, "TEMPLATE \"\"\"%s\"\"\"\n", tpl)
		} else {
			// Ollama then falls back to the GGUF's tokenizer.chat_template.
			fmt.Fprintf(&b, "# %s\n", NoOllamaTemplate(src.chat()))
		}
		stops = append(stops, src.Template.StopTokens...)
		stops = append(stops, src.Template.StopStrings...)
	}
	for _, id := range src.StopIDs() {
		if t := src.Tok.Token(id); t != "" && src.Tok.IsSpecial(id) {
			stops = append(stops, t)
		}
	}
	seen := map[string]bool{}
	var uniq []string
	for _, s := range stops {
		if s != "" && !seen[s] {
			seen[s] = true
			uniq = append(uniq, s)
		}
	}
	sort.Strings(uniq)
	for _, s := range uniq {
		fmt.Fprintf(&b, "PARAMETER stop %s\n", strconv.Quote(s))
	}
	params, err := samplingParameters(src.ModelDir)
	if err != nil {
		return "", err
	}
	for _, p := range params {
		fmt.Fprintf(&b, "PARAMETER %s %s\n", p[0], p[1])
	}
	if rs := src.Model.Cfg.RopeScaling; rs != nil && rs.Type == "longrope" && rs.OriginalMaxPositionEmbeddings > 0 {
		// llama.cpp rounds its context up to a multiple of 256.
		orig := rs.OriginalMaxPositionEmbeddings
		fmt.Fprintf(&b, "# LongRoPE: llama.cpp turns every position by the long factors once its context (rounded up to\n")
		fmt.Fprintf(&b, "# 256 tokens) is longer than the original %d (transformers only once a sequence is).\n", orig)
		if ctx := orig / 256 * 256; ctx > 0 {
			fmt.Fprintf(&b, "# This context keeps the short factors the model was trained with; raise it for longer prompts.\n")
			fmt.Fprintf(&b, "PARAMETER num_ctx %d\n", ctx)
		}
	}
	return b.String(), nil
}

// samplingParameters turns the sampling settings of the model's
// generation_config.json (Qwen3 and Gemma 3 publish theirs) into Ollama
// PARAMETER lines, in a fixed order; none unless it sets do_sample
// (transformers' generate is greedy without it, and Ollama's defaults then
// stand).
func samplingParameters(modelDir string) ([][2]string, error) {
	path := filepath.Join(modelDir, "generation_config.json")
	if _, err := os.Stat(path); err != nil {
		return nil, nil
	}
	gen, err := readJSONMap(path)
	if err != nil {
		return nil, fmt.Errorf("export: %w", err)
	}
	if sample, _ := gen["do_sample"].(bool); !sample {
		return nil, nil
	}
	var out [][2]string
	for _, k := range [][2]string{{"temperature", "temperature"}, {"top_p", "top_p"}, {"top_k", "top_k"}, {"min_p", "min_p"}, {"repetition_penalty", "repeat_penalty"}} {
		v, ok := gen[k[0]]
		if !ok || v == nil {
			continue
		}
		n, ok := v.(json.Number)
		if !ok {
			return nil, fmt.Errorf("export: %s: %s: %v is not a number", path, k[0], v)
		}
		out = append(out, [2]string{k[1], n.String()})
	}
	return out, nil
}

// ollamaName lowercases a run name into what ollama create accepts.
func ollamaName(s string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(s) {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9', r == '-', r == '_', r == '.':
			b.WriteRune(r)
		default:
			b.WriteByte('-')
		}
	}
	if b.Len() == 0 {
		return "whet-model"
	}
	return b.String()
}
