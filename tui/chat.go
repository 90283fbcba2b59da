package tui

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"sync"

	"charm.land/bubbles/v2/key"
	tea "charm.land/bubbletea/v2"
	"charm.land/lipgloss/v2"
	"github.com/charmbracelet/x/ansi"

	"whet/datasets/vision"
	"whet/engine"
	"whet/tui/components/form"
	"whet/tui/components/imageview"
)

// Chat messages: the session opening, streamed pieces and the end of an
// answer. Pieces come through a channel read by a re-arming command, like
// the engine's events.
type (
	//
	// Each names its page: the studio hands it to that page whichever
	// screen shows (the user may have gone back to the summary while the
	// models load), and drops it once the page has been closed.
	chatOpenedMsg struct {
		page *chatPage
		err  error // the session itself waits in page.opened
	}
	chatPieceMsg struct {
		page  *chatPage
		tuned bool
		text  string
	}
	chatDoneMsg struct {
		page  *chatPage
		tuned bool
		reply ChatReply
		err   error
	}
)

// chatMsgPage is the page a chat message is for (nil: not a chat message).
func chatMsgPage(msg tea.Msg) *chatPage {
	switch msg := msg.(type) {
	case chatOpenedMsg:
		return msg.page
	case chatPieceMsg:
		return msg.page
	case chatDoneMsg:
		return msg.page
	}
	return nil
}

// chatSide is one column: the conversation with one model.
type chatSide struct {
	turns []ChatTurn // user and assistant turns (the system prompt is added per request)
	// shown are the placeholder lines of each user turn's images, by turn.
	shown   map[int][]string
	partial string // the answer being streamed
	stat    string // tokens, speed and stop reason of the last answer
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
	streaming   bool    // an answer is under way (until every side has ended)
	busy        [2]bool // the sides answering now: base, tuned
	stopped     bool    // esc stopped this question's answers
	oneByOne    bool    // this question goes to the base, then to the tuned model
	pending     bool    // a prompt waits for the models to load
	pieces      chan tea.Msg
	cancel      context.CancelFunc
	// genDone is closed when the generation goroutine no longer uses the
	// models; closed is closed when the page lets them go (close), so that
	// a goroutine never waits on a screen that has gone.
	genDone chan struct{}
	closed  chan struct{}
	// mu guards closed's closing and opened: the session the loading
	// command has opened and update has not yet taken. The command hands
	// the session over under mu, or closes it itself when the page has
	// been closed meanwhile, so that a session loaded after the user left
	// is always freed, whenever it arrives.
	mu     sync.Mutex
	opened ChatSession
	w, h   int
	// The transcript's scroll: scrolled is set while the user has moved
	// it off the newest lines (pgup), top is then its first line shown
	// and stays put as an answer streams below. Unscrolled, the view
	// follows the newest line. rows, above and below are what the last
	// view showed: its height, and the lines hidden above and below.
	scrolled           bool
	top                int
	rows, above, below int
	// images wait for the next message (/image PATH): the files, and the
	// placeholder lines the transcript shows for them.
	images, imageLines []string
	note               string // what /image did, or why it did not
	noteBad            bool
	attachLater        string // /image typed while the models load
}

