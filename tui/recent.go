package tui

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// The data page offers the dataset files the user went on with lately,
// from whatever folder the studio runs in. They are kept newest first, one
// absolute path a line, in the user's config folder.

// recentLimit is how many recent dataset files are kept.
const recentLimit = 8

// defaultRecentFile is where the list lives: the user's config folder
// (XDG_CONFIG_HOME or ~/.config on Linux), under whet/.
func defaultRecentFile() (string, error) {
	dir, err := os.UserConfigDir()
	if err != nil {
		return "", fmt.Errorf("recent dataset files: %w", err)
	}
	return filepath.Join(dir, "whet", "recent-datasets"), nil
}

// readRecent returns the listed files that still exist, each once; a
// missing list is empty.
func readRecent(list string) ([]string, error) {
	raw, err := os.ReadFile(list)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("recent dataset files: %w", err)
	}
	var out []string
	seen := map[string]bool{} // a list edited by hand may name a file twice
	for _, l := range strings.Split(string(raw), "\n") {
		// The line as addRecent wrote it (a name may begin or end with a
		// space); trimmed, for a list edited by hand (CRLF, indents).
		for _, name := range []string{strings.TrimSuffix(l, "\r"), strings.TrimSpace(l)} {
			if name == "" || !filepath.IsAbs(name) {
				continue
			}
			if st, err := os.Stat(name); err == nil && !st.IsDir() {
				if !seen[name] {
					out = append(out, name)
					seen[name] = true
				}
				break
			}
		}
	}
	return out, nil
}

// addRecent puts file first in the list (once), keeping recentLimit
// entries. The list is replaced whole (written beside it, then renamed),
// so a crash never leaves half a list.
func addRecent(list, file string) error {
	abs, err := filepath.Abs(file)
	if err != nil {
		return fmt.Errorf("recent dataset files: %w", err)
	}
	if strings.ContainsAny(abs, "\r\n") {
		return fmt.Errorf("recent dataset files: %q has a line break in its name and cannot be listed", abs)
	}
	old, err := readRecent(list)
	if err != nil {
		return err
	}
	files := []string{abs}
	for _, f := range old {
		if f != abs && len(files) < recentLimit {
			files = append(files, f)
		}
	}
	if err := os.MkdirAll(filepath.Dir(list), 0o700); err != nil {
		return fmt.Errorf("recent dataset files: %w", err)
	}
	tmp := list + ".tmp"
	if err := os.WriteFile(tmp, []byte(strings.Join(files, "\n")+"\n"), 0o600); err != nil {
		return fmt.Errorf("recent dataset files: %w", err)
	}
	if err := os.Rename(tmp, list); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("recent dataset files: %w", err)
	}
	return nil
}
