package vision

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// Reference files written by tools/reference/make_vision_reference.py:
// reference_pil.json (Pillow + numpy doing transformers' steps; made on
// the development machine) and reference_transformers.json (the
// processors themselves; made on the GPU machine, absent until that run
// has come back).
type refFile struct {
	Meta   map[string]any `json:"meta"`
	Images map[string]struct {
		Mode string `json:"mode"`
		Size [2]int `json:"size"`
	} `json:"images"`
	Cases []refCase `json:"cases"`
	// CrossAttention holds Mllama's cross-attention masks for a few token
	// sequences (transformers only).
	CrossAttention []struct {
		IDs      []int    `json:"ids"`
		NumTiles []int    `json:"num_tiles"`
		Spans    [][2]int `json:"spans"`
		Dense    []uint8  `json:"dense"`
	} `json:"cross_attention"`
	// MllamaBatch is the Mllama processor's output for a batch of samples
	// (transformers only).
	MllamaBatch *struct {
		Samples [][]string  `json:"samples"`
		Shape   []int       `json:"shape"`
		Values  string      `json:"values_f32le_b64"`
		IDs     [][]int64   `json:"aspect_ratio_ids"`
		Mask    [][][]int64 `json:"aspect_ratio_mask"`
		Tiles   [][]int     `json:"num_tiles"`
	} `json:"mllama_batch"`
}

type refCase struct {
	Image      string    `json:"image"`
	Config     string    `json:"config"`
	Source     string    `json:"source"`
	Shape      []int     `json:"shape"`
	Sum        float64   `json:"sum"`
	SHA256     string    `json:"sha256"`
	Values     string    `json:"values_f32le_b64"`
	Stride     int       `json:"stride"`
	Sampled    string    `json:"sampled_f32le_b64"`
	SampledOld []float64 `json:"sampled"` // the script's first format
	NumCrops   []int     `json:"num_crops"`
	NumTiles   [][]int   `json:"num_tiles"`
	AspectIDs  [][]int   `json:"aspect_ratio_ids"`
	AspectMask [][][]int `json:"aspect_ratio_mask"`
}

// refConfig builds the processor for one of the script's configurations
// from the keyword arguments it recorded (meta.configs), so a reference
// made by an older or newer script still maps onto the right sizes; run
// with Pillow's 16-bit rule (Gray16Clip), which the reference shows.
func refConfig(meta map[string]any, name string) (any, bool) {
	cfgs, _ := meta["configs"].(map[string]any)
	kw, ok := cfgs[name].(map[string]any)
	if !ok {
		return nil, false
	}
	num := func(k string) (float64, bool) { v, ok := kw[k].(float64); return v, ok }
	size, ok := num("size")
	if !ok {
		return nil, false
	}
	filter := Bilinear
	if r, ok := num("resample"); ok {
		filter = Filter(int(r))
	}
	switch kw["kind"] {
	case "gemma3":
		g := DefaultGemma3()
		g.Gray16, g.Size, g.Filter = Gray16Clip, int(size), filter
		if on, _ := kw["do_pan_and_scan"].(bool); on {
			g.PanAndScan = true
			if v, ok := num("pan_and_scan_min_crop_size"); ok {
				g.PanMinCrop = int(v)
			}
			if v, ok := num("pan_and_scan_max_num_crops"); ok {
				g.PanMaxCrops = int(v)
			}
			if v, ok := num("pan_and_scan_min_ratio_to_activate"); ok {
				g.PanMinRatio = v
			}
		}
		return g, true
	case "mllama":
		m := DefaultMllama()
		m.Gray16, m.TileSize, m.Filter = Gray16Clip, int(size), filter
		if v, ok := num("max_image_tiles"); ok {
			m.MaxTiles = int(v)
		}
		return m, true
	}
	return nil, false
}

