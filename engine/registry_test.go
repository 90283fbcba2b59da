package engine

import (
	"errors"
	"fmt"
	"strings"
	"testing"
)

// withRegistry swaps the backend registry for the test's own factories.
func withRegistry(t *testing.T, order []string, factories map[string]BackendFactory) {
	t.Helper()
	registryMu.Lock()
	oldReg, oldPref := registry, preference
	registry, preference = factories, order
	registryMu.Unlock()
	t.Cleanup(func() {
		registryMu.Lock()
		registry, preference = oldReg, oldPref
		registryMu.Unlock()
	})
}

// A machine without the GPU's device trains on the CPU under "auto"
// without a CUDA warning; a GPU backend that fails for another reason (a
// broken install) is still reported, and naming it explicitly is an error.
func TestOpenBackendAutoIsQuietWithoutDevice(t *testing.T) {
	var cpu Backend // the registry only passes it through
	cpuOK := func() (Backend, error) { return cpu, nil }
	noDevice := func() (Backend, error) {
		return nil, fmt.Errorf("cuda: %w: libcuda.so.1 not found", ErrNoDevice)
	}
	broken := func() (Backend, error) { return nil, errors.New("cuda: libnvrtc.so.13 missing") }

	withRegistry(t, []string{"cuda", "cpu"}, map[string]BackendFactory{"cuda": noDevice, "cpu": cpuOK})
	if _, notices, err := OpenBackend("auto"); err != nil || len(notices) != 0 {
		t.Errorf("auto without a GPU: notices %q, err %v; want the CPU and no notice", notices, err)
	}
	if _, _, err := OpenBackend("cuda"); err == nil || !strings.Contains(err.Error(), "libcuda.so.1") {
		t.Errorf("cuda asked for explicitly: err %v, want the reason", err)
	}

	withRegistry(t, []string{"cuda", "cpu"}, map[string]BackendFactory{"cuda": broken, "cpu": cpuOK})
	if _, notices, err := OpenBackend("auto"); err != nil || len(notices) != 1 || !strings.Contains(notices[0], "libnvrtc") {
		t.Errorf("auto with a broken CUDA install: notices %q, err %v; want one notice naming what is missing", notices, err)
	}

	// Nothing opens: the error still says why each was passed over.
	withRegistry(t, []string{"cuda"}, map[string]BackendFactory{"cuda": noDevice})
	if _, _, err := OpenBackend(""); err == nil || !strings.Contains(err.Error(), "libcuda.so.1") {
		t.Errorf("no backend at all: err %v, want the reason", err)
	}
}
