package export

import (
	"errors"
	"fmt"
	"io/fs"
	"strings"
	"syscall"
	"testing"
)

// An export that fails on a full disk says what to do; it said only
// "safetensors: OUT/model.safetensors: tensor "...": no space left on
// device". Other errors pass through unchanged.
func TestNoSpaceHint(t *testing.T) {
	full := fmt.Errorf("safetensors: /out/model.safetensors: tensor %q: %w", "w", &fs.PathError{Op: "write", Path: "/out/.model.tmp", Err: syscall.ENOSPC})
	err := noSpaceHint(full, "/out")
	if !errors.Is(err, syscall.ENOSPC) || !strings.Contains(err.Error(), "the disk holding /out is full") || !strings.Contains(err.Error(), "--out") {
		t.Fatalf("disk full: %v", err)
	}
	other := errors.New("export: unknown chat template")
	if got := noSpaceHint(other, "/out"); got != other {
		t.Fatalf("another error changed: %v", got)
	}
	if noSpaceHint(nil, "/out") != nil {
		t.Fatal("nil became an error")
	}
}
