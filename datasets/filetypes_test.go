package datasets

import "testing"

func TestIsDataFileMatchesTheLoaders(t *testing.T) {
	for path, want := range map[string]bool{
		"a.jsonl": true, "b.NDJSON": true, "c.json": true, "d.csv": true, "e.tsv": true, "f.parquet": true, "g.pq": true,
		"notes.txt": false, "README.md": false, "model.safetensors": false, "noext": false,
	} {
		if got := IsDataFile(path); got != want {
			t.Errorf("IsDataFile(%q) = %v, want %v", path, got, want)
		}
	}
}
