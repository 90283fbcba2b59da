package cuda_test

import (
	"fmt"
	"os"
	"testing"
)

// VisionProfileEnv names a file that the vision step benches
// (TestGemma3Vision4BStep, TestMllama11BVision*Step) append their
// per-kernel tables to when the backend profiles (WHET_CUDA_PROFILE=1):
// one for the timed forward, one for the timed training step, each
// headed by the bench's tag. The tables go to the test log too.
const visionProfileEnv = "WHET_VISION_PROFILE"

// stepProfiler reads the backend's per-kernel table, when it has one.
type stepProfiler struct {
	t   *testing.T
	tag string
	rep interface{ ProfileReport() (string, error) }
}

// newStepProfiler returns a profiler for b, inactive when b does not
// profile (the CPU, or WHET_CUDA_PROFILE unset).
func newStepProfiler(t *testing.T, b any, tag string) *stepProfiler {
	p := &stepProfiler{t: t, tag: tag}
	if r, ok := b.(interface{ ProfileReport() (string, error) }); ok {
		if s, err := r.ProfileReport(); err == nil && s != "" {
			p.rep = r // the first report (what ran so far) is dropped
		}
	}
	return p
}

// drop forgets the times gathered so far (the warm-up's).
func (p *stepProfiler) drop() {
	if p.rep != nil {
		if _, err := p.rep.ProfileReport(); err != nil {
			p.t.Errorf("%s profile: %v", p.tag, err)
		}
	}
}

// report logs the times gathered since the last call under stage and
// appends them to the file visionProfileEnv names.
func (p *stepProfiler) report(stage string, wallSeconds float64) {
	if p.rep == nil {
		return
	}
	s, err := p.rep.ProfileReport()
	if err != nil {
		p.t.Errorf("%s profile: %v", p.tag, err)
		return
	}
	text := fmt.Sprintf("== %s %s: %.3f s wall\n%s\n", p.tag, stage, wallSeconds, s)
	p.t.Log("\n" + text)
	if path := os.Getenv(visionProfileEnv); path != "" {
		f, err := os.OpenFile(path, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
		if err != nil {
			p.t.Errorf("profile file: %v", err)
			return
		}
		defer f.Close()
		if _, err := f.WriteString(text); err != nil {
			p.t.Errorf("profile file %s: %v", path, err)
		}
	}
}
