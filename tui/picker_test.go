package tui_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"

	tea "charm.land/bubbletea/v2"

	"whet/datasets"
	"whet/engine"
	"whet/tui"
	"whet/tui/fake"
)

func writeFile(t *testing.T, path, data string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}

// rowsAfter returns the screen lines after the one holding marker.
func listRows(screen string) []string {
	lines := strings.Split(screen, "\n")
	for i, l := range lines {
		if strings.Contains(l, "Enter a path…") || strings.Contains(l, " as a path") {
			var out []string
			for _, r := range lines[i:] {
				if strings.HasPrefix(r, "read as: ") {
					break
				}
				out = append(out, strings.TrimSpace(strings.TrimPrefix(r, "› ")))
			}
			return out
		}
	}
	return nil
}

// The picker starts where data lives: "Enter a path…" first, then the
// model's own dataset, the recent files (from any folder), then the data
// files of the scanned folders; files the loaders cannot read are left out.
func TestDataPickerStartsWhereDataLives(t *testing.T) {
	home := t.TempDir()
	t.Setenv("HOME", home)
	mine := filepath.Join(home, "data", "mine.jsonl")
	writeFile(t, mine, "{}\n")
	scan := filepath.Join(home, "scan") // shown as ~/scan: the same in every run
	writeFile(t, filepath.Join(scan, "train.tsv"), "a\tb\n")
	writeFile(t, filepath.Join(scan, "notes.txt"), "not data\n")
	recent := filepath.Join(t.TempDir(), "recent")
	writeFile(t, recent, mine+"\n"+filepath.Join(home, "gone.jsonl")+"\n")

	for _, sz := range sizes {
		t.Run(fmt.Sprintf("%dx%d", sz.w, sz.h), func(t *testing.T) {
			o := demoOptions(&fake.Engine{})
			o.DataDirs = []string{"testdata/datasets", scan}
			o.RecentData = recent
			d := newDriver(t, o, sz.w, sz.h)
			d.keys("enter", "enter")
			d.waitScreen("format messages")
			rows := listRows(d.screen())
			want := []string{"Enter a path…", "● testdata/datasets/persona.jsonl for this model", "~/data/mine.jsonl recent",
				"testdata/datasets/recipes.csv", "~/scan/train.tsv"}
			if len(rows) != len(want) {
				t.Fatalf("list rows %q, want %q:\n%s", rows, want, d.screen())
			}
			for i, w := range want {
				if strings.Join(strings.Fields(rows[i]), " ") != w {
					t.Errorf("row %d is %q, want %q", i, rows[i], w)
				}
			}
			checkSize(t, d.view(), sz.w, sz.h)
			golden(t, fmt.Sprintf("wizard_3data_picker_%dx%d", sz.w, sz.h), d.view())
		})
	}
}

// Typing filters the list at once and puts the cursor on the first match;
// letters are text (q does not quit); esc clears the filter.
func TestDataPickerFiltersAsYouType(t *testing.T) {
	d := newDriver(t, testOptions(&fake.Engine{}), 80, 24)
	d.keys("enter", "enter")
	d.typeText("req")
	if d.quit {
		t.Fatal("q typed into the filter quit the studio")
	}
	if rows := listRows(d.screen()); len(rows) != 2 || !strings.Contains(rows[1], "no file matches") {
		t.Errorf("nothing matches req: rows %q", rows)
	}
	d.keys("backspace", "backspace")
	d.typeText("eci")
	rows := listRows(d.screen())
	if len(rows) != 2 || rows[0] != "Open reci as a path" || rows[1] != "testdata/datasets/recipes.csv" {
		t.Fatalf("the filter reci should keep recipes.csv only: %q\n%s", rows, d.screen())
	}
	if got := cursorRow(d.screen()); got != "testdata/datasets/recipes.csv" {
		t.Errorf("the cursor should be on the first match, is on %q", got)
	}
	d.keys("enter")
	d.waitScreen("format messages")
	if got := d.m.Config().Data.Path; got != "testdata/datasets/recipes.csv" {
		t.Errorf("Data.Path = %q", got)
	}
	d.keys("esc")
	if !strings.Contains(d.screen(), "type to filter") || len(listRows(d.screen())) != 3 {
		t.Errorf("esc should clear the filter:\n%s", d.screen())
	}
	d.keys("esc")
	if !strings.Contains(d.screen(), "How should it learn?") {
		t.Errorf("esc without a filter goes back:\n%s", d.screen())
	}
}

