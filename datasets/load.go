package datasets

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"unicode/utf8"

	"github.com/parquet-go/parquet-go"
)

// Location says where a row came from, in the terms a user can look up.
type Location struct {
	File string
	Line int    // 1-based line (JSONL, CSV); 0 when the file has no lines to speak of
	Row  int    // 1-based data row (CSV, Parquet) or 0-based index (JSON list); -1 when unset
	Key  string // JSON: the key of the list inside a top-level object, if any
	kind fileKind
}

func (l Location) String() string {
	switch l.kind {
	case kindJSONL:
		return fmt.Sprintf("%s:%d", l.File, l.Line)
	case kindJSON:
		return fmt.Sprintf("%s: %s[%d]", l.File, l.Key, l.Row)
	case kindCSV:
		return fmt.Sprintf("%s: row %d (line %d)", l.File, l.Row, l.Line)
	case kindParquet:
		return fmt.Sprintf("%s: row %d", l.File, l.Row)
	}
	return l.File
}

// Record is one row of a data file: column (or key) to value, with values
// as encoding/json produces them (strings, json.Number, bool, nil,
// []any, map[string]any).
type Record struct {
	Fields map[string]any
	Loc    Location
}

// RowError is a problem with one row. Reason is a short, stable category
// used to count skipped rows; Detail says exactly what is wrong.
type RowError struct {
	Loc    Location
	Field  string // the offending field ("messages[2].content"); empty for the whole row
	Reason string
	Detail string
}

func (e *RowError) Error() string {
	var b strings.Builder
	b.WriteString(e.Loc.String())
	if e.Field != "" {
		fmt.Fprintf(&b, ": field %q", e.Field)
	}
	b.WriteString(": ")
	if e.Detail != "" {
		b.WriteString(e.Detail)
	} else {
		b.WriteString(e.Reason)
	}
	return b.String()
}

// Reasons for row errors (the keys of skip counts).
const (
	ReasonInvalidJSON   = "invalid JSON"
	ReasonNotObject     = "row is not an object"
	ReasonMissingField  = "missing field"
	ReasonWrongType     = "wrong type"
	ReasonBadRole       = "unknown role"
	ReasonEmpty         = "empty conversation"
	ReasonCSVShape      = "malformed CSV row"
	ReasonTemplate      = "chat template refused the conversation"
	ReasonNoPrompt      = "no prompt"
	ReasonIdenticalPair = "chosen equals rejected"
	ReasonParquetRecord = "unreadable Parquet row"
	ReasonInvalidUTF8   = "invalid UTF-8"
)

// utf8Advice ends every invalid-UTF-8 message: the tokenizer would read
// such bytes as U+FFFD, so the model would learn replacement characters.
const utf8Advice = "whet reads data as UTF-8 text; name the file's encoding in data.encoding (e.g. windows-1252), or convert the file (iconv -f WINDOWS-1252 -t UTF-8), or skip such rows with data.skip_bad_rows"

// invalidUTF8 returns the offset of the first byte of s that is not part
// of valid UTF-8, or -1.
func invalidUTF8[T string | []byte](s T) int {
	switch v := any(s).(type) { // the fast path, without a copy
	case string:
		if utf8.ValidString(v) {
			return -1
		}
	case []byte:
		if utf8.Valid(v) {
			return -1
		}
	}
	for i := 0; i < len(s); {
		if s[i] < utf8.RuneSelf {
			i++
			continue
		}
		r, w := utf8.DecodeRuneInString(string(s[i:min(len(s), i+utf8.UTFMax)]))
		if r == utf8.RuneError && w <= 1 {
			return i
		}
		i += w
	}
	return -1
}

