package jinja

import (
	"sort"

	"whet/engine/spell"
)

// didYouMean is "; did you mean 'trim'?" when a filter or test name that
// does not exist is a misspelling of one that does (spell.Near), else "".
// A template copied from a model card with a typo then says what to write
// instead.
func didYouMean[V any](name string, known map[string]V) string {
	if best := closest(name, known); best != "" {
		return "; did you mean '" + best + "'?"
	}
	return ""
}

func closest[V any](name string, known map[string]V) string {
	names := make([]string, 0, len(known))
	for k := range known {
		names = append(names, k)
	}
	sort.Strings(names) // ties go to the first in order, the same every run
	best, bestDist := "", 0
	for _, k := range names {
		if d, near := spell.Near(name, k); near && (best == "" || d < bestDist) {
			best, bestDist = k, d
		}
	}
	return best
}
