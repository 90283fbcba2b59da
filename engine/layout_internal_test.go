package engine

import (
	"runtime"
	"testing"
)

// TestLayoutBytesPerLayer: the bound the memory check adds per layer for
// the layout's own bookkeeping holds, with room to spare, for a plain and
// an NF4 layout with biases.
func TestLayoutBytesPerLayer(t *testing.T) {
	const layers = 2000
	cfg := ModelConfig{ModelType: "qwen2", VocabSize: 64, HiddenSize: 64, IntermediateSize: 128, NumLayers: layers,
		NumHeads: 4, NumKVHeads: 2, HeadDim: 16, AttentionBias: true}
	for _, o := range []ModelOptions{{}, {NF4Linears: true}} {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		m := layoutModel(cfg, nil, o)
		runtime.ReadMemStats(&after)
		perLayer := (after.TotalAlloc - before.TotalAlloc) / layers
		if perLayer > layoutBytesPerLayer/2 {
			t.Errorf("nf4 %v: the layout takes %d bytes a layer, more than half the %d the memory check counts", o.NF4Linears, perLayer, layoutBytesPerLayer)
		}
		runtime.KeepAlive(m)
	}
}
