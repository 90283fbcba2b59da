package imageview

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"strings"

	"whet/datasets/vision"
	"whet/engine/envswitch"
)

// Protocol is how a terminal can show an image.
type Protocol int

const (
	// Text: a one-line placeholder naming the image ([image: …]), for
	// terminals without 24-bit colour, NO_COLOR, or no room.
	Text Protocol = iota
	// Blocks: coloured half blocks (HalfBlocks), any truecolor terminal.
	Blocks
	// Kitty: the kitty graphics protocol with Unicode placeholders (kitty,
	// Ghostty): the image is sent once and shown where the placeholder
	// cells are, which are ordinary text to a cell-based renderer.
	Kitty
	// ITerm2: iTerm2's inline images (OSC 1337), also read by WezTerm.
	ITerm2
)

func (p Protocol) String() string {
	switch p {
	case Blocks:
		return "blocks"
	case Kitty:
		return "kitty"
	case ITerm2:
		return "iterm2"
	}
	return "text"
}

// EnvVar overrides the detection: kitty, iterm2, blocks or text (the
// values envswitch accepts, with the aliases iterm, halfblocks, none and
// off; case and spaces aside).
const EnvVar = "WHET_IMAGES"

// Detect chooses how to show images from the environment (getenv is
// os.Getenv in use, a map in tests). It is conservative: inside tmux or
// screen, which pass graphics escapes on only when configured to, it
// uses half blocks (truecolor) or text, unless WHET_IMAGES asks for a
// protocol. The note says why, for a status line, or names a bad
// WHET_IMAGES value.
func Detect(getenv func(string) string) (p Protocol, note string) {
	v, err := envswitch.Parse(EnvVar, getenv(EnvVar))
	switch v {
	case "":
		if err != nil {
			note = err.Error() + "; detecting the terminal instead"
		}
	case "kitty":
		return Kitty, EnvVar + "=kitty"
	case "iterm2", "iterm":
		return ITerm2, EnvVar + "=iterm2"
	case "blocks", "halfblocks":
		return Blocks, EnvVar + "=blocks"
	case "text", "none", "off":
		return Text, EnvVar + "=text"
	}
	withNote := func(p Protocol, why string) (Protocol, string) {
		if note != "" {
			return p, note + "; " + why
		}
		return p, why
	}
	term := getenv("TERM")
	if getenv("NO_COLOR") != "" { // no-color.org: set and not empty
		return withNote(Text, "NO_COLOR is set")
	}
	if term == "" || term == "dumb" {
		return withNote(Text, "TERM is "+orQuoted(term))
	}
	truecolor := func() bool {
		ct := strings.ToLower(getenv("COLORTERM"))
		return ct == "truecolor" || ct == "24bit" || strings.Contains(term, "direct")
	}
	if getenv("TMUX") != "" || strings.HasPrefix(term, "screen") || strings.HasPrefix(term, "tmux") {
		if truecolor() {
			return withNote(Blocks, "inside tmux/screen: half blocks (set "+EnvVar+"=kitty when tmux passes graphics through)")
		}
		return withNote(Text, "inside tmux/screen without COLORTERM=truecolor")
	}
	prog := getenv("TERM_PROGRAM")
	switch {
	case term == "xterm-kitty" || getenv("KITTY_WINDOW_ID") != "":
		return withNote(Kitty, "kitty")
	case term == "xterm-ghostty" || strings.EqualFold(prog, "ghostty"):
		return withNote(Kitty, "Ghostty")
	case prog == "iTerm.app" || getenv("LC_TERMINAL") == "iTerm2":
		return withNote(ITerm2, "iTerm2")
	case prog == "WezTerm":
		return withNote(ITerm2, "WezTerm")
	case truecolor() || prog == "vscode":
		return withNote(Blocks, "24-bit colour")
	}
	return withNote(Text, "no 24-bit colour (COLORTERM is not truecolor)")
}

func orQuoted(s string) string {
	if s == "" {
		return "unset"
	}
	return s
}

// Cells is the cell size an image of w×h takes in at most cols×rows cells,
// aspect kept with cells twice as high as wide (the half-block geometry).
func Cells(w, h, cols, rows int) (c, r int) {
	pw, ph := Fit(w, h, cols, rows)
	return pw, (ph + 1) / 2
}

