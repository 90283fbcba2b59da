package imageview

import (
	"flag"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"whet/datasets/vision"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/")

func TestFit(t *testing.T) {
	for _, tc := range []struct{ w, h, cols, rows, pw, ph int }{
		{700, 150, 40, 10, 40, 8}, // width-bound: 40 px wide, 8 high (4 cell rows)
		{150, 700, 40, 10, 4, 20}, // height-bound: 20 px = 10 rows
		{37, 23, 20, 6, 20, 12},   // width-bound: 20·23/37 = 12.4 pixel rows
		{1, 1000, 5, 5, 1, 10},    // never narrower than one cell
		{10, 10, 0, 5, 0, 0},      // no room
	} {
		if pw, ph := Fit(tc.w, tc.h, tc.cols, tc.rows); pw != tc.pw || ph != tc.ph {
			t.Errorf("Fit(%d, %d, %d, %d) = %d, %d; want %d, %d", tc.w, tc.h, tc.cols, tc.rows, pw, ph, tc.pw, tc.ph)
		}
	}
}

var sgr = regexp.MustCompile("\x1b\\[[0-9;]*m")

// TestHalfBlocksGolden draws two committed test images at fixed sizes.
func TestHalfBlocksGolden(t *testing.T) {
	for _, tc := range []struct {
		image      string
		cols, rows int
	}{{"rgb8_37x23.png", 20, 6}, {"rgba8_40x30.png", 16, 5}} {
		d, err := vision.DecodeFile(filepath.Join("../../../datasets/vision/testdata", tc.image))
		if err != nil {
			t.Fatal(err)
		}
		got, err := HalfBlocks(d.RGB(vision.AlphaDrop, vision.Gray16Scale), tc.cols, tc.rows)
		if err != nil {
			t.Fatal(err)
		}
		pw, ph := Fit(d.Width, d.Height, tc.cols, tc.rows)
		lines := strings.Split(strings.TrimSuffix(got, "\n"), "\n")
		if len(lines) != (ph+1)/2 {
			t.Errorf("%s: %d lines for %d pixel rows", tc.image, len(lines), ph)
		}
		for i, l := range lines {
			if n := strings.Count(sgr.ReplaceAllString(l, ""), "▀"); n != pw || !strings.HasSuffix(l, "\x1b[0m") {
				t.Errorf("%s line %d: %d cells (want %d) or no reset at the end", tc.image, i, n, pw)
			}
		}
		golden := filepath.Join("testdata", strings.TrimSuffix(tc.image, ".png")+".golden")
		if *update {
			if err := os.MkdirAll("testdata", 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		want, err := os.ReadFile(golden)
		if err != nil {
			t.Fatalf("%v (run with -update)", err)
		}
		if got != string(want) {
			t.Errorf("%s differs from %s", tc.image, golden)
		}
	}
}

func TestHalfBlocksRefusesNoRoom(t *testing.T) {
	if _, err := HalfBlocks(&vision.RGB{W: 2, H: 2, Pix: make([]uint8, 12)}, 0, 3); err == nil {
		t.Error("drew into zero columns")
	}
}
