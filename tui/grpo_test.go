package tui_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/charmbracelet/x/ansi"

	"whet/engine"
	"whet/engine/reward"
	"whet/tui"
	"whet/tui/fake"
)

// TestGoldenGRPOMethod renders the method page with GRPO chosen, folded
// and with its advanced settings open, at both sizes.
func TestGoldenGRPOMethod(t *testing.T) {
	for _, sz := range sizes {
		t.Run(fmt.Sprintf("%dx%d", sz.w, sz.h), func(t *testing.T) {
			d := newDriver(t, testOptions(&fake.Engine{}), sz.w, sz.h)
			shot := func(name string) {
				t.Helper()
				checkSize(t, d.view(), sz.w, sz.h)
				golden(t, fmt.Sprintf("wizard_%s_%dx%d", name, sz.w, sz.h), d.view())
			}
			d.keys("down", "down", "down", "enter")
			d.keys("right", "right", "right", "right") // grpo
			shot("2method_grpo")
			for i := 0; i < 12; i++ {
				d.keys("down")
			}
			d.keys("enter") // open the advanced section
			shot("2method_grpo_advanced")
		})
	}
}

// promptPreview is prompt-only data as the studio's previewer shows it for
// GRPO: rendered prompts, untrained, each with its answer.
var promptPreview = tui.DataPreview{
	Format: "prompt",
	Examples: [][]tui.Segment{
		{{Text: "<|user|>\nWhat is 7 times 6?\n<|assistant|>\n", Masked: true}},
		{{Text: "<|user|>\nWhat is the capital of Peru?\n<|assistant|>\n", Masked: true}},
		{{Text: "<|user|>\nHow many legs has a spider?\n<|assistant|>\n", Masked: true}},
	},
	Labels: []string{"answer: 42", "answer: Lima", "answer: 8"},
	Stats:  tui.DataStats{Rows: 500, Tokens: 9100, MeanLen: 18.2, MaxLen: 41},
}

// The data page with prompt-only data for GRPO says that the tokens are
// the prompts' (the answers are generated in training, so "N with loss"
// would read 0) and names each example's answer.
func TestGoldenGRPOData(t *testing.T) {
	for _, sz := range sizes {
		t.Run(fmt.Sprintf("%dx%d", sz.w, sz.h), func(t *testing.T) {
			o := testOptions(&fake.Engine{})
			o.Data = fake.Previewer{Preview0: promptPreview}
			d := newDriver(t, o, sz.w, sz.h)
			d.keys("enter", "right", "right", "right", "right") // method: grpo
			d.keys("enter", "enter")
			d.waitScreen("format prompt")
			s := d.screen()
			if !strings.Contains(s, "format prompt · 500 rows · 9.10k prompt tokens, answers generated in training") ||
				!strings.Contains(s, "example 1 of 3 · answer: 42") || strings.Contains(s, "with loss") {
				t.Errorf("the preview should count prompt tokens and name the answers:\n%s", s)
			}
			checkSize(t, d.view(), sz.w, sz.h)
			golden(t, fmt.Sprintf("wizard_3data_grpo_%dx%d", sz.w, sz.h), d.view())
			d.keys("enter")
			if !strings.Contains(d.screen(), "Run settings") {
				t.Errorf("prompt data should be accepted for GRPO:\n%s", d.screen())
			}
		})
	}
}

// grpoDriver is the studio at 80x24 with a prompt-only dataset previewed.
func grpoDriver(t *testing.T, eng *fake.Engine) *driver {
	o := testOptions(eng)
	pr := fake.DemoPreview
	pr.Format = "prompt"
	o.Data = fake.Previewer{Preview0: pr}
	return newDriver(t, o, 80, 24)
}

