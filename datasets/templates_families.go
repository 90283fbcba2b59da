package datasets

import (
	"fmt"
	"strings"
)

// Each function below mirrors one family's Jinja template (the text is in
// datasets/templates, see SOURCES.md) for conversations of system, user and
// assistant turns; tool calls are not rendered. Golden tests hold them to
// jinja2's output.

func init() {
	llamaStops := []string{"<|eot_id|>", "<|eom_id|>", "<|end_of_text|>"}
	register(&Template{Name: "llama-3.0", RendersBOS: true, BOS: "<|begin_of_text|>", EOS: "<|eot_id|>",
		StopTokens: llamaStops, StopStrings: llamaStops, render: renderLlama30})
	register(&Template{Name: "llama-3.1", RendersBOS: true, BOS: "<|begin_of_text|>", EOS: "<|eot_id|>",
		StopTokens: llamaStops, StopStrings: llamaStops, render: renderLlama3x(false)})
	register(&Template{Name: "llama-3.2", RendersBOS: true, BOS: "<|begin_of_text|>", EOS: "<|eot_id|>",
		StopTokens: llamaStops, StopStrings: llamaStops, render: renderLlama3x(true)})

	imStops := []string{"<|im_end|>", "<|endoftext|>"}
	register(&Template{Name: "chatml", EOS: "<|im_end|>", StopTokens: imStops, StopStrings: imStops, render: renderChatML})
	register(&Template{Name: "qwen-2.5", EOS: "<|im_end|>", StopTokens: imStops, StopStrings: imStops, render: renderQwen25})
	register(&Template{Name: "qwen-3", EOS: "<|im_end|>", StopTokens: imStops, StopStrings: imStops, render: renderQwen3})

	gemmaStops := []string{"<end_of_turn>", "<eos>"}
	register(&Template{Name: "gemma-2", RendersBOS: true, BOS: "<bos>", EOS: "<eos>",
		StopTokens: gemmaStops, StopStrings: gemmaStops, render: renderGemma(false)})
	register(&Template{Name: "gemma-3", RendersBOS: true, BOS: "<bos>", EOS: "<end_of_turn>",
		StopTokens: gemmaStops, StopStrings: gemmaStops, render: renderGemma(true), parts: true})

	register(&Template{Name: "mistral-v0.3", RendersBOS: true, BOS: "<s>", EOS: "</s>",
		StopTokens: []string{"</s>"}, StopStrings: []string{"</s>", "[INST]"}, render: renderMistral})

	phiStops := []string{"<|end|>", "<|endoftext|>"}
	register(&Template{Name: "phi-3", BOS: "<s>", EOS: "<|endoftext|>",
		StopTokens: phiStops, StopStrings: append(phiStops, "<|user|>"), render: renderPhi3(false)})
	register(&Template{Name: "phi-3.5", BOS: "<s>", EOS: "<|endoftext|>",
		StopTokens: phiStops, StopStrings: append(phiStops, "<|user|>"), render: renderPhi3(true)})
	// Phi-4-mini's BOS and EOS are both <|endoftext|>; its tokenizer adds
	// neither, and the template prints only the EOS.
	register(&Template{Name: "phi-4-mini", BOS: "<|endoftext|>", EOS: "<|endoftext|>",
		StopTokens: phiStops, StopStrings: append(phiStops, "<|user|>"), render: renderPhi4Mini})

	register(&Template{Name: "alpaca", AddSpecialTokens: true, BOS: "<s>", EOS: "</s>",
		StopTokens: nil, StopStrings: []string{"### Instruction:"}, render: renderAlpaca})

	register(&Template{Name: "plain", AddSpecialTokens: true, BOS: "<s>", EOS: "</s>", render: renderPlain})
}

func unsupportedRole(role string) error {
	return fmt.Errorf("role %q is not supported (system, user and assistant only)", role)
}

func checkRoles(msgs []Message) error {
	for _, m := range msgs {
		switch m.Role {
		case "system", "user", "assistant":
		default:
			return unsupportedRole(m.Role)
		}
	}
	return nil
}

