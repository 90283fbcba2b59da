package datasets

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"strings"
	"testing"
	"unicode/utf8"
)

// FuzzJSONL feeds arbitrary bytes to the JSONL reader and the format
// readers behind it. It must never panic; with skipping on it must not
// fail either, and every non-blank line is either a record or a bad row.
func FuzzJSONL(f *testing.F) {
	for _, name := range []string{"tiny-chat.jsonl", "bad-rows.jsonl", "alpaca.jsonl", "preference-messages.jsonl", "messages.jsonl"} {
		data, err := os.ReadFile(fixtures + name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Add([]byte("\xef\xbb\xbf{\"text\": \"bom\"}\r\n\n{\"text\": 1}"))
	f.Add([]byte(`{"a":1} {"b":2}`))
	f.Add([]byte("{\"messages\": \"[{\\\"role\\\": \\\"user\\\"}]\"}"))
	f.Fuzz(func(t *testing.T, data []byte) {
		res, err := ReadJSONL(bytes.NewReader(data), "fuzz.jsonl", true)
		if err != nil {
			t.Fatalf("skipping reader failed: %v", err)
		}
		lines := 0
		for i, line := range bytes.Split(data, []byte{'\n'}) {
			if i == 0 {
				line = bytes.TrimPrefix(line, utf8BOM)
			}
			if len(bytes.TrimSpace(line)) > 0 {
				lines++
			}
		}
		if got := len(res.Records) + len(res.Bad); got != lines {
			t.Fatalf("%d records + %d bad rows for %d non-blank lines", len(res.Records), len(res.Bad), lines)
		}
		for _, e := range res.Bad {
			if !strings.HasPrefix(e.Error(), "fuzz.jsonl:") {
				t.Fatalf("bad row error without a location: %q", e.Error())
			}
		}
		for _, r := range res.Records {
			for _, f := range Formats {
				ex, rowErr := ToExample(r, f, nil)
				if rowErr == nil && f != FormatText && len(ex.Messages) == 0 && ex.Chosen == nil {
					t.Fatalf("format %s accepted a row with no messages: %v", f, r.Fields)
				}
			}
		}
		if _, err := ReadJSONL(bytes.NewReader(data), "fuzz.jsonl", false); err != nil && len(res.Bad) == 0 {
			t.Fatalf("strict reader failed where the skipping one found no bad row: %v", err)
		}
	})
}

// FuzzCSV checks the CSV reader on arbitrary input: no panic, no endless
// loop on malformed quoting, and with skipping on no failure once a
// header has been read.
func FuzzCSV(f *testing.F) {
	for _, name := range []string{"alpaca.csv", "bad-rows.csv", "text.csv"} {
		data, err := os.ReadFile(fixtures + name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Add([]byte("a,b\n\"x,\"y\"\n1,2,3\n\"unterminated"))
	f.Fuzz(func(t *testing.T, data []byte) {
		res, err := ReadCSV(bytes.NewReader(data), "fuzz.csv", ',', true)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "fuzz.csv") {
				t.Fatalf("error without the file name: %v", err)
			}
			return
		}
		for _, r := range res.Records {
			if r.Loc.Row < 1 || r.Loc.Line < 2 {
				t.Fatalf("record location %+v", r.Loc)
			}
		}
	})
}

// FuzzParquet feeds corrupt Parquet files (mutations of the fixtures) to
// the Parquet reader: it must never panic, every failure must name the
// file, and the rows it does return must convert without panicking.
func FuzzParquet(f *testing.F) {
	for _, name := range []string{"alpaca.parquet", "messages.parquet", "messages-arrow.parquet", "bad-role.parquet", "truncated.parquet"} {
		data, err := os.ReadFile(fixtures + name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		res, err := ReadParquet(bytes.NewReader(data), int64(len(data)), "fuzz.parquet", true)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "fuzz.parquet: ") {
				t.Fatalf("error without the file name: %v", err)
			}
			return
		}
		for i, r := range res.Records {
			if r.Loc.Row != i+1 {
				t.Fatalf("record %d has location %+v", i, r.Loc)
			}
			for _, f := range Formats {
				ToExample(r, f, nil)
			}
		}
	})
}

// FuzzCharmapReader checks data.encoding's converter against x/text's own
// decoder: the same UTF-8 for every input without undefined bytes, and an
// error exactly when the input has one.
func FuzzCharmapReader(f *testing.F) {
	f.Add([]byte("caf\xe9 \x80"), uint8(1))
	f.Add([]byte("b\x81"), uint8(7))
	cm, err := textEncoding("windows-1252")
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, data []byte, chunk uint8) {
		r := newCharmapReader(bytes.NewReader(data), cm)
		var got []byte
		p := make([]byte, int(chunk%8)+1)
		var readErr error
		for {
			n, err := r.Read(p)
			got = append(got, p[:n]...)
			if err != nil {
				if err != io.EOF {
					readErr = err
				}
				break
			}
		}
		undefined := -1
		for i, b := range data {
			if cm.DecodeByte(b) == utf8.RuneError {
				undefined = i
				break
			}
		}
		if undefined >= 0 {
			if readErr == nil || !strings.Contains(readErr.Error(), fmt.Sprintf("at byte offset %d ", undefined)) {
				t.Fatalf("undefined byte at %d: error %v", undefined, readErr)
			}
			return
		}
		want, err := cm.NewDecoder().Bytes(data)
		if err != nil {
			t.Fatal(err)
		}
		if readErr != nil || !bytes.Equal(got, want) {
			t.Fatalf("got %q (%v), want %q", got, readErr, want)
		}
	})
}

// FuzzJSON feeds arbitrary bytes to the JSON reader: no panic, every error
// names the file, no record keeps text that decoded to U+FFFD unless the
// input spelled U+FFFD, and the strict reader fails only where the skipping
// one found a bad row (or failed too).
func FuzzJSON(f *testing.F) {
	for _, name := range []string{"messages.json", "sharegpt.json", "one-row.json", "lines.json", "bad-items.json", "two-lists.json"} {
		data, err := os.ReadFile(fixtures + name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Add([]byte("[{\"text\": \"caf\xe9\"}, {\"text\": \"\\ud800\"}, {\"text\": \"ok\"}]"))
	f.Fuzz(func(t *testing.T, data []byte) {
		res, err := ReadJSON(bytes.NewReader(data), "fuzz.json", true)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "fuzz.json") {
				t.Fatalf("error without the file name: %v", err)
			}
			return
		}
		if !bytes.Contains(data, []byte("\uFFFD")) && !bytes.Contains(bytes.ToLower(data), []byte(`\ufffd`)) {
			for _, r := range res.Records {
				if s := fmt.Sprint(r.Fields); strings.ContainsRune(s, '\uFFFD') {
					t.Fatalf("row %v kept U+FFFD: %q", r.Loc, s)
				}
			}
		}
		if _, err := ReadJSON(bytes.NewReader(data), "fuzz.json", false); err != nil && len(res.Bad) == 0 {
			t.Fatalf("strict reader failed where the skipping one found no bad row: %v", err)
		}
	})
}
