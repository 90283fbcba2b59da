package main

import (
	"bufio"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestFuzzTargetsAreListed: every fuzz target in the repository is listed
// in tools/fuzz/*.txt (which tools/test.sh fuzzes), once, and every listed
// line names a target of that package, so that a new target is not left
// out of CI and a renamed one does not leave a line that fuzzes nothing
// (go test -fuzz with no match only warns).
func TestFuzzTargetsAreListed(t *testing.T) {
	decl := regexp.MustCompile(`(?m)^func (Fuzz\w*)\(\w+ \*testing\.F\)`)
	have := map[string]bool{} // "pkg Name", pkg as tools/fuzz writes it
	err := filepath.WalkDir(".", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if path != "." && (strings.HasPrefix(d.Name(), ".") || d.Name() == "testdata" || d.Name() == "node_modules") {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, "_test.go") {
			return nil
		}
		src, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		pkg := "."
		if dir := filepath.Dir(path); dir != "." {
			pkg = "./" + filepath.ToSlash(dir)
		}
		for _, m := range decl.FindAllSubmatch(src, -1) {
			have[pkg+" "+string(m[1])] = true
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	lists, err := filepath.Glob("tools/fuzz/*.txt")
	if err != nil || len(lists) == 0 {
		t.Fatalf("no tools/fuzz/*.txt: %v", err)
	}
	listed := map[string]string{}
	for _, list := range lists {
		f, err := os.Open(list)
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(f)
		for n := 1; sc.Scan(); n++ {
			fields := strings.Fields(sc.Text())
			if len(fields) == 0 {
				continue
			}
			line := strings.Join(fields, " ")
			switch {
			case len(fields) != 2:
				t.Errorf("%s line %d: %q, want PACKAGE FuzzName", list, n, sc.Text())
			case listed[line] != "":
				t.Errorf("%s line %d: %s is listed already in %s", list, n, line, listed[line])
			case !have[line]:
				t.Errorf("%s line %d: no fuzz target %s in package %s", list, n, fields[1], fields[0])
			}
			listed[line] = list
		}
		f.Close()
	}
	for target := range have {
		if listed[target] == "" {
			t.Errorf("fuzz target %s is in no tools/fuzz/*.txt list, so CI never fuzzes it", target)
		}
	}
}
