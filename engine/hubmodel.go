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
// so; notice also says when the snapshot used (offline or unreachable) is
// older than an unfinished pull of the same revision; otherwise it is "".
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
		if n := he.Cached.OlderNotice(); n != "" { // not silently the older one
			return he.Cached.Dir, fmt.Sprintf("model %s: the Hub is unreachable, %s", model, n), nil
		}
		return he.Cached.Dir, fmt.Sprintf("model %s: the Hub is unreachable, using the cached snapshot %s", model, he.Cached.Commit), nil
	}
	partial := errors.As(err, &he) && he.Partial != nil // an id the cache half holds is no mistyped folder
	if err != nil && (errors.Is(err, hub.ErrRepoNotFound) || errors.Is(err, hub.ErrNotCached)) && !strings.Contains(model, "@") && !partial {
		// ORG/NAME is also how a folder two levels down is written: a
		// mistyped folder ends here, so say that no folder has the name
		// either.
		where, _ := os.Getwd()
		return "", "", fmt.Errorf("model %s: %w; nor is there a folder %s in %s", model, err, model, where)
	}
	if err != nil {
		return "", "", fmt.Errorf("model %s: %w", model, err)
	}
	if n := snap.OlderNotice(); n != "" {
		// HF_HUB_OFFLINE took the revision's ref, which a pull that
		// stopped part way left at the commit before it.
		notice = fmt.Sprintf("model %s: HF_HUB_OFFLINE is set, %s", model, n)
	}
	return snap.Dir, notice, nil
}

// NoModelFolder is the error for a model given as a path that does not
// exist. A path written as a Hub repo id could be (a/b/c, or ORG/NAME with
// a character an id may not hold) also says it is not one, and why, so
// that neither reading of what was typed is left unanswered. whet's
// commands and the studio's model page both say it this way.
func NoModelFolder(model string) error {
	repo, _, _ := strings.Cut(model, "@")
	if !strings.Contains(repo, "/") || strings.ContainsRune(model, '\\') ||
		strings.HasPrefix(model, ".") || strings.HasPrefix(model, "/") || strings.HasPrefix(model, "~") {
		return fmt.Errorf("model folder %s does not exist", model)
	}
	_, err := hub.ParseRef(model)
	switch {
	case err == nil:
		return fmt.Errorf("model folder %s does not exist", model)
	case strings.Count(repo, "/") == 1:
		why := strings.TrimPrefix(err.Error(), fmt.Sprintf("repo id %q: ", repo))
		return fmt.Errorf("model folder %s does not exist, nor is it a Hub repo id: %s", model, why)
	}
	return fmt.Errorf("model folder %s does not exist, nor is it a Hub repo id (ORG/NAME)", model)
}
