// Package form is a keyboard-only form of labelled fields (text, numbers,
// choices, switches) with the advanced fields folded away behind one row.
// It draws no blinking cursor, so its views are stable in golden tests.
package form

import (
	"fmt"
	"strconv"
	"strings"

	tea "charm.land/bubbletea/v2"
	"charm.land/lipgloss/v2"
)

// Kind is the type of value a field holds.
type Kind int

const (
	Text Kind = iota
	Int
	Float
	Choice // one of Options; left/right or space cycle
	Bool   // "yes" or "no"; space toggles
)

// Field is one row of the form. Value always holds the text shown; Int and
// Float fields are parsed on validation.
type Field struct {
	Key      string // for the page that owns the form
	Label    string
	Kind     Kind
	Value    string
	Options  []string
	Hint     string
	Advanced bool // folded away until the user opens the advanced section
	Hidden   bool // not applicable right now (e.g. LoRA rank for full tuning)
	// Min and Max bound Int and Float fields when Max > Min.
	Min, Max float64
}

// Styles used by the form.
type Styles struct {
	Label, Focused, Value, Hint, Error, Muted lipgloss.Style
}

// Model is the form.
type Model struct {
	Fields  []Field
	Styles  Styles
	focus   int // index into visible rows; the fold row counts as a row
	open    bool
	width   int
	height  int
	offset  int // first row drawn, when the form is taller than its area
	lastErr string
}

// New returns a form over the fields.
func New(fields []Field, st Styles) Model {
	return Model{Fields: fields, Styles: st}
}

// SetSize sets the area the form may use.
func (m *Model) SetSize(w, h int) { m.width, m.height = w, h }

// row is a visible line: a field index, or -1 for the fold toggle.
func (m Model) rows() []int {
	var rows []int
	hasAdvanced := false
	for i, f := range m.Fields {
		if f.Hidden {
			continue
		}
		if f.Advanced {
			hasAdvanced = true
			continue
		}
		rows = append(rows, i)
	}
	if hasAdvanced {
		rows = append(rows, -1)
		if m.open {
			for i, f := range m.Fields {
				if f.Advanced && !f.Hidden {
					rows = append(rows, i)
				}
			}
		}
	}
	return rows
}

// Get returns the value of the field with the key ("" if none).
func (m Model) Get(key string) string {
	for _, f := range m.Fields {
		if f.Key == key {
			return f.Value
		}
	}
	return ""
}

// Set changes the value of the field with the key.
func (m *Model) Set(key, value string) {
	for i := range m.Fields {
		if m.Fields[i].Key == key {
			m.Fields[i].Value = value
		}
	}
}

// SetHidden shows or hides the field with the key.
func (m *Model) SetHidden(key string, hidden bool) {
	for i := range m.Fields {
		if m.Fields[i].Key == key {
			m.Fields[i].Hidden = hidden
		}
	}
	m.focus = min(m.focus, len(m.rows())-1)
}

// Focused returns the key of the focused field, "" on the fold row.
func (m Model) Focused() string {
	rows := m.rows()
	if m.focus < 0 || m.focus >= len(rows) || rows[m.focus] < 0 {
		return ""
	}
	return m.Fields[rows[m.focus]].Key
}

// FocusKey moves the focus to the field with the key, opening the advanced
// section if it lives there.
func (m *Model) FocusKey(key string) {
	for _, f := range m.Fields {
		if f.Key == key && f.Advanced {
			m.open = true
		}
	}
	for r, i := range m.rows() {
		if i >= 0 && m.Fields[i].Key == key {
			m.focus = r
		}
	}
}

// Advanced reports whether the advanced section is open.
func (m Model) Advanced() bool { return m.open }

// Validate checks every field and returns the first problem, naming the
// field, or nil. It also remembers the message for the view.
func (m *Model) Validate() error {
	m.lastErr = ""
	for _, f := range m.Fields {
		if f.Hidden {
			continue
		}
		if err := f.check(); err != nil {
			m.lastErr = err.Error()
			m.FocusKey(f.Key)
			return err
		}
	}
	return nil
}

func (f Field) check() error {
	var v float64
	switch f.Kind {
	case Int:
		n, err := strconv.Atoi(strings.TrimSpace(f.Value))
		if err != nil {
			return fmt.Errorf("%s: %q is not a whole number", f.Label, f.Value)
		}
		v = float64(n)
	case Float:
		x, err := strconv.ParseFloat(strings.TrimSpace(f.Value), 64)
		if err != nil {
			return fmt.Errorf("%s: %q is not a number", f.Label, f.Value)
		}
		v = x
	default:
		return nil
	}
	if f.Max > f.Min && (v < f.Min || v > f.Max) {
		return fmt.Errorf("%s: %s is outside %g…%g", f.Label, f.Value, f.Min, f.Max)
	}
	return nil
}

// Int returns the parsed value of an Int field (0 when it does not parse;
// call Validate first).
func (m Model) Int(key string) int {
	n, _ := strconv.Atoi(strings.TrimSpace(m.Get(key)))
	return n
}

// Float returns the parsed value of a Float field.
func (m Model) Float(key string) float64 {
	x, _ := strconv.ParseFloat(strings.TrimSpace(m.Get(key)), 64)
	return x
}

// Bool returns whether a Bool field is "yes".
func (m Model) Bool(key string) bool { return m.Get(key) == "yes" }

