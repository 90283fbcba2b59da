package tui_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"whet/engine"
	"whet/tui"
	"whet/tui/fake"
)

// startDefaultRun walks the wizard with the defaults and starts the run.
func startDefaultRun(t *testing.T, d *driver) {
	t.Helper()
	d.keys("enter")                 // model: the first catalog entry
	d.keys("enter")                 // method: lora defaults
	d.keys("enter")                 // data: preview the first file
	d.waitScreen("format messages") //
	d.keys("enter")                 // data: next
	d.keys("enter")                 // settings
	d.waitScreen("Fits:")           // fit check answered
	d.keys("enter")                 // review
	d.keys("enter")                 // start
}

func TestWizardStartsRunWithChosenConfig(t *testing.T) {
	eng := &fake.Engine{Script: scriptSteps(3)}
	d := newDriver(t, testOptions(eng), 80, 24)
	if !strings.Contains(d.screen(), "Choose the base model") || !strings.Contains(d.screen(), "qwen2.5-0.5b-instruct") {
		t.Fatalf("first screen should offer the base models:\n%s", d.screen())
	}

	d.keys("down", "down", "down", "enter") // past the two local folders to qwen2.5-0.5b-instruct
	if !strings.Contains(d.screen(), "How should it learn?") {
		t.Fatalf("expected the method page:\n%s", d.screen())
	}
	d.keys("right") // qlora: loads its defaults
	d.keys("down", "backspace", "backspace")
	d.typeText("32")
	d.keys("enter")

	d.keys("down") // recipes.csv
	d.keys("enter")
	d.waitScreen("format messages")
	d.keys("enter")

	d.keys("ctrl+u")
	d.typeText("my-run")
	d.keys("down", "right") // length in steps
	d.keys("down", "ctrl+u")
	d.typeText("120")
	d.keys("down", "ctrl+u") // learning rate
	d.typeText("0.0003")
	d.keys("down", "down", "down", "down", "down") // to sample prompts
	d.typeText("Hello there | What is 2+2?")
	d.keys("enter")

	d.waitScreen("Fits:")
	if !strings.Contains(d.screen(), "Turn on activation checkpointing") {
		t.Fatalf("expected the checkpointing advice:\n%s", d.screen())
	}
	d.keys("1")
	d.waitFor("re-check after advice", func() bool {
		s := d.screen()
		return strings.Contains(s, "applied: Turn on activation checkpointing") && strings.Contains(s, "Fits:")
	})
	d.keys("enter")
	if s := d.screen(); !strings.Contains(s, "method: qlora") || !strings.Contains(s, "name: my-run") {
		t.Fatalf("review should show the YAML:\n%s", s)
	}
	d.keys("enter")
	d.waitFor("the engine to start", func() bool { return len(eng.Started()) == 1 })

	got := eng.Started()[0]
	checks := []struct {
		field     string
		got, want any
	}{
		{"Name", got.Name, "my-run"},
		{"Model", got.Model, "qwen2.5-0.5b-instruct"},
		{"Method", got.Method, "qlora"},
		{"LoRA.Rank", got.LoRA.Rank, 32},
		{"LoRA.TargetModules", got.LoRA.TargetModules, []string{"q", "k", "v", "o", "gate", "up", "down"}},
		{"Data.Path", got.Data.Path, "testdata/datasets/recipes.csv"},
		{"Data.Template", got.Data.Template, "qwen2"},
		{"Train.MaxSteps", got.Train.MaxSteps, 120},
		{"Train.Epochs", got.Train.Epochs, 0.0},
		{"Train.LR", got.Train.LR, 0.0003},
		{"Train.Checkpointing", got.Train.Checkpointing, true},
		{"Train.SamplePrompts", got.Train.SamplePrompts, []string{"Hello there", "What is 2+2?"}},
		// The method presets (presets/methods.yaml) have no interval, so
		// typed prompts get the settings page's.
		{"Train.SampleEvery", got.Train.SampleEvery, 20},
		{"RunsDir", got.RunsDir, testOptions(nil).RunsDir},
	}
	for _, c := range checks {
		if !reflect.DeepEqual(c.got, c.want) {
			t.Errorf("RunConfig.%s = %#v, want %#v", c.field, c.got, c.want)
		}
	}
	d.waitScreen("lora")
	d.waitFor("the dashboard", func() bool { return strings.Contains(d.screen(), "my-run · qlora on qwen2.5-0.5b-instruct") })
}

