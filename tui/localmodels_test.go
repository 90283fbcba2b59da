package tui_test

import (
	"strings"
	"testing"

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
