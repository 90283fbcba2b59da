package vision

import (
	"bytes"
	"compress/zlib"
	"encoding/binary"
	"flag"
	"hash/crc32"
	"image"
	"image/color"
	"image/jpeg"
	"image/png"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// The committed test images in testdata/ are made by this file:
//
//	go test ./datasets/vision -run TestTestImages -write-images
//
// tools/reference/make_vision_reference.py runs transformers' processors
// on the same files. The pixel values are plain arithmetic on x and y, so
// a test can rebuild what each PNG must decode to.
var writeImages = flag.Bool("write-images", false, "rewrite the test images in testdata/")

const testdata = "testdata"

type testImage struct {
	name   string
	mode   Mode
	depth  int
	w, h   int
	encode func() []byte
	// want is the pixel (straight RGBA) the file must decode to; nil for
	// lossy JPEG.
	want func(x, y int) (r, g, b, a uint8)
	// tool, instead of encode, is the shell command (run in testdata/,
	// with libjpeg-turbo's cjpeg and jpegtran) that made the file: Go's
	// encoder writes only baseline 4:2:0 JPEGs.
	tool string
	// sameAs names an image whose decoded pixels this one must equal: a
	// lossless jpegtran rewrite (progressive, restart markers) holds the
	// same coefficients as its source.
	sameAs string
}

// pattern mixes smooth gradients with a hard edge and a one-pixel
// checkerboard, so resampling errors show up in every filter tap.
func pattern(x, y, w, h, c int) uint8 {
	switch {
	case (x/3+y/3)%5 == 0:
		if (x+y)%2 == 0 {
			return 255
		}
		return 0
	case x < w/3:
		return uint8((x*255/(w-1) + c*70) % 256)
	default:
		return uint8((y*255/(h-1)*(c+1) + x*7) % 256)
	}
}

func gray16At(x, y int) uint16 {
	if y < 4 { // a band below 256, where Pillow's clipping keeps the value
		return uint16(x * 4)
	}
	return uint16((x*1021 + y*2663) % 65536)
}

var paletteColors = func() color.Palette {
	var p color.Palette
	for i := 0; i < 16; i++ {
		r, g, b := uint8(i*17), uint8(255-i*13), uint8((i*97)%256)
		if i%4 == 3 {
			p = append(p, color.NRGBA{r, g, b, uint8(i * 15)}) // transparent entries: a tRNS chunk
		} else {
			p = append(p, color.RGBA{r, g, b, 255})
		}
	}
	return p
}()

func testImages() []testImage {
	rgbWant := func(w, h int) func(x, y int) (uint8, uint8, uint8, uint8) {
		return func(x, y int) (uint8, uint8, uint8, uint8) {
			return pattern(x, y, w, h, 0), pattern(x, y, w, h, 1), pattern(x, y, w, h, 2), 255
		}
	}
	rgba := func(w, h int) *image.NRGBA {
		m := image.NewNRGBA(image.Rect(0, 0, w, h))
		for y := 0; y < h; y++ {
			for x := 0; x < w; x++ {
				r, g, b, _ := rgbWant(w, h)(x, y)
				m.SetNRGBA(x, y, color.NRGBA{r, g, b, 255})
			}
		}
		return m
	}
	alphaAt := func(x, y int) uint8 { return uint8((x*255/39 + y*3) % 256) }
	grayAt := func(w, h int) func(x, y int) uint8 {
		return func(x, y int) uint8 { return pattern(x, y, w, h, 1) }
	}
	var imgs []testImage
	add := func(t testImage) { imgs = append(imgs, t) }

	for _, sz := range [][2]int{{37, 23}, {700, 150}, {150, 700}} {
		w, h := sz[0], sz[1]
		add(testImage{name: "rgb8_" + dims(w, h) + ".png", mode: ModeRGB, depth: 8, w: w, h: h,
			encode: func() []byte {
				// Opaque NRGBA: Go's encoder writes colour type 2 (RGB).
				return encodePNG(rgba(w, h))
			}, want: rgbWant(w, h)})
	}
	add(testImage{name: "rgba8_40x30.png", mode: ModeRGBA, depth: 8, w: 40, h: 30,
		encode: func() []byte {
			m := rgba(40, 30)
			for y := 0; y < 30; y++ {
				for x := 0; x < 40; x++ {
					m.Pix[m.PixOffset(x, y)+3] = alphaAt(x, y)
				}
			}
			return encodePNG(m)
		},
		want: func(x, y int) (uint8, uint8, uint8, uint8) {
			r, g, b, _ := rgbWant(40, 30)(x, y)
			return r, g, b, alphaAt(x, y)
		}})
	add(testImage{name: "gray8_31x45.png", mode: ModeL, depth: 8, w: 31, h: 45,
		encode: func() []byte {
			m := image.NewGray(image.Rect(0, 0, 31, 45))
			for y := 0; y < 45; y++ {
				for x := 0; x < 31; x++ {
					m.SetGray(x, y, color.Gray{grayAt(31, 45)(x, y)})
				}
			}
			return encodePNG(m)
		},
		want: func(x, y int) (uint8, uint8, uint8, uint8) {
			v := grayAt(31, 45)(x, y)
			return v, v, v, 255
		}})
	add(testImage{name: "gray16_64x48.png", mode: ModeI16, depth: 16, w: 64, h: 48,
		encode: func() []byte {
			m := image.NewGray16(image.Rect(0, 0, 64, 48))
			for y := 0; y < 48; y++ {
				for x := 0; x < 64; x++ {
					m.SetGray16(x, y, color.Gray16{gray16At(x, y)})
				}
			}
			return encodePNG(m)
		},
		want: func(x, y int) (uint8, uint8, uint8, uint8) {
			v := uint8(gray16At(x, y) >> 8)
			return v, v, v, 255
		}})
	add(testImage{name: "palette_33x33.png", mode: ModeP, depth: 4, w: 33, h: 33,
		encode: func() []byte {
			m := image.NewPaletted(image.Rect(0, 0, 33, 33), paletteColors)
			for y := 0; y < 33; y++ {
				for x := 0; x < 33; x++ {
					m.SetColorIndex(x, y, uint8((x/2+y/3)%16))
				}
			}
			return encodePNG(m)
		},
		want: func(x, y int) (uint8, uint8, uint8, uint8) {
			c := straight(paletteColors[(x/2+y/3)%16])
			return c.R, c.G, c.B, c.A
		}})
	add(testImage{name: "la8_20x17.png", mode: ModeLA, depth: 8, w: 20, h: 17,
		encode: func() []byte {
			return rawPNG(20, 17, 8, 4, func(x, y int) []byte { return []byte{grayAt(20, 17)(x, y), alphaAt(x, y)} })
		},
		want: func(x, y int) (uint8, uint8, uint8, uint8) {
			v := grayAt(20, 17)(x, y)
			return v, v, v, alphaAt(x, y)
		}})
	add(testImage{name: "gray4_19x13.png", mode: ModeL, depth: 4, w: 19, h: 13,
		encode: func() []byte {
			return rawPNG(19, 13, 4, 0, func(x, y int) []byte { return []byte{uint8((x + 2*y) % 16)} })
		},
		want: func(x, y int) (uint8, uint8, uint8, uint8) {
			v := uint8((x+2*y)%16) * 17
			return v, v, v, 255
		}})
	add(testImage{name: "rgb16_25x19.png", mode: ModeRGB, depth: 16, w: 25, h: 19,
		encode: func() []byte {
			m := image.NewRGBA64(image.Rect(0, 0, 25, 19))
			for y := 0; y < 19; y++ {
				for x := 0; x < 25; x++ {
					r, g, b, _ := rgbWant(25, 19)(x, y)
					// low bytes vary too: Pillow and whet keep the high byte
					m.SetRGBA64(x, y, color.RGBA64{uint16(r)<<8 | uint16(x*9), uint16(g)<<8 | uint16(y*13), uint16(b)<<8 | 0xff, 0xffff})
				}
			}
			return encodePNG(m)
		},
		want: rgbWant(25, 19)})
	add(testImage{name: "gray1_17x11.png", mode: ModeBilevel, depth: 1, w: 17, h: 11,
		encode: func() []byte {
			return rawPNG(17, 11, 1, 0, func(x, y int) []byte { return []byte{uint8((x*x + y) % 3 % 2)} })
		},
		want: func(x, y int) (uint8, uint8, uint8, uint8) {
			v := uint8((x*x+y)%3%2) * 255
			return v, v, v, 255
		}})
	// Gray and RGB with a tRNS colour: Pillow keeps mode L / RGB and the
	// colour in info["transparency"], which convert("RGB") ignores and
	// convert("RGBA") (Mllama) turns into alpha 0.
	add(testImage{name: "graytrns_15x15.png", mode: ModeL, depth: 8, w: 15, h: 15,
		encode: func() []byte {
			return rawPNGWith(15, 15, 8, 0, []byte{0, 120}, func(x, y int) []byte { return []byte{uint8((x * y * 8) % 240)} })
		},
		want: func(x, y int) (uint8, uint8, uint8, uint8) {
			v := uint8((x * y * 8) % 240)
			if v == 120 {
				return v, v, v, 0
			}
			return v, v, v, 255
		}})
	add(testImage{name: "rgbtrns_16x12.png", mode: ModeRGB, depth: 8, w: 16, h: 12,
		encode: func() []byte {
			return rawPNGWith(16, 12, 8, 2, []byte{0, 40, 0, 80, 0, 120}, func(x, y int) []byte { return rgbTrnsAt(x, y) })
		},
		want: func(x, y int) (uint8, uint8, uint8, uint8) {
			p := rgbTrnsAt(x, y)
			if p[0] == 40 && p[1] == 80 && p[2] == 120 {
				return p[0], p[1], p[2], 0
			}
			return p[0], p[1], p[2], 255
		}})
	add(testImage{name: "interlaced_rgb_23x19.png", mode: ModeRGB, depth: 8, w: 23, h: 19,
		encode: func() []byte {
			return rawPNGFull(23, 19, 8, 2, nil, true, func(x, y int) []byte {
				r, g, b, _ := rgbWant(23, 19)(x, y)
				return []byte{r, g, b}
			})
		}, want: rgbWant(23, 19)})
	add(testImage{name: "rgba16_21x14.png", mode: ModeRGBA, depth: 16, w: 21, h: 14,
		encode: func() []byte {
			m := image.NewNRGBA64(image.Rect(0, 0, 21, 14))
			for y := 0; y < 14; y++ {
				for x := 0; x < 21; x++ {
					r, g, b, _ := rgbWant(21, 14)(x, y)
					m.SetNRGBA64(x, y, color.NRGBA64{uint16(r)<<8 | uint16(y), uint16(g)<<8 | 0x80, uint16(b) << 8, uint16(alphaAt(x, y))<<8 | uint16(x)})
				}
			}
			return encodePNG(m)
		},
		want: func(x, y int) (uint8, uint8, uint8, uint8) {
			r, g, b, _ := rgbWant(21, 14)(x, y)
			return r, g, b, alphaAt(x, y)
		}})
	add(testImage{name: "color_48x40.jpg", mode: ModeRGB, depth: 8, w: 48, h: 40,
		encode: func() []byte { return encodeJPEG(rgba(48, 40)) }})
	add(testImage{name: "color_37x23.jpg", mode: ModeRGB, depth: 8, w: 37, h: 23,
		encode: func() []byte { return encodeJPEG(rgba(37, 23)) }}) // odd size: partial MCUs, edge chroma
	add(testImage{name: "color_48x40.ppm", w: 48, h: 40, encode: func() []byte { return encodePPM(rgba(48, 40)) }})
	add(testImage{name: "color422_48x40.jpg", mode: ModeRGB, depth: 8, w: 48, h: 40,
		tool: "cjpeg -quality 90 -sample 2x1 color_48x40.ppm"})
	add(testImage{name: "color444_48x40.jpg", mode: ModeRGB, depth: 8, w: 48, h: 40,
		tool: "cjpeg -quality 90 -sample 1x1 color_48x40.ppm"})
	// Pillow writes CMYK JPEGs (Go and cjpeg do not): the test pattern as
	// inverted RGB with a K ramp.
	add(testImage{name: "cmyk_48x40.jpg", mode: ModeCMYK, depth: 8, w: 48, h: 40,
		tool: `/usr/bin/python3 -c 'from PIL import Image; import sys; im = Image.open("color_48x40.ppm"); p = im.load(); out = Image.new("CMYK", im.size); ` +
			`q = out.load(); [q.__setitem__((x, y), tuple(255 - v for v in p[x, y]) + ((x + y) * 3 % 256,)) for y in range(im.size[1]) for x in range(im.size[0])]; ` +
			`out.save(sys.stdout.buffer, "JPEG", quality=90)'`})
	add(testImage{name: "color_37x23_progressive.jpg", mode: ModeRGB, depth: 8, w: 37, h: 23,
		tool: "jpegtran -progressive color_37x23.jpg", sameAs: "color_37x23.jpg"})
	add(testImage{name: "color_48x40_restart.jpg", mode: ModeRGB, depth: 8, w: 48, h: 40,
		tool: "jpegtran -restart 3B color_48x40.jpg", sameAs: "color_48x40.jpg"})
	add(testImage{name: "gray_30x50.jpg", mode: ModeL, depth: 8, w: 30, h: 50,
		encode: func() []byte {
			m := image.NewGray(image.Rect(0, 0, 30, 50))
			for y := 0; y < 50; y++ {
				for x := 0; x < 30; x++ {
					m.SetGray(x, y, color.Gray{grayAt(30, 50)(x, y)})
				}
			}
			return encodeJPEG(m)
		}})
	add(testImage{name: "gray_30x50_progressive.jpg", mode: ModeL, depth: 8, w: 30, h: 50,
		tool: "jpegtran -progressive gray_30x50.jpg", sameAs: "gray_30x50.jpg"})
	return imgs
}

// rgbTrnsAt puts the tRNS colour (40, 80, 120) on a diagonal.
func rgbTrnsAt(x, y int) []byte {
	if x == y {
		return []byte{40, 80, 120}
	}
	return []byte{uint8(x * 16), uint8(y * 20), uint8((x + y) * 7)}
}

func dims(w, h int) string {
	return itoa(w) + "x" + itoa(h)
}

func itoa(n int) string {
	return string(appendInt(nil, n))
}

func appendInt(b []byte, n int) []byte {
	if n >= 10 {
		b = appendInt(b, n/10)
	}
	return append(b, byte('0'+n%10))
}

func encodePNG(m image.Image) []byte {
	var buf bytes.Buffer
	if err := png.Encode(&buf, m); err != nil {
		panic(err) // test helper: in-memory encoding of a valid image
	}
	return buf.Bytes()
}

// encodePPM writes binary PPM (P6), the input cjpeg reads.
func encodePPM(m *image.NRGBA) []byte {
	var buf bytes.Buffer
	b := m.Bounds()
	buf.WriteString("P6\n" + itoa(b.Dx()) + " " + itoa(b.Dy()) + "\n255\n")
	for y := b.Min.Y; y < b.Max.Y; y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			o := m.PixOffset(x, y)
			buf.Write(m.Pix[o : o+3])
		}
	}
	return buf.Bytes()
}

