package imageview

import (
	"bytes"
	"encoding/base64"
	"image/png"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/charmbracelet/x/ansi"

	"whet/datasets/vision"
)

func env(kv ...string) func(string) string {
	m := map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return func(k string) string { return m[k] }
}

func TestDetect(t *testing.T) {
	for _, tc := range []struct {
		name string
		env  func(string) string
		want Protocol
		note string
	}{
		{"kitty", env("TERM", "xterm-kitty"), Kitty, "kitty"},
		{"kitty window", env("TERM", "xterm-256color", "KITTY_WINDOW_ID", "1"), Kitty, "kitty"},
		{"ghostty", env("TERM", "xterm-ghostty"), Kitty, "Ghostty"},
		{"iterm2", env("TERM", "xterm-256color", "TERM_PROGRAM", "iTerm.app"), ITerm2, "iTerm2"},
		{"iterm2 over ssh", env("TERM", "xterm-256color", "LC_TERMINAL", "iTerm2"), ITerm2, "iTerm2"},
		{"wezterm", env("TERM", "xterm-256color", "TERM_PROGRAM", "WezTerm"), ITerm2, "WezTerm"},
		{"truecolor", env("TERM", "xterm-256color", "COLORTERM", "truecolor"), Blocks, "24-bit"},
		{"256 colours", env("TERM", "xterm-256color"), Text, "no 24-bit"},
		{"no color", env("TERM", "xterm-kitty", "NO_COLOR", "1"), Text, "NO_COLOR"},
		{"dumb", env("TERM", "dumb", "COLORTERM", "truecolor"), Text, "TERM is dumb"},
		{"no TERM", env(), Text, "TERM is unset"},
		// tmux passes kitty's escapes on only with allow-passthrough: half
		// blocks even in kitty, text without truecolor.
		{"kitty in tmux", env("TERM", "tmux-256color", "TMUX", "/tmp/x", "KITTY_WINDOW_ID", "1", "COLORTERM", "truecolor"), Blocks, "tmux"},
		{"iterm2 in tmux", env("TERM", "screen-256color", "TERM_PROGRAM", "iTerm.app"), Text, "tmux"},
		{"forced kitty in tmux", env("TERM", "tmux-256color", "TMUX", "/tmp/x", EnvVar, "kitty"), Kitty, "WHET_IMAGES=kitty"},
		{"forced text", env("TERM", "xterm-kitty", EnvVar, "TEXT"), Text, "WHET_IMAGES=text"},
		{"bad override", env("TERM", "xterm-kitty", EnvVar, "sixel"), Kitty, `WHET_IMAGES="sixel" is not one of`},
	} {
		got, note := Detect(tc.env)
		if got != tc.want || !strings.Contains(note, tc.note) {
			t.Errorf("%s: Detect = %v (%q), want %v (note with %q)", tc.name, got, note, tc.want, tc.note)
		}
	}
}

// testImage is a small image with a different colour in every pixel.
func testImage(w, h int) *vision.RGB {
	img := &vision.RGB{W: w, H: h, Pix: make([]uint8, 3*w*h)}
	for i := 0; i < w*h; i++ {
		img.Pix[3*i], img.Pix[3*i+1], img.Pix[3*i+2] = uint8(i*37), uint8(i*91+7), uint8(255-i*13)
	}
	return img
}

func checkGolden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update)", err)
	}
	if got != string(want) {
		t.Errorf("%s differs from %s:\n got %q\nwant %q", name, path, got, want)
	}
}

// decodePNG reads a base64 PNG back and compares its pixels with img.
func samePNG(t *testing.T, b64 string, img *vision.RGB) {
	t.Helper()
	data, err := base64.StdEncoding.DecodeString(b64)
	if err != nil {
		t.Fatalf("payload is not base64: %v", err)
	}
	m, err := png.Decode(bytes.NewReader(data))
	if err != nil {
		t.Fatalf("payload is not a PNG: %v", err)
	}
	if b := m.Bounds(); b.Dx() != img.W || b.Dy() != img.H {
		t.Fatalf("PNG is %v, want %dx%d", b, img.W, img.H)
	}
	for y := 0; y < img.H; y++ {
		for x := 0; x < img.W; x++ {
			r, g, b, _ := m.At(x, y).RGBA()
			o := 3 * (y*img.W + x)
			if uint8(r>>8) != img.Pix[o] || uint8(g>>8) != img.Pix[o+1] || uint8(b>>8) != img.Pix[o+2] {
				t.Fatalf("pixel %d,%d differs", x, y)
			}
		}
	}
}

var kittyEsc = regexp.MustCompile("\x1b_G([^;]*);([^\x1b]*)\x1b\\\\")

// TestKittyTransmitGolden: the escape bytes of a 4×3 image, and that the
// payload is the image's PNG.
func TestKittyTransmitGolden(t *testing.T) {
	img := testImage(4, 3)
	got, err := KittyTransmit(img, 7, 4, 2)
	if err != nil {
		t.Fatal(err)
	}
	checkGolden(t, "kitty_4x3.golden", got)
	m := kittyEsc.FindAllStringSubmatch(got, -1)
	if len(m) != 1 || m[0][1] != "a=T,U=1,f=100,t=d,i=7,c=4,r=2,q=2,m=0" || kittyEsc.ReplaceAllString(got, "") != "" {
		t.Fatalf("want one escape with the placement keys: %q", got)
	}
	samePNG(t, m[0][2], img)
}

