package demo_test

// The demo's run.yaml is read on top of the method defaults that package
// presets hands the engine (from presets/methods.yaml).
import _ "whet/presets"
