package datasets

import (
	"reflect"
	"strings"
	"testing"
)

func readExamples(t *testing.T, file string, f Format, cols Columns) ([]Example, []*RowError) {
	t.Helper()
	res, err := ReadFile(fixtures+file, true)
	if err != nil {
		t.Fatal(err)
	}
	if f == FormatAuto {
		if f, err = DetectFormat(res.Records, cols); err != nil {
			t.Fatal(err)
		}
	}
	var exs []Example
	bad := res.Bad
	for _, r := range res.Records {
		ex, e := ToExample(r, f, cols)
		if e != nil {
			bad = append(bad, e)
			continue
		}
		exs = append(exs, ex)
	}
	return exs, bad
}

func TestDetectFormat(t *testing.T) {
	for file, want := range map[string]Format{
		"alpaca.jsonl": FormatAlpaca, "alpaca.csv": FormatAlpaca, "alpaca.parquet": FormatAlpaca,
		"sharegpt.json": FormatShareGPT, "messages.json": FormatMessages, "messages.jsonl": FormatMessages,
		"messages.parquet": FormatMessages, "text.jsonl": FormatText, "text.csv": FormatText,
		"preference.jsonl": FormatPreference, "preference-messages.jsonl": FormatPreference,
		"bad-role.parquet": FormatShareGPT, "completion.jsonl": FormatCompletion,
	} {
		res, err := ReadFile(fixtures+file, false)
		if err != nil {
			t.Fatal(err)
		}
		got, err := DetectFormat(res.Records, nil)
		if err != nil || got != want {
			t.Errorf("%s: DetectFormat = %q, %v; want %q", file, got, err, want)
		}
	}
	res, err := ReadFile(fixtures+"unknown-columns.jsonl", false)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := DetectFormat(res.Records, nil); err == nil || !strings.Contains(err.Error(), "answer, question") || !strings.Contains(err.Error(), "data.columns") {
		t.Errorf("unknown columns: %v", err)
	}
	got, err := DetectFormat(res.Records, Columns{"instruction": "question", "output": "answer"})
	if err != nil || got != FormatAlpaca {
		t.Errorf("mapped columns: %q, %v", got, err)
	}
}

func TestAlpacaRows(t *testing.T) {
	exs, bad := readExamples(t, "alpaca.jsonl", FormatAuto, nil)
	if len(bad) != 0 || len(exs) != 4 {
		t.Fatalf("%d examples, bad %v", len(exs), bad)
	}
	want := []Message{{Role: "user", Content: "Translate to French.\n\nGood night"}, {Role: "assistant", Content: "Bonne nuit"}}
	if !reflect.DeepEqual(exs[1].Messages, want) {
		t.Errorf("instruction+input: %+v", exs[1].Messages)
	}
	if exs[2].Messages[1].Content != "42" {
		t.Errorf("numeric output: %+v", exs[2].Messages)
	}
	want = []Message{
		{Role: "system", Content: "You are a weather bot."},
		{Role: "user", Content: "Hi"}, {Role: "assistant", Content: "Hello!"},
		{Role: "user", Content: "Is it cold?"}, {Role: "assistant", Content: "No, mild."},
		{Role: "user", Content: "Continue the chat."}, {Role: "assistant", Content: "Sure, it is sunny."},
	}
	if !reflect.DeepEqual(exs[3].Messages, want) {
		t.Errorf("system+history: %+v", exs[3].Messages)
	}
	exs, bad = readExamples(t, "unknown-columns.jsonl", FormatAlpaca, Columns{"instruction": "question", "output": "answer"})
	if len(bad) != 0 || len(exs) != 2 || exs[0].Messages[1].Content != "Madrid." {
		t.Errorf("column mapping: %+v %v", exs, bad)
	}
	exs, bad = readExamples(t, "alpaca.parquet", FormatAuto, nil)
	if len(bad) != 0 || len(exs) != 2 || exs[1].Messages[0].Content != "Rewrite politely.\n\na kind reply" {
		t.Errorf("parquet alpaca: %+v %v", exs, bad)
	}
}

func TestChatRows(t *testing.T) {
	exs, bad := readExamples(t, "sharegpt.json", FormatAuto, nil)
	if len(bad) != 0 || len(exs) != 2 {
		t.Fatalf("sharegpt: %d, %v", len(exs), bad)
	}
	want := []Message{{Role: "system", Content: "You are terse."}, {Role: "user", Content: "Name a prime."}, {Role: "assistant", Content: "7"}}
	if !reflect.DeepEqual(exs[0].Messages, want) {
		t.Errorf("sharegpt roles: %+v", exs[0].Messages)
	}
	exs, bad = readExamples(t, "messages.json", FormatAuto, nil)
	if len(bad) != 0 || exs[1].Messages[1].Content != "Colour of the sky?" {
		t.Errorf("messages with text parts: %+v %v", exs, bad)
	}
	exs, bad = readExamples(t, "messages.parquet", FormatAuto, nil)
	if len(bad) != 0 || len(exs) != 3 || len(exs[2].Messages) != 4 {
		t.Errorf("parquet messages: %+v %v", exs, bad)
	}
	// A messages column holding ShareGPT keys is read with those keys.
	rec := Record{Fields: map[string]any{"messages": []any{
		map[string]any{"from": "human", "value": "a"}, map[string]any{"from": "gpt", "value": "b"}}}}
	ex, err := ToExample(rec, FormatMessages, nil)
	if err != nil || !sameMessage(ex.Messages[1], Message{Role: "assistant", Content: "b"}) {
		t.Errorf("messages with from/value: %+v %v", ex, err)
	}
}

