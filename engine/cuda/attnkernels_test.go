package cuda

import (
	"testing"

	"whet/engine"
)

// TestAttnKernelsFor: what whet fit plans a device with (AttnKernelsFor)
// follows the environment as New does, and Backend.AttnKernels reports
// what the backend takes (its Options, a failed Hopper compile,
// SetDeterministic): the fused backward and its accumulator exactly where
// useFusedBackward and attnFusedAccFloats have them.
func TestAttnKernelsFor(t *testing.T) {
	t.Setenv(AttnFwdWSEnv, "0")
	for _, c := range []struct {
		fused, det, hopper, defines string
		want                        engine.AttnKernels
	}{
		{want: engine.AttnKernels{Arch: "sm_90", TiledDQ: true}}, // attnBwdFusedDefines has HOP_BWD_DQT=1
		{fused: "0", want: engine.AttnKernels{Arch: "sm_90", NoFusedBackward: true}},
		{fused: "0", defines: "HOP_BWD_FUSED=1", want: engine.AttnKernels{Arch: "sm_90"}},
		{det: "1", want: engine.AttnKernels{Arch: "sm_90", Deterministic: true, TiledDQ: true}},
		{hopper: "0", want: engine.AttnKernels{Arch: "sm_90", NoHopper: true, TiledDQ: true}},
		{defines: "HOP_BWD_DQT=1,HOP_BWD_OVL=1", want: engine.AttnKernels{Arch: "sm_90", TiledDQ: true}},
		{defines: "HOP_BWD_DQT=1,HOP_BWD_WG1=1,HOP_BWD_OVL=1", want: engine.AttnKernels{Arch: "sm_90", TiledDQ: true, WG1: true}},
		{defines: "HOP_BWD_DQT=1,HOP_BWD_WG1_D64=1,HOP_BWD_OVL=1", want: engine.AttnKernels{Arch: "sm_90", TiledDQ: true, WG1D64: true}},
		{fused: "0", defines: "HOP_BWD_FUSED=1,HOP_BWD_OVL=2,HOP_BWD_WG1_D64=1", want: engine.AttnKernels{Arch: "sm_90", WG1D64: true}},
	} {
		t.Setenv(AttnBwdFusedEnv, c.fused)
		t.Setenv(DeterministicEnv, c.det)
		t.Setenv(AttnHopperEnv, c.hopper)
		t.Setenv("WHET_NVRTC_DEFINES", c.defines)
		what := func() string {
			return "fused=" + c.fused + " det=" + c.det + " hopper=" + c.hopper + " defines=" + c.defines
		}
		got := AttnKernelsFor("sm_90")
		if got != c.want {
			t.Errorf("%s: AttnKernelsFor = %+v, want %+v", what(), got, c.want)
		}
		// New's fields from the same environment (backend.go).
		env := AttnKernelsFor("")
		b := &Backend{arch: "sm_90", attnHopper: !env.NoHopper, attnBwdFused: !env.NoFusedBackward, deterministic: env.Deterministic}
		if k := b.AttnKernels(); k != got {
			t.Errorf("%s: Backend.AttnKernels = %+v, want AttnKernelsFor's %+v", what(), k, got)
		}
		if want := got.FusedBackward(128, 4096, engine.BF16); (b.useFusedBackward() && b.attnHopper) != want {
			t.Errorf("%s: useFusedBackward %v, the plan's rule %v", what(), b.useFusedBackward(), want)
		}
		for _, d := range []int{64, 128} {
			for _, n := range []int{1, 64, 100, 4097} {
				if a, p := attnFusedAccFloats(n, 3, d), got.FusedAccFloats(n, 3, d); a != p {
					t.Errorf("%s: d%d T %d: the backend's accumulator %d floats, the plan's %d", what(), d, n, a, p)
				}
			}
		}
	}
	t.Setenv(AttnBwdFusedEnv, "")
	t.Setenv(DeterministicEnv, "")
	t.Setenv(AttnHopperEnv, "")
	t.Setenv("WHET_NVRTC_DEFINES", "")
	b := &Backend{arch: "sm_90", attnHopper: true, attnBwdFused: true}
	if !b.AttnKernels().FusedBackward(128, 80000, engine.BF16) {
		t.Errorf("default sm_90 backend: %+v takes no fused backward", b.AttnKernels())
	}
	b.SetDeterministic(true)
	if k := b.AttnKernels(); !k.Deterministic || k.FusedBackward(128, 80000, engine.BF16) {
		t.Errorf("after SetDeterministic(true): %+v", k)
	}
	b.SetDeterministic(false)
	b.attnHopperOff = "no sm_90a"
	if k := b.AttnKernels(); !k.NoHopper || k.Hopper(128, 80000, engine.BF16) {
		t.Errorf("after a failed Hopper compile: %+v", k)
	}
	if k := (&Backend{arch: "sm_120", attnHopper: true, attnBwdFused: true}).AttnKernels(); k.FusedBackward(128, 80000, engine.BF16) {
		t.Errorf("sm_120: %+v takes the fused backward", k)
	}
}