func TestWizardBackKeepsValuesAndEscGoesBack(t *testing.T) {
	d := newDriver(t, testOptions(&fake.Engine{}), 80, 24)
	d.keys("enter", "down")
	d.keys("backspace", "backspace")
	d.typeText("8")
	d.keys("enter")
	d.keys("esc")
	if got := fieldValue(d.screen(), "LoRA rank (r)"); got != "8" {
		t.Errorf("going back should show the rank typed before (8), shows %q:\n%s", got, d.screen())
	}
	d.keys("esc")
	if !strings.Contains(d.screen(), "Choose the base model") {
		t.Errorf("esc on the method page should go back to the model page:\n%s", d.screen())
	}
}

// Going back keeps what was typed on the page left: the settings page
// shows the epochs typed before esc.
func TestWizardBackKeepsTypedSettings(t *testing.T) {
	d := newDriver(t, testOptions(&fake.Engine{}), 80, 24)
	d.keys("enter", "enter", "enter")
	d.waitScreen("format messages")
	d.keys("enter")
	d.keys("down", "down", "ctrl+u") // epochs
	d.typeText("7")
	d.keys("esc")
	if !strings.Contains(d.screen(), "Choose the training data") {
		t.Fatalf("esc should go back to the data page:\n%s", d.screen())
	}
	d.keys("enter")
	if got := fieldValue(d.screen(), "Epochs"); got != "7" {
		t.Errorf("the epochs typed before going back should stay (7), shows %q:\n%s", got, d.screen())
	}
}

func TestWizardRejectsBadValues(t *testing.T) {
	d := newDriver(t, testOptions(&fake.Engine{}), 80, 24)
	d.keys("enter", "down", "ctrl+u")
	d.typeText("many")
	d.keys("enter")
	if s := d.screen(); !strings.Contains(s, `LoRA rank (r): "many" is not a whole number`) || !strings.Contains(s, "How should it learn?") {
		t.Fatalf("a bad rank should keep the user on the page with a message naming the field:\n%s", s)
	}
	// Once: under the field, not again in the status line.
	if n := strings.Count(d.screen(), `"many" is not a whole number`); n != 1 {
		t.Errorf("the message shows %d times:\n%s", n, d.screen())
	}
	d.keys("ctrl+u")
	d.typeText("16")
	d.keys("enter", "enter")
	d.waitScreen("format messages")
	d.keys("enter", "ctrl+u")
	d.typeText("bad name/..")
	d.keys("enter")
	if s := d.screen(); !strings.Contains(s, "Run name:") {
		t.Errorf("a run name with a slash should be refused:\n%s", s)
	}
}

func TestModelPathMustBeAModelFolder(t *testing.T) {
	d := newDriver(t, testOptions(&fake.Engine{}), 80, 24)
	for i := 0; i < 6; i++ { // 4 catalog + 2 local entries
		d.keys("down")
	}
	d.keys("enter")
	d.typeText("testdata/datasets")
	d.keys("enter")
	if s := d.screen(); !strings.Contains(s, "model folder testdata/datasets has no config.json") {
		t.Errorf("a folder without config.json should be refused:\n%s", s)
	}
	d.keys("ctrl+u")
	d.typeText("testdata/models/acme/tiny-llama")
	d.keys("enter")
	if !strings.Contains(d.screen(), "How should it learn?") {
		t.Errorf("a model folder should be accepted:\n%s", d.screen())
	}
	if got := d.m.Config().Model; got != "testdata/models/acme/tiny-llama" {
		t.Errorf("Model = %q", got)
	}
}

func TestFitCheckBlocksUntilAdviceMakesItFit(t *testing.T) {
	o := testOptions(&fake.Engine{})
	// 7.6B in bf16 is ~15 GiB: give it 8 GiB so only QLoRA fits.
	o.Fit = fake.FitChecker{Device: "small GPU", Free: 8 << 30, Total: 8 << 30, Params: fake.DemoCatalog.Params}
	d := newDriver(t, o, 80, 24)
	d.keys("end", "up", "enter", "enter", "enter") // the last catalog entry, qwen2.5-7b
	d.waitScreen("format messages")
	d.keys("enter", "enter")
	d.waitScreen("Does not fit")
	d.keys("enter")
	if s := d.screen(); !strings.Contains(s, "this run does not fit") {
		t.Fatalf("enter on a run that does not fit should be refused:\n%s", s)
	}
	d.keys("1") // QLoRA
	d.waitScreen("Fits:")
	if m := d.m.Config().Method; m != "qlora" {
		t.Errorf("advice 1 should switch to qlora, method is %q", m)
	}
	d.keys("enter")
	if !strings.Contains(d.screen(), "method: qlora") {
		t.Errorf("after the advice the review should open:\n%s", d.screen())
	}
}

