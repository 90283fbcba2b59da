package hub

import (
	"bytes"
	"context"
	"errors"
	"os"
	"strings"
	"testing"
)

// A disk that fills up mid-download (after the space check passed:
// something else wrote to it) is ErrNoSpace with what to do, the partial
// file named once; it was "write X: write X: no space left on device".
// The download's copy writes to /dev/full, whose writes fail so.
func TestDownloadDiskFillsIsNoSpace(t *testing.T) {
	f, err := os.OpenFile("/dev/full", os.O_WRONLY, 0)
	if err != nil {
		t.Skipf("no /dev/full here: %v", err)
	}
	defer f.Close()
	_, cerr := copyReporting(context.Background(), f, nil, bytes.NewReader(make([]byte, 1<<20)), func(int64) {})
	werr := (*writeError)(nil)
	if !errors.As(cerr, &werr) {
		t.Fatalf("copy onto /dev/full: %v, want a write error", cerr)
	}
	c := NewClient(Settings{Endpoint: "http://hub", CacheDir: "/cache/hub"})
	partial := "/cache/hub/models--o--n/blobs/abc.incomplete"
	err = c.writeFailed(Ref{Repo: "o/n", Revision: "main"}, "model.safetensors", partial, 3<<20, 8<<20, werr.err)
	if !errors.Is(err, ErrNoSpace) {
		t.Fatalf("disk full mid-download: %v, want ErrNoSpace", err)
	}
	msg := err.Error()
	for _, want := range []string{"model.safetensors of o/n", "/cache/hub filled up after 3.00 MiB of 8.00 MiB", "HF_HUB_CACHE", "resume", partial} {
		if !strings.Contains(msg, want) {
			t.Errorf("message %q lacks %q", msg, want)
		}
	}
	other := c.writeFailed(Ref{Repo: "o/n", Revision: "main"}, "model.safetensors", partial, 0, 8<<20, &os.PathError{Op: "write", Path: partial, Err: errors.New("input/output error")})
	if errors.Is(other, ErrNoSpace) || strings.Count(other.Error(), partial) != 1 {
		t.Errorf("another write error: %q, want the file named once and not ErrNoSpace", other)
	}
}