// loneSurrogate returns the offset of the first \u escape in JSON text
// that names half of a UTF-16 surrogate pair without the other half, or
// -1. encoding/json decodes such an escape to U+FFFD without a word.
func loneSurrogate(data []byte) int {
	hex4 := func(i int) (rune, bool) {
		if i+6 > len(data) || data[i] != '\\' || data[i+1] != 'u' {
			return 0, false
		}
		var r rune
		for _, c := range data[i+2 : i+6] {
			switch {
			case '0' <= c && c <= '9':
				r = r<<4 | rune(c-'0')
			case 'a' <= c && c <= 'f':
				r = r<<4 | rune(c-'a'+10)
			case 'A' <= c && c <= 'F':
				r = r<<4 | rune(c-'A'+10)
			default:
				return 0, false
			}
		}
		return r, true
	}
	for i := 0; i < len(data); i++ {
		if data[i] != '\\' {
			continue
		}
		r, ok := hex4(i)
		if !ok {
			i++ // an escape such as \\ or \": skip the escaped byte
			continue
		}
		switch {
		case 0xD800 <= r && r < 0xDC00:
			if lo, ok := hex4(i + 6); !ok || lo < 0xDC00 || lo > 0xDFFF {
				return i
			}
			i += 11
		case 0xDC00 <= r && r <= 0xDFFF:
			return i
		default:
			i += 5
		}
	}
	return -1
}

type fileKind int

const (
	kindUnknown fileKind = iota
	kindJSONL
	kindJSON
	kindCSV
	kindParquet
)

func kindOf(path string) (fileKind, rune, error) {
	switch strings.ToLower(filepath.Ext(path)) {
	case ".jsonl", ".ndjson":
		return kindJSONL, 0, nil
	case ".json":
		return kindJSON, 0, nil
	case ".csv":
		return kindCSV, ',', nil
	case ".tsv":
		return kindCSV, '\t', nil
	case ".parquet", ".pq":
		return kindParquet, 0, nil
	}
	return kindUnknown, 0, fmt.Errorf("%s: unknown data file type %q (want .jsonl, .json, .csv, .tsv or .parquet)", path, filepath.Ext(path))
}

// ReadResult is what a loader found: good records, and the rows it could
// not read (only when skipping bad rows; otherwise the first one is the
// error).
type ReadResult struct {
	Records []Record
	Bad     []*RowError
}

// badRows collects row errors: the first one aborts unless skipping.
type badRows struct {
	skip bool
	res  *ReadResult
}

func (b badRows) add(e *RowError) error {
	if !b.skip {
		return e
	}
	b.res.Bad = append(b.res.Bad, e)
	return nil
}

// ReadFile reads every row of a data file, choosing the reader by the file
// extension. With skipBad, unreadable rows are collected in Bad instead of
// failing the read; problems with the file as a whole always fail.
func ReadFile(path string, skipBad bool) (*ReadResult, error) {
	return ReadFileEncoded(path, "", skipBad)
}

// ReadFileEncoded is ReadFile for a text file (JSONL, JSON, CSV) written
// in the given encoding (data.encoding; "" or utf-8 for UTF-8): its bytes
// are converted to UTF-8 as they are read.
func ReadFileEncoded(path, encoding string, skipBad bool) (*ReadResult, error) {
	return readFileEncoded(path, encoding, skipBad, nil)
}

// readFileEncoded is ReadFileEncoded under a watch: a text file's read
// stops when the watch's context ends, and counts its bytes.
func readFileEncoded(path, encoding string, skipBad bool, w *watch) (*ReadResult, error) {
	kind, comma, err := kindOf(path)
	if err != nil {
		return nil, err
	}
	cm, err := textEncoding(encoding)
	if err != nil {
		return nil, fmt.Errorf("data.%w", err)
	}
	if cm != nil && kind == kindParquet {
		return nil, fmt.Errorf("%s: data.encoding %q applies to text files; Parquet text is UTF-8 by definition", path, encoding)
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("open data file: %w", err)
	}
	defer f.Close()
	var text io.Reader = f
	if kind != kindParquet {
		text = w.reader(f) // the file's own bytes, before any conversion
	}
	if cm != nil {
		text = newCharmapReader(text, cm)
	}
	switch kind {
	case kindJSONL:
		return ReadJSONL(text, path, skipBad)
	case kindJSON:
		return ReadJSON(text, path, skipBad)
	case kindCSV:
		return ReadCSV(text, path, comma, skipBad)
	default:
		st, err := f.Stat()
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		// Parquet rows are typed by the file's schema, so the only row
		// that can be skipped is one whose text is not UTF-8.
		return ReadParquet(f, st.Size(), path, skipBad)
	}
}

