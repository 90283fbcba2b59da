package tui_test

import (
	"strconv"
	"testing"

	"whet/presets"
	"whet/tui/fake"
)

// TestWizardStartsFromTheMethodPresets: a studio given no Presets of its
// own shows the method defaults of presets/methods.yaml, the one place
// they live (the wizard once kept a table of its own that disagreed: alpha
// 32 against 16, dropout 0.05 against 0, 3 epochs against 1).
func TestWizardStartsFromTheMethodPresets(t *testing.T) {
	d := newDriver(t, testOptions(&fake.Engine{}), 120, 40)
	d.keys("enter") // model: the first catalog entry
	lora, err := presets.LookupMethod("lora")
	if err != nil {
		t.Fatal(err)
	}
	want := lora.RunConfig()
	for label, v := range map[string]string{
		"LoRA rank (r)": strconv.Itoa(want.LoRA.Rank),
		"LoRA alpha":    strconv.FormatFloat(want.LoRA.Alpha, 'g', -1, 64),
		"LoRA dropout":  strconv.FormatFloat(want.LoRA.Dropout, 'g', -1, 64),
	} {
		if got := fieldValue(d.screen(), label); got != v {
			t.Errorf("%s shows %q, want the preset's %s:\n%s", label, got, v, d.screen())
		}
	}
}
