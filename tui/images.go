package tui

import (
	"strings"

	"github.com/charmbracelet/colorprofile"

	"whet/tui/components/imageview"
)

// imageProtocol is how the studio draws images in a terminal of the given
// colour profile: the detected protocol where the profile allows it (half
// blocks need 24-bit colour; kitty's placeholders carry the image id as a
// 256-colour index, which the renderer keeps from ANSI256 up), else text.
// iTerm2's inline images (OSC 1337) would be dropped by Bubble Tea's cell
// renderer, which passes on only APC/DCS sequences inside cells, so
// iTerm2 and WezTerm get half blocks here (`whet images --show` is not
// limited so).
func imageProtocol(p imageview.Protocol, profile colorprofile.Profile) imageview.Protocol {
	switch p {
	case imageview.Kitty:
		if profile == colorprofile.TrueColor || profile == colorprofile.ANSI256 {
			return imageview.Kitty
		}
	case imageview.Blocks, imageview.ITerm2:
		if profile == colorprofile.TrueColor {
			return imageview.Blocks
		}
	}
	return imageview.Text
}

// imageCache keeps the kitty transmissions of the images on screen: each
// image gets an id (1–255, a 256-colour index) the first time it is drawn
// at a size, and the escape that sends it rides in front of its first
// placeholder cell in every frame. The renderer paints a cell again only
// when it changes, so the image is sent when it appears (and after a
// full repaint), not once per frame.
type imageCache struct {
	next    uint32
	entries map[*PreviewImage]*kittyEntry
}

type kittyEntry struct {
	id       uint32
	c, r     int
	transmit string
}

// kitty returns the placeholder lines of im in c×r cells, the first one
// carrying the transmission.
func (ic *imageCache) kitty(im *PreviewImage, c, r int) ([]string, error) {
	if ic.entries == nil {
		ic.entries = map[*PreviewImage]*kittyEntry{}
	}
	e := ic.entries[im]
	if e == nil || e.c != c || e.r != r {
		if len(ic.entries) > 64 { // previews come and go: forget old ones
			clear(ic.entries)
		}
		ic.next = ic.next%255 + 1
		t, err := imageview.KittyTransmit(im.Img, ic.next, c, r)
		if err != nil {
			return nil, err
		}
		e = &kittyEntry{id: ic.next, c: c, r: r, transmit: t}
		ic.entries[im] = e
	}
	cells, err := imageview.KittyPlaceholders(e.id, c, r)
	if err != nil {
		return nil, err
	}
	lines := strings.Split(strings.TrimSuffix(cells, "\n"), "\n")
	lines[0] = e.transmit + lines[0]
	return lines, nil
}

// drawImage renders a preview image in at most cols×rows cells: a caption
// line naming it (the whole of it in text mode or with fewer than 3
// rows), then the picture; an image that could not be read shows its
// error. Every line is at most cols cells wide.
func (c *common) drawImage(im *PreviewImage, cols, rows int) []string {
	st := c.styles
	if rows <= 0 || cols <= 0 {
		return nil
	}
	if im.Err != "" || im.Img == nil {
		msg := im.Err
		if msg == "" {
			msg = "image not read"
		}
		lines := strings.Split(st.Bad.Render(wrap("✗ "+printable(msg), cols)), "\n")
		return lines[:min(len(lines), rows)]
	}
	p := c.imageMode
	if p == imageview.Text || rows < 3 || cols < 4 {
		return []string{st.Muted.Render(trimTo(printable(im.Info), cols))}
	}
	// The name on up to two lines when the picture keeps three rows.
	var caption []string
	for _, l := range strings.Split(wrap(printable(im.Info), cols), "\n") {
		caption = append(caption, st.Muted.Render(trimTo(l, cols)))
	}
	if len(caption) > 2 || rows-len(caption) < 3 {
		caption = []string{st.Muted.Render(trimTo(printable(im.Info), cols))}
	}
	rows -= len(caption) - 1
	var lines []string
	switch p {
	case imageview.Kitty:
		cc, rr := imageview.Cells(im.Img.W, im.Img.H, min(cols, imageview.MaxKittyCells), min(rows-1, imageview.MaxKittyCells))
		k, err := c.kittyImages.kitty(im, cc, rr)
		if err != nil {
			return append(caption, st.Bad.Render(trimTo("✗ "+err.Error(), cols)))
		}
		lines = k
	default:
		art, err := imageview.HalfBlocks(im.Img, cols, rows-1)
		if err != nil {
			return append(caption, st.Bad.Render(trimTo("✗ "+err.Error(), cols)))
		}
		lines = strings.Split(strings.TrimSuffix(art, "\n"), "\n")
	}
	return append(caption, lines...)
}