// A path typed into the filter opens from the first row, ~ meaning home.
func TestDataPickerOpensTypedPath(t *testing.T) {
	home := t.TempDir()
	t.Setenv("HOME", home)
	writeFile(t, filepath.Join(home, "mine.jsonl"), "{}\n")
	d := newDriver(t, testOptions(&fake.Engine{}), 80, 24)
	d.keys("enter", "enter")
	d.typeText("~/nothere.jsonl")
	d.keys("enter")
	if s := d.screen(); !strings.Contains(s, "nothere.jsonl: no such file") {
		t.Errorf("a missing file should be named:\n%s", s)
	}
	d.keys("ctrl+u")
	d.typeText("~/mine.jsonl")
	if got := cursorRow(d.screen()); got != "Open ~/mine.jsonl as a path" {
		t.Errorf("with no match the cursor stays on the path row, is on %q", got)
	}
	d.keys("enter")
	d.waitScreen("format messages")
	d.keys("enter")
	if got := d.m.Config().Data.Path; got != filepath.Join(home, "mine.jsonl") {
		t.Errorf("Data.Path = %q, want the file in the home folder", got)
	}
}

// A file the user went on with is remembered in the config folder and
// offered as recent by the next studio, from another folder too.
func TestDataPickerRemembersRecentFiles(t *testing.T) {
	config := t.TempDir()
	t.Setenv("XDG_CONFIG_HOME", config)
	o := testOptions(&fake.Engine{})
	d := &driver{t: t, m: tui.New(o), msgs: make(chan tea.Msg, 64)} // the default list, in the config folder
	d.send(windowSize(80, 24))
	d.keys("enter", "enter", "down", "enter") // recipes.csv
	d.waitScreen("format messages")
	d.keys("enter")
	abs, _ := filepath.Abs("testdata/datasets/recipes.csv")
	raw, err := os.ReadFile(filepath.Join(config, "whet", "recent-datasets"))
	if err != nil || strings.TrimSpace(string(raw)) != abs {
		t.Fatalf("the recent list should hold %s: %q, %v", abs, raw, err)
	}

	o.DataDirs = []string{t.TempDir()} // nothing to find there
	d = &driver{t: t, m: tui.New(o), msgs: make(chan tea.Msg, 64)}
	d.send(windowSize(80, 24))
	d.keys("enter", "enter")
	rows := listRows(d.screen())
	if len(rows) != 2 || strings.Join(strings.Fields(rows[1]), " ") != "testdata/datasets/recipes.csv recent" {
		t.Errorf("the next studio should offer the recent file: %q\n%s", rows, d.screen())
	}
}

// columnsPreviewer reads a CSV of question/answer columns the way the
// loader does: it cannot tell the format until the user maps the columns.
type columnsPreviewer struct{}

func (columnsPreviewer) Preview(_ context.Context, cfg engine.RunConfig, _ func(datasets.Progress)) (tui.DataPreview, error) {
	d := cfg.Data
	if d.Format != "alpaca" || d.Columns["instruction"] != "question" || d.Columns["output"] != "answer" {
		return tui.DataPreview{}, fmt.Errorf("%s: cannot tell the data format from the columns (answer, question); expected one of: "+
			"instruction/input/output (alpaca), conversations (sharegpt), messages, text. "+
			"Set data.format and map your column names with data.columns, e.g. columns: {instruction: question, output: answer}", d.Path)
	}
	pv := fake.DemoPreview
	pv.Format = "alpaca"
	return pv, nil
}

