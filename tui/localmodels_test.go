package tui_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"whet/engine"
	"whet/tui"
)

func TestFindLocalModels(t *testing.T) {
	got, err := tui.FindLocalModels("testdata/models")
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 {
		t.Fatalf("found %d models, want acme/tiny-llama and broken: %+v", len(got), got)
	}
	tiny := got[0]
	if tiny.Name != "acme/tiny-llama" || tiny.Path != "testdata/models/acme/tiny-llama" {
		t.Errorf("first model = %+v", tiny)
	}
	// 4 layers × (2·256² + 2·256·128 + 3·256·688 + 2·256) + 4096·256 (tied) + 256
	if tiny.Params != 3950848 {
		t.Errorf("estimated params = %d, want 3950848", tiny.Params)
	}
	if !strings.Contains(got[1].Note, "config.json unreadable") {
		t.Errorf("a broken config.json should be reported in the note, got %q", got[1].Note)
	}
	none, err := tui.FindLocalModels("testdata/no-such-dir")
	if err != nil || len(none) != 0 {
		t.Errorf("a missing models directory should give no models and no error, got %v, %v", none, err)
	}
}

// The cursor's row stays visible wherever it is in a long list, and the
// "more" markers never replace it.
func TestListKeepsCursorVisible(t *testing.T) {
	dir := t.TempDir()
	for i := 0; i < 30; i++ {
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("set-%02d.jsonl", i)), []byte("{}\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	o := testOptions(nil)
	o.DataDirs = []string{dir}
	d := newDriver(t, o, 80, 24)
	d.keys("enter", "enter") // to the data page
	sawMore := false
	for i := 0; i < 40; i++ { // 30 files and "Enter a path…", wrapping around
		row := cursorRow(d.screen())
		if row == "" || strings.Contains(row, "more") {
			t.Fatalf("after %d downs the cursor row is %q:\n%s", i, row, d.screen())
		}
		sawMore = sawMore || strings.Contains(d.screen(), "↑ ") && strings.Contains(d.screen(), " more")
		d.keys("down")
	}
	if !sawMore {
		t.Error("a long list should show how many rows are above")
	}
}

// Generated text is drawn, never executed: an escape sequence in a sample
// must not reach the terminal.
func TestSampleTextIsSanitised(t *testing.T) {
	evs := append(goldenEvents(false), engine.SampleEvent{Step: 61, Prompt: "hi\x1b[2J", Text: "evil\x1b]0;title\x07 text\tend"})
	v := tui.RenderDashboard(goldenRun(), 80, 24, evs, nil, nil)
	if strings.Contains(v, "\x1b[2J") || strings.Contains(v, "\x1b]0;") || strings.Contains(v, "\x07") {
		t.Errorf("control sequences from the model reached the view: %q", v)
	}
	if !strings.Contains(v, "evil�]0;title� text end") {
		t.Errorf("the sample should be shown with its controls replaced:\n%s", v)
	}
}

// A vision model's config.json keeps its sizes in text_config and
// vision_config: the list estimates them too (it showed "?"): the
// language model as a text one, plus the tower's layers and projector.
func TestFindLocalVisionModels(t *testing.T) {
	dir := t.TempDir()
	write := func(name, config string) {
		if err := os.MkdirAll(filepath.Join(dir, name), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name, "config.json"), []byte(config), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	text := `"hidden_size": 64, "num_hidden_layers": 2, "intermediate_size": 176, "vocab_size": 512, "num_attention_heads": 4, "num_key_value_heads": 2`
	write("text", `{"model_type": "llama", `+text+`}`)
	write("vision", `{"model_type": "gemma3", "text_config": {"model_type": "gemma3_text", `+text+`},
		"vision_config": {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1}}`)
	got, err := tui.FindLocalModels(dir)
	if err != nil || len(got) != 2 {
		t.Fatalf("FindLocalModels = %+v, %v", got, err)
	}
	lm, vm := got[0].Params, got[1].Params
	// the tower: 1 × (4·32² + 2·32·64); the projector 32·64
	if lm == 0 || vm != lm+4*32*32+2*32*64+32*64 {
		t.Errorf("text model %d, vision model %d: want the vision model to be the text one plus %d", lm, vm, 4*32*32+2*32*64+32*64)
	}
}
