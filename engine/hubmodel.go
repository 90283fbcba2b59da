package engine

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"

	"whet/engine/hub"
)

// ModelFolder returns the folder a run loads its model from: model itself
// when it is a folder, or, for a Hugging Face repo id (ORG/NAME or
// ORG/NAME@REVISION), its snapshot in the huggingface_hub cache, pulled
// first when the cache lacks it (HF_ENDPOINT, HF_TOKEN and HF_HUB_OFFLINE
// apply, see engine/hub). When the Hub cannot be reached but the cache has
// the snapshot, that one is used, as transformers does, and notice says
// so; otherwise notice is "".
func ModelFolder(ctx context.Context, model string, opts hub.PullOptions) (dir, notice string, err error) {
	if !hub.LooksLikeRef(model) {
		return model, "", nil
	}
	ref, err := hub.ParseRef(model)
	if err != nil {
		return "", "", fmt.Errorf("model %s: %w", model, err)
	}
	client, err := hub.FromEnv()
	if err != nil {
		return "", "", fmt.Errorf("model %s: %w", model, err)
	}
	snap, err := client.Pull(ctx, ref, opts)
	var he *hub.Error
	if errors.As(err, &he) && he.Kind == hub.ErrNetwork && he.Cached != nil {
		return he.Cached.Dir, fmt.Sprintf("model %s: the Hub is unreachable, using the cached snapshot %s", model, he.Cached.Commit), nil
	}
	if err != nil && (errors.Is(err, hub.ErrRepoNotFound) || errors.Is(err, hub.ErrNotCached)) && !strings.Contains(model, "@") {
		// ORG/NAME is also how a folder two levels down is written: a
		// mistyped folder ends here, so say that no folder has the name
		// either.
		where, _ := os.Getwd()
		return "", "", fmt.Errorf("model %s: %w; nor is there a folder %s in %s", model, err, model, where)
	}
	if err != nil {
		return "", "", fmt.Errorf("model %s: %w", model, err)
	}
	return snap.Dir, "", nil
}