// Update handles a key. It reports whether the key was used, so the page
// can give unused keys (enter, esc) their page meaning.
func (m Model) Update(msg tea.KeyPressMsg) (Model, bool) {
	rows := m.rows()
	if len(rows) == 0 {
		return m, false
	}
	m.focus = min(max(m.focus, 0), len(rows)-1)
	cur := rows[m.focus]
	switch msg.String() {
	case "up", "shift+tab":
		m.focus = (m.focus - 1 + len(rows)) % len(rows)
		return m, true
	case "down", "tab":
		m.focus = (m.focus + 1) % len(rows)
		return m, true
	}
	if cur < 0 { // the fold row
		switch msg.String() {
		case "enter", "space", "right", "left":
			m.open = !m.open
			return m, true
		}
		return m, false
	}
	f := &m.Fields[cur]
	switch f.Kind {
	case Choice, Bool:
		opts := f.Options
		if f.Kind == Bool {
			opts = []string{"no", "yes"}
		}
		step := 0
		switch msg.String() {
		case "right", "space":
			step = 1
		case "left":
			step = -1
		}
		if step == 0 || len(opts) == 0 {
			return m, false
		}
		at := 0
		for i, o := range opts {
			if o == f.Value {
				at = i
			}
		}
		f.Value = opts[(at+step+len(opts))%len(opts)]
		m.lastErr = ""
		return m, true
	default:
		switch msg.String() {
		case "backspace":
			if r := []rune(f.Value); len(r) > 0 {
				f.Value = string(r[:len(r)-1])
			}
			m.lastErr = ""
			return m, true
		case "ctrl+u":
			f.Value = ""
			return m, true
		}
		if msg.Text != "" && msg.Mod&^tea.ModShift == 0 {
			f.Value += msg.Text
			m.lastErr = ""
			return m, true
		}
	}
	return m, false
}

// Paste inserts pasted text into the focused text field.
func (m *Model) Paste(s string) {
	rows := m.rows()
	if m.focus < 0 || m.focus >= len(rows) || rows[m.focus] < 0 {
		return
	}
	f := &m.Fields[rows[m.focus]]
	if f.Kind == Text || f.Kind == Int || f.Kind == Float {
		f.Value += strings.ReplaceAll(s, "\n", " ")
	}
}

// TextFocused reports whether typing goes into a field (so that letter keys
// are not shortcuts).
func (m Model) TextFocused() bool {
	rows := m.rows()
	if m.focus < 0 || m.focus >= len(rows) || rows[m.focus] < 0 {
		return false
	}
	k := m.Fields[rows[m.focus]].Kind
	return k == Text || k == Int || k == Float
}

const labelWidth = 20

// View draws the visible rows (scrolled so the focus stays in view), the
// focused field's hint and the last validation error.
func (m *Model) View() string {
	rows := m.rows()
	var lines []string
	focusLine := 0
	for r, i := range rows {
		mark := "  "
		if r == m.focus {
			mark = m.Styles.Focused.Render("› ")
			focusLine = len(lines)
		}
		if i < 0 {
			n := 0
			for _, f := range m.Fields {
				if f.Advanced && !f.Hidden {
					n++
				}
			}
			arrow, verb := "▸", "show"
			if m.open {
				arrow, verb = "▾", "hide"
			}
			text := fmt.Sprintf("%s advanced settings (%d) — enter to %s", arrow, n, verb)
			if r == m.focus {
				text = m.Styles.Focused.Render(text)
			} else {
				text = m.Styles.Muted.Render(text)
			}
			lines = append(lines, mark+text)
			continue
		}
		lines = append(lines, mark+m.fieldLine(m.Fields[i], r == m.focus))
	}
	budget := len(lines)
	if m.height > 0 {
		budget = max(m.height-2, 1) // two lines for hint and error
	}
	if m.focus >= 0 && focusLine < m.offset {
		m.offset = focusLine
	}
	if focusLine >= m.offset+budget {
		m.offset = focusLine - budget + 1
	}
	m.offset = min(m.offset, max(len(lines)-budget, 0))
	visible := lines[m.offset:min(len(lines), m.offset+budget)]

	hint := ""
	if m.focus >= 0 && m.focus < len(rows) && rows[m.focus] >= 0 {
		hint = m.Fields[rows[m.focus]].Hint
	}
	out := strings.Join(visible, "\n")
	out += "\n" + m.Styles.Hint.Render(truncate(hint, m.width))
	if m.lastErr != "" {
		out += "\n" + m.Styles.Error.Render(truncate("✗ "+m.lastErr, m.width))
	}
	return out
}

func (m Model) fieldLine(f Field, focused bool) string {
	label := fmt.Sprintf("%-*s", labelWidth, truncate(f.Label, labelWidth-1))
	var val string
	switch f.Kind {
	case Choice, Bool:
		val = f.Value
		if focused {
			val = "‹ " + f.Value + " ›"
		}
	default:
		val = f.Value
		if focused {
			val += "▏"
		}
	}
	avail := m.width - 2 - labelWidth
	if avail > 4 {
		val = truncateLeft(val, avail)
	}
	if focused {
		return m.Styles.Focused.Render(label) + m.Styles.Value.Render(val)
	}
	return m.Styles.Label.Render(label) + val
}

func truncate(s string, w int) string {
	if w <= 0 || lipgloss.Width(s) <= w {
		return s
	}
	r := []rune(s)
	for len(r) > 0 && lipgloss.Width(string(r))+1 > w {
		r = r[:len(r)-1]
	}
	return string(r) + "…"
}

// truncateLeft keeps the end of a long value (the part being typed).
func truncateLeft(s string, w int) string {
	if lipgloss.Width(s) <= w {
		return s
	}
	r := []rune(s)
	for len(r) > 0 && lipgloss.Width(string(r))+1 > w {
		r = r[1:]
	}
	return "…" + string(r)
}
