package cuda

import (
	"errors"
	"strings"
	"testing"

	"whet/engine/envswitch"
)

// The backend's readers of the WHET_* switches, now through envswitch, keep
// the meanings they had: each value of each switch, and unset.
func TestSwitchReaders(t *testing.T) {
	type reader struct {
		name  string
		read  func() string
		wants map[string]string // value ("" unset) -> what the reader says
	}
	b := func(f func() bool) func() string {
		return func() string {
			if f() {
				return "on"
			}
			return "off"
		}
	}
	onByDefault := map[string]string{"": "on", "1": "on", "0": "off"}
	offByDefault := map[string]string{"": "off", "1": "on", "0": "off"}
	for _, r := range []reader{
		{DecodeAttnEnv, func() string { return b(decodeAttnV2On)() + "," + b(decodeAttnV3On)() },
			map[string]string{"": "on,off", "v1": "off,off", "v2": "on,off", "v3": "on,on"}},
		{NF4MatVecEnv, func() string { return b(nf4V2)() + "," + b(nf4V2Wide)() },
			map[string]string{"": "on,off", "v1": "off,off", "v2": "on,off", "v2r8": "on,on"}},
		{RMSNormBwdV2Env, rmsnormBwdV2Mode, map[string]string{"": "2", "0": "0", "1": "1", "2": "2"}},
		{DecodeGEMVEnv, b(rrOn), map[string]string{"": "off", "0": "off", "rr": "on"}},
		{GEMVEnv, b(func() bool { return !gemvOff() }), onByDefault},
		{GEMV2Env, b(gemv2), offByDefault},
		{PDLEnv, b(pdlOn), onByDefault},
		{VisionAttnTCEnv, b(visionTC), offByDefault},
		{VisionAttnTCBwdEnv, b(visionTCBwd), offByDefault},
		{PrecompileEnv, b(func() bool { return precompileOn(false) }), offByDefault},
		{GEMMTuneEnv, b(func() bool { return gemmTuneOn(false) }), onByDefault},
		{AttnBwdFusedEnv, b(attnBwdFusedAuto), onByDefault},
		{AttnFwdWSEnv, b(attnFwdWSAuto), onByDefault},
		{AttnHopperEnv, b(func() bool { return !AttnKernelsFor("sm_90").NoHopper }), onByDefault},
		{DeterministicEnv, b(func() bool { return AttnKernelsFor("sm_90").Deterministic }), offByDefault},
		{SyncEnv, b(func() bool { return envswitch.On(SyncEnv) }), offByDefault},
		{ProfileEnv, b(func() bool { return envswitch.On(ProfileEnv) }), offByDefault},
		{AttnTC256Env, b(func() bool { return envswitch.On(AttnTC256Env) }), onByDefault},
		{FusedAdamWEnv, b(func() bool { return envswitch.On(FusedAdamWEnv) }), onByDefault},
		{SumSquaresV2Env, b(func() bool { return envswitch.On(SumSquaresV2Env) }), onByDefault},
		{BiasAttnQ8Env, b(func() bool { return envswitch.On(BiasAttnQ8Env) }), offByDefault},
	} {
		s, ok := envswitch.Lookup(r.name)
		if !ok {
			t.Errorf("%s is not registered", r.name)
			continue
		}
		if len(r.wants) != len(s.Values)+1 {
			t.Errorf("%s: %d values checked here, the registry lists %q", r.name, len(r.wants)-1, s.Values)
		}
		for v, want := range r.wants {
			t.Setenv(r.name, v)
			if got := r.read(); got != want {
				t.Errorf("%s=%q: %s, want %s", r.name, v, got, want)
			}
		}
		t.Setenv(r.name, "")
	}
	t.Setenv(DecodeRRWarpsEnv, "16")
	if _, _, threads, _ := rrGeometry(2048, rrWarps); threads != 512 {
		t.Errorf("%s=16: %d threads", DecodeRRWarpsEnv, threads)
	}
}

// New refuses a value a switch does not take before it touches the
// driver, naming it, and the error is not ErrNoGPU (so "auto" would not
// quietly train on the CPU over it).
func TestNewRefusesUnknownSwitchValue(t *testing.T) {
	for name, v := range map[string]string{DecodeAttnEnv: "v4", GEMMTuneEnv: "yes", RMSNormBwdV2Env: "3", archOverrideEnv: "90"} {
		t.Setenv(name, v)
		_, err := New(Options{CacheDir: "-"})
		if err == nil || errors.Is(err, ErrNoGPU) || !strings.HasPrefix(err.Error(), "cuda: "+name+`="`+v+`" is not`) {
			t.Errorf("New with %s=%s: %v", name, v, err)
		}
		t.Setenv(name, "")
	}
}