const llamaAssistantHeader = "<|start_header_id|>assistant<|end_header_id|>\n\n"

// llamaTurns writes header + trimmed content + <|eot_id|> for each message.
func llamaTurns(w *renderWriter, msgs []Message) {
	for _, m := range msgs {
		w.text("<|start_header_id|>", m.Role, "<|end_header_id|>\n\n")
		if m.Role == "assistant" {
			w.assistant(pyStrip(m.Content), "<|eot_id|>")
		} else {
			w.text(pyStrip(m.Content), "<|eot_id|>")
		}
	}
}

func renderLlama30(w *renderWriter, msgs []Message, o *RenderOptions) error {
	if err := checkRoles(msgs); err != nil {
		return err
	}
	w.text(o.BOS)
	llamaTurns(w, msgs)
	if o.AddGenerationPrompt {
		w.text(llamaAssistantHeader)
	}
	return nil
}

// renderLlama3x is Llama 3.1 and 3.2: a system header that always carries the
// knowledge cutoff and a date, then the turns. 3.2 takes the date from
// strftime_now, 3.1 from a fixed default.
func renderLlama3x(dateFromClock bool) func(*renderWriter, []Message, *RenderOptions) error {
	return func(w *renderWriter, msgs []Message, o *RenderOptions) error {
		if err := checkRoles(msgs); err != nil {
			return err
		}
		date := o.DateString
		if date == "" {
			date = "26 Jul 2024"
			if dateFromClock {
				date = o.Now().Format("02 Jan 2006")
			}
		}
		system := ""
		if msgs[0].Role == "system" {
			system = pyStrip(msgs[0].Content)
			msgs = msgs[1:]
		}
		w.text(o.BOS, "<|start_header_id|>system<|end_header_id|>\n\n",
			"Cutting Knowledge Date: December 2023\n", "Today Date: ", date, "\n\n", system, "<|eot_id|>")
		llamaTurns(w, msgs)
		if o.AddGenerationPrompt {
			w.text(llamaAssistantHeader)
		}
		return nil
	}
}

// imTurn writes one ChatML turn.
func imTurn(w *renderWriter, m Message) {
	w.text("<|im_start|>", m.Role, "\n")
	if m.Role == "assistant" {
		w.assistant(m.Content, "<|im_end|>")
	} else {
		w.text(m.Content, "<|im_end|>")
	}
	w.text("\n")
}

func renderChatML(w *renderWriter, msgs []Message, o *RenderOptions) error {
	if err := checkRoles(msgs); err != nil {
		return err
	}
	for _, m := range msgs {
		imTurn(w, m)
	}
	if o.AddGenerationPrompt {
		w.text("<|im_start|>assistant\n")
	}
	return nil
}

const qwenDefaultSystem = "You are Qwen, created by Alibaba Cloud. You are a helpful assistant."

func renderQwen25(w *renderWriter, msgs []Message, o *RenderOptions) error {
	if err := checkRoles(msgs); err != nil {
		return err
	}
	if msgs[0].Role == "system" {
		w.text("<|im_start|>system\n", msgs[0].Content, "<|im_end|>\n")
	} else {
		w.text("<|im_start|>system\n", qwenDefaultSystem, "<|im_end|>\n")
	}
	for i, m := range msgs {
		if m.Role == "system" && i == 0 {
			continue // already written above
		}
		imTurn(w, m)
	}
	if o.AddGenerationPrompt {
		w.text("<|im_start|>assistant\n")
	}
	return nil
}

