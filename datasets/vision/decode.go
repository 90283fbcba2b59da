// Package vision turns image files into the pixel tensors that the image
// processors of Hugging Face transformers produce for Gemma 3
// (Gemma3ImageProcessor, SigLIP-style) and Llama 3.2 Vision
// (MllamaImageProcessor), and reads the image parts of multimodal
// conversations.
//
// transformers works on PIL images: it opens the file with Pillow (so
// with libjpeg for JPEGs), converts it to RGB (each processor its own
// way), resizes it with PIL's Image.resize, and only then goes to
// float32. So this package copies those steps one by one: the mode a PNG
// opens in, libjpeg's decoding (jpegdec.go, jpeg.go), convert("RGB") (or
// the alpha composite over white that Mllama uses), and Pillow's
// fixed-point convolution resampler. See docs/vision.md for what is proven
// against Pillow and transformers and what is not.
package vision

import (
	"bytes"
	"errors"
	"fmt"
	"image"
	"image/color"
	"image/jpeg"
	"image/png"
	"io"
	"os"
	"strings"
)

// MaxPixels is the largest image Decode accepts (width × height): Pillow's
// own decompression-bomb threshold (Image.MAX_IMAGE_PIXELS, 89,478,485),
// above which Pillow warns; whet refuses, since one such image costs more
// memory than a whole training batch.
const MaxPixels = 89478485

// ErrUnsupported marks a file that is not a PNG or JPEG image.
var ErrUnsupported = errors.New("unsupported image format")

// Mode is the PIL mode a file opens in (Image.open(path).mode): it decides
// how convert("RGB") treats the pixels.
type Mode string

const (
	ModeBilevel Mode = "1"     // 1-bit grayscale PNG
	ModeL       Mode = "L"     // 2/4/8-bit grayscale PNG, grayscale JPEG
	ModeI16     Mode = "I;16"  // 16-bit grayscale PNG (X-rays)
	ModeLA      Mode = "LA"    // grayscale + alpha (8 or 16 bits: Pillow keeps the high byte of 16)
	ModeRGB     Mode = "RGB"   // truecolor PNG (8 or 16 bits), color JPEG
	ModeRGBA    Mode = "RGBA"  // truecolor + alpha
	ModeP       Mode = "P"     // palette PNG
	ModeCMYK    Mode = "CMYK"  // CMYK JPEG
	modeUnknown Mode = "other" // never returned by Decode
)

// Decoded is an image as Pillow holds it after Image.open: 8 bits per
// channel, straight (not premultiplied) alpha, plus the raw samples of a
// 16-bit grayscale file, which Pillow keeps at 16 bits (mode I;16) until a
// conversion decides what becomes of them.
type Decoded struct {
	Width, Height int
	Format        string // "png" or "jpeg"
	Mode          Mode
	BitDepth      int // bits per sample in the file
	// HasAlpha is true when some pixel is not opaque (an alpha channel or a
	// PNG tRNS chunk): only then do the two alpha rules differ.
	HasAlpha bool
	pix      []uint8  // RGBA, 4 bytes per pixel, straight alpha
	gray16   []uint16 // mode I;16 only: the file's samples
}

// DecodeFile reads and decodes one image file; errors name the file.
func DecodeFile(path string) (*Decoded, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err // *PathError names the file
	}
	d, err := Decode(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return d, nil
}

// Decode decodes PNG or JPEG bytes.
func Decode(data []byte) (*Decoded, error) {
	return decode(data, MaxPixels)
}