func newChatPage(c *common, ch Chatter, cfg engine.RunConfig, dir string) *chatPage {
	p := &chatPage{common: c, chatter: ch, cfg: cfg, dir: dir, closed: make(chan struct{})}
	p.form = form.New([]form.Field{
		{Key: "prompt", Label: "Ask both", Kind: form.Text, Hint: "enter asks both models; /image PATH attaches a picture; esc stops or goes back"},
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
		p.mu.Lock()
		defer p.mu.Unlock()
		if p.isClosed() {
			if s != nil {
				s.Close() // the user left before the models came in
			}
			return nil
		}
		if err == nil {
			p.opened = s
		}
		return chatOpenedMsg{page: p, err: err}
	}
}

// isClosed says whether close has run.
func (p *chatPage) isClosed() bool {
	select {
	case <-p.closed:
		return true
	default:
		return false
	}
}

// close ends a running answer and frees the models once the answer's
// goroutine has let go of them (it stops at its next token).
func (p *chatPage) close() {
	p.mu.Lock()
	if !p.isClosed() {
		close(p.closed)
	}
	loaded := p.opened // loaded, never shown
	p.opened = nil
	p.mu.Unlock()
	if loaded != nil {
		loaded.Close()
	}
	if p.cancel != nil {
		p.cancel()
	}
	if p.genDone != nil {
		<-p.genDone
	}
	if p.session != nil {
		p.session.Close()
		p.session = nil
	}
}

// listenChat reads the next message of an answer, or nothing once the
// page is closed (the answer's goroutine then sends no more).
func listenChat(ch chan tea.Msg, closed <-chan struct{}) tea.Cmd {
	return func() tea.Msg {
		select {
		case msg := <-ch:
			return msg
		case <-closed:
			return nil
		}
	}
}

// ask sends the prompt to both models: together when the session can
// (BothChat), else to the base model first and to the tuned one when the
// base has finished (one set of weights serves both).
func (p *chatPage) ask() tea.Cmd {
	if err := p.form.Validate(); err != nil {
		return nil
	}
	prompt := strings.TrimSpace(p.form.Get("prompt"))
	if prompt == "" || p.streaming {
		return nil
	}
	if prompt == "/image" || strings.HasPrefix(prompt, "/image ") {
		p.attach(strings.TrimSpace(strings.TrimPrefix(prompt, "/image")))
		return nil
	}
	if p.session == nil {
		p.pending = p.loading // asked while the models load: ask once they are in
		return nil
	}
	p.pending = false
	p.form.Set("prompt", "")
	p.note = ""
	turn := ChatTurn{Role: "user", Content: prompt, Images: p.images}
	for _, side := range []*chatSide{&p.base, &p.tuned} {
		if side == &p.tuned && !p.session.HasTuned() {
			break
		}
		if len(p.imageLines) > 0 {
			if side.shown == nil {
				side.shown = map[int][]string{}
			}
			side.shown[len(side.turns)] = p.imageLines
		}
		side.turns = append(side.turns, turn)
	}
	p.images, p.imageLines = nil, nil
	p.stopped = false
	p.scrolled = false // a new question shows its answers as they come
	if bc, ok := p.session.(BothChat); ok && p.session.HasTuned() {
		p.oneByOne = false
		return p.generateBoth(bc)
	}
	p.oneByOne = p.session.HasTuned()
	return p.generate(false)
}

// attach handles /image PATH: the image (relative to the working folder,
// ~ for the home folder) goes with the next message to both models, if the
// model can look at images and the file can be read.
func (p *chatPage) attach(typed string) {
	p.noteBad = true
	switch {
	case typed == "":
		p.note = "/image needs a file: /image path/to/picture.png"
		return
	case p.session == nil:
		// Attached once the models are in (or refused then).
		p.attachLater, p.noteBad = typed, false
		p.note = "the image is attached once the models are in"
		return
	}
	ic, ok := p.session.(ImageChat)
	if !ok {
		p.note = "✗ this model has no vision tower: it cannot look at images (/image needs a vision model such as Gemma 3)"
		return
	}
	path := expandHome(typed)
	if abs, err := filepath.Abs(path); err == nil {
		path = abs
	}
	// The session first: a model without a vision tower says so
	// whatever the file.
	err := ic.CheckImage(path)
	var d *vision.Decoded
	if err == nil {
		d, err = vision.DecodeFile(path)
	}
	if err != nil {
		p.note = "✗ /image " + typed + ": " + err.Error()
		return
	}
	p.images = append(p.images, path)
	p.imageLines = append(p.imageLines, imageview.Placeholder(typed, d))
	p.form.Set("prompt", "")
	p.noteBad = false
	p.note = fmt.Sprintf("%s goes with your next message", imageview.Placeholder(typed, d))
	if n := len(p.images); n > 1 {
		p.note = fmt.Sprintf("%d images go with your next message; the last: %s", n, imageview.Placeholder(typed, d))
	}
}

func (p *chatPage) options() engine.SampleOptions {
	return engine.SampleOptions{MaxNewTokens: p.form.Int("max"), Temperature: p.form.Float("temp"),
		TopP: p.form.Float("topp"), Seed: uint64(p.form.Int("seed"))}
}

// request is what a side sends: the system prompt, then the side's own
// conversation.
func (p *chatPage) request(side *chatSide) []ChatTurn {
	var turns []ChatTurn
	if sys := strings.TrimSpace(p.form.Get("system")); sys != "" {
		turns = append(turns, ChatTurn{Role: "system", Content: sys})
	}
	return append(turns, side.turns...)
}

func (p *chatPage) side(tuned bool) *chatSide {
	if tuned {
		return &p.tuned
	}
	return &p.base
}

// start begins an answer of the given sides: a fresh context (esc cancels
// it), a fresh channel for its messages, and the goroutine run, which
// sends through send and must not use the models once it returns.
func (p *chatPage) start(sides []bool, run func(ctx context.Context, send func(msg tea.Msg, piece bool))) tea.Cmd {
	ctx, cancel := context.WithCancel(p.ctx)
	p.cancel = cancel
	p.streaming = true
	for _, tuned := range sides {
		p.busy[b2i(tuned)] = true
		side := p.side(tuned)
		side.partial, side.stat = "", ""
	}
	ch := make(chan tea.Msg, 64)
	p.pieces = ch
	done := make(chan struct{})
	var closed <-chan struct{} = p.closed
	p.genDone = done
	// Pieces are dropped once the answer is cancelled; the end of a side
	// always reaches the page, which waits for it, unless the page is gone.
	send := func(msg tea.Msg, piece bool) {
		stop := closed
		if piece {
			stop = ctx.Done()
		}
		select {
		case ch <- msg:
		case <-stop:
		}
	}
	go func() {
		defer close(done)
		run(ctx, send)
	}()
	return listenChat(ch, closed)
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// generate answers one side alone.
func (p *chatPage) generate(tuned bool) tea.Cmd {
	turns, s, opts := p.request(p.side(tuned)), p.session, p.options()
	return p.start([]bool{tuned}, func(ctx context.Context, send func(tea.Msg, bool)) {
		r, err := s.Generate(ctx, turns, opts, tuned, func(piece string) {
			send(chatPieceMsg{page: p, tuned: tuned, text: piece}, true)
		})
		send(chatDoneMsg{page: p, tuned: tuned, reply: r, err: err}, false)
	})
}

// generateBoth answers both sides in one batched generation.
//
// Why one batch rather than two generators stepping in lockstep: the base
// and the tuned model are one set of base weights with the adapter
// switched on for the tuned one, and the engine can apply the adapter to
// some rows of a batch only (GroupGenerator.TunedFrom, behind
// chat.Session.GenerateBoth). A batch of two rows reads each weight once
// per token for both answers, where two generators would read them twice
// and, on one backend stream, interleave their kernels without running
// them at the same time; it needs no coordination between goroutines, and
// the engine's tests prove each row equals its model alone. A side that
// ends first closes its column while the other streams on.
func (p *chatPage) generateBoth(bc BothChat) tea.Cmd {
	baseTurns, tunedTurns, opts := p.request(&p.base), p.request(&p.tuned), p.options()
	return p.start([]bool{false, true}, func(ctx context.Context, send func(tea.Msg, bool)) {
		var ended [2]bool
		b, t, err := bc.GenerateBoth(ctx, baseTurns, tunedTurns, opts, func(tuned bool, piece string) {
			send(chatPieceMsg{page: p, tuned: tuned, text: piece}, true)
		}, func(tuned bool, r ChatReply) {
			if !ended[b2i(tuned)] {
				ended[b2i(tuned)] = true
				send(chatDoneMsg{page: p, tuned: tuned, reply: r}, false)
			}
		})
		for i, r := range []ChatReply{b, t} {
			if !ended[i] {
				send(chatDoneMsg{page: p, tuned: i == 1, reply: r, err: err}, false)
			}
		}
	})
}

// update returns back=true when the user leaves the page.
func (p *chatPage) update(msg tea.Msg) (cmd tea.Cmd, back bool) {
	switch msg := msg.(type) {
	case chatOpenedMsg:
		p.mu.Lock()
		s := p.opened
		p.opened = nil
		p.mu.Unlock()
		p.loading = false
		if msg.err != nil {
			p.err = msg.err.Error()
			return nil, false
		}
		if s == nil { // closed meanwhile: close freed it
			return nil, false
		}
		p.session = s
		if p.attachLater != "" {
			typed := p.attachLater
			p.attachLater = ""
			p.attach(typed)
		}
		if p.pending {
			return p.ask(), false
		}
	case chatPieceMsg:
		if msg.tuned {
			p.tuned.partial += msg.text
		} else {
			p.base.partial += msg.text
		}
		return listenChat(p.pieces, p.closed), false
	case chatDoneMsg:
		side := p.side(msg.tuned)
		text := side.partial
		if msg.reply.Text != "" {
			text = msg.reply.Text
		}
		side.turns = append(side.turns, ChatTurn{Role: "assistant", Content: text})
		side.partial = ""
		// The engine ends a cancelled answer with Stop "cancelled" and
		// no error; other sessions return the context's error.
		cancelled := msg.reply.Stop == "cancelled" || (msg.err != nil && errorsIsCanceled(msg.err))
		switch {
		case cancelled:
			side.stat = "stopped by you"
		case msg.err != nil:
			side.stat = "stopped: " + msg.err.Error()
		default:
			side.stat = fmt.Sprintf("%s · %.1f tok/s · %s", engine.Plural(msg.reply.Tokens, "token"), msg.reply.TokensPerSec, msg.reply.Stop)
		}
		p.busy[b2i(msg.tuned)] = false
		if p.busy[0] || p.busy[1] {
			return listenChat(p.pieces, p.closed), false // the other side streams on
		}
		p.cancel()
		p.streaming = false
		// One side at a time: the tuned model follows the base, unless
		// the base failed or esc stopped it.
		if p.oneByOne && !msg.tuned && msg.err == nil && !cancelled && !p.stopped && p.session != nil {
			return p.generate(true), false
		}
	case tea.PasteMsg:
		p.form.Paste(msg.Content)
	case tea.KeyPressMsg:
		switch msg.String() {
		case "esc":
			if p.streaming {
				p.stopped = true
				p.cancel()
				return nil, false
			}
			// A question typed while the models load is not asked
			// behind the user's back: it stays in the prompt.
			p.pending = false
			return nil, true
		case "pgup", "pgdown":
			p.scroll(msg.String() == "pgup")
			return nil, false
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

// scroll moves the transcript a page (less one line, kept for context)
// up or down from where the last view showed it; down to the newest line
// it follows the answers again.
func (p *chatPage) scroll(up bool) {
	step := max(p.rows-1, 1)
	top := p.top
	if !p.scrolled {
		top = p.above // the view's first line, following the newest
	}
	last := p.above + p.below // the top that shows the newest line
	if up {
		if p.above == 0 {
			return
		}
		p.top, p.scrolled = max(top-step, 0), true
		return
	}
	if top+step >= last {
		p.scrolled = false
		return
	}
	p.top = top + step
}

// window picks the rows of a transcript of n lines that show in rows
// lines: from top when the user has scrolled, else the newest. It notes
// what it hid for the indicator and for scroll.
func (p *chatPage) window(n, rows int) (from, to int) {
	last := max(n-rows, 0)
	from = last
	if p.scrolled {
		from = min(p.top, last)
		p.top = from
	}
	p.rows, p.above, p.below = rows, from, max(n-from-rows, 0)
	return from, min(from+rows, n)
}

// scrollNote is the line over the transcript: lines hidden below (the
// user scrolled back; an answer may be streaming there) or above.
func (p *chatPage) scrollNote(w int) string {
	st := p.styles
	switch {
	case p.below > 0:
		more := ""
		if p.streaming {
			more = ", still answering"
		}
		up := ""
		if p.above > 0 {
			up = fmt.Sprintf(" · ↑ %d above", p.above)
		}
		return st.Accent.Render(trimTo(fmt.Sprintf("↓ %s below%s · pgdn to scroll on%s", engine.Plural(p.below, "newer line"), more, up), w))
	case p.above > 0:
		return st.Muted.Render(trimTo(fmt.Sprintf("↑ %s · pgup to scroll back", engine.Plural(p.above, "earlier line")), w))
	}
	return ""
}

func errorsIsCanceled(err error) bool {
	return err == context.Canceled || strings.Contains(err.Error(), context.Canceled.Error())
}

func (p *chatPage) help() []key.Binding {
	if p.streaming {
		what := "stop the answer"
		if p.busy[0] && p.busy[1] {
			what = "stop both answers"
		}
		return []key.Binding{bind("esc", what), bind("pgup/pgdn", "scroll"), bind("ctrl+c", "quit")}
	}
	return []key.Binding{bind("enter", "ask"), bind("↑/↓", "settings"), bind("pgup/pgdn", "scroll"), bind("esc", "back"), bind("ctrl+c", "quit")}
}

// exchanges splits a side's conversation into exchanges: a question and
// what followed it. The streamed answer joins the last one while active.
func (p *chatPage) exchanges(s chatSide, active bool, w int) [][]string {
	st := p.styles
	var out [][]string
	for i, t := range s.turns {
		if t.Role == "user" || len(out) == 0 {
			out = append(out, nil)
		}
		ex := &out[len(out)-1]
		if t.Role == "user" {
			for _, l := range s.shown[i] {
				*ex = append(*ex, st.Muted.Render(trimTo(printable(l), w)))
			}
			*ex = append(*ex, strings.Split(wrap(st.Accent.Render("you › ")+printable(t.Content), w), "\n")...)
			continue
		}
		*ex = append(*ex, strings.Split(wrap(printable(t.Content), w), "\n")...)
		*ex = append(*ex, "")
	}
	if active {
		if len(out) == 0 {
			out = append(out, nil)
		}
		ex := &out[len(out)-1]
		*ex = append(*ex, strings.Split(wrap(printable(s.partial)+"▍", w), "\n")...)
	}
	return out
}

// padCell pads or cuts a rendered line to exactly w cells, so that the
// column beside it starts at the same place on every row.
func padCell(s string, w int) string {
	if lipgloss.Width(s) > w {
		s = ansi.Truncate(s, w, "…")
	}
	return s + strings.Repeat(" ", max(w-lipgloss.Width(s), 0))
}

// statLine is what stands under a column: the last answer's numbers, or
// that the model is answering.
func statLine(s chatSide, active bool) string {
	if active {
		return "answering…"
	}
	return s.stat
}

// column renders one conversation, newest at the bottom, in w×h.
func (p *chatPage) column(title string, s chatSide, active bool, w, h int) string {
	var lines []string
	for _, ex := range p.exchanges(s, active, w) {
		lines = append(lines, ex...)
	}
	body := max(h-2, 0)
	from, to := p.window(len(lines), body)
	lines = lines[from:to]
	return p.styles.BoxTitle.Render(title) + "\n" + fitBlock(strings.Join(lines, "\n"), w, body) + "\n" + p.styles.Muted.Render(trimTo(statLine(s, active), w))
}

// sideBySide renders the base and the tuned conversation in two columns of
// cw cells, h lines in all. Each exchange takes the height of its longer
// side in both columns, so a question stands on the same row on both sides
// whatever the lengths of the answers, and both scroll together.
//
// Why one scroll for both columns rather than one each: the page is there
// to compare the two answers to the same question, and rows aligned by
// exchange put them side by side; scrolling a column alone would set one
// side's question beside the other side's answer to another. Scrolled
// together, a long base answer is read by scrolling down through it, and
// the tuned reply to the same question stands beside it all the way.
func (p *chatPage) sideBySide(cw, h int) string {
	st := p.styles
	baseActive, tunedActive := p.busy[0], p.busy[1]
	left, right := p.exchanges(p.base, baseActive, cw), p.exchanges(p.tuned, tunedActive, cw)
	var l, r []string
	for i := 0; i < max(len(left), len(right)); i++ {
		var a, b []string
		if i < len(left) {
			a = left[i]
		}
		if i < len(right) {
			b = right[i]
		}
		n := max(len(a), len(b))
		for len(a) < n {
			a = append(a, "")
		}
		for len(b) < n {
			b = append(b, "")
		}
		l, r = append(l, a...), append(r, b...)
	}
	body := max(h-2, 0)
	from, to := p.window(len(l), body)
	l, r = l[from:to], r[from:to]
	for len(l) < body {
		l, r = append(l, ""), append(r, "")
	}
	sep := " " + st.Muted.Render("│") + " "
	row := func(a, b string) string { return padCell(a, cw) + sep + padCell(b, cw) }
	rows := []string{row(st.BoxTitle.Render("base model"), st.BoxTitle.Render("tuned (this run)"))}
	for i := range l {
		rows = append(rows, row(l[i], r[i]))
	}
	rows = append(rows, row(st.Muted.Render(trimTo(statLine(p.base, baseActive), cw)), st.Muted.Render(trimTo(statLine(p.tuned, tunedActive), cw))))
	return strings.Join(rows, "\n")
}

func (p *chatPage) view(w, h int) string {
	st := p.styles
	head := st.Title.Render("whet") + " " + st.Bold.Render("chat") + st.Muted.Render(fmt.Sprintf(" · %s · %s on %s", p.cfg.Name, p.cfg.Method, DisplayPath(p.cfg.Model)))
	p.form.Styles = formStyles(st)
	formH := 4 // the prompt, the fold row, the hint and an error line
	if p.form.Advanced() {
		formH = 9
	}
	p.form.SetSize(w, formH)
	bodyH := h - 2 - formH - 1
	// What /image did stands under the conversation, at most two lines.
	var note []string
	if p.note != "" {
		style := st.Accent
		if p.noteBad {
			style = st.Bad
		}
		note = strings.Split(wrap(printable(p.note), w), "\n")
		note = note[:min(len(note), 2)]
		for i := range note {
			note[i] = style.Render(note[i])
		}
		bodyH -= len(note)
	}
	var body string
	p.rows, p.above, p.below = 0, 0, 0 // no transcript until one is drawn
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
		body = p.sideBySide((w-3)/2, bodyH)
	default:
		body = p.column("model", p.base, p.busy[0], w, bodyH)
	}
	if note != nil {
		body = fitBlock(body, w, bodyH) + "\n" + strings.Join(note, "\n")
		bodyH += len(note)
	}
	out := head + "\n" + p.scrollNote(w) + "\n" + fitBlock(body, w, bodyH) + "\n" + fitBlock(p.form.View(), w, formH) + "\n" + p.helpLine(p.help()...)
	return fitBlock(out, w, h)
}
