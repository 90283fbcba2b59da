package tui_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"whet/datasets"
	"whet/engine"
	"whet/tui"
	"whet/tui/fake"
)

// modelPreviewer previews any file as fake.DemoPreview, with a first line
// naming the model and template it was read with. Models without a folder
// have no weights here (as in the studio), and a model listed in gates
// answers only once its gate is closed.
type modelPreviewer struct {
	gates map[string]chan struct{}
}

func (p modelPreviewer) Preview(ctx context.Context, cfg engine.RunConfig, _ func(datasets.Progress)) (tui.DataPreview, error) {
	if g, ok := p.gates[cfg.Model]; ok {
		<-g
	}
	if !strings.Contains(cfg.Model, "/") {
		return tui.DataPreview{}, fmt.Errorf("%s has no weights on this machine", cfg.Model)
	}
	if cfg.Data.Path == "" {
		return tui.DataPreview{}, errors.New("no dataset path")
	}
	pv := fake.DemoPreview
	tmpl := cfg.Data.Template
	if tmpl == "" {
		tmpl = "from the tokenizer"
	}
	head := tui.Segment{Text: fmt.Sprintf("[read for %s, template %s]\n", cfg.Model, tmpl), Masked: true}
	pv.Examples = [][]tui.Segment{append([]tui.Segment{head}, pv.Examples[0]...)}
	return pv, nil
}

// A preview that failed for one model (no weights) is read again, at
// once, when the user comes back with another model.
func TestAnotherModelReevaluatesTheData(t *testing.T) {
	for _, sz := range sizes {
		t.Run(fmt.Sprintf("%dx%d", sz.w, sz.h), func(t *testing.T) {
			o := testOptions(&fake.Engine{})
			o.Catalog = fake.Catalog{{Name: "qwen2.5-0.5b-instruct", Repo: "Qwen/Qwen2.5-0.5B-Instruct", Params: 494_000_000, Template: "qwen2"}}
			o.Data = modelPreviewer{}
			d := newDriver(t, o, sz.w, sz.h)
			d.keys("down", "down", "enter", "enter") // after the two local folders: qwen, then its defaults
			d.keys("enter")                          // preview the first file
			d.waitScreen("qwen2.5-0.5b-instruct has no weights on this machine")
			d.keys("esc", "esc", "home", "enter", "enter") // back to the models: the local tiny-llama
			if !strings.Contains(d.screen(), "Choose the training data") {
				t.Fatalf("expected the data page:\n%s", d.screen())
			}
			d.waitScreen("[read for testdata/models/acme/tiny-llama, template from the tokenizer]")
			if s := d.screen(); strings.Contains(s, "no weights") {
				t.Errorf("the previous model's error should be gone:\n%s", s)
			}
			checkSize(t, d.view(), sz.w, sz.h)
			golden(t, fmt.Sprintf("wizard_3data_newmodel_%dx%d", sz.w, sz.h), d.view())
			d.keys("enter")
			if got := d.m.Config(); got.Data.Path != "testdata/datasets/persona.jsonl" || got.Data.Template != "" {
				t.Errorf("Data.Path = %q, Data.Template = %q; want the file chosen before and the new model's template (none)", got.Data.Path, got.Data.Template)
			}
		})
	}
}

// The same file chosen for another model is read again with that model's
// template.
func TestSameFileAnotherModelIsPreviewedAgain(t *testing.T) {
	o := testOptions(&fake.Engine{})
	o.Catalog = fake.Catalog{
		{Name: "demo", Path: demoPath, Template: "chatml", Dataset: "testdata/datasets/persona.jsonl"},
		{Name: "other", Path: "testdata/models/broken", Dataset: "testdata/datasets/persona.jsonl"},
	}
	o.Data = modelPreviewer{}
	d := newDriver(t, o, 80, 24)
	d.keys("enter", "enter")
	d.waitScreen("[read for " + demoPath + ", template chatml]")
	d.keys("esc", "esc", "home", "down", "enter", "enter")
	d.waitScreen("[read for testdata/models/broken, template from the tokenizer]")
}

// An answer that comes late, for the model the user has left, does not
// replace the preview for the model chosen since.
func TestLatePreviewForLeftModelIsDropped(t *testing.T) {
	o := testOptions(&fake.Engine{})
	o.Catalog = fake.Catalog{
		{Name: "demo", Path: demoPath, Template: "chatml", Dataset: "testdata/datasets/persona.jsonl"},
		{Name: "other", Path: "testdata/models/broken", Template: "llama3", Dataset: "testdata/datasets/persona.jsonl"},
	}
	gate := make(chan struct{})
	o.Data = modelPreviewer{gates: map[string]chan struct{}{demoPath: gate}}
	d := newDriver(t, o, 80, 24)
	d.keys("enter", "enter") // the demo's preview starts and waits at its gate
	d.waitScreen("reading testdata/datasets/persona.jsonl")
	// esc stops the read (this previewer answers all the same, once its
	// gate opens), then esc, esc back to the models.
	d.keys("esc", "esc", "esc", "home", "down", "enter", "enter")
	d.waitScreen("[read for testdata/models/broken, template llama3]")
	close(gate)
	d.send(<-d.msgs) // the demo's answer, late
	if s := d.screen(); !strings.Contains(s, "[read for testdata/models/broken, template llama3]") {
		t.Errorf("the late answer for the demo replaced the preview for the model chosen since:\n%s", s)
	}
}