func encodeJPEG(m image.Image) []byte {
	var buf bytes.Buffer
	if err := jpeg.Encode(&buf, m, &jpeg.Options{Quality: 90}); err != nil {
		panic(err)
	}
	return buf.Bytes()
}

// rawPNG writes a PNG of a colour type and bit depth Go's encoder does not
// produce (gray+alpha, 4-bit gray); px returns one pixel's samples (for
// depths under 8, one sample in the low bits).
func rawPNG(w, h, depth int, colorType byte, px func(x, y int) []byte) []byte {
	return rawPNGWith(w, h, depth, colorType, nil, px)
}

// rawPNGWith also writes a tRNS chunk when trns is not nil.
func rawPNGWith(w, h, depth int, colorType byte, trns []byte, px func(x, y int) []byte) []byte {
	return rawPNGFull(w, h, depth, colorType, trns, false, px)
}

// adam7 lists the interlace passes: x and y start, x and y step.
var adam7 = [7][4]int{{0, 0, 8, 8}, {4, 0, 8, 8}, {0, 4, 4, 8}, {2, 0, 4, 4}, {0, 2, 2, 4}, {1, 0, 2, 2}, {0, 1, 1, 2}}

// rawPNGFull writes the image data rows, in Adam7 passes when interlaced
// (each pass a small image of its own, empty passes left out).
func rawPNGFull(w, h, depth int, colorType byte, trns []byte, interlaced bool, px func(x, y int) []byte) []byte {
	passes := [][4]int{{0, 0, 1, 1}}
	if interlaced {
		passes = adam7[:]
	}
	var raw bytes.Buffer
	for _, p := range passes {
		pw, ph := (w-p[0]+p[2]-1)/p[2], (h-p[1]+p[3]-1)/p[3]
		if pw <= 0 || ph <= 0 {
			continue
		}
		writeRows(&raw, pw, ph, depth, func(x, y int) []byte { return px(p[0]+x*p[2], p[1]+y*p[3]) })
	}
	return pngChunks(w, h, depth, colorType, trns, interlaced, raw.Bytes())
}

