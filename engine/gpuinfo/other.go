//go:build !linux

package gpuinfo

import (
	"fmt"
	"runtime"
)

// noDriver stands in for NVML on systems other than Linux, where whet has
// no GPU path: such a binary runs in CPU mode and says why.
type noDriver struct{}

func newDriver() driver { return noDriver{} }

func (noDriver) open() error {
	return fmt.Errorf("%w: whet reads NVIDIA GPUs on Linux only (this is %s)", ErrNoDriver, runtime.GOOS)
}

func (noDriver) close()                         {}
func (noDriver) driverVersion() (string, error) { return "", ErrNoDriver }
func (noDriver) cudaVersion() (int, error)      { return 0, ErrNoDriver }
func (noDriver) deviceCount() (int, error)      { return 0, ErrNoDriver }
func (noDriver) device(int) (GPU, error)        { return GPU{}, ErrNoDriver }
func (noDriver) sample(int) (Sample, error)     { return Sample{}, ErrNoDriver }

// newCUDAProber: without Linux there is no CUDA driver to ask.
func newCUDAProber() cudaProber { return nil }
