package tui_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/charmbracelet/x/ansi"

	"whet/tui/components/imageview"
	"whet/tui/fake"
)

// imageDataDriver opens the data page on the fake image dataset with the
// given way of drawing images.
func imageDataDriver(t *testing.T, p imageview.Protocol, w, h int) *driver {
	t.Helper()
	o := testOptions(&fake.Engine{})
	o.Data = fake.Previewer{Preview0: fake.ImagePreview()}
	o.Images = p
	d := newDriver(t, o, w, h)
	d.keys("enter", "enter", "enter") // model, method, preview the first file
	d.waitScreen("format messages")
	return d
}

// TestGoldenDataImages: the data page previews an image dataset with half
// blocks, kitty placeholders, or placeholder lines, at 80×24 and 120×40;
// the missing image shows its row, field and file.
func TestGoldenDataImages(t *testing.T) {
	for _, p := range []imageview.Protocol{imageview.Blocks, imageview.Kitty, imageview.Text} {
		for _, sz := range sizes {
			t.Run(fmt.Sprintf("%v_%dx%d", p, sz.w, sz.h), func(t *testing.T) {
				d := imageDataDriver(t, p, sz.w, sz.h)
				v := d.view()
				checkSize(t, v, sz.w, sz.h)
				golden(t, fmt.Sprintf("data_images_%v_%dx%d", p, sz.w, sz.h), v)
				s := d.screen()
				for _, want := range []string{"[image: shapes/red-circle", "part 0 is an image: whet cannot"} {
					if !strings.Contains(s, want) {
						t.Errorf("screen lacks %q:\n%s", want, s)
					}
				}
				transmits := strings.Count(v, "\x1b_Ga=T")
				switch p {
				case imageview.Blocks:
					if !strings.Contains(s, "▀▀▀") || transmits != 0 {
						t.Errorf("want half blocks and no kitty escapes:\n%s", s)
					}
				case imageview.Kitty:
					// Each image on screen is sent once, in front of its
					// first placeholder cell.
					if transmits == 0 || transmits != strings.Count(v, "\U0010EEEE\u0305\u0305") || strings.Contains(s, "▀") {
						t.Errorf("%d kitty transmissions for %d images", transmits, strings.Count(v, "\U0010EEEE\u0305\u0305"))
					}
				case imageview.Text: // the placeholder line at full width, under the text
					if !strings.Contains(s, "\n  [image: shapes/red-circle.png 48×32 rgb]\n") || strings.Contains(s, "▀") || strings.Contains(s, "\U0010EEEE") || transmits != 0 {
						t.Errorf("text mode drew an image:\n%s", s)
					}
				}
				if sz.h >= 40 { // every example shows: the bad image's error with its field and file
					if !strings.Contains(s, "✗ shapes.jsonl:2: field") || !strings.Contains(s, "shapes/missing.png: no such file") {
						t.Errorf("the missing image's error is not shown:\n%s", s)
					}
				}
			})
		}
	}
}

// TestDataImagesBrowseAndRefuse: ←/→ reaches the example whose image is
// missing (its error shown, no crash), and enter does not go on with a file
// training cannot use.
func TestDataImagesBrowseAndRefuse(t *testing.T) {
	d := imageDataDriver(t, imageview.Blocks, 80, 24)
	d.keys("right")
	if s := d.screen(); !strings.Contains(s, "example 2 of 3") || !strings.Contains(s, "✗ shapes.jsonl:2: field") || !strings.Contains(s, "missing.png") {
		t.Errorf("example 2 should show its image's error:\n%s", s)
	}
	checkSize(t, d.view(), 80, 24)
	d.keys("right")
	if s := d.screen(); !strings.Contains(s, "[image: shapes/green.png") || !strings.Contains(s, "[image: shapes/red.png") {
		t.Errorf("example 3 should show both images:\n%s", s)
	}
	checkSize(t, d.view(), 80, 24)
	d.keys("enter")
	if s := d.screen(); !strings.Contains(s, "Choose the training data") || !strings.Contains(s, "cannot be used") {
		t.Errorf("enter should refuse the image dataset:\n%s", s)
	}
	if s := ansi.Strip(d.view()); strings.Contains(s, "Batch") {
		t.Errorf("went on to the settings:\n%s", s)
	}
}
