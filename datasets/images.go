package datasets

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"sync"

	"github.com/parquet-go/parquet-go"

	"whet/datasets/vision"
)

// Image rows are the data side of vision fine-tuning (issue 24): whet
// reads and checks the images of a multimodal data file (whet images), and
// Prepare with Options.Vision trains on them (vision_prepare.go).

// ReasonBadImage is the row error reason for an image that is missing,
// truncated, corrupt or of an unsupported format; ReasonImageCount for
// placeholders that do not match the image column.
const (
	ReasonBadImage   = "bad image"
	ReasonImageCount = "image count mismatch"
)

// ImageAt is one image of a row and the field it came from
// ("messages[0].content[1]", "images[2]").
type ImageAt struct {
	Field string
	Ref   vision.Ref
}

// imageColumns are the columns a row's {"type": "image"} placeholders
// are bound to, in the order imageRow looks for them.
var imageColumns = []string{"images", "image"}

// ImageRow is one row's images in the order the conversation shows them:
// inline parts in message order, placeholders ({"type": "image"}) bound
// in order to the image or images column; column images without
// placeholders follow after the inline ones.
type ImageRow struct {
	Loc    Location
	Images []ImageAt
}

// ReadImageRows reads the images of every row of a JSONL, JSON or Parquet
// data file (CSV has no place for them). Rows whose image fields cannot be
// read come back as row errors; err is for the file as a whole.
func ReadImageRows(path string) ([]ImageRow, []*RowError, error) {
	kind, _, err := kindOf(path)
	if err != nil {
		return nil, nil, err
	}
	var recs []Record
	var bad []*RowError
	switch kind {
	case kindJSONL, kindJSON:
		res, err := ReadFile(path, true)
		if err != nil {
			return nil, nil, err
		}
		recs, bad = res.Records, res.Bad
	case kindParquet:
		if recs, err = readParquetBinary(path); err != nil {
			return nil, nil, err
		}
	default:
		return nil, nil, fmt.Errorf("%s: images are read from JSONL, JSON or Parquet files, not %s", path, filepath.Ext(path))
	}
	var rows []ImageRow
	for _, rec := range recs {
		row, rowErr := imageRow(rec)
		if rowErr != nil {
			bad = append(bad, rowErr)
			continue
		}
		rows = append(rows, row)
	}
	return rows, bad, nil
}

// CheckImages decodes every image of rows, on all cores; each one that
// cannot be read becomes a row error naming the row, the field and the
// file, in row order. dataPath is the data file, whose folder relative
// paths start from. visit, when not nil, sees each image that decodes;
// calls come one at a time but in no set order, and no image is kept
// after its call (a clinic's 5,000 X-rays need not fit in memory).
func CheckImages(dataPath string, rows []ImageRow, visit func(ImageRow, ImageAt, *vision.Decoded)) []*RowError {
	dir := filepath.Dir(dataPath)
	type job struct{ row, img int }
	jobs := make(chan job)
	errs := make([][]*RowError, len(rows)) // [row][image], nil where the image is fine
	for r, row := range rows {
		errs[r] = make([]*RowError, len(row.Images))
	}
	var mu sync.Mutex // serialises visit (errs cells are each written by one worker)
	var wg sync.WaitGroup
	for w := 0; w < runtime.GOMAXPROCS(0); w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range jobs {
				row := rows[j.row]
				im := row.Images[j.img]
				d, err := im.Ref.Load(dir)
				if err != nil {
					errs[j.row][j.img] = &RowError{Loc: row.Loc, Field: im.Field, Reason: ReasonBadImage, Detail: err.Error()}
				} else if visit != nil {
					mu.Lock()
					visit(row, im, d)
					mu.Unlock()
				}
			}
		}()
	}
	for r, row := range rows {
		for i := range row.Images {
			jobs <- job{r, i}
		}
	}
	close(jobs)
	wg.Wait()
	var bad []*RowError
	for _, rowErrs := range errs {
		for _, e := range rowErrs {
			if e != nil {
				bad = append(bad, e)
			}
		}
	}
	return bad
}