func TestEngineUnavailableIsShownNotFatal(t *testing.T) {
	eng := &fake.Engine{StartErr: errors.New("training engine not available")}
	d := newDriver(t, testOptions(eng), 80, 24)
	startDefaultRun(t, d)
	d.waitScreen("could not start: training engine not available")
	if ev, _ := d.m.Running(); ev != nil {
		t.Error("no run should be live")
	}
}

func TestDashboardShowsScriptedEvents(t *testing.T) {
	// 200 steps keep the run live for the whole test; a log line follows step 12.
	var script []fake.Step
	for _, st := range scriptSteps(200) {
		script = append(script, st)
		if ev, ok := st.Event.(engine.StepEvent); ok && ev.Step == 12 {
			script = append(script, fake.Step{Event: engine.LogEvent{Text: "backend: cpu (no NVIDIA GPU found)"}})
		}
	}
	eng := &fake.Engine{Script: script}
	d := newDriver(t, testOptions(eng), 120, 40)
	startDefaultRun(t, d)
	d.waitScreen("step 12/100")
	s := d.screen()
	if n := countBraille(s); n < 5 {
		t.Errorf("the loss chart should have points after 12 steps, found %d braille cells:\n%s", n, s)
	}
	if n := strings.Count(s, "◆"); n < 3 { // the legend plus the evals at steps 5 and 10
		t.Errorf("expected eval markers on the chart, found %d ◆:\n%s", n, s)
	}
	for _, want := range []string{"coat check", "sample · step 10", "NVIDIA H100 80GB HBM3 (fake)", "87%", "loss      2.4000"} {
		if !strings.Contains(s, want) {
			t.Errorf("dashboard lacks %q:\n%s", want, s)
		}
	}
	before := countBraille(s)
	d.waitScreen("step 40/100")
	if after := countBraille(d.screen()); after <= before {
		t.Errorf("more steps should draw more of the curve (%d → %d cells)", before, after)
	}
	checkSize(t, d.view(), 120, 40)
}

func countBraille(s string) int {
	n := 0
	for _, r := range s {
		if r > 0x2800 && r <= 0x28FF {
			n++
		}
	}
	return n
}

func TestDashboardPauseAndCheckpoint(t *testing.T) {
	eng := &fake.Engine{Script: scriptSteps(500)}
	d := newDriver(t, testOptions(eng), 80, 24)
	startDefaultRun(t, d)
	d.waitScreen("step 3/100")
	d.keys("p")
	ctl := eng.LastControl()
	if p, _, _, _ := ctl.Counts(); p != 1 || !strings.Contains(d.screen(), "paused") {
		t.Errorf("p should pause (Pause calls %d):\n%s", p, d.screen())
	}
	d.keys("p")
	if _, r, _, _ := ctl.Counts(); r != 1 {
		t.Errorf("second p should resume, Resume calls %d", r)
	}
	d.keys("c")
	if _, _, c, _ := ctl.Counts(); c != 1 {
		t.Errorf("c should ask for a checkpoint, calls %d", c)
	}
	d.waitScreen("checkpoint #1 step")
}

func TestStopWritesCheckpointThenShowsSummary(t *testing.T) {
	eng := &fake.Engine{Script: scriptSteps(500)}
	d := newDriver(t, testOptions(eng), 80, 24)
	startDefaultRun(t, d)
	d.waitScreen("step 5/100")
	d.keys("s")
	if !strings.Contains(d.screen(), "Stop the run? A checkpoint is written first.") {
		t.Fatalf("s should ask before stopping:\n%s", d.screen())
	}
	if _, _, _, stops := eng.LastControl().Counts(); stops != 0 {
		t.Fatal("Stop was called before the user confirmed")
	}
	d.keys("y")
	if _, _, _, stops := eng.LastControl().Counts(); stops != 1 {
		t.Fatalf("Stop calls = %d, want 1", stops)
	}
	d.waitScreen("stopped, checkpoint saved")
	s := d.screen()
	if !strings.Contains(s, "checkpoint  ") || !strings.Contains(s, "/checkpoints/step-") {
		t.Errorf("the summary should name the final checkpoint:\n%s", s)
	}
	if ev, _ := d.m.Running(); ev != nil {
		t.Error("the run should be over")
	}
	if d.quit {
		t.Error("s must not quit the studio")
	}
	d.keys("q")
	d.waitFor("quit", func() bool { return d.quit })
}

