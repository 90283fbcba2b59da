package safetensors

import (
	"bytes"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// previousFile writes a good checkpoint and returns its path and bytes.
func previousFile(t *testing.T) (string, []byte) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "trainable.safetensors")
	if err := Write(path, []Tensor{F32Tensor("w", []int{2}, []float32{1, 2})}, nil); err != nil {
		t.Fatal(err)
	}
	before, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return path, before
}

// assertIntact checks that path still holds before, still opens, and that
// no temporary file was left beside it.
func assertIntact(t *testing.T, path string, before []byte) {
	t.Helper()
	after, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(before, after) {
		t.Error("the previous file changed")
	}
	f, err := Open(path)
	if err != nil {
		t.Fatalf("the previous file no longer opens: %v", err)
	}
	checkFloats(t, f, "w", []float32{1, 2})
	f.Close()
	entries, err := os.ReadDir(filepath.Dir(path))
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 {
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		t.Errorf("folder holds %v, want only the previous file", names)
	}
}

func TestFailedWriteLeavesPreviousFileIntact(t *testing.T) {
	path, before := previousFile(t)
	injected := errors.New("disk full (injected)")
	// Fail half-way through the data, after bytes have reached the
	// temporary file.
	err := writeAtomic(path, func(w io.Writer) error {
		if _, err := w.Write(bytes.Repeat([]byte{0xff}, 3<<20)); err != nil {
			return err
		}
		return injected
	})
	if !errors.Is(err, injected) {
		t.Fatalf("writeAtomic returned %v, want the injected error", err)
	}
	assertIntact(t, path, before)
}

func TestWriteIntoReadOnlyFolderLeavesPreviousFileIntact(t *testing.T) {
	if os.Geteuid() == 0 {
		t.Skip("running as root: folder permissions do not stop root from writing")
	}
	path, before := previousFile(t)
	dir := filepath.Dir(path)
	if err := os.Chmod(dir, 0o555); err != nil {
		t.Fatal(err)
	}
	defer os.Chmod(dir, 0o755)
	err := Write(path, []Tensor{F32Tensor("w", []int{2}, []float32{3, 4})}, nil)
	if err == nil {
		t.Fatal("Write into a read-only folder succeeded")
	}
	assertIntact(t, path, before)
}

func TestWriteReplacesPreviousFile(t *testing.T) {
	path, _ := previousFile(t)
	if err := Write(path, []Tensor{F32Tensor("w", []int{2}, []float32{3, 4})}, nil); err != nil {
		t.Fatal(err)
	}
	f, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	checkFloats(t, f, "w", []float32{3, 4})
	info, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if info.Mode().Perm()&0o044 == 0 {
		t.Errorf("file mode %v: the temporary file's private mode leaked", info.Mode())
	}
}

func TestWriteIntoMissingFolderFails(t *testing.T) {
	path := filepath.Join(t.TempDir(), "no", "such", "a.safetensors")
	if err := Write(path, []Tensor{F32Tensor("w", []int{1}, []float32{1})}, nil); err == nil {
		t.Error("Write into a missing folder succeeded")
	}
}

func TestWriteFailingAtRenameRemovesTemporaryFile(t *testing.T) {
	// A non-empty folder at the target path makes the final rename fail
	// (even for root), after the data was written and synced.
	dir := t.TempDir()
	target := filepath.Join(dir, "a.safetensors")
	if err := os.MkdirAll(filepath.Join(target, "keep"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := Write(target, []Tensor{F32Tensor("w", []int{1}, []float32{1})}, nil); err == nil {
		t.Fatal("Write over a non-empty folder succeeded")
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 || !entries[0].IsDir() {
		t.Errorf("folder holds %d entries after the failed write, want only the folder in the way", len(entries))
	}
	if _, err := os.Stat(filepath.Join(target, "keep")); err != nil {
		t.Errorf("the folder in the way was disturbed: %v", err)
	}
}

// A full disk names the file once: "safetensors: X: no space left on
// device", not "safetensors: X: write .X.tmp-123: no space left on
// device"; the cause stays wrapped and the previous file stays.
func TestFullDiskNamesTheFileOnce(t *testing.T) {
	path, before := previousFile(t)
	tempWrite = func(f *os.File, b []byte) (int, error) {
		return 0, &fs.PathError{Op: "write", Path: f.Name(), Err: syscall.ENOSPC}
	}
	defer func() { tempWrite = nil }()
	err := Write(path, []Tensor{F32Tensor("w", []int{2}, []float32{3, 4})}, nil)
	want := "safetensors: " + path + ": no space left on device"
	if err == nil || err.Error() != want || !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("Write on a full disk: %v, want %q", err, want)
	}
	assertIntact(t, path, before)
}
