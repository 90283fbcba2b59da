package engine_test

// Run files and RunConfig.FillDefaults read the method defaults that
// package presets hands the engine (from presets/methods.yaml).
import (
	"testing"

	"whet/engine"
	_ "whet/presets"
)

// withDefaults is cfg with every field it leaves at zero taken from its
// method's defaults, as a test names only what it tests; except that a
// test that names no gradient accumulation, warm-up or weight decay gets
// none (one micro-batch per step, the full rate from step 1), so that its
// few steps show what it measures.
func withDefaults(t testing.TB, cfg engine.RunConfig) engine.RunConfig {
	t.Helper()
	tc := cfg.Train
	if err := cfg.FillDefaults(); err != nil {
		t.Fatal(err)
	}
	if tc.GradAccum == 0 {
		cfg.Train.GradAccum = 1
	}
	if tc.WarmupSteps == 0 && tc.WarmupRatio == 0 {
		cfg.Train.WarmupSteps, cfg.Train.WarmupRatio = 0, 0
	}
	if tc.WeightDecay == 0 {
		cfg.Train.WeightDecay = 0
	}
	return cfg
}

// fillDefaults is withDefaults for helpers without a testing.TB; the
// defaults are embedded data, so failing to read them is a bug.
func fillDefaults(cfg engine.RunConfig) engine.RunConfig {
	if err := cfg.FillDefaults(); err != nil {
		panic(err)
	}
	return cfg
}

// noWarmupNoDecay turns off what a method's defaults add that a short
// test run does not want (FillDefaults cannot tell a 0 from "not given").
func noWarmupNoDecay(cfg engine.RunConfig) engine.RunConfig {
	cfg.Train.WarmupSteps, cfg.Train.WarmupRatio, cfg.Train.WeightDecay = 0, 0, 0
	return cfg
}
