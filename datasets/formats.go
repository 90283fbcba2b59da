package datasets

import (
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"strings"

	"whet/datasets/vision"
)

// Format is the shape of a dataset's rows.
type Format string

const (
	FormatAuto       Format = "auto"
	FormatAlpaca     Format = "alpaca"     // instruction, input, output (+ system, history)
	FormatShareGPT   Format = "sharegpt"   // conversations: [{from, value}]
	FormatMessages   Format = "messages"   // messages: [{role, content}]
	FormatText       Format = "text"       // text
	FormatPreference Format = "preference" // prompt, chosen, rejected (strings or messages)
	FormatCompletion Format = "completion" // prompt, completion (TRL's prompt-completion; strings or messages)
	FormatPrompt     Format = "prompt"     // prompt (+ answer): prompt-only rows for GRPO, which generates the completions
)

// Formats lists the formats a user can name.
var Formats = []Format{FormatAlpaca, FormatShareGPT, FormatMessages, FormatText, FormatPreference, FormatCompletion, FormatPrompt}

// ParseFormat checks a format name; "" means auto.
func ParseFormat(s string) (Format, error) {
	f := Format(strings.ToLower(strings.TrimSpace(s)))
	if f == "" || f == FormatAuto {
		return FormatAuto, nil
	}
	for _, k := range Formats {
		if f == k {
			return f, nil
		}
	}
	if f == "chat" || f == "openai" {
		return FormatMessages, nil
	}
	if f == "dpo" {
		return FormatPreference, nil
	}
	if f == "grpo" || f == "prompt-only" {
		return FormatPrompt, nil
	}
	names := make([]string, len(Formats))
	for i, k := range Formats {
		names[i] = string(k)
	}
	return "", fmt.Errorf("unknown %q (want auto, %s)", s, strings.Join(names, ", "))
}

// Objective is what a training method learns from: preference pairs
// (DPO), prompts it answers itself (GRPO) or single answers (supervised
// fine-tuning). The empty Objective accepts any data.
type Objective string

const (
	ObjectiveAny        Objective = ""
	ObjectivePreference Objective = "preference" // DPO: chosen and rejected answers to one prompt
	ObjectiveSFT        Objective = "sft"        // every other method: one answer per prompt
	ObjectivePrompts    Objective = "prompts"    // GRPO: prompts (with an answer column for the answer checks)
)

// Check is the one rule matching data to a method, used by Prepare (so
// whet train refuses before tokenizing) and by the studio's data page:
// DPO on single answers has no pair to compare, and supervised training on
// preference rows would silently learn from the chosen answers only. name
// is the data path, for the message.
func (o Objective) Check(name string, f Format) error {
	switch {
	case o == ObjectivePreference && f != FormatPreference:
		return fmt.Errorf("DPO needs preference data (prompt, chosen, rejected); %s is %s", name, f)
	case o == ObjectiveSFT && f == FormatPreference:
		return fmt.Errorf("%s holds preference pairs: choose the dpo method for it, or another file", name)
	case o == ObjectivePrompts && f != FormatPrompt:
		return fmt.Errorf("GRPO needs prompt-only data (a prompt column, and an answer column for the answer checks); %s is %s", name, f)
	case o != ObjectivePrompts && o != ObjectiveAny && f == FormatPrompt:
		return fmt.Errorf("%s holds prompts without answers: choose the grpo method for it, or another file", name)
	}
	return nil
}

// Example is one row turned into what a model trains on.
type Example struct {
	Loc Location
	// Messages is the conversation of chat rows, and the prompt of
	// preference rows.
	Messages []Message
	// Text is the document of text rows.
	Text string
	// Chosen and Rejected are the preferred and dispreferred continuations
	// of Messages (preference rows).
	Chosen, Rejected []Message
	// Answer is the answer column of prompt rows ("" when absent), and
	// Fields the row's columns, for GRPO's reward functions.
	Answer string
	Fields map[string]any
	// Images are the row's images in the order of the image parts of
	// Messages (Options.Vision runs; ImagesOf fills it).
	Images []ImageAt
}

// columnNames are the canonical column names a mapping may rename.
var columnNames = []string{
	"instruction", "input", "output", "system", "history",
	"messages", "conversations", "role", "content", "from", "value",
	"text", "prompt", "chosen", "rejected", "completion", "answer",
}

// Columns renames canonical columns to the dataset's own names, e.g.
// {"instruction": "question", "output": "answer"}.
type Columns map[string]string

