package tui_test

import (
	"regexp"
	"testing"

	"github.com/charmbracelet/colorprofile"

	"whet/tui"
)

// sgr matches the colour parameters of an SGR escape sequence.
var (
	sgr        = regexp.MustCompile(`\x1b\[([0-9;:]*)m`)
	extColour  = regexp.MustCompile(`(^|;)(38|48)[;:]`)
	basicColor = regexp.MustCompile(`(^|;)(3[0-7]|9[0-7]|4[0-7]|10[0-7])(;|$)`)
)

// On a 16-colour terminal the studio picks from the 16 ANSI colours
// itself (no 256-colour or RGB codes); with NO_COLOR (the Ascii profile)
// it sends no colour at all, only attributes such as bold.
func TestColourProfiles(t *testing.T) {
	gpu := &tui.GPUStats{Name: "GPU", Util: 40, MemUsed: 1 << 30, MemTotal: 8 << 30}
	ansi := tui.RenderDashboardProfile(colorprofile.ANSI, goldenRun(), 80, 24, goldenEvents(false), gpu, nil)
	none := tui.RenderDashboardProfile(colorprofile.Ascii, goldenRun(), 80, 24, goldenEvents(false), gpu, nil)
	full := tui.RenderDashboardProfile(colorprofile.TrueColor, goldenRun(), 80, 24, goldenEvents(false), gpu, nil)

	colours := func(s string) (ext, basic int) {
		for _, m := range sgr.FindAllStringSubmatch(s, -1) {
			if extColour.MatchString(m[1]) {
				ext++
			}
			if basicColor.MatchString(m[1]) {
				basic++
			}
		}
		return
	}
	if ext, basic := colours(ansi); ext != 0 || basic == 0 {
		t.Errorf("16-colour profile: %d extended and %d basic colour codes, want 0 and some", ext, basic)
	}
	if ext, basic := colours(none); ext != 0 || basic != 0 {
		t.Errorf("NO_COLOR profile: %d extended and %d basic colour codes, want none", ext, basic)
	}
	if ext, _ := colours(full); ext == 0 {
		t.Error("true-colour profile should use RGB colours")
	}
}