func decode(data []byte, maxPixels int) (*Decoded, error) {
	format := sniff(data)
	switch format {
	case "png", "jpeg":
	case "":
		return nil, fmt.Errorf("%w: not a PNG or JPEG file (first bytes % x)", ErrUnsupported, head(data, 8))
	default:
		return nil, fmt.Errorf("%w: %s (whet reads PNG and JPEG; convert the file, e.g. with ImageMagick: convert in.%s out.png)", ErrUnsupported, format, format)
	}
	var cfg image.Config
	var err error
	if format == "png" {
		cfg, err = png.DecodeConfig(bytes.NewReader(data))
	} else {
		cfg, err = jpeg.DecodeConfig(bytes.NewReader(data))
	}
	if err != nil {
		if format == "jpeg" { // image/jpeg stops at frame types it does not know; say which
			if _, jerr := decodeJPEGFrame(data, 0); errors.Is(jerr, errJPEGArithmetic) {
				return nil, jerr
			}
		}
		return nil, fmt.Errorf("corrupt %s: %w", format, err)
	}
	if cfg.Width <= 0 || cfg.Height <= 0 {
		return nil, fmt.Errorf("corrupt %s: size %dx%d", format, cfg.Width, cfg.Height)
	}
	if int64(cfg.Width)*int64(cfg.Height) > int64(maxPixels) {
		return nil, fmt.Errorf("%dx%d is %d pixels, more than the %d whet accepts (Pillow's decompression-bomb limit); scale the image down first", cfg.Width, cfg.Height, int64(cfg.Width)*int64(cfg.Height), maxPixels)
	}
	if format == "jpeg" {
		// libjpeg's own decoding where this package has it (jpegdec.go);
		// anything else, and every error, goes to image/jpeg below.
		if f, err := decodeJPEGFrame(data, maxPixels); err == nil && f.w == cfg.Width && f.h == cfg.Height {
			d := &Decoded{Width: f.w, Height: f.h, Format: format, Mode: ModeRGB, BitDepth: 8, pix: make([]uint8, 4*f.w*f.h)}
			switch len(f.comps) {
			case 1:
				d.Mode = ModeL
			case 4:
				d.Mode = ModeCMYK
			}
			if libjpegPixels(f, d.pix) {
				return d, nil
			}
		}
	}
	var img image.Image
	if format == "png" {
		img, err = png.Decode(bytes.NewReader(data))
	} else {
		img, err = jpeg.Decode(bytes.NewReader(data))
	}
	if err != nil {
		// A file cut short: io.ErrUnexpectedEOF from either decoder, or a
		// PNG whose image data stream ends early.
		if errors.Is(err, io.ErrUnexpectedEOF) || strings.Contains(err.Error(), "not enough pixel data") {
			return nil, fmt.Errorf("truncated %s: %w", format, err)
		}
		return nil, fmt.Errorf("corrupt %s: %w", format, err)
	}
	d := &Decoded{Width: cfg.Width, Height: cfg.Height, Format: format}
	if format == "png" {
		d.Mode, d.BitDepth = pngMode(data)
	} else {
		d.BitDepth = 8
		switch img.(type) {
		case *image.Gray:
			d.Mode = ModeL
		case *image.CMYK:
			d.Mode = ModeCMYK
		default:
			d.Mode = ModeRGB
		}
	}
	if err := d.fill(img); err != nil {
		return nil, err
	}
	if ycc, ok := img.(*image.YCbCr); ok {
		libjpegRGB(ycc, d.Width, d.Height, d.pix)
	}
	return d, nil
}

var pngSignature = []byte("\x89PNG\r\n\x1a\n")

func head(b []byte, n int) []byte {
	if len(b) < n {
		return b
	}
	return b[:n]
}

// sniff names the format from the magic bytes, including common ones whet
// does not read, so the error can say what the file is.
func sniff(b []byte) string {
	switch {
	case bytes.HasPrefix(b, pngSignature):
		return "png"
	case bytes.HasPrefix(b, []byte{0xff, 0xd8, 0xff}):
		return "jpeg"
	case bytes.HasPrefix(b, []byte("GIF87a")), bytes.HasPrefix(b, []byte("GIF89a")):
		return "gif"
	case len(b) >= 12 && string(b[:4]) == "RIFF" && string(b[8:12]) == "WEBP":
		return "webp"
	case bytes.HasPrefix(b, []byte("BM")):
		return "bmp"
	case bytes.HasPrefix(b, []byte("II*\x00")), bytes.HasPrefix(b, []byte("MM\x00*")):
		return "tiff"
	case len(b) >= 12 && string(b[4:8]) == "ftyp" && (string(b[8:12]) == "heic" || string(b[8:12]) == "avif" || string(b[8:12]) == "mif1"):
		return "heic"
	case len(b) >= 132 && string(b[128:132]) == "DICM":
		return "dicom"
	}
	return ""
}