func TestRowErrorsNameTheField(t *testing.T) {
	_, bad := readExamples(t, "bad-rows.jsonl", FormatMessages, nil)
	want := []string{
		"bad-rows.jsonl:2: invalid JSON",
		"bad-rows.jsonl:3: want a JSON object, got a list",
		`bad-rows.jsonl:4: field "messages[1].role": unknown role "robot"`,
		`bad-rows.jsonl:5: field "messages[1].content": want text or a list of text parts, got an object`,
		`bad-rows.jsonl:6: field "messages[0].content": missing`,
		`bad-rows.jsonl:7: field "messages": missing`,
		`bad-rows.jsonl:8: field "messages": empty conversation`,
	}
	if len(bad) != len(want) {
		t.Fatalf("%d bad rows, want %d: %v", len(bad), len(want), bad)
	}
	for i, w := range want {
		if !strings.Contains(bad[i].Error(), w) {
			t.Errorf("bad row %d: %q, want %q", i, bad[i].Error(), w)
		}
	}
	_, bad = readExamples(t, "bad-role.parquet", FormatAuto, nil)
	if len(bad) != 1 || !strings.Contains(bad[0].Error(), `bad-role.parquet: row 2: field "conversations[1].from": unknown role "narrator"`) {
		t.Errorf("parquet bad role: %v", bad)
	}
	_, bad = readExamples(t, "bad-items.json", FormatText, nil)
	if len(bad) != 1 || !strings.Contains(bad[0].Error(), "bad-items.json: [1]") {
		t.Errorf("json bad items: %v", bad)
	}
	_, bad = readExamples(t, "text.jsonl", FormatAlpaca, nil)
	if len(bad) != 3 || !strings.Contains(bad[0].Error(), `field "instruction": missing`) || bad[0].Reason != ReasonMissingField {
		t.Errorf("wrong format: %v", bad)
	}
}

func TestPreferenceRows(t *testing.T) {
	exs, bad := readExamples(t, "preference.jsonl", FormatAuto, nil)
	if len(bad) != 0 || len(exs) != 2 {
		t.Fatalf("%v %v", exs, bad)
	}
	if !reflect.DeepEqual(exs[1].Messages, []Message{{Role: "system", Content: "Be friendly."}, {Role: "user", Content: "Say hi."}}) ||
		!reflect.DeepEqual(exs[1].Chosen, []Message{{Role: "assistant", Content: "Hi!"}}) ||
		!reflect.DeepEqual(exs[1].Rejected, []Message{{Role: "assistant", Content: "No."}}) {
		t.Errorf("plain preference: %+v", exs[1])
	}
	exs, bad = readExamples(t, "preference-messages.jsonl", FormatAuto, nil)
	if len(bad) != 0 || len(exs) != 2 {
		t.Fatalf("%v %v", exs, bad)
	}
	// Implicit prompt: the shared leading user turn.
	if !reflect.DeepEqual(exs[0].Messages, []Message{{Role: "user", Content: "2+2?"}}) || exs[0].Chosen[0].Content != "4" || exs[0].Rejected[0].Content != "5" {
		t.Errorf("implicit prompt: %+v", exs[0])
	}
	if len(exs[1].Messages) != 2 || exs[1].Chosen[0].Content != "Jupiter." {
		t.Errorf("explicit prompt messages: %+v", exs[1])
	}
	rec := Record{Fields: map[string]any{"chosen": "a", "rejected": "b"}}
	if _, err := ToExample(rec, FormatPreference, nil); err == nil || err.Reason != ReasonNoPrompt {
		t.Errorf("no prompt: %v", err)
	}
}

func TestParseFormatAndColumns(t *testing.T) {
	if f, err := ParseFormat(""); err != nil || f != FormatAuto {
		t.Errorf("empty format: %q %v", f, err)
	}
	if _, err := ParseFormat("xml"); err == nil || !strings.Contains(err.Error(), "sharegpt") {
		t.Errorf("unknown format: %v", err)
	}
	if err := (Columns{"questoin": "q"}).validate(); err == nil || !strings.Contains(err.Error(), "questoin") {
		t.Errorf("bad column mapping: %v", err)
	}
}

func TestCompletionRows(t *testing.T) {
	exs, bad := readExamples(t, "completion.jsonl", FormatAuto, nil)
	if len(exs) != 2 || len(bad) != 1 || !strings.Contains(bad[0].Error(), `completion.jsonl:3: field "completion": missing`) {
		t.Fatalf("%+v %v", exs, bad)
	}
	if !reflect.DeepEqual(exs[0].Messages, []Message{{Role: "user", Content: "The capital of Chile is"}, {Role: "assistant", Content: " Santiago."}}) {
		t.Errorf("plain: %+v", exs[0].Messages)
	}
	if !reflect.DeepEqual(exs[1].Messages, []Message{{Role: "user", Content: "Name a colour."}, {Role: "assistant", Content: "Teal."}}) {
		t.Errorf("conversational: %+v", exs[1].Messages)
	}
}

// messages-arrow.parquet has pyarrow's schema shape: optional everything,
// Snappy pages, dictionary-encoded strings, a null content.
func TestArrowStyleParquet(t *testing.T) {
	exs, bad := readExamples(t, "messages-arrow.parquet", FormatAuto, nil)
	if len(exs) != 2 || len(exs[1].Messages) != 3 || !sameMessage(exs[1].Messages[2], Message{Role: "assistant", Content: "4"}) {
		t.Errorf("examples %+v", exs)
	}
	if len(bad) != 1 || !strings.Contains(bad[0].Error(), `messages-arrow.parquet: row 3: field "messages[1].content": want text or a list of text parts, got null`) {
		t.Errorf("bad %v", bad)
	}
}
