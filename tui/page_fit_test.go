package tui_test

import (
	"fmt"
	"strings"
	"testing"

	"whet/tui"
	"whet/tui/fake"
)

// TestGoldenFitUnifiedMemory: on a unified-memory machine (a fake DGX Spark
// report) the fit page says that CPU and GPU share the memory and that the
// plan is checked against what the system has available, at both sizes.
func TestGoldenFitUnifiedMemory(t *testing.T) {
	for _, sz := range sizes {
		t.Run(fmt.Sprintf("%dx%d", sz.w, sz.h), func(t *testing.T) {
			o := testOptions(&fake.Engine{})
			o.Fit = fake.FitChecker{Device: "NVIDIA GB10", Free: 96 << 30, Total: 119 << 30, Params: fake.DemoCatalog.Params,
				Unified: `the CUDA driver reports an integrated GPU; NVML reports its memory as "not supported"`}
			d := toFitPage(t, o, sz.w, sz.h)
			d.waitScreen("Fits:")
			checkSize(t, d.view(), sz.w, sz.h)
			golden(t, fmt.Sprintf("fit_unified_%dx%d", sz.w, sz.h), d.view())
		})
	}
}

// toFitPage walks the wizard to the fit page: the fourth model, its
// method, the data file's preview, the data and settings pages.
func toFitPage(t *testing.T, o tui.Options, w, h int) *driver {
	t.Helper()
	d := newDriver(t, o, w, h)
	d.keys("down", "down", "down", "enter") // model
	d.keys("enter")                         // method
	d.keys("enter")                         // the data file: its preview
	d.waitScreen("format messages")
	d.keys("enter") // data
	d.keys("enter") // settings
	return d
}

// TestGoldenFitMaxSeq: the fit page offers the longest context that fits
// (the plan's bisection, here the fake's linear plan) and m sets the max
// length to it and re-checks; the golden views are before and after.
func TestGoldenFitMaxSeq(t *testing.T) {
	for _, sz := range sizes {
		t.Run(fmt.Sprintf("%dx%d", sz.w, sz.h), func(t *testing.T) {
			o := testOptions(&fake.Engine{})
			o.Fit = fake.FitChecker{Device: "NVIDIA H100 80GB HBM3", Free: 24 << 30, Total: 80 << 30, Params: fake.DemoCatalog.Params, MaxSeq: true}
			d := toFitPage(t, o, sz.w, sz.h)
			d.waitScreen("Longest context that fits")
			checkSize(t, d.view(), sz.w, sz.h)
			golden(t, fmt.Sprintf("fit_maxseq_%dx%d", sz.w, sz.h), d.view())
			d.keys("m")
			d.waitScreen("applied: max length")
			if strings.Contains(d.screen(), "Longest context that fits") {
				t.Errorf("after m the max length is the longest, yet it is still offered:\n%s", d.screen())
			}
			checkSize(t, d.view(), sz.w, sz.h)
			golden(t, fmt.Sprintf("fit_maxseq_applied_%dx%d", sz.w, sz.h), d.view())
		})
	}
}

// A warning longer than the page is wrapped, not cut: the Gemma 3 vision
// note ("planned for 1 image(s) per sequence (the data's fullest row), …")
// lost its end at 80 columns.
func TestFitWarningsWrap(t *testing.T) {
	o := testOptions(&fake.Engine{})
	o.Fit = fake.FitChecker{Device: "CPU", Free: 24 << 30, Total: 32 << 30, Params: fake.DemoCatalog.Params,
		Warnings: []string{"Gemma 3 vision: planned for 1 image(s) per sequence (the data's fullest row), each of 256 tokens after the vision tower; more images per row need more memory"}}
	d := toFitPage(t, o, 80, 24)
	d.waitScreen("Fits:")
	if s := d.screen(); !strings.Contains(s, "more images per row need more memory") {
		t.Errorf("the warning's end is cut:\n%s", s)
	}
	checkSize(t, d.view(), 80, 24)
}

// TestGoldenFitMaxSeqCappedByModel: when memory allows a longer context
// than the model was trained on, the page does not call the model's
// positions "the longest context that fits" (a max length of 2048 fit,
// yet "Longest context that fits: 512" was offered for the 512-position
// tiny model): it says the max length is past the model's positions, and
// m sets it to them.
func TestGoldenFitMaxSeqCappedByModel(t *testing.T) {
	for _, sz := range sizes {
		t.Run(fmt.Sprintf("%dx%d", sz.w, sz.h), func(t *testing.T) {
			o := testOptions(&fake.Engine{})
			o.Fit = fake.FitChecker{Device: "CPU", Free: 24 << 30, Total: 32 << 30, Params: fake.DemoCatalog.Params, MaxSeq: true, MaxPositions: 512}
			d := toFitPage(t, o, sz.w, sz.h)
			d.waitScreen("Fits:")
			s := d.screen()
			if ml := d.m.Config().Data.MaxLength; ml <= 512 {
				t.Fatalf("max length %d: the test wants one past the model's 512 positions", ml)
			}
			if strings.Contains(s, "Longest context that fits") || !strings.Contains(s, "is past the 512 positions the model was trained on") {
				t.Errorf("the page should say the max length is past the model's positions:\n%s", s)
			}
			checkSize(t, d.view(), sz.w, sz.h)
			golden(t, fmt.Sprintf("fit_maxseq_model_%dx%d", sz.w, sz.h), d.view())
			d.keys("m")
			d.waitScreen("applied: max length 512 tokens, the positions the model was trained on")
			if got := d.m.Config().Data.MaxLength; got != 512 {
				t.Errorf("max length %d after m, want 512", got)
			}
			if s := d.screen(); strings.Contains(s, "positions the model was trained on (max") || strings.Contains(s, "Longest context") {
				t.Errorf("after m nothing more is offered:\n%s", s)
			}
		})
	}
}
