package engine

import (
	"strings"
	"testing"
)

func TestMemoryLimit(t *testing.T) {
	t.Setenv(MemoryLimitEnv, "")
	if n, err := MemoryLimit(); n != 0 || err != nil {
		t.Errorf("unset: %d, %v", n, err)
	}
	t.Setenv(MemoryLimitEnv, " 80GB ")
	if n, err := MemoryLimit(); n != 80e9 || err != nil {
		t.Errorf("80GB: %d, %v", n, err)
	}
	for _, bad := range []string{"80G", "0", "lots"} {
		t.Setenv(MemoryLimitEnv, bad)
		if _, err := MemoryLimit(); err == nil || !strings.HasPrefix(err.Error(), MemoryLimitEnv+"=") {
			t.Errorf("%q: error %v, want one naming %s", bad, err, MemoryLimitEnv)
		}
	}
}