// TestGRPOFlow picks GRPO, a regex reward and fewer answers per prompt,
// refuses a bad pattern on the spot, and starts the run with those
// settings on prompt-only data.
func TestGRPOFlow(t *testing.T) {
	eng := &fake.Engine{Script: scriptSteps(2)}
	d := grpoDriver(t, eng)
	d.keys("enter")                            // model: the first entry
	d.keys("right", "right", "right", "right") // method: grpo
	if s := d.screen(); !strings.Contains(s, "GRPO: the model answers each prompt") || !strings.Contains(s, "exact_answer") {
		t.Fatalf("expected the GRPO method with its reward:\n%s", s)
	}
	d.keys("down", "down", "down", "down", "down") // the reward row
	d.keys("right", "right")                       // numeric_answer, regex
	if !strings.Contains(d.screen(), "‹ regex ›") {
		t.Fatalf("expected the regex reward:\n%s", d.screen())
	}
	d.keys("down") // its setting
	d.typeText("(")
	d.keys("enter")
	if s := d.screen(); !strings.Contains(s, "How should it learn?") || !strings.Contains(s, "Reward.pattern: error parsing regexp") {
		t.Fatalf("a bad pattern must be refused on the method page:\n%s", s)
	}
	d.keys("backspace")
	d.typeText(`\?\s*$`)
	d.keys("down") // answers per prompt
	d.keys("backspace")
	d.typeText("4")
	d.keys("enter")
	d.keys("enter") // data: preview the first file
	d.waitScreen("format prompt")
	d.keys("enter")
	d.keys("enter") // settings
	d.waitScreen("Fits:")
	d.keys("enter") // review
	d.keys("enter") // start
	d.waitScreen("step 2/")
	started := eng.Started()
	if len(started) != 1 {
		t.Fatalf("started %d runs", len(started))
	}
	g := started[0].GRPO
	if started[0].Method != "grpo" || g.NumGenerations != 4 || len(g.Rewards) != 1 ||
		g.Rewards[0].Type != "regex" || g.Rewards[0].Pattern != `\?\s*$` || g.LossType != "dapo" || g.Temperature != 1 {
		t.Errorf("started %+v", started[0])
	}
	if fns, _, err := reward.Build(g.Rewards); err != nil || fns[0].Name() != "regex" {
		t.Errorf("the studio's reward does not build: %v", err)
	}
}

// TestGRPONeedsPrompts: GRPO refuses a chat file, and a prompt-only file
// is refused for the other methods.
func TestGRPONeedsPrompts(t *testing.T) {
	d := newDriver(t, testOptions(&fake.Engine{}), 80, 24)
	d.keys("enter", "right", "right", "right", "right") // method: grpo
	d.keys("enter", "enter")
	d.waitScreen("format messages")
	d.keys("enter")
	if s := d.screen(); !strings.Contains(s, "GRPO needs prompt-only data") {
		t.Errorf("GRPO on a messages file should be refused:\n%s", s)
	}
	d = grpoDriver(t, &fake.Engine{})
	d.keys("enter", "enter", "enter") // lora
	d.waitScreen("format prompt")
	d.keys("enter")
	if s := d.screen(); !strings.Contains(s, "holds prompts without answers") {
		t.Errorf("LoRA on prompt-only data should be refused:\n%s", s)
	}
}

// grpoEvents is a fixed GRPO run: 40 steps of a rising reward with TRL's
// metrics and a sampled completion with its rewards.
func grpoEvents() []engine.Event {
	var evs []engine.Event
	for i := 1; i <= 40; i++ {
		r := 0.2 + 0.7*float64(i)/40
		evs = append(evs, engine.StepEvent{Step: i, TotalSteps: 100, Epoch: float64(i) / 50, Loss: 0.01 * float64((i*7)%5-2),
			LR: 1e-6, GradNorm: 0.2, Tokens: 4096, TokensPerSec: 2100, Elapsed: time.Duration(i) * time.Second,
			Metrics: map[string]float64{"reward": r + 0.5, "reward_std": 0.4, "rewards/regex/mean": r, "rewards/regex/std": 0.45,
				"rewards/length/mean": 0.5, "rewards/length/std": 0.1, "kl": 0.0021, "clip_ratio/region_mean": 0.013,
				"clip_ratio/low_mean": 0.004, "clip_ratio/high_mean": 0.009, "completions/mean_length": 41.5, "frac_reward_zero_std": 0.25}})
	}
	evs = append(evs, engine.SampleEvent{Step: 40, Prompt: "Why does bread rise?", Text: "Yeast eats sugar and breathes out gas. Would it rise in the cold?",
		Rewards: map[string]float64{"regex": 1, "length": 0.5, "reward": 1.5}})
	return evs
}

