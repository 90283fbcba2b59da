package cuda_test

// RunConfig.FillDefaults reads the method defaults that package presets
// hands the engine (from presets/methods.yaml).
import _ "whet/presets"
