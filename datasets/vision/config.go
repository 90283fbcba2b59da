package vision

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"os"
)

// ProcessorConfig is a model's preprocessor_config.json, read into the
// processor it names: exactly one of Gemma3 and Mllama is set.
type ProcessorConfig struct {
	Type   string // image_processor_type
	Gemma3 *Gemma3
	Mllama *Mllama
}

// LoadProcessorConfig reads preprocessor_config.json from a model folder's
// file; errors name the file and the field.
func LoadProcessorConfig(path string) (*ProcessorConfig, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	c, err := ParseProcessorConfig(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return c, nil
}

// ParseProcessorConfig reads the fields of a preprocessor_config.json
// that decide the pixels (a "Fast" or "Pil" suffix on the type names the
// same processor). Fields left out or null keep the processor's
// defaults (DefaultGemma3, DefaultMllama), as transformers does; switches
// whet does not implement (do_resize false, Mllama's do_pad false, ...)
// are refused rather than ignored.
func ParseProcessorConfig(data []byte) (*ProcessorConfig, error) {
	var raw map[string]json.RawMessage
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	if err := dec.Decode(&raw); err != nil {
		return nil, fmt.Errorf("not a JSON object: %v", err)
	}
	f := fields(raw)
	typ, err := f.str("image_processor_type")
	if err != nil {
		return nil, err
	}
	typ = trimSuffix(typ, "Fast", "Pil")
	for _, k := range []string{"do_resize", "do_rescale", "do_normalize"} {
		if err := f.mustBeTrue(k); err != nil {
			return nil, err
		}
	}
	if err := f.mustBeTrue("do_convert_rgb"); err != nil {
		return nil, err
	}
	cfg := &ProcessorConfig{Type: typ}
	switch typ {
	case "Gemma3ImageProcessor":
		p := DefaultGemma3()
		if err := f.common(&p.Size, &p.Filter, &p.Normalize); err != nil {
			return nil, err
		}
		if v, err := f.boolean("do_pan_and_scan"); err != nil {
			return nil, err
		} else if v != nil {
			p.PanAndScan = *v
		}
		if err := f.integer("pan_and_scan_min_crop_size", &p.PanMinCrop, maxSide); err != nil {
			return nil, err
		}
		if err := f.integer("pan_and_scan_max_num_crops", &p.PanMaxCrops, maxTiles); err != nil {
			return nil, err
		}
		if err := f.number("pan_and_scan_min_ratio_to_activate", &p.PanMinRatio); err != nil {
			return nil, err
		}
		cfg.Gemma3 = &p
	case "MllamaImageProcessor":
		p := DefaultMllama()
		if err := f.mustBeTrue("do_pad"); err != nil {
			return nil, err
		}
		if err := f.common(&p.TileSize, &p.Filter, &p.Normalize); err != nil {
			return nil, err
		}
		if err := f.integer("max_image_tiles", &p.MaxTiles, maxTiles); err != nil {
			return nil, err
		}
		cfg.Mllama = &p
	default:
		return nil, fmt.Errorf("image_processor_type %q is not supported (whet has Gemma3ImageProcessor and MllamaImageProcessor)", typ)
	}
	return cfg, nil
}

func trimSuffix(s string, suffixes ...string) string {
	for _, x := range suffixes {
		if len(s) > len(x) && s[len(s)-len(x):] == x {
			return s[:len(s)-len(x)]
		}
	}
	return s
}

type fields map[string]json.RawMessage

// get returns the field's value, nil when absent or null.
func (f fields) get(k string) (any, error) {
	r, ok := f[k]
	if !ok {
		return nil, nil
	}
	var v any
	dec := json.NewDecoder(bytes.NewReader(r))
	dec.UseNumber()
	if err := dec.Decode(&v); err != nil {
		return nil, fmt.Errorf("%q: %v", k, err)
	}
	return v, nil
}

func (f fields) str(k string) (string, error) {
	v, err := f.get(k)
	if err != nil {
		return "", err
	}
	s, ok := v.(string)
	if !ok {
		return "", fmt.Errorf("%q: want the processor's class name, got %s", k, kind(v))
	}
	return s, nil
}

func (f fields) boolean(k string) (*bool, error) {
	v, err := f.get(k)
	if err != nil || v == nil {
		return nil, err
	}
	b, ok := v.(bool)
	if !ok {
		return nil, fmt.Errorf("%q: want true or false, got %s", k, kind(v))
	}
	return &b, nil
}

func (f fields) mustBeTrue(k string) error {
	b, err := f.boolean(k)
	if err == nil && b != nil && !*b {
		err = fmt.Errorf("%q: false is not supported (whet always does this step, as the released models do)", k)
	}
	return err
}

func (f fields) number(k string, dst *float64) error {
	v, err := f.get(k)
	if err != nil || v == nil {
		return err
	}
	n, ok := v.(json.Number)
	if !ok {
		return fmt.Errorf("%q: want a number, got %s", k, kind(v))
	}
	x, err := n.Float64()
	if err != nil || math.IsInf(x, 0) || math.IsNaN(x) {
		return fmt.Errorf("%q: %s is not a usable number", k, n)
	}
	*dst = x
	return nil
}

// Bounds of the integer fields: far above the released values (896, 560,
// 4 tiles) and low enough that a forged file cannot make the tile search
// (quadratic in max_image_tiles) or the canvas run away.
const (
	maxSide  = 8192
	maxTiles = 64
)

func (f fields) integer(k string, dst *int, hi int) error {
	v, err := f.get(k)
	if err != nil || v == nil {
		return err
	}
	x := math.NaN()
	if n, ok := v.(json.Number); ok {
		x, _ = n.Float64()
	}
	if x != math.Trunc(x) || x < 1 || x > float64(hi) {
		return fmt.Errorf("%q: want a whole number from 1 to %d, got %v", k, hi, v)
	}
	*dst = int(x)
	return nil
}

// common reads size, resample, rescale_factor, image_mean and image_std.
func (f fields) common(size *int, filter *Filter, n *Normalize) error {
	v, err := f.get("size")
	if err != nil {
		return err
	}
	if v != nil {
		m, ok := v.(map[string]any)
		if !ok {
			return fmt.Errorf("%q: want {\"height\": h, \"width\": w}, got %s", "size", kind(v))
		}
		sub := fields{}
		for k := range m {
			b, _ := json.Marshal(m[k])
			sub[k] = b
		}
		h, w := 0, 0
		if err := sub.integer("height", &h, maxSide); err != nil {
			return fmt.Errorf("size: %w", err)
		}
		if err := sub.integer("width", &w, maxSide); err != nil {
			return fmt.Errorf("size: %w", err)
		}
		if h == 0 || h != w {
			return fmt.Errorf("%q: want equal height and width, got %v", "size", v)
		}
		*size = h
	}
	if v, err := f.get("resample"); err != nil {
		return err
	} else if v != nil {
		n, _ := v.(json.Number)
		r, err := n.Int64()
		if err != nil {
			return fmt.Errorf("%q: want a PIL filter number, got %v", "resample", v)
		}
		if *filter, err = ParseFilter(int(r)); err != nil {
			return fmt.Errorf("%q: %w", "resample", err)
		}
	}
	if err := f.number("rescale_factor", &n.Rescale); err != nil {
		return err
	}
	for _, k := range []struct {
		name string
		dst  *[3]float32
	}{{"image_mean", &n.Mean}, {"image_std", &n.Std}} {
		v, err := f.get(k.name)
		if err != nil || v == nil {
			if err != nil {
				return err
			}
			continue
		}
		var vals []any
		switch x := v.(type) {
		case json.Number:
			vals = []any{x, x, x}
		case []any:
			vals = x
		}
		if len(vals) != 3 {
			return fmt.Errorf("%q: want 3 numbers (or one), got %v", k.name, v)
		}
		for i, e := range vals {
			num, ok := e.(json.Number)
			x, err := num.Float64()
			if !ok || err != nil {
				return fmt.Errorf("%q[%d]: want a number, got %v", k.name, i, e)
			}
			k.dst[i] = float32(x)
		}
	}
	return n.check()
}