var utf8BOM = []byte{0xEF, 0xBB, 0xBF}

// ReadJSONL reads one JSON object per line. Blank lines are ignored.
func ReadJSONL(r io.Reader, name string, skipBad bool) (*ReadResult, error) {
	res := &ReadResult{}
	bad := badRows{skip: skipBad, res: res}
	br := bufio.NewReaderSize(r, 1<<16)
	var offset int64 // of line in the file, for messages
	for lineNo := 1; ; lineNo++ {
		line, err := br.ReadBytes('\n')
		if err != nil && err != io.EOF {
			return nil, fmt.Errorf("%s:%d: read: %w", name, lineNo, err)
		}
		if lineNo == 1 && bytes.HasPrefix(line, utf8BOM) {
			line = line[len(utf8BOM):]
			offset = int64(len(utf8BOM))
		}
		if trimmed := bytes.TrimSpace(line); len(trimmed) > 0 {
			loc := Location{File: name, Line: lineNo, Row: -1, kind: kindJSONL}
			fields, rowErr := decodeObject(trimmed, loc)
			if bad := invalidUTF8(line); bad >= 0 {
				rowErr = &RowError{Loc: loc, Reason: ReasonInvalidUTF8, Detail: fmt.Sprintf("invalid UTF-8 at byte offset %d of the file (column %d of the line); %s", offset+int64(bad), bad+1, utf8Advice)}
			} else if bad := loneSurrogate(line); bad >= 0 && rowErr == nil {
				rowErr = &RowError{Loc: loc, Reason: ReasonInvalidUTF8, Detail: fmt.Sprintf("%s at byte offset %d of the file (column %d of the line) is half of a UTF-16 surrogate pair, which decodes to U+FFFD; fix the escape", line[bad:bad+6], offset+int64(bad), bad+1)}
			}
			if rowErr != nil {
				if e := bad.add(rowErr); e != nil {
					return nil, e
				}
			} else {
				res.Records = append(res.Records, Record{Fields: fields, Loc: loc})
			}
		}
		if err == io.EOF {
			return res, nil
		}
		offset += int64(len(line))
	}
}

// decodeObject parses exactly one JSON object.
func decodeObject(data []byte, loc Location) (map[string]any, *RowError) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, &RowError{Loc: loc, Reason: ReasonInvalidJSON, Detail: "invalid JSON: " + jsonErrText(err, data)}
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, &RowError{Loc: loc, Reason: ReasonInvalidJSON, Detail: fmt.Sprintf("invalid JSON: unexpected data after the object at byte %d", dec.InputOffset()+1)}
	}
	obj, ok := v.(map[string]any)
	if !ok {
		return nil, &RowError{Loc: loc, Reason: ReasonNotObject, Detail: "want a JSON object, got " + jsonKind(v)}
	}
	return obj, nil
}

func jsonErrText(err error, data []byte) string {
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return fmt.Sprintf("%v (at byte %d)", se, se.Offset)
	}
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return "unexpected end of input"
	}
	return err.Error()
}

// lineCol turns a byte offset into a 1-based line and column.
func lineCol(data []byte, off int64) (int, int) {
	if off > int64(len(data)) {
		off = int64(len(data))
	}
	before := data[:off]
	line := bytes.Count(before, []byte{'\n'}) + 1
	col := int(off) - (bytes.LastIndexByte(before, '\n') + 1)
	return line, col + 1
}

// listKeys are the keys preferred when a top-level JSON object holds
// several lists of rows.
var listKeys = []string{"data", "train", "rows", "examples", "records", "items", "instances"}

