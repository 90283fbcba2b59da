package tui

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The list keeps the newest recentLimit files, each once, newest first,
// and leaves out files that are gone.
func TestRecentListKeepsNewestFirst(t *testing.T) {
	dir := t.TempDir()
	list := filepath.Join(dir, "config", "whet", "recent")
	var files []string
	for i := range recentLimit + 2 {
		f := filepath.Join(dir, fmt.Sprintf("d%d.jsonl", i))
		if err := os.WriteFile(f, []byte("{}\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		files = append(files, f)
		if err := addRecent(list, f); err != nil {
			t.Fatal(err)
		}
	}
	if err := addRecent(list, files[5]); err != nil { // again: moves to the front
		t.Fatal(err)
	}
	os.Remove(files[9])
	got, err := readRecent(list)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{files[5], files[8], files[7], files[6], files[4], files[3], files[2]}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("recent = %v\nwant %v", got, want)
	}
	if err := addRecent(list, filepath.Join(dir, "bad\nname.jsonl")); err == nil || !strings.Contains(err.Error(), "line break") {
		t.Errorf("a name with a line break should be refused, got %v", err)
	}
	if got, err := readRecent(filepath.Join(dir, "none")); err != nil || got != nil {
		t.Errorf("a missing list should be empty: %v, %v", got, err)
	}
}
