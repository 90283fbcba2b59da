package cuda

import (
	"fmt"

	"whet/engine"
)

// What other packages that bind NVIDIA libraries next to this backend
// (NCCL in engine/dist) need from it: the same library search, the
// device address of a tensor, and the backend's context and stream.

// OpenLibrary opens a shared library as this package opens its own
// (bare name, then CUDA_HOME, /usr/local/cuda*, system folders and the pip
// nvidia-* wheels' folders), returning its dlopen handle and path. The
// error lists every name and folder tried.
func OpenLibrary(what string, sonames ...string) (handle uintptr, path string, err error) {
	l, err := openLibrary(what, sonames...)
	if err != nil {
		return 0, "", err
	}
	return l.handle, l.path, nil
}

// LibrarySearchDirs lists the folders OpenLibrary searches after the
// loader's own path (for messages and logs).
func LibrarySearchDirs() []string { return libSearchDirs() }

// DevicePointer is t's device address; t must come from this package.
func DevicePointer(t engine.Tensor) (uint64, error) {
	ct, ok := t.(*Tensor)
	if !ok || ct == nil {
		return 0, fmt.Errorf("cuda: DevicePointer: %T is not a CUDA tensor", t)
	}
	if ct.alloc.freed {
		return 0, fmt.Errorf("cuda: DevicePointer: tensor %v was freed", ct.shape)
	}
	return ct.alloc.ptr + uint64(ct.off), nil
}

// Device is the CUDA device ordinal the backend runs on.
func (b *Backend) Device() int { return int(b.dev) }

// WithStream runs f with the backend's context current on a locked OS
// thread, serialised with the backend's own ops, and passes it the
// backend's stream: work f enqueues there is ordered after every op before
// and before every op after.
func (b *Backend) WithStream(f func(stream uintptr) error) error {
	exit, err := b.enter()
	if err != nil {
		return err
	}
	defer exit()
	return f(b.stream)
}
