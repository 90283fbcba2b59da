package jinja

import (
	"sort"
	"strings"

	"whet/engine/spell"
)

// didYouMean is "; did you mean 'trim'?" when a filter or test name that
// does not exist is a misspelling of one that does (the same but for
// case, or at most two letters apart, and not shorter than the typo's
// edits: "e" is no misspelling of "d"), else "". A template copied from
// a model card with a typo then says what to write instead.
func didYouMean[V any](name string, known map[string]V) string {
	if best := closest(name, known); best != "" {
		return "; did you mean '" + best + "'?"
	}
	return ""
}

func closest[V any](name string, known map[string]V) string {
	lower := strings.ToLower(name)
	limit := 2
	if len(name) <= 4 {
		limit = 1 // short names are all one or two letters apart
	}
	names := make([]string, 0, len(known))
	for k := range known {
		names = append(names, k)
	}
	sort.Strings(names) // ties go to the first in order, the same every run
	best, bestDist := "", limit+1
	for _, k := range names {
		d := spell.Distance(lower, strings.ToLower(k))
		if d < bestDist && d < len(k) {
			best, bestDist = k, d
		}
	}
	return best
}
