package engine

import (
	"encoding/json"
	"io"
	"time"
)

// SetRunNameClock names runs without a name by now until the test ends.
func SetRunNameClock(t interface{ Cleanup(func()) }, now func() time.Time) {
	old := runNameNow
	runNameNow = now
	t.Cleanup(func() { runNameNow = old })
}

// SetCheckpointHook lets external tests interrupt a checkpoint write.
func SetCheckpointHook(f func(stage string) error) { checkpointHook = f }

// KVGathers counts the spans g's paged cache gathered rather than viewed
// in place.
func (g *GroupGenerator) KVGathers() int { return g.pool.gathers }

// LoRAStackRows lists the rows (sum of ranks) of each stacked adapter group
// of m, layer by layer.
func LoRAStackRows(m *Model) []int {
	var out []int
	for _, l := range m.Layers {
		for _, st := range l.loraStacks {
			out = append(out, st.rows)
		}
	}
	return out
}

// RanBatched says whether the sampler's last Run generated its prompts in
// one batch.
func (s *Sampler) RanBatched() bool { return s.ranBatched }

// RegisterBackendForTest registers f under name until the test ends, when
// the registry's entry before it comes back.
func RegisterBackendForTest(t interface{ Cleanup(func()) }, name string, f BackendFactory) {
	registryMu.Lock()
	old, had := registry[name]
	registry[name] = f
	registryMu.Unlock()
	t.Cleanup(func() {
		registryMu.Lock()
		defer registryMu.Unlock()
		if had {
			registry[name] = old
		} else {
			delete(registry, name)
		}
	})
}

// ParseTrainerState reads the bytes of a checkpoint's trainer_state.json.
func ParseTrainerState(path string, js []byte) (TrainerState, error) {
	return parseTrainerState(path, js)
}

// ParseStatus reads the bytes of a run's status.json.
func ParseStatus(path string, raw []byte) (RunStatus, error) { return parseStatus(path, raw) }

// ReadMetricsFrom and ReadSamplesFrom read metrics.jsonl and
// samples.jsonl from r, as RunDir.ReadMetrics and ReadSamples read the
// files.
func ReadMetricsFrom(path string, r io.Reader) ([]MetricLine, []string, error) {
	return readMetrics(path, r)
}

func ReadSamplesFrom(path string, r io.Reader) ([]SampleEvent, []string, error) {
	return readSamples(path, r)
}

// SampleLineJSON is the samples.jsonl line the trainer writes for s.
func SampleLineJSON(s SampleEvent) ([]byte, error) { return json.Marshal(newSampleLine(s)) }
