package tui_test

import (
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"whet/engine"
	"whet/tui/fake"
)

// finishRunWithExporter runs the default fake run to its summary at w×h
// with ex as the studio's exporter.
func finishRunWithExporter(t *testing.T, ex *fake.Exporter, w, h int) *driver {
	t.Helper()
	o := testOptions(&fake.Engine{Script: scriptSteps(3)})
	o.Exporter = ex
	return finishRunSized(t, o, w, h)
}

var testRunDir = filepath.Join("runs", "run-"+fixedNow().Format("20060102-150405"))

func TestGoldenExportPage(t *testing.T) {
	for _, sz := range sizes {
		t.Run(fmt.Sprintf("%dx%d", sz.w, sz.h), func(t *testing.T) {
			// The fake stops after 7 of its 21 GGUF steps until cancelled,
			// so the mid-progress view is fixed.
			ex := &fake.Exporter{HoldAfter: 7}
			d := finishRunWithExporter(t, ex, sz.w, sz.h)
			d.keys("e")
			checkSize(t, d.view(), sz.w, sz.h)
			golden(t, fmt.Sprintf("export_idle_%dx%d", sz.w, sz.h), d.view())
			d.keys("enter")
			d.waitScreen("7/21")
			checkSize(t, d.view(), sz.w, sz.h)
			golden(t, fmt.Sprintf("export_progress_%dx%d", sz.w, sz.h), d.view())
			d.keys("esc")
			d.waitFor("the export to be cancelled", func() bool { return ex.Cancelled() == 1 })
		})
	}
}

// The whole flow: summary, e, GGUF q8_0, enter, progress, the path.
func TestExportFlowWritesGGUF(t *testing.T) {
	ex := &fake.Exporter{}
	d := finishRunWithExporter(t, ex, 80, 24)
	if !strings.Contains(d.screen(), "e export") {
		t.Fatalf("the summary's help line should offer the export:\n%s", d.screen())
	}
	d.keys("e")
	if s := d.screen(); !strings.Contains(s, "› GGUF") || !strings.Contains(s, "[q8_0]") {
		t.Fatalf("the export page should open on GGUF q8_0:\n%s", s)
	}
	// Walk away from the defaults and back, as a user might.
	d.keys("up", "right", "down", "right", "left")
	if s := d.screen(); !strings.Contains(s, "› GGUF") || !strings.Contains(s, "[q8_0]") {
		t.Fatalf("expected GGUF q8_0 selected again:\n%s", s)
	}
	out := filepath.Join(testRunDir, "export", "gguf-q8_0")
	if !strings.Contains(d.screen(), "Output     "+out) {
		t.Errorf("the page should show the output folder %s:\n%s", out, d.screen())
	}
	d.keys("enter")
	d.waitScreen("✓ GGUF q8_0 written to " + out)
	s := d.screen()
	for _, want := range []string{"21/21", "files: model.gguf, Modelfile", "Ollama Modelfile written", "  cd " + out + "\n  ollama create run-20261126-120000 -f Modelfile"} {
		if !strings.Contains(s, want) {
			t.Errorf("the finished export lacks %q:\n%s", want, s)
		}
	}
	reqs := ex.Requests()
	want := fake.ExportRequest{RunDir: testRunDir, Format: "gguf", Quant: "q8_0", OutDir: out}
	if len(reqs) != 1 || reqs[0] != want {
		t.Errorf("export requests = %+v, want one %+v", reqs, want)
	}
	checkSize(t, d.view(), 80, 24)

	// Merged safetensors in f16 (chosen on the way above and kept), then
	// a PEFT adapter (no precision).
	d.keys("up", "enter")
	d.waitScreen("✓ Merged safetensors f16 written to " + filepath.Join(testRunDir, "export", "merged-f16"))
	if strings.Contains(d.screen(), "Modelfile written") || !strings.Contains(d.screen(), "23/23") {
		t.Errorf("a merged export writes no Modelfile, in 23 steps:\n%s", d.screen())
	}
	d.keys("up", "enter")
	d.waitScreen("✓ PEFT adapter written to " + filepath.Join(testRunDir, "export", "peft"))
	if got := ex.Requests(); len(got) != 3 || got[1].Quant != "f16" || got[2].Quant != "" {
		t.Errorf("requests = %+v", got)
	}
	d.keys("esc")
	if !strings.Contains(d.screen(), "✓ finished") {
		t.Errorf("esc should go back to the summary:\n%s", d.screen())
	}
}