// The loader's error asks for a format and a column mapping: the page
// says tab sets them, and with them the file loads.
func TestDataPickerSetsFormatAndColumns(t *testing.T) {
	for _, sz := range sizes {
		t.Run(fmt.Sprintf("%dx%d", sz.w, sz.h), func(t *testing.T) {
			o := testOptions(&fake.Engine{})
			o.Data = columnsPreviewer{}
			d := newDriver(t, o, sz.w, sz.h)
			d.keys("enter", "enter", "down", "enter") // recipes.csv
			d.waitScreen("cannot tell the data format")
			if !strings.Contains(d.screen(), "press tab to set the format and map the columns") {
				t.Errorf("the page should say how to fix it:\n%s", d.screen())
			}
			d.keys("tab", "right") // format: alpaca
			d.keys("down")
			d.typeText("instruction question")
			d.keys("enter")
			if s := d.screen(); !strings.Contains(s, `Columns: "instruction question" is not name=column`) {
				t.Errorf("a bad mapping should be named:\n%s", s)
			}
			d.keys("ctrl+u")
			d.typeText("instruction=question, output: answer")
			checkSize(t, d.view(), sz.w, sz.h)
			golden(t, fmt.Sprintf("wizard_3data_columns_%dx%d", sz.w, sz.h), d.view())
			d.keys("enter")
			d.waitScreen("format alpaca · 120 rows")
			if !strings.Contains(d.screen(), "read as: alpaca · columns instruction=question, output=answer · tab to change") {
				t.Errorf("the settings line should show the mapping:\n%s", d.screen())
			}
			d.keys("enter")
			if !strings.Contains(d.screen(), "Run settings") {
				t.Fatalf("the file should now be usable:\n%s", d.screen())
			}
			got := d.m.Config().Data
			if got.Format != "alpaca" || !reflect.DeepEqual(got.Columns, map[string]string{"instruction": "question", "output": "answer"}) {
				t.Errorf("Data.Format = %q, Data.Columns = %v", got.Format, got.Columns)
			}
		})
	}
}

// A folder's own data files come before those of its subfolders; model
// folders are not searched.
func TestDataPickerListsTheFoldersOwnFilesFirst(t *testing.T) {
	dir := t.TempDir()
	for _, f := range []string{"a/deep.jsonl", "z.jsonl", "b.csv", "a/b/deeper.parquet", "a/b/c/too-deep.jsonl",
		"model/config.json", "model/tokenizer.json", "model/extra.jsonl"} { // a model folder's files are not data
		writeFile(t, filepath.Join(dir, f), "{}\n")
	}
	o := testOptions(&fake.Engine{})
	o.DataDirs = []string{dir}
	d := newDriver(t, o, 120, 40)
	d.keys("enter", "enter")
	rows := listRows(d.screen())
	var want []string
	for _, f := range []string{"b.csv", "z.jsonl", "a/deep.jsonl", "a/b/deeper.parquet"} {
		want = append(want, filepath.Join(dir, f))
	}
	if len(rows) != 5 || !reflect.DeepEqual(rows[1:], want) {
		t.Errorf("rows %q, want the path row then %q", rows, want)
	}
}

// Only a file the user went on with becomes recent: previewing one and
// going back does not.
func TestDataPickerRecentOnlyWhenGoingOn(t *testing.T) {
	o := testOptions(&fake.Engine{})
	o.RecentData = filepath.Join(t.TempDir(), "recent")
	d := newDriver(t, o, 80, 24)
	d.keys("enter", "enter", "down", "enter") // preview recipes.csv
	d.waitScreen("format messages")
	d.keys("esc")
	if _, err := os.Stat(o.RecentData); err == nil {
		t.Fatal("going back wrote the recent list")
	}
	d.keys("enter")
	d.waitScreen("format messages")
	d.keys("enter")
	if raw, err := os.ReadFile(o.RecentData); err != nil || !strings.Contains(string(raw), "recipes.csv") {
		t.Errorf("going on should record recipes.csv: %q, %v", raw, err)
	}
}

// The prompts' hint gives the interval the run will use.
func TestSampleHintNamesTheInterval(t *testing.T) {
	d := newDriver(t, demoOptions(&fake.Engine{}), 80, 24)
	d.keys("enter", "enter")
	d.waitScreen("format messages")
	d.keys("enter")
	for i := 0; i < 8; i++ {
		d.keys("down")
	}
	if s := d.screen(); !strings.Contains(s, "(every 15 steps; see Sample every)") {
		t.Errorf("the hint should give the demo's interval:\n%s", s)
	}
}

// templatePreviewer refuses the file, as the loader does image data under
// a template without content lists, unless data.template is gemma-3.
type templatePreviewer struct{}

