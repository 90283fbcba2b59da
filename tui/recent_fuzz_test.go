package tui

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// FuzzRecentList: the recent-datasets list, whatever it holds (a list
// edited by hand, a damaged one), reads without an error as the files it
// names that exist, each once; and a file added then reads first, under
// its own name. "$D" in the list stands for a folder holding the files
// a.jsonl, "b c.jsonl", " lead.jsonl", "trail.jsonl " and the fuzzed name.
func FuzzRecentList(f *testing.F) {
	f.Add([]byte("$D/a.jsonl\n$D/b c.jsonl\n"), "new.jsonl")
	f.Add([]byte("$D/a.jsonl\r\n  $D/b c.jsonl  \n\n"), "a.jsonl")
	f.Add([]byte("$D/ lead.jsonl\n$D/trail.jsonl \n$D/a.jsonl\n$D/a.jsonl\n"), " x ")
	f.Add([]byte("relative.jsonl\n$D\n/\x00\n$D/gone.jsonl"), "trail.jsonl ")
	f.Add([]byte{}, "bad\nname")
	f.Add([]byte("$D/a.jsonl"), "\r")
	// One folder per fuzzing process (a folder made and removed for each
	// input slows the minimizer to a halt); the fuzzed name's file is
	// removed after each input.
	dir, list := f.TempDir(), filepath.Join(f.TempDir(), "recent-datasets")
	fixed := []string{"a.jsonl", "b c.jsonl", " lead.jsonl", "trail.jsonl "}
	for _, n := range fixed {
		if err := os.WriteFile(filepath.Join(dir, n), []byte("{}\n"), 0o644); err != nil {
			f.Fatal(err)
		}
	}
	f.Fuzz(func(t *testing.T, raw []byte, name string) {
		made := name != "" && name != "." && name != ".." && !strings.ContainsAny(name, "/\x00") && len(name) < 200
		if made && !slices.Contains(fixed, name) {
			if err := os.WriteFile(filepath.Join(dir, name), []byte("{}\n"), 0o644); err != nil {
				made = false // a name this file system refuses
			} else {
				defer os.Remove(filepath.Join(dir, name))
			}
		}
		raw = bytes.ReplaceAll(raw, []byte("$D"), []byte(dir))
		if err := os.WriteFile(list, raw, 0o600); err != nil {
			t.Fatal(err)
		}
		got, err := readRecent(list)
		if err != nil {
			t.Fatalf("%q: %v", raw, err)
		}
		lines := strings.Split(string(raw), "\n")
		for i, g := range got {
			st, err := os.Stat(g)
			if !filepath.IsAbs(g) || err != nil || st.IsDir() || slices.Index(got, g) != i {
				t.Fatalf("%q read as %q: %q is not an existing file listed once (%v)", raw, got, g, err)
			}
			if !slices.ContainsFunc(lines, func(l string) bool { return strings.TrimSuffix(l, "\r") == g || strings.TrimSpace(l) == g }) {
				t.Fatalf("%q read as %q: %q is on no line", raw, got, g)
			}
		}
		if !made {
			return
		}
		file := filepath.Join(dir, name)
		err = addRecent(list, file)
		if strings.ContainsAny(file, "\r\n") {
			if err == nil || !strings.Contains(err.Error(), "line break") {
				t.Fatalf("%q: %v", file, err)
			}
			return
		}
		if err != nil {
			t.Fatalf("add %q: %v", file, err)
		}
		again, err := readRecent(list)
		if err != nil || len(again) == 0 || again[0] != filepath.Clean(file) || len(again) > recentLimit {
			t.Fatalf("after adding %q to %q: %q, %v", file, raw, again, err)
		}
		// The others keep their order behind it.
		var rest []string
		for _, g := range got {
			if g != filepath.Clean(file) {
				rest = append(rest, g)
			}
		}
		if n := min(len(rest), recentLimit-1); !slices.Equal(again[1:], rest[:n]) {
			t.Fatalf("after adding %q to %q (read as %q): %q", file, raw, got, again)
		}
	})
}

// A dataset whose name ends (or begins) with a space is found again: the
// list trimmed every line, so it named another file, and the data page
// left it out of its recent files.
func TestRecentListKeepsSpacesInNames(t *testing.T) {
	dir := t.TempDir()
	list := filepath.Join(dir, "recent")
	for _, n := range []string{"train.jsonl ", " eval.jsonl"} {
		f := filepath.Join(dir, n)
		if err := os.WriteFile(f, []byte("{}\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := addRecent(list, f); err != nil {
			t.Fatal(err)
		}
	}
	got, err := readRecent(list)
	if want := []string{filepath.Join(dir, " eval.jsonl"), filepath.Join(dir, "train.jsonl ")}; err != nil || !slices.Equal(got, want) {
		t.Fatalf("recent = %q, %v; want %q", got, err, want)
	}
}
