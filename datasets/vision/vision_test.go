package vision

import (
	"bytes"
	"errors"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func row(vals ...uint8) *RGB {
	img := &RGB{W: len(vals), H: 1}
	for _, v := range vals {
		img.Pix = append(img.Pix, v, v, v)
	}
	return img
}

// TestResizeByHand checks Pillow's resampler on cases worked out on paper
// from Resample.c: upscaling [0, 255] ×2 with the triangle filter gives
// weights (1), (.75, .25), (.25, .75), (1); downscaling [0, 0, 255, 255]
// ×½ stretches the triangle to support 2 (antialiasing), whose taps are
// (.75, .75, .25)/1.75 and (.25, .75, .75)/1.75.
func TestResizeByHand(t *testing.T) {
	for _, tc := range []struct {
		in   *RGB
		w    int
		f    Filter
		want []uint8
	}{
		{row(0, 255), 4, Bilinear, []uint8{0, 64, 191, 255}}, // 63.75 rounds up through the fixed-point bias
		{row(0, 0, 255, 255), 2, Bilinear, []uint8{36, 219}}, // 255·.25/1.75 = 36.4, 255·1.5/1.75 = 218.6
		{row(0, 0, 255, 255), 1, Box, []uint8{128}},          // the mean, 127.5, rounded up
		{row(10, 20, 30), 3, Bicubic, []uint8{10, 20, 30}},   // same size: a copy
	} {
		got, err := Resize(tc.in, tc.w, 1, tc.f)
		if err != nil {
			t.Fatal(err)
		}
		for i, v := range tc.want {
			if got.Pix[3*i] != v {
				t.Errorf("%v %s → %d: got %v, want %v", channel(tc.in), tc.f, tc.w, channel(got), tc.want)
				break
			}
		}
	}
}

func channel(img *RGB) []uint8 {
	var out []uint8
	for i := 0; i < len(img.Pix); i += 3 {
		out = append(out, img.Pix[i])
	}
	return out
}

// TestResizeKeepsConstantImages: the fixed-point weights of every output
// sample sum to 1 within 2^-22 per tap, so a flat image stays exactly flat
// whatever the filter and size.
func TestResizeKeepsConstantImages(t *testing.T) {
	for _, f := range []Filter{Bilinear, Bicubic, Lanczos, Box, Hamming} {
		for _, v := range []uint8{0, 1, 77, 254, 255} {
			src := &RGB{W: 13, H: 7, Pix: bytes.Repeat([]byte{v}, 3*13*7)}
			for _, sz := range [][2]int{{896, 896}, {5, 3}, {1, 1}, {13, 40}} {
				got, err := Resize(src, sz[0], sz[1], f)
				if err != nil {
					t.Fatal(err)
				}
				for i, p := range got.Pix {
					if p != v {
						t.Fatalf("%s %d → %v: sample %d is %d", f, v, sz, i, p)
					}
				}
			}
		}
	}
}

func TestResizeRefusesBadArguments(t *testing.T) {
	src := row(1, 2)
	if _, err := Resize(src, 0, 1, Bilinear); err == nil {
		t.Error("width 0 accepted")
	}
	if _, err := Resize(src, 2, 2, Filter(0)); err == nil {
		t.Error("nearest accepted")
	}
	if _, err := ParseFilter(9); err == nil || !strings.Contains(err.Error(), "resample 9") {
		t.Errorf("ParseFilter(9) = %v", err)
	}
}

// TestNormalizeConstant: a flat image normalises to (v/255 - mean)/std in
// every position, computed here in float64 and compared within float32
// rounding.
func TestNormalizeConstant(t *testing.T) {
	for _, v := range []uint8{0, 128, 255} {
		src := &RGB{W: 50, H: 30, Pix: bytes.Repeat([]byte{v}, 3*50*30)}
		d := &Decoded{Width: 50, Height: 30, Mode: ModeRGB}
		d.pix = make([]uint8, 4*50*30)
		for i := 0; i < 50*30; i++ {
			copy(d.pix[4*i:], []uint8{v, v, v, 255})
		}
		g, err := DefaultGemma3().Process(d)
		if err != nil {
			t.Fatal(err)
		}
		m, err := DefaultMllama().Process(d)
		if err != nil {
			t.Fatal(err)
		}
		for c := 0; c < 3; c++ {
			want := (float64(v)/255 - 0.5) / 0.5
			if got := g.PixelValues[0][c*896*896+12345]; math.Abs(float64(got)-want) > 1e-6 {
				t.Errorf("gemma3 %d channel %d: %v, want %v", v, c, got, want)
			}
			want = (float64(v)/255 - float64(CLIPMean[c])) / float64(CLIPStd[c])
			if got := m.PixelValues[c*560*560+777]; math.Abs(float64(got)-want) > 1e-6 {
				t.Errorf("mllama %d channel %d: %v, want %v", v, c, got, want)
			}
		}
		_ = src
	}
}

// TestOptimalCanvas follows get_optimal_tiled_canvas by hand for a few
// shapes (tile 560, 4 tiles; grids in order (1,1) (1,2) (1,3) (1,4) (2,1)
// (2,2) (3,1) (4,1) as rows × columns).
func TestOptimalCanvas(t *testing.T) {
	for _, tc := range []struct {
		h, w           int
		ch, cw         int // canvas
		nh, nw         int // image on the canvas
		tiles, ratioID int
	}{
		// 560² fits one tile exactly: scale 1 is an upscaling option.
		{560, 560, 560, 560, 560, 560, 1, 1},
		// 600×800: the smallest upscaling is 1.4 on the 2×2 canvas; the image
		// already lies between a tile and the canvas, so it is not resized.
		{600, 800, 1120, 1120, 600, 800, 4, 6},
		// 150×700: 1.6 on 1×2 (and 2×2, larger): kept at 150×700, padded.
		{150, 700, 560, 1120, 150, 700, 2, 2},
		// 1000×2000: no upscaling; the least downscaling, 0.56, on 1×2, 1×3,
		// 1×4 and 2×2: the smallest area, 1×2, wins.
		{1000, 2000, 560, 1120, 560, 1120, 2, 2},
		// 23×37: tiny, upscaled until the limiting side fills one tile.
		{23, 37, 560, 560, 348, 560, 1, 1},
		// 2000×300: portrait strip: 4×1 needs scale 1.12 (width limits), the smallest above 1.
		{2000, 300, 2240, 560, 2000, 300, 4, 8},
	} {
		ch, cw := OptimalCanvas(tc.h, tc.w, 4, 560)
		nh, nw := FitToCanvas(tc.h, tc.w, ch, cw, 560)
		if ch != tc.ch || cw != tc.cw || nh != tc.nh || nw != tc.nw {
			t.Errorf("%dx%d (h×w): canvas %dx%d, image %dx%d; want %dx%d, %dx%d", tc.h, tc.w, ch, cw, nh, nw, tc.ch, tc.cw, tc.nh, tc.nw)
		}
		d := solid(tc.w, tc.h, 90)
		out, err := DefaultMllama().Process(d)
		if err != nil {
			t.Fatal(err)
		}
		if out.NumTiles != tc.tiles || out.AspectRatioID != tc.ratioID {
			t.Errorf("%dx%d: %d tiles, id %d; want %d, %d", tc.h, tc.w, out.NumTiles, out.AspectRatioID, tc.tiles, tc.ratioID)
		}
		for i, v := range out.AspectRatioMask {
			if want := int64(0); (i < tc.tiles) != (v == 1) || (i >= tc.tiles && v != want) {
				t.Errorf("%dx%d: mask %v", tc.h, tc.w, out.AspectRatioMask)
				break
			}
		}
		// Tiles past NumTiles are zero; the canvas padding is -mean/std.
		last := out.PixelValues[(4-1)*3*560*560:]
		if tc.tiles < 4 && (last[0] != 0 || last[len(last)-1] != 0) {
			t.Errorf("%dx%d: unused tile not zero", tc.h, tc.w)
		}
	}
}

func solid(w, h int, v uint8) *Decoded {
	d := &Decoded{Width: w, Height: h, Mode: ModeRGB, pix: make([]uint8, 4*w*h)}
	for i := 0; i < w*h; i++ {
		copy(d.pix[4*i:], []uint8{v, v, v, 255})
	}
	return d
}

// TestMllamaPaddingIsNormalisedZero: the canvas is padded with black
// before normalisation, so padding reads -mean/std, not 0.
func TestMllamaPaddingIsNormalisedZero(t *testing.T) {
	out, err := DefaultMllama().Process(solid(700, 150, 255)) // 150×700 on a 560×1120 canvas
	if err != nil {
		t.Fatal(err)
	}
	// tile 0, channel 0, row 200 (below the 150 image rows), column 10
	got := out.PixelValues[200*560+10]
	want := -CLIPMean[0] / CLIPStd[0]
	if math.Abs(float64(got-want)) > 1e-6 {
		t.Errorf("padding = %v, want %v", got, want)
	}
	if v := out.PixelValues[100*560+10]; math.Abs(float64(v)-(1-float64(CLIPMean[0]))/float64(CLIPStd[0])) > 1e-6 {
		t.Errorf("image pixel = %v", v)
	}
}

func TestPanAndScanGrid(t *testing.T) {
	p := DefaultGemma3()
	for _, tc := range []struct{ w, h, cols, rows, cw, ch int }{
		{1000, 300, 3, 1, 334, 300}, // ratio 3.3: 3 crops, ceil(1000/3) wide
		{600, 500, 2, 1, 300, 500},  // ratio exactly 1.2 activates; at least 2 crops
		{500, 500, 0, 0, 0, 0},      // square: left whole
		{400, 2000, 1, 4, 400, 500}, // ratio 5 capped at 4 crops
		{700, 300, 2, 1, 350, 300},  // ratio 2.3: round(2.3) = 2 crops
		{600, 200, 0, 0, 0, 0},      // 2 crops (600/256 floors to 2) of 300×200: under the 256 minimum
	} {
		cols, rows, cw, ch := p.PanAndScanGrid(tc.w, tc.h)
		if cols != tc.cols || rows != tc.rows || cw != tc.cw || ch != tc.ch {
			t.Errorf("%dx%d: %d×%d crops of %dx%d, want %d×%d of %dx%d", tc.w, tc.h, cols, rows, cw, ch, tc.cols, tc.rows, tc.cw, tc.ch)
		}
	}
}

// TestAlphaRules: AlphaDrop keeps the colour under transparency
// (convert("RGB")); AlphaOverWhite blends over white with Pillow's
// integer rounding, which stays within one level of c·a/255 + 255·(1-a/255).
func TestAlphaRules(t *testing.T) {
	for a := 0; a < 256; a++ {
		for _, c := range []int{0, 1, 100, 200, 255} {
			got := float64(overWhite(uint8(c), uint8(a)))
			want := float64(c)*float64(a)/255 + 255*(1-float64(a)/255)
			if math.Abs(got-want) > 1 {
				t.Fatalf("overWhite(%d, %d) = %v, want about %v", c, a, got, want)
			}
		}
	}
	if overWhite(100, 255) != 100 || overWhite(100, 0) != 255 {
		t.Error("opaque or fully transparent pixel blended wrongly")
	}
	d := &Decoded{Width: 1, Height: 1, Mode: ModeRGBA, HasAlpha: true, pix: []uint8{10, 20, 30, 0}}
	if p := d.RGB(AlphaDrop, Gray16Scale).Pix; !bytes.Equal(p, []uint8{10, 20, 30}) {
		t.Errorf("AlphaDrop gave %v", p)
	}
	if p := d.RGB(AlphaOverWhite, Gray16Scale).Pix; !bytes.Equal(p, []uint8{255, 255, 255}) {
		t.Errorf("AlphaOverWhite gave %v", p)
	}
}

// TestGray16Rules: Pillow clips I;16 samples at 255 (transformers sees
// a white X-ray); whet's default keeps the high byte.
func TestGray16Rules(t *testing.T) {
	d, err := DecodeFile("testdata/gray16_64x48.png")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		x, y int
	}{{3, 0}, {63, 3}, {10, 20}} {
		s := gray16At(tc.x, tc.y)
		i := 3 * (tc.y*64 + tc.x)
		clip := d.RGB(AlphaDrop, Gray16Clip).Pix[i]
		scale := d.RGB(AlphaDrop, Gray16Scale).Pix[i]
		wantClip := uint8(255)
		if s < 256 {
			wantClip = uint8(s)
		}
		if clip != wantClip || scale != uint8(s>>8) {
			t.Errorf("sample %d: clip %d scale %d, want %d and %d", s, clip, scale, wantClip, s>>8)
		}
	}
}

