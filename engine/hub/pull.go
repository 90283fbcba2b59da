package hub

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"net/http"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"whet/engine/units"
)

// PullOptions tune one pull.
type PullOptions struct {
	// Files selects the repository's files to fetch; nil means Wanted.
	// (ConfigOnly is what `whet fit` needs.)
	Files func(name string) bool
	// Progress, if set, receives the pull's reports, one call at a time.
	// It runs on the download goroutines: keep it quick (send to a
	// buffered channel, or drop reports when the reader is behind).
	Progress func(Progress)
}

func (o PullOptions) files() func(string) bool {
	if o.Files != nil {
		return o.Files
	}
	return Wanted
}

// Pull brings a revision of a model into the cache and returns its
// snapshot. Files already cached are not fetched again; a download that
// was interrupted (ctx cancelled, connection lost, process killed) resumes
// from its .incomplete file. In offline mode (Settings.Offline) the cache
// alone answers. Failures are *Error values; see the Err kinds.
func (c *Client) Pull(ctx context.Context, ref Ref, opts PullOptions) (*Snapshot, error) {
	snap, err := c.pull(ctx, ref, opts)
	var he *Error
	if errors.As(err, &he) && (he.Kind == ErrRepoNotFound || he.Kind == ErrNotCached) {
		// A mistyped id (walk/dmeo, qwen/qwen2.5-0.5b-instruct) names the
		// cached repos it is close to.
		if near := c.Cache().similar(ref.Repo); len(near) > 0 {
			he.Msg += fmt.Sprintf("; did you mean %s? (cached)", strings.Join(near, " or "))
		}
	}
	return snap, err
}

func (c *Client) pull(ctx context.Context, ref Ref, opts PullOptions) (*Snapshot, error) {
	if err := checkRepoID(ref.Repo); err != nil {
		return nil, err
	}
	if ref.Revision == "" {
		ref.Revision = DefaultRevision
	}
	if err := checkRevision(ref.Revision); err != nil {
		return nil, err
	}
	cache := c.Cache()
	want := opts.files()
	if c.Offline {
		snap, err := cache.Lookup(ref)
		if err == nil {
			if missing := missingFiles(snap, want); len(missing) > 0 {
				err = newError(ErrNotCached, nil, "the cached snapshot of %s (%s) lacks %s", ref, snap.Dir, strings.Join(missing, ", "))
			}
		}
		if err != nil {
			var he *Error
			if errors.As(err, &he) && he.Kind == ErrNotCached {
				if p, ok := cache.Partial(ref); ok {
					// Not missing: an earlier pull stopped part way.
					he.Partial = p
					he.Msg = fmt.Sprintf("HF_HUB_OFFLINE is set and %s is only partly in the cache %s: %s; the pull resumes when the Hub can be reached (unset HF_HUB_OFFLINE)", ref, cache.Dir, p)
				} else {
					he.Msg = "HF_HUB_OFFLINE is set and " + he.Msg + ": pull it once with the network (unset HF_HUB_OFFLINE)"
				}
			}
			return nil, err
		}
		snap.NewerPartial = cache.newerPartial(ref, snap)
		return snap, nil
	}

	info, err := c.repoInfo(ctx, ref)
	if err != nil {
		return nil, c.offerCache(ctx, ref, want, err)
	}
	var files []sibling
	for _, s := range info.Siblings {
		if want(s.Name) {
			files = append(files, s)
		}
	}
	if err := checkModelFiles(ref, info.SHA, files, want); err != nil {
		return nil, err
	}

	// Sizes and what is already here, from the model info alone: the disk
	// check comes before the first byte.
	sizes := map[string]int64{}
	have := map[string]int64{}
	var need int64
	for _, s := range files {
		sizes[s.Name] = s.size()
		etag := s.etag()
		if etag == "" || CheckFileName(etag) != nil || strings.Contains(etag, "/") {
			need += s.size()
			continue
		}
		if st, err := os.Stat(cache.blobPath(ref.Repo, etag)); err == nil && st.Size() == s.size() {
			have[s.Name] = s.size()
			continue
		}
		if st, err := os.Stat(cache.blobPath(ref.Repo, etag) + ".incomplete"); err == nil && st.Size() <= s.size() {
			have[s.Name] = st.Size()
		}
		need += s.size() - have[s.Name]
	}
	// Writable first: a read-only disk is nearly full too, and "only
	// 1.00 MiB is free" sent the user to free space that was never the
	// problem.
	if need > 0 {
		if err := checkWritable(cache, ref); err != nil {
			return nil, err
		}
	}
	if err := c.checkSpace(ref, need); err != nil {
		return nil, err
	}

	if need > 0 {
		cache.writePlan(ref, info.SHA, files)
	}
	track := newTracker(opts.Progress, ref.Repo, info.SHA, sizes, have)
	track.start()
	defer track.stop()
	if err := c.fetchAll(ctx, ref, info.SHA, files, track); err != nil {
		return nil, err
	}
	if err := cache.writeRef(ref.Repo, ref.Revision, info.SHA); err != nil {
		return nil, err
	}
	cache.removePlan(ref, info.SHA)
	snap, err := cache.Lookup(Ref{Repo: ref.Repo, Revision: info.SHA})
	if err != nil {
		return nil, err
	}
	snap.Ref = ref
	track.done()
	return snap, nil
}