// pngMode reads the IHDR's bit depth and colour type (bytes 24 and 25) and
// names the mode Pillow's PngImagePlugin opens the file in.
func pngMode(data []byte) (Mode, int) {
	if len(data) < 26 {
		return modeUnknown, 0
	}
	depth, ct := int(data[24]), data[25]
	switch ct {
	case 0:
		switch depth {
		case 1:
			return ModeBilevel, depth
		case 16:
			return ModeI16, depth
		}
		return ModeL, depth
	case 2:
		return ModeRGB, depth
	case 3:
		return ModeP, depth
	case 4:
		return ModeLA, depth
	case 6:
		return ModeRGBA, depth
	}
	return modeUnknown, depth
}

// fill copies the decoded pixels into straight 8-bit RGBA the way Pillow
// unpacks them: 16-bit colour and alpha samples keep their high byte
// (Pillow's "RGB;16B", "LA;16B" raw modes), grayscale of 1/2/4 bits is
// scaled to 0..255 by both libraries alike, palette entries carry the
// tRNS alpha.
func (d *Decoded) fill(img image.Image) error {
	w, h := d.Width, d.Height
	b := img.Bounds()
	if b.Dx() != w || b.Dy() != h {
		return fmt.Errorf("corrupt %s: decoded %dx%d, header says %dx%d", d.Format, b.Dx(), b.Dy(), w, h)
	}
	d.pix = make([]uint8, 4*w*h)
	if d.Mode == ModeI16 {
		d.gray16 = make([]uint16, w*h)
	}
	set := func(i int, r, g, b, a uint8) {
		p := d.pix[4*i : 4*i+4 : 4*i+4]
		p[0], p[1], p[2], p[3] = r, g, b, a
		if a != 255 {
			d.HasAlpha = true
		}
	}
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			i := y*w + x
			px, py := b.Min.X+x, b.Min.Y+y
			switch m := img.(type) {
			case *image.Gray:
				v := m.Pix[m.PixOffset(px, py)]
				set(i, v, v, v, 255)
			case *image.Gray16:
				o := m.PixOffset(px, py)
				v := uint16(m.Pix[o])<<8 | uint16(m.Pix[o+1])
				if d.gray16 != nil {
					d.gray16[i] = v
				}
				hi := uint8(v >> 8)
				set(i, hi, hi, hi, 255)
			case *image.RGBA: // opaque truecolor (Go decodes it premultiplied, but alpha is 255)
				o := m.PixOffset(px, py)
				set(i, m.Pix[o], m.Pix[o+1], m.Pix[o+2], m.Pix[o+3])
			case *image.NRGBA:
				o := m.PixOffset(px, py)
				set(i, m.Pix[o], m.Pix[o+1], m.Pix[o+2], m.Pix[o+3])
			case *image.RGBA64: // opaque 16-bit truecolor
				o := m.PixOffset(px, py)
				set(i, m.Pix[o], m.Pix[o+2], m.Pix[o+4], m.Pix[o+6])
			case *image.NRGBA64:
				o := m.PixOffset(px, py)
				if d.gray16 != nil { // 16-bit gray with a tRNS colour
					d.gray16[i] = uint16(m.Pix[o])<<8 | uint16(m.Pix[o+1])
				}
				set(i, m.Pix[o], m.Pix[o+2], m.Pix[o+4], m.Pix[o+6])
			case *image.Paletted:
				c := m.Palette[m.Pix[m.PixOffset(px, py)]]
				n := straight(c)
				set(i, n.R, n.G, n.B, n.A)
			case *image.YCbCr:
				yi, ci := m.YOffset(px, py), m.COffset(px, py)
				r, g, bb := color.YCbCrToRGB(m.Y[yi], m.Cb[ci], m.Cr[ci])
				set(i, r, g, bb, 255)
			case *image.CMYK:
				o := m.PixOffset(px, py)
				r, g, bb := cmykToRGB(m.Pix[o], m.Pix[o+1], m.Pix[o+2], m.Pix[o+3])
				set(i, r, g, bb, 255)
			default:
				return fmt.Errorf("%w: %s decoded as %T", ErrUnsupported, d.Format, img)
			}
		}
	}
	return nil
}

// straight returns a palette colour with straight alpha: Go's PNG decoder
// stores opaque entries as color.RGBA and tRNS ones as color.NRGBA.
func straight(c color.Color) color.NRGBA {
	switch v := c.(type) {
	case color.NRGBA:
		return v
	case color.RGBA:
		if v.A == 255 {
			return color.NRGBA{v.R, v.G, v.B, 255}
		}
	}
	return color.NRGBAModel.Convert(c).(color.NRGBA)
}

