package tui

import (
	"errors"
	"fmt"
	"strings"

	"charm.land/bubbles/v2/key"
	tea "charm.land/bubbletea/v2"

	"whet/engine"
)

// nav is what a page asks of the wizard after a key.
type nav int

const (
	stay nav = iota
	next     // validated: go to the next page (or start, after the review)
	back
)

// page is one step of the wizard. Pages share the wizard's RunConfig: they
// load from it in enter and write to it in leave.
type page interface {
	title() string
	enter() tea.Cmd
	// leave validates the page and writes it into the config; an error
	// keeps the user on the page and is shown there.
	leave() error
	update(msg tea.Msg) (tea.Cmd, nav)
	view() string
	setSize(w, h int)
	help() []key.Binding
	// typing reports whether letter keys go into a text field, so that
	// q is a letter and not "quit".
	typing() bool
}

// committer is a page that acts on its choice once the user goes on
// from it (not when leaving backwards).
type committer interface {
	commit()
}

// wizard walks the pages in order and owns the RunConfig they build.
type wizard struct {
	*common
	cfg   *engine.RunConfig
	pages []page
	at    int
	err   string
}

func (w *wizard) current() page { return w.pages[w.at] }

// setSize gives the page the area between the tab line and the help line.
func (w *wizard) setSize(width, height int) {
	for _, p := range w.pages {
		p.setSize(width, max(height-4, 1))
	}
}

// update routes a message to the current page and moves between pages.
// It returns start=true when the review page was confirmed.
func (w *wizard) update(msg tea.Msg) (cmd tea.Cmd, start bool) {
	if _, ok := msg.(tea.KeyPressMsg); ok {
		// The error of the last attempt to go on stays until the user
		// acts again: a key that tries again sets it anew, and one that
		// starts something else (a download) must not show it under it.
		w.err = ""
	}
	c, n := w.current().update(msg)
	switch n {
	case next:
		if err := w.current().leave(); err != nil {
			w.err = err.Error()
			if errors.As(err, new(shownError)) {
				w.err = "" // the page shows it already, under its field
			}
			return c, false
		}
		w.err = ""
		if c, ok := w.current().(committer); ok {
			c.commit()
		}
		if w.at == len(w.pages)-1 {
			return c, true
		}
		w.at++
		return tea.Batch(c, w.current().enter()), false
	case back:
		if w.at > 0 {
			// Keep what the user typed on the page they leave backwards, as
			// far as it is valid: going back must not lose work. A page
			// that does not validate keeps its last valid values.
			_ = w.current().leave()
			w.err = ""
			w.at--
			return tea.Batch(c, w.current().enter()), false
		}
	}
	return c, false
}

// tabs is the progress line: done pages, the current one, the rest.
func (w *wizard) tabs() string {
	var parts []string
	for i, p := range w.pages {
		label := fmt.Sprintf("%d %s", i+1, p.title())
		switch {
		case i == w.at:
			parts = append(parts, w.styles.TabActive.Render(label))
		case i < w.at:
			parts = append(parts, w.styles.TabDone.Render("✓ "+p.title()))
		default:
			parts = append(parts, w.styles.TabTodo.Render(label))
		}
	}
	line := strings.Join(parts, w.styles.Muted.Render(" › "))
	return line
}

func (w *wizard) view() string {
	var b strings.Builder
	b.WriteString(w.styles.Title.Render("whet") + "  " + w.tabs() + "\n\n")
	b.WriteString(w.current().view())
	return b.String()
}

// shownError is an error a page already shows (a form's message under
// the field it names): the wizard's status line does not repeat it.
type shownError struct{ error }

func (e shownError) Unwrap() error { return e.error }