// offerCache turns a failed model-info request into the error to show:
// when the Hub could not be reached and the cache has the revision, the
// error says so and carries the snapshot.
func (c *Client) offerCache(ctx context.Context, ref Ref, want func(string) bool, err error) error {
	var he *Error
	if errors.As(err, &he) {
		return err
	}
	if ctx.Err() != nil {
		return err
	}
	e := newError(ErrNetwork, err, "cannot reach %s for %s: %v", c.Endpoint, ref, err)
	if snap, lerr := c.Cache().Lookup(ref); lerr == nil && len(missingFiles(snap, want)) == 0 {
		e.Cached = snap
		if snap.NewerPartial = c.Cache().newerPartial(ref, snap); snap.NewerPartial != nil {
			e.Msg += fmt.Sprintf("; the cache has an older complete snapshot (commit %s, %s) and a newer pull (%s) is partial: %s; set HF_HUB_OFFLINE=1 to use the older snapshot, or pull again when the Hub can be reached",
				snap.Commit, snap.Dir, ShortCommit(snap.NewerPartial.Commit), snap.NewerPartial)
		} else {
			e.Msg += fmt.Sprintf("; the cache has it (commit %s, %s): set HF_HUB_OFFLINE=1 to use that copy", snap.Commit, snap.Dir)
		}
	} else if p, ok := c.Cache().Partial(ref); ok {
		e.Partial = p
		e.Msg += fmt.Sprintf("; an earlier pull of it stopped part way: %s; the pull resumes when the Hub can be reached (check the connection, or set HF_ENDPOINT to a mirror)", p)
	} else {
		e.Msg += "; nothing of it is cached: check the connection, or set HF_ENDPOINT to a mirror"
	}
	return e
}

// checkModelFiles makes sure the selection is a model whet can load:
// a config, and safetensors weights when the selection wants weights.
func checkModelFiles(ref Ref, commit string, files []sibling, want func(string) bool) error {
	hasConfig, hasWeights := false, false
	for _, s := range files {
		hasConfig = hasConfig || s.Name == "config.json"
		hasWeights = hasWeights || path.Ext(s.Name) == ".safetensors"
	}
	switch {
	case want("config.json") && !hasConfig:
		return newError(ErrRepoNotFound, nil, "%s (commit %s) has no config.json: not a transformers model", ref, commit)
	case want("model.safetensors") && !hasWeights:
		return newError(ErrRepoNotFound, nil, "%s (commit %s) has no .safetensors weights; whet does not load pickled .bin or .pth files", ref, commit)
	}
	return nil
}

var shardName = regexp.MustCompile(`"([^"/\\]+\.safetensors)"`)

// shardOf splits transformers' shard names, base-NNNNN-of-NNNNN.safetensors.
var shardOf = regexp.MustCompile(`^(.+)-(\d{5})-of-(\d{5})\.safetensors$`)