func TestQuitStopsRunBeforeExiting(t *testing.T) {
	eng := &fake.Engine{Script: scriptSteps(500)}
	d := newDriver(t, testOptions(eng), 80, 24)
	startDefaultRun(t, d)
	d.waitScreen("step 2/100")
	d.keys("ctrl+c")
	if d.quit || !strings.Contains(d.screen(), "Stop the run and quit?") {
		t.Fatalf("ctrl+c during a run must ask first:\n%s", d.screen())
	}
	d.keys("n")
	d.keys("q", "y")
	if _, _, _, stops := eng.LastControl().Counts(); stops != 1 {
		t.Fatalf("Stop calls = %d, want 1", stops)
	}
	d.waitFor("quit", func() bool { return d.quit })
	if ev, _ := d.m.Running(); ev != nil {
		t.Error("the studio quit before the engine reported the end of the run")
	}
}

func TestTooSmallTerminal(t *testing.T) {
	d := newDriver(t, testOptions(&fake.Engine{}), 60, 20)
	golden(t, "toosmall_60x20", d.view())
	s := d.screen()
	if !strings.Contains(s, "at least 80×24") || !strings.Contains(s, "This one is 60×20") {
		t.Errorf("a small terminal should get a clear message:\n%s", s)
	}
	// The keys that still work are named (the help line is not drawn).
	if !strings.Contains(s, "q quit • ctrl+c quit") {
		t.Errorf("a small terminal should say which keys work:\n%s", s)
	}
	d.keys("enter") // ignored while the user cannot see
	d.send(windowSize(80, 24))
	if !strings.Contains(d.screen(), "Choose the base model") {
		t.Errorf("keys should be ignored below the minimum size:\n%s", d.screen())
	}
}

// fieldValue returns what follows label on the screen line that holds it.
func fieldValue(screen, label string) string {
	for _, l := range strings.Split(screen, "\n") {
		if i := strings.Index(l, label); i >= 0 {
			return strings.TrimSpace(l[i+len(label):])
		}
	}
	return ""
}

func TestModelDatasetIsPreselected(t *testing.T) {
	o := testOptions(&fake.Engine{})
	o.Catalog = fake.Catalog{{Name: "demo", Path: "testdata/models/acme/tiny-llama", Dataset: "testdata/datasets/recipes.csv"}}
	d := newDriver(t, o, 80, 24)
	d.keys("enter", "enter")
	d.waitScreen("format messages")
	if v := cursorRow(d.screen()); !strings.HasPrefix(v, "● testdata/datasets/recipes.csv") || !strings.HasSuffix(v, "for this model") {
		t.Errorf("the demo's dataset should be selected and previewed, cursor row is %q:\n%s", v, d.screen())
	}
	d.keys("enter")
	if got := d.m.Config().Data.Path; got != "testdata/datasets/recipes.csv" {
		t.Errorf("Data.Path = %q", got)
	}
}

// cursorRow returns the list row marked with the cursor "› ".
func cursorRow(screen string) string {
	for _, l := range strings.Split(screen, "\n") {
		if strings.HasPrefix(l, "› ") {
			return strings.TrimSpace(strings.TrimPrefix(l, "› "))
		}
	}
	return ""
}

// zeroSamplePresets gives defaults without a sample interval, as a preset
// file may.
type zeroSamplePresets struct{}

func (zeroSamplePresets) Defaults(model, method string) (engine.RunConfig, error) {
	return engine.RunConfig{Model: model, Method: method,
		LoRA:  engine.LoRAConfig{Rank: 8, Alpha: 16, TargetModules: []string{"q", "v"}},
		Data:  engine.DataConfig{MaxLength: 256},
		Train: engine.TrainConfig{Epochs: 1, MicroBatch: 1, GradAccum: 1, LR: 1e-4}}, nil
}

func TestSamplePromptsGetAnInterval(t *testing.T) {
	eng := &fake.Engine{Script: scriptSteps(2)}
	o := testOptions(eng)
	o.Presets = zeroSamplePresets{}
	d := newDriver(t, o, 80, 24)
	d.keys("enter", "enter", "enter")
	d.waitScreen("format messages")
	d.keys("enter")
	for i := 0; i < 8; i++ {
		d.keys("down")
	}
	d.typeText("Say hi")
	d.keys("enter")
	d.waitScreen("Fits:")
	d.keys("enter", "enter")
	d.waitFor("the engine to start", func() bool { return len(eng.Started()) == 1 })
	got := eng.Started()[0].Train
	if got.SampleEvery != 20 || len(got.SamplePrompts) != 1 {
		t.Errorf("prompts without an interval should sample every 20 steps, got every %d with %q", got.SampleEvery, got.SamplePrompts)
	}
}

