package main

import (
	"whet/engine"
	"whet/engine/cpu"
	// The CUDA backend registers itself as "cuda"; it binds the NVIDIA
	// libraries only when opened, so this import needs nothing at build time.
	_ "whet/engine/cuda"
)

// The backends this program ships; engine's "auto" tries cuda, then cpu.
func init() {
	engine.RegisterBackend("cpu", func() (engine.Backend, error) { return cpu.New(), nil })
}
