package main

import (
	"whet/engine"
	"whet/engine/cpu"
)

// The backends this program ships, in engine's order of preference.
func init() {
	engine.RegisterBackend("cpu", func() (engine.Backend, error) { return cpu.New(), nil })
}
