//go:build !cgo && linux

package gpuinfo

// Without cgo, go-nvml cannot be built; NVML is reached through purego.
func newDriver() driver { return &puregoDriver{path: "libnvidia-ml.so.1"} }
