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
