package tui

import (
	"context"
	"fmt"
	"strings"

	"charm.land/bubbles/v2/key"
	tea "charm.land/bubbletea/v2"
	"charm.land/lipgloss/v2"

	"whet/engine"
	"whet/tui/components/form"
)

// Chat messages: the session opening, streamed pieces and the end of an
// answer. Pieces come through a channel read by a re-arming command, like
// the engine's events.
type (
	chatOpenedMsg struct {
		session ChatSession
		err     error
	}
	chatPieceMsg struct {
		tuned bool
		text  string
	}
	chatDoneMsg struct {
		tuned bool
		reply ChatReply
		err   error
	}
)

// chatSide is one column: the conversation with one model.
type chatSide struct {
	turns   []ChatTurn // user and assistant turns (the system prompt is added per request)
	partial string     // the answer being streamed
	stat    string     // tokens, speed and stop reason of the last answer
}

// chatPage asks the base and the tuned model the same question and shows
// both answers side by side as they stream.
type chatPage struct {
	*common
	chatter Chatter
	cfg     engine.RunConfig
	dir     string

	session     ChatSession
	loading     bool
	err         string
	form        form.Model
	base, tuned chatSide
	streaming   bool
	pending     bool // a prompt waits for the models to load
	current     bool // the side being generated: false base, true tuned
	pieces      chan tea.Msg
	cancel      context.CancelFunc
	w, h        int
}

func newChatPage(c *common, ch Chatter, cfg engine.RunConfig, dir string) *chatPage {
	p := &chatPage{common: c, chatter: ch, cfg: cfg, dir: dir}
	p.form = form.New([]form.Field{
		{Key: "prompt", Label: "Ask both", Kind: form.Text, Hint: "enter sends the prompt to both models; esc stops an answer or goes back"},
		{Key: "system", Label: "System prompt", Kind: form.Text, Advanced: true},
		{Key: "temp", Label: "Temperature", Kind: form.Float, Value: "0.7", Min: 0, Max: 5, Advanced: true, Hint: "0 is greedy"},
		{Key: "topp", Label: "Top-p", Kind: form.Float, Value: "0.9", Min: 0, Max: 1, Advanced: true},
		{Key: "max", Label: "Max new tokens", Kind: form.Int, Value: "256", Min: 1, Max: 1 << 20, Advanced: true},
		{Key: "seed", Label: "Seed", Kind: form.Int, Value: "0", Min: 0, Max: 1 << 31, Advanced: true, Hint: "the same seed gives both models the same random draws"},
	}, formStyles(c.styles))
	return p
}

// open loads the models in the background.
func (p *chatPage) open() tea.Cmd {
	if p.session != nil || p.loading {
		return nil
	}
	p.loading, p.err = true, ""
	ch, ctx, dir, cfg := p.chatter, p.ctx, p.dir, p.cfg
	return func() tea.Msg {
		s, err := ch.OpenChat(ctx, dir, cfg)
		return chatOpenedMsg{session: s, err: err}
	}
}

// close ends a running answer and frees the models.
func (p *chatPage) close() {
	if p.cancel != nil {
		p.cancel()
	}
	if p.session != nil {
		p.session.Close()
		p.session = nil
	}
}

func listenChat(ch chan tea.Msg) tea.Cmd {
	return func() tea.Msg { return <-ch }
}

// ask sends the prompt to the base model first; the tuned model follows
// when the base has finished (one set of weights serves both).
func (p *chatPage) ask() tea.Cmd {
	if err := p.form.Validate(); err != nil {
		return nil
	}
	prompt := strings.TrimSpace(p.form.Get("prompt"))
	if prompt == "" || p.streaming {
		return nil
	}
	if p.session == nil {
		p.pending = p.loading // asked while the models load: ask once they are in
		return nil
	}
	p.pending = false
	p.form.Set("prompt", "")
	p.base.turns = append(p.base.turns, ChatTurn{Role: "user", Content: prompt})
	if p.session.HasTuned() {
		p.tuned.turns = append(p.tuned.turns, ChatTurn{Role: "user", Content: prompt})
	}
	return p.generate(false)
}

func (p *chatPage) options() engine.SampleOptions {
	return engine.SampleOptions{MaxNewTokens: p.form.Int("max"), Temperature: p.form.Float("temp"),
		TopP: p.form.Float("topp"), Seed: uint64(p.form.Int("seed"))}
}

func (p *chatPage) generate(tuned bool) tea.Cmd {
	side := &p.base
	if tuned {
		side = &p.tuned
	}
	var turns []ChatTurn
	if sys := strings.TrimSpace(p.form.Get("system")); sys != "" {
		turns = append(turns, ChatTurn{Role: "system", Content: sys})
	}
	turns = append(turns, side.turns...)
	ctx, cancel := context.WithCancel(p.ctx)
	p.cancel = cancel
	p.streaming, p.current = true, tuned
	side.partial, side.stat = "", ""
	ch := make(chan tea.Msg, 64)
	p.pieces = ch
	s, opts := p.session, p.options()
	go func() {
		r, err := s.Generate(ctx, turns, opts, tuned, func(piece string) {
			select {
			case ch <- chatPieceMsg{tuned: tuned, text: piece}:
			case <-ctx.Done():
			}
		})
		ch <- chatDoneMsg{tuned: tuned, reply: r, err: err}
	}()
	return listenChat(ch)
}

