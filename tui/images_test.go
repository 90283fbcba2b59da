package tui_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	tea "charm.land/bubbletea/v2"
	"github.com/charmbracelet/colorprofile"
	"github.com/charmbracelet/x/ansi"

	"whet/tui"
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
				for _, want := range []string{"circle.png 48×32 rgb]", "the conversation holds an image: the model"} {
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
	if s := d.screen(); !strings.Contains(s, "shapes/green.png") || !strings.Contains(s, "shapes/red.png") {
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

// TestChatImage: /image PATH (relative to the working folder, or with ~)
// attaches an image to the next message, which both models get; the
// transcript shows its placeholder line; a bad path is named and nothing
// is attached.
func TestChatImage(t *testing.T) {
	home := t.TempDir()
	t.Setenv("HOME", home)
	pic, err := os.ReadFile("../datasets/vision/testdata/gray16_64x48.png")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(home, "xray.png"), pic, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, sz := range sizes {
		t.Run(fmt.Sprintf("%dx%d", sz.w, sz.h), func(t *testing.T) {
			o := testOptions(&fake.Engine{Script: scriptSteps(2)})
			ch := testChat()
			ch.Vision = true
			o.Chat = ch
			d := finishRun(t, o)
			d.send(windowSize(sz.w, sz.h))
			d.keys("t")
			d.waitScreen("tuned (this run)") // the models are in

			d.submit("/image missing/nope.png")
			// (the error holds the absolute path, so where it wraps depends on
			// the checkout's folder: "no such" is looked for across lines)
			if s := d.screen(); !strings.Contains(s, "✗ /image missing/nope.png:") || !strings.Contains(strings.Join(strings.Fields(s), " "), "no such") || strings.Count(s, "/image missing/nope.png") != 2 {
				t.Errorf("a missing file should be named and the prompt kept:\n%s", s)
			}
			d.keys("ctrl+u")
			const rel = "../datasets/vision/testdata/rgb8_37x23.png"
			d.submit("/image " + rel)
			d.submit("/image ~/xray.png")
			d.waitScreen("2 images go with your next message; the last: [image: ~/xray.png 64×48 gray16]")
			d.submit("What is in these pictures?")
			d.waitFor("both answers", func() bool { return strings.Count(d.screen(), "tok/s") == 2 })
			checkSize(t, d.view(), sz.w, sz.h)
			golden(t, fmt.Sprintf("chat_image_%dx%d", sz.w, sz.h), d.view())

			abs, _ := filepath.Abs(rel)
			want := []string{abs, filepath.Join(home, "xray.png")}
			reqs := ch.Recorded()
			if len(reqs) != 2 {
				t.Fatalf("%d requests, want base and tuned", len(reqs))
			}
			for _, r := range reqs {
				last := r.Turns[len(r.Turns)-1]
				if !reflect.DeepEqual(last.Images, want) || last.Content != "What is in these pictures?" {
					t.Errorf("tuned=%v: turn %+v, want images %v", r.Tuned, last, want)
				}
			}
			s := d.screen()
			if n := strings.Count(s, "[image: ../datasets/vision/testdata/rgb8_37x23.png 37×23"); n != 2 && sz.w >= 120 {
				t.Errorf("the placeholder line should stand in both columns (%d):\n%s", n, s)
			}
			if n := strings.Count(s, "[image: ~/xray.png 64×48 gray16]"); n != 2 {
				t.Errorf("the second image's line should stand in both columns (%d):\n%s", n, s)
			}

			// The next message carries no new image; the history keeps it.
			d.submit("And now?")
			d.waitFor("the second answers", func() bool {
				return len(ch.Recorded()) == 4 && strings.Count(d.screen(), "tok/s") == 2 && !strings.Contains(d.screen(), "answering")
			})
			r := ch.Recorded()[3]
			if len(r.Turns) != 3 || len(r.Turns[0].Images) != 2 || r.Turns[2].Images != nil {
				t.Errorf("second question: %+v", r.Turns)
			}
		})
	}
}

// TestChatImageOnATextModel: a model without a vision tower says so, and
// the message goes without an image.
func TestChatImageOnATextModel(t *testing.T) {
	ch := testChat()
	d := openChat(t, ch, 80, 24)
	d.submit("/image ../datasets/vision/testdata/rgb8_37x23.png")
	d.waitScreen("vision tower: it cannot look at images")
	checkSize(t, d.view(), 80, 24)
	golden(t, "chat_image_text_model_80x24", d.view())
	d.keys("ctrl+u")
	d.submit("Hello?")
	d.waitFor("both answers", func() bool { return strings.Count(d.screen(), "tok/s") == 2 })
	for _, r := range ch.Recorded() {
		if imgs := r.Turns[len(r.Turns)-1].Images; imgs != nil {
			t.Errorf("a text model got images %v", imgs)
		}
	}
	if strings.Contains(d.screen(), "[image:") {
		t.Errorf("no image line should stand in the transcript:\n%s", d.screen())
	}
}

// syncBuffer is a bytes.Buffer safe to read while the program writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestProgramSendsKittyImages: through Bubble Tea's real renderer, the
// kitty transmission in front of the first placeholder cell reaches the
// terminal once (the renderer repaints a cell only when it changes), and
// the placeholder cells follow it.
func TestProgramSendsKittyImages(t *testing.T) {
	o := testOptions(&fake.Engine{})
	o.Data = fake.Previewer{Preview0: fake.ImagePreview()}
	o.Images = imageview.Kitty
	m := tui.New(o)
	in, keys := io.Pipe()
	var out syncBuffer
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	p := tea.NewProgram(m, tea.WithInput(in), tea.WithOutput(&out), tea.WithWindowSize(80, 24),
		tea.WithoutSignals(), tea.WithContext(ctx), tea.WithColorProfile(colorprofile.TrueColor))
	done := make(chan error, 1)
	go func() { _, err := p.Run(); done <- err }()
	go keys.Write([]byte("\r\r\r")) // model, method, preview the first file
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(out.String(), "\U0010EEEE") && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(300 * time.Millisecond) // more frames
	p.Quit()
	if err := <-done; err != nil {
		t.Fatalf("program: %v", err)
	}
	s := out.String()
	if n := strings.Count(s, "\x1b_Ga=T,U=1,f=100,t=d,i=1,"); n != 1 {
		t.Errorf("the image was sent %d times, want once", n)
	}
	at := strings.Index(s, "\x1b_Ga=T")
	if at < 0 {
		t.Fatalf("no kitty transmission reached the terminal")
	}
	end := strings.Index(s[at:], "m=0;")
	if end < 0 || !strings.Contains(s[at+end:], "\x1b\\\U0010EEEE\u0305\u0305") {
		t.Errorf("the transmission does not end in front of the first placeholder cell")
	}
	if strings.Count(s, "\U0010EEEE") < 24*7 { // 24×7 cells at 80×24 (the golden's)
		t.Errorf("%d placeholder cells reached the terminal", strings.Count(s, "\U0010EEEE"))
	}
}

// TestDataImagesTextModeKeepsTheText: where images are placeholder lines
// (inside tmux without truecolor, NO_COLOR), an example's text keeps every
// line but one per image. Before, it kept half the lines, as for pictures,
// so a Gemma 3 example showed two lines and "…" above one placeholder line
// and empty rows.
func TestDataImagesTextModeKeepsTheText(t *testing.T) {
	o := testOptions(&fake.Engine{})
	pv := tui.DataPreview{Format: "messages", Stats: tui.DataStats{Rows: 1},
		Examples: [][]tui.Segment{{{Text: "<bos><start_of_turn>user\n\n\n<start_of_image><image_soft_token><end_of_image>\n\n<end_of_turn>\n<start_of_turn>model\n", Masked: true},
			{Text: "line five"}}},
		Images: [][]tui.PreviewImage{{{Info: "[image: img/000.png 32×32 rgb]", Img: fake.ShapeImage(32, 32, [3]uint8{220, 40, 40}, [3]uint8{240, 240, 240})}}},
	}
	o.Data = fake.Previewer{Preview0: pv}
	o.Images = imageview.Text
	d := newDriver(t, o, 80, 24)
	d.keys("enter", "enter", "enter")
	d.waitScreen("format messages")
	s := d.screen()
	if !strings.Contains(s, "  line five\n  [image: img/000.png 32×32 rgb]") || strings.Contains(s, "\n  …\n") {
		t.Errorf("the example's five lines and its placeholder line should show:\n%s", s)
	}
	checkSize(t, d.view(), 80, 24)
}
