package main

import (
	"fmt"
	"path/filepath"
	"strings"

	"whet/datasets"
	"whet/datasets/vision"
	"whet/tui"
	"whet/tui/components/imageview"
)

// previewImageSide is the longest side of an image kept for the studio's
// preview: enough for any terminal cell grid, small in memory.
const previewImageSide = 320

// imagePreview previews a data file whose conversations hold images,
// which the loader refuses for this model or method (a text model, DPO,
// GRPO): the
// first n rows with images, their messages as text with [image] where an
// image stands, and the images decoded and shrunk for the terminal; an
// image that cannot be read carries its row, field and file instead. ok
// is false when the file has no images, so the loader's error stands.
func imagePreview(path string, n int) (pv tui.DataPreview, ok bool) {
	rows, bad, err := datasets.ReadImageRows(path)
	if err != nil {
		return pv, false
	}
	withImages := 0
	for _, r := range rows {
		if len(r.Images) > 0 {
			withImages++
		}
	}
	if withImages == 0 {
		return pv, false
	}
	// The text of the rows, where the file is one the text reader reads
	// (JSONL, JSON; Parquet image rows are binary to it).
	text := map[string]datasets.Record{}
	pv.Format = "messages"
	if res, err := datasets.ReadFile(path, true); err == nil {
		for _, rec := range res.Records {
			text[rec.Loc.String()] = rec
			if _, ok := rec.Fields["conversations"]; ok {
				pv.Format = "sharegpt"
			}
		}
	}
	dir := filepath.Dir(path)
	for _, r := range rows {
		if len(pv.Examples) == n {
			break
		}
		if len(r.Images) == 0 {
			continue
		}
		rec, found := text[r.Loc.String()]
		pv.Examples = append(pv.Examples, messageSegments(rec, found))
		var ims []tui.PreviewImage
		for _, im := range r.Images {
			ims = append(ims, previewImage(r, im, dir))
		}
		pv.Images = append(pv.Images, ims)
	}
	pv.Stats = tui.DataStats{Rows: len(rows) + len(bad), Skipped: len(bad)}
	for i, e := range bad {
		if i == 3 {
			pv.Warnings = append(pv.Warnings, fmt.Sprintf("and %d more rows that cannot be read", len(bad)-i))
			break
		}
		pv.Warnings = append(pv.Warnings, e.Error())
	}
	return pv, true
}

// previewImage decodes one image of a row for the preview.
func previewImage(r datasets.ImageRow, im datasets.ImageAt, dir string) tui.PreviewImage {
	d, err := im.Ref.Load(dir)
	if err != nil {
		e := &datasets.RowError{Loc: r.Loc, Field: im.Field, Reason: datasets.ReasonBadImage, Detail: err.Error()}
		return tui.PreviewImage{Err: e.Error()}
	}
	rgb, err := previewRGB(d)
	if err != nil {
		return tui.PreviewImage{Err: fmt.Sprintf("%s: field %q: %s: shrinking for the preview: %v", r.Loc, im.Field, im.Ref, err)}
	}
	return tui.PreviewImage{Info: imageview.Placeholder(im.Ref.String(), d), Img: rgb}
}

// batchPreviewImage decodes one image of a prepared vision sequence.
func batchPreviewImage(b datasets.BatchImage) tui.PreviewImage {
	d, err := b.Load()
	if err != nil {
		return tui.PreviewImage{Err: err.Error()}
	}
	rgb, err := previewRGB(d)
	if err != nil {
		return tui.PreviewImage{Err: fmt.Sprintf("%s: %s: shrinking for the preview: %v", b.Where, b.Ref, err)}
	}
	return tui.PreviewImage{Info: imageview.Placeholder(b.Ref.String(), d), Img: rgb}
}

// previewRGB is a decoded image as the preview keeps it: RGB over white,
// at most previewImageSide pixels a side.
func previewRGB(d *vision.Decoded) (*vision.RGB, error) {
	rgb := d.RGB(vision.AlphaOverWhite, vision.Gray16Scale)
	if s := max(rgb.W, rgb.H); s > previewImageSide {
		return vision.Resize(rgb, max(rgb.W*previewImageSide/s, 1), max(rgb.H*previewImageSide/s, 1), vision.Bilinear)
	}
	return rgb, nil
}

// messageSegments writes a row's conversation as text, one message a
// line ("user: [image] What is this?"), what the model answers unmasked.
func messageSegments(rec datasets.Record, found bool) []tui.Segment {
	if !found {
		return []tui.Segment{{Text: "(the text of this row is not shown: only JSONL and JSON rows are read as text here)", Masked: true}}
	}
	var out []tui.Segment
	for _, list := range []string{"messages", "conversations"} {
		msgs, ok := rec.Fields[list].([]any)
		if !ok {
			continue
		}
		for _, m := range msgs {
			obj, ok := m.(map[string]any)
			if !ok {
				continue
			}
			role, _ := obj["role"].(string)
			if role == "" {
				role, _ = obj["from"].(string)
			}
			c, ok := obj["content"]
			if !ok {
				c = obj["value"]
			}
			var b strings.Builder
			b.WriteString(role + ": ")
			if parts, err := vision.ParseContent(c); err != nil {
				b.WriteString("(" + err.Error() + ")")
			} else {
				for i, p := range parts {
					if i > 0 && !strings.HasSuffix(b.String(), " ") {
						b.WriteString(" ")
					}
					if p.IsImage() {
						b.WriteString("[image]")
					} else {
						b.WriteString(p.Text)
					}
				}
			}
			b.WriteString("\n")
			answer := role == "assistant" || role == "gpt"
			out = append(out, tui.Segment{Text: b.String(), Masked: !answer})
		}
		break
	}
	if len(out) == 0 {
		return []tui.Segment{{Text: "(no messages in this row)", Masked: true}}
	}
	out[len(out)-1].Text = strings.TrimSuffix(out[len(out)-1].Text, "\n")
	return out
}
