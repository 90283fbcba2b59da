package tui_test

import (
	"fmt"
	"reflect"
	"testing"

	"whet/engine"
	"whet/tui"
	"whet/tui/fake"
)

// demoPath is the model folder the tests' demo entry points at.
const demoPath = "testdata/models/acme/tiny-llama"

// demoPresets behave like the studio's: the demo model's LoRA defaults
// come from its run file, which carries a sample prompt; other methods and
// models have none.
type demoPresets struct{}

func (demoPresets) Defaults(model, method string) (engine.RunConfig, error) {
	c, err := zeroSamplePresets{}.Defaults(model, method)
	if model == demoPath && method == "lora" {
		c.Train.SamplePrompts = []string{"Why does bread rise?"}
		c.Train.SampleEvery = 15
		c.Train.SampleTokens = 48
	}
	return c, err
}

func demoOptions(eng tui.Engine) tui.Options {
	o := testOptions(eng)
	o.Presets = demoPresets{}
	o.Catalog = fake.Catalog{
		{Name: "whet-demo", Path: demoPath, Dataset: "testdata/datasets/persona.jsonl", Template: "chatml"},
		{Name: "qwen2.5-0.5b-instruct", Repo: "Qwen/Qwen2.5-0.5B-Instruct", Params: 494_000_000, Template: "qwen2"},
	}
	return o
}

// The demo's run file names a sample prompt: the wizard keeps it, so the
// run generates samples (and writes samples.jsonl) without the user
// knowing the field exists.
func TestDemoSamplePromptReachesTheRun(t *testing.T) {
	for _, sz := range sizes {
		t.Run(fmt.Sprintf("%dx%d", sz.w, sz.h), func(t *testing.T) {
			eng := &fake.Engine{Script: scriptSteps(2)}
			d := newDriver(t, demoOptions(eng), sz.w, sz.h)
			d.keys("enter", "enter") // the demo, its LoRA defaults
			d.waitScreen("format messages")
			d.keys("enter")
			if got := fieldValue(d.screen(), "Sample prompts"); got != "Why does bread rise?" {
				t.Errorf("the settings page should show the demo's prompt, shows %q:\n%s", got, d.screen())
			}
			checkSize(t, d.view(), sz.w, sz.h)
			golden(t, fmt.Sprintf("wizard_4settings_demo_%dx%d", sz.w, sz.h), d.view())
			d.keys("enter")
			d.waitScreen("Fits:")
			d.keys("enter", "enter")
			d.waitFor("the engine to start", func() bool { return len(eng.Started()) == 1 })
			got := eng.Started()[0].Train
			if !reflect.DeepEqual(got.SamplePrompts, []string{"Why does bread rise?"}) || got.SampleEvery != 15 || got.SampleTokens != 48 {
				t.Errorf("the run should sample the demo's prompt every 15 steps (48 tokens), got %q every %d (%d tokens)", got.SamplePrompts, got.SampleEvery, got.SampleTokens)
			}
		})
	}
}

// Prompts that came with defaults go when other defaults replace them;
// prompts the user typed stay.
func TestSamplePromptsFollowDefaultsUnlessTyped(t *testing.T) {
	d := newDriver(t, demoOptions(&fake.Engine{}), 80, 24)
	d.keys("enter", "right") // the demo, then qlora: no prompt in its defaults
	d.keys("enter")
	d.waitScreen("format messages")
	d.keys("enter")
	if got := fieldValue(d.screen(), "Sample prompts"); got != "" {
		t.Errorf("qlora's defaults have no prompt; the field shows %q", got)
	}
	// Back on the data page the file is read again (the settings page
	// changed the data settings); esc while it reads would stop the read,
	// so the preview comes first.
	d.keys("esc")
	d.waitScreen("format messages")
	d.keys("esc", "left") // back to lora
	if got := d.m.Config().Train.SamplePrompts; !reflect.DeepEqual(got, []string{"Why does bread rise?"}) {
		t.Errorf("lora's defaults bring the demo's prompt back, config has %q", got)
	}
	d.keys("enter")
	d.waitScreen("format messages")
	d.keys("enter")
	for i := 0; i < 8; i++ { // from the run name to the prompts
		d.keys("down")
	}
	d.keys("ctrl+u")
	d.typeText("My own prompt")
	d.keys("esc", "esc", "right") // back from settings and data; qlora again
	if got := d.m.Config().Train.SamplePrompts; !reflect.DeepEqual(got, []string{"My own prompt"}) {
		t.Errorf("a typed prompt must survive a change of method, config has %q", got)
	}
}
