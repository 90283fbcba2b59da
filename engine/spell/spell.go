// Package spell holds the one rule behind whet's "did you mean": how far
// apart two names are, and how far a misspelling may be from the name it
// was meant to be. It imports nothing of whet, so that every package
// (the engine's run-file keys, main's flags, the catalog, the chat
// templates' filters, the Hub cache's repo ids, the WHET_* switches) can
// use the same rule.
package spell

import "strings"

// maxEdits is how many edits a misspelling may be from the name meant;
// shortEdits is the limit for a typo of shortLen letters or fewer, whose
// names are all one or two letters apart from one another.
const (
	maxEdits   = 2
	shortEdits = 1
	shortLen   = 4
)

// Distance is the number of edits (a letter inserted, deleted, replaced,
// or two neighbours swapped) that turn a into b, counted in runes: the
// optimal string alignment distance. A swap counts as one edit because it
// is the commonest typo (lenght, loar, whet-test/tiyn) and Levenshtein's
// two would put it beyond the limit of short names.
func Distance(a, b string) int {
	ra, rb := []rune(a), []rune(b)
	// rows i-2, i-1 and i of the table, each len(rb)+1 long.
	prev2 := make([]int, len(rb)+1)
	prev := make([]int, len(rb)+1)
	cur := make([]int, len(rb)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(ra); i++ {
		cur[0] = i
		for j := 1; j <= len(rb); j++ {
			cost := 1
			if ra[i-1] == rb[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
			if i > 1 && j > 1 && ra[i-1] == rb[j-2] && ra[i-2] == rb[j-1] {
				cur[j] = min(cur[j], prev2[j-2]+1)
			}
		}
		prev2, prev, cur = prev, cur, prev2
	}
	return prev[len(rb)]
}

// Near says whether typo is close enough to name to be offered as "did
// you mean name?", with their distance (case ignored) to rank several
// near names by. It is close when it is the same but for case, or at most
// two edits away (one for a typo of four letters or fewer), and fewer
// edits away than name has letters ("e" is no misspelling of "d").
func Near(typo, name string) (dist int, ok bool) {
	d := Distance(strings.ToLower(typo), strings.ToLower(name))
	limit := maxEdits
	if len([]rune(typo)) <= shortLen {
		limit = shortEdits
	}
	return d, d <= limit && d < len([]rune(name))
}
