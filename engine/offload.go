package engine

import (
	"fmt"
	"strings"

	"whet/engine/gpuinfo"
	"whet/engine/units"
)

// The values of train.offload_checkpoints.
const (
	OffloadAuto = "auto" // on only where the checkpoints would not fit the device
	OffloadOn   = "on"   // always, with activation checkpointing
	OffloadOff  = "off"  // never (the default)
)

// ParseOffloadMode accepts auto, on or off (any case). Empty is off: the
// CUDA side of offloading (pinned buffers, the copy stream) has not run on
// a GPU yet, so it is opt-in until it has.
func ParseOffloadMode(s string) (string, error) {
	switch m := strings.ToLower(strings.TrimSpace(s)); m {
	case "", OffloadOff:
		return OffloadOff, nil
	case OffloadOn, OffloadAuto:
		return m, nil
	}
	return "", fmt.Errorf("offload_checkpoints %q: want auto, on or off", s)
}

// OffloadCheckpoints is the one rule that decides whether activation
// checkpoints (each layer's input, kept by checkpointing) move to host
// memory: never without checkpointing; with it, always for "on", never for
// "off", and for "auto" only when the run without offload needs more
// device memory (need) than is available (available; 0 or less: unknown,
// and then not). The memory plan applies it to its peak and the memory
// of the card (memplan.ResolveOffload); the engine to the checkpoints it
// is about to allocate and the device's free memory
// (Model.NewActivationsWith). Any other mode (empty: the default) is off.
func OffloadCheckpoints(mode string, checkpointing bool, need, available int64) bool {
	if !checkpointing {
		return false
	}
	switch mode {
	case OffloadOn:
		return true
	case OffloadAuto:
		return available > 0 && need > available
	}
	return false
}

// OffloadSlots is how many layer inputs stay on the device when the
// checkpoints are offloaded: in the forward, the input being read, the
// output being written and the previous input still copying out; in the
// backward, the input of the layer being differentiated, the output its
// recompute rewrites and the next input being fetched back.
const OffloadSlots = 3

// OffloadedLayers is how many layer inputs of an L-layer model live in
// host memory when the checkpoints are offloaded: residual streams 0..L
// rotate through OffloadSlots device buffers, and every stream that a
// later one overwrites (all but the last OffloadSlots) is copied out.
func OffloadedLayers(layers int) int { return max(0, layers+1-OffloadSlots) }

// ckptOffload is the state of offloaded checkpoints: the residual stream
// j lives in device slot j % OffloadSlots (Activations.resid aliases
// them), and streams j < len(host) are copied to host[j] after the
// forward of layer j and fetched back one layer ahead in the backward.
type ckptOffload struct {
	h     HostOffloader
	slots []Tensor // device [Cap, D]
	host  []Tensor // host [Cap, D], one per offloaded stream
	holds []int    // which stream each slot holds now (-1: none)
	saved bool     // the last forward copied its streams out (training)
}

// checkHostMemory refuses pinned host buffers of need bytes when the
// system has less available (MemAvailable); where it cannot tell, it
// lets the allocation decide.
func checkHostMemory(need int64) error {
	_, avail, err := gpuinfo.HostMemory()
	if err != nil || avail <= 0 || need <= avail {
		return nil
	}
	return fmt.Errorf("offloaded activation checkpoints need %s of host memory and the system has %s available: "+
		"shorten data.max_length or the micro-batch, free host memory, or set train.offload_checkpoints: off",
		units.Bytes(need), units.Bytes(avail))
}
