package datasets

import (
	"fmt"
	"path/filepath"
	"strings"

	"whet/datasets/vision"
)

// Training on images (issue 24): with Options.Vision set, Prepare reads
// each row's images (inline image parts, an image/images column, Parquet
// {bytes, path} structs), checks that every one decodes before anything
// is tokenized (CheckImages: bad ones reported by row, field and file),
// lets the chat template write the model's image token where each image
// part is, expands Gemma 3's <start_of_image> into the processor's image
// sequence, tokenizes, and masks the labels as for text (assistant-only
// etc.) and never on image tokens. The pixels are made later, as each
// batch runs (Batch.Images), by the model's processor.

// VisionOptions say how a vision model's images enter its token stream.
type VisionOptions struct {
	// Model names the model in messages ("Gemma 3", "Llama 3.2 Vision").
	Model string
	// Gemma3, when set, is Gemma 3's image sequence: each <start_of_image>
	// the template writes becomes SeqLen image tokens between BOI and EOI
	// (vision.ExpandGemma3Images).
	Gemma3 *vision.Gemma3Tokens
	// ImageToken stands for an image in the ids: Gemma 3's
	// <image_soft_token> (Gemma3.SeqLen of them per image), Mllama's
	// <|image|> (one per image). It never carries a label.
	ImageToken string
	// NoLabel are other tokens never trained on (Gemma 3's BOI and EOI).
	NoLabel []string
}

// perImage is how many ImageToken ids one image gives.
func (v *VisionOptions) perImage() int {
	if v.Gemma3 != nil {
		return v.Gemma3.SeqLen
	}
	return 1
}

// ReasonNoImages is the row error reason for an image in a run that
// cannot use it (a text model, or a method that does not read images).
const ReasonNoImages = "image in a text-only run"

// BatchImage is one image of a batch: where to read it and what to call
// it in errors.
type BatchImage struct {
	Ref vision.Ref
	// Dir is the data file's folder, where a relative path starts.
	Dir string
	// Where is the row and field: "data.jsonl:3: messages[0].content[0]".
	Where string
}

// Load reads and decodes the image; errors name the row and field.
func (b BatchImage) Load() (*vision.Decoded, error) {
	d, err := b.Ref.Load(b.Dir)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", b.Where, err)
	}
	return d, nil
}

// messageImages counts the image parts of msgs.
func messageImages(msgs []Message) int {
	n := 0
	for _, m := range msgs {
		for _, p := range m.Parts {
			if p.Type == "image" {
				n++
			}
		}
	}
	return n
}

// attachImages binds a record's images to its example (Options.Vision):
// the conversation's image parts take the row's images in order
// (imageRow); a conversation with no image part and an image column gets
// one image part per image at the start of its first user turn, as TRL's
// prepare_multimodal_messages does.
func attachImages(rec Record, ex *Example) *RowError {
	row, rowErr := imageRow(rec)
	if rowErr != nil {
		return rowErr
	}
	if ex.Chosen != nil || ex.Rejected != nil || messageImages(ex.Chosen)+messageImages(ex.Rejected) > 0 {
		if len(row.Images) > 0 {
			return &RowError{Loc: rec.Loc, Reason: ReasonNoImages, Detail: "preference rows with images: whet trains on images with supervised fine-tuning (lora, qlora, full) only"}
		}
	}
	n := messageImages(ex.Messages)
	switch {
	case n == len(row.Images):
	case n == 0:
		first := -1
		for i, m := range ex.Messages {
			if m.Role == "user" {
				first = i
				break
			}
		}
		if first < 0 {
			return &RowError{Loc: rec.Loc, Reason: ReasonImageCount, Detail: fmt.Sprintf("%d image(s) in the image column but no user turn to show them in", len(row.Images))}
		}
		m := &ex.Messages[first]
		parts := make([]ContentPart, 0, len(row.Images)+1)
		for range row.Images {
			parts = append(parts, ContentPart{Type: "image"})
		}
		if m.Parts != nil {
			parts = append(parts, m.Parts...)
		} else if m.Content != "" {
			parts = append(parts, ContentPart{Type: "text", Text: m.Content})
		}
		m.Parts = parts
	default:
		return &RowError{Loc: rec.Loc, Reason: ReasonImageCount, Detail: fmt.Sprintf("%d image part(s) in the conversation but %d image(s) in the row (images of an image column need {\"type\": \"image\"} placeholders when the conversation has inline images too)", n, len(row.Images))}
	}
	ex.Images = row.Images
	return nil
}

// refuseImages is the row error for an example with image parts in a run
// without Options.Vision.
func refuseImages(ex Example, why string) *RowError {
	if messageImages(ex.Messages)+messageImages(ex.Chosen)+messageImages(ex.Rejected) == 0 {
		return nil
	}
	if why == "" {
		why = "this run does not read images (only a vision model, Gemma 3 with its vision tower or Llama 3.2 Vision, trains on them)"
	}
	return &RowError{Loc: ex.Loc, Field: "messages", Reason: ReasonNoImages, Detail: "the conversation holds an image: " + why}
}

