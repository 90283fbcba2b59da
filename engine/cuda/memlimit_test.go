package cuda

import (
	"errors"
	"os"
	"strings"
	"testing"

	"whet/engine"
)

// The cap's rule, without a GPU: up to the cap is allowed, one byte past
// it is the driver's out-of-memory error, naming the cap and its setting.
func TestOverLimit(t *testing.T) {
	if err := overLimit(60, 40, 100); err != nil {
		t.Errorf("exactly at the cap: %v", err)
	}
	if err := overLimit(1<<40, 1<<40, 0); err != nil {
		t.Errorf("no cap: %v", err)
	}
	err := overLimit(60, 41, 100)
	if !IsOutOfMemory(err) || !strings.Contains(err.Error(), "memory limit of 100 B ("+engine.MemoryLimitEnv+")") {
		t.Errorf("past the cap: %v (out of memory %v)", err, IsOutOfMemory(err))
	}
}

// A malformed WHET_MEMORY_LIMIT fails New before any driver call, naming
// the variable (and is not mistaken for a missing GPU).
func TestBadMemoryLimitEnv(t *testing.T) {
	t.Setenv(engine.MemoryLimitEnv, "80G")
	_, err := New(Options{CacheDir: "-"})
	if err == nil || errors.Is(err, ErrNoGPU) || !strings.Contains(err.Error(), engine.MemoryLimitEnv+`="80G" is not a size`) || !strings.Contains(err.Error(), `size "80G": unknown unit`) {
		t.Errorf("New with %s=80G: %v", engine.MemoryLimitEnv, err)
	}
}

// On a GPU: a backend capped at 64 MiB (the 32 MiB cuBLASLt workspace is
// already held) refuses a 40 MiB tensor as out of memory, holds nothing
// more after it, reports the cap as the card's size, and takes 16 MiB.
func TestMemoryLimitOnDevice(t *testing.T) {
	const limit = 64 << 20
	b, err := New(Options{CacheDir: testCacheDir, MemoryLimit: limit})
	if err != nil {
		if errors.Is(err, ErrNoGPU) && os.Getenv("WHET_CUDA_REQUIRE") != "1" {
			t.Skipf("skipping: the CUDA backend needs an NVIDIA GPU and driver: %v", err)
		}
		t.Fatalf("New: %v", err)
	}
	defer b.Close()
	held := b.InUseBytes()
	if _, err := b.Alloc(engine.BF16, 20<<20); !IsOutOfMemory(err) || !strings.Contains(err.Error(), "memory limit") {
		t.Fatalf("40 MiB under a 64 MiB cap with %d bytes held: %v", held, err)
	}
	if b.InUseBytes() != held {
		t.Errorf("held %d bytes after the refusal, %d before", b.InUseBytes(), held)
	}
	free, total, err := b.MemInfo()
	if err != nil || total != limit || free != limit-held {
		t.Errorf("MemInfo = %d free of %d, %v; want %d of %d", free, total, err, limit-held, limit)
	}
	x, err := b.Alloc(engine.BF16, 8<<20)
	if err != nil {
		t.Fatalf("16 MiB under the cap: %v", err)
	}
	b.Free(x)

	// The same cap from WHET_MEMORY_LIMIT, as the registry opens backends.
	t.Setenv(engine.MemoryLimitEnv, "64MiB")
	e, err := New(Options{CacheDir: testCacheDir})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	if _, total, err := e.MemInfo(); err != nil || total != limit {
		t.Errorf("from %s: MemInfo total %d, %v; want %d", engine.MemoryLimitEnv, total, err, limit)
	}
}