func TestDecodeErrors(t *testing.T) {
	png, err := readTestImage("rgb8_37x23.png")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		data []byte
		want string
	}{
		{"empty", nil, "not a PNG or JPEG"},
		{"gif", []byte("GIF89a\x01\x00"), "gif"},
		{"webp", []byte("RIFF\x00\x00\x00\x00WEBPVP8 "), "webp"},
		{"truncated png", png[:len(png)/2], "truncated png"},
		{"corrupt png", append(append([]byte{}, png[:40]...), bytes.Repeat([]byte{7}, 60)...), "png"},
		{"jpeg header only", []byte{0xff, 0xd8, 0xff, 0xe0}, "jpeg"},
	} {
		_, err := Decode(tc.data)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want an error with %q", tc.name, err, tc.want)
		}
		if tc.name == "gif" && !errors.Is(err, ErrUnsupported) {
			t.Errorf("gif: %v is not ErrUnsupported", err)
		}
	}
	// An arithmetic-coded frame (SOF9 in place of SOF0) is named as such.
	jpg, err := readTestImage("color_37x23.jpg")
	if err != nil {
		t.Fatal(err)
	}
	arith := bytes.Replace(jpg, []byte{0xff, 0xc0}, []byte{0xff, 0xc9}, 1)
	if _, err := Decode(arith); !errors.Is(err, ErrUnsupported) || !strings.Contains(err.Error(), "arithmetic-coded JPEG") {
		t.Errorf("arithmetic JPEG: %v", err)
	}
	if _, err := decode(png, 100); err == nil || !strings.Contains(err.Error(), "851 pixels") {
		t.Errorf("size limit: %v", err)
	}
}

func readTestImage(name string) ([]byte, error) {
	return os.ReadFile(filepath.Join(testdata, name))
}
