package tui_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"whet/tui"
	"whet/tui/fake"
)

func testChat() *fake.Chat {
	return &fake.Chat{
		Base:  func(p string) string { return "Base answer to: " + p },
		Tuned: func(p string) string { return "Like a lighthouse guiding ships. What guides you?" },
	}
}

// finishRun starts the default run with a short script and waits for the
// summary.
func finishRun(t *testing.T, o tui.Options) *driver {
	t.Helper()
	return finishRunSized(t, o, 80, 24)
}

// finishRunSized is finishRun on a w×h screen.
func finishRunSized(t *testing.T, o tui.Options, w, h int) *driver {
	t.Helper()
	d := newDriver(t, o, w, h)
	startDefaultRun(t, d)
	d.waitScreen("✓ finished")
	return d
}

// openChat finishes a two-step run on a w×h screen with ch as the studio's
// chat and opens the chat page from the summary.
func openChat(t *testing.T, ch *fake.Chat, w, h int) *driver {
	t.Helper()
	o := testOptions(&fake.Engine{Script: scriptSteps(2)})
	o.Chat = ch
	d := finishRunSized(t, o, w, h)
	d.keys("t")
	d.waitScreen("Ask both")
	return d
}

// submit types s into the chat's prompt and presses enter.
func (d *driver) submit(s string) {
	d.typeText(s)
	d.keys("enter")
}

// TestChatAsksBaseAndTunedSideBySide: both models answer the question,
// each side with its own history; a session that can answers both at once
// (one GenerateBoth), another the base first and then the tuned model.
func TestChatAsksBaseAndTunedSideBySide(t *testing.T) {
	for _, oneAtATime := range []bool{false, true} {
		t.Run(map[bool]string{false: "together", true: "one at a time"}[oneAtATime], func(t *testing.T) {
			testChatSideBySide(t, oneAtATime)
		})
	}
}

func testChatSideBySide(t *testing.T, oneAtATime bool) {
	o := testOptions(&fake.Engine{Script: scriptSteps(3)})
	ch := testChat()
	ch.OneAtATime = oneAtATime
	o.Chat = ch
	d := finishRun(t, o)
	if !strings.Contains(d.screen(), "t chat: base vs tuned") {
		t.Fatalf("the summary should offer the chat:\n%s", d.screen())
	}
	d.keys("t")
	d.waitScreen("Ask both")

	// Open the settings: a system prompt and greedy decoding.
	d.keys("down", "enter", "down")
	d.typeText("Be brief.")
	d.keys("down", "ctrl+u")
	d.typeText("0")
	d.keys("up", "up", "up") // back to the prompt
	d.submit("What is a compiler?")
	d.waitFor("both answers", func() bool { return strings.Count(d.screen(), "tok/s") == 2 })

	s := d.screen()
	for _, want := range []string{"base model", "tuned (this run)", "Base answer to: What is a compiler?", "lighthouse", "you › What is a compiler?"} {
		if !strings.Contains(s, want) {
			t.Errorf("chat page lacks %q:\n%s", want, s)
		}
	}
	reqs := ch.Recorded()
	if len(reqs) != 2 || reqs[0].Tuned || !reqs[1].Tuned {
		t.Fatalf("want one base then one tuned request, got %+v", reqs)
	}
	for _, r := range reqs {
		if r.Together == oneAtATime {
			t.Errorf("request %+v: asked together = %v, want %v", r, r.Together, !oneAtATime)
		}
		if r.Turns[0].Role != "system" || r.Turns[0].Content != "Be brief." {
			t.Errorf("the system prompt should lead the turns: %+v", r.Turns)
		}
		if r.Opts.Temperature != 0 || r.Opts.MaxNewTokens != 256 || r.Opts.TopP != 0.9 {
			t.Errorf("sampling options = %+v, want temperature 0, top-p 0.9, 256 tokens", r.Opts)
		}
	}

	// A second question carries each side's own history.
	d.submit("And an interpreter?")
	d.waitFor("the second answers", func() bool {
		return len(ch.Recorded()) == 4 && strings.Count(d.screen(), "tok/s") == 2 && !strings.Contains(d.screen(), "answering")
	})
	tunedReq := ch.Recorded()[3]
	if n := len(tunedReq.Turns); n != 4 || !strings.Contains(tunedReq.Turns[2].Content, "lighthouse") {
		t.Errorf("the tuned side's history should hold its own answer: %+v", tunedReq.Turns)
	}
	checkSize(t, d.view(), 80, 24)

	d.keys("esc")
	if !strings.Contains(d.screen(), "✓ finished") {
		t.Errorf("esc should go back to the summary:\n%s", d.screen())
	}
}

