package engine

import "time"

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