// rgbImage adapts vision.RGB to image.Image for the PNG encoder.
type rgbImage struct{ *vision.RGB }

func (m rgbImage) ColorModel() color.Model { return color.RGBAModel }
func (m rgbImage) Bounds() image.Rectangle { return image.Rect(0, 0, m.W, m.H) }
func (m rgbImage) At(x, y int) color.Color {
	o := 3 * (y*m.W + x)
	return color.RGBA{m.Pix[o], m.Pix[o+1], m.Pix[o+2], 255}
}

// Cell pixels assumed when sizing what is sent: the terminal scales the
// image to the cells anyway, so this only bounds the bytes.
const cellW, cellH = 10, 20

// encodePNG shrinks img to at most c×r cells' worth of pixels (never
// enlarging it) and encodes it as PNG.
func encodePNG(img *vision.RGB, c, r int) ([]byte, error) {
	pw, ph := img.W, img.H
	if pw > c*cellW || ph > r*cellH {
		pw, ph = c*cellW, img.H*c*cellW/img.W
		if ph > r*cellH {
			pw, ph = img.W*r*cellH/img.H, r*cellH
		}
		pw, ph = max(pw, 1), max(ph, 1)
		small, err := vision.Resize(img, pw, ph, vision.Bilinear)
		if err != nil {
			return nil, err
		}
		img = small
	}
	var buf bytes.Buffer
	if err := (&png.Encoder{CompressionLevel: png.BestSpeed}).Encode(&buf, rgbImage{img}); err != nil {
		return nil, fmt.Errorf("image view: encoding PNG: %w", err)
	}
	return buf.Bytes(), nil
}

// KittyChunk is the largest base64 payload of one kitty escape, as the
// protocol asks (4096 bytes).
const KittyChunk = 4096

// KittyTransmit is the escape sequence that sends img to a kitty terminal
// as image id, with a virtual placement of c×r cells for Unicode
// placeholders (a=T, U=1): base64 PNG in chunks of KittyChunk bytes, each
// `ESC _ G keys ; payload ESC \`, m=1 on all but the last; q=2 keeps the
// terminal from answering. The image is shrunk first (see encodePNG).
func KittyTransmit(img *vision.RGB, id uint32, c, r int) (string, error) {
	if id == 0 || c <= 0 || r <= 0 {
		return "", fmt.Errorf("image view: kitty image id %d in %dx%d cells: want a non-zero id and cells", id, c, r)
	}
	data, err := encodePNG(img, c, r)
	if err != nil {
		return "", err
	}
	b64 := base64.StdEncoding.EncodeToString(data)
	var b strings.Builder
	for first := true; first || len(b64) > 0; first = false {
		chunk := b64[:min(KittyChunk, len(b64))]
		b64 = b64[len(chunk):]
		more := 0
		if len(b64) > 0 {
			more = 1
		}
		b.WriteString("\x1b_G")
		if first {
			fmt.Fprintf(&b, "a=T,U=1,f=100,t=d,i=%d,c=%d,r=%d,q=2,", id, c, r)
		}
		fmt.Fprintf(&b, "m=%d;%s\x1b\\", more, chunk)
	}
	return b.String(), nil
}

// kittyPlaceholder is the character whose cells show a kitty image.
const kittyPlaceholder = '\U0010EEEE'

// kittyDiacritics are the first entries of kitty's
// rowcolumn-diacritics.txt: the mark at index i encodes row or column i.
var kittyDiacritics = []rune{
	0x0305, 0x030D, 0x030E, 0x0310, 0x0312, 0x033D, 0x033E, 0x033F,
	0x0346, 0x034A, 0x034B, 0x034C, 0x0350, 0x0351, 0x0352, 0x0357,
	0x035B, 0x0363, 0x0364, 0x0365, 0x0366, 0x0367, 0x0368, 0x0369,
	0x036A, 0x036B, 0x036C, 0x036D, 0x036E, 0x036F, 0x0483, 0x0484,
	0x0485, 0x0486, 0x0487, 0x0592, 0x0593, 0x0594, 0x0595, 0x0597,
	0x0598, 0x0599, 0x059C, 0x059D, 0x059E, 0x059F, 0x05A0, 0x05A1,
	0x05A8, 0x05A9, 0x05AB, 0x05AC, 0x05AF, 0x05C4, 0x0610, 0x0611,
	0x0612, 0x0613, 0x0614, 0x0615, 0x0616, 0x0617, 0x0657, 0x0658,
	0x0659, 0x065A, 0x065B, 0x065D, 0x065E, 0x06D6, 0x06D7, 0x06D8,
	0x06D9, 0x06DA, 0x06DB, 0x06DC, 0x06DF, 0x06E0, 0x06E1, 0x06E2,
	0x06E4, 0x06E7, 0x06E8, 0x06EB, 0x06EC, 0x0730, 0x0732, 0x0733,
	0x0735, 0x0736, 0x073A, 0x073D, 0x073F, 0x0740, 0x0741, 0x0743,
	0x0745, 0x0747, 0x0749, 0x074A, 0x07EB, 0x07EC, 0x07ED, 0x07EE,
	0x07EF, 0x07F0, 0x07F1, 0x07F3,
}