// ReadJSON reads a JSON array of objects, or an object holding such an
// array under one key.
func ReadJSON(r io.Reader, name string, skipBad bool) (*ReadResult, error) {
	data, err := io.ReadAll(r)
	if err != nil {
		return nil, fmt.Errorf("%s: read: %w", name, err)
	}
	bom := 0
	if bytes.HasPrefix(data, utf8BOM) {
		data, bom = data[len(utf8BOM):], 1
	}
	// Checked before decoding, which would turn the bytes into U+FFFD. In
	// a top-level array the row is found (and can be skipped); otherwise
	// it is the file's error.
	if at, _ := badJSONText(data); at >= 0 {
		if res, ok, err := readJSONArrayWithBadText(data, name, int64(len(utf8BOM)*bom), skipBad); ok {
			return res, err
		}
	}
	if bad := invalidUTF8(data); bad >= 0 {
		line, col := lineCol(data, int64(bad))
		return nil, fmt.Errorf("%s:%d:%d: invalid UTF-8 at byte offset %d of the file; %s", name, line, col, bad+len(utf8BOM)*bom, strings.TrimSuffix(utf8Advice, ", or skip such rows with data.skip_bad_rows"))
	}
	if bad := loneSurrogate(data); bad >= 0 {
		line, col := lineCol(data, int64(bad))
		return nil, fmt.Errorf("%s:%d:%d: %s is half of a UTF-16 surrogate pair, which decodes to U+FFFD; fix the escape", name, line, col, data[bad:bad+6])
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var root any
	if err := dec.Decode(&root); err != nil {
		var se *json.SyntaxError
		if errors.As(err, &se) {
			line, col := lineCol(data, se.Offset)
			return nil, fmt.Errorf("%s:%d:%d: invalid JSON: %v", name, line, col, se)
		}
		return nil, fmt.Errorf("%s: invalid JSON: %s", name, jsonErrText(err, data))
	}
	if tok, err := dec.Token(); err != io.EOF {
		// An object followed by another object: JSON Lines in a .json
		// file, which Hugging Face's json loader accepts too.
		if _, isObj := root.(map[string]any); isObj && tok == json.Delim('{') {
			return ReadJSONL(bytes.NewReader(data), name, skipBad)
		}
		line, col := lineCol(data, dec.InputOffset())
		return nil, fmt.Errorf("%s:%d:%d: unexpected data after the top-level JSON value", name, line, col)
	}
	key := ""
	var list []any
	switch v := root.(type) {
	case []any:
		list = v
	case map[string]any:
		if isSingleRow(v) {
			return &ReadResult{Records: []Record{{Fields: v, Loc: Location{File: name, Row: 0, kind: kindJSON}}}}, nil
		}
		key, list, err = findRowList(v)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
	default:
		return nil, fmt.Errorf("%s: want a JSON array of rows or an object holding one, got %s", name, jsonKind(root))
	}
	res := &ReadResult{}
	bad := badRows{skip: skipBad, res: res}
	for i, item := range list {
		loc := Location{File: name, Row: i, Key: key, kind: kindJSON}
		obj, ok := item.(map[string]any)
		if !ok {
			if e := bad.add(&RowError{Loc: loc, Reason: ReasonNotObject, Detail: "want a JSON object, got " + jsonKind(item)}); e != nil {
				return nil, e
			}
			continue
		}
		res.Records = append(res.Records, Record{Fields: obj, Loc: loc})
	}
	return res, nil
}

// badJSONText finds the first text in JSON bytes that would decode to
// U+FFFD: a byte that is not UTF-8, or an escape of half a surrogate
// pair. It returns its offset and what it is, or -1.
func badJSONText(data []byte) (int, string) {
	bad, half := invalidUTF8(data), loneSurrogate(data)
	switch {
	case bad >= 0 && (half < 0 || bad < half):
		return bad, "invalid UTF-8"
	case half >= 0:
		return half, fmt.Sprintf("%s (half of a UTF-16 surrogate pair, which decodes to U+FFFD)", data[half:half+6])
	}
	return -1, ""
}

// readJSONArrayWithBadText reads a top-level JSON array element by
// element, so that text that would decode to U+FFFD is reported with its
// row (and skipped with skipBad) like any bad row. base is the offset of
// data in the file (a BOM). ok is false when the root is not an array or
// does not parse, for the caller to report the file as a whole.
func readJSONArrayWithBadText(data []byte, name string, base int64, skipBad bool) (res *ReadResult, ok bool, err error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('[') {
		return nil, false, nil
	}
	res = &ReadResult{}
	bad := badRows{skip: skipBad, res: res}
	for i := 0; dec.More(); i++ {
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return nil, false, nil
		}
		start := dec.InputOffset() - int64(len(raw))
		loc := Location{File: name, Row: i, kind: kindJSON}
		var rowErr *RowError
		var obj map[string]any
		if at, what := badJSONText(raw); at >= 0 {
			line, col := lineCol(data, start+int64(at))
			rowErr = &RowError{Loc: loc, Reason: ReasonInvalidUTF8, Detail: fmt.Sprintf("%s at byte offset %d of the file (line %d, column %d); %s", what, base+start+int64(at), line, col, utf8Advice)}
		} else {
			obj, rowErr = decodeObject(raw, loc)
		}
		if rowErr != nil {
			if e := bad.add(rowErr); e != nil {
				return nil, true, e
			}
			continue
		}
		res.Records = append(res.Records, Record{Fields: obj, Loc: loc})
	}
	if _, err := dec.Token(); err != nil {
		return nil, false, nil
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, false, nil
	}
	return res, true, nil
}