// TestKittyTransmitChunks: a payload over 4096 bytes goes in chunks, m=1
// on all but the last, the keys on the first only.
func TestKittyTransmitChunks(t *testing.T) {
	img := testImage(60, 40) // no shrinking: 60 ≤ 10·cols, 40 ≤ 20·rows
	x := uint32(1)
	for i := range img.Pix { // noise, so that the PNG stays large
		x = x*1664525 + 1013904223
		img.Pix[i] = uint8(x >> 24)
	}
	got, err := KittyTransmit(img, 300, 8, 3)
	if err != nil {
		t.Fatal(err)
	}
	m := kittyEsc.FindAllStringSubmatch(got, -1)
	if len(m) < 2 || kittyEsc.ReplaceAllString(got, "") != "" {
		t.Fatalf("%d escapes for a %d-byte sequence", len(m), len(got))
	}
	var payload strings.Builder
	for i, e := range m {
		want := "m=1"
		if i == 0 {
			want = "a=T,U=1,f=100,t=d,i=300,c=8,r=3,q=2,m=1"
		}
		if i == len(m)-1 {
			want = "m=0"
		}
		if e[1] != want || len(e[2]) > KittyChunk || (i < len(m)-1 && len(e[2]) != KittyChunk) {
			t.Errorf("chunk %d: keys %q, %d bytes", i, e[1], len(e[2]))
		}
		payload.WriteString(e[2])
	}
	samePNG(t, payload.String(), img)
}

// TestKittyShrinks: a large image is sent at most 10×20 pixels a cell.
func TestKittyShrinks(t *testing.T) {
	got, err := KittyTransmit(testImage(400, 100), 1, 4, 2)
	if err != nil {
		t.Fatal(err)
	}
	m := kittyEsc.FindAllStringSubmatch(got, -1)
	var payload string
	for _, e := range m {
		payload += e[2]
	}
	data, _ := base64.StdEncoding.DecodeString(payload)
	cfg, err := png.DecodeConfig(bytes.NewReader(data))
	if err != nil || cfg.Width != 40 || cfg.Height != 10 {
		t.Errorf("sent %dx%d (%v), want 40x10", cfg.Width, cfg.Height, err)
	}
	if _, err := KittyTransmit(testImage(2, 2), 0, 4, 2); err == nil {
		t.Error("image id 0 accepted")
	}
}

// TestKittyPlaceholdersGolden: the cells of a 3×2 placement, each one
// column wide as the renderer counts it.
func TestKittyPlaceholdersGolden(t *testing.T) {
	got, err := KittyPlaceholders(7, 3, 2)
	if err != nil {
		t.Fatal(err)
	}
	checkGolden(t, "kitty_placeholders_3x2.golden", got)
	lines := strings.Split(strings.TrimSuffix(got, "\n"), "\n")
	if len(lines) != 2 {
		t.Fatalf("%d lines", len(lines))
	}
	for i, l := range lines {
		if w := ansi.StringWidth(l); w != 3 || !strings.HasPrefix(l, "\x1b[38;5;7m") {
			t.Errorf("line %d: %d cells wide, want 3, with the id as colour: %q", i, w, l)
		}
	}
	if want := "\U0010EEEE\u030D\u030E"; !strings.Contains(lines[1], want) { // row 1, column 2
		t.Errorf("row 1 has no cell for column 2: %q", lines[1])
	}
	big, _ := KittyPlaceholders(0x0a0b0c, 1, 1)
	if !strings.HasPrefix(big, "\x1b[38;2;10;11;12m") {
		t.Errorf("id over 255 not as 24-bit colour: %q", big)
	}
	if _, err := KittyPlaceholders(1, MaxKittyCells+1, 1); err == nil {
		t.Error("more columns than diacritics accepted")
	}
}

func TestITerm2InlineGolden(t *testing.T) {
	img := testImage(4, 3)
	got, err := ITerm2Inline(img, "xray/001.png", 4, 2)
	if err != nil {
		t.Fatal(err)
	}
	checkGolden(t, "iterm2_4x3.golden", got)
	re := regexp.MustCompile("^\x1b\\]1337;File=name=([^;]*);size=([0-9]+);width=4;height=2;preserveAspectRatio=1;inline=1:([^\a]*)\a$")
	m := re.FindStringSubmatch(got)
	if m == nil {
		t.Fatalf("not an iTerm2 inline image: %q", got)
	}
	if name, _ := base64.StdEncoding.DecodeString(m[1]); string(name) != "xray/001.png" {
		t.Errorf("name %q", name)
	}
	samePNG(t, m[3], img)
}

func TestPlaceholderAndCells(t *testing.T) {
	d, err := vision.DecodeFile("../../../datasets/vision/testdata/gray16_64x48.png")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := Placeholder("xray/001.png", d), "[image: xray/001.png 64×48 gray16]"; got != want {
		t.Errorf("Placeholder = %q, want %q", got, want)
	}
	if c, r := Cells(700, 150, 40, 10); c != 40 || r != 4 {
		t.Errorf("Cells(700, 150, 40, 10) = %d, %d; want 40, 4", c, r)
	}
	if c, r := Cells(150, 700, 40, 10); c != 4 || r != 10 {
		t.Errorf("Cells(150, 700, 40, 10) = %d, %d; want 4, 10", c, r)
	}
}
