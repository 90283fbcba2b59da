package spell

import "testing"

// Distance counts inserts, deletes, replacements and swaps of neighbours,
// one edit each, by rune.
func TestDistance(t *testing.T) {
	for _, c := range []struct {
		a, b string
		want int
	}{
		{"", "", 0},
		{"", "abc", 3},
		{"trim", "trim", 0},
		{"trimm", "trim", 1},
		{"lenght", "length", 1}, // a swap is one edit, not Levenshtein's two
		{"loar", "lora", 1},
		{"whet-test/tiyn", "whet-test/tiny", 1},
		{"ab", "ba", 1},
		{"abc", "ca", 3}, // no substring is edited twice
		{"kitten", "sitting", 3},
		{"größe", "grösse", 2}, // runes, not bytes
		{"Upper", "upper", 1},
	} {
		if got := Distance(c.a, c.b); got != c.want {
			t.Errorf("Distance(%q, %q) = %d, want %d", c.a, c.b, got, c.want)
		}
		if got := Distance(c.b, c.a); got != c.want {
			t.Errorf("Distance(%q, %q) = %d, want %d (symmetric)", c.b, c.a, got, c.want)
		}
	}
}

// Near is the one "close enough" rule: case ignored, two edits, one for a
// short typo, and never a whole name replaced.
func TestNear(t *testing.T) {
	for _, c := range []struct {
		typo, name string
		dist       int
		near       bool
	}{
		{"Whet-Test/Tiny", "whet-test/tiny", 0, true},
		{"WHET_DECODE_ATN", "WHET_DECODE_ATTN", 1, true},
		{"lerning_rate", "learning_rate", 1, true},
		{"tojsn", "tojson", 1, true},
		{"qwen2.5-05b", "qwen2.5-0.5b", 1, true},
		{"gemma-3-1b-itt", "gemma-3-1b-it", 1, true},
		{"model-dir", "models-dir", 1, true},
		{"lerning_rat", "learning_rate", 2, true},
		{"lerning_ra", "learning_rate", 3, false}, // three edits
		{"WHET_DECODE_A", "WHET_DECODE_ATTN", 3, false},
		{"loar", "lora", 1, true},
		{"od", "odd", 1, true},
		{"abcd", "abs", 2, false}, // a short typo gets one edit
		{"trmm", "trim", 1, true},
		{"q", "e", 1, false},  // not fewer edits than the name has letters
		{"xy", "e", 2, false}, // (nor within one, for a short typo)
		{"runz", "runs", 1, true},
	} {
		d, near := Near(c.typo, c.name)
		if d != c.dist || near != c.near {
			t.Errorf("Near(%q, %q) = %d, %v; want %d, %v", c.typo, c.name, d, near, c.dist, c.near)
		}
	}
}