func TestGoldenGRPODashboard(t *testing.T) {
	run := engine.RunConfig{Name: "demo-grpo", Model: "qwen2.5-0.5b-instruct", Method: "grpo", RunsDir: "runs"}
	for _, sz := range sizes {
		v := tui.RenderDashboard(run, sz.w, sz.h, grpoEvents(), nil, nil)
		checkSize(t, v, sz.w, sz.h)
		golden(t, fmt.Sprintf("dashboard_grpo_%dx%d", sz.w, sz.h), v)
		for _, want := range []string{"reward    1.400 ±0.400", "· regex", "clipped   1.3% of tokens", "reward 1.5"} {
			if !strings.Contains(ansi.Strip(v), want) {
				t.Errorf("%dx%d: no %q in\n%s", sz.w, sz.h, want, v)
			}
		}
	}
}

// TestGRPOSettingsNeedWholeGroups: a step must hold whole groups of
// answers, so a micro batch that does not divide into them is refused on
// the settings page.
func TestGRPOSettingsNeedWholeGroups(t *testing.T) {
	d := grpoDriver(t, &fake.Engine{})
	d.keys("enter", "right", "right", "right", "right", "enter") // grpo, 8 answers per prompt
	d.keys("enter")
	d.waitScreen("format prompt")
	d.keys("enter")
	if !strings.Contains(d.screen(), "Micro-batch") {
		t.Fatalf("expected the settings page:\n%s", d.screen())
	}
	for i := 0; i < 8 && !strings.Contains(d.screen(), "› Micro-batch"); i++ {
		d.keys("down")
	}
	d.keys("backspace")
	d.typeText("3")
	d.keys("enter")
	if s := d.screen(); !strings.Contains(s, "= 3 answers a step: GRPO needs a multiple") {
		t.Errorf("a micro batch of 3 should be refused:\n%s", s)
	}
}

// A metric's label leaves a space before its value however long its name:
// the default reward's showed as "· exact_a…0.000" (label padded to 10
// cells, name cut to 10), and so did any other metric of 10 or more
// characters.
func TestGaugeLabelsKeepAGap(t *testing.T) {
	for _, c := range []struct {
		method  string
		metrics map[string]float64
		want    string
	}{
		{"grpo", map[string]float64{"reward": 0.25, "reward_std": 0.1, "rewards/exact_answer/mean": 0.25, "rewards/exact_answer/std": 0.1,
			"frac_reward_zero_std": 1}, "· exact_… 0.250 ±0.100"},
		{"lora", map[string]float64{"router_aux_loss": 0.5}, "router_a… 0.5"},
	} {
		run := engine.RunConfig{Name: "gap", Model: "qwen2.5-0.5b-instruct", Method: c.method, RunsDir: "runs"}
		evs := []engine.Event{engine.StepEvent{Step: 1, TotalSteps: 10, Loss: 1, LR: 1e-6, Tokens: 100, TokensPerSec: 10,
			Elapsed: time.Second, Metrics: c.metrics}}
		for _, sz := range sizes {
			v := ansi.Strip(tui.RenderDashboard(run, sz.w, sz.h, evs, nil, nil))
			if !strings.Contains(v, c.want) {
				t.Errorf("%s %dx%d: no %q in\n%s", c.method, sz.w, sz.h, c.want, v)
			}
		}
	}
}
