package datasets

import (
	"bytes"
	"io"
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
		{"latin1.json", []byte("[\n" + `{"text": "ok"},` + "\n{\"text\": \"caf\xe9\"}]"), []string{"latin1.json: [1]: invalid UTF-8 at byte offset 31 of the file (line 3, column 14)"}},
		{"surrogate.json", []byte(`[{"text": "\udc00"}, {"text": "ok"}]`), []string{`surrogate.json: [0]: \udc00 (half of a UTF-16 surrogate pair, which decodes to U+FFFD) at byte offset 11 of the file (line 1, column 12)`}},
		{"in-object.json", []byte("{\"data\": [{\"text\": \"ok\"}, {\"text\": \"caf\xe9\"}]}"), []string{"in-object.json:1:40: invalid UTF-8 at byte offset 39 of the file"}},
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
		if c.name == "in-object.json" {
			continue // rows are found in top-level arrays only: the file's error
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

// TestDataEncodingConverts: with data.encoding naming a single-byte
// character set, a Latin-1 file reads as the text it holds; a byte the set
// leaves undefined is an error naming its offset; labels whet cannot
// convert exactly are refused.
func TestDataEncodingConverts(t *testing.T) {
	dir := t.TempDir()
	write := func(name, data string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	jsonl := write("latin1.jsonl", "{\"text\": \"caf\xe9 \x80 na\xefve\"}\n")
	csv := write("latin1.csv", "instruction,output\n\"d\xe9j\xe0 vu\",oui\n")
	for _, enc := range []string{"windows-1252", "latin1", " CP1252 "} {
		res, err := ReadFileEncoded(jsonl, enc, false)
		if err != nil || len(res.Records) != 1 || res.Records[0].Fields["text"] != "café € naïve" {
			t.Errorf("%s in %q: %v %+v", jsonl, enc, err, res)
		}
	}
	res, err := ReadFileEncoded(csv, "latin1", false)
	if err != nil || len(res.Records) != 1 || res.Records[0].Fields["instruction"] != "déjà vu" {
		t.Errorf("%s in latin1: %v %+v", csv, err, res)
	}
	if res, err := ReadFileEncoded(jsonl, "utf-8", false); err == nil {
		t.Errorf("Latin-1 bytes read as UTF-8: %+v", res.Records)
	}

	undefined := write("undefined.jsonl", "{\"text\": \"a\"}\n{\"text\": \"b\x81\"}\n")
	if _, err := ReadFileEncoded(undefined, "windows-1252", false); err == nil || !strings.Contains(err.Error(), "byte 0x81 at byte offset 25 of the file is not a Windows 1252 character") {
		t.Errorf("undefined byte: %v", err)
	}
	for enc, want := range map[string]string{
		"klingon":   `unknown text encoding "klingon"`,
		"shift_jis": `"shift_jis" is a multi-byte encoding`,
	} {
		if _, err := ReadFileEncoded(jsonl, enc, false); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("encoding %q: %v, want %q", enc, err, want)
		}
	}
	if _, err := ReadFileEncoded(fixtures+"messages.parquet", "latin1", false); err == nil || !strings.Contains(err.Error(), "Parquet text is UTF-8") {
		t.Errorf("encoding on Parquet: %v", err)
	}

	// Prepare passes the setting on (and checks it before reading).
	tok := chatmlTok("")
	if _, err := Prepare(Options{Path: jsonl, MaxLength: 64, Encoding: "windows-1252"}, tok); err != nil {
		t.Errorf("Prepare with data.encoding: %v", err)
	}
	if _, err := Prepare(Options{Path: jsonl, MaxLength: 64, Encoding: "klingon"}, tok); err == nil || !strings.Contains(err.Error(), "data.encoding: unknown") {
		t.Errorf("Prepare with an unknown encoding: %v", err)
	}
}

// TestCharmapReaderSmallBuffers: a rune whose UTF-8 form does not fit the
// caller's buffer is handed out over the next reads.
func TestCharmapReaderSmallBuffers(t *testing.T) {
	cm, err := textEncoding("windows-1252")
	if err != nil {
		t.Fatal(err)
	}
	r := newCharmapReader(strings.NewReader("\x80a\xe9"), cm)
	var got []byte
	p := make([]byte, 1)
	for {
		n, err := r.Read(p)
		got = append(got, p[:n]...)
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if string(got) != "€aé" {
		t.Errorf("read %q, want %q", got, "€aé")
	}
}

// TestSurrogateInAJSONCell: a CSV cell holding a JSON list of messages is
// decoded by the format reader, so a lone surrogate escape there is
// reported too.
func TestSurrogateInAJSONCell(t *testing.T) {
	res, err := ReadCSV(strings.NewReader("messages\n\"[{\"\"role\"\": \"\"user\"\", \"\"content\"\": \"\"a\\ud800\"\"}]\"\n"), "cell.csv", ',', false)
	if err != nil {
		t.Fatal(err)
	}
	_, rowErr := ToExample(res.Records[0], FormatMessages, nil)
	if rowErr == nil || rowErr.Reason != ReasonInvalidUTF8 || !strings.Contains(rowErr.Error(), `cell.csv: row 1 (line 2): field "messages": the cell's JSON has \ud800 at byte offset 31`) {
		t.Errorf("lone surrogate in a JSON cell: %v", rowErr)
	}
}