// MaxKittyCells is the most rows or columns placeholders can address
// here (the diacritics listed).
var MaxKittyCells = len(kittyDiacritics)

// KittyPlaceholders are the r lines of c cells that show image id (sent by
// KittyTransmit with the same c×r): each cell is U+10EEEE with its row
// and column as diacritics, coloured with the id (256-colour index for
// ids below 256, else 24-bit), each line ending with a colour reset.
// Each cell is one column wide, so the renderer's width counting holds.
func KittyPlaceholders(id uint32, c, r int) (string, error) {
	if id == 0 || c <= 0 || r <= 0 || c > MaxKittyCells || r > MaxKittyCells {
		return "", fmt.Errorf("image view: kitty placeholders for id %d in %dx%d cells: want a non-zero id and at most %d cells a side", id, c, r, MaxKittyCells)
	}
	fg := fmt.Sprintf("\x1b[38;5;%dm", id)
	if id > 255 {
		fg = fmt.Sprintf("\x1b[38;2;%d;%d;%dm", (id>>16)&255, (id>>8)&255, id&255)
	}
	var b strings.Builder
	for y := 0; y < r; y++ {
		b.WriteString(fg)
		for x := 0; x < c; x++ {
			b.WriteRune(kittyPlaceholder)
			b.WriteRune(kittyDiacritics[y])
			b.WriteRune(kittyDiacritics[x])
		}
		b.WriteString("\x1b[0m\n")
	}
	return b.String(), nil
}

// ITerm2Inline is iTerm2's inline image escape for img in c×r cells:
// `ESC ] 1337 ; File=name=…;size=…;width=c;height=r;preserveAspectRatio=1;inline=1 : base64 PNG BEL`.
// name is the file's name (base64 in the escape, as the protocol asks).
// The image is shrunk first (see encodePNG). It is written where the
// cursor is and takes c×r cells.
func ITerm2Inline(img *vision.RGB, name string, c, r int) (string, error) {
	if c <= 0 || r <= 0 {
		return "", fmt.Errorf("image view: iTerm2 image in %dx%d cells: want cells", c, r)
	}
	data, err := encodePNG(img, c, r)
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("\x1b]1337;File=name=%s;size=%d;width=%d;height=%d;preserveAspectRatio=1;inline=1:%s\a",
		base64.StdEncoding.EncodeToString([]byte(name)), len(data), c, r, base64.StdEncoding.EncodeToString(data)), nil
}

// ModeName is a decoded image's mode in words for placeholders: gray16 for
// 16-bit grayscale (X-rays), gray, rgb, rgba, palette…
func ModeName(d *vision.Decoded) string {
	switch d.Mode {
	case vision.ModeBilevel:
		return "gray1"
	case vision.ModeL:
		if d.BitDepth > 0 && d.BitDepth < 8 {
			return fmt.Sprintf("gray%d", d.BitDepth)
		}
		return "gray"
	case vision.ModeI16:
		return "gray16"
	case vision.ModeLA:
		return "gray+alpha"
	case vision.ModeRGB:
		if d.BitDepth == 16 {
			return "rgb16"
		}
		return "rgb"
	case vision.ModeRGBA:
		if d.BitDepth == 16 {
			return "rgba16"
		}
		return "rgba"
	case vision.ModeP:
		return "palette"
	case vision.ModeCMYK:
		return "cmyk"
	}
	return strings.ToLower(string(d.Mode))
}