func (templatePreviewer) Preview(_ context.Context, cfg engine.RunConfig, _ func(datasets.Progress)) (tui.DataPreview, error) {
	if cfg.Data.Template != "gemma-3" {
		return tui.DataPreview{}, fmt.Errorf("data: %s:1: chat template chatml: content lists (text and image parts) are not supported by this built-in template; gemma-3 and interpreted templates render them", cfg.Data.Path)
	}
	return fake.DemoPreview, nil
}

// The loader's error names the chat template: the page says tab chooses
// it, the form's Chat template field sets data.template, and with it the
// file loads; "model's own" sets it back to empty. Before, the studio had
// no way to set data.template, so a model folder whose tokenizer's
// template cannot render image parts could not train on images there.
func TestDataPickerSetsChatTemplate(t *testing.T) {
	o := testOptions(&fake.Engine{})
	o.Data = templatePreviewer{}
	d := newDriver(t, o, 80, 24)
	d.keys("enter", "enter", "down", "enter") // recipes.csv
	d.waitScreen("content lists")
	if !strings.Contains(d.screen(), "press tab to choose the chat template") {
		t.Errorf("the page should say how to fix it:\n%s", d.screen())
	}
	d.keys("tab", "down", "down")
	if !strings.Contains(d.screen(), "› Chat template       ‹ model's own ›") {
		t.Fatalf("the form should offer the chat template, the model's own first:\n%s", d.screen())
	}
	for i := 0; i < 20 && !strings.Contains(d.screen(), "› Chat template       ‹ gemma-3 ›"); i++ {
		d.keys("right")
	}
	d.keys("enter")
	d.waitScreen("format messages · 120 rows")
	d.keys("enter")
	if !strings.Contains(d.screen(), "Run settings") {
		t.Fatalf("the file should now be usable:\n%s", d.screen())
	}
	if got := d.m.Config().Data.Template; got != "gemma-3" {
		t.Errorf("Data.Template = %q, want gemma-3", got)
	}
	d.keys("esc", "tab", "down", "down")
	for i := 0; i < 20 && !strings.Contains(d.screen(), "› Chat template       ‹ model's own ›"); i++ {
		d.keys("left")
	}
	d.keys("enter")
	d.waitScreen("content lists")
	if got := d.m.Config().Data.Template; got != "" {
		t.Errorf("Data.Template = %q after choosing the model's own, want empty", got)
	}
}

// A preference example's title says whether it is the chosen or the
// rejected answer (DataPreview.Labels).
func TestDataPreviewShowsPairLabels(t *testing.T) {
	o := testOptions(&fake.Engine{})
	pv := fake.DemoPreview
	pv.Format = "preference"
	pv.Labels = []string{"chosen", "rejected", "chosen"}
	o.Data = fake.Previewer{Preview0: pv}
	d := newDriver(t, o, 80, 24)
	d.keys("enter", "enter", "enter")
	d.waitScreen("format preference")
	if !strings.Contains(d.screen(), "example 1 of 3 · chosen (←/→)") {
		t.Errorf("the first example should be labelled chosen:\n%s", d.screen())
	}
	d.keys("right")
	if !strings.Contains(d.screen(), "example 2 of 3 · rejected (←/→)") {
		t.Errorf("the second example should be labelled rejected:\n%s", d.screen())
	}
	checkSize(t, d.view(), 80, 24)
}

// badRowPreviewer refuses the file for its row 8, as the loader does a
// line that is not JSON, until the row is fixed (fixed) or unreadable rows
// are skipped (data.skip_bad_rows), which the preview then counts.
type badRowPreviewer struct{ fixed *bool }

func (b badRowPreviewer) Preview(_ context.Context, cfg engine.RunConfig, _ func(datasets.Progress)) (tui.DataPreview, error) {
	pv := fake.DemoPreview
	switch {
	case *b.fixed:
	case cfg.Data.SkipBadRows:
		pv.Stats.Skipped = 1
	default:
		return tui.DataPreview{}, fmt.Errorf("data: %s:8: invalid JSON: unexpected end of input; %s", cfg.Data.Path, datasets.SkipBadRowsAdvice)
	}
	return pv, nil
}

