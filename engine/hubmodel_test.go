package engine_test

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"whet/engine"
	"whet/engine/hub"
	"whet/engine/hub/hubtest"
)

// hubEnv serves the tiny Llama as whet-test/tiny-llama on a fake Hub and
// points the hub settings at it and at a fresh cache.
func hubEnv(t *testing.T) *hubtest.Server {
	t.Helper()
	srv := hubtest.New()
	t.Cleanup(srv.Close)
	if _, err := srv.AddDir("whet-test/tiny-llama", "../testdata/tiny-llama"); err != nil {
		t.Fatal(err)
	}
	home := t.TempDir()
	for k, v := range map[string]string{
		"HF_ENDPOINT": srv.URL(), "HF_HOME": home, "HF_HUB_CACHE": "", "HUGGINGFACE_HUB_CACHE": "",
		"HF_TOKEN": "", "HUGGING_FACE_HUB_TOKEN": "", "HF_TOKEN_PATH": "", "HF_HUB_OFFLINE": "", "TRANSFORMERS_OFFLINE": "",
	} {
		t.Setenv(k, v)
	}
	return srv
}

// A run whose model is a Hub id trains from the cached snapshot, and its
// run directory keeps the id.
func TestRunFromHubID(t *testing.T) {
	srv := hubEnv(t)
	dir := t.TempDir()
	const id = "whet-test/tiny-llama"
	cfg := engine.RunConfig{Name: "hub", Model: id, Method: "lora", Backend: "cpu", RunsDir: dir,
		LoRA:  engine.LoRAConfig{Rank: 4, Alpha: 8},
		Data:  engine.DataConfig{Path: abs("../testdata/datasets/tiny-chat.jsonl"), MaxLength: 128, Seed: 1},
		Train: engine.TrainConfig{MaxSteps: 2, MicroBatch: 2, LR: 1e-3, Seed: 1}}
	runToEnd(t, cfg)
	saved, err := engine.LoadRunConfig(engine.RunDir(filepath.Join(dir, "hub")).Config())
	if err != nil || saved.Model != id {
		t.Fatalf("run.yaml model = %q (%v), want the Hub id", saved.Model, err)
	}
	var ac map[string]any
	b, _ := os.ReadFile(filepath.Join(engine.RunDir(filepath.Join(dir, "hub")).Adapter(), "adapter_config.json"))
	if json.Unmarshal(b, &ac); ac["base_model_name_or_path"] != id {
		t.Fatalf("adapter base model %v, want %s", ac["base_model_name_or_path"], id)
	}

	// Offline, and with the Hub gone, the cache answers.
	srv.Close()
	t.Setenv("HF_HUB_OFFLINE", "1")
	folder, notice, err := engine.ModelFolder(context.Background(), id, hub.PullOptions{})
	if err != nil || notice != "" || !strings.Contains(folder, "models--whet-test--tiny-llama") {
		t.Fatalf("offline: %q %q %v", folder, notice, err)
	}
	t.Setenv("HF_HUB_OFFLINE", "")
	folder, notice, err = engine.ModelFolder(context.Background(), id, hub.PullOptions{})
	if err != nil || !strings.Contains(notice, "unreachable") || !strings.Contains(folder, "snapshots") {
		t.Fatalf("hub gone: %q %q %v", folder, notice, err)
	}
	// A folder is a folder, whatever the Hub.
	if folder, _, err := engine.ModelFolder(context.Background(), "../testdata/tiny-llama", hub.PullOptions{}); err != nil || folder != "../testdata/tiny-llama" {
		t.Fatalf("folder: %q %v", folder, err)
	}
}

// A run file may pin a revision: ORG/NAME@REVISION stays a Hub id.
func TestRunConfigHubIDWithRevision(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "run.yaml")
	os.WriteFile(path, []byte("model: whet-test/tiny-llama@v1.0\ndata:\n  path: d.jsonl\n"), 0o644)
	cfg, err := engine.LoadRunConfig(path)
	if err != nil || cfg.Model != "whet-test/tiny-llama@v1.0" {
		t.Fatalf("model = %q, %v", cfg.Model, err)
	}
}

// ORG/NAME is also how a folder two levels down is written: when neither
// the Hub nor the working directory has it, the error says both, so a
// mistyped folder is not reported as a missing Hub repository only.
func TestModelFolderSaysNoFolderEither(t *testing.T) {
	hubEnv(t)
	t.Chdir(t.TempDir())
	_, _, err := engine.ModelFolder(context.Background(), "models/tiny", hub.PullOptions{})
	wd, _ := os.Getwd()
	if !errors.Is(err, hub.ErrRepoNotFound) || !strings.Contains(err.Error(), "nor is there a folder models/tiny in "+wd) {
		t.Fatalf("ModelFolder(models/tiny): %v, want the Hub's answer and no folder in %s", err, wd)
	}
}