func imageRow(rec Record) (ImageRow, *RowError) {
	row := ImageRow{Loc: rec.Loc}
	fail := func(field, reason, detail string) (ImageRow, *RowError) {
		return ImageRow{}, &RowError{Loc: rec.Loc, Field: field, Reason: reason, Detail: detail}
	}
	var placeholders []int // indices into row.Images
	for _, list := range []string{"messages", "conversations"} {
		msgs, ok := rec.Fields[list].([]any)
		if !ok {
			continue
		}
		for i, m := range msgs {
			obj, ok := m.(map[string]any)
			if !ok {
				continue // the format reader reports the shape
			}
			key := "content" // OpenAI style; ShareGPT's turns hold "value"
			c, ok := obj[key]
			if !ok {
				key = "value"
				if c, ok = obj[key]; !ok {
					continue
				}
			}
			field := fmt.Sprintf("%s[%d].%s", list, i, key)
			parts, err := vision.ParseContent(c)
			if err != nil {
				return fail(field, ReasonWrongType, err.Error())
			}
			for j, p := range parts {
				if !p.IsImage() {
					continue
				}
				if p.Image.Placeholder {
					placeholders = append(placeholders, len(row.Images))
				}
				row.Images = append(row.Images, ImageAt{Field: fmt.Sprintf("%s[%d]", field, j), Ref: *p.Image})
			}
		}
		break
	}
	var column []ImageAt
	if v, ok := rec.Fields["images"]; ok && v != nil {
		list, ok := v.([]any)
		if !ok {
			list = []any{v}
		}
		for k, item := range list {
			ref, err := vision.ParseImageValue(item)
			if err != nil {
				return fail(fmt.Sprintf("images[%d]", k), ReasonWrongType, err.Error())
			}
			column = append(column, ImageAt{Field: fmt.Sprintf("images[%d]", k), Ref: *ref})
		}
	} else if v, ok := rec.Fields["image"]; ok && v != nil {
		ref, err := vision.ParseImageValue(v)
		if err != nil {
			return fail("image", ReasonWrongType, err.Error())
		}
		column = append(column, ImageAt{Field: "image", Ref: *ref})
	}
	switch {
	case len(placeholders) == 0:
		row.Images = append(row.Images, column...)
	case len(placeholders) != len(column):
		return fail("", ReasonImageCount, fmt.Sprintf("%d image placeholder(s) in the conversation but %d image(s) in the image column", len(placeholders), len(column)))
	default:
		for k, at := range placeholders {
			row.Images[at] = ImageAt{Field: row.Images[at].Field + " = " + column[k].Field, Ref: column[k].Ref}
		}
	}
	return row, nil
}

// readParquetBinary reads a Parquet file's rows keeping binary values as
// []byte: ReadParquet turns them into text (and refuses invalid UTF-8),
// which is right for text columns but destroys image bytes.
func readParquetBinary(path string) ([]Record, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if err := checkParquetFooter(f, st.Size()); err != nil {
		return nil, fmt.Errorf("%s: not a readable Parquet file: %w", path, err)
	}
	var pr *parquet.Reader
	var total int64
	if err := parquetCall(func() error {
		pf, err := parquet.OpenFile(f, st.Size())
		if err != nil {
			return err
		}
		total = pf.NumRows()
		pr = parquet.NewReader(pf)
		return nil
	}); err != nil {
		return nil, fmt.Errorf("%s: not a readable Parquet file: %w", path, err)
	}
	defer parquetCall(pr.Close)
	var recs []Record
	for row := int64(1); row <= total; row++ {
		loc := Location{File: path, Row: int(row), kind: kindParquet}
		fields := map[string]any{}
		if err := parquetCall(func() error { return pr.Read(&fields) }); err != nil {
			if errors.Is(err, io.EOF) {
				return nil, fmt.Errorf("%s: file says %d rows but ended after %d", path, total, row-1)
			}
			return nil, &RowError{Loc: loc, Reason: ReasonParquetRecord, Detail: err.Error()}
		}
		for k, v := range fields {
			fields[k] = markBinary(v)
		}
		recs = append(recs, Record{Fields: fields, Loc: loc})
	}
	return recs, nil
}

// markBinary turns the "bytes" field of every struct into []byte:
// parquet-go hands byte arrays back as Go strings, and a string there
// would be taken for base64 text, as JSON data carries image bytes.
func markBinary(v any) any {
	switch x := v.(type) {
	case []any:
		for i := range x {
			x[i] = markBinary(x[i])
		}
	case map[string]any:
		for k, e := range x {
			if s, ok := e.(string); ok && k == "bytes" {
				x[k] = []byte(s)
			} else {
				x[k] = markBinary(e)
			}
		}
	}
	return v
}

// ContentParts turns a multimodal message's parsed content
// (vision.ParseContent) into the parts a chat template renders: each image,
// whatever its source, becomes an "image" part, where gemma-3 writes
// <start_of_image> and Llama 3.2 Vision's template <|image|>. The images
// themselves stay with the caller, in the same order, for the processor
// (vision.ExpandGemma3Images replaces the placeholders in that order).
func ContentParts(parts []vision.Part) []ContentPart {
	out := make([]ContentPart, len(parts))
	for i, p := range parts {
		if p.IsImage() {
			out[i] = ContentPart{Type: "image"}
		} else {
			out[i] = ContentPart{Type: "text", Text: p.Text}
		}
	}
	return out
}
