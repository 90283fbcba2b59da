package main

import (
	"whet/engine"
	"whet/engine/cpu"
	"whet/engine/cuda"
	"whet/engine/gpuinfo"

	// The collectives of data-parallel runs: the ring in Go (CPU ranks)
	// and NCCL, bound only when a run over several GPUs opens it.
	_ "whet/engine/dist"
)

// The backends this program ships; engine's "auto" tries cuda, then cpu.
// The CUDA backend registers itself as "cuda"; it binds the NVIDIA
// libraries only when opened, so this program needs nothing at build time.
func init() {
	engine.RegisterBackend("cpu", func() (engine.Backend, error) { return cpu.New(), nil })
	// One CUDA backend per GPU of a data-parallel run (whet train --gpus).
	engine.RegisterDevices("cuda", engine.DeviceBackends{
		Count: func() (int, error) {
			r, err := gpuinfo.Detect()
			return len(r.GPUs), err
		},
		Open: func(device int) (engine.Backend, error) { return cuda.New(cuda.Options{Device: device}) },
	})
}