func (c Columns) validate() error {
	for k := range c {
		ok := false
		for _, n := range columnNames {
			if k == n {
				ok = true
			}
		}
		if !ok {
			return fmt.Errorf("maps unknown column %q (known: %s)", k, strings.Join(columnNames, ", "))
		}
	}
	return nil
}

func (c Columns) name(canonical string) string {
	if n, ok := c[canonical]; ok && n != "" {
		return n
	}
	return canonical
}

// DetectFormat guesses the format from the columns of the first rows.
func DetectFormat(recs []Record, cols Columns) (Format, error) {
	if len(recs) == 0 {
		return "", fmt.Errorf("no rows to detect the format from")
	}
	n := len(recs)
	if n > 20 {
		n = 20
	}
	count := map[string]int{}
	for _, r := range recs[:n] {
		for k, v := range r.Fields {
			if v != nil {
				count[k]++
			}
		}
	}
	has := func(canonical string) bool { return count[cols.name(canonical)]*2 > n }
	switch {
	case has("chosen") && has("rejected"):
		return FormatPreference, nil
	case has("prompt") && has("completion"):
		return FormatCompletion, nil
	case has("prompt") && !has("messages") && !has("conversations") && !has("text"):
		return FormatPrompt, nil
	case has("conversations"):
		return FormatShareGPT, nil
	case has("messages"):
		if l, ok := recs[0].Fields[cols.name("messages")].([]any); ok && len(l) > 0 {
			if m, ok := l[0].(map[string]any); ok {
				if _, hasFrom := m[cols.name("from")]; hasFrom {
					return FormatShareGPT, nil
				}
			}
		}
		return FormatMessages, nil
	case has("instruction") && has("output"):
		return FormatAlpaca, nil
	case has("text"):
		return FormatText, nil
	}
	seen := make([]string, 0, len(count))
	for k := range count {
		seen = append(seen, k)
	}
	sort.Strings(seen)
	return "", fmt.Errorf("%s: cannot tell the data format from the columns (%s); expected one of: "+
		"instruction/input/output (alpaca), conversations (sharegpt), messages, text, prompt/completion, prompt/chosen/rejected (preference), prompt (+ answer, for grpo). "+
		"Set data.format and map your column names with data.columns, e.g. columns: {instruction: question, output: answer}",
		recs[0].Loc.File, strings.Join(seen, ", "))
}

// rowReader pulls typed fields out of one record.
type rowReader struct {
	rec  Record
	cols Columns
}

func (r rowReader) fail(field, reason, detail string) *RowError {
	return &RowError{Loc: r.rec.Loc, Field: field, Reason: reason, Detail: detail}
}

// str returns a text field; numbers and booleans are taken as their text.
func (r rowReader) str(canonical string, required bool) (string, bool, *RowError) {
	name := r.cols.name(canonical)
	v, ok := r.rec.Fields[name]
	if !ok || v == nil {
		if required {
			return "", false, r.fail(name, ReasonMissingField, "missing (needed by this format; map another column to it with data.columns)")
		}
		return "", false, nil
	}
	s, err := scalarText(v)
	if err != "" {
		return "", false, r.fail(name, ReasonWrongType, "want text, got "+err)
	}
	return s, true, nil
}

func scalarText(v any) (string, string) {
	switch x := v.(type) {
	case string:
		return x, ""
	case json.Number:
		return x.String(), ""
	case bool:
		if x {
			return "true", ""
		}
		return "false", ""
	}
	return "", jsonKind(v)
}

// list returns a list field; a string holding a JSON list (a CSV cell) is
// decoded.
func (r rowReader) list(canonical string, required bool) ([]any, bool, *RowError) {
	name := r.cols.name(canonical)
	v, ok := r.rec.Fields[name]
	if !ok || v == nil {
		if required {
			return nil, false, r.fail(name, ReasonMissingField, "missing (needed by this format; map another column to it with data.columns)")
		}
		return nil, false, nil
	}
	if s, isStr := v.(string); isStr {
		t := strings.TrimSpace(s)
		if !strings.HasPrefix(t, "[") {
			return nil, false, r.fail(name, ReasonWrongType, "want a list, got a string")
		}
		if bad := loneSurrogate([]byte(t)); bad >= 0 {
			// encoding/json would decode it to U+FFFD.
			return nil, false, r.fail(name, ReasonInvalidUTF8, fmt.Sprintf("the cell's JSON has %s at byte offset %d, half of a UTF-16 surrogate pair, which decodes to U+FFFD; fix the escape", t[bad:bad+6], bad))
		}
		dec := json.NewDecoder(strings.NewReader(t))
		dec.UseNumber()
		var parsed any
		if err := dec.Decode(&parsed); err != nil {
			return nil, false, r.fail(name, ReasonInvalidJSON, "cell holds invalid JSON: "+err.Error())
		}
		v = parsed
	}
	l, isList := v.([]any)
	if !isList {
		return nil, false, r.fail(name, ReasonWrongType, "want a list, got "+jsonKind(v))
	}
	return l, true, nil
}

