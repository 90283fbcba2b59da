package tui

import (
	"context"
	"image/color"
	"time"

	"charm.land/bubbles/v2/help"
	"charm.land/bubbles/v2/key"
	"charm.land/lipgloss/v2"
	"github.com/charmbracelet/colorprofile"
	"github.com/charmbracelet/x/ansi"

	"whet/tui/components/imageview"
)

// MinWidth and MinHeight are the smallest terminal the studio draws in;
// below it shows a message asking for a larger window.
const (
	MinWidth  = 80
	MinHeight = 24
)

// common is shared by the root and every page: the terminal size, the
// styles for the detected colour profile, the key map and the clock.
type common struct {
	width, height int
	styles        Styles
	keys          keyMap
	now           func() time.Time
	ctx           context.Context
	// imageMode is how images are drawn (imageProtocol of the detected
	// protocol and the colour profile); kittyImages keeps what kitty
	// needs sent.
	imageDetected imageview.Protocol
	imageMode     imageview.Protocol
	kittyImages   imageCache
	// autoName is the default run name the studio proposed (RunNameAt,
	// freshRunName) while the engine claims such names (NameClaimer): a
	// run started under it gets the next free folder. "" once it is
	// claimed, or when the engine claims nothing.
	autoName string
}

// Styles holds every style the studio draws with. They are rebuilt when
// the terminal reports its colour profile, so 16-colour terminals get
// chosen ANSI colours rather than approximations, and NO_COLOR gets none
// (the layout never relies on colour alone: the focus has a marker, plan
// parts have fill characters, eval points a different glyph).
type Styles struct {
	Title, Subtle, Muted, Faint, Bold lipgloss.Style
	Accent, Good, Bad, Warn           lipgloss.Style
	TabActive, TabDone, TabTodo       lipgloss.Style
	Box, BoxTitle                     lipgloss.Style
	Selected, Label, Value            lipgloss.Style
	TrainLine, EvalLine               lipgloss.Style
	Parts                             []lipgloss.Style
	Over                              lipgloss.Style
	HelpKey, HelpDesc, HelpSep        lipgloss.Style
}

func newStyles(p colorprofile.Profile) Styles {
	c := lipgloss.Complete(p)
	// Each colour is chosen for three profiles: one of the 16 basic
	// colours, a 256-colour index, and RGB.
	pick := func(basic, ansi256 int, hex string) color.Color {
		return c(ansi.BasicColor(basic), lipgloss.ANSIColor(ansi256), lipgloss.Color(hex))
	}
	col := func(basic, ansi256 int, hex string) lipgloss.Style {
		return lipgloss.NewStyle().Foreground(pick(basic, ansi256, hex))
	}
	accent := col(13, 170, "#D66BFF")
	muted := col(8, 245, "#8A8A8A")
	s := Styles{
		Title:     accent.Bold(true),
		Subtle:    col(7, 250, "#BCBCBC"),
		Muted:     muted,
		Faint:     muted.Faint(true),
		Bold:      lipgloss.NewStyle().Bold(true),
		Accent:    accent,
		Good:      col(10, 78, "#5FD787"),
		Bad:       col(9, 203, "#FF5F5F").Bold(true),
		Warn:      col(11, 214, "#FFAF00"),
		TabActive: accent.Bold(true).Underline(true),
		TabDone:   col(7, 250, "#BCBCBC"),
		TabTodo:   muted,
		Box:       lipgloss.NewStyle().Border(lipgloss.RoundedBorder()).BorderForeground(pick(8, 240, "#585858")),
		BoxTitle:  accent.Bold(true),
		Selected:  accent.Bold(true),
		Label:     col(7, 250, "#BCBCBC"),
		Value:     lipgloss.NewStyle().Bold(true),
		TrainLine: col(14, 80, "#5FD7D7"),
		EvalLine:  col(11, 214, "#FFAF00").Bold(true),
		Parts: []lipgloss.Style{
			col(12, 75, "#5FAFFF"), col(13, 170, "#D66BFF"), col(14, 80, "#5FD7D7"),
			col(11, 214, "#FFAF00"), col(10, 78, "#5FD787"), col(6, 109, "#87AFAF"),
			col(5, 139, "#AF87AF"), col(3, 179, "#D7AF5F"),
		},
		Over:     col(9, 203, "#FF5F5F"),
		HelpKey:  col(7, 250, "#BCBCBC").Bold(true),
		HelpDesc: muted,
		HelpSep:  muted,
	}
	return s
}

// keyMap holds the bindings shown in the help line.
type keyMap struct {
	Quit, ForceQuit, Next, Back, Up, Down key.Binding
	Pause, Checkpoint, Stop               key.Binding
	Yes, No                               key.Binding
}

func newKeyMap() keyMap {
	return keyMap{
		Quit:       key.NewBinding(key.WithKeys("q"), key.WithHelp("q", "quit")),
		ForceQuit:  key.NewBinding(key.WithKeys("ctrl+c"), key.WithHelp("ctrl+c", "quit")),
		Next:       key.NewBinding(key.WithKeys("enter"), key.WithHelp("enter", "next")),
		Back:       key.NewBinding(key.WithKeys("esc"), key.WithHelp("esc", "back")),
		Up:         key.NewBinding(key.WithKeys("up", "k"), key.WithHelp("↑/↓", "move")),
		Down:       key.NewBinding(key.WithKeys("down", "j")),
		Pause:      key.NewBinding(key.WithKeys("p"), key.WithHelp("p", "pause")),
		Checkpoint: key.NewBinding(key.WithKeys("c"), key.WithHelp("c", "checkpoint")),
		Stop:       key.NewBinding(key.WithKeys("s"), key.WithHelp("s", "stop")),
		Yes:        key.NewBinding(key.WithKeys("y", "Y"), key.WithHelp("y", "yes")),
		No:         key.NewBinding(key.WithKeys("n", "N", "esc"), key.WithHelp("n", "no")),
	}
}

// helpLine renders bindings as one line that fits the width.
func (c *common) helpLine(bindings ...key.Binding) string {
	h := help.New()
	h.Styles.ShortKey = c.styles.HelpKey
	h.Styles.ShortDesc = c.styles.HelpDesc
	h.Styles.ShortSeparator = c.styles.HelpSep
	h.Styles.Ellipsis = c.styles.HelpSep
	h.SetWidth(c.width)
	return h.ShortHelpView(bindings)
}

// bind makes a one-off binding for help lines.
func bind(keys, desc string) key.Binding {
	return key.NewBinding(key.WithKeys(keys), key.WithHelp(keys, desc))
}