func TestChatOpenErrorIsShown(t *testing.T) {
	o := testOptions(&fake.Engine{Script: scriptSteps(2)})
	o.Chat = &fake.Chat{OpenErr: fmt.Errorf("runs/x/adapter: adapter_config.json missing")}
	d := finishRun(t, o)
	d.keys("t")
	d.waitScreen("could not open the models: runs/x/adapter: adapter_config.json missing")
}

func TestGoldenChat(t *testing.T) {
	for _, sz := range sizes {
		d := openChat(t, testChat(), sz.w, sz.h)
		d.submit("Why do leaves fall?")
		d.waitFor("both answers", func() bool { return strings.Count(d.screen(), "tok/s") == 2 })
		checkSize(t, d.view(), sz.w, sz.h)
		golden(t, fmt.Sprintf("chat_%dx%d", sz.w, sz.h), d.view())
	}
}

// TestChatEscStopsAnAnswer: esc stops the answers under way, and the
// chat takes a new question afterwards. Asked together, both sides stop
// (the base's short answer has ended already and keeps its numbers; the
// tuned one says it was stopped); one at a time, esc during the base's
// answer stops it and the tuned model is not asked, and esc during the
// tuned answer stops that one.
func TestChatEscStopsAnAnswer(t *testing.T) {
	long := strings.Repeat("word ", 500)
	t.Run("together", func(t *testing.T) {
		ch := testChat()
		ch.Base = func(string) string { return "A short one." }
		ch.Tuned = func(string) string { return long }
		ch.HoldAfter = 8
		d := openChat(t, ch, 80, 24)
		d.submit("Talk for a long time")
		d.waitFor("the tuned answer to reach its hold", func() bool {
			return strings.Count(d.screen(), "word") == 8 && strings.Contains(d.screen(), "3 tokens · 42.0 tok/s · eos")
		})
		if !strings.Contains(d.screen(), "esc stop the answer") {
			t.Errorf("while only the tuned side answers, esc stops the answer:\n%s", d.screen())
		}
		d.keys("esc")
		d.waitScreen("stopped by you")
		s := d.screen()
		if strings.Count(s, "stopped by you") != 1 || !strings.Contains(s, "3 tokens · 42.0 tok/s · eos") || strings.Contains(s, "answering") || !strings.Contains(s, "Ask both") {
			t.Errorf("after esc the tuned side is stopped, the base keeps its numbers, the chat stays open:\n%s", s)
		}
		d.submit("Short one")
		d.waitFor("a new question after a stopped answer", func() bool { return len(ch.Recorded()) == 4 })
	})
	t.Run("together, both under way", func(t *testing.T) {
		ch := testChat()
		ch.CancelAsStop = true
		ch.Base = func(string) string { return long }
		ch.Tuned = func(string) string { return long }
		ch.HoldAfter = 4
		d := openChat(t, ch, 80, 24)
		d.submit("Talk")
		d.waitFor("both answers to reach their hold", func() bool { return strings.Count(d.screen(), "word") == 8 })
		if strings.Count(d.screen(), "answering…") != 2 || !strings.Contains(d.screen(), "esc stop both answers") {
			t.Errorf("both sides should be answering, esc stopping both:\n%s", d.screen())
		}
		d.keys("esc")
		d.waitFor("both sides to stop", func() bool { return strings.Count(d.screen(), "stopped by you") == 2 })
		if got := len(ch.Recorded()); got != 2 {
			t.Errorf("esc should ask nothing more: %d requests", got)
		}
	})
	t.Run("one at a time", func(t *testing.T) {
		ch := testChat()
		ch.OneAtATime = true
		ch.CancelAsStop = true // as the engine's chat ends a cancelled answer
		ch.Base = func(string) string { return long }
		ch.Tuned = func(string) string { return long }
		ch.HoldAfter = 4
		d := openChat(t, ch, 80, 24)
		d.submit("Talk")
		d.waitScreen("answering…")
		d.keys("esc")
		d.waitScreen("stopped by you")
		if reqs := ch.Recorded(); len(reqs) != 1 || strings.Contains(d.screen(), "answering") {
			t.Fatalf("esc during the base's answer should stop the question, not ask the tuned model: %+v\n%s", reqs, d.screen())
		}
		ch.Base = func(string) string { return "Short." }
		d.submit("Again")
		d.waitFor("the tuned answer to start", func() bool { return len(ch.Recorded()) == 3 && strings.Contains(d.screen(), "answering…") })
		d.keys("esc")
		d.waitFor("the tuned answer to stop", func() bool { return !strings.Contains(d.screen(), "answering") })
		if s := d.screen(); !strings.Contains(s, "1 token · 42.0 tok/s · eos") || !strings.Contains(s, "stopped by you") || len(ch.Recorded()) != 3 {
			t.Errorf("the base's answer keeps its numbers and the tuned one is stopped:\n%s", s)
		}
	})
}