// checkExampleImages decodes every image of exs (CheckImages, on all
// cores) and returns the bad ones, by row, field and file, in row order.
func checkExampleImages(exs []Example) []*RowError {
	byFile := map[string][]ImageRow{}
	var files []string
	for _, ex := range exs {
		if len(ex.Images) == 0 {
			continue
		}
		if _, ok := byFile[ex.Loc.File]; !ok {
			files = append(files, ex.Loc.File)
		}
		byFile[ex.Loc.File] = append(byFile[ex.Loc.File], ImageRow{Loc: ex.Loc, Images: ex.Images})
	}
	var bad []*RowError
	for _, f := range files {
		bad = append(bad, CheckImages(f, byFile[f], nil)...)
	}
	return bad
}

// dropBadImages removes the examples whose images failed to decode (or
// fails, without skip_bad_rows, naming up to five of them).
func dropBadImages(exs []Example, skip bool, st statsBuilder) ([]Example, error) {
	bad := checkExampleImages(exs)
	if len(bad) == 0 {
		return exs, nil
	}
	if !skip {
		var lines []string
		for i, e := range bad {
			if i == 5 {
				lines = append(lines, fmt.Sprintf("… and %d more", len(bad)-5))
				break
			}
			lines = append(lines, e.Error())
		}
		return nil, fmt.Errorf("data: %d image(s) cannot be read (set data.skip_bad_rows: true to train without their rows):\n  %s", len(bad), strings.Join(lines, "\n  "))
	}
	badRow := map[Location]bool{}
	for _, e := range bad {
		if !badRow[e.Loc] {
			st.bad(e)
		}
		badRow[e.Loc] = true
	}
	out := exs[:0]
	for _, ex := range exs {
		if !badRow[ex.Loc] {
			out = append(out, ex)
		}
	}
	return out, nil
}

// visionTokens are the ids Prepare needs of a vision run's tokenizer.
type visionTokens struct {
	opts    *VisionOptions
	image   int32
	noLabel map[int32]bool
}

func newVisionTokens(v *VisionOptions, tok Encoder) (*visionTokens, error) {
	vt := &visionTokens{opts: v, noLabel: map[int32]bool{}}
	names := append([]string{v.ImageToken}, v.NoLabel...)
	for i, s := range names {
		id, ok := tok.TokenID(s)
		if !ok {
			return nil, fmt.Errorf("data: the tokenizer has no token %s, which %s's images need", s, v.Model)
		}
		if i == 0 {
			vt.image = int32(id)
		}
		vt.noLabel[int32(id)] = true
	}
	return vt, nil
}

// expand rewrites the template's text for the processor (Gemma 3's image
// sequences) and moves the assistant spans with it.
func (vt *visionTokens) expand(text string, spans []Span, images int) (string, []Span, error) {
	g := vt.opts.Gemma3
	if g == nil {
		return text, spans, nil
	}
	out, err := vision.ExpandGemma3Images(text, make([]int, images), *g)
	if err != nil {
		return "", nil, err
	}
	if images == 0 {
		return out, spans, nil
	}
	grow := (len(out) - len(text)) / images
	var at []int // the BOIs' offsets in text
	for i := 0; ; {
		j := strings.Index(text[i:], g.BOI)
		if j < 0 {
			break
		}
		at = append(at, i+j)
		i += j + len(g.BOI)
	}
	shift := func(off int) int {
		n := 0
		for _, a := range at {
			if a < off {
				n++
			}
		}
		return off + n*grow
	}
	moved := make([]Span, len(spans))
	for i, s := range spans {
		moved[i] = Span{Start: shift(s.Start), End: shift(s.End)}
	}
	return out, moved, nil
}

// finish masks the labels of image tokens, checks that the tokenizer kept
// each image's tokens whole, and gives the sequence its images.
func (vt *visionTokens) finish(seq *Sequence, ex *Example) *RowError {
	want := vt.opts.perImage() * len(ex.Images)
	if got := vt.count(seq); got != want {
		return &RowError{Loc: ex.Loc, Reason: ReasonTemplate, Detail: fmt.Sprintf("%d image(s) gave %d %s token(s), want %d (does the chat template write %s's image token, and does the tokenizer know it as one token?)",
			len(ex.Images), got, vt.opts.ImageToken, want, vt.opts.Model)}
	}
	for i, id := range seq.Tokens {
		if vt.noLabel[id] {
			seq.Labels[i] = IgnoreIndex
		}
	}
	dir := filepath.Dir(ex.Loc.File)
	for _, im := range ex.Images {
		seq.Images = append(seq.Images, BatchImage{Ref: im.Ref, Dir: dir, Where: ex.Loc.String() + ": " + im.Field})
	}
	return nil
}

func (vt *visionTokens) count(seq *Sequence) int {
	n := 0
	for _, id := range seq.Tokens {
		if id == vt.image {
			n++
		}
	}
	return n
}

// checkTruncated refuses a sequence whose truncation cut into its images.
func (vt *visionTokens) checkTruncated(seq *Sequence, ex *Example, maxLen int) *RowError {
	if want := vt.opts.perImage() * len(ex.Images); vt.count(seq) != want {
		return &RowError{Loc: ex.Loc, Reason: ReasonImageCount, Detail: fmt.Sprintf("data.max_length %d cuts into the row's image tokens (%d image(s), %d tokens each): raise data.max_length", maxLen, len(ex.Images), vt.opts.perImage())}
	}
	return nil
}
