package engine_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"whet/engine"
	"whet/engine/cpu"
	"whet/engine/safetensors"
)

// copyModelWithout writes a copy of testdata/tiny-qwen2 whose weights miss
// one tensor, or carry it with a wrong shape.
func copyModelWith(t *testing.T, edit func([]safetensors.Tensor) []safetensors.Tensor) string {
	t.Helper()
	src := filepath.Join("..", "testdata", "tiny-qwen2")
	dir := t.TempDir()
	cfg, err := os.ReadFile(filepath.Join(src, "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "config.json"), cfg, 0o644)
	f, err := safetensors.Open(filepath.Join(src, "model.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var ts []safetensors.Tensor
	for _, n := range f.Names() {
		info, _ := f.Info(n)
		v, err := f.Float32(n)
		if err != nil {
			t.Fatal(err)
		}
		ts = append(ts, safetensors.F32Tensor(n, info.Shape, v))
	}
	if err := safetensors.Write(filepath.Join(dir, "model.safetensors"), edit(ts), nil); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestLoadModelErrorsNameFileAndTensor(t *testing.T) {
	const victim = "model.layers.1.self_attn.k_proj.bias"
	missing := copyModelWith(t, func(ts []safetensors.Tensor) []safetensors.Tensor {
		var out []safetensors.Tensor
		for _, x := range ts {
			if x.Name != victim {
				out = append(out, x)
			}
		}
		return out
	})
	_, err := engine.LoadModel(missing, cpu.New())
	if err == nil || !strings.Contains(err.Error(), victim) || !strings.Contains(err.Error(), "model.safetensors") {
		t.Fatalf("missing tensor: %v", err)
	}
	misshaped := copyModelWith(t, func(ts []safetensors.Tensor) []safetensors.Tensor {
		for i, x := range ts {
			if x.Name == victim {
				ts[i] = safetensors.F32Tensor(victim, []int{3}, []float32{1, 2, 3})
			}
		}
		return ts
	})
	_, err = engine.LoadModel(misshaped, cpu.New())
	if err == nil || !strings.Contains(err.Error(), victim) || !strings.Contains(err.Error(), "shape") {
		t.Fatalf("mis-shaped tensor: %v", err)
	}
	// Unknown architecture: named with the file and field.
	os.WriteFile(filepath.Join(missing, "config.json"), []byte(`{"model_type":"gpt_neox","vocab_size":10}`), 0o644)
	_, err = engine.LoadModel(missing, cpu.New())
	if err == nil || !strings.Contains(err.Error(), "config.json") || !strings.Contains(err.Error(), "gpt_neox") {
		t.Fatalf("unknown model_type: %v", err)
	}
	// Truncated weights file.
	trunc := copyModelWith(t, func(ts []safetensors.Tensor) []safetensors.Tensor { return ts })
	p := filepath.Join(trunc, "model.safetensors")
	st, _ := os.Stat(p)
	os.Truncate(p, st.Size()-100)
	_, err = engine.LoadModel(trunc, cpu.New())
	if err == nil || !strings.Contains(err.Error(), "model.safetensors") {
		t.Fatalf("truncated file: %v", err)
	}
	t.Logf("truncated: %v", err)
}
