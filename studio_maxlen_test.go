package main

import (
	"path/filepath"
	"testing"

	"whet/tui"
)

// The studio's method defaults fit the max length to the model: the tiny
// test models know 512 positions, so lora/qlora/full/dpo start at 512 and
// not the method's 2048 (dpo: 1024); a catalog model with 131072 positions keeps the
// method's, and so does a run whose model is not chosen yet.
func TestStudioPresetsMaxLengthFitsTheModel(t *testing.T) {
	tiny := filepath.Join("testdata", "tiny-llama")
	for _, c := range []struct {
		model, method string
		want          int
	}{
		{tiny, "lora", 512},
		{tiny, "qlora", 512},
		{tiny, "full", 512},
		{tiny, "dpo", 512},
		{tiny, "grpo", 512},
		{"llama-3.2-1b", "lora", 2048},
		{"", "lora", 2048},
	} {
		var p tui.Presets = studioPresets{}
		rc, err := p.Defaults(c.model, c.method)
		if err != nil {
			t.Fatalf("%s %s: %v", c.model, c.method, err)
		}
		if rc.Data.MaxLength != c.want {
			t.Errorf("%q %s: max length %d, want %d", c.model, c.method, rc.Data.MaxLength, c.want)
		}
	}
}