func writeRows(raw *bytes.Buffer, w, h, depth int, px func(x, y int) []byte) {
	for y := 0; y < h; y++ {
		raw.WriteByte(0) // filter: none
		if depth < 8 {
			var acc, n int
			for x := 0; x < w; x++ {
				acc = acc<<depth | int(px(x, y)[0])
				n += depth
				if n == 8 {
					raw.WriteByte(byte(acc))
					acc, n = 0, 0
				}
			}
			if n > 0 {
				raw.WriteByte(byte(acc << (8 - n)))
			}
			continue
		}
		for x := 0; x < w; x++ {
			raw.Write(px(x, y))
		}
	}
}

func pngChunks(w, h, depth int, colorType byte, trns []byte, interlaced bool, raw []byte) []byte {
	var z bytes.Buffer
	zw := zlib.NewWriter(&z)
	zw.Write(raw)
	zw.Close()
	var out bytes.Buffer
	out.Write(pngSignature)
	chunk := func(typ string, data []byte) {
		binary.Write(&out, binary.BigEndian, uint32(len(data)))
		c := crc32.NewIEEE()
		c.Write([]byte(typ))
		c.Write(data)
		out.WriteString(typ)
		out.Write(data)
		binary.Write(&out, binary.BigEndian, c.Sum32())
	}
	ihdr := make([]byte, 13)
	binary.BigEndian.PutUint32(ihdr[0:], uint32(w))
	binary.BigEndian.PutUint32(ihdr[4:], uint32(h))
	ihdr[8], ihdr[9] = byte(depth), colorType
	if interlaced {
		ihdr[12] = 1
	}
	chunk("IHDR", ihdr)
	if trns != nil {
		chunk("tRNS", trns)
	}
	chunk("IDAT", z.Bytes())
	chunk("IEND", nil)
	return out.Bytes()
}