// renderQwen3 follows Qwen 3's template: reasoning is kept only for assistant
// turns after the last user query, and the final assistant turn always gets a
// (possibly empty) <think> block.
func renderQwen3(w *renderWriter, msgs []Message, o *RenderOptions) error {
	if err := checkRoles(msgs); err != nil {
		return err
	}
	if msgs[0].Role == "system" {
		w.text("<|im_start|>system\n", msgs[0].Content, "<|im_end|>\n")
	}
	lastQuery := len(msgs) - 1
	for i := len(msgs) - 1; i >= 0; i-- {
		c := msgs[i].Content
		if msgs[i].Role == "user" && !(strings.HasPrefix(c, "<tool_response>") && strings.HasSuffix(c, "</tool_response>")) {
			lastQuery = i
			break
		}
	}
	for i, m := range msgs {
		switch {
		case m.Role == "user" || (m.Role == "system" && i != 0):
			imTurn(w, m)
		case m.Role == "assistant":
			content, reasoning := m.Content, ""
			if m.Reasoning != nil {
				reasoning = *m.Reasoning
			} else if strings.Contains(content, "</think>") {
				parts := strings.Split(content, "</think>")
				content = strings.TrimLeft(parts[len(parts)-1], "\n")
				before := strings.Split(strings.TrimRight(parts[0], "\n"), "<think>")
				reasoning = strings.TrimLeft(before[len(before)-1], "\n")
			}
			w.text("<|im_start|>assistant\n")
			if i > lastQuery && (i == len(msgs)-1 || reasoning != "") {
				w.assistant("<think>\n", strings.Trim(reasoning, "\n"), "\n</think>\n\n", strings.TrimLeft(content, "\n"))
			} else {
				w.assistant(content)
			}
			w.assistant("<|im_end|>")
			w.text("\n")
		}
	}
	if o.AddGenerationPrompt {
		w.text("<|im_start|>assistant\n")
		if o.EnableThinking != nil && !*o.EnableThinking {
			w.text("<think>\n\n</think>\n\n")
		}
	}
	return nil
}

// renderGemma is Gemma 2 (no system role) and Gemma 3 (system text folded
// into the first user turn); the assistant role is called "model".
func renderGemma(foldSystem bool) func(*renderWriter, []Message, *RenderOptions) error {
	return func(w *renderWriter, msgs []Message, o *RenderOptions) error {
		if err := checkRoles(msgs); err != nil {
			return err
		}
		w.text(o.BOS)
		prefix := ""
		if msgs[0].Role == "system" {
			if !foldSystem {
				return fmt.Errorf("system role not supported")
			}
			prefix = msgs[0].Content + "\n\n"
			if msgs[0].Parts != nil {
				// The template reads content[0]['text'] of a list, untrimmed.
				if len(msgs[0].Parts) == 0 || msgs[0].Parts[0].Type != "text" {
					return fmt.Errorf("a system message given as a list must start with a text part")
				}
				prefix = msgs[0].Parts[0].Text + "\n\n"
			}
			msgs = msgs[1:]
		}
		for i, m := range msgs {
			if (m.Role == "user") != (i%2 == 0) {
				return errAlternate
			}
			role := m.Role
			if role == "assistant" {
				role = "model"
			}
			w.text("<start_of_turn>", role, "\n")
			if i == 0 {
				w.text(prefix)
			}
			out := w.text
			if m.Role == "assistant" {
				out = w.assistant
			}
			if m.Parts == nil {
				out(pyStrip(m.Content))
			} else {
				// Gemma 3's template: <start_of_image> where an image part
				// is, each text part trimmed on its own, other types skipped.
				for _, p := range m.Parts {
					switch p.Type {
					case "image":
						out("<start_of_image>")
					case "text":
						out(pyStrip(p.Text))
					}
				}
			}
			out("<end_of_turn>")
			w.text("\n")
		}
		if o.AddGenerationPrompt {
			w.text("<start_of_turn>model\n")
		}
		return nil
	}
}

// renderMistral is Mistral 7B Instruct v0.3: the system prompt goes into the
// last user turn only (so a conversation ending with an assistant turn
// carries none), and assistant turns are " " + trimmed content + </s>. The
// template has no generation prompt: "[/INST]" already ends the prompt.
func renderMistral(w *renderWriter, msgs []Message, o *RenderOptions) error {
	system, hasSystem := "", false
	if msgs[0].Role == "system" {
		system, hasSystem = msgs[0].Content, true
		msgs = msgs[1:]
	}
	for i, m := range msgs {
		if (m.Role == "user") != (i%2 == 0) {
			return fmt.Errorf("after the optional system message, %w", errAlternate)
		}
	}
	w.text(o.BOS)
	for i, m := range msgs {
		switch m.Role {
		case "user":
			if i == len(msgs)-1 && hasSystem {
				w.text("[INST] ", system, "\n\n", m.Content, "[/INST]")
			} else {
				w.text("[INST] ", m.Content, "[/INST]")
			}
		case "assistant":
			// The leading space is part of the span: SentencePiece glues it
			// to the first content token.
			w.assistant(" ", pyStrip(m.Content), o.EOS)
		default:
			return fmt.Errorf("only user and assistant roles are supported, with the exception of an initial optional system message (got %q)", m.Role)
		}
	}
	return nil
}