// A file with a row that cannot be read: the page says tab skips such
// rows, the form's Unreadable rows field sets data.skip_bad_rows, and the
// preview counts the row skipped; or, the file fixed, enter on it reads it
// again. Before, the studio had no way to set data.skip_bad_rows, and
// enter on the refused file only repeated the refusal.
func TestDataPickerSkipsOrRereadsABadRow(t *testing.T) {
	for _, sz := range sizes {
		t.Run(fmt.Sprintf("%dx%d", sz.w, sz.h), func(t *testing.T) {
			fixed := false
			o := testOptions(&fake.Engine{})
			o.Data = badRowPreviewer{fixed: &fixed}
			d := newDriver(t, o, sz.w, sz.h)
			d.keys("enter", "enter", "down", "enter") // recipes.csv
			d.waitScreen("invalid JSON")
			if !strings.Contains(d.screen(), "press tab to skip unreadable rows, or fix the file and enter to read it again") {
				t.Errorf("the page should say how to go on:\n%s", d.screen())
			}
			checkSize(t, d.view(), sz.w, sz.h)
			golden(t, fmt.Sprintf("wizard_3data_badrow_%dx%d", sz.w, sz.h), d.view())
			d.keys("tab", "down", "down", "down")
			if !strings.Contains(d.screen(), "› Unreadable rows     ‹ stop at the first ›") {
				t.Fatalf("the form should offer skipping unreadable rows:\n%s", d.screen())
			}
			d.keys("right")
			checkSize(t, d.view(), sz.w, sz.h)
			golden(t, fmt.Sprintf("wizard_3data_skiprows_%dx%d", sz.w, sz.h), d.view())
			d.keys("enter")
			d.waitScreen("(1 skipped)")
			if !strings.Contains(d.screen(), "rows that cannot be read are skipped and counted (data.skip_bad_rows)") {
				t.Errorf("the settings line should say rows are skipped:\n%s", d.screen())
			}
			if !d.m.Config().Data.SkipBadRows {
				t.Errorf("Data.SkipBadRows is false after choosing to skip")
			}
			// Back to stopping at the first: refused again; the file
			// fixed, enter reads it again and goes on.
			d.keys("tab", "down", "down", "down", "left", "enter")
			d.waitScreen("invalid JSON")
			if d.m.Config().Data.SkipBadRows {
				t.Errorf("Data.SkipBadRows is true after choosing to stop")
			}
			fixed = true
			d.keys("enter")
			d.waitScreen("format messages · 120 rows")
			d.keys("enter")
			if !strings.Contains(d.screen(), "Run settings") {
				t.Fatalf("the fixed file should be usable:\n%s", d.screen())
			}
		})
	}
}

// A typed folder is previewed as whet train reads it (its data files as
// shards) instead of refused with "is a folder; give a file", which the
// loader never asked for.
func TestDataPickerOpensTypedFolder(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "shards")
	writeFile(t, filepath.Join(dir, "a.jsonl"), "{}\n")
	d := newDriver(t, testOptions(&fake.Engine{}), 80, 24)
	d.keys("enter", "enter")
	d.typeText(dir)
	d.keys("up", "enter") // the path row, not the file in it
	d.waitScreen("format messages")
	if s := d.screen(); strings.Contains(s, "is a folder") {
		t.Errorf("the folder was refused:\n%s", s)
	}
	d.keys("enter")
	if got := d.m.Config().Data.Path; got != dir {
		t.Errorf("Data.Path = %q, want the folder %q", got, dir)
	}
}

// With nothing previewed the data list takes the room a tall screen has
// (it stayed at 8 rows above an empty page): at 120x40 the list of 40
// files fills the page down to the hint line, at 80x24 it keeps its
// 6-row window (5 lines from the top: 3 files and a "more" line).
func TestDataListUsesTheRoomWhenNothingIsPreviewed(t *testing.T) {
	home := t.TempDir()
	t.Setenv("HOME", home)
	scan := filepath.Join(home, "many") // shown as ~/many: the same in every run
	for i := 0; i < 40; i++ {
		writeFile(t, filepath.Join(scan, fmt.Sprintf("part-%02d.jsonl", i)), "{}\n")
	}
	for _, sz := range []struct{ w, h, rows int }{{80, 24, 5}, {120, 40, 31}} {
		t.Run(fmt.Sprintf("%dx%d", sz.w, sz.h), func(t *testing.T) {
			o := testOptions(&fake.Engine{})
			o.DataDirs = []string{scan}
			d := newDriver(t, o, sz.w, sz.h)
			d.keys("enter", "enter") // the first model, the method's defaults
			d.waitScreen("enter on a file to preview it")
			if rows := listRows(d.screen()); len(rows) != sz.rows {
				t.Errorf("%d list rows, want %d:\n%s", len(rows), sz.rows, d.screen())
			}
			checkSize(t, d.view(), sz.w, sz.h)
			golden(t, fmt.Sprintf("wizard_3data_empty_%dx%d", sz.w, sz.h), d.view())
		})
	}
}