// cmykToRGB follows Pillow's cmyk2rgb: nk - c·nk/255 with nk = 255-k and
// Pillow's rounded division by 255 (MULDIV255). CMYK JPEGs are rare in
// datasets and not part of the reference set.
func cmykToRGB(c, m, y, k uint8) (uint8, uint8, uint8) {
	nk := 255 - k
	f := func(v uint8) uint8 { return nk - muldiv255(v, nk) }
	return f(c), f(m), f(y)
}

func muldiv255(a, b uint8) uint8 {
	t := uint32(a)*uint32(b) + 128
	return uint8((t>>8 + t) >> 8)
}

// Max16 returns the largest sample of a 16-bit grayscale image (ok false
// for other modes). Medical images often use 10 or 12 of the 16 bits:
// then neither rule gives a useful picture (the high byte is nearly black,
// Pillow's clip nearly white), and the data wants windowing first.
func (d *Decoded) Max16() (max uint16, ok bool) {
	if d.gray16 == nil {
		return 0, false
	}
	for _, v := range d.gray16 {
		if v > max {
			max = v
		}
	}
	return max, true
}

// Gray16Rule says what becomes of 16-bit grayscale samples (mode I;16).
type Gray16Rule int

const (
	// Gray16Scale keeps the high byte (v>>8): the full range survives, the
	// way Pillow treats 16-bit colour PNGs and llama.cpp's image loader
	// treats every 16-bit PNG. whet's default, so an X-ray stays an X-ray.
	Gray16Scale Gray16Rule = iota
	// Gray16Clip is Pillow's I;16 → RGB conversion, which transformers
	// uses: every sample above 255 becomes 255, so a typical 12- or
	// 16-bit X-ray turns almost white. Only for bit-exact comparison with
	// transformers.
	Gray16Clip
)

// AlphaRule says how transparent pixels become RGB.
type AlphaRule int

const (
	// AlphaDrop is PIL's convert("RGB"): the colour under a transparent
	// pixel is kept and the alpha dropped (Gemma 3's processor).
	AlphaDrop AlphaRule = iota
	// AlphaOverWhite is convert("RGBA") then Image.alpha_composite over
	// opaque white, then RGB (Mllama's processor, after Idefics 2).
	AlphaOverWhite
)

// RGB is an 8-bit RGB image, 3 bytes per pixel, rows top to bottom.
type RGB struct {
	W, H int
	Pix  []uint8
}

// RGB converts the image the way the processor named by alpha does, with
// 16-bit grayscale handled by g16.
func (d *Decoded) RGB(alpha AlphaRule, g16 Gray16Rule) *RGB {
	out := &RGB{W: d.Width, H: d.Height, Pix: make([]uint8, 3*d.Width*d.Height)}
	for i := 0; i < d.Width*d.Height; i++ {
		r, g, b, a := d.pix[4*i], d.pix[4*i+1], d.pix[4*i+2], d.pix[4*i+3]
		if d.gray16 != nil && g16 == Gray16Clip {
			v := uint8(255)
			if s := d.gray16[i]; s < 256 {
				v = uint8(s)
			}
			r, g, b = v, v, v
		}
		// Both processors return an image already in mode RGB untouched,
		// so an RGB PNG's tRNS colour stays opaque even under Mllama's
		// rule; every other mode goes through convert("RGBA").
		if alpha == AlphaOverWhite && a != 255 && d.Mode != ModeRGB {
			r, g, b = overWhite(r, a), overWhite(g, a), overWhite(b, a)
		}
		out.Pix[3*i], out.Pix[3*i+1], out.Pix[3*i+2] = r, g, b
	}
	return out
}

// overWhite is one channel of Pillow's ImagingAlphaComposite (scalar path)
// with an opaque white destination: coef1 = a·255²·128/outa255 reduces to
// a·128 and coef2 to (255-a)·128, rounded by SHIFTFORDIV255 with 7
// precision bits as Pillow does.
func overWhite(c, a uint8) uint8 {
	if a == 0 {
		return 255
	}
	const prec = 7
	coef1 := uint32(a) << prec
	coef2 := uint32(255)<<prec - coef1
	t := uint32(c)*coef1 + 255*coef2 + 0x80<<prec
	return uint8(((t>>8 + t) >> 8) >> prec)
}