// missingFiles lists what a cached snapshot lacks for a selection: the
// config, some weights, and every shard the weights' index names.
func missingFiles(s *Snapshot, want func(string) bool) []string {
	var missing []string
	if want("config.json") && !s.Has("config.json") {
		missing = append(missing, "config.json")
	}
	if !want("model.safetensors") {
		return missing
	}
	weights := false
	seen := map[string]bool{}
	for _, f := range s.Files {
		if path.Ext(f) == ".safetensors" {
			weights = true
		}
		// A shard's name counts its siblings: every one of them must be
		// here, index or not (an interrupted pull leaves some shards
		// and maybe no index yet).
		if m := shardOf.FindStringSubmatch(f); m != nil {
			n, _ := strconv.Atoi(m[3])
			for i := 1; i <= n; i++ {
				sib := fmt.Sprintf("%s-%05d-of-%s.safetensors", m[1], i, m[3])
				if !seen[sib] && !s.Has(sib) {
					missing = append(missing, sib)
				}
				seen[sib] = true
			}
		}
		if strings.HasSuffix(f, ".safetensors.index.json") {
			index, err := os.ReadFile(path.Join(s.Dir, f))
			if err != nil {
				missing = append(missing, f)
				continue
			}
			for _, m := range shardName.FindAllStringSubmatch(string(index), -1) {
				if !seen[m[1]] && !s.Has(m[1]) {
					missing = append(missing, m[1])
				}
				seen[m[1]] = true
			}
		}
	}
	if !weights {
		missing = append(missing, "*.safetensors")
	}
	return missing
}

func (c *Client) checkSpace(ref Ref, need int64) error {
	if need <= 0 {
		return nil
	}
	free := c.FreeSpace
	if free == nil {
		free = freeBytes
	}
	avail, err := free(c.CacheDir)
	if err != nil {
		return nil // unknown: the download itself will say if the disk fills
	}
	if avail < need {
		return newError(ErrNoSpace, nil, "%s needs %s more on %s but only %s is free: free some space or set HF_HUB_CACHE to a larger disk", ref, units.Bytes(need), c.CacheDir, units.Bytes(avail))
	}
	return nil
}

// checkWritable makes sure the repo's blobs folder can be made and
// written before the first byte, so that a cache the user cannot write
// (another user's, a read-only disk, a path through a file) is named with
// what to do instead of failing on a lock file halfway through a pull.
func checkWritable(cache Cache, ref Ref) error {
	dir := filepath.Join(cache.RepoDir(ref.Repo), "blobs")
	err := os.MkdirAll(dir, 0o755)
	if err == nil {
		var f *os.File
		if f, err = os.CreateTemp(dir, ".whet-write-check-*"); err == nil {
			f.Close()
			os.Remove(f.Name())
		}
	}
	if err != nil {
		return newError(ErrCacheNotWritable, err, "cannot write the Hugging Face cache %s (%v): set HF_HUB_CACHE (or HF_HOME) to a folder you can write", cache.Dir, err)
	}
	return nil
}

// fetchAll fetches the files, Workers at a time, and stops at the first
// failure (cancelling the others, which keep their partial bytes).
func (c *Client) fetchAll(ctx context.Context, ref Ref, commit string, files []sibling, track *tracker) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	sort.Slice(files, func(i, j int) bool { return files[i].size() > files[j].size() }) // big first: the tail is short
	jobs := make(chan sibling)
	errs := make([]error, len(files))
	var wg sync.WaitGroup
	for w := 0; w < min(c.workers(), len(files)); w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for s := range jobs {
				if err := c.fetchFile(ctx, ref, commit, s, track); err != nil {
					for i := range files {
						if files[i].Name == s.Name {
							errs[i] = err
						}
					}
					cancel()
				}
			}
		}()
	}
feed:
	for _, s := range files {
		select {
		case jobs <- s:
		case <-ctx.Done():
			break feed
		}
	}
	close(jobs)
	wg.Wait()
	// The first real failure, not the cancellations it caused.
	var first error
	for _, err := range errs {
		if err != nil && !errors.Is(err, context.Canceled) {
			return err
		}
		if first == nil {
			first = err
		}
	}
	if first == nil && ctx.Err() != nil {
		first = ctx.Err()
	}
	if first != nil {
		return fmt.Errorf("pull %s: %w (what arrived is kept and the next pull resumes)", ref, first)
	}
	return nil
}

