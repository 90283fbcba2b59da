package main

import (
	"flag"
	"os"
	"strconv"

	"whet/engine"
)

// memoryLimitFlag is --memory-limit, shared by train, fit and bench: a cap
// on the GPU memory a run may hold, so a large card can stand in for a
// smaller one. Without the flag, WHET_MEMORY_LIMIT is the cap.
type memoryLimitFlag struct{ value *string }

const memoryLimitUsage = "cap the GPU memory the run may hold, e.g. 80GB or 24GiB, so a bigger card emulates a smaller one (default: $" + engine.MemoryLimitEnv + ")"

func addMemoryLimitFlag(fs *flag.FlagSet) memoryLimitFlag {
	return memoryLimitFlag{fs.String("memory-limit", "", memoryLimitUsage)}
}

// apply returns the cap in bytes (0: none) and where it came from. A flag
// value is written to WHET_MEMORY_LIMIT (as bytes), so the CUDA backend
// this process opens and any worker it starts (whet train --detach) obey
// the same cap.
func (m memoryLimitFlag) apply() (limit int64, source string, err error) {
	if *m.value != "" {
		if limit, err = engine.ParseMemoryLimit(*m.value, "--memory-limit"); err != nil {
			return 0, "", err
		}
		if err := os.Setenv(engine.MemoryLimitEnv, strconv.FormatInt(limit, 10)); err != nil {
			return 0, "", err
		}
		return limit, "--memory-limit", nil
	}
	limit, err = engine.MemoryLimit()
	return limit, engine.MemoryLimitEnv, err
}
