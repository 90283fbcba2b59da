package engine

import (
	"os"
	"path/filepath"
	"testing"
)

// The data fingerprint follows the bytes of a file, of every file in a
// folder, and of every file a glob pattern matches; a file moved with the
// same bytes keeps its fingerprint.
func TestFingerprintDataFollowsContent(t *testing.T) {
	dir := t.TempDir()
	write := func(name, text string) {
		t.Helper()
		os.MkdirAll(filepath.Dir(filepath.Join(dir, name)), 0o755)
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	sum := func(path string) string {
		t.Helper()
		s, err := fingerprintData(path)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	write("shards/a.jsonl", "{\"text\":\"a\"}\n")
	write("shards/b.jsonl", "{\"text\":\"b\"}\n")
	write("moved/a.jsonl", "{\"text\":\"a\"}\n")
	file, folder, glob := filepath.Join(dir, "shards", "a.jsonl"), filepath.Join(dir, "shards"), filepath.Join(dir, "shards", "*.jsonl")
	before := map[string]string{file: sum(file), folder: sum(folder), glob: sum(glob)}
	if sum(filepath.Join(dir, "moved", "a.jsonl")) != before[file] {
		t.Error("the same bytes elsewhere should keep the fingerprint")
	}
	write("shards/b.jsonl", "{\"text\":\"c\"}\n")
	if sum(file) != before[file] {
		t.Error("a.jsonl did not change")
	}
	for _, p := range []string{folder, glob} {
		if sum(p) == before[p] {
			t.Errorf("%s: a changed shard kept the fingerprint", p)
		}
	}
	if sum("org/dataset") == sum("org/other") {
		t.Error("two dataset ids share a fingerprint")
	}
}