// update returns back=true when the user leaves the page.
func (p *chatPage) update(msg tea.Msg) (cmd tea.Cmd, back bool) {
	switch msg := msg.(type) {
	case chatOpenedMsg:
		p.loading = false
		if msg.err != nil {
			p.err = msg.err.Error()
			return nil, false
		}
		p.session = msg.session
		if p.pending {
			return p.ask(), false
		}
	case chatPieceMsg:
		if msg.tuned {
			p.tuned.partial += msg.text
		} else {
			p.base.partial += msg.text
		}
		return listenChat(p.pieces), false
	case chatDoneMsg:
		side := &p.base
		if msg.tuned {
			side = &p.tuned
		}
		text := side.partial
		if msg.reply.Text != "" {
			text = msg.reply.Text
		}
		side.turns = append(side.turns, ChatTurn{Role: "assistant", Content: text})
		side.partial = ""
		if msg.err != nil {
			side.stat = "stopped: " + msg.err.Error()
			if errorsIsCanceled(msg.err) {
				side.stat = "stopped by you"
			}
		} else {
			side.stat = fmt.Sprintf("%d tokens · %.1f tok/s · %s", msg.reply.Tokens, msg.reply.TokensPerSec, msg.reply.Stop)
		}
		p.cancel()
		p.streaming = false
		if !msg.tuned && msg.err == nil && p.session != nil && p.session.HasTuned() {
			return p.generate(true), false
		}
	case tea.PasteMsg:
		p.form.Paste(msg.Content)
	case tea.KeyPressMsg:
		switch msg.String() {
		case "esc":
			if p.streaming {
				p.cancel()
				return nil, false
			}
			return nil, true
		case "enter":
			if p.form.Focused() == "" { // the fold row
				p.form, _ = p.form.Update(msg)
				return nil, false
			}
			return p.ask(), false
		}
		p.form, _ = p.form.Update(msg)
	}
	return nil, false
}

func errorsIsCanceled(err error) bool {
	return err == context.Canceled || strings.Contains(err.Error(), context.Canceled.Error())
}

func (p *chatPage) help() []key.Binding {
	if p.streaming {
		return []key.Binding{bind("esc", "stop the answer"), bind("ctrl+c", "quit")}
	}
	return []key.Binding{bind("enter", "ask"), bind("↑/↓", "settings"), bind("esc", "back"), bind("ctrl+c", "quit")}
}

// column renders one side's conversation, newest at the bottom, in w×h.
func (p *chatPage) column(title string, s chatSide, active bool, w, h int) string {
	st := p.styles
	var lines []string
	for _, t := range s.turns {
		switch t.Role {
		case "user":
			lines = append(lines, strings.Split(wrap(st.Accent.Render("you › ")+printable(t.Content), w), "\n")...)
		default:
			lines = append(lines, strings.Split(wrap(printable(t.Content), w), "\n")...)
			lines = append(lines, "")
		}
	}
	if active {
		lines = append(lines, strings.Split(wrap(printable(s.partial)+"▍", w), "\n")...)
	}
	body := h - 2
	if len(lines) > body {
		lines = lines[len(lines)-body:]
	}
	stat := s.stat
	if active {
		stat = "answering…"
	}
	out := st.BoxTitle.Render(title) + "\n" + fitBlock(strings.Join(lines, "\n"), w, body) + "\n" + st.Muted.Render(trimTo(stat, w))
	return out
}

func (p *chatPage) view(w, h int) string {
	st := p.styles
	head := st.Title.Render("whet") + " " + st.Bold.Render("chat") + st.Muted.Render(fmt.Sprintf(" · %s · %s on %s", p.cfg.Name, p.cfg.Method, p.cfg.Model))
	p.form.Styles = formStyles(st)
	formH := 4 // the prompt, the fold row, the hint and an error line
	if p.form.Advanced() {
		formH = 9
	}
	p.form.SetSize(w, formH)
	bodyH := h - 2 - formH - 1
	var body string
	switch {
	case p.err != "":
		body = st.Bad.Render(wrap("✗ could not open the models: "+printable(p.err), w))
	case p.loading || p.session == nil:
		msg := "loading the base model and the adapter…"
		if p.pending {
			msg += " your question is asked once they are in"
		}
		body = st.Muted.Render(wrap(msg, w))
	case p.session.HasTuned():
		cw := (w - 3) / 2
		left := p.column("base model", p.base, p.streaming && !p.current, cw, bodyH)
		right := p.column("tuned (this run)", p.tuned, p.streaming && p.current, cw, bodyH)
		sep := strings.TrimSuffix(strings.Repeat(st.Muted.Render("│")+"\n", bodyH), "\n")
		body = lipgloss.JoinHorizontal(lipgloss.Top, fitBlock(left, cw, bodyH), " ", sep, " ", fitBlock(right, cw, bodyH))
	default:
		body = p.column("model", p.base, p.streaming, w, bodyH)
	}
	out := head + "\n\n" + fitBlock(body, w, bodyH) + "\n" + fitBlock(p.form.View(), w, formH) + "\n" + p.helpLine(p.help()...)
	return fitBlock(out, w, h)
}
