package vision

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// Part is one piece of a multimodal message's content, in order.
type Part struct {
	Text string
	// Image is set for image parts. A part {"type": "image"} without a
	// source is a placeholder (TRL's and the Hugging Face chat templates'
	// convention): it stands for the next entry of the row's image or
	// images column, and Image.Placeholder is true until Bind fills it.
	Image *Ref
}

// IsImage reports whether the part is an image.
func (p Part) IsImage() bool { return p.Image != nil }

// Ref says where an image's bytes are: a path (relative to the data file
// unless absolute) or the bytes themselves (a Parquet {bytes, path}
// struct as Hugging Face datasets writes its Image feature, or a base64
// data: URL).
type Ref struct {
	Path        string
	Bytes       []byte
	Placeholder bool
}

// String names the image for messages: its path, or what holds the bytes.
func (r Ref) String() string {
	switch {
	case r.Path != "" && len(r.Bytes) > 0:
		return fmt.Sprintf("%s (%d embedded bytes)", r.Path, len(r.Bytes))
	case r.Path != "":
		return r.Path
	case len(r.Bytes) > 0:
		return fmt.Sprintf("embedded image (%d bytes)", len(r.Bytes))
	}
	return "image placeholder"
}

// IsImagePartType reports whether a content part's "type" names an
// image: "image" (Hugging Face, TRL) or "image_url" (OpenAI).
func IsImagePartType(t string) bool { return t == "image" || t == "image_url" }

// ParseContent reads a message's content as JSON decoding gives it
// (string, []any of map[string]any; Parquet structs arrive the same way,
// with []byte for binary fields). Accepted parts:
//
//	{"type": "text", "text": "..."}
//	{"type": "image"}                                    placeholder for the image column
//	{"type": "image", "path": "xray/001.png"}            also "image" or "url" instead of "path"
//	{"type": "image", "image": {"bytes": ..., "path": ...}}
//	{"type": "image_url", "image_url": {"url": "data:image/png;base64,..."}}
//
// Errors say which part is wrong.
func ParseContent(v any) ([]Part, error) {
	switch x := v.(type) {
	case string:
		return []Part{{Text: x}}, nil
	case []byte:
		return []Part{{Text: string(x)}}, nil
	case nil:
		return nil, fmt.Errorf("content is null")
	case []any:
		parts := make([]Part, 0, len(x))
		for i, p := range x {
			part, err := parsePart(p)
			if err != nil {
				return nil, fmt.Errorf("part %d: %w", i, err)
			}
			parts = append(parts, part)
		}
		return parts, nil
	}
	return nil, fmt.Errorf("want text or a list of parts, got %s", kind(v))
}

func parsePart(p any) (Part, error) {
	obj, ok := p.(map[string]any)
	if !ok {
		return Part{}, fmt.Errorf("want an object, got %s", kind(p))
	}
	t, _ := text(obj["type"])
	switch t {
	case "text":
		s, ok := text(obj["text"])
		if !ok {
			return Part{}, fmt.Errorf("type text: want a \"text\" string, got %s", kind(obj["text"]))
		}
		return Part{Text: s}, nil
	case "image":
		for _, key := range []string{"path", "image", "url"} {
			v, ok := obj[key]
			if !ok || v == nil {
				continue
			}
			ref, err := ParseImageValue(v)
			if err != nil {
				return Part{}, fmt.Errorf("type image: %q: %w", key, err)
			}
			return Part{Image: ref}, nil
		}
		return Part{Image: &Ref{Placeholder: true}}, nil
	case "image_url":
		iu, ok := obj["image_url"]
		if !ok {
			return Part{}, fmt.Errorf("type image_url: no \"image_url\" field")
		}
		if m, ok := iu.(map[string]any); ok {
			iu = m["url"]
		}
		s, ok := iu.(string)
		if !ok {
			return Part{}, fmt.Errorf("type image_url: want a url string, got %s", kind(iu))
		}
		ref, err := parseURL(s)
		if err != nil {
			return Part{}, fmt.Errorf("type image_url: %w", err)
		}
		return Part{Image: ref}, nil
	case "":
		return Part{}, fmt.Errorf("no \"type\" (want text, image or image_url)")
	}
	return Part{}, fmt.Errorf("type %q is not supported (want text, image or image_url)", t)
}