// roleAliases maps the role names datasets use onto system/user/assistant.
var roleAliases = map[string]string{
	"system": "system", "user": "user", "human": "user", "assistant": "assistant",
	"gpt": "assistant", "model": "assistant", "bot": "assistant", "chatgpt": "assistant", "bard": "assistant",
}

// messages decodes a list of message objects using the given keys.
func (r rowReader) messages(field string, list []any, roleKey, contentKey string) ([]Message, *RowError) {
	out := make([]Message, 0, len(list))
	for i, item := range list {
		where := fmt.Sprintf("%s[%d]", field, i)
		obj, ok := item.(map[string]any)
		if !ok {
			return nil, r.fail(where, ReasonWrongType, "want a message object, got "+jsonKind(item))
		}
		rv, ok := obj[roleKey]
		if !ok {
			return nil, r.fail(where+"."+roleKey, ReasonMissingField, "missing")
		}
		roleText, bad := scalarText(rv)
		if bad != "" {
			return nil, r.fail(where+"."+roleKey, ReasonWrongType, "want text, got "+bad)
		}
		role, known := roleAliases[strings.ToLower(strings.TrimSpace(roleText))]
		if !known {
			return nil, r.fail(where+"."+roleKey, ReasonBadRole, fmt.Sprintf("unknown role %q (want system, user/human or assistant/gpt)", roleText))
		}
		cv, ok := obj[contentKey]
		if !ok {
			return nil, r.fail(where+"."+contentKey, ReasonMissingField, "missing")
		}
		content, parts, err := messageContent(cv)
		if err != "" {
			return nil, r.fail(where+"."+contentKey, ReasonWrongType, err)
		}
		m := Message{Role: role, Content: content, Parts: parts}
		if rc, ok := obj["reasoning_content"].(string); ok && role == "assistant" {
			m.Reasoning = &rc
		}
		out = append(out, m)
	}
	return out, nil
}

// messageContent accepts a string, or OpenAI-style parts of type text
// and image. A content list that holds an image comes back as parts too
// (Message.Parts, with the text parts joined in content): whether the run
// can use them is Prepare's to say (Options.Vision).
func messageContent(v any) (string, []ContentPart, string) {
	if s, bad := scalarText(v); bad == "" {
		return s, nil, ""
	}
	parts, ok := v.([]any)
	if !ok {
		return "", nil, "want text or a list of text parts, got " + jsonKind(v)
	}
	var b strings.Builder
	var out []ContentPart
	images := false
	for i, p := range parts {
		obj, ok := p.(map[string]any)
		if !ok {
			return "", nil, fmt.Sprintf("part %d: want an object, got %s", i, jsonKind(p))
		}
		if t, _ := obj["type"].(string); t != "text" {
			if vision.IsImagePartType(t) {
				images = true
				out = append(out, ContentPart{Type: "image"})
				continue
			}
			return "", nil, fmt.Sprintf("part %d: type %q is not supported (text and image only)", i, t)
		}
		s, ok := obj["text"].(string)
		if !ok {
			return "", nil, fmt.Sprintf("part %d: want a text string", i)
		}
		b.WriteString(s)
		out = append(out, ContentPart{Type: "text", Text: s})
	}
	if !images {
		out = nil
	}
	return b.String(), out, ""
}

