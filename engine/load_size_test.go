package engine_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"whet/engine"
	"whet/engine/cpu"
	"whet/engine/safetensors"
)

// editConfig rewrites one field of a model folder's config.json.
func editConfig(t *testing.T, dir, key string, value any) {
	t.Helper()
	path := filepath.Join(dir, "config.json")
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatal(err)
	}
	m[key] = value
	out, _ := json.Marshal(m)
	if err := os.WriteFile(path, out, 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestLoadModelHugeConfigIsRefusedBeforeAllocating: a config.json whose
// sizes disagree with the weights (vocab_size 1e12 against a 512-row
// embedding) is refused with a message naming the file and tensor, before
// anything is allocated, instead of panicking on the error path.
func TestLoadModelHugeConfigIsRefusedBeforeAllocating(t *testing.T) {
	for _, vocab := range []float64{1e12, 1e9} {
		dir := copyModelWith(t, func(ts []safetensors.Tensor) []safetensors.Tensor { return ts })
		editConfig(t, dir, "vocab_size", vocab)
		b := cpu.New()
		_, err := engine.LoadModel(dir, b)
		if err == nil {
			t.Fatalf("vocab_size %g: loaded", vocab)
		}
		for _, want := range []string{"model.safetensors", "model.embed_tokens.weight", "config.json"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("vocab_size %g: error %q does not name %s", vocab, err, want)
			}
		}
		if b.PeakBytes() != 0 {
			t.Errorf("vocab_size %g: %d bytes were allocated before the refusal", vocab, b.PeakBytes())
		}
	}
}

// TestNewModelHugeConfigDoesNotPanic: without a file to compare with, a
// config too large to address is an error, not a panic in Free.
func TestNewModelHugeConfigDoesNotPanic(t *testing.T) {
	cfg := tinyConfig(true, false)
	cfg.VocabSize = 1e12
	b := cpu.New()
	_, err := engine.NewModel(cfg, b)
	if err == nil || !strings.Contains(err.Error(), "vocab_size") {
		t.Fatalf("vocab 1e12: %v", err)
	}
	if b.PeakBytes() != 0 {
		t.Errorf("%d bytes were allocated before the refusal", b.PeakBytes())
	}
	// Overflowing int64 bytes altogether.
	cfg.VocabSize, cfg.HiddenSize, cfg.NumHeads, cfg.NumKVHeads, cfg.HeadDim = 1<<40, 1<<30, 1<<20, 1<<20, 1<<10
	if _, err := engine.NewModel(cfg, b); err == nil {
		t.Fatal("overflowing sizes: no error")
	}
}

// smallMemory is a CPU backend that reports little free memory, as a GPU
// already busy with another process would.
type smallMemory struct {
	*cpu.Backend
	free int64
}

func (s smallMemory) MemInfo() (free, total int64, err error) { return s.free, s.free, nil }

var _ engine.FreeMemoryReporter = smallMemory{}

// TestNewModelRefusesWhatMemoryCannotHold: the weights are counted against
// the backend's free memory before the first allocation.
func TestNewModelRefusesWhatMemoryCannotHold(t *testing.T) {
	cfg := tinyConfig(true, false)
	b := smallMemory{Backend: cpu.New(), free: 1 << 10}
	_, err := engine.NewModel(cfg, b)
	if err == nil || !strings.Contains(err.Error(), "free") {
		t.Fatalf("1 KiB free: %v", err)
	}
	if b.PeakBytes() != 0 {
		t.Errorf("%d bytes were allocated before the refusal", b.PeakBytes())
	}
	b.free = 1 << 30
	m, err := engine.NewModel(cfg, b)
	if err != nil {
		t.Fatalf("1 GiB free: %v", err)
	}
	m.Free()
}

// TestFreePartialModel: Free releases what a half-built model holds and
// tolerates what it lacks.
func TestFreePartialModel(t *testing.T) {
	b := cpu.New()
	m := newTiny(t, true, false)
	m.Layers[1].Q = nil
	m.Layers[0].K.W = nil
	m.Layers = append(m.Layers, nil)
	m.Head = nil
	m.Norm = nil
	m.Free()
	(&engine.Model{B: b}).Free()
}

// TestNewModelHugeLayerCountIsRefusedBeforeLayout: a layer count far
// beyond memory is refused from the size of one layer, before the model's
// structure (about 4 KiB of bookkeeping per layer) is built.
func TestNewModelHugeLayerCountIsRefusedBeforeLayout(t *testing.T) {
	cfg := tinyConfig(true, false)
	cfg.NumLayers = 1 << 40
	b := smallMemory{Backend: cpu.New(), free: 1 << 30}
	_, err := engine.NewModel(cfg, b)
	if err == nil || !strings.Contains(err.Error(), "num_hidden_layers") {
		t.Fatalf("2^40 layers: %v", err)
	}
	cfg.NumLayers = 1 << 62
	if _, err := engine.NewModel(cfg, b); err == nil || !strings.Contains(err.Error(), "num_hidden_layers") {
		t.Fatalf("2^62 layers: %v", err)
	}
}

// TestLoadModelMoreLayersThanTheFile: num_hidden_layers beyond the file's
// layers is refused naming the missing layer, before anything is
// allocated or laid out.
func TestLoadModelMoreLayersThanTheFile(t *testing.T) {
	dir := copyModelWith(t, func(ts []safetensors.Tensor) []safetensors.Tensor { return ts })
	editConfig(t, dir, "num_hidden_layers", 1e9)
	b := cpu.New()
	_, err := engine.LoadModel(dir, b)
	if err == nil || !strings.Contains(err.Error(), "model.layers.999999999.") || !strings.Contains(err.Error(), "num_hidden_layers") {
		t.Fatalf("1e9 layers: %v", err)
	}
	if b.PeakBytes() != 0 {
		t.Errorf("%d bytes were allocated before the refusal", b.PeakBytes())
	}
}
