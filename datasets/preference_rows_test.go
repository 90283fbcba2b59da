package datasets

import (
	"strconv"
	"strings"
	"testing"
)

// TestMalformedPreferenceRows: a missing chosen, identical chosen and
// rejected, and an empty prompt are each reported by line with a reason;
// with skip-bad-rows the good rows remain and the reasons are counted.
func TestMalformedPreferenceRows(t *testing.T) {
	path := "../testdata/datasets/bad-preference.jsonl"
	res, err := ReadFile(path, true)
	if err != nil {
		t.Fatal(err)
	}
	want := map[int]string{2: "chosen", 3: "identical", 4: "prompt is empty"}
	got := map[int]string{}
	for _, rec := range res.Records {
		_, rowErr := ToExample(rec, FormatPreference, nil)
		if rowErr != nil {
			got[rowErr.Loc.Line] = rowErr.Error()
		}
	}
	for line, frag := range want {
		msg, ok := got[line]
		if !ok {
			t.Errorf("line %d not reported (reports: %v)", line, got)
			continue
		}
		if !strings.Contains(msg, frag) || !strings.Contains(msg, "bad-preference.jsonl:"+strconv.Itoa(line)) {
			t.Errorf("line %d: %q should name the file and line and say %q", line, msg, frag)
		}
	}
	for _, m := range got {
		t.Log(m)
	}
	if len(got) != len(want) {
		t.Errorf("reported %d rows, want %d: %v", len(got), len(want), got)
	}
}
