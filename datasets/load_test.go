package datasets

import (
	"bytes"
	"os"
	"strings"
	"testing"
)

const fixtures = "../testdata/datasets/"

func TestReadFileEveryLoader(t *testing.T) {
	cases := []struct {
		file string
		rows int
		key  string // a column every row has
	}{
		{"alpaca.jsonl", 4, "instruction"},
		{"alpaca.csv", 3, "output"},
		{"alpaca.parquet", 2, "instruction"},
		{"sharegpt.json", 2, "conversations"},
		{"messages.json", 2, "messages"},
		{"messages.jsonl", 3, "messages"},
		{"messages.parquet", 3, "messages"},
		{"text.jsonl", 3, "text"},
		{"text.csv", 2, "text"},
		{"preference.jsonl", 2, "chosen"},
		{"two-lists.json", 1, "text"},
	}
	// One conversation as the whole file is one row, not a list of rows.
	if res, err := ReadFile(fixtures+"one-row.json", false); err != nil || len(res.Records) != 1 || res.Records[0].Fields["messages"] == nil {
		t.Errorf("one-row.json: %v %+v", err, res)
	}
	// JSON Lines saved as .json is read line by line.
	res, err := ReadFile(fixtures+"lines.json", true)
	if err != nil || len(res.Records) != 2 || len(res.Bad) != 1 || res.Bad[0].Loc.String() != fixtures+"lines.json:3" {
		t.Errorf("lines.json: %v %+v", err, res)
	}
	for _, c := range cases {
		res, err := ReadFile(fixtures+c.file, false)
		if err != nil {
			t.Errorf("%s: %v", c.file, err)
			continue
		}
		if len(res.Records) != c.rows || len(res.Bad) != 0 {
			t.Errorf("%s: %d records, %d bad; want %d, 0", c.file, len(res.Records), len(res.Bad), c.rows)
		}
		for _, r := range res.Records {
			if _, ok := r.Fields[c.key]; !ok {
				t.Errorf("%s (%s): no %q field in %v", c.file, r.Loc, c.key, r.Fields)
			}
		}
	}
}

func TestReadFileLocations(t *testing.T) {
	res, err := ReadFile(fixtures+"messages.jsonl", false)
	if err != nil {
		t.Fatal(err)
	}
	// Line 2 is blank: the third object sits on line 4.
	if got := res.Records[2].Loc.String(); got != fixtures+"messages.jsonl:4" {
		t.Errorf("JSONL location %q", got)
	}
	res, err = ReadFile(fixtures+"messages.json", false)
	if err != nil {
		t.Fatal(err)
	}
	if got := res.Records[1].Loc.String(); got != fixtures+"messages.json: data[1]" {
		t.Errorf("JSON location %q", got)
	}
	res, err = ReadFile(fixtures+"alpaca.csv", false)
	if err != nil {
		t.Fatal(err)
	}
	// The third data row starts on line 4 and spans two lines.
	if got := res.Records[2].Loc.String(); got != fixtures+"alpaca.csv: row 3 (line 4)" {
		t.Errorf("CSV location %q", got)
	}
	if got := res.Records[2].Fields["output"]; got != "line one\nline two" {
		t.Errorf("CSV multi-line cell %q", got)
	}
	res, err = ReadFile(fixtures+"messages.parquet", false)
	if err != nil {
		t.Fatal(err)
	}
	if got := res.Records[1].Loc.String(); got != fixtures+"messages.parquet: row 2" {
		t.Errorf("Parquet location %q", got)
	}
	msgs, ok := res.Records[1].Fields["messages"].([]any)
	if !ok || len(msgs) != 3 {
		t.Fatalf("Parquet nested messages: %#v", res.Records[1].Fields["messages"])
	}
	if m, _ := msgs[2].(map[string]any); m["role"] != "assistant" || m["content"] != "Cat, hat." {
		t.Errorf("Parquet message: %#v", msgs[2])
	}
}

func TestReadFileErrorsNameThePlace(t *testing.T) {
	cases := []struct {
		file string
		want []string
	}{
		{"bad-rows.jsonl", []string{"bad-rows.jsonl:2", "invalid JSON"}},
		{"bad-rows.csv", []string{"bad-rows.csv: row 2 (line 3)", "4 fields, the header has 3"}},
		{"bad-syntax.json", []string{"bad-syntax.json:4:", "invalid JSON"}},
		{"ambiguous.json", []string{"ambiguous.json", "several lists", "first, second"}},
		{"bad-items.json", []string{"bad-items.json: [1]", "want a JSON object, got a string"}},
		{"truncated.parquet", []string{"truncated.parquet", "not a readable Parquet file"}},
		{"missing.jsonl", []string{"missing.jsonl"}},
		{"notes.txt", []string{"notes.txt", "unknown data file type"}},
	}
	for _, c := range cases {
		_, err := ReadFile(fixtures+c.file, false)
		if err == nil {
			t.Errorf("%s: no error", c.file)
			continue
		}
		for _, w := range c.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: error %q lacks %q", c.file, err, w)
			}
		}
	}
}

func TestReadFileSkipsBadRows(t *testing.T) {
	res, err := ReadFile(fixtures+"bad-rows.jsonl", true)
	if err != nil {
		t.Fatal(err)
	}
	// Lines 2 (broken JSON) and 3 (an array) are unreadable; the rest parse.
	if len(res.Bad) != 2 || len(res.Records) != 7 {
		t.Fatalf("%d bad, %d records; want 2, 7", len(res.Bad), len(res.Records))
	}
	if res.Bad[0].Reason != ReasonInvalidJSON || res.Bad[1].Reason != ReasonNotObject || res.Bad[1].Loc.Line != 3 {
		t.Errorf("bad rows: %v; %v", res.Bad[0], res.Bad[1])
	}
	res, err = ReadFile(fixtures+"bad-rows.csv", true)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Bad) != 2 || len(res.Records) != 2 {
		t.Fatalf("CSV: %d bad, %d records; want 2, 2: %v", len(res.Bad), len(res.Records), res.Bad)
	}
	if res.Records[1].Fields["instruction"] != "Another good row" {
		t.Errorf("CSV reader lost its place after bad rows: %v", res.Records[1].Fields)
	}
}

// TestCorruptParquetIsTheFilesError flips single bytes of the fixtures'
// page indexes where parquet-go v0.32.0 panicked (slice bounds and
// makeslice in ReadPageIndex, found by random mutation): each must come
// back as an error naming the file.
func TestCorruptParquetIsTheFilesError(t *testing.T) {
	cases := []struct {
		file string
		pos  int
		val  byte
	}{
		{"messages.parquet", 847, 131},
		{"messages.parquet", 839, 123},
		{"messages.parquet", 841, 1},
		{"alpaca.parquet", 882, 79},
		{"alpaca.parquet", 796, 37},
		{"messages-arrow.parquet", 813, 109},
	}
	for _, c := range cases {
		data, err := os.ReadFile(fixtures + c.file)
		if err != nil {
			t.Fatal(err)
		}
		data[c.pos] = c.val
		_, err = ReadParquet(bytes.NewReader(data), int64(len(data)), c.file, false)
		if err == nil {
			t.Errorf("%s with byte %d = %d: no error", c.file, c.pos, c.val)
			continue
		}
		if !strings.HasPrefix(err.Error(), c.file+": ") {
			t.Errorf("%s with byte %d = %d: error does not name the file: %v", c.file, c.pos, c.val, err)
		}
	}
}
