package tui

import (
	"fmt"
	"sort"
	"strings"
)

// parseColumns reads a column mapping as the data page's field takes it:
// "instruction=question, output=answer" (a colon works too), the format's
// column name first. Names the loader does not know are its to report.
func parseColumns(s string) (map[string]string, error) {
	out := map[string]string{}
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		i := strings.IndexAny(part, "=:")
		if i < 0 {
			return nil, fmt.Errorf("%q is not name=column (e.g. instruction=question)", part)
		}
		k, v := strings.TrimSpace(part[:i]), strings.TrimSpace(part[i+1:])
		if k == "" || v == "" {
			return nil, fmt.Errorf("%q needs a name on both sides of %q", part, part[i:i+1])
		}
		if _, dup := out[k]; dup {
			return nil, fmt.Errorf("%s is mapped twice", k)
		}
		out[k] = v
	}
	if len(out) == 0 {
		return nil, nil
	}
	return out, nil
}

// formatColumns writes a mapping the way parseColumns reads it, sorted.
func formatColumns(m map[string]string) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = k + "=" + m[k]
	}
	return strings.Join(parts, ", ")
}
