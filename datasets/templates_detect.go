package datasets

import "strings"

// templateSignature recognises one family's Jinja chat template by phrases
// only that family's template contains (compared after whitespace is
// normalised), and by phrases that would mean a variant we do not render.
type templateSignature struct {
	name string
	all  []string // every one must appear
	none []string // none may appear
}

// signatures are tried in order; more specific families come first.
var signatures = []templateSignature{
	// Qwen 3: ChatML with <think> handling.
	{name: "qwen-3", all: []string{"<|im_start|>", "</think>", "enable_thinking", "last_query_index"}},
	{name: "qwen-2.5", all: []string{"<|im_start|>", "You are Qwen, created by Alibaba Cloud. You are a helpful assistant."},
		none: []string{"<think>"}},
	// Plain ChatML; Qwen 2's variant adds "You are a helpful assistant." and is not this.
	{name: "chatml", all: []string{`'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'`, `'<|im_start|>assistant\n'`},
		none: []string{"You are", "<think>", "bos_token", "tools"}},
	// Llama 3.2 Vision's template shares these phrases but writes <|image|>,
	// leaves content untrimmed and refuses a system message next to images:
	// the interpreter renders it.
	{name: "llama-3.2", all: []string{"<|start_header_id|>", "Cutting Knowledge Date: December 2023", "strftime_now", "date_string"},
		none: []string{"<|image|>"}},
	{name: "llama-3.1", all: []string{"<|start_header_id|>", "Cutting Knowledge Date: December 2023", "date_string", "builtin_tools"},
		none: []string{"strftime_now"}},
	// Llama 3.0; the variant that appends the assistant header unconditionally
	// lacks the add_generation_prompt test and is not accepted.
	{name: "llama-3.0", all: []string{`'<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + '<|eot_id|>'`, "{% if add_generation_prompt %}", "bos_token + content"},
		none: []string{"Cutting Knowledge Date"}},
	{name: "gemma-3", all: []string{"<start_of_turn>", "first_user_prefix", "<end_of_turn>"}},
	{name: "gemma-2", all: []string{"<start_of_turn>", "System role not supported", "<end_of_turn>"},
		none: []string{"first_user_prefix"}},
	{name: "mistral-v0.3", all: []string{"[AVAILABLE_TOOLS]", `"[INST] " + system_message + "\n\n" + message["content"] + "[/INST]"`, `" " + message["content"]|trim + eos_token`}},
	{name: "phi-4-mini", all: []string{`'<|' + message['role'] + '|>' + message['content'] + '<|end|>'`, `'<|assistant|>'`, "{{ eos_token }}"}},
	{name: "phi-3.5", all: []string{`'<|system|>\n' + message['content'] + '<|end|>\n'`, `'<|assistant|>\n' + message['content'] + '<|end|>\n'`, "message['role'] == 'system' and message['content']", "{{ eos_token }}"}},
	{name: "phi-3", all: []string{`'<|system|>\n' + message['content'] + '<|end|>\n'`, `'<|assistant|>\n' + message['content'] + '<|end|>\n'`, "{{ eos_token }}"},
		none: []string{"message['role'] == 'system' and message['content']"}},
	{name: "alpaca", all: []string{"### Instruction:", "### Response:"}},
	// whet's own plain layout (templates/plain.jinja), so that an export's
	// tokenizer_config.json reads back as the template it was trained with.
	{name: "plain", all: []string{"whet's own plain layout", "message['content'] + eos_token"}},
}

// DetectTemplate names the built-in template that renders like the given
// Jinja chat_template (from tokenizer_config.json), or ok=false when none is
// known to.
func DetectTemplate(jinja string) (name string, ok bool) {
	norm := normalizeJinja(jinja)
	if norm == "" {
		return "", false
	}
	for _, sig := range signatures {
		if matchSignature(norm, sig) {
			return sig.name, true
		}
	}
	return "", false
}

func matchSignature(norm string, sig templateSignature) bool {
	for _, s := range sig.all {
		if !strings.Contains(norm, normalizeJinja(s)) {
			return false
		}
	}
	for _, s := range sig.none {
		if strings.Contains(norm, normalizeJinja(s)) {
			return false
		}
	}
	return true
}

// normalizeJinja collapses every run of whitespace to one space (inside
// string literals too: the phrases we look for are normalised the same way)
// and drops the "-" whitespace-control marks, so that re-indented or
// re-flowed copies of a template still match.
func normalizeJinja(s string) string {
	r := strings.NewReplacer("{%-", "{%", "-%}", "%}", "{{-", "{{", "-}}", "}}")
	s = r.Replace(s)
	return strings.Join(strings.Fields(s), " ")
}
