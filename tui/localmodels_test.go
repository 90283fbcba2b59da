package tui_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"whet/engine"
	"whet/engine/safetensors"
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
		t.Errorf("params = %d, want 3950848", tiny.Params)
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

// The picker's parameter count of a local folder is the number of
// elements in the model's weights, for every family whet trains (it is
// memplan.FolderParams, the count whet fit plans with): a Llama-shaped
// formula missed Qwen2.5's biases, Phi-3's fused projections, Gemma's
// extra norms and both vision models' towers. The folders hold only the
// configs of testdata's tiny models; the counts are of those models'
// safetensors.
func TestFindLocalModelsCountTheWeights(t *testing.T) {
	dir := t.TempDir()
	want := map[string]int64{}
	families := []string{"tiny-llama", "tiny-qwen2", "tiny-qwen3", "tiny-gemma2", "tiny-gemma3", "tiny-phi3", "tiny-gemma3-vision", "tiny-mllama"}
	for _, name := range append(families, "tiny-mistral") {
		src := filepath.Join("..", "testdata", strings.Replace(name, "mistral", "llama", 1))
		raw, err := os.ReadFile(filepath.Join(src, "config.json"))
		if err != nil {
			t.Fatal(err)
		}
		if name == "tiny-mistral" { // a Llama-shaped model under another model_type
			raw = []byte(strings.NewReplacer(`"llama"`, `"mistral"`, `"LlamaForCausalLM"`, `"MistralForCausalLM"`).Replace(string(raw)))
		}
		if err := os.MkdirAll(filepath.Join(dir, name), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name, "config.json"), raw, 0o644); err != nil {
			t.Fatal(err)
		}
		want[name] = tensorElems(t, src)
	}
	got, err := tui.FindLocalModels(dir)
	if err != nil || len(got) != len(want) {
		t.Fatalf("FindLocalModels = %+v, %v; want %d models", got, err, len(want))
	}
	for _, m := range got {
		if m.Params != want[m.Name] {
			t.Errorf("%s: the picker counts %d parameters, the weights hold %d", m.Name, m.Params, want[m.Name])
		}
	}
}

// tensorElems counts the elements of a folder's model.safetensors.
func tensorElems(t *testing.T, dir string) int64 {
	t.Helper()
	f, err := safetensors.Open(filepath.Join(dir, "model.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var n int64
	for _, name := range f.Names() {
		info, _ := f.Info(name)
		e := int64(1)
		for _, d := range info.Shape {
			e *= int64(d)
		}
		n += e
	}
	return n
}