// fetchFile makes one file of the snapshot present: linked already, or
// its blob cached (by whet or huggingface_hub, for this or another
// commit), or downloaded.
func (c *Client) fetchFile(ctx context.Context, ref Ref, commit string, s sibling, track *tracker) error {
	cache := c.Cache()
	pointer := path.Join(cache.snapshotDir(ref.Repo, commit), s.Name)
	if st, err := os.Stat(pointer); err == nil && st.Mode().IsRegular() {
		track.set(s.Name, st.Size(), true)
		return nil
	}
	meta, err := c.head(ctx, Ref{Repo: ref.Repo, Revision: commit}, commit, s.Name)
	if err != nil {
		var he *Error
		if !errors.As(err, &he) && ctx.Err() == nil {
			err = newError(ErrNetwork, err, "cannot reach %s for %s of %s: %v", c.Endpoint, s.Name, ref, err)
		}
		return err
	}
	blob := cache.blobPath(ref.Repo, meta.etag)
	if st, err := os.Stat(blob); err != nil || st.Size() != meta.size {
		unlock, err := fileLock(ctx, cache.lockPath(ref.Repo, meta.etag))
		if err != nil {
			return err
		}
		err = c.download(ctx, ref, s.Name, meta, blob, func(done int64) { track.set(s.Name, done, false) },
			func(note string) { track.note(s.Name, note) })
		unlock()
		if err != nil {
			return err
		}
	}
	if err := cache.link(ref.Repo, commit, s.Name, meta.etag); err != nil {
		return err
	}
	track.set(s.Name, meta.size, true)
	return nil
}

// sha256ETag is the form of an LFS file's ETag: the SHA-256 of its bytes,
// which the download checks before the blob gets its name.
var sha256ETag = regexp.MustCompile(`^[0-9a-f]{64}$`)

// download fills blob from meta.location through blob.incomplete,
// resuming from the bytes already there with a Range request and again
// after a dropped connection. Resumed bytes whose SHA-256 comes out wrong
// (a partial file damaged on disk, or by an earlier server) are discarded
// and the file is fetched again from its first byte, once, with a note;
// a second mismatch is an error. The caller holds the blob's lock.
func (c *Client) download(ctx context.Context, ref Ref, name string, meta fileMeta, blob string, report func(int64), note func(string)) error {
	if st, err := os.Stat(blob); err == nil && st.Size() == meta.size {
		return nil // another pull finished it while this one waited for the lock
	}
	if err := os.MkdirAll(path.Dir(blob), dirMode); err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	partial := blob + ".incomplete"
	f, err := os.OpenFile(partial, os.O_RDWR|os.O_CREATE, fileMode)
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	defer func() {
		// An interrupted download keeps its bytes for the next pull; an
		// empty file would only be litter.
		if st, err := f.Stat(); err == nil && st.Size() == 0 {
			os.Remove(partial)
		}
		f.Close()
	}()
	var sum hash.Hash
	if sha256ETag.MatchString(meta.etag) {
		sum = sha256.New()
	}
	have, err := f.Seek(0, io.SeekEnd)
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	if have > meta.size {
		have = 0 // not this file's beginning
	}
	if err := restart(f, sum, have); err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	report(have)
	// resumed: some of the bytes hashed were not fetched by one request
	// from byte 0 of this run. Only then may a fresh start mend a mismatch.
	resumed, restarted := have > 0, false

again:
	stalls := 0
	wait := c.backoff()
	for have < meta.size {
		// Each attempt has its own context, which a watchdog cancels when
		// the body stops arriving: a silent stall is a dropped connection.
		cancelAttempt := context.CancelFunc(func() {})
		resp, err := c.send(ctx, c.follow(), func() (*http.Request, error) {
			cancelAttempt()
			attempt, cancel := context.WithCancel(ctx)
			cancelAttempt = cancel
			req, err := c.request(attempt, http.MethodGet, meta.location)
			if err == nil && have > 0 {
				req.Header.Set("Range", "bytes="+strconv.FormatInt(have, 10)+"-")
			}
			return req, err
		})
		if err != nil {
			cancelAttempt()
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return newError(ErrNetwork, err, "download %s of %s: %v", name, ref, err)
		}
		switch {
		case resp.StatusCode == http.StatusPartialContent && have > 0 && strings.HasPrefix(resp.Header.Get("Content-Range"), "bytes "+strconv.FormatInt(have, 10)+"-"):
			resumed = true
		case resp.StatusCode == http.StatusOK:
			if have > 0 { // the server ignored the Range: start over
				have = 0
				if err := restart(f, sum, 0); err != nil {
					resp.Body.Close()
					cancelAttempt()
					return fmt.Errorf("%s: %w", name, err)
				}
				report(0)
			}
		default:
			resp.Body.Close()
			cancelAttempt()
			if resp.StatusCode >= 400 {
				return c.statusError(resp, ref, name)
			}
			return newError(ErrProtocol, nil, "download %s of %s: unexpected %s", name, ref, resp.Status)
		}
		before := have
		dog := time.AfterFunc(c.idleTimeout(), cancelAttempt)
		n, cerr := copyReporting(ctx, f, sum, io.LimitReader(resp.Body, meta.size-have), func(n int64) {
			dog.Reset(c.idleTimeout())
			report(have + n)
		})
		dog.Stop()
		resp.Body.Close()
		cancelAttempt()
		have += n
		if cerr == nil && have < meta.size {
			cerr = io.ErrUnexpectedEOF
		}
		if cerr != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if werr := (*writeError)(nil); errors.As(cerr, &werr) {
				return c.writeFailed(ref, name, partial, have, meta.size, werr.err)
			}
			if have > before {
				stalls, wait = 0, c.backoff()
			} else if stalls++; stalls > c.retries() {
				return newError(ErrNetwork, cerr, "download %s of %s: the connection keeps dropping (%v); run the pull again to resume", name, ref, cerr)
			}
			if err := sleep(ctx, wait); err != nil {
				return err
			}
			wait = min(2*wait, c.maxBackoff())
		}
	}
	if err := f.Sync(); err != nil {
		return c.writeFailed(ref, name, partial, have, meta.size, err)
	}
	if sum != nil {
		if got := hex.EncodeToString(sum.Sum(nil)); got != meta.etag {
			if resumed && !restarted {
				restarted, resumed = true, false
				if err := restart(f, sum, 0); err != nil {
					return fmt.Errorf("%s: %w", name, err)
				}
				have = 0
				report(0)
				if note != nil {
					note(fmt.Sprintf("%s: the resumed bytes have SHA-256 %s, not %s; discarded them, downloading it again from the start", name, got, meta.etag))
				}
				goto again
			}
			f.Close()
			os.Remove(partial)
			if restarted {
				return newError(ErrChecksum, nil, "%s of %s: the downloaded bytes have SHA-256 %s, not %s as the server announced, also when downloaded again from the start; discarded", name, ref, got, meta.etag)
			}
			return newError(ErrChecksum, nil, "%s of %s: the downloaded bytes have SHA-256 %s, not %s as the server announced; discarded (run the pull again)", name, ref, got, meta.etag)
		}
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	if err := os.Rename(partial, blob); err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	return nil
}