// readingPreviewer reads the file with the loader (datasets.ReadFile), so
// that the page shows the loader's own refusal, as the studio's previewer
// does; a file it reads gets the demo preview.
type readingPreviewer struct{}

func (readingPreviewer) Preview(_ context.Context, cfg engine.RunConfig, _ func(datasets.Progress)) (tui.DataPreview, error) {
	r, err := datasets.ReadFile(cfg.Data.Path, cfg.Data.SkipBadRows)
	if err != nil {
		return tui.DataPreview{}, fmt.Errorf("data: %w", err)
	}
	pv := fake.DemoPreview
	pv.Stats.Rows, pv.Stats.Skipped = len(r.Records), len(r.Bad)
	return pv, nil
}

// A row that is not UTF-8: the loader's advice (data.encoding, iconv, or
// data.skip_bad_rows) is shown whole and the page says tab skips such
// rows. Before, the message's third line was one cell too wide (a word
// that filled it kept its space), every line of the red block was cut
// with "…" at 80 columns, and the tab hint was missing (it looked for
// "data.skip_bad_rows: true", which this advice does not say).
func TestDataPickerNonUTF8Row(t *testing.T) {
	path := filepath.Join(t.TempDir(), "latin1.jsonl")
	writeFile(t, path, `{"messages":[{"role":"user","content":"hi"},{"role":"assistant","content":"ok"}]}`+"\n"+
		`{"messages":[{"role":"user","content":"caf`+"\xe9"+`"},{"role":"assistant","content":"ok"}]}`+"\n")
	for _, sz := range sizes {
		t.Run(fmt.Sprintf("%dx%d", sz.w, sz.h), func(t *testing.T) {
			o := testOptions(&fake.Engine{})
			o.Data = readingPreviewer{}
			d := newDriver(t, o, sz.w, sz.h)
			d.keys("enter", "enter")
			d.typeText(path)
			d.keys("enter")
			d.waitScreen("at byte offset")
			s := d.screen()
			if !strings.Contains(s, "press tab to skip unreadable rows, or fix the file and enter to read it again") {
				t.Errorf("the page should say tab skips the row:\n%s", s)
			}
			for _, l := range strings.Split(s, "\n") {
				if strings.Contains(l, "…") && !strings.Contains(l, "Enter a path…") {
					t.Errorf("the loader's advice should be shown whole, not cut: %q\n%s", l, s)
				}
			}
			if !strings.Contains(s, "data.skip_bad_rows") {
				t.Errorf("the advice should end with data.skip_bad_rows:\n%s", s)
			}
			checkSize(t, d.view(), sz.w, sz.h)
			d.keys("tab", "down", "down", "down", "right", "enter")
			d.waitScreen("(1 skipped)")
		})
	}
}

// slowPreviewer counts its calls and answers each once release is closed,
// like a file of 100k rows that takes a while to read.
type slowPreviewer struct {
	calls   *atomic.Int32
	release chan struct{}
}

func (s slowPreviewer) Preview(ctx context.Context, cfg engine.RunConfig, _ func(datasets.Progress)) (tui.DataPreview, error) {
	s.calls.Add(1)
	<-s.release
	return fake.DemoPreview, nil
}