// isSingleRow tells a file holding one conversation ({"messages": [{"role":
// ...}]}) from an object holding a list of rows: the list's items are
// messages, not rows.
func isSingleRow(obj map[string]any) bool {
	for _, k := range []string{"messages", "conversations"} {
		if l, ok := obj[k].([]any); ok && len(l) > 0 {
			if m, ok := l[0].(map[string]any); ok {
				_, hasRole := m["role"]
				_, hasFrom := m["from"]
				if hasRole || hasFrom {
					return true
				}
			}
		}
	}
	return false
}

// findRowList picks the list of rows inside a top-level object.
func findRowList(obj map[string]any) (string, []any, error) {
	var candidates []string
	for k, v := range obj {
		if l, ok := v.([]any); ok && len(l) > 0 {
			if _, isObj := l[0].(map[string]any); isObj {
				candidates = append(candidates, k)
			}
		}
	}
	sort.Strings(candidates)
	switch len(candidates) {
	case 0:
		keys := make([]string, 0, len(obj))
		for k := range obj {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		return "", nil, fmt.Errorf("top-level object holds no list of row objects (keys: %s)", strings.Join(keys, ", "))
	case 1:
		return candidates[0], obj[candidates[0]].([]any), nil
	}
	for _, want := range listKeys {
		for _, c := range candidates {
			if strings.EqualFold(c, want) {
				return c, obj[c].([]any), nil
			}
		}
	}
	return "", nil, fmt.Errorf("top-level object holds several lists of rows (%s); keep one, or name one of them %q", strings.Join(candidates, ", "), listKeys[0])
}

// ReadCSV reads a CSV (or, with comma '\t', TSV) file whose first row names
// the columns. Cells that hold JSON arrays or objects (a messages column,
// say) are decoded when a format asks for a list.
func ReadCSV(r io.Reader, name string, comma rune, skipBad bool) (*ReadResult, error) {
	cr := csv.NewReader(r)
	cr.Comma = comma
	cr.ReuseRecord = false
	header, err := cr.Read()
	if err != nil {
		if err == io.EOF {
			return nil, fmt.Errorf("%s: empty CSV file (want a header row naming the columns)", name)
		}
		return nil, fmt.Errorf("%s: header row: %w", name, err)
	}
	if len(header) > 0 {
		header[0] = strings.TrimPrefix(header[0], string(utf8BOM))
	}
	for i, h := range header {
		if bad := invalidUTF8(h); bad >= 0 {
			return nil, fmt.Errorf("%s: header column %d: invalid UTF-8 at byte offset %d of its name; %s", name, i+1, bad, strings.TrimSuffix(utf8Advice, ", or skip such rows with data.skip_bad_rows"))
		}
	}
	seen := map[string]bool{}
	for i, h := range header {
		h = strings.TrimSpace(h)
		header[i] = h
		if h == "" {
			return nil, fmt.Errorf("%s: header column %d has no name", name, i+1)
		}
		if seen[h] {
			return nil, fmt.Errorf("%s: header names column %q twice", name, h)
		}
		seen[h] = true
	}
	res := &ReadResult{}
	bad := badRows{skip: skipBad, res: res}
	for row := 1; ; row++ {
		before := cr.InputOffset()
		rec, err := cr.Read()
		if err == io.EOF {
			return res, nil
		}
		loc := Location{File: name, Row: row, kind: kindCSV}
		if err == nil {
			loc.Line, _ = cr.FieldPos(0)
		} else {
			var pe *csv.ParseError
			if !errors.As(err, &pe) {
				return nil, fmt.Errorf("%s: %w", loc, err)
			}
			loc.Line = pe.StartLine
			detail := pe.Err.Error()
			if errors.Is(pe.Err, csv.ErrFieldCount) {
				detail = fmt.Sprintf("has %d fields, the header has %d", len(rec), len(header))
			}
			if e := bad.add(&RowError{Loc: loc, Reason: ReasonCSVShape, Detail: detail}); e != nil {
				return nil, e
			}
			if cr.InputOffset() == before {
				return nil, fmt.Errorf("%s: CSV reader made no progress after: %v", loc, err)
			}
			continue
		}
		fields := make(map[string]any, len(header))
		var rowErr *RowError
		for i, h := range header {
			fields[h] = rec[i]
			if bad := invalidUTF8(rec[i]); bad >= 0 && rowErr == nil {
				line, col := cr.FieldPos(i)
				rowErr = &RowError{Loc: loc, Field: h, Reason: ReasonInvalidUTF8, Detail: fmt.Sprintf("invalid UTF-8 at byte offset %d of the value (the value starts at line %d, column %d); %s", bad, line, col, utf8Advice)}
			}
		}
		if rowErr != nil {
			if e := bad.add(rowErr); e != nil {
				return nil, e
			}
			continue
		}
		res.Records = append(res.Records, Record{Fields: fields, Loc: loc})
	}
}

// ReadParquet reads every row of a Parquet file into records; nested
// columns (lists of message structs) become []any of map[string]any.
func ReadParquet(r io.ReaderAt, size int64, name string, skipBad bool) (*ReadResult, error) {
	if err := checkParquetFooter(r, size); err != nil {
		return nil, fmt.Errorf("%s: not a readable Parquet file: %w", name, err)
	}
	var pr *parquet.Reader
	var total int64
	err := parquetCall(func() error {
		pf, err := parquet.OpenFile(r, size)
		if err != nil {
			return err
		}
		total = pf.NumRows()
		pr = parquet.NewReader(pf)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("%s: not a readable Parquet file: %w", name, err)
	}
	defer parquetCall(pr.Close)
	res := &ReadResult{}
	bad := badRows{skip: skipBad, res: res}
	for row := int64(1); row <= total; row++ {
		loc := Location{File: name, Row: int(row), kind: kindParquet}
		fields := map[string]any{}
		if err := parquetCall(func() error { return pr.Read(&fields) }); err != nil {
			if errors.Is(err, io.EOF) {
				return nil, fmt.Errorf("%s: file says %d rows but ended after %d", name, total, row-1)
			}
			// A decoding failure leaves the reader's position unknown, so
			// the rest of the file cannot be trusted either.
			return nil, &RowError{Loc: loc, Reason: ReasonParquetRecord, Detail: err.Error()}
		}
		var rowErr *RowError
		for k, v := range fields {
			var field string
			var at int
			if fields[k], field, at = normalizeParquetValue(v, k); field != "" && rowErr == nil {
				detail := fmt.Sprintf("invalid UTF-8 at byte offset %d of the value; %s", at, utf8Advice)
				if strings.HasSuffix(field, ".bytes") { // a {bytes, path} struct: an image column
					detail = "binary data (an image column?): images are read only when training a vision model (see docs/vision.md)"
				}
				rowErr = &RowError{Loc: loc, Field: field, Reason: ReasonInvalidUTF8, Detail: detail}
			}
		}
		if rowErr != nil {
			if e := bad.add(rowErr); e != nil {
				return nil, e
			}
			continue
		}
		res.Records = append(res.Records, Record{Fields: fields, Loc: loc})
	}
	return res, nil
}

// checkParquetFooter checks the footer length the file declares (the 4
// bytes before the closing magic) against the file's size before parquet-go
// reads it: the library allocates whatever length the file declares, so a
// corrupt length would cost gigabytes and seconds before the read fails.
func checkParquetFooter(r io.ReaderAt, size int64) error {
	const magic = "PAR1"
	if size < int64(2*len(magic)+4) {
		return fmt.Errorf("%d bytes is too short for a Parquet file", size)
	}
	var tail [8]byte
	if _, err := r.ReadAt(tail[:], size-8); err != nil {
		return fmt.Errorf("read the footer: %w", err)
	}
	if string(tail[4:]) != magic {
		// "PARE" marks an encrypted footer, which whet cannot read either.
		return fmt.Errorf("the file does not end with the Parquet magic %q (it ends with %q)", magic, tail[4:])
	}
	if n := int64(binary.LittleEndian.Uint32(tail[:4])); n > size-int64(2*len(magic)+4) {
		return fmt.Errorf("the footer claims %d bytes, more than the %d-byte file holds", n, size)
	}
	return nil
}

// parquetCall runs fn, which calls into the Parquet library, and turns a
// panic there into an error. parquet-go trusts the offsets and lengths a
// file declares, so a corrupt file panics inside it (slice bounds in
// ReadPageIndex while opening, page decoding while reading); recovering
// at this boundary, and only here, keeps a bad file from taking the
// process down. The callers put the file's name on the error.
func parquetCall(fn func() error) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("corrupt data (the Parquet reader failed: %v)", p)
		}
	}()
	return fn()
}