func TestMatchesReference(t *testing.T) {
	found := false
	for _, file := range []string{"reference_pil.json", "reference_transformers.json"} {
		data, err := os.ReadFile(filepath.Join(testdata, file))
		if errors.Is(err, fs.ErrNotExist) {
			t.Logf("%s: not there yet (make it with tools/reference/make_vision_reference.py)", file)
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		found = true
		var ref refFile
		if err := json.Unmarshal(data, &ref); err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		t.Run(strings.TrimSuffix(file, ".json"), func(t *testing.T) { checkReference(t, &ref) })
	}
	if !found {
		t.Skip("no reference file in testdata/")
	}
}

func checkReference(t *testing.T, ref *refFile) {
	t.Logf("reference made with %v", ref.Meta)
	if ref.MllamaBatch != nil {
		checkMllamaBatch(t, ref)
	}
	for _, c := range ref.CrossAttention {
		spans := CrossAttentionSpans(c.IDs, 9)
		if !slices.Equal(spans, c.Spans) {
			t.Errorf("ids %v: spans %v, transformers %v", c.IDs, spans, c.Spans)
			continue
		}
		if len(spans) > 0 {
			if got := CrossAttentionMask(spans, c.NumTiles, 4, len(c.IDs)); !slices.Equal(got, c.Dense) {
				t.Errorf("ids %v: mask %v, transformers %v", c.IDs, got, c.Dense)
			}
		}
	}
	decoded := map[string]*Decoded{}
	exact := 0
	for _, c := range ref.Cases {
		d := decoded[c.Image]
		if d == nil {
			var err error
			if d, err = DecodeFile(filepath.Join(testdata, c.Image)); err != nil {
				t.Fatal(err)
			}
			decoded[c.Image] = d
		}
		if im, ok := ref.Images[c.Image]; !ok || !sameMode(im.Mode, d.Mode) || im.Size != [2]int{d.Width, d.Height} {
			t.Errorf("%s: whet opens it as %s %dx%d, the reference as %q %v", c.Image, d.Mode, d.Width, d.Height, im.Mode, im.Size)
		}
		cfg, ok := refConfig(ref.Meta, c.Config)
		if !ok {
			t.Fatalf("unknown configuration %q in the reference", c.Config)
		}
		var got []float32
		var shape []int
		switch p := cfg.(type) {
		case Gemma3:
			out, err := p.Process(d)
			if err != nil {
				t.Fatal(err)
			}
			for _, pv := range out.PixelValues {
				got = append(got, pv...)
			}
			shape = []int{len(out.PixelValues), 3, p.Size, p.Size}
			if len(c.NumCrops) != 1 || c.NumCrops[0] != out.NumCrops {
				t.Errorf("%s %s: num_crops %d, reference %v", c.Image, c.Config, out.NumCrops, c.NumCrops)
			}
		case Mllama:
			out, err := p.Process(d)
			if err != nil {
				t.Fatal(err)
			}
			got = out.PixelValues
			shape = []int{1, 1, p.MaxTiles, 3, p.TileSize, p.TileSize}
			if c.NumTiles[0][0] != out.NumTiles || c.AspectIDs[0][0] != out.AspectRatioID {
				t.Errorf("%s %s: %d tiles, aspect ratio id %d; reference %v, %v", c.Image, c.Config, out.NumTiles, out.AspectRatioID, c.NumTiles, c.AspectIDs)
			}
			for i, v := range c.AspectMask[0][0] {
				if int64(v) != out.AspectRatioMask[i] {
					t.Errorf("%s %s: aspect ratio mask %v, reference %v", c.Image, c.Config, out.AspectRatioMask, c.AspectMask[0][0])
					break
				}
			}
		}
		if !slices.Equal(shape, c.Shape) {
			t.Errorf("%s %s: shape %v, reference %v", c.Image, c.Config, shape, c.Shape)
			continue
		}
		idx, want := refValues(t, c)
		const tol = 1e-5
		worst, at := 0.0, -1
		for k, i := range idx {
			if diff := math.Abs(float64(got[i]) - want[k]); diff > worst {
				worst, at = diff, i
			}
		}
		if worst > tol {
			t.Errorf("%s %s (%s): |whet - reference| reaches %.3g at flat index %d (tolerance %.0e)", c.Image, c.Config, c.Source, worst, at, tol)
		}
		if hashFloats(got) == c.SHA256 {
			exact++
		}
	}
	t.Logf("%d of %d cases bit-identical (SHA-256 of the float32 tensor)", exact, len(ref.Cases))
}

// refValues returns the flat indices the reference holds and their values.
func refValues(t *testing.T, c refCase) ([]int, []float64) {
	n := 1
	for _, s := range c.Shape {
		n *= s
	}
	var idx []int
	if c.SampledOld != nil {
		for i := 0; i < n && c.Stride > 0; i += c.Stride {
			idx = append(idx, i)
		}
		if len(idx) != len(c.SampledOld) {
			t.Fatalf("%s %s: %d samples for %d values at stride %d", c.Image, c.Config, len(c.SampledOld), n, c.Stride)
		}
		return idx, c.SampledOld
	}
	raw, stride := c.Values, 1
	if raw == "" {
		raw, stride = c.Sampled, c.Stride
	}
	for i := 0; i < n && stride > 0; i += stride {
		idx = append(idx, i)
	}
	b, err := base64.StdEncoding.DecodeString(raw)
	if err != nil || len(b) != 4*len(idx) {
		t.Fatalf("%s %s: %d bytes of values for %d of %d floats at stride %d: %v", c.Image, c.Config, len(b), len(idx), n, stride, err)
	}
	vals := make([]float64, len(idx))
	for i := range vals {
		vals[i] = float64(math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:])))
	}
	return idx, vals
}