func TestExportEscCancelsRunningExport(t *testing.T) {
	ex := &fake.Exporter{HoldAfter: 3}
	d := finishRunWithExporter(t, ex, 80, 24)
	d.keys("e", "enter")
	d.waitScreen("3/21")
	if !strings.Contains(d.screen(), "esc cancel the export and go back") {
		t.Errorf("while exporting, the help line should say esc cancels:\n%s", d.screen())
	}
	d.keys("esc")
	if !strings.Contains(d.screen(), "✓ finished") {
		t.Fatalf("esc should go back to the summary at once:\n%s", d.screen())
	}
	d.waitFor("the exporter's context to be cancelled", func() bool { return ex.Cancelled() == 1 })
	d.keys("e")
	if s := d.screen(); !strings.Contains(s, "export cancelled") || strings.Contains(s, "written to") {
		t.Errorf("coming back should say the export was cancelled:\n%s", s)
	}
	// Another choice clears the cancelled export's bar.
	d.keys("up")
	if s := d.screen(); strings.Contains(s, "3/21") || strings.Contains(s, "cancelled") {
		t.Errorf("the bar and outcome of the cancelled GGUF export should go with another format:\n%s", s)
	}
	d.keys("down")
	// The page accepts a new export after a cancelled one.
	ex.HoldAfter = 0
	d.keys("enter")
	d.waitScreen("✓ GGUF q8_0 written to")
}

func TestExportErrorIsShown(t *testing.T) {
	ex := &fake.Exporter{Err: errors.New("export: runs/x: LoRA run without a saved adapter (has the run finished?)")}
	d := finishRunWithExporter(t, ex, 80, 24)
	d.keys("e", "enter")
	d.waitScreen("✗ GGUF q8_0 export failed: export: runs/x: LoRA run without a saved")
	if strings.Contains(d.screen(), "written to") {
		t.Errorf("a failed export must not claim files were written:\n%s", d.screen())
	}
}

func TestNoExportWithoutExporterOrAfterFailure(t *testing.T) {
	o := testOptions(&fake.Engine{Script: scriptSteps(3)})
	d := finishRun(t, o)
	if strings.Contains(d.screen(), "e export") {
		t.Errorf("without an exporter the summary should not offer the export:\n%s", d.screen())
	}
	d.keys("e")
	if !strings.Contains(d.screen(), "✓ finished") {
		t.Errorf("e without an exporter should stay on the summary:\n%s", d.screen())
	}

	// A failed run left nothing to export.
	failed := append(scriptSteps(2), fake.Step{Event: engine.DoneEvent{Step: 2, Err: errors.New("cuda: out of memory")}})
	o = testOptions(&fake.Engine{Script: failed})
	o.Exporter = &fake.Exporter{}
	d = newDriver(t, o, 80, 24)
	startDefaultRun(t, d)
	d.waitScreen("✗ failed")
	if strings.Contains(d.screen(), "e export") {
		t.Errorf("a failed run should not offer the export:\n%s", d.screen())
	}
	d.keys("e")
	if !strings.Contains(d.screen(), "✗ failed") {
		t.Errorf("e after a failed run should stay on the summary:\n%s", d.screen())
	}
}

// ctrl+c while an export runs: the studio quits, and closing it (what the
// command does after the program ends) waits for the cancelled exporter to
// remove what it wrote before returning, instead of letting the process
// exit mid-way and leave a half-written export.
func TestQuitDuringExportWaitsForItsCleanup(t *testing.T) {
	ex := &fake.Exporter{HoldAfter: 3, Cleanup: 300 * time.Millisecond}
	d := finishRunWithExporter(t, ex, 80, 24)
	d.keys("e", "enter")
	d.waitScreen("3/21")
	d.keys("ctrl+c")
	d.waitFor("ctrl+c to quit", func() bool { return d.quit })
	d.m.Close()
	if got := ex.Cancelled(); got != 1 {
		t.Errorf("Close returned with %d exports done cancelling, want 1: it did not wait for the export's cleanup", got)
	}
}