func TestOutcomeAndExistingRunWarning(t *testing.T) {
	runs := t.TempDir()
	o := testOptions(&fake.Engine{Script: scriptSteps(2)})
	o.RunsDir = runs
	name := "run-" + fixedNow().Format("20060102-150405")
	if err := os.MkdirAll(filepath.Join(runs, name), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(runs, name, "run.yaml"), []byte("name: x\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	d := newDriver(t, o, 80, 24)
	if d.m.Outcome() != "" {
		t.Error("no outcome before a run")
	}
	d.keys("enter", "enter", "enter")
	d.waitScreen("format messages")
	d.keys("enter", "enter")
	d.waitScreen("Fits:")
	d.keys("enter")
	if !strings.Contains(d.screen(), "a run named "+name+" exists: starting resumes it") {
		t.Errorf("the review should warn that the run folder exists:\n%s", d.screen())
	}
	d.keys("enter")
	d.waitScreen("✓ finished")
	if got := d.m.Outcome(); !strings.Contains(got, "run "+name+" finished after 2 steps") {
		t.Errorf("Outcome() = %q", got)
	}
	d.keys("esc")
	if d.quit {
		t.Error("esc on the summary must not quit")
	}
}

// Below the minimum size a live run can still be stopped: the question
// stays on screen.
func TestQuitWhileTooSmall(t *testing.T) {
	eng := &fake.Engine{Script: scriptSteps(500)}
	d := newDriver(t, testOptions(eng), 80, 24)
	startDefaultRun(t, d)
	d.waitScreen("step 2/100")
	d.send(windowSize(50, 12))
	if !strings.Contains(d.screen(), "Training goes on meanwhile") {
		t.Errorf("the small-terminal message should say the run continues:\n%s", d.screen())
	}
	if !strings.Contains(d.screen(), "q quit • ctrl+c quit") {
		t.Errorf("the small-terminal message should say what q does:\n%s", d.screen())
	}
	d.keys("q")
	if !strings.Contains(d.screen(), "Stop the run and quit?") {
		t.Errorf("the quit question should be visible even when small:\n%s", d.screen())
	}
	d.keys("y")
	d.waitFor("quit", func() bool { return d.quit })
}

func TestDataMustSuitTheMethod(t *testing.T) {
	o := testOptions(&fake.Engine{})
	d := newDriver(t, o, 80, 24)
	d.keys("enter", "right", "right", "right") // method: dpo
	if !strings.Contains(d.screen(), "DPO: preference tuning") {
		t.Fatalf("expected dpo:\n%s", d.screen())
	}
	d.keys("enter", "enter")
	d.waitScreen("format messages")
	d.keys("enter")
	if s := d.screen(); !strings.Contains(s, "DPO needs preference data (prompt, chosen, rejected);") || !strings.Contains(s, "testdata/datasets/persona.jsonl is messages") {
		t.Errorf("DPO on a messages file should be refused:\n%s", s)
	}

	pref := fake.DemoPreview
	pref.Format = "preference"
	o.Data = fake.Previewer{Preview0: pref}
	d = newDriver(t, o, 80, 24)
	d.keys("enter", "enter", "enter")
	d.waitScreen("format preference")
	d.keys("enter")
	if s := d.screen(); !strings.Contains(s, "holds preference pairs: choose the dpo method") {
		t.Errorf("LoRA on preference pairs should be refused:\n%s", s)
	}
}

func TestModelFilter(t *testing.T) {
	d := newDriver(t, testOptions(&fake.Engine{}), 80, 24)
	d.keys("/")
	d.typeText("qwen")
	s := d.screen()
	if strings.Contains(s, "llama-3.2-1b-instruct") || !strings.Contains(s, "qwen2.5-7b-instruct") {
		t.Fatalf("the filter should keep only qwen models:\n%s", s)
	}
	d.keys("enter", "down", "enter") // leave the filter, second match
	if got := d.m.Config().Model; got != "qwen2.5-7b-instruct" {
		t.Errorf("Model = %q, want the second qwen entry", got)
	}
	d.keys("esc")
	d.keys("/")
	d.typeText("q") // a letter in the filter, not quit
	if d.quit {
		t.Error("q in the filter must not quit")
	}
	d.keys("esc")
	if !strings.Contains(d.screen(), "whet-demo-8m") {
		t.Errorf("esc should clear the filter:\n%s", d.screen())
	}
}

// TestSettingsGPUs: the advanced settings' GPUs field sets parallel.gpus
// (a list of devices reaches the engine), and a device listed twice is
// refused with a message naming the field.
func TestSettingsGPUs(t *testing.T) {
	eng := &fake.Engine{Script: scriptSteps(2)}
	d := newDriver(t, testOptions(eng), 80, 24)
	d.keys("enter", "enter", "enter")
	d.waitScreen("format messages")
	d.keys("enter") // settings
	for i := 0; i < 9; i++ {
		d.keys("down") // past the nine visible fields to the advanced row
	}
	d.keys("enter") // open it: six fields
	for i := 0; i < 6; i++ {
		d.keys("down") // to the last field, GPUs
	}
	if !strings.Contains(d.screen(), "› GPUs") {
		t.Fatalf("the advanced settings should end with GPUs:\n%s", d.screen())
	}
	d.typeText("0,0")
	d.keys("enter")
	if s := d.screen(); !strings.Contains(s, "GPUs: device 0 listed twice") {
		t.Fatalf("a device listed twice should be refused naming the field:\n%s", s)
	}
	d.keys("ctrl+u")
	d.typeText("0,2")
	d.keys("enter")
	d.waitScreen("Fits:")
	d.keys("enter", "enter")
	d.waitFor("the engine to start", func() bool { return len(eng.Started()) == 1 })
	if got := eng.Started()[0].Parallel.GPUs; got != "0,2" {
		t.Fatalf("parallel.gpus = %q, want 0,2", got)
	}
}

// TestModelFilterTypedAsAPath: a path typed at "/" that matches no model
// is what the path field gets. Before, enter closed the filter, enter on
// "Enter a path…" opened an empty field, and the path had to be typed
// again.
func TestModelFilterTypedAsAPath(t *testing.T) {
	d := newDriver(t, testOptions(&fake.Engine{}), 80, 24)
	d.keys("/")
	d.typeText("testdata/models/acme/tiny-llama")
	d.keys("enter")
	if s := d.screen(); !strings.Contains(s, "› Model folder") || !strings.Contains(s, "testdata/models/acme/tiny-llama▏") {
		t.Fatalf("enter on a filter that matches nothing should open the path field with it:\n%s", s)
	}
	d.keys("enter")
	if !strings.Contains(d.screen(), "How should it learn?") {
		t.Fatalf("the typed folder should be used:\n%s", d.screen())
	}
	if got := d.m.Config().Model; got != "testdata/models/acme/tiny-llama" {
		t.Errorf("Model = %q", got)
	}
	// A filter that matches models only narrows the list: enter on
	// "Enter a path…" then opens an empty field.
	d = newDriver(t, testOptions(&fake.Engine{}), 80, 24)
	d.keys("/")
	d.typeText("qwen")
	d.keys("enter", "end", "enter")
	if s := d.screen(); !strings.Contains(s, "› Model folder") || strings.Contains(s, "qwen▏") {
		t.Errorf("a filter that matched models is not a path:\n%s", s)
	}
}

// A run that makes no samples (train.sample_every 0, not GRPO) says so
// where the samples would be, instead of "samples appear here as the
// trainer generates them"; one with sample prompts keeps that line until
// the first sample comes.
func TestDashboardSaysWhenNoSamplesCome(t *testing.T) {
	for _, prompts := range []bool{false, true} {
		eng := &fake.Engine{Script: scriptSteps(200)}
		o := testOptions(eng)
		o.Presets = zeroSamplePresets{}
		d := newDriver(t, o, 80, 24)
		d.keys("enter", "enter", "enter")
		d.waitScreen("format messages")
		d.keys("enter")
		if prompts {
			for i := 0; i < 8; i++ {
				d.keys("down")
			}
			d.typeText("Say hi")
		}
		d.keys("enter")
		d.waitScreen("Fits:")
		d.keys("enter", "enter")
		d.waitScreen("step 1/")
		s := d.screen()
		if got := strings.Contains(s, "no samples: train.sample_every is 0"); got == prompts {
			t.Errorf("sample prompts %v: says no samples %v:\n%s", prompts, got, s)
		}
		if got := strings.Contains(s, "samples appear here"); got != prompts {
			t.Errorf("sample prompts %v: promises samples %v:\n%s", prompts, got, s)
		}
	}
}

// resumeRefusingEngine refuses to start a run as the engine refuses to
// resume a run folder whose checkpoints were made with other settings,
// unless the config says resume anyway.
type resumeRefusingEngine struct{ *fake.Engine }

func (e resumeRefusingEngine) Start(ctx context.Context, cfg engine.RunConfig) (<-chan engine.Event, engine.RunControl, error) {
	if !cfg.ResumeAnyway {
		return nil, nil, errors.New("the worker for run " + cfg.Name + " ended (exit status 1):\n" +
			"whet train: run folder runs/" + cfg.Name + " has checkpoints made with other inputs, so resuming would mix two runs:\n" +
			"  train.epochs: 400 → 1\n  train.lr: 0.003 → 0.0002\n" +
			"put them back, give this run another name to start afresh, or resume anyway (whet train --resume-anyway)")
	}
	return e.Engine.Start(ctx, cfg)
}

// A start refused because the run's checkpoints were made with other
// settings shows every line of the reason under the YAML (which gives up
// the room; the reason was cut to its first line) and offers a to resume
// anyway, which starts the run with ResumeAnyway. Coming back to the
// review page forgets it. Before, the studio had no way to resume anyway.
func TestReviewOffersResumeAnyway(t *testing.T) {
	for _, sz := range sizes {
		t.Run(fmt.Sprintf("%dx%d", sz.w, sz.h), func(t *testing.T) {
			eng := resumeRefusingEngine{&fake.Engine{Script: scriptSteps(200)}}
			d := newDriver(t, testOptions(eng), sz.w, sz.h)
			startDefaultRun(t, d)
			d.waitScreen("could not start")
			s := d.screen()
			for _, want := range []string{"train.lr: 0.003 → 0.0002", "(whet train --resume-anyway)", "a resumes from those checkpoints anyway", "a resume anyway"} {
				if !strings.Contains(s, want) {
					t.Errorf("the review page lacks %q:\n%s", want, s)
				}
			}
			checkSize(t, d.view(), sz.w, sz.h)
			golden(t, fmt.Sprintf("review_resume_anyway_%dx%d", sz.w, sz.h), d.view())
			d.keys("esc") // back to the fit page and again: forgotten
			d.waitScreen("Fits:")
			d.keys("enter")
			if d.m.Config().ResumeAnyway {
				t.Errorf("ResumeAnyway set before a was pressed")
			}
			d.keys("enter")
			d.waitScreen("could not start")
			d.keys("a")
			d.waitScreen("step 1")
			started := eng.Started()
			if len(started) != 1 || !started[0].ResumeAnyway {
				t.Errorf("started %d runs (%+v), want one with ResumeAnyway", len(started), started)
			}
		})
	}
}

// The line the studio leaves on the terminal after a failed run offers to
// resume it only when it has a checkpoint: whet train -c starts a run
// folder without one over from step 0.
func TestOutcomeOfAFailedRun(t *testing.T) {
	for _, c := range []struct {
		checkpointed bool
		want         string
	}{
		{false, "\n  no checkpoint; start it over: whet train -c "},
		{true, "\n  resume: whet train -c "},
	} {
		script := append(scriptSteps(2), fake.Step{Event: engine.DoneEvent{Step: 2, Err: errors.New("write status.json: no space left on device"), Checkpointed: c.checkpointed}})
		outcomeOf(t, script, "✗ failed", "failed at step 2: write status.json: no space left on device"+c.want, "no space left")
	}
	// Stopped with a checkpoint: the fixed words on the first line, the
	// command with the run file's whole path on its own.
	script := append(scriptSteps(2), fake.Step{Event: engine.DoneEvent{Step: 2, Stopped: true, Checkpointed: true}})
	outcomeOf(t, script, "■ stopped", " stopped at step 2 with a checkpoint\n  resume: whet train -c ", "")
}

// outcomeOf runs script from the wizard's defaults until the dashboard
// shows done, and checks that Outcome() holds want followed by the run
// file's path, and that its lines fit 80 columns after "whet: ", all but
// the command's and one with the run's error (free, "" for none).
func outcomeOf(t *testing.T, script []fake.Step, done, want, free string) {
	t.Helper()
	o := testOptions(&fake.Engine{Script: script})
	o.RunsDir = t.TempDir()
	d := newDriver(t, o, 80, 24)
	d.keys("enter", "enter", "enter")
	d.waitScreen("format messages")
	d.keys("enter", "enter")
	d.waitScreen("Fits:")
	d.keys("enter", "enter")
	d.waitScreen(done)
	got := d.m.Outcome()
	if !strings.Contains(got, want+filepath.Join(o.RunsDir, d.m.Config().Name, "run.yaml")) {
		t.Errorf("Outcome() = %q, want %q and the run file", got, want)
	}
	for _, l := range strings.Split(got, "\n") {
		if n := len([]rune("whet: " + l)); n >= 80 && !strings.Contains(l, "whet train -c ") && (free == "" || !strings.Contains(l, free)) {
			t.Errorf("%d columns: %q", n, l)
		}
	}
}

// The line left when a run goes on in its worker fits 80 columns after
// "whet: " with a 30-character run name, as two lines.
func TestGoesOnFits80Columns(t *testing.T) {
	name := strings.Repeat("n", 30)
	got := tui.GoesOn(name)
	for _, l := range strings.Split(got, "\n") {
		if n := len([]rune("whet: " + l)); n >= 80 {
			t.Errorf("%d columns: %q", n, l)
		}
	}
	if !strings.Contains(got, "whet attach "+name) {
		t.Errorf("GoesOn = %q, without the command", got)
	}
}

// The method page shows the preset's warm-up steps and lets them be
// changed. Before, only "Warmup ratio 0" was shown while the preset's
// warmup_steps (unsloth's 5, the demo's 3) applied: the demo's 4-step run
// trained its first step at learning rate 0 with no way to see why.
func TestMethodPageWarmupSteps(t *testing.T) {
	d := newDriver(t, testOptions(&fake.Engine{}), 80, 24)
	d.keys("down", "down", "down", "enter") // a model whose method preset has warmup_steps: 5
	for i := 0; i < 5; i++ {
		d.keys("down")
	}
	d.keys("enter") // the advanced section
	if s := d.screen(); !strings.Contains(s, "Warmup steps        5") {
		t.Fatalf("the preset's warm-up steps should be shown:\n%s", s)
	}
	d.keys("down", "down", "down", "down") // rsLoRA, schedule, ratio, steps
	if got := fieldValue(d.screen(), "› Warmup steps"); got != "5▏" && got != "5" {
		t.Fatalf("cursor should be on Warmup steps, got %q:\n%s", got, d.screen())
	}
	d.keys("backspace")
	d.typeText("0")
	d.keys("enter")
	if got := d.m.Config().Train.WarmupSteps; got != 0 {
		t.Errorf("WarmupSteps = %d after typing 0, want 0", got)
	}
	// A ratio above 0 replaces the steps.
	d.keys("esc") // back on the method page, its form as the config says
	for i := 0; i < 5; i++ {
		d.keys("down")
	}
	d.keys("enter", "down", "down", "down") // the ratio
	if s := d.screen(); !strings.Contains(s, "Warmup steps        0") {
		t.Errorf("the steps typed should be kept:\n%s", s)
	}
	d.keys("backspace")
	d.typeText("0.1")
	d.keys("down", "backspace")
	d.typeText("7")
	d.keys("enter")
	if c := d.m.Config().Train; c.WarmupRatio != 0.1 || c.WarmupSteps != 0 {
		t.Errorf("ratio 0.1 and 7 steps gave ratio %v, steps %d; want 0.1 and 0", c.WarmupRatio, c.WarmupSteps)
	}
}

// resolvingFake resolves every model as the studio's engine resolves a
// catalog name: to the folder run.yaml will record.
type resolvingFake struct {
	fake.Engine
	dir string
}

func (r *resolvingFake) RunModel(string) (string, error) { return r.dir, nil }

// The review page shows the model as the run.yaml it says it writes holds
// it: the folder a catalog name resolves to (in DisplayPath form, here
// under ~), not the name, which a resume from the run file would not find.
func TestReviewShowsTheModelAsWritten(t *testing.T) {
	home := t.TempDir()
	t.Setenv("HOME", home)
	dir := filepath.Join(home, "models", "tiny-llama")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	eng := &resolvingFake{dir: dir}
	d := newDriver(t, testOptions(eng), 80, 24)
	d.keys("enter", "enter", "enter")
	d.waitScreen("format messages")
	d.keys("enter", "enter")
	d.waitScreen("Fits:")
	d.keys("enter")
	d.waitScreen("written to")
	if s := d.screen(); !strings.Contains(s, "model: ~/models/tiny-llama\n") {
		t.Errorf("the review does not show the model folder run.yaml records:\n%s", s)
	}
}
