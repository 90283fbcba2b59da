package export

import (
	"debug/elf"
	"encoding/json"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// TestLlamaCppHasNoMultimodalAPI: issue 24 asks that the GGUF + mmproj pair
// of a tiny Gemma 3 vision model describe a test image in llama.cpp with
// whet's greedy tokens "if node-llama-cpp's multimodal API allows it". The
// pinned node-llama-cpp (tools/setup/llamacpp.sh) has none: no library or
// addon it bundles defines a function of llama.cpp's multimodal runtime
// (mtmd_*, clip_*: tools/mtmd, which libllama's clip stub points to), and
// its JavaScript never calls one or takes an mmproj file. So the image
// test cannot be written against it, and docs/vision.md says what
// TestGemma3VisionExports checks instead. This test fails when a new pin
// brings that API, so that the image test is written then. The scan is
// shown to work by finding libllama's llama_model_load_from_file.
func TestLlamaCppHasNoMultimodalAPI(t *testing.T) {
	requireLlama(t)
	platform := map[string]string{"amd64": "linux-x64", "arm64": "linux-arm64"}[runtime.GOARCH]
	root := filepath.Join(repoRoot, ".cache/npm-llama/node_modules")
	var pkg struct{ Version string }
	if data, err := os.ReadFile(filepath.Join(root, "node-llama-cpp/package.json")); err != nil {
		t.Fatal(err)
	} else if err := json.Unmarshal(data, &pkg); err != nil {
		t.Fatal(err)
	}
	bins := filepath.Join(root, "@node-llama-cpp", platform, "bins", platform)
	entries, err := os.ReadDir(bins)
	if err != nil {
		t.Fatal(err)
	}
	scanned, loader := 0, false
	for _, e := range entries {
		name := e.Name()
		if !strings.HasSuffix(name, ".so") && !strings.HasSuffix(name, ".node") {
			continue
		}
		f, err := elf.Open(filepath.Join(bins, name))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		syms, err := f.DynamicSymbols()
		f.Close()
		if err != nil {
			t.Fatalf("%s: dynamic symbols: %v", name, err)
		}
		scanned++
		for _, s := range syms {
			if s.Section == elf.SHN_UNDEF || elf.ST_TYPE(s.Info) != elf.STT_FUNC {
				continue
			}
			if s.Name == "llama_model_load_from_file" {
				loader = true
			}
			if strings.HasPrefix(s.Name, "mtmd_") || strings.HasPrefix(s.Name, "clip_") {
				t.Errorf("node-llama-cpp %s: %s defines %s: llama.cpp's multimodal runtime is bundled now; write the test that describes an image through whet's mmproj (issue 24) and update docs/vision.md", pkg.Version, name, s.Name)
			}
		}
	}
	if scanned < 2 || !loader {
		t.Fatalf("scanned %d libraries in %s, llama_model_load_from_file found: %v: the scan sees nothing", scanned, bins, loader)
	}
	js := 0
	err = filepath.WalkDir(filepath.Join(root, "node-llama-cpp/dist"), func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(path, ".js") {
			return err
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		js++
		for _, word := range []string{"mtmd", "mmproj"} {
			if strings.Contains(strings.ToLower(string(data)), word) {
				t.Errorf("node-llama-cpp %s: %s mentions %q: it may take an mmproj now; write the image test (issue 24)", pkg.Version, path, word)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if js < 50 {
		t.Fatalf("only %d JavaScript files under node-llama-cpp/dist", js)
	}
	t.Logf("node-llama-cpp %s: %d libraries and %d JavaScript files, no multimodal API", pkg.Version, scanned, js)
}
