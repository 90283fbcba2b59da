// Package atomicfile creates the temporary files that whet renames into
// place (checkpoints, status, adapters, exports) with the mode a plain
// create would give them: 0666 less the user's umask. os.CreateTemp makes
// files private (0600), and a chmod to a fixed 0644 after it ignored a
// umask of 002 or 077 that the user set on purpose.
package atomicfile

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
)

// Perm and DirPerm are the modes whet asks for; the umask takes its bits
// off, as it does for any program that creates files.
const (
	Perm    fs.FileMode = 0o666
	DirPerm fs.FileMode = 0o777
)

// CreateTemp creates a new file named prefix plus a random suffix in dir,
// open for writing, never through a symlink and never over an existing
// file.
func CreateTemp(dir, prefix string) (*os.File, error) {
	for range 1000 {
		name := filepath.Join(dir, fmt.Sprintf("%s%08x", prefix, rand.Uint32()))
		f, err := os.OpenFile(name, os.O_RDWR|os.O_CREATE|os.O_EXCL|NoFollow, Perm)
		if errors.Is(err, fs.ErrExist) {
			continue
		}
		return f, err
	}
	return nil, fmt.Errorf("create a temporary file in %s: no free name after 1000 tries", dir)
}

// OpenAppend opens path for appending lines, creating it if needed; a
// symlink at path is refused rather than followed, so a run folder's log
// can never be pointed at another file.
func OpenAppend(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_APPEND|os.O_WRONLY|NoFollow, Perm)
	if err != nil {
		return nil, RefusedLink(path, err)
	}
	return f, nil
}

// RealDir creates dir (and its parents) if needed and checks that dir
// itself is a folder, not a symlink to one elsewhere.
func RealDir(dir string) error {
	if err := os.MkdirAll(dir, DirPerm); err != nil {
		return err
	}
	st, err := os.Lstat(dir)
	if err != nil {
		return err
	}
	if st.Mode()&fs.ModeSymlink != 0 {
		return fmt.Errorf("%s is a symbolic link; whet writes only into real folders here", dir)
	}
	if !st.IsDir() {
		return fmt.Errorf("%s is not a folder", dir)
	}
	return nil
}

// RefusedLink turns the error O_NOFOLLOW gives for a symlink into one
// that says so.
func RefusedLink(path string, err error) error {
	if st, lerr := os.Lstat(path); lerr == nil && st.Mode()&fs.ModeSymlink != 0 {
		return fmt.Errorf("%s is a symbolic link; whet does not write through links in a run folder", path)
	}
	return err
}

// Open opens path for reading, refusing a symlink at path: files of a run
// folder are read only where they are.
func Open(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|NoFollow, 0)
	if err != nil {
		return nil, RefusedLink(path, err)
	}
	return f, nil
}

// ReadFile is os.ReadFile through Open.
func ReadFile(path string) ([]byte, error) {
	f, err := Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(f)
	if err != nil {
		// Open's errors name path; a read's would not.
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	return b, nil
}