// ParseImageValue reads one image as an image column or part holds it: a
// path or URL string, or a {bytes, path} struct (bytes may be []byte from
// Parquet or a base64 string from JSON).
func ParseImageValue(v any) (*Ref, error) {
	switch x := v.(type) {
	case string:
		return parseURL(x)
	case []byte:
		return parseURL(string(x))
	case map[string]any:
		ref := &Ref{}
		if p, ok := text(x["path"]); ok {
			ref.Path = p
		}
		switch b := x["bytes"].(type) {
		case []byte:
			ref.Bytes = b
		case string:
			raw, err := base64.StdEncoding.DecodeString(b)
			if err != nil {
				return nil, fmt.Errorf("\"bytes\" is a string but not base64: %v", err)
			}
			ref.Bytes = raw
		case nil:
		default:
			return nil, fmt.Errorf("\"bytes\" must be binary or base64 text, got %s", kind(b))
		}
		if ref.Path == "" && len(ref.Bytes) == 0 {
			return nil, fmt.Errorf("an image struct needs \"bytes\" or \"path\"")
		}
		return ref, nil
	}
	return nil, fmt.Errorf("want a path or a {bytes, path} object, got %s", kind(v))
}

func parseURL(s string) (*Ref, error) {
	switch {
	case s == "":
		return nil, fmt.Errorf("empty path")
	case strings.HasPrefix(s, "data:"):
		meta, payload, ok := strings.Cut(s[len("data:"):], ",")
		if !ok || !strings.HasSuffix(meta, ";base64") {
			return nil, fmt.Errorf("a data: URL must be base64 (data:image/png;base64,...)")
		}
		raw, err := base64.StdEncoding.DecodeString(payload)
		if err != nil {
			return nil, fmt.Errorf("data: URL: %v", err)
		}
		if len(raw) == 0 {
			return nil, fmt.Errorf("the data: URL holds no bytes")
		}
		return &Ref{Bytes: raw}, nil
	case strings.HasPrefix(s, "file://"):
		if s == "file://" {
			return nil, fmt.Errorf("file:// URL without a path")
		}
		return &Ref{Path: strings.TrimPrefix(s, "file://")}, nil
	case strings.HasPrefix(s, "http://"), strings.HasPrefix(s, "https://"):
		return nil, fmt.Errorf("%s: whet does not download images; save them next to the data file and give their paths", s)
	case urlScheme(s) != "":
		return nil, fmt.Errorf("%s: a %s:// URL; whet reads images from files (a path, file:// or data:)", s, urlScheme(s))
	}
	return &Ref{Path: s}, nil
}

// urlScheme is the scheme of s when s starts as a URL does (RFC 3986: a
// letter, then letters, digits, +, - or ., then "://"), else "". Such a
// string (s3://, hf://, ftp://) read as a relative path would only fail
// later as a missing file.
func urlScheme(s string) string {
	i := strings.Index(s, "://")
	if i < 1 {
		return ""
	}
	for j, c := range s[:i] {
		letter := 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z'
		if !letter && (j == 0 || !('0' <= c && c <= '9' || c == '+' || c == '-' || c == '.')) {
			return ""
		}
	}
	return s[:i]
}

// Load reads and decodes the image, resolving a relative path against
// dir (the data file's folder). Embedded bytes win over a path, as in
// Hugging Face datasets. Errors name the file.
func (r Ref) Load(dir string) (*Decoded, error) {
	if r.Placeholder {
		return nil, fmt.Errorf("image placeholder without an image column entry")
	}
	if len(r.Bytes) > 0 {
		d, err := Decode(r.Bytes)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", r, err)
		}
		return d, nil
	}
	path := r.Path
	if !filepath.IsAbs(path) {
		path = filepath.Join(dir, path)
	}
	if _, err := os.Stat(path); err != nil {
		return nil, fmt.Errorf("image %s: %w", r.Path, err)
	}
	return DecodeFile(path)
}

// text accepts a string as JSON gives it or as Parquet may ([]byte).
func text(v any) (string, bool) {
	switch x := v.(type) {
	case string:
		return x, true
	case []byte:
		return string(x), true
	}
	return "", false
}

func kind(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case string:
		return "a string"
	case bool:
		return "a boolean"
	case []any:
		return "a list"
	case map[string]any:
		return "an object"
	case []byte:
		return "binary"
	case json.Number, float64, int64, int32:
		return "a number"
	}
	return fmt.Sprintf("a %T", v)
}