// restart makes the partial file hold its first have bytes, and the hash
// have seen exactly those.
func restart(f *os.File, sum hash.Hash, have int64) error {
	if err := f.Truncate(have); err != nil {
		return err
	}
	if sum != nil {
		sum.Reset()
		if _, err := f.Seek(0, io.SeekStart); err != nil {
			return err
		}
		if _, err := io.CopyN(sum, f, have); err != nil {
			return err
		}
	}
	_, err := f.Seek(have, io.SeekStart)
	return err
}

// writeError marks a failure of the local disk, which no retry mends.
// writeFailed is the error of a download whose bytes could not be
// written. A disk that fills up mid-download (the space check before the
// first byte cannot see what else writes to the disk) is ErrNoSpace and
// says what to do; the os error already names the file, once.
func (c *Client) writeFailed(ref Ref, name, partial string, have, size int64, err error) error {
	if errors.Is(err, syscall.ENOSPC) {
		return newError(ErrNoSpace, err, "%s of %s: the disk of the Hugging Face cache %s filled up after %s of %s; those bytes are kept in %s: free some space or set HF_HUB_CACHE to a larger disk, then pull again to resume", name, ref, c.CacheDir, units.Bytes(have), units.Bytes(size), partial)
	}
	return fmt.Errorf("download %s of %s: %w", name, ref, err)
}

type writeError struct{ err error }

func (e *writeError) Error() string { return e.err.Error() }

// copyReporting appends what r gives to f (and sum), reporting the bytes
// so far. A cancelled ctx stops it before the next write: the transport
// notices the cancel asynchronously and may still hand over bytes it has
// read, which would otherwise land in the partial file after the user
// stopped the pull.
func copyReporting(ctx context.Context, f *os.File, sum hash.Hash, r io.Reader, report func(int64)) (int64, error) {
	buf := make([]byte, 256<<10)
	var n int64
	for {
		k, rerr := r.Read(buf)
		if err := ctx.Err(); err != nil {
			return n, err
		}
		if k > 0 {
			if _, err := f.Write(buf[:k]); err != nil {
				return n, &writeError{err}
			}
			if sum != nil {
				sum.Write(buf[:k])
			}
			n += int64(k)
			report(n)
		}
		if rerr == io.EOF {
			return n, nil
		}
		if rerr != nil {
			return n, rerr
		}
	}
}