// Enter again on a file whose preview is still being read says so and
// waits: it started the read over (seen in tmux on a 100k-row file, where
// an impatient enter restarted 40 s of reading, the first read running on
// beside the second), and never went on.
func TestDataPickerEnterWhileReading(t *testing.T) {
	calls := &atomic.Int32{}
	release := make(chan struct{})
	o := testOptions(&fake.Engine{})
	o.Data = slowPreviewer{calls: calls, release: release}
	d := newDriver(t, o, 80, 24)
	d.keys("enter", "enter", "enter") // the first file: reading
	d.waitScreen("reading testdata/datasets/persona.jsonl…")
	d.keys("enter", "enter")
	if s := d.screen(); !strings.Contains(s, "still reading the file: enter again once its preview shows") {
		t.Errorf("enter while reading should say it is still reading:\n%s", s)
	}
	close(release)
	d.waitScreen("format messages")
	// Counted once the first preview has shown: the read runs in a
	// command's goroutine, which the "reading" line does not wait for, so
	// counting earlier could see 0 (it did, in 1 of 30 runs).
	if n := calls.Load(); n != 1 {
		t.Errorf("the preview was started %d times, want once", n)
	}
	if strings.Contains(d.screen(), "still reading") {
		t.Errorf("the note should go once the preview shows:\n%s", d.screen())
	}
	d.keys("enter")
	if !strings.Contains(d.screen(), "Run settings") {
		t.Errorf("enter after the preview should go on:\n%s", d.screen())
	}
}

// steppedPreviewer reports a large file's read a step at a time: each
// report waits for step (or the stop), then the preview answers. ended
// counts the reads that have returned.
type steppedPreviewer struct {
	step  chan struct{}
	ended *atomic.Int32
}

func (s steppedPreviewer) Preview(ctx context.Context, cfg engine.RunConfig, progress func(datasets.Progress)) (tui.DataPreview, error) {
	defer s.ended.Add(1)
	for _, pr := range []datasets.Progress{
		{Stage: datasets.StageReading, Bytes: 9 << 20, TotalBytes: 36 << 20},
		{Stage: datasets.StageTokenizing, Rows: 45_000, TotalRows: 100_000},
	} {
		progress(pr)
		select {
		case <-s.step:
		case <-ctx.Done():
			return tui.DataPreview{}, ctx.Err()
		}
	}
	return fake.DemoPreview, nil
}

// A file that takes a while shows how far its read has come: the bytes
// read, then the rows tokenized, in a bar that fits the page.
func TestDataPickerShowsReadProgress(t *testing.T) {
	step := make(chan struct{})
	o := testOptions(&fake.Engine{})
	o.Data = steppedPreviewer{step: step, ended: &atomic.Int32{}}
	d := newDriver(t, o, 80, 24)
	d.keys("enter", "enter", "enter") // the first file: reading
	d.waitScreen(" 25%  9.00 MiB of 36.0 MiB read")
	if s := d.screen(); !strings.Contains(s, "esc stops reading") || !strings.Contains(s, "esc stop reading") {
		t.Errorf("the page and its footer should say esc stops the read:\n%s", s)
	}
	checkSize(t, d.view(), 80, 24)
	golden(t, "wizard_3data_reading_80x24", d.view())
	step <- struct{}{}
	d.waitScreen(" 45%  45.0k of 100k rows tokenized")
	step <- struct{}{}
	d.waitScreen("format messages")
}

// esc while reading stops the read and leaves the file chosen but unread;
// enter on it reads it again, and once read, goes on.
func TestDataPickerEscStopsTheRead(t *testing.T) {
	step := make(chan struct{})
	o := testOptions(&fake.Engine{})
	ended := &atomic.Int32{}
	o.Data = steppedPreviewer{step: step, ended: ended}
	d := newDriver(t, o, 80, 24)
	d.keys("enter", "enter", "enter")
	d.waitScreen("9.00 MiB of 36.0 MiB read")
	d.keys("esc")
	// The stopped read ends by itself (its context), before any step.
	d.waitFor("the stopped read to end", func() bool { return ended.Load() == 1 })
	s := d.screen()
	if !strings.Contains(s, "stopped reading testdata/datasets/persona.jsonl") || !strings.Contains(s, "Choose the training data") {
		t.Fatalf("esc while reading should stop the read and stay on the page:\n%s", s)
	}
	checkSize(t, d.view(), 80, 24)
	golden(t, "wizard_3data_stopped_80x24", d.view())
	d.keys("enter") // reads it again
	d.waitScreen("9.00 MiB of 36.0 MiB read")
	step <- struct{}{}
	step <- struct{}{}
	d.waitScreen("format messages")
	d.keys("enter")
	if !strings.Contains(d.screen(), "Run settings") {
		t.Errorf("enter after the preview should go on:\n%s", d.screen())
	}
}
