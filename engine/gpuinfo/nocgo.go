//go:build !cgo || !linux

package gpuinfo

import "fmt"

// noDriver stands in for NVML where go-nvml cannot be built: it needs cgo
// (for dlopen) and Linux. Such a binary runs in CPU mode and says why.
type noDriver struct{}

func newDriver() driver { return noDriver{} }

func (noDriver) open() error {
	return fmt.Errorf("%w: this whet was built without cgo (CGO_ENABLED=0) or for a system other than Linux, so NVML cannot be loaded", ErrNoDriver)
}

func (noDriver) close()                         {}
func (noDriver) driverVersion() (string, error) { return "", ErrNoDriver }
func (noDriver) cudaVersion() (int, error)      { return 0, ErrNoDriver }
func (noDriver) deviceCount() (int, error)      { return 0, ErrNoDriver }
func (noDriver) device(int) (GPU, error)        { return GPU{}, ErrNoDriver }
func (noDriver) sample(int) (Sample, error)     { return Sample{}, ErrNoDriver }
