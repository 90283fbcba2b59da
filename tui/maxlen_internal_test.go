package tui

import (
	"path/filepath"
	"testing"
)

// catalogPresets fit the max length to the model as the studio's do
// (presets.MaxLengthFor): 512 for a tiny test model with 512 positions,
// the method's 2048 for a catalog model that knows more or none chosen.
func TestCatalogPresetsMaxLengthFitsTheModel(t *testing.T) {
	for model, want := range map[string]int{
		filepath.Join("..", "testdata", "tiny-llama"): 512,
		"llama-3.2-1b": 2048,
		"":             2048,
	} {
		rc, err := catalogPresets{}.Defaults(model, "lora")
		if err != nil {
			t.Fatal(err)
		}
		if rc.Data.MaxLength != want {
			t.Errorf("%q: max length %d, want %d", model, rc.Data.MaxLength, want)
		}
	}
}
