package tui

import (
	"context"
	"strings"
	"testing"
	"time"

	tea "charm.land/bubbletea/v2"
	"github.com/charmbracelet/colorprofile"
	"github.com/charmbracelet/x/ansi"

	"whet/datasets"
	"whet/engine"
)

// stubbornPreviewer reports a first progress, then waits for its context
// to end, reports once more and answers with a preview as if nothing had
// happened: the worst a previewer can do after a stop.
type stubbornPreviewer struct {
	waiting chan struct{} // closed once it waits for the stop
}

func (s stubbornPreviewer) Preview(ctx context.Context, cfg engine.RunConfig, progress func(datasets.Progress)) (DataPreview, error) {
	progress(datasets.Progress{Stage: datasets.StageReading, Bytes: 1 << 20, TotalBytes: 4 << 20})
	close(s.waiting)
	<-ctx.Done()
	progress(datasets.Progress{Stage: datasets.StageTokenizing, Rows: 512, TotalRows: 1000})
	return DataPreview{Format: "messages", Stats: DataStats{Rows: 1000}}, nil
}

// runBatch starts the commands of a tea.Batch, each on its goroutine as
// Bubble Tea does, and returns the channel their messages arrive on.
func runBatch(t *testing.T, cmd tea.Cmd) chan tea.Msg {
	t.Helper()
	batch, ok := cmd().(tea.BatchMsg)
	if !ok {
		t.Fatalf("load returned %T, want a batch (the read and its progress)", cmd())
	}
	out := make(chan tea.Msg, len(batch)+4)
	for _, c := range batch {
		go func() { out <- c() }()
	}
	return out
}

// nextMsg takes the next message that is not nil (a progress waiter that
// ended sends nil), or fails after a while: the read should end at once.
func nextMsg(t *testing.T, msgs chan tea.Msg) tea.Msg {
	t.Helper()
	deadline := time.After(5 * time.Second)
	for {
		select {
		case m := <-msgs:
			if m != nil {
				return m
			}
		case <-deadline:
			t.Fatal("the stopped read did not end")
			return nil
		}
	}
}

// esc during a read stops it: the previewer's context ends (so the read
// stops at once), the page says the read was stopped, does not go on
// with the file, and whatever the stopped read still sends (its progress,
// its preview) is dropped.
func TestEscStopsTheReadAndDropsItsLateAnswers(t *testing.T) {
	c := &common{width: 80, height: 24, styles: newStyles(colorprofile.NoTTY), keys: newKeyMap(), now: time.Now, ctx: context.Background()}
	cfg := engine.RunConfig{Model: "demo", Method: "lora"}
	pv := stubbornPreviewer{waiting: make(chan struct{})}
	p := newDataPage(c, &cfg, pv, nil, nil, "", nil)
	p.setSize(80, 20)
	msgs := runBatch(t, p.load("big.jsonl"))

	// The first report shows as a bar, and the waiter is armed again.
	m := nextMsg(t, msgs)
	pm, ok := m.(previewProgressMsg)
	if !ok {
		t.Fatalf("first message %T, want the read's progress", m)
	}
	cmd, _ := p.update(pm)
	if cmd == nil {
		t.Fatal("a progress message should wait for the next one")
	}
	go func() { msgs <- cmd() }()
	if s := ansi.Strip(p.view()); !strings.Contains(s, " 25%  1.00 MiB of 4.00 MiB read") || !strings.Contains(s, "esc stops reading") {
		t.Errorf("the page should show the read's progress:\n%s", s)
	}

	<-pv.waiting
	if cmd, nv := p.update(tea.KeyPressMsg{Code: tea.KeyEscape}); cmd != nil || nv != stay {
		t.Errorf("esc while reading: cmd %v, nav %v; want it to stay on the page", cmd, nv)
	}
	if p.loading || !p.stopped {
		t.Fatalf("after esc: loading %v, stopped %v", p.loading, p.stopped)
	}
	// The previewer returns only once its context has ended: both its
	// late messages come, and change nothing.
	for range 2 {
		m := nextMsg(t, msgs)
		switch m.(type) {
		case previewProgressMsg, previewMsg:
		default:
			t.Fatalf("unexpected message %T", m)
		}
		if cmd, _ := p.update(m); cmd != nil {
			t.Errorf("%T of the stopped read should end there, got a command", m)
		}
		if _, done := m.(previewMsg); done {
			break
		}
	}
	if p.preview != nil || p.loading || p.progress != (datasets.Progress{}) {
		t.Errorf("the stopped read's answers landed: preview %v, loading %v, progress %+v", p.preview, p.loading, p.progress)
	}
	s := ansi.Strip(p.view())
	if !strings.Contains(s, "stopped reading big.jsonl") || strings.Contains(s, "%") {
		t.Errorf("the page should say the read was stopped, without a bar:\n%s", s)
	}
	if err := p.leave(); err == nil || !strings.Contains(err.Error(), "was stopped") {
		t.Errorf("leave after a stopped read: %v, want it refused", err)
	}
	// esc again goes back as usual; enter on the file reads it again.
	if _, nv := p.update(tea.KeyPressMsg{Code: tea.KeyEscape}); nv != back {
		t.Errorf("esc after the stop: nav %v, want back", nv)
	}
	p.files = []dataFile{{path: "big.jsonl"}}
	p.cursor = 1
	if cmd, _ := p.update(tea.KeyPressMsg{Code: tea.KeyEnter}); cmd == nil || !p.loading || p.stopped {
		t.Errorf("enter on the stopped file should read it again: loading %v, stopped %v", p.loading, p.stopped)
	}
	p.stopRead()
}
