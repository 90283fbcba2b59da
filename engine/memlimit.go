package engine

import (
	"errors"
	"fmt"
	"strings"

	"whet/engine/envswitch"
)

// MemoryLimitEnv names the environment variable that caps the device
// memory a GPU backend may hold, so that a large card can stand in for a
// smaller one (an H200 measuring what fits an 80 GB H100, a user sharing a
// GPU). Its value is a size such as "80GB" or "81559MiB" (units.ParseBytes).
// The CLI's --memory-limit flags set it, so a detached worker inherits it.
//
// The cap counts what the backend allocates (tensors, workspaces,
// scratch), the same quantities the memory plan adds up; the CUDA
// context and libraries' own memory (a few hundred MiB) are outside it.
const MemoryLimitEnv = "WHET_MEMORY_LIMIT"

// MemoryLimit returns the cap WHET_MEMORY_LIMIT sets, or 0 when it is
// unset or empty.
func MemoryLimit() (int64, error) {
	v, err := envswitch.Get(MemoryLimitEnv)
	if err != nil {
		return 0, err
	}
	if v = strings.TrimSpace(v); v == "" {
		return 0, nil
	}
	return ParseMemoryLimit(v, MemoryLimitEnv)
}

// ParseMemoryLimit reads a memory cap given as a size; where names the
// setting (the environment variable or the flag) in errors.
func ParseMemoryLimit(v, where string) (int64, error) {
	n, err := envswitch.MemoryLimitBytes(v)
	if errors.Is(err, envswitch.ErrMemoryLimitNotPositive) {
		return 0, fmt.Errorf("%s: %w, got %q", where, err, v)
	}
	if err != nil {
		return 0, fmt.Errorf("%s: %w", where, err)
	}
	return n, nil
}