// TestChatStreamsBothAtOnce: asked together, both answers grow in their
// columns at the same time; a side that ends first shows its numbers
// while the other still answers (golden views of that moment).
func TestChatStreamsBothAtOnce(t *testing.T) {
	for _, sz := range sizes {
		t.Run(fmt.Sprintf("%dx%d", sz.w, sz.h), func(t *testing.T) {
			ch := testChat()
			ch.Base = func(string) string { return "Gravity and the seasons." }
			ch.Tuned = func(string) string {
				return "A tree lets go of what it cannot feed through the winter, so that it can grow again in spring. What would you let go of?"
			}
			ch.HoldAfter = 12 // words: "A tree … through the winter,"
			ch.Delay = 2 * time.Millisecond
			d := openChat(t, ch, sz.w, sz.h)
			d.submit("Why do leaves fall?")
			// Midway both columns have pieces and both are answering.
			d.waitFor("both answers midway", func() bool {
				s := d.screen()
				return strings.Contains(s, "Gravity and") && strings.Contains(s, "A tree lets") && strings.Count(s, "answering…") == 2
			})
			d.waitFor("the base to end while the tuned answer goes on", func() bool {
				s := d.screen()
				return strings.Contains(s, "4 tokens · 42.0 tok/s · eos") && strings.Contains(s, "the winter,") && strings.Count(s, "answering…") == 1
			})
			checkSize(t, d.view(), sz.w, sz.h)
			golden(t, fmt.Sprintf("chat_streaming_%dx%d", sz.w, sz.h), d.view())
			d.keys("esc")
			d.waitScreen("stopped by you")
		})
	}
}

