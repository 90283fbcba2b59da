//go:build !(linux || darwin)

package safetensors

import "os"

// mapFile reads the whole file where this package does not use mmap.
func mapFile(path string) ([]byte, func() error, error) {
	buf, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, err
	}
	return buf, func() error { return nil }, nil
}
