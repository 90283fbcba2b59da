package cpu_test

import (
	"testing"

	"whet/engine"
	"whet/engine/backendtest"
	"whet/engine/cpu"
)

// The CPU backend against itself: a smoke test of the conformance suite
// (every op runs, shapes and contracts are consistent) that must come out
// exact. The bf16 run checks the suite's bf16 plumbing (rounded inputs,
// mixed-dtype outputs) on a backend known to agree with itself.
func TestConformanceF32(t *testing.T) {
	backendtest.Run(t, func() (engine.Backend, error) { return cpu.New(), nil }, backendtest.DefaultF32())
}

func TestConformanceBF16(t *testing.T) {
	backendtest.Run(t, func() (engine.Backend, error) { return cpu.New(), nil }, backendtest.DefaultBF16())
}