func hashFloats(v []float32) string {
	b := make([]byte, 4*len(v))
	for i, f := range v {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(f))
	}
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// sameMode compares a PIL mode with whet's: Pillow before 10 opened
// 16-bit grayscale PNGs as "I" (32-bit), later ones as "I;16"; both clip
// the same way when converted to RGB.
func sameMode(pil string, m Mode) bool {
	return Mode(pil) == m || (pil == "I" && m == ModeI16)
}

// checkMllamaBatch packs whet's per-image outputs like the processor's
// batch and compares everything.
func checkMllamaBatch(t *testing.T, ref *refFile) {
	rb := ref.MllamaBatch
	cfg, ok := refConfig(ref.Meta, "mllama_small")
	if !ok {
		t.Fatal("no mllama_small configuration in the reference")
	}
	m := cfg.(Mllama)
	var samples [][]*MllamaOutput
	for _, names := range rb.Samples {
		var outs []*MllamaOutput
		for _, n := range names {
			d, err := DecodeFile(filepath.Join(testdata, n))
			if err != nil {
				t.Fatal(err)
			}
			o, err := m.Process(d)
			if err != nil {
				t.Fatal(err)
			}
			outs = append(outs, o)
		}
		samples = append(samples, outs)
	}
	b, err := PackMllama(samples, m.MaxTiles, m.TileSize)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(rb.Shape, []int{b.Batch, b.MaxImages, b.MaxTiles, 3, b.TileSize, b.TileSize}) {
		t.Fatalf("batch shape %v, whet %dx%dx%d", rb.Shape, b.Batch, b.MaxImages, b.MaxTiles)
	}
	var ids, mask []int64
	for i := range rb.IDs {
		ids = append(ids, rb.IDs[i]...)
		for _, mm := range rb.Mask[i] {
			mask = append(mask, mm...)
		}
	}
	if !slices.Equal(ids, b.AspectRatioIDs) || !slices.Equal(mask, b.AspectRatioMask) {
		t.Errorf("batch ids %v mask %v; whet %v %v", ids, mask, b.AspectRatioIDs, b.AspectRatioMask)
	}
	for i := range rb.Tiles {
		if !slices.Equal(rb.Tiles[i], b.NumTiles[i]) {
			t.Errorf("batch num_tiles %v, whet %v", rb.Tiles, b.NumTiles)
		}
	}
	raw, err := base64.StdEncoding.DecodeString(rb.Values)
	if err != nil || len(raw) != 4*len(b.PixelValues) {
		t.Fatalf("batch values: %d bytes for %d floats: %v", len(raw), len(b.PixelValues), err)
	}
	for i, v := range b.PixelValues {
		if w := math.Float32frombits(binary.LittleEndian.Uint32(raw[4*i:])); math.Abs(float64(v-w)) > 1e-5 {
			t.Fatalf("batch pixel %d: whet %v, transformers %v", i, v, w)
		}
	}
}