// normalizeParquetValue maps Parquet's Go values onto the JSON-like set the
// format readers accept ([]byte strings become strings, integers become
// json.Number). A text that is not valid UTF-8 is reported by its field
// path (under path, the column's name) and the offset of its first bad
// byte; field is empty when every text is valid.
func normalizeParquetValue(v any, path string) (out any, field string, at int) {
	switch x := v.(type) {
	case []byte:
		if bad := invalidUTF8(x); bad >= 0 {
			return string(x), path, bad
		}
		return string(x), "", 0
	case string:
		if bad := invalidUTF8(x); bad >= 0 {
			return x, path, bad
		}
		return x, "", 0
	case []any:
		for i := range x {
			var f string
			var a int
			if x[i], f, a = normalizeParquetValue(x[i], fmt.Sprintf("%s[%d]", path, i)); f != "" && field == "" {
				field, at = f, a
			}
		}
		return x, field, at
	case map[string]any:
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		sort.Strings(keys) // the first bad field reported is always the same one
		for _, k := range keys {
			var f string
			var a int
			if x[k], f, a = normalizeParquetValue(x[k], path+"."+k); f != "" && field == "" {
				field, at = f, a
			}
		}
		return x, field, at
	case int32, int64, float32, float64:
		return json.Number(fmt.Sprint(x)), "", 0
	}
	return v, "", 0
}

func jsonKind(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case string:
		return "a string"
	case json.Number, float64:
		return "a number"
	case bool:
		return "a boolean"
	case []any:
		return "a list"
	case map[string]any:
		return "an object"
	}
	return fmt.Sprintf("%T", v)
}
