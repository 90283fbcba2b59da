package engine

import (
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"

	"whet/engine/envswitch"
)

// BackendFactory opens a backend; it returns an error that says what was
// looked for when the hardware or its libraries are missing.
type BackendFactory func() (Backend, error)

var (
	registryMu sync.Mutex
	registry   = map[string]BackendFactory{}
	// preference orders backends for "auto": fastest first.
	preference = []string{"cuda", "cpu"}
)

// ErrNoDevice is wrapped by a backend factory's error when this machine
// has no device for that backend at all (no NVIDIA driver, or a driver
// without a GPU), as opposed to a broken install. "auto" passes over such a
// backend without a notice: a laptop without a GPU trains on the CPU
// without being warned about CUDA it never asked for.
var ErrNoDevice = errors.New("no device for this backend")

// RegisterBackend makes a backend available by name. Backend packages call
// it from init; the program imports the ones it ships.
func RegisterBackend(name string, f BackendFactory) {
	registryMu.Lock()
	defer registryMu.Unlock()
	registry[name] = f
}

// OpenBackend opens the named backend. "auto" (or "") tries each
// registered backend in order of preference and returns the first that
// opens, with a notice for each one skipped because it failed (not for one
// whose device this machine lacks: ErrNoDevice). A WHET_* switch set to a
// value envswitch does not accept fails it before any backend is tried, so
// that "auto" never trains on the CPU because of a typo.
func OpenBackend(name string) (Backend, []string, error) {
	if err := envswitch.Check(); err != nil {
		return nil, nil, err
	}
	registryMu.Lock()
	defer registryMu.Unlock()
	if name == "" || name == "auto" {
		var notices, reasons []string
		for _, n := range preference {
			f, ok := registry[n]
			if !ok {
				continue
			}
			b, err := f()
			if err == nil {
				return b, notices, nil
			}
			reason := fmt.Sprintf("%s backend unavailable: %v", n, err)
			reasons = append(reasons, reason)
			if !errors.Is(err, ErrNoDevice) {
				notices = append(notices, reason)
			}
		}
		return nil, notices, fmt.Errorf("no backend could be opened: %s", strings.Join(reasons, "; "))
	}
	f, ok := registry[name]
	if !ok {
		var names []string
		for n := range registry {
			names = append(names, n)
		}
		sort.Strings(names)
		return nil, nil, fmt.Errorf("unknown backend %q (available: %s)", name, strings.Join(names, ", "))
	}
	b, err := f()
	return b, nil, err
}
