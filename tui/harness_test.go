package tui_test

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	tea "charm.land/bubbletea/v2"
	"charm.land/lipgloss/v2"
	"github.com/charmbracelet/x/ansi"

	"whet/engine"
	"whet/tui"
	"whet/tui/fake"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/")

// TestMain points the user's config folder at a temporary one, so that no
// test reads or writes the real list of recent dataset files.
func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "whet-tui-config-")
	if err != nil {
		panic(err)
	}
	os.Setenv("XDG_CONFIG_HOME", dir)
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// golden compares got with testdata/<name>.golden, or rewrites it with
// -update. Views are compared without escape codes: colours are checked
// separately, and the layout is what the goldens pin down.
func golden(t *testing.T, name, got string) {
	t.Helper()
	got = ansi.Strip(got)
	path := filepath.Join("testdata", name+".golden")
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("reading golden file (run go test ./tui -update to create it): %v", err)
	}
	if string(want) != got {
		t.Errorf("view differs from %s (run with -update if the change is intended)\n--- got ---\n%s\n--- want ---\n%s", path, got, want)
	}
}

// checkSize asserts a full-screen view is exactly w×h cells.
func checkSize(t *testing.T, view string, w, h int) {
	t.Helper()
	lines := strings.Split(view, "\n")
	if len(lines) != h {
		t.Errorf("view has %d lines, want %d", len(lines), h)
	}
	for i, l := range lines {
		if lw := lipgloss.Width(l); lw > w {
			t.Errorf("line %d is %d cells wide, more than %d: %q", i+1, lw, w, ansi.Strip(l))
		}
	}
}

var fixedNow = func() time.Time { return time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC) }

// testOptions wires every fake; GPUEvery is long so that after the first
// sample no clock-driven message arrives during a test.
func testOptions(eng tui.Engine) tui.Options {
	return tui.Options{
		Engine:    eng,
		Catalog:   fake.DemoCatalog,
		Fit:       fake.FitChecker{Device: "NVIDIA H100 80GB HBM3", Free: 79 << 30, Total: 80 << 30, Params: fake.DemoCatalog.Params},
		Data:      fake.Previewer{Preview0: fake.DemoPreview},
		GPU:       fake.DemoGPU,
		ModelsDir: "testdata/models",
		DataDirs:  []string{"testdata/datasets"},
		RunsDir:   "runs", // relative to tui/; the fake engine writes nothing
		Now:       fixedNow,
		Context:   context.Background(),
		GPUEvery:  time.Hour,
	}
}

// driver runs the studio the way Bubble Tea does, minus the terminal:
// every command runs in its own goroutine and its message is fed back
// through Update when the test pumps.
type driver struct {
	t    *testing.T
	m    *tui.Model
	msgs chan tea.Msg
	quit bool
}

func newDriver(t *testing.T, o tui.Options, w, h int) *driver {
	if o.RecentData == "" {
		// Each test starts with no recent files and keeps its own.
		o.RecentData = filepath.Join(t.TempDir(), "recent-datasets")
	}
	d := &driver{t: t, m: tui.New(o), msgs: make(chan tea.Msg, 64)}
	d.send(tea.WindowSizeMsg{Width: w, Height: h})
	return d
}

func (d *driver) run(cmd tea.Cmd) {
	if cmd == nil {
		return
	}
	go func() {
		if msg := cmd(); msg != nil {
			d.msgs <- msg
		}
	}()
}

func (d *driver) send(msg tea.Msg) {
	switch msg := msg.(type) {
	case tea.BatchMsg:
		for _, c := range msg {
			d.run(c)
		}
		return
	case tea.QuitMsg:
		d.quit = true
		return
	}
	_, cmd := d.m.Update(msg)
	d.run(cmd)
}

// keys sends key presses: names like "enter", "down", "ctrl+u", or text.
func (d *driver) keys(keys ...string) {
	for _, k := range keys {
		d.send(keyMsg(k))
	}
}

func (d *driver) typeText(s string) {
	for _, r := range s {
		d.send(tea.KeyPressMsg{Code: r, Text: string(r)})
	}
}

func keyMsg(k string) tea.KeyPressMsg {
	named := map[string]rune{"enter": tea.KeyEnter, "esc": tea.KeyEscape, "up": tea.KeyUp, "down": tea.KeyDown,
		"left": tea.KeyLeft, "right": tea.KeyRight, "end": tea.KeyEnd, "home": tea.KeyHome, "backspace": tea.KeyBackspace, "tab": tea.KeyTab}
	if c, ok := named[k]; ok {
		return tea.KeyPressMsg{Code: c}
	}
	if k == "space" {
		return tea.KeyPressMsg{Code: ' ', Text: " "}
	}
	if strings.HasPrefix(k, "ctrl+") {
		return tea.KeyPressMsg{Code: rune(k[5]), Mod: tea.ModCtrl}
	}
	return tea.KeyPressMsg{Code: rune(k[0]), Text: k}
}

// waitFor pumps messages until cond holds (checked after each one). The
// deadline only bounds a test that would otherwise hang: it is generous
// because CI runs on two loaded cores, where 5 s was seen to be too short.
func (d *driver) waitFor(what string, cond func() bool) {
	d.t.Helper()
	deadline := time.After(60 * time.Second)
	for !cond() {
		select {
		case msg := <-d.msgs:
			d.send(msg)
		case <-deadline:
			d.t.Fatalf("timed out waiting for %s; screen:\n%s", what, d.screen())
		}
	}
}

// waitScreen pumps until the screen contains every one of texts. A
// golden of a screen fed by several commands (the run's events, the GPU
// sampler) waits for a text of each, since they arrive in any order.
func (d *driver) waitScreen(texts ...string) {
	d.t.Helper()
	d.waitFor(fmt.Sprintf("screen to show %q", texts), func() bool {
		scr := d.screen()
		for _, s := range texts {
			if !strings.Contains(scr, s) {
				return false
			}
		}
		return true
	})
}

func (d *driver) screen() string { return ansi.Strip(d.m.View().Content) }

func (d *driver) view() string { return d.m.View().Content }

// scriptSteps makes n steps with a falling loss, evals every 5 steps and a
// sample at step 10.
func scriptSteps(n int) []fake.Step {
	var s []fake.Step
	for i := 1; i <= n; i++ {
		s = append(s, fake.Step{Event: engine.StepEvent{Step: i, TotalSteps: 100, Epoch: float64(i) / 50,
			Loss: max(3-float64(i)*0.05, 0.5), LR: 1e-4, GradNorm: 0.5, Tokens: 1024, TokensPerSec: 5000,
			Elapsed: time.Duration(i) * time.Second}})
		if i%5 == 0 {
			s = append(s, fake.Step{Event: engine.EvalEvent{Step: i, Loss: max(3.1-float64(i)*0.04, 0.6)}})
		}
		if i == 10 {
			s = append(s, fake.Step{Event: engine.SampleEvent{Step: 10, Prompt: "What is a hash table?", Text: "A hash table is a coat check: your ticket finds your coat at once. What if two coats got one ticket?"}})
		}
	}
	return s
}

func windowSize(w, h int) tea.WindowSizeMsg { return tea.WindowSizeMsg{Width: w, Height: h} }
