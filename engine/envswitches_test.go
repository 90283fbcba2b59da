package engine

import (
	"strings"
	"testing"
)

// The engine's readers of the WHET_* switches keep their meanings through
// envswitch: on unless 0 (LoRAFusedEnv, MllamaBF16Env, CUDAVisionEnv),
// off unless 1 (FusedSoftCapEnv).
func TestEngineSwitchReaders(t *testing.T) {
	gpu := namedBackend{name: "cuda"}
	for v, on := range map[string]bool{"": true, "1": true, "0": false} {
		t.Setenv(LoRAFusedEnv, v)
		if LoRAFusedOn(false) != on || !LoRAFusedOn(true) {
			t.Errorf("%s=%q: LoRAFusedOn %v, want %v", LoRAFusedEnv, v, LoRAFusedOn(false), on)
		}
		t.Setenv(CUDAVisionEnv, v)
		if err := cudaVisionAllowed(gpu, "x"); (err == nil) != on {
			t.Errorf("%s=%q: cudaVisionAllowed %v", CUDAVisionEnv, v, err)
		}
		t.Setenv(MllamaBF16Env, v)
		if d, want := VisionComputeDType(VisionMllama, "cuda"), map[bool]DType{true: BF16, false: F32}[on]; d != want {
			t.Errorf("%s=%q: %s, want %s", MllamaBF16Env, v, d, want)
		}
		t.Setenv(FusedSoftCapEnv, v)
		if FusedSoftCapOn(false) != (v == "1") || !FusedSoftCapOn(true) {
			t.Errorf("%s=%q: FusedSoftCapOn %v", FusedSoftCapEnv, v, FusedSoftCapOn(false))
		}
	}
}

// OpenBackend refuses a switch's unknown value before it tries any
// backend, so that "auto" never falls back to the CPU over a typo.
func TestOpenBackendRefusesUnknownSwitchValue(t *testing.T) {
	t.Setenv("WHET_GEMM_TUNE", "yes")
	for _, name := range []string{"auto", "cpu", "cuda"} {
		b, notices, err := OpenBackend(name)
		if b != nil || notices != nil || err == nil || !strings.HasPrefix(err.Error(), `WHET_GEMM_TUNE="yes" is not one of 0, 1`) {
			t.Errorf("OpenBackend(%q): %v, %v, %v", name, b, notices, err)
		}
	}
}
