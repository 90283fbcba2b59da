package export

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"whet/engine"
	"whet/engine/hub"
)

// A PEFT export names the base by its Hub id when the base came from the
// Hub, so the adapter loads anywhere: a run whose model is a repo id (with
// the revision in PEFT's revision field when one was asked for), and a run
// whose model is a folder of the Hub cache (models--ORG--NAME/snapshots/
// COMMIT: the id, and the commit as revision). A plain folder stays an
// absolute path. The weights come from the cache (engine.ModelFolder; the
// test is offline), and a repo id that is not there is refused by name.
func TestPEFTBaseModelIsHubID(t *testing.T) {
	tmp := t.TempDir()
	cache := filepath.Join(tmp, "hf-cache")
	t.Setenv("HF_HUB_CACHE", cache)
	t.Setenv("HF_HUB_OFFLINE", "1")
	commit := strings.Repeat("0123456789", 4)
	repo := filepath.Join(cache, "models--whet-test--tiny-llama")
	snap := filepath.Join(repo, "snapshots", commit)
	copyDir(t, testdata("tiny-llama"), snap)
	if err := os.MkdirAll(filepath.Join(repo, "refs"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, ref := range []string{"main", "v1"} {
		if err := os.WriteFile(filepath.Join(repo, "refs", ref), []byte(commit), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	local := filepath.Join(tmp, "local-model")
	copyDir(t, testdata("tiny-llama"), local)
	link := filepath.Join(tmp, "link-to-snapshot")
	if err := os.Symlink(snap, link); err != nil {
		t.Fatal(err)
	}

	lora := engine.LoRAConfig{Rank: 4, Alpha: 8, TargetModules: []string{"q", "k", "v", "o", "gate", "up", "down"}}
	for i, c := range []struct {
		model, wantBase, wantRevision string
	}{
		{"whet-test/tiny-llama", "whet-test/tiny-llama", ""},
		{"whet-test/tiny-llama@v1", "whet-test/tiny-llama", "v1"},
		{snap, "whet-test/tiny-llama", commit},
		{link, "whet-test/tiny-llama", commit},
		{local, local, ""},
	} {
		run := filepath.Join(tmp, "run", string(rune('a'+i)))
		makeLoRARun(t, run, local, 4)
		writeRunYAML(t, run, "r", c.model, "lora", lora) // the run's model as the user named it
		out := filepath.Join(tmp, "peft", string(rune('a'+i)))
		if err := Run(Options{RunDir: run, Format: "peft", OutDir: out}, nil); err != nil {
			t.Errorf("model %s: %v", c.model, err)
			continue
		}
		cfg, err := readJSONMap(filepath.Join(out, "adapter_config.json"))
		if err != nil {
			t.Fatal(err)
		}
		if got := cfg["base_model_name_or_path"]; got != c.wantBase {
			t.Errorf("model %s: base_model_name_or_path %v, want %s", c.model, got, c.wantBase)
		}
		rev, has := cfg["revision"]
		if c.wantRevision == "" && has {
			t.Errorf("model %s: revision %v, want none", c.model, rev)
		}
		if c.wantRevision != "" && rev != c.wantRevision {
			t.Errorf("model %s: revision %v, want %s", c.model, rev, c.wantRevision)
		}
		if i == 0 {
			// The repo id's weights come from the cache.
			if err := Run(Options{RunDir: run, Format: "gguf", Quant: "f16", OutDir: filepath.Join(tmp, "gguf")}, nil); err != nil {
				t.Errorf("GGUF of a run on a Hub id: %v", err)
			}
		}
	}

	run := filepath.Join(tmp, "run", "uncached")
	makeLoRARun(t, run, local, 4)
	writeRunYAML(t, run, "r", "whet-test/not-pulled", "lora", lora)
	err := Run(Options{RunDir: run, Format: "peft", OutDir: filepath.Join(tmp, "peft", "uncached")}, nil)
	if err == nil || !strings.Contains(err.Error(), "whet-test/not-pulled") {
		t.Errorf("a base that is not in the cache (offline): %v, want an error naming it", err)
	}
}

// FuzzSnapshotRef: whatever the path, a repo id read from it is one
// engine/hub accepts, and its cache folder and commit are the path's own.
func FuzzSnapshotRef(f *testing.F) {
	f.Add("/home/u/.cache/huggingface/hub/models--Qwen--Qwen2.5-0.5B/snapshots/0123456789abcdef0123456789abcdef01234567")
	f.Add("models--a--b--c/snapshots/main")
	f.Add("/x/models--org/snapshots/abc")
	f.Add("snapshots/x")
	f.Fuzz(func(t *testing.T, path string) {
		ref, ok := snapshotRef(path)
		if !ok {
			return
		}
		if _, err := hub.ParseRef(ref.String()); err != nil {
			t.Fatalf("%q gave %v, which hub.ParseRef refuses: %v", path, ref, err)
		}
		folder := "models--" + strings.ReplaceAll(ref.Repo, "/", "--")
		path = filepath.Clean(path)
		if got := filepath.Base(filepath.Dir(filepath.Dir(path))); got != folder || filepath.Base(path) != ref.Revision {
			t.Fatalf("%q gave %v: the cache folder would be %s/snapshots/%s", path, ref, folder, ref.Revision)
		}
	})
}