// TestTestImages decodes every committed test image and checks its mode,
// size and (for PNG) every pixel against the arithmetic that made it.
func TestTestImages(t *testing.T) {
	imgs := testImages()
	if *writeImages {
		for _, ti := range imgs {
			path := filepath.Join(testdata, ti.name)
			data := []byte(nil)
			if ti.encode != nil {
				data = ti.encode()
			} else {
				cmd := exec.Command("sh", "-c", ti.tool)
				cmd.Dir = testdata
				out, err := cmd.Output()
				if err != nil {
					t.Fatalf("%s: %v", ti.tool, err)
				}
				data = out
			}
			if err := os.WriteFile(path, data, 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	decoded := map[string]*Decoded{}
	for _, ti := range imgs {
		if strings.HasSuffix(ti.name, ".ppm") {
			continue // cjpeg's input, not an image whet reads
		}
		path := filepath.Join(testdata, ti.name)
		d, err := DecodeFile(path)
		if err != nil {
			t.Fatalf("%v (regenerate with -write-images)", err)
		}
		decoded[ti.name] = d
		if d.Mode != ti.mode || d.BitDepth != ti.depth || d.Width != ti.w || d.Height != ti.h {
			t.Errorf("%s: mode %s depth %d size %dx%d, want %s %d %dx%d", ti.name, d.Mode, d.BitDepth, d.Width, d.Height, ti.mode, ti.depth, ti.w, ti.h)
		}
		if ti.sameAs != "" {
			if src := decoded[ti.sameAs]; src == nil || !bytes.Equal(src.pix, d.pix) {
				t.Errorf("%s does not decode to the pixels of %s, whose coefficients it holds", ti.name, ti.sameAs)
			}
		}
		if ti.want == nil {
			continue
		}
		for y := 0; y < ti.h; y++ {
			for x := 0; x < ti.w; x++ {
				r, g, b, a := ti.want(x, y)
				p := d.pix[4*(y*ti.w+x):]
				if p[0] != r || p[1] != g || p[2] != b || p[3] != a {
					t.Fatalf("%s (%d,%d) = %v, want %v", ti.name, x, y, p[:4], []uint8{r, g, b, a})
				}
			}
		}
	}
}

// TestJPEGsUseLibjpegDecoding: every test JPEG (baseline, progressive,
// restart markers, 4:2:0, 4:2:2, 4:4:4, gray) goes through this
// package's decoder, not the image/jpeg fallback, so the reference test
// measures it.
func TestJPEGsUseLibjpegDecoding(t *testing.T) {
	for _, ti := range testImages() {
		if !strings.HasSuffix(ti.name, ".jpg") {
			continue
		}
		data, err := os.ReadFile(filepath.Join(testdata, ti.name))
		if err != nil {
			t.Fatal(err)
		}
		f, err := decodeJPEGFrame(data, MaxPixels)
		if err != nil {
			t.Errorf("%s: %v", ti.name, err)
			continue
		}
		if px := make([]uint8, 4*f.w*f.h); !libjpegPixels(f, px) {
			t.Errorf("%s: sampling left to image/jpeg", ti.name)
		}
	}
}