// TestChatQuitWaitsForTheAnswer: ctrl+c while both models answer stops
// the answer, and the studio frees the models only once the generation
// has let go of them.
func TestChatQuitWaitsForTheAnswer(t *testing.T) {
	for _, oneAtATime := range []bool{false, true} {
		ch := testChat()
		ch.OneAtATime = oneAtATime
		ch.Tuned = func(string) string { return strings.Repeat("word ", 50) }
		ch.Base = ch.Tuned
		ch.HoldAfter = 3
		d := openChat(t, ch, 80, 24)
		d.submit("Talk")
		d.waitFor("the answer to reach its hold", func() bool { return strings.Count(d.screen(), "word") >= 3 })
		d.keys("ctrl+c")
		d.waitFor("ctrl+c to quit", func() bool { return d.quit })
		done := make(chan struct{})
		go func() { d.m.Close(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Fatal("closing the studio did not end the answer")
		}
		if closed, live := ch.Closed(); closed != 1 || live != 0 {
			t.Errorf("one at a time %v: %d sessions closed, %d of them while an answer ran", oneAtATime, closed, live)
		}
	}
}

// The two columns keep their place whatever the answers' lengths: the
// separator stands in the same cell column on every row, and each question
// stands on the same row on both sides.
func TestChatColumnsStayAligned(t *testing.T) {
	for _, sz := range sizes {
		t.Run(fmt.Sprintf("%dx%d", sz.w, sz.h), func(t *testing.T) {
			o := testOptions(&fake.Engine{Script: scriptSteps(2)})
			o.Chat = &fake.Chat{
				Base: func(p string) string {
					if strings.HasPrefix(p, "First") {
						return "A long base answer that goes on and on about leaves, trees, autumn light, chlorophyll, abscission layers and the wind, far wider than one column."
					}
					return "Short."
				},
				Tuned: func(p string) string {
					if strings.HasPrefix(p, "First") {
						return "Brief."
					}
					return "Now the tuned model is the long one: a river that keeps running past the edge of its column and on into the next line, and the next."
				},
			}
			d := finishRun(t, o)
			d.send(windowSize(sz.w, sz.h))
			d.keys("t")
			d.waitScreen("Ask both")
			for i, q := range []string{"First question?", "Second question?"} {
				d.submit(q)
				d.waitFor("both answers", func() bool {
					return len(o.Chat.(*fake.Chat).Recorded()) == 2*(i+1) && strings.Count(d.screen(), "tok/s") == 2
				})
			}
			checkSize(t, d.view(), sz.w, sz.h)
			golden(t, fmt.Sprintf("chat_uneven_%dx%d", sz.w, sz.h), d.view())

			lines := strings.Split(d.screen(), "\n")
			sepCol := (sz.w-3)/2 + 1
			for i, l := range lines[2 : len(lines)-5] { // the columns' rows, between the head and the prompt form
				if r := []rune(l); len(r) <= sepCol || r[sepCol] != '│' {
					t.Errorf("row %d: the separator is not at column %d: %q", i+3, sepCol, l)
				}
			}
			for _, q := range []string{"you › First question?", "you › Second question?"} {
				found := false
				for _, l := range lines {
					if strings.Count(l, q) == 2 {
						found = true
					}
				}
				if !found {
					t.Errorf("%q should stand on one row in both columns:\n%s", q, d.screen())
				}
			}
		})
	}
}

// chatFromRuns opens the finished run old-done from the runs page and its
// chat, whose models load until gate is closed.
func chatFromRuns(t *testing.T, gate chan struct{}) (*driver, *fake.Chat) {
	t.Helper()
	o := testOptions(&fake.Engine{})
	o.Runs = scriptedRuns()
	ch := testChat()
	ch.OpenGate = gate
	o.Chat = ch
	d := newDriver(t, o, 80, 24)
	d.keys("r")
	d.waitScreen("persona-lora")
	d.keys("down", "enter") // old-done
	d.waitScreen("20 of 20 steps")
	d.keys("t")
	d.waitScreen("loading the base model")
	return d, ch
}

// TestChatLoadedAfterLeavingIsClosed: models that finish loading after
// the user went back to the runs list (which closes the run's pages), or
// quit, are freed at once and never shown.
func TestChatLoadedAfterLeavingIsClosed(t *testing.T) {
	t.Run("back to the runs list", func(t *testing.T) {
		gate := make(chan struct{})
		d, ch := chatFromRuns(t, gate)
		d.keys("esc") // the summary
		d.waitScreen("20 of 20 steps")
		d.keys("esc") // the runs list
		d.waitScreen("Runs in ./runs")
		close(gate)
		poll(t, "the late session to be closed", func() bool { c, _ := ch.Closed(); return c == 1 })
		// Whatever still arrives (nothing should) leaves the runs list be.
		select {
		case msg := <-d.msgs:
			d.send(msg)
		case <-time.After(50 * time.Millisecond):
		}
		if s := d.screen(); !strings.Contains(s, "Runs in ./runs") || strings.Contains(s, "Ask both") {
			t.Errorf("the late session should not be shown:\n%s", s)
		}
		if ch.Opens() != 1 {
			t.Errorf("%d sessions opened, want 1", ch.Opens())
		}
		// A chat opened again on the same run loads afresh and works.
		d.keys("enter") // old-done again: the list keeps its place
		d.waitScreen("20 of 20 steps")
		d.keys("t")
		d.waitScreen("Ask both")
		d.submit("Hello")
		d.waitFor("both answers", func() bool { return strings.Count(d.screen(), "tok/s") == 2 })
		if c, _ := ch.Closed(); c != 1 || ch.Opens() != 2 {
			t.Errorf("opens %d closed %d, want 2 and 1", ch.Opens(), c)
		}
	})
	t.Run("quit while loading", func(t *testing.T) {
		gate := make(chan struct{})
		d, ch := chatFromRuns(t, gate)
		d.keys("ctrl+c")
		d.waitFor("ctrl+c to quit", func() bool { return d.quit })
		d.m.Close()
		close(gate)
		poll(t, "the late session to be closed", func() bool { c, _ := ch.Closed(); return c == 1 })
	})
}

// TestChatLoadsOnWhileOnTheSummary: esc back to the summary while the
// models load does not lose them: they are in when the user comes back
// (not loading forever), a question typed meanwhile is not asked behind
// the user's back but stays in the prompt, and leaving the run frees them.
func TestChatLoadsOnWhileOnTheSummary(t *testing.T) {
	gate := make(chan struct{})
	d, ch := chatFromRuns(t, gate)
	d.submit("Asked meanwhile")
	d.waitScreen("your question is asked once they are in")
	d.keys("esc")
	d.waitScreen("20 of 20 steps")
	close(gate)
	poll(t, "the session to open", func() bool { return ch.Opens() == 1 })
	d.waitFor("the loaded session to reach its page", func() bool {
		select {
		case msg := <-d.msgs:
			d.send(msg)
			return true
		case <-time.After(time.Second):
			return false
		}
	})
	d.keys("t")
	d.waitScreen("Ask both")
	if s := d.screen(); strings.Contains(s, "loading") || !strings.Contains(s, "Asked meanwhile") || len(ch.Recorded()) != 0 {
		t.Fatalf("back on the chat the models are in, the question waits in the prompt, nothing asked (%d requests):\n%s", len(ch.Recorded()), s)
	}
	d.keys("enter")
	d.waitFor("both answers", func() bool { return strings.Count(d.screen(), "tok/s") == 2 })
	d.keys("esc")
	d.waitScreen("20 of 20 steps")
	d.keys("esc")
	d.waitScreen("Runs in ./runs")
	if c, _ := ch.Closed(); c != 1 || ch.Opens() != 1 {
		t.Errorf("opens %d closed %d, want 1 and 1", ch.Opens(), c)
	}
}

// numbered is "w1 w2 … wn".
func numbered(n int) string {
	var b strings.Builder
	for i := 1; i <= n; i++ {
		fmt.Fprintf(&b, "w%d ", i)
	}
	return strings.TrimSpace(b.String())
}

// transcript is the screen's conversation rows: between the scroll line
// and the form (whose last five rows stand under it).
func transcript(screen string) string {
	lines := strings.Split(screen, "\n")
	return strings.Join(lines[2:len(lines)-5], "\n")
}

// TestChatTranscriptScrolls: a long base answer that pushes the tuned
// reply and the first question off the screen can be scrolled back with
// pgup, both columns together (the tuned reply beside the base answer to
// the same question), with a line that says how much is hidden; pgdn
// comes back to the newest lines.
func TestChatTranscriptScrolls(t *testing.T) {
	for _, sz := range sizes {
		t.Run(fmt.Sprintf("%dx%d", sz.w, sz.h), func(t *testing.T) {
			ch := &fake.Chat{
				Base: func(p string) string {
					if strings.HasPrefix(p, "First") {
						return "Short."
					}
					return numbered(sz.w * sz.h / 6)
				},
				Tuned: func(p string) string {
					if strings.HasPrefix(p, "First") {
						return "Brief."
					}
					return "The tuned reply stands here."
				},
			}
			d := openChat(t, ch, sz.w, sz.h)
			for i, q := range []string{"First question?", "Second question?"} {
				d.submit(q)
				d.waitFor("both answers", func() bool {
					return len(ch.Recorded()) == 2*(i+1) && strings.Count(d.screen(), "tok/s") == 2
				})
			}
			s := d.screen()
			last := fmt.Sprintf("w%d", sz.w*sz.h/6)
			if !strings.Contains(s, last) || strings.Contains(s, "tuned reply") || !strings.Contains(s, "earlier lines · pgup to scroll back") || !strings.Contains(s, "pgup/pgdn scroll") {
				t.Fatalf("at the bottom: the newest lines, the hidden ones counted, pgup offered:\n%s", s)
			}
			d.keys("pgup")
			for i := 0; i < 20 && !strings.Contains(d.screen(), "tuned reply"); i++ {
				d.keys("pgup")
			}
			s = d.screen()
			if !strings.Contains(s, "tuned reply") || !strings.Contains(s, "newer lines below · pgdn") || strings.Contains(s, last) {
				t.Fatalf("pgup should reach the tuned reply and say what is below:\n%s", s)
			}
			// The tuned reply stands beside the start of the base answer.
			for _, l := range strings.Split(s, "\n") {
				if strings.Contains(l, "The tuned reply") && !strings.Contains(l, "w1 w2") {
					t.Errorf("the columns should scroll together, the replies side by side: %q", l)
				}
			}
			checkSize(t, d.view(), sz.w, sz.h)
			golden(t, fmt.Sprintf("chat_scrolled_%dx%d", sz.w, sz.h), d.view())
			for i := 0; i < 20 && !strings.Contains(d.screen(), "you › First question?"); i++ {
				d.keys("pgup")
			}
			if s := d.screen(); !strings.Contains(s, "you › First question?") || !strings.Contains(s, "below · pgdn to scroll on\n") {
				t.Fatalf("pgup should reach the first question:\n%s", s)
			}
			d.keys("pgup") // at the top: stays
			if s := d.screen(); !strings.Contains(s, "you › First question?") {
				t.Fatalf("pgup at the top moved the view:\n%s", s)
			}
			for i := 0; i < 20 && strings.Contains(d.screen(), "below"); i++ {
				d.keys("pgdown")
			}
			if s := d.screen(); !strings.Contains(s, last) || strings.Contains(s, "below") {
				t.Errorf("pgdn should come back to the newest lines:\n%s", s)
			}
		})
	}
}

// TestChatScrollWhileStreaming: while an answer streams the view follows
// its newest words; scrolled back it stays where the user put it however
// much streams below, until pgdn reaches the bottom and it follows again;
// esc still stops the answer.
func TestChatScrollWhileStreaming(t *testing.T) {
	ch := testChat()
	ch.Base = func(string) string { return "Short." }
	ch.Tuned = func(string) string { return numbered(400) }
	ch.Delay = 2 * time.Millisecond
	ch.HoldAfter = 300
	ch.CancelAsStop = true
	d := openChat(t, ch, 80, 24)
	d.submit("Count")
	d.waitScreen("w150 ") // followed to the newest words
	d.keys("pgup")
	below := func() int {
		var n int
		for _, l := range strings.Split(d.screen(), "\n") {
			if i := strings.Index(l, "↓ "); i >= 0 {
				fmt.Sscanf(l[i+len("↓ "):], "%d", &n)
			}
		}
		return n
	}
	rows, b := transcript(d.screen()), below()
	if b == 0 || !strings.Contains(d.screen(), "still answering") {
		t.Fatalf("scrolled back while answering, the line says so:\n%s", d.screen())
	}
	d.waitFor("more of the answer below", func() bool { return below() >= b+3 })
	if got := transcript(d.screen()); got != rows {
		t.Errorf("the scrolled view moved as the answer streamed:\n--- before ---\n%s\n--- after ---\n%s", rows, got)
	}
	for i := 0; i < 40 && below() > 0; i++ {
		d.keys("pgdown")
	}
	d.waitScreen("w300 ▍") // following again, to the hold
	if strings.Contains(d.screen(), "below") {
		t.Errorf("at the bottom nothing is below:\n%s", d.screen())
	}
	d.keys("esc")
	d.waitScreen("stopped by you")
	checkSize(t, d.view(), 80, 24)
}

// TestChatOneModelScrolls: a full fine-tune's chat (one model, one
// column) scrolls as the side-by-side does.
func TestChatOneModelScrolls(t *testing.T) {
	ch := testChat()
	ch.NoTuned = true
	ch.Base = func(string) string { return numbered(400) }
	d := openChat(t, ch, 80, 24)
	d.submit("Count")
	d.waitScreen("400 tokens")
	if s := d.screen(); strings.Contains(s, "you › Count") || !strings.Contains(s, "w400") || !strings.Contains(s, "pgup to scroll back") {
		t.Fatalf("at the bottom the question is off the screen, the newest words on it:\n%s", s)
	}
	for i := 0; i < 10 && !strings.Contains(d.screen(), "you › Count"); i++ {
		d.keys("pgup")
	}
	if s := d.screen(); !strings.Contains(s, "you › Count") || !strings.Contains(s, "newer lines below") || strings.Contains(s, "w400") {
		t.Errorf("pgup should reach the question:\n%s", s)
	}
	checkSize(t, d.view(), 80, 24)
}

// Counts say "1 token" and "1 row", not "1 tokens" and "1 rows" (seen in
// tmux: a one-row dataset, a one-token answer).
func TestOneIsSingular(t *testing.T) {
	o := testOptions(&fake.Engine{Script: scriptSteps(2)})
	pv := fake.DemoPreview
	pv.Stats.Rows, pv.Stats.Truncated = 1, 1
	o.Data = fake.Previewer{Preview0: pv}
	ch := &fake.Chat{Base: func(string) string { return "Hi." }, Tuned: func(string) string { return "Hello there." }}
	o.Chat = ch
	d := newDriver(t, o, 80, 24)
	d.keys("enter", "enter", "enter")
	d.waitScreen("format messages")
	if s := d.screen(); !strings.Contains(s, "format messages · 1 row ·") || !strings.Contains(s, "1 row longer than max length") {
		t.Errorf("one row should be said so:\n%s", s)
	}
	d.keys("enter", "enter")
	d.waitScreen("Fits:")
	d.keys("enter", "enter")
	d.waitScreen("✓ finished")
	d.keys("t")
	d.waitScreen("Ask both")
	d.submit("Hi?")
	d.waitScreen("2 tokens ·")
	if s := d.screen(); !strings.Contains(s, "1 token ·") {
		t.Errorf("a one-token answer should say 1 token:\n%s", s)
	}
}
