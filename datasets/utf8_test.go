package datasets

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/parquet-go/parquet-go"
)

// TestInvalidUTF8IsReported: bytes that are not UTF-8 (here Latin-1 "é",
// 0xE9) and JSON escapes of half a surrogate pair would reach the model as
// U+FFFD. Every reader reports the row (or line and column), the byte
// offset, and the field where it knows one; with skipping on, the row is
// skipped and counted instead.
func TestInvalidUTF8IsReported(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	var pq bytes.Buffer
	type msg struct {
		Role    string `parquet:"role"`
		Content string `parquet:"content"`
	}
	type row struct {
		Messages []msg `parquet:"messages,list"`
	}
	if err := parquet.Write(&pq, []row{
		{Messages: []msg{{"user", "hi"}, {"assistant", "hello"}}},
		{Messages: []msg{{"user", "caf\xe9?"}, {"assistant", "yes"}}},
	}); err != nil {
		t.Fatal(err)
	}
	good := `{"text": "fine"}` + "\n"
	cases := []struct {
		name string
		data []byte
		want []string // in the strict reader's error
	}{
		{"latin1.jsonl", []byte(good + "{\"text\": \"caf\xe9\"}\n"), []string{"latin1.jsonl:2: invalid UTF-8 at byte offset 30 of the file (column 14 of the line)", "iconv"}},
		{"surrogate.jsonl", []byte(good + `{"text": "a\ud800b"}` + "\n"), []string{`surrogate.jsonl:2: \ud800 at byte offset 28 of the file (column 12 of the line) is half of a UTF-16 surrogate pair`}},
		{"latin1.json", []byte("[\n" + `{"text": "ok"},` + "\n{\"text\": \"caf\xe9\"}]"), []string{"latin1.json:3:14: invalid UTF-8 at byte offset 31 of the file"}},
		{"surrogate.json", []byte(`[{"text": "\udc00"}]`), []string{`surrogate.json:1:12: \udc00 is half of a UTF-16 surrogate pair`}},
		{"latin1.csv", []byte("instruction,output\nhi,there\n\"say\",caf\xe9\n"), []string{`latin1.csv: row 2 (line 3): field "output": invalid UTF-8 at byte offset 3 of the value (the value starts at line 3, column 7)`}},
		{"latin1.parquet", pq.Bytes(), []string{`latin1.parquet: row 2: field "messages[0].content": invalid UTF-8 at byte offset 3 of the value`}},
	}
	for _, c := range cases {
		path := write(c.name, c.data)
		_, err := ReadFile(path, false)
		if err == nil {
			t.Errorf("%s: read without an error", c.name)
			continue
		}
		for _, w := range c.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: error %q lacks %q", c.name, err, w)
			}
		}
		if strings.HasSuffix(c.name, ".json") {
			continue // a JSON file is UTF-8 as a whole: no row to skip
		}
		res, err := ReadFile(path, true)
		if err != nil {
			t.Errorf("%s, skipping: %v", c.name, err)
			continue
		}
		if len(res.Records) != 1 || len(res.Bad) != 1 || res.Bad[0].Reason != ReasonInvalidUTF8 {
			t.Errorf("%s, skipping: %d records, bad rows %v", c.name, len(res.Records), res.Bad)
		}
		for _, r := range res.Records {
			for k, v := range r.Fields {
				if s, ok := v.(string); ok && strings.ContainsRune(s, '\uFFFD') {
					t.Errorf("%s: field %s kept U+FFFD: %q", c.name, k, s)
				}
			}
		}
	}
}

// TestValidEscapesAreNotSurrogateErrors: a surrogate pair written as two
// escapes, and escaped backslashes before a u, are valid JSON text.
func TestValidEscapesAreNotSurrogateErrors(t *testing.T) {
	for _, c := range []struct {
		text string
		want int
	}{
		{`"\ud83d\ude00"`, -1},
		{`"\\ud800"`, -1},
		{`"\\\\"`, -1},
		{`"\u00e9\"\ud800"`, 9},
		{`"\ude00\ud83d"`, 1},
		{`"\ud83dx"`, 1},
	} {
		if got := loneSurrogate([]byte(c.text)); got != c.want {
			t.Errorf("loneSurrogate(%s) = %d, want %d", c.text, got, c.want)
		}
	}
}