// renderPhi3 is Phi-3 mini/medium; Phi-3.5 skips an empty system message.
// Without a generation prompt the text ends with the EOS token.
func renderPhi3(skipEmptySystem bool) func(*renderWriter, []Message, *RenderOptions) error {
	return func(w *renderWriter, msgs []Message, o *RenderOptions) error {
		if err := checkRoles(msgs); err != nil {
			return err
		}
		for _, m := range msgs {
			switch m.Role {
			case "system":
				if skipEmptySystem && m.Content == "" {
					continue
				}
				w.text("<|system|>\n", m.Content, "<|end|>\n")
			case "user":
				w.text("<|user|>\n", m.Content, "<|end|>\n")
			case "assistant":
				w.text("<|assistant|>\n")
				w.assistant(m.Content, "<|end|>")
				w.text("\n")
			}
		}
		if o.AddGenerationPrompt {
			w.text("<|assistant|>\n")
		} else {
			w.text(o.EOS)
		}
		return nil
	}
}

// renderPhi4Mini is Phi-4-mini-instruct: "<|role|>" + content + "<|end|>"
// for every turn with no newlines, an empty system message kept, then
// "<|assistant|>" or the EOS token. The template's tool list (a "tools" key
// on the system message) is not rendered: Message has no such field.
func renderPhi4Mini(w *renderWriter, msgs []Message, o *RenderOptions) error {
	if err := checkRoles(msgs); err != nil {
		return err
	}
	for _, m := range msgs {
		w.text("<|", m.Role, "|>")
		if m.Role == "assistant" {
			w.assistant(m.Content, "<|end|>")
		} else {
			w.text(m.Content, "<|end|>")
		}
	}
	if o.AddGenerationPrompt {
		w.text("<|assistant|>")
	} else {
		w.text(o.EOS)
	}
	return nil
}

const alpacaPreamble = "Below is an instruction that describes a task. Write a response that appropriately completes the request."

// renderAlpaca is whet's multi-turn form of the Stanford Alpaca prompt
// (datasets/templates/alpaca.jinja). Each user turn already ends with the
// "### Response:" header, so there is no separate generation prompt.
func renderAlpaca(w *renderWriter, msgs []Message, o *RenderOptions) error {
	system := alpacaPreamble
	if msgs[0].Role == "system" {
		system = msgs[0].Content
		msgs = msgs[1:]
	}
	w.text(system, "\n\n")
	for _, m := range msgs {
		switch m.Role {
		case "user":
			w.text("### Instruction:\n", m.Content, "\n\n### Response:\n")
		case "assistant":
			w.assistant(m.Content, o.EOS)
			w.text("\n\n")
		default:
			return fmt.Errorf("alpaca supports only system, user and assistant roles (got %q)", m.Role)
		}
	}
	return nil
}

// renderPlain lays turns end to end with no markup, each assistant turn
// followed by EOS: TRL's layout for prompt-completion text on a model
// without a chat template ("The capital of Chile is" + " Santiago." + EOS).
// It is whet's own; templates/plain.jinja is its Jinja (the text an export
// writes), held equal by the goldens like the families'.
func renderPlain(w *renderWriter, msgs []Message, o *RenderOptions) error {
	if err := checkRoles(msgs); err != nil {
		return err
	}
	for _, m := range msgs {
		if m.Role == "assistant" {
			w.assistant(m.Content, o.EOS)
		} else {
			w.text(m.Content)
		}
	}
	return nil
}