// ToExample converts one record in the given (non-auto) format.
func ToExample(rec Record, f Format, cols Columns) (Example, *RowError) {
	r := rowReader{rec: rec, cols: cols}
	ex := Example{Loc: rec.Loc}
	var err *RowError
	switch f {
	case FormatText:
		var s string
		s, _, err = r.str("text", true)
		if err == nil && strings.TrimSpace(s) == "" {
			err = r.fail(cols.name("text"), ReasonEmpty, "empty text")
		}
		ex.Text = s
	case FormatAlpaca:
		ex.Messages, err = r.alpaca()
	case FormatShareGPT:
		ex.Messages, err = r.conversation("conversations", "from", "value")
	case FormatMessages:
		ex.Messages, err = r.conversation("messages", "role", "content")
	case FormatPreference:
		ex.Messages, ex.Chosen, ex.Rejected, err = r.preference()
	case FormatCompletion:
		ex.Messages, err = r.completion()
	case FormatPrompt:
		ex.Messages, ex.Answer, err = r.promptOnly()
		ex.Fields = rec.Fields
	default:
		return ex, r.fail("", "unknown format", fmt.Sprintf("format %q cannot be read row by row", f))
	}
	return ex, err
}

func (r rowReader) alpaca() ([]Message, *RowError) {
	instruction, _, err := r.str("instruction", true)
	if err != nil {
		return nil, err
	}
	input, _, err := r.str("input", false)
	if err != nil {
		return nil, err
	}
	output, _, err := r.str("output", true)
	if err != nil {
		return nil, err
	}
	system, hasSystem, err := r.str("system", false)
	if err != nil {
		return nil, err
	}
	var msgs []Message
	if hasSystem && system != "" {
		msgs = append(msgs, Message{Role: "system", Content: system})
	}
	history, _, err := r.list("history", false)
	if err != nil {
		return nil, err
	}
	field := r.cols.name("history")
	for i, h := range history {
		pair, ok := h.([]any)
		if !ok || len(pair) != 2 {
			return nil, r.fail(fmt.Sprintf("%s[%d]", field, i), ReasonWrongType, "want a [instruction, response] pair")
		}
		q, bad1 := scalarText(pair[0])
		a, bad2 := scalarText(pair[1])
		if bad1 != "" || bad2 != "" {
			return nil, r.fail(fmt.Sprintf("%s[%d]", field, i), ReasonWrongType, "want two strings")
		}
		msgs = append(msgs, Message{Role: "user", Content: q}, Message{Role: "assistant", Content: a})
	}
	prompt := instruction
	if input != "" {
		if prompt != "" {
			prompt += "\n\n"
		}
		prompt += input
	}
	if strings.TrimSpace(prompt) == "" {
		return nil, r.fail(r.cols.name("instruction"), ReasonEmpty, "instruction and input are both empty")
	}
	return append(msgs, Message{Role: "user", Content: prompt}, Message{Role: "assistant", Content: output}), nil
}

func (r rowReader) conversation(canonical, roleKey, contentKey string) ([]Message, *RowError) {
	list, _, err := r.list(canonical, true)
	if err != nil {
		return nil, err
	}
	field := r.cols.name(canonical)
	if len(list) == 0 {
		return nil, r.fail(field, ReasonEmpty, "empty conversation")
	}
	// Rows in a messages column sometimes use ShareGPT's keys and the
	// other way round; follow what the first message uses.
	if first, ok := list[0].(map[string]any); ok {
		if _, has := first[r.cols.name(roleKey)]; !has {
			alt := map[string][2]string{"role": {"from", "value"}, "from": {"role", "content"}}[roleKey]
			if _, hasAlt := first[r.cols.name(alt[0])]; hasAlt {
				roleKey, contentKey = alt[0], alt[1]
			}
		}
	}
	return r.messages(field, list, r.cols.name(roleKey), r.cols.name(contentKey))
}

// turns reads a field given as plain text (one turn of role asText) or as
// a list of messages (a JSON list in a CSV cell too).
func (r rowReader) turns(canonical, asText string) ([]Message, *RowError) {
	name := r.cols.name(canonical)
	switch v := r.rec.Fields[name].(type) {
	case nil:
		return nil, r.fail(name, ReasonMissingField, "missing (needed by this format; map another column to it with data.columns)")
	case string:
		if !strings.HasPrefix(strings.TrimSpace(v), "[") {
			return []Message{{Role: asText, Content: v}}, nil
		}
	}
	list, _, err := r.list(canonical, true)
	if err != nil {
		return nil, err
	}
	return r.messages(name, list, "role", "content")
}

