package engine

// SetCheckpointHook lets external tests interrupt a checkpoint write.
func SetCheckpointHook(f func(stage string) error) { checkpointHook = f }

// FragmentKVPool takes every other free block of g's paged cache out of
// use for good, so that no lane's blocks are consecutive and attention
// gathers them.
func (g *GroupGenerator) FragmentKVPool() {
	var keep []int
	for i, id := range g.pool.free {
		if i%2 == 0 {
			keep = append(keep, id)
		}
	}
	g.pool.free = keep
}

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

// StackedProducts is how many stacked adapter products a's passes ran.
func StackedProducts(a *Activations) int { return a.stackedProducts }
