//go:build unix

package safetensors

import (
	"errors"
	"syscall"
)

func isSyncUnsupported(err error) bool {
	return errors.Is(err, syscall.EINVAL) || errors.Is(err, syscall.ENOTSUP)
}