// completion reads TRL's prompt-completion rows: the completion is what
// the model learns to produce.
func (r rowReader) completion() ([]Message, *RowError) {
	prompt, err := r.turns("prompt", "user")
	if err != nil {
		return nil, err
	}
	completion, err := r.turns("completion", "assistant")
	if err != nil {
		return nil, err
	}
	if system, has, err := r.str("system", false); err != nil {
		return nil, err
	} else if has && system != "" && (len(prompt) == 0 || prompt[0].Role != "system") {
		prompt = append([]Message{{Role: "system", Content: system}}, prompt...)
	}
	if len(prompt) == 0 || len(completion) == 0 {
		return nil, r.fail(r.cols.name("completion"), ReasonEmpty, "prompt or completion is empty")
	}
	return append(prompt, completion...), nil
}

// promptOnly reads GRPO's rows: a prompt (text or messages, ending on a
// user turn, since the model writes the answer) and an optional answer
// column (text or a number) for the answer checks.
func (r rowReader) promptOnly() ([]Message, string, *RowError) {
	prompt, err := r.turns("prompt", "user")
	if err != nil {
		return nil, "", err
	}
	if system, has, err := r.str("system", false); err != nil {
		return nil, "", err
	} else if has && system != "" && (len(prompt) == 0 || prompt[0].Role != "system") {
		prompt = append([]Message{{Role: "system", Content: system}}, prompt...)
	}
	pname := r.cols.name("prompt")
	if emptyText(prompt) {
		return nil, "", r.fail(pname, ReasonNoPrompt, "the prompt is empty: GRPO generates answers to it")
	}
	if last := prompt[len(prompt)-1]; last.Role == "assistant" {
		return nil, "", r.fail(pname, ReasonWrongType, "the prompt ends with an assistant turn; GRPO's prompts end with the user's turn, which the model answers")
	}
	answer, _, err := r.str("answer", false)
	if err != nil {
		return nil, "", err
	}
	return prompt, answer, nil
}

// preference reads prompt/chosen/rejected given as strings or message
// lists. Without a prompt column, the messages chosen and rejected share
// at the start are the prompt (TRL's implicit prompt).
func (r rowReader) preference() (prompt, chosen, rejected []Message, err *RowError) {
	if chosen, err = r.turns("chosen", "assistant"); err != nil {
		return nil, nil, nil, err
	}
	if rejected, err = r.turns("rejected", "assistant"); err != nil {
		return nil, nil, nil, err
	}
	pname := r.cols.name("prompt")
	if r.rec.Fields[pname] == nil {
		n := 0
		for n < len(chosen) && n < len(rejected) && sameMessage(chosen[n], rejected[n]) && chosen[n].Role != "assistant" {
			n++
		}
		if n == 0 {
			return nil, nil, nil, r.fail(pname, ReasonNoPrompt, "no prompt column, and chosen and rejected do not start with the same prompt messages")
		}
		prompt, chosen, rejected = chosen[:n], chosen[n:], rejected[n:]
	} else if prompt, err = r.turns("prompt", "user"); err != nil {
		return nil, nil, nil, err
	}
	if system, has, err := r.str("system", false); err != nil {
		return nil, nil, nil, err
	} else if has && system != "" && (len(prompt) == 0 || prompt[0].Role != "system") {
		prompt = append([]Message{{Role: "system", Content: system}}, prompt...)
	}
	if len(chosen) == 0 || len(rejected) == 0 {
		return nil, nil, nil, r.fail(r.cols.name("chosen"), ReasonEmpty, "chosen or rejected has no response after the prompt")
	}
	if emptyText(prompt) {
		return nil, nil, nil, r.fail(pname, ReasonNoPrompt, "the prompt is empty: DPO compares two answers to the same prompt")
	}
	if sameMessages(chosen, rejected) {
		return nil, nil, nil, r.fail(r.cols.name("rejected"), ReasonIdenticalPair, "chosen and rejected are identical, so the pair teaches nothing (and its DPO gradient is zero)")
	}
	return prompt, chosen, rejected, nil
}

// emptyText reports whether no message carries any non-space text.
func emptyText(msgs []Message) bool {
	for _, m := range msgs {
		if strings.TrimSpace(m.Content) != "" {
			return false
		}
	}
	return true
}

// sameMessages compares two turn lists by role and content.
func sameMessages(a, b []Message) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].Role != b[i].Role || a[i].Content != b[i].Content {
			return false
		}
	}
	return true
}

// sameMessage is Message equality as == gave it before Parts (a slice)
// made Message incomparable: the same role, text, reasoning pointer and parts.
func sameMessage(a, b Message) bool {
	return a.Role == b.Role && a.Content == b.Content && a.Reasoning == b.Reasoning && slices.Equal(a.Parts, b.Parts)
}
