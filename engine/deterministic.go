package engine

import "fmt"

// DeterministicBackend is implemented by backends that have kernels whose
// results vary in their last bits from run to run (fp32 atomics summing in
// whatever order the hardware takes) beside slower ones that do not:
// engine/cuda's fused attention backward and its split dq / dK-dV
// kernels. SetDeterministic(true) keeps such a backend on the bit-equal
// kernels. Backends without the method have no such choice.
type DeterministicBackend interface {
	SetDeterministic(on bool)
}

// applyDeterministic asks every backend of a run (one per rank) for
// bit-equal reruns when the run file's train.deterministic is set, and
// reports how many backends took the request. Without the setting the
// backends keep their defaults (the fastest kernels).
func applyDeterministic(t TrainConfig, backends []Backend) int {
	if !t.Deterministic {
		return 0
	}
	n := 0
	for _, b := range backends {
		if d, ok := b.(DeterministicBackend); ok {
			d.SetDeterministic(true)
			n++
		}
	}
	return n
}

// deterministicNotice is the run's notice for train.deterministic: set
// backends took the request out of n.
func deterministicNotice(set, n int) string {
	if set == 0 {
		return "train.deterministic: this backend has no fused attention backward to avoid (its kernels are the deterministic ones)"
	}
	return fmt.Sprintf("train.deterministic: the attention backward on its deterministic kernels, which may be slower (%d of %d backends)", set, n)
}
