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
	d := newDriver(t, o, 80, 24)
	startDefaultRun(t, d)
	d.waitScreen("✓ finished")
	return d
}

func TestChatAsksBaseAndTunedSideBySide(t *testing.T) {
	o := testOptions(&fake.Engine{Script: scriptSteps(3)})
	ch := testChat()
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
	d.typeText("What is a compiler?")
	d.keys("enter")
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
		if r.Turns[0].Role != "system" || r.Turns[0].Content != "Be brief." {
			t.Errorf("the system prompt should lead the turns: %+v", r.Turns)
		}
		if r.Opts.Temperature != 0 || r.Opts.MaxNewTokens != 256 || r.Opts.TopP != 0.9 {
			t.Errorf("sampling options = %+v, want temperature 0, top-p 0.9, 256 tokens", r.Opts)
		}
	}

	// A second question carries each side's own history.
	d.typeText("And an interpreter?")
	d.keys("enter")
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
		o := testOptions(&fake.Engine{Script: scriptSteps(2)})
		o.Chat = testChat()
		d := newDriver(t, o, sz.w, sz.h)
		startDefaultRun(t, d)
		d.waitScreen("✓ finished")
		d.keys("t")
		d.waitScreen("Ask both")
		d.typeText("Why do leaves fall?")
		d.keys("enter")
		d.waitFor("both answers", func() bool { return strings.Count(d.screen(), "tok/s") == 2 })
		checkSize(t, d.view(), sz.w, sz.h)
		golden(t, fmt.Sprintf("chat_%dx%d", sz.w, sz.h), d.view())
	}
}

func TestChatEscStopsAnAnswer(t *testing.T) {
	o := testOptions(&fake.Engine{Script: scriptSteps(2)})
	ch := testChat()
	ch.Tuned = func(string) string { return strings.Repeat("word ", 500) }
	ch.Delay = 5 * time.Millisecond
	o.Chat = ch
	d := finishRun(t, o)
	d.keys("t")
	d.waitScreen("Ask both")
	d.typeText("Talk for a long time")
	d.keys("enter")
	d.waitScreen("answering…")
	d.waitFor("the tuned answer to start", func() bool { return len(ch.Recorded()) == 2 })
	d.keys("esc")
	d.waitScreen("stopped by you")
	if !strings.Contains(d.screen(), "Ask both") {
		t.Errorf("after stopping an answer the chat stays open:\n%s", d.screen())
	}
	d.typeText("Short one")
	d.keys("enter")
	d.waitFor("a new question after a stopped answer", func() bool { return len(ch.Recorded()) >= 3 })
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
				d.typeText(q)
				d.keys("enter")
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
