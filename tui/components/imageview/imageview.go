// Package imageview draws an image in a terminal with coloured half
// blocks: each cell shows two pixels, the upper one as the foreground of
// "▀" and the lower one as the background, in 24-bit colour. Cells are
// about twice as high as wide, so the pixels come out square. graphics.go
// adds the kitty and iTerm2 image protocols and Detect, which picks one
// of them, half blocks, or a placeholder line from the environment. Used
// by `whet images --show` and the studio's data page and chat.
package imageview

import (
	"fmt"
	"strings"

	"whet/datasets/vision"
)

// Fit returns the pixel size an image of w×h takes in at most cols×rows
// cells: aspect kept, as large as fits, at least 1×2 (one cell).
func Fit(w, h, cols, rows int) (pw, ph int) {
	if w <= 0 || h <= 0 || cols <= 0 || rows <= 0 {
		return 0, 0
	}
	maxW, maxH := cols, 2*rows
	pw, ph = maxW, h*maxW/w
	if ph > maxH {
		pw, ph = w*maxH/h, maxH
	}
	return max(pw, 1), max(ph, 1)
}

// HalfBlocks renders img into at most cols×rows cells, one line per cell
// row, each line ending with a colour reset. The image is resized with
// PIL's bilinear filter (which averages when shrinking).
func HalfBlocks(img *vision.RGB, cols, rows int) (string, error) {
	pw, ph := Fit(img.W, img.H, cols, rows)
	if pw == 0 {
		return "", fmt.Errorf("image view: nothing to draw a %dx%d image in %dx%d cells with", img.W, img.H, cols, rows)
	}
	small, err := vision.Resize(img, pw, ph, vision.Bilinear)
	if err != nil {
		return "", err
	}
	px := func(x, y int) [3]uint8 {
		o := 3 * (y*pw + x)
		return [3]uint8{small.Pix[o], small.Pix[o+1], small.Pix[o+2]}
	}
	var b strings.Builder
	for y := 0; y < ph; y += 2 {
		var lastFG, lastBG [3]uint8
		first := true
		for x := 0; x < pw; x++ {
			fg := px(x, y)
			if y+1 >= ph { // an odd last pixel row: upper half only
				if first || fg != lastFG {
					fmt.Fprintf(&b, "\x1b[0;38;2;%d;%d;%dm", fg[0], fg[1], fg[2])
				}
				lastFG, first = fg, false
				b.WriteString("▀")
				continue
			}
			bg := px(x, y+1)
			if first || fg != lastFG || bg != lastBG {
				fmt.Fprintf(&b, "\x1b[38;2;%d;%d;%d;48;2;%d;%d;%dm", fg[0], fg[1], fg[2], bg[0], bg[1], bg[2])
			}
			lastFG, lastBG, first = fg, bg, false
			b.WriteString("▀")
		}
		b.WriteString("\x1b[0m\n")
	}
	return b.String(), nil
}

// Placeholder is the one-line stand-in for an image where it cannot be
// drawn: [image: xray/001.png 1024×1024 gray16].
func Placeholder(name string, d *vision.Decoded) string {
	return fmt.Sprintf("[image: %s %d×%d %s]", name, d.Width, d.Height, ModeName(d))
}
