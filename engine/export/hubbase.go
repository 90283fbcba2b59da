package export

import (
	"os"
	"path/filepath"
	"strings"

	"whet/engine/hub"
)

// hubModel says where a base model came from on the Hub, if it did: a
// model named by repo id (ORG/NAME[@REVISION] that is not an existing file
// or folder, hub.LooksLikeRef), or a folder that is a huggingface_hub cache
// snapshot (…/models--ORG--NAME/snapshots/COMMIT, also reached through a
// symbolic link), whose revision is that commit.
func hubModel(model string) (hub.Ref, bool) {
	if hub.LooksLikeRef(model) {
		ref, err := hub.ParseRef(model)
		return ref, err == nil
	}
	st, err := os.Stat(model)
	if err != nil || !st.IsDir() {
		return hub.Ref{}, false
	}
	candidates := []string{model}
	if real, err := filepath.EvalSymlinks(model); err == nil {
		candidates = append(candidates, real)
	}
	for _, dir := range candidates {
		if abs, err := filepath.Abs(dir); err == nil {
			if ref, ok := snapshotRef(abs); ok {
				return ref, true
			}
		}
	}
	return hub.Ref{}, false
}

// snapshotRef reads the repo id and commit out of a huggingface_hub cache
// snapshot's path, …/models--ORG--NAME/snapshots/COMMIT.
func snapshotRef(path string) (hub.Ref, bool) {
	path = filepath.Clean(path)
	commit := filepath.Base(path)
	snapshots := filepath.Dir(path)
	if filepath.Base(snapshots) != "snapshots" {
		return hub.Ref{}, false
	}
	rest, ok := strings.CutPrefix(filepath.Base(filepath.Dir(snapshots)), "models--")
	if !ok {
		return hub.Ref{}, false
	}
	// ORG and NAME hold no "--" (hub.ParseRef refuses it), so the folder
	// name splits one way only.
	org, name, ok := strings.Cut(rest, "--")
	if !ok {
		return hub.Ref{}, false
	}
	ref, err := hub.ParseRef(org + "/" + name + "@" + commit)
	// A name holding "@" would move part of it into the revision: such a
	// folder is not one the cache writes, so it is no snapshot.
	if err != nil || ref.Repo != org+"/"+name || ref.Revision != commit {
		return hub.Ref{}, false
	}
	return ref, true
}
