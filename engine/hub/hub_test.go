package hub_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"whet/engine/hub"
	"whet/engine/hub/hubtest"
	"whet/engine/units"
)

const repo = "whet-test/tiny"

// weights is big enough to arrive in several reads, so drops land mid-blob.
var weights = bytes.Repeat([]byte("0123456789abcdef"), 64<<10) // 1 MiB

func tinyFiles() map[string][]byte {
	return map[string][]byte{
		"config.json":                  []byte(`{"model_type":"llama"}`),
		"generation_config.json":       []byte(`{"eos_token_id":2}`),
		"tokenizer.json":               []byte(`{"model":{"type":"BPE"}}`),
		"tokenizer_config.json":        []byte(`{"chat_template":"{{x}}"}`),
		"model.safetensors":            weights,
		"pytorch_model.bin":            []byte("pickle"),
		"consolidated.pth":             []byte("pickle"),
		"original/consolidated.00.pth": []byte("pickle"),
		"original/params.json":         []byte("{}"),
		"README.md":                    []byte("# tiny"),
	}
}

// fakeHub serves the tiny repo on main; the client retries quickly.
func fakeHub(t *testing.T) (*hubtest.Server, *hub.Client, string) {
	t.Helper()
	srv := hubtest.New()
	t.Cleanup(srv.Close)
	commit := srv.AddFiles(repo, tinyFiles())
	return srv, client(t, srv, t.TempDir()), commit
}

func client(t *testing.T, srv *hubtest.Server, cache string) *hub.Client {
	c := hub.NewClient(hub.Settings{Endpoint: srv.URL(), CacheDir: cache, TokenPath: filepath.Join(cache, "token")})
	c.Backoff = time.Millisecond
	c.MaxBackoff = 2 * time.Millisecond
	c.FreeSpace = func(string) (int64, error) { return 1 << 40, nil }
	return c
}

func pull(t *testing.T, c *hub.Client, ref string) (*hub.Snapshot, error) {
	t.Helper()
	r, err := hub.ParseRef(ref)
	if err != nil {
		t.Fatal(err)
	}
	return c.Pull(context.Background(), r, hub.PullOptions{})
}

var wantFiles = []string{"config.json", "generation_config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"}

func TestPullFresh(t *testing.T) {
	srv, c, commit := fakeHub(t)
	var reports []hub.Progress
	snap, err := c.Pull(context.Background(), hub.Ref{Repo: repo, Revision: "main"}, hub.PullOptions{
		Progress: func(p hub.Progress) { reports = append(reports, p) },
	})
	if err != nil {
		t.Fatal(err)
	}
	if snap.Commit != commit {
		t.Fatalf("commit %s, want %s", snap.Commit, commit)
	}
	if strings.Join(snap.Files, ",") != strings.Join(wantFiles, ",") {
		t.Fatalf("files %v, want %v (no .bin, .pth, original/ or README)", snap.Files, wantFiles)
	}
	repoDir := filepath.Join(c.CacheDir, "models--whet-test--tiny")
	if snap.Dir != filepath.Join(repoDir, "snapshots", commit) {
		t.Fatalf("snapshot dir %s", snap.Dir)
	}
	// refs/main holds the commit without a newline.
	if b, err := os.ReadFile(filepath.Join(repoDir, "refs", "main")); err != nil || string(b) != commit {
		t.Fatalf("refs/main = %q, %v", b, err)
	}
	files := tinyFiles()
	for _, name := range wantFiles {
		p := filepath.Join(snap.Dir, name)
		target, err := os.Readlink(p)
		if err != nil {
			t.Fatalf("%s is not a link: %v", name, err)
		}
		if !strings.HasPrefix(target, "../../blobs/") {
			t.Fatalf("%s links to %s, want ../../blobs/ETAG", name, target)
		}
		got, err := os.ReadFile(p)
		if err != nil || !bytes.Equal(got, files[name]) {
			t.Fatalf("%s: wrong bytes (%v)", name, err)
		}
		st, err := os.Stat(p)
		if err != nil || st.Mode().Perm()&0o002 != 0 {
			t.Fatalf("%s: mode %v is world-writable", name, st.Mode())
		}
	}
	// LFS blobs are named by their SHA-256, git files by their git hash.
	sum := sha256.Sum256(weights)
	if target, _ := os.Readlink(filepath.Join(snap.Dir, "model.safetensors")); filepath.Base(target) != hex.EncodeToString(sum[:]) {
		t.Fatalf("weights blob %s is not named by a SHA-256", target)
	}
	if target, _ := os.Readlink(filepath.Join(snap.Dir, "config.json")); len(filepath.Base(target)) != 40 {
		t.Fatalf("config blob %s is not named by a git hash", target)
	}
	for _, name := range []string{"pytorch_model.bin", "consolidated.pth", "original/params.json"} {
		if n := srv.Requests(http.MethodHead, "api", name) + srv.Requests(http.MethodGet, "api", name); n != 0 {
			t.Errorf("%s was requested %d times", name, n)
		}
	}
	if n := srv.Requests(http.MethodGet, "storage", "model.safetensors"); n != 1 {
		t.Errorf("weights downloaded %d times, want 1", n)
	}
	// Progress: start with the total before any byte, end with all of it.
	if len(reports) < 3 || reports[0].Phase != hub.PhaseStart || reports[len(reports)-1].Phase != hub.PhaseDone {
		t.Fatalf("reports %+v", reports)
	}
	var total int64
	for _, name := range wantFiles {
		total += int64(len(files[name]))
	}
	first, last := reports[0], reports[len(reports)-1]
	if first.Total != total || first.Done != 0 || first.Files != len(wantFiles) {
		t.Fatalf("start report %+v, want total %d", first, total)
	}
	if last.Done != total || last.FilesDone != len(wantFiles) {
		t.Fatalf("done report %+v", last)
	}

	// A second pull finds everything and downloads nothing.
	if _, err := pull(t, c, repo); err != nil {
		t.Fatal(err)
	}
	if n := srv.Requests(http.MethodGet, "storage", "model.safetensors"); n != 1 {
		t.Errorf("second pull downloaded the weights again (%d)", n)
	}
}

// The storage host may go by another name (as on the Hub), and the token
// never goes there.
func TestPullStorageByOtherName(t *testing.T) {
	srv, c, _ := fakeHub(t)
	srv.StorageURL = strings.Replace(srv.Storage.URL, "127.0.0.1", "localhost", 1)
	srv.Token = "hf_good"
	c.Token, c.TokenSource = "hf_good", "HF_TOKEN"
	snap, err := pull(t, c, repo)
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(filepath.Join(snap.Dir, "model.safetensors")); !bytes.Equal(got, weights) {
		t.Fatal("weights differ")
	}
}

func TestPullResumesAfterDroppedConnection(t *testing.T) {
	srv, c, _ := fakeHub(t)
	srv.DropAfter("model.safetensors", 300<<10)
	snap, err := pull(t, c, repo)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := os.ReadFile(filepath.Join(snap.Dir, "model.safetensors"))
	if !bytes.Equal(got, weights) {
		t.Fatal("resumed weights differ")
	}
	ranges := srv.Ranges("model.safetensors")
	if len(ranges) != 2 || ranges[0] != "" || ranges[1] != "bytes=307200-" {
		t.Fatalf("storage saw ranges %q, want a whole request then bytes=307200-", ranges)
	}
}

func TestPullResumesAfterStall(t *testing.T) {
	srv, c, _ := fakeHub(t)
	c.IdleTimeout = 20 * time.Millisecond
	srv.StallAfter("model.safetensors", 100<<10)
	snap, err := pull(t, c, repo)
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(filepath.Join(snap.Dir, "model.safetensors")); !bytes.Equal(got, weights) {
		t.Fatal("weights differ after the stall")
	}
	// Every request after the first resumes past what had arrived. On a
	// loaded machine the 20 ms idle timeout can also fire before the stall
	// (a slow but moving transfer), so the offsets are not fixed: each must
	// be past the one before, and the stall at 100 KiB must be crossed by a
	// resumed request, never by starting again from byte 0.
	r := srv.Ranges("model.safetensors")
	if len(r) < 2 || r[0] != "" {
		t.Fatalf("ranges %q: want a whole request, then resumed ones", r)
	}
	last := int64(0)
	for _, h := range r[1:] {
		var from int64
		if _, err := fmt.Sscanf(h, "bytes=%d-", &from); err != nil || from <= last {
			t.Fatalf("ranges %q: %q does not resume past byte %d", r, h, last)
		}
		last = from
	}
}

func TestPullResumesNextTime(t *testing.T) {
	srv, c, _ := fakeHub(t)
	c.Retries = 1
	// The connection drops after 200 KiB and the storage host then fails
	// for longer than the client retries: the pull fails, keeping the bytes.
	srv.DropAfter("model.safetensors", 200<<10)
	gets := 0
	srv.BeforeStorage = func(name string) {
		if gets++; name == "model.safetensors" && gets == 2 {
			srv.Fail("/blobs/", http.StatusServiceUnavailable, 2)
		}
	}
	if _, err := pull(t, c, repo); !errors.Is(err, hub.ErrNetwork) && !errors.Is(err, hub.ErrProtocol) {
		t.Fatalf("first pull: %v, want a network failure", err)
	}
	partial := weightsPartial(t, c)
	if st, _ := os.Stat(partial); st.Size() != 200<<10 {
		t.Fatalf("kept %d bytes, want %d", st.Size(), 200<<10)
	}
	srv.BeforeStorage = nil
	snap, err := pull(t, c, repo)
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(filepath.Join(snap.Dir, "model.safetensors")); !bytes.Equal(got, weights) {
		t.Fatal("resumed weights differ")
	}
	ranges := srv.Ranges("model.safetensors")
	if ranges[len(ranges)-1] != "bytes=204800-" {
		t.Fatalf("storage saw ranges %q, want the last to resume at 204800", ranges)
	}
}

// weightsPartial is the .incomplete file of the weights' blob.
func weightsPartial(t *testing.T, c *hub.Client) string {
	t.Helper()
	sum := sha256.Sum256(weights)
	p := filepath.Join(c.CacheDir, "models--whet-test--tiny", "blobs", hex.EncodeToString(sum[:])+".incomplete")
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("no partial weights: %v", err)
	}
	return p
}

func TestPullCancelKeepsPartial(t *testing.T) {
	srv, c, _ := fakeHub(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// The connection drops after 100 KiB; the user cancels while the
	// pull asks for the rest.
	srv.DropAfter("model.safetensors", 100<<10)
	gets := 0
	srv.BeforeStorage = func(name string) {
		if name != "model.safetensors" {
			return
		}
		if gets++; gets == 2 {
			cancel()
			<-ctx.Done()
		}
	}
	_, err := c.Pull(ctx, hub.Ref{Repo: repo, Revision: "main"}, hub.PullOptions{})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("pull: %v, want cancelled", err)
	}
	if st, _ := os.Stat(weightsPartial(t, c)); st.Size() != 100<<10 {
		t.Fatalf("kept %d bytes of the weights, want %d", st.Size(), 100<<10)
	}
	srv.BeforeStorage = nil
	if _, err := pull(t, c, repo); err != nil {
		t.Fatal(err)
	}
	if r := srv.Ranges("model.safetensors"); r[len(r)-1] != "bytes=102400-" {
		t.Fatalf("ranges %q: the second pull did not resume", r)
	}
}

func TestPullRejectsCorruptBlob(t *testing.T) {
	srv, c, commit := fakeHub(t)
	srv.Corrupt("model.safetensors", true)
	_, err := pull(t, c, repo)
	if !errors.Is(err, hub.ErrChecksum) {
		t.Fatalf("pull: %v, want a checksum error", err)
	}
	repoDir := filepath.Join(c.CacheDir, "models--whet-test--tiny")
	if _, err := os.Lstat(filepath.Join(repoDir, "snapshots", commit, "model.safetensors")); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("corrupt weights were linked into the snapshot (%v)", err)
	}
	blobs, _ := os.ReadDir(filepath.Join(repoDir, "blobs"))
	for _, b := range blobs {
		if len(b.Name()) >= 64 {
			t.Fatalf("corrupt blob kept as %s", b.Name())
		}
	}
	srv.Corrupt("model.safetensors", false)
	if _, err := pull(t, c, repo); err != nil {
		t.Fatalf("pull after the fix: %v", err)
	}
}

func TestPullRetriesRateLimitsAndServerErrors(t *testing.T) {
	srv, c, _ := fakeHub(t)
	srv.Fail("/api/models/", http.StatusTooManyRequests, 2)
	srv.Fail("/resolve/", http.StatusTooManyRequests, 1)
	srv.Fail("/blobs/", http.StatusBadGateway, 1)
	if _, err := pull(t, c, repo); err != nil {
		t.Fatal(err)
	}
	if n := srv.Requests(http.MethodGet, "api", ""); n != 1 {
		t.Fatalf("model info answered %d times, want 1 after the two 429s", n)
	}

	// Past the retry budget the failure is reported.
	c2 := client(t, srv, t.TempDir())
	c2.Retries = 2
	srv.Fail("/api/models/", http.StatusTooManyRequests, 3)
	if _, err := pull(t, c2, repo); !errors.Is(err, hub.ErrProtocol) || !strings.Contains(err.Error(), "429") {
		t.Fatalf("pull: %v, want the 429 reported", err)
	}
}

func TestPullGated(t *testing.T) {
	srv, c, _ := fakeHub(t)
	srv.SetAccess(repo, false, true, false)
	_, err := pull(t, c, repo)
	if !errors.Is(err, hub.ErrGated) {
		t.Fatalf("anonymous pull: %v, want gated", err)
	}
	for _, want := range []string{srv.URL() + "/" + repo, "HF_TOKEN", c.TokenPath} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("message %q does not say %q", err, want)
		}
	}
	srv.Token = "hf_good"
	c.Token, c.TokenSource = "hf_good", "HF_TOKEN"
	_, err = pull(t, c, repo)
	if !errors.Is(err, hub.ErrGated) || !strings.Contains(err.Error(), "accept its licence at "+srv.URL()+"/"+repo) {
		t.Fatalf("pull with a token not yet granted (403): %v", err)
	}
	c.Token = "hf_wrong"
	if _, err = pull(t, c, repo); !errors.Is(err, hub.ErrBadToken) || !strings.Contains(err.Error(), "HF_TOKEN") {
		t.Fatalf("pull with a wrong token: %v", err)
	}
	srv.SetAccess(repo, false, true, true)
	c.Token = "hf_good"
	if _, err = pull(t, c, repo); err != nil {
		t.Fatalf("pull with access: %v", err)
	}
}

func TestPullPrivateAndMissing(t *testing.T) {
	srv, c, _ := fakeHub(t)
	if _, err := pull(t, c, "whet-test/nope"); !errors.Is(err, hub.ErrRepoNotFound) || !strings.Contains(err.Error(), "private") {
		t.Fatalf("missing repo: %v", err)
	}
	srv.SetAccess(repo, true, false, false)
	if _, err := pull(t, c, repo); !errors.Is(err, hub.ErrRepoNotFound) {
		t.Fatalf("private repo without token: %v", err)
	}
	srv.Token = "hf_good"
	c.Token, c.TokenSource = "hf_good", "HF_TOKEN"
	if _, err := pull(t, c, repo); err != nil {
		t.Fatalf("private repo with token: %v", err)
	}
	if _, err := pull(t, c, repo+"@no-such-branch"); !errors.Is(err, hub.ErrRevisionNotFound) || !strings.Contains(err.Error(), "no-such-branch") {
		t.Fatalf("missing revision: %v", err)
	}
}

func TestPullRevisions(t *testing.T) {
	srv, c, first := fakeHub(t)
	files := tinyFiles()
	files["config.json"] = []byte(`{"model_type":"llama","v":2}`)
	second := srv.AddFiles(repo, files, "dev")
	srv.SetRef(repo, "v1.0", first)
	srv.SetRef(repo, "refs/pr/1", second)
	for _, tc := range []struct{ rev, commit string }{
		{"dev", second}, {"v1.0", first}, {second, second}, {"refs/pr/1", second},
	} {
		snap, err := pull(t, c, repo+"@"+tc.rev)
		if err != nil {
			t.Fatalf("%s: %v", tc.rev, err)
		}
		if snap.Commit != tc.commit {
			t.Fatalf("%s resolved to %s, want %s", tc.rev, snap.Commit, tc.commit)
		}
		ref := filepath.Join(c.CacheDir, "models--whet-test--tiny", "refs", filepath.FromSlash(tc.rev))
		b, err := os.ReadFile(ref)
		if tc.rev == tc.commit {
			if err == nil {
				t.Fatalf("a ref was written for a commit hash")
			}
		} else if string(b) != tc.commit {
			t.Fatalf("refs/%s = %q, want %s", tc.rev, b, tc.commit)
		}
	}
	// Both commits share the weights blob: downloaded once.
	if n := srv.Requests(http.MethodGet, "storage", "model.safetensors"); n != 1 {
		t.Fatalf("weights downloaded %d times across two commits", n)
	}
	got, _ := os.ReadFile(filepath.Join(c.CacheDir, "models--whet-test--tiny", "snapshots", first, "config.json"))
	if string(got) != `{"model_type":"llama"}` {
		t.Fatalf("the tag's snapshot has config %s", got)
	}
}

func TestPullOffline(t *testing.T) {
	srv, c, commit := fakeHub(t)
	c.Offline = true
	if _, err := pull(t, c, repo); !errors.Is(err, hub.ErrNotCached) || !strings.Contains(err.Error(), "HF_HUB_OFFLINE") {
		t.Fatalf("offline without a cache: %v", err)
	}
	if n := srv.Requests(http.MethodGet, "api", ""); n != 0 {
		t.Fatalf("offline mode sent %d requests", n)
	}
	c.Offline = false
	if _, err := pull(t, c, repo); err != nil {
		t.Fatal(err)
	}
	srv.Close()
	c.Offline = true
	for _, ref := range []string{repo, repo + "@" + commit} {
		snap, err := pull(t, c, ref)
		if err != nil || snap.Commit != commit || !snap.Has("model.safetensors") {
			t.Fatalf("offline %s: %+v, %v", ref, snap, err)
		}
	}
	if _, err := pull(t, c, repo+"@dev"); !errors.Is(err, hub.ErrNotCached) {
		t.Fatalf("offline, uncached branch: %v", err)
	}

	// Online but unreachable: the error offers the cached snapshot.
	c.Offline = false
	_, err := pull(t, c, repo)
	var he *hub.Error
	if !errors.As(err, &he) || he.Kind != hub.ErrNetwork || he.Cached == nil || he.Cached.Commit != commit || !strings.Contains(err.Error(), "HF_HUB_OFFLINE=1") {
		t.Fatalf("unreachable hub: %v", err)
	}
	c2 := client(t, srv, t.TempDir())
	_, err = pull(t, c2, repo)
	if !errors.As(err, &he) || he.Kind != hub.ErrNetwork || he.Cached != nil {
		t.Fatalf("unreachable hub, empty cache: %v", err)
	}
}

func TestPullOfflineNeedsWeights(t *testing.T) {
	_, c, _ := fakeHub(t)
	ref := hub.Ref{Repo: repo, Revision: "main"}
	if _, err := c.Pull(context.Background(), ref, hub.PullOptions{Files: hub.ConfigOnly}); err != nil {
		t.Fatal(err)
	}
	c.Offline = true
	if _, err := c.Pull(context.Background(), ref, hub.PullOptions{Files: hub.ConfigOnly}); err != nil {
		t.Fatalf("config-only offline: %v", err)
	}
	if _, err := c.Pull(context.Background(), ref, hub.PullOptions{}); !errors.Is(err, hub.ErrNotCached) || !strings.Contains(err.Error(), "safetensors") {
		t.Fatalf("a config-only snapshot offered for a run: %v", err)
	}
}

func TestPullConfigOnly(t *testing.T) {
	srv, c, _ := fakeHub(t)
	snap, err := c.Pull(context.Background(), hub.Ref{Repo: repo, Revision: "main"}, hub.PullOptions{Files: hub.ConfigOnly})
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(snap.Files, ",") != "config.json" {
		t.Fatalf("files %v", snap.Files)
	}
	if n := srv.Requests(http.MethodGet, "storage", "model.safetensors"); n != 0 {
		t.Fatal("config-only pull fetched the weights")
	}
}

func TestPullRefusesUnsafeNames(t *testing.T) {
	for _, bad := range []string{"../../x", "/etc/x", "a/../../x", `..\x`} {
		srv, c, _ := fakeHub(t)
		srv.Rename("config.json", bad)
		_, err := pull(t, c, repo)
		if !errors.Is(err, hub.ErrUnsafeName) {
			t.Fatalf("%q: %v, want refused", bad, err)
		}
		if n := srv.Requests(http.MethodHead, "api", "config.json") + srv.Requests(http.MethodGet, "storage", "model.safetensors"); n != 0 {
			t.Fatalf("%q: %d file requests after an unsafe listing", bad, n)
		}
		if _, err := os.Stat(filepath.Join(c.CacheDir, "x")); err == nil {
			t.Fatalf("%q: a file was written outside the repo folder", bad)
		}
	}
}

func TestPullChecksDiskFirst(t *testing.T) {
	srv, c, _ := fakeHub(t)
	c.FreeSpace = func(string) (int64, error) { return 1000, nil }
	_, err := pull(t, c, repo)
	if !errors.Is(err, hub.ErrNoSpace) || !strings.Contains(err.Error(), "HF_HUB_CACHE") {
		t.Fatalf("pull: %v, want not enough space", err)
	}
	if n := srv.Requests(http.MethodGet, "storage", "model.safetensors") + srv.Requests(http.MethodHead, "api", "config.json"); n != 0 {
		t.Fatalf("%d file requests before the disk check failed", n)
	}
}

// unwritableCache serves the tiny repo and returns a client whose cache
// cannot be written: a path through a file (another user's folder or a
// read-only disk fail the same way).
func unwritableCache(t *testing.T) (*hubtest.Server, *hub.Client) {
	t.Helper()
	srv := hubtest.New()
	t.Cleanup(srv.Close)
	srv.AddFiles(repo, tinyFiles())
	file := filepath.Join(t.TempDir(), "afile")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	return srv, client(t, srv, filepath.Join(file, "hub"))
}

// pullIntoUnwritableCache pulls through c, whose cache cannot be written,
// and fails the test unless the error is ErrCacheNotWritable naming the
// cache and HF_HUB_CACHE, returned before any file was fetched.
func pullIntoUnwritableCache(t *testing.T, srv *hubtest.Server, c *hub.Client, what string) {
	t.Helper()
	_, err := pull(t, c, repo)
	if !errors.Is(err, hub.ErrCacheNotWritable) || !strings.Contains(err.Error(), c.CacheDir) || !strings.Contains(err.Error(), "HF_HUB_CACHE") {
		t.Fatalf("pull %s: %v, want the cache %s named as not writable, with HF_HUB_CACHE", what, err, c.CacheDir)
	}
	if n := srv.Requests(http.MethodGet, "storage", "model.safetensors") + srv.Requests(http.MethodGet, "api", "config.json"); n != 0 {
		t.Fatalf("pull %s: %d file requests before the cache check failed", what, n)
	}
}

// A cache that cannot be written is named, with what to do, before any
// file is fetched.
func TestPullChecksCacheWritableFirst(t *testing.T) {
	srv, c := unwritableCache(t)
	pullIntoUnwritableCache(t, srv, c, "into a cache that cannot be written")
}

// A read-only disk has little or no free space too: the pull says the
// cache cannot be written, not that space is short (a read-only tmpfs of
// 1 MiB gave "needs 7.78 MiB more ... only 1.00 MiB is free").
func TestPullReadOnlyCacheIsNotNoSpace(t *testing.T) {
	srv, c := unwritableCache(t)
	c.FreeSpace = func(string) (int64, error) { return 1000, nil }
	pullIntoUnwritableCache(t, srv, c, "into a cache that cannot be written, with 1000 bytes free")
}

func TestConcurrentPullsDownloadOnce(t *testing.T) {
	srv, c1, commit := fakeHub(t)
	c2 := client(t, srv, c1.CacheDir)
	// Hold the first download of the weights until both pulls have asked
	// for the weights' metadata, so the second one meets the lock.
	heads := 0
	var mu sync.Mutex
	release := make(chan struct{})
	srv.AfterResolve = func(method, name string) {
		mu.Lock()
		defer mu.Unlock()
		if method == http.MethodHead && name == "model.safetensors" {
			if heads++; heads == 2 {
				close(release)
			}
		}
	}
	srv.BeforeStorage = func(name string) {
		if name == "model.safetensors" {
			select {
			case <-release:
			case <-time.After(10 * time.Second): // never reached when the pulls work
			}
		}
	}
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i, c := range []*hub.Client{c1, c2} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = c.Pull(context.Background(), hub.Ref{Repo: repo, Revision: "main"}, hub.PullOptions{})
		}()
	}
	wg.Wait()
	if errs[0] != nil || errs[1] != nil {
		t.Fatalf("pulls: %v, %v", errs[0], errs[1])
	}
	if n := srv.Requests(http.MethodGet, "storage", "model.safetensors"); n != 1 {
		t.Fatalf("weights downloaded %d times by two pulls", n)
	}
	snap, err := c1.Cache().Lookup(hub.Ref{Repo: repo, Revision: commit})
	if err != nil || strings.Join(snap.Files, ",") != strings.Join(wantFiles, ",") {
		t.Fatalf("snapshot %+v, %v", snap, err)
	}
}

// A pull refused before its first byte (a gated repo without access)
// leaves the repo's empty folders behind; the cache listing does not offer
// them as a model ("walk/gated  0 B  (config only)" in whet pull --list).
func TestCacheModelsSkipsFailedPull(t *testing.T) {
	srv, c, _ := fakeHub(t)
	srv.SetAccess(repo, false, true, false)
	if _, err := pull(t, c, repo); !errors.Is(err, hub.ErrGated) {
		t.Fatalf("anonymous pull of a gated repo: %v", err)
	}
	models, err := c.Cache().Models()
	if err != nil || len(models) != 0 {
		t.Fatalf("after a refused pull the cache lists %+v, %v; want nothing", models, err)
	}
	srv.SetAccess(repo, false, false, false)
	if _, err := pull(t, c, repo); err != nil {
		t.Fatal(err)
	}
	if models, err = c.Cache().Models(); err != nil || len(models) != 1 || models[0].Repo != repo {
		t.Fatalf("after a pull the cache lists %+v, %v", models, err)
	}
}

func TestCacheModels(t *testing.T) {
	srv, c, commit := fakeHub(t)
	if models, err := c.Cache().Models(); err != nil || len(models) != 0 {
		t.Fatalf("empty cache: %v, %v", models, err)
	}
	if _, err := pull(t, c, repo); err != nil {
		t.Fatal(err)
	}
	srv.AddFiles("whet-test/other", map[string][]byte{"config.json": []byte("{}"), "model.safetensors": []byte("w")})
	if _, err := c.Pull(context.Background(), hub.Ref{Repo: "whet-test/other", Revision: "main"}, hub.PullOptions{Files: hub.ConfigOnly}); err != nil {
		t.Fatal(err)
	}
	os.MkdirAll(filepath.Join(c.CacheDir, "datasets--x--y"), 0o755)
	models, err := c.Cache().Models()
	if err != nil || len(models) != 2 {
		t.Fatalf("models %+v, %v", models, err)
	}
	m := models[1]
	if m.Repo != repo || m.Refs["main"] != commit {
		t.Fatalf("model %+v", m)
	}
	var size int64
	for _, name := range wantFiles {
		size += int64(len(tinyFiles()[name]))
	}
	latest, ok := m.Latest()
	if m.Size != size || !ok || latest.Size != size || !latest.HasWeights() || latest.Commit != commit {
		t.Fatalf("size %d (latest %+v), want %d with weights", m.Size, latest, size)
	}
	if other, _ := models[0].Latest(); other.HasWeights() {
		t.Fatal("a config-only snapshot claims weights")
	}
}

// A snapshot whose file links out of the repository is not read.
func TestCacheRefusesLinksOut(t *testing.T) {
	cache := hub.Cache{Dir: t.TempDir()}
	commit := strings.Repeat("a", 40)
	snap := filepath.Join(cache.RepoDir(repo), "snapshots", commit)
	os.MkdirAll(snap, 0o755)
	os.MkdirAll(filepath.Join(cache.RepoDir(repo), "refs"), 0o755)
	os.WriteFile(filepath.Join(cache.RepoDir(repo), "refs", "main"), []byte(commit), 0o644)
	secret := filepath.Join(t.TempDir(), "secret")
	os.WriteFile(secret, []byte("x"), 0o644)
	os.Symlink(secret, filepath.Join(snap, "config.json"))
	if _, err := cache.Lookup(hub.Ref{Repo: repo, Revision: "main"}); err == nil || !strings.Contains(err.Error(), "outside") {
		t.Fatalf("lookup: %v, want a refusal", err)
	}
}

func TestParseRef(t *testing.T) {
	for in, want := range map[string]hub.Ref{
		"meta-llama/Llama-3.2-1B":             {"meta-llama/Llama-3.2-1B", "main"},
		"Qwen/Qwen2.5-0.5B@v1.0":              {"Qwen/Qwen2.5-0.5B", "v1.0"},
		"org/name@refs/pr/1":                  {"org/name", "refs/pr/1"},
		"org/name@" + strings.Repeat("f", 40): {"org/name", strings.Repeat("f", 40)},
	} {
		got, err := hub.ParseRef(in)
		if err != nil || got != want {
			t.Errorf("ParseRef(%q) = %+v, %v; want %+v", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "name", "a/b/c", "org/na--me", "../x", "org/..", "org/name@", "org/name@../x", "org/name@a/../b", "org/name@x y", "-org/x", "org/name@/abs"} {
		if _, err := hub.ParseRef(bad); err == nil {
			t.Errorf("ParseRef(%q) accepted", bad)
		}
	}
}

func TestSettingsFromEnv(t *testing.T) {
	home := t.TempDir()
	os.WriteFile(filepath.Join(home, "token"), []byte("hf_file\n"), 0o600)
	env := map[string]string{"HF_HOME": home, "HF_HUB_OFFLINE": "yes", "HF_ENDPOINT": "http://mirror.test/"}
	s, err := hub.SettingsFromEnv(func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	if s.CacheDir != filepath.Join(home, "hub") || !s.Offline || s.Endpoint != "http://mirror.test" || s.Token != "hf_file" || s.TokenSource != filepath.Join(home, "token") {
		t.Fatalf("settings %+v", s)
	}
	env = map[string]string{"XDG_CACHE_HOME": home, "HF_HUB_CACHE": "/x/hub", "HF_TOKEN": "hf_env", "HF_HUB_OFFLINE": "0"}
	s, err = hub.SettingsFromEnv(func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	if s.CacheDir != "/x/hub" || s.Offline || s.Endpoint != hub.DefaultEndpoint || s.Token != "hf_env" || s.TokenPath != filepath.Join(home, "huggingface", "token") {
		t.Fatalf("settings %+v", s)
	}
	env = map[string]string{"HF_HOME": home, "HF_ENDPOINT": "mirror.test"}
	if _, err := hub.SettingsFromEnv(func(k string) string { return env[k] }); err == nil || !strings.Contains(err.Error(), "HF_ENDPOINT") {
		t.Fatalf("endpoint without a scheme: %v", err)
	}
}

func TestWanted(t *testing.T) {
	for name, want := range map[string]bool{
		"config.json": true, "model-00001-of-00002.safetensors": true, "model.safetensors.index.json": true,
		"tokenizer.model": true, "chat_template.jinja": true, "special_tokens_map.json": true,
		"preprocessor_config.json": true, "processor_config.json": true,
		"pytorch_model.bin": false, "consolidated.00.pth": false, "original/model.safetensors": false,
		"README.md": false, "model.gguf": false, "onnx/model.onnx": false, "training_args.bin": false,
	} {
		if hub.Wanted(name) != want {
			t.Errorf("Wanted(%q) = %v", name, !want)
		}
	}
}

// A snapshot with only some shards of a sharded model (what an interrupted
// pull leaves, with or without the index yet) has no loadable weights: the
// studio lists it as partial and enter resumes the download, instead of
// taking the half model as ready.
func TestHasWeightsNeedsEveryShard(t *testing.T) {
	dir := t.TempDir()
	index := `{"weight_map":{"a":"model-00001-of-00002.safetensors","b":"model-00002-of-00002.safetensors"}}`
	if err := os.WriteFile(filepath.Join(dir, "model.safetensors.index.json"), []byte(index), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		files []string
		want  bool
	}{
		{[]string{"config.json", "model.safetensors"}, true},
		{[]string{"config.json", "model-00002-of-00002.safetensors", "model-00001-of-00002.safetensors"}, true},
		{[]string{"config.json", "model-00002-of-00002.safetensors"}, false},
		{[]string{"config.json", "model-00002-of-00002.safetensors", "model.safetensors.index.json"}, false},
		{[]string{"config.json", "model.safetensors.index.json", "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"}, true},
		{[]string{"config.json"}, false},
	} {
		s := hub.CachedSnapshot{Dir: dir, Files: c.files}
		if got := s.HasWeights(); got != c.want {
			t.Errorf("HasWeights of %v = %v, want %v", c.files, got, c.want)
		}
	}
}

// corruptPartial leaves the weights' first 100 KiB, one byte changed, as
// the .incomplete file an earlier pull kept.
func corruptPartial(t *testing.T, c *hub.Client) {
	t.Helper()
	sum := sha256.Sum256(weights)
	dir := filepath.Join(c.CacheDir, "models--whet-test--tiny", "blobs")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	part := bytes.Clone(weights[:100<<10])
	part[5000] ^= 0xff
	if err := os.WriteFile(filepath.Join(dir, hex.EncodeToString(sum[:])+".incomplete"), part, 0o644); err != nil {
		t.Fatal(err)
	}
}

// Kept bytes that are corrupt are discarded and the file fetched again
// from zero in the same pull, which says so.
func TestPullRestartsCorruptResume(t *testing.T) {
	srv, c, commit := fakeHub(t)
	corruptPartial(t, c)
	var notes []string
	snap, err := c.Pull(context.Background(), hub.Ref{Repo: repo, Revision: "main"}, hub.PullOptions{
		Progress: func(p hub.Progress) {
			if p.Phase == hub.PhaseNote {
				notes = append(notes, p.File+": "+p.Note)
			}
		},
	})
	if err != nil {
		t.Fatalf("pull over a corrupt partial file: %v, want it fetched again from zero", err)
	}
	if got, _ := os.ReadFile(filepath.Join(snap.Dir, "model.safetensors")); !bytes.Equal(got, weights) {
		t.Fatal("weights differ from the served file")
	}
	if r := srv.Ranges("model.safetensors"); len(r) != 2 || r[0] != "bytes=102400-" || r[1] != "" {
		t.Fatalf("storage saw ranges %q, want the resume then one request from zero", r)
	}
	if len(notes) != 1 || !strings.Contains(notes[0], "model.safetensors") || !strings.Contains(notes[0], "again from the start") {
		t.Fatalf("notes %q, want one saying the file starts again", notes)
	}
	if snap.Commit != commit {
		t.Fatalf("commit %s", snap.Commit)
	}
}

// A second mismatch after the fresh start is an error naming the file and
// both hashes; the pull does not loop.
func TestPullCorruptResumeThenCorruptServer(t *testing.T) {
	srv, c, _ := fakeHub(t)
	corruptPartial(t, c)
	srv.Corrupt("model.safetensors", true)
	_, err := pull(t, c, repo)
	if !errors.Is(err, hub.ErrChecksum) {
		t.Fatalf("pull: %v, want a checksum error", err)
	}
	sum := sha256.Sum256(weights)
	bad := bytes.Clone(weights)
	bad[len(bad)/2] ^= 0xff
	badSum := sha256.Sum256(bad)
	for _, want := range []string{"model.safetensors", hex.EncodeToString(sum[:]), hex.EncodeToString(badSum[:]), "again from the start"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not name %s", err, want)
		}
	}
	if r := srv.Ranges("model.safetensors"); len(r) != 2 {
		t.Fatalf("storage saw ranges %q, want two downloads (the resume and one fresh start)", r)
	}
}

// A repo id that is not on the Hub, or not in the cache offline, names the
// cached repos it is close to: a typo (whet-test/tiyn) or the wrong case
// (Whet-Test/Tiny) said only "no model repository".
func TestRepoNotFoundSuggestsCachedRepos(t *testing.T) {
	_, c, _ := fakeHub(t)
	if _, err := pull(t, c, repo); err != nil {
		t.Fatal(err)
	}
	for _, typo := range []string{"whet-test/tiyn", "Whet-Test/Tiny"} {
		_, err := pull(t, c, typo)
		if !errors.Is(err, hub.ErrRepoNotFound) || !strings.Contains(err.Error(), "did you mean "+repo+"?") {
			t.Errorf("pull %s: %v, want the cached %s suggested", typo, err, repo)
		}
	}
	if _, err := pull(t, c, "whet-test/other-model"); err == nil || strings.Contains(err.Error(), "did you mean") {
		t.Errorf("pull of an id far from every cached one: %v, want no suggestion", err)
	}
	c.Offline = true
	if _, err := pull(t, c, "whet-test/tiyn"); !errors.Is(err, hub.ErrNotCached) || !strings.Contains(err.Error(), "did you mean "+repo+"?") {
		t.Errorf("offline pull of a typo: %v, want the cached %s suggested", err, repo)
	}
}

// interruptedPull leaves the pull of main half done, as a Ctrl-C during
// `whet pull` does: the four small files complete (pulled first by commit,
// which writes no ref), the weights cut after 100 KiB, no refs/main.
func interruptedPull(t *testing.T, srv *hubtest.Server, c *hub.Client, commit string) {
	t.Helper()
	small := func(name string) bool { return hub.Wanted(name) && name != "model.safetensors" }
	if _, err := c.Pull(context.Background(), hub.Ref{Repo: repo, Revision: commit}, hub.PullOptions{Files: small}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	srv.DropAfter("model.safetensors", 100<<10)
	gets := 0
	srv.BeforeStorage = func(name string) {
		if gets++; name == "model.safetensors" && gets == 2 {
			cancel()
			<-ctx.Done()
		}
	}
	if _, err := c.Pull(ctx, hub.Ref{Repo: repo, Revision: "main"}, hub.PullOptions{}); !errors.Is(err, context.Canceled) {
		t.Fatalf("pull: %v, want cancelled", err)
	}
	srv.BeforeStorage = nil
}

// After an interrupted pull, going offline (HF_HUB_OFFLINE, or a Hub that
// cannot be reached) says what the cache holds of the model and that the
// pull resumes, not that the model is missing ("not in the cache (no
// refs/main)", "nothing of it is cached").
func TestPartialPullOfflineSaysWhatIsThere(t *testing.T) {
	srv, c, commit := fakeHub(t)
	interruptedPull(t, srv, c, commit)
	small := int64(0)
	for _, name := range wantFiles {
		if name != "model.safetensors" {
			small += int64(len(tinyFiles()[name]))
		}
	}
	want := fmt.Sprintf("4 of 5 files downloaded (%s of %s)", units.Bytes(small+100<<10), units.Bytes(small+int64(len(weights))))

	c.Offline = true
	_, err := pull(t, c, repo)
	var he *hub.Error
	if !errors.As(err, &he) || he.Kind != hub.ErrNotCached || he.Partial == nil ||
		!strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "the pull resumes when the Hub can be reached") ||
		strings.Contains(err.Error(), "not in the cache") {
		t.Fatalf("offline after an interrupted pull: %v\nwant %q and that the pull resumes", err, want)
	}
	if p := he.Partial; p.Files != 5 || p.FilesDone != 4 || p.Kept != 100<<10 || p.Commit != commit {
		t.Errorf("Partial %+v, want 4 of 5 files, 100 KiB kept, commit %s", p, commit)
	}

	// The Hub cannot be reached (no HF_HUB_OFFLINE).
	dead := hubtest.New()
	dead.Close()
	unreachable := hub.NewClient(hub.Settings{Endpoint: dead.URL(), CacheDir: c.CacheDir, TokenPath: filepath.Join(c.CacheDir, "token")})
	_, err = pull(t, unreachable, repo)
	if !errors.As(err, &he) || he.Kind != hub.ErrNetwork || he.Partial == nil || he.Cached != nil ||
		!strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "the pull resumes when the Hub can be reached") ||
		strings.Contains(err.Error(), "nothing of it is cached") {
		t.Fatalf("unreachable Hub after an interrupted pull: %v\nwant %q and that the pull resumes", err, want)
	}

	// A partial pull left without its plan (an older whet, or
	// huggingface_hub) still says what is there.
	if p, ok := c.Cache().Partial(hub.Ref{Repo: repo}); !ok || p.String() != want {
		t.Fatalf("Partial: %v %v, want %q", p, ok, want)
	}
	plan := filepath.Join(c.CacheDir, ".locks", "models--whet-test--tiny", "whet-pull.json")
	if err := os.Remove(plan); err != nil {
		t.Fatalf("the pull's plan: %v", err)
	}
	if p, ok := c.Cache().Partial(hub.Ref{Repo: repo}); !ok || p.String() != fmt.Sprintf("4 files downloaded (%s) and %s of unfinished files", units.Bytes(small), units.Bytes(100<<10)) {
		t.Fatalf("Partial without a plan: %v %v", p, ok)
	}

	// The next pull with the network resumes and finishes: nothing is
	// partial any more, and the plan is gone.
	c.Offline = false
	if _, err := pull(t, c, repo); err != nil {
		t.Fatal(err)
	}
	if p, ok := c.Cache().Partial(hub.Ref{Repo: repo}); ok {
		t.Errorf("after the pull finished, Partial says %v", p)
	}
	if _, err := os.Stat(plan); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the plan outlived its pull: %v", err)
	}
}

// A model that was never pulled, or pulled whole, is not partial: the
// usual messages stay.
func TestPartialOnlyForUnfinishedPulls(t *testing.T) {
	_, c, _ := fakeHub(t)
	if p, ok := c.Cache().Partial(hub.Ref{Repo: repo}); ok {
		t.Fatalf("an empty cache: Partial %v", p)
	}
	if _, err := c.Pull(context.Background(), hub.Ref{Repo: repo, Revision: "main"}, hub.PullOptions{Files: hub.ConfigOnly}); err != nil {
		t.Fatal(err)
	}
	// Pulled for whet fit only: complete for what it asked, not partial.
	if p, ok := c.Cache().Partial(hub.Ref{Repo: repo}); ok {
		t.Fatalf("a config-only pull: Partial %v", p)
	}
	c.Offline = true
	if _, err := pull(t, c, repo); err == nil || !strings.Contains(err.Error(), "lacks *.safetensors") || !strings.Contains(err.Error(), "pull it once with the network") {
		t.Fatalf("offline, config only: %v", err)
	}
}

// A complete snapshot of main, then a newer commit of main whose pull
// stopped part way: offline, the older snapshot is used and says so, with
// what the newer pull left; an unreachable Hub's error says the same, and
// the cache's listing (Unfinished) names the newer pull's files.
func TestOlderSnapshotWhileANewerPullIsPartial(t *testing.T) {
	srv, c, old := fakeHub(t)
	if _, err := pull(t, c, repo); err != nil {
		t.Fatal(err)
	}
	c.Offline = true
	snap, err := pull(t, c, repo)
	if err != nil || snap.NewerPartial != nil || snap.OlderNotice() != "" {
		t.Fatalf("offline, nothing newer: %v %+v %q", err, snap, snap.OlderNotice())
	}
	if p, ok := c.Cache().Unfinished(repo); ok {
		t.Fatalf("a complete pull: Unfinished %v", p)
	}
	c.Offline = false

	files := tinyFiles()
	files["model.safetensors"] = bytes.Repeat([]byte("fedcba9876543210"), 64<<10) // 1 MiB, another blob
	newer := srv.AddFiles(repo, files)
	interruptedPull(t, srv, c, newer)
	small := int64(0)
	for _, name := range wantFiles {
		if name != "model.safetensors" {
			small += int64(len(files[name]))
		}
	}
	progress := fmt.Sprintf("4 of 5 files downloaded (%s of %s)", units.Bytes(small+100<<10), units.Bytes(small+int64(len(weights))))
	want := fmt.Sprintf("using the older complete snapshot %s of %s; a newer pull (%s) is partial: %s, and whet pull resumes it",
		old[:12], repo, newer[:12], progress)

	c.Offline = true
	snap, err = pull(t, c, repo)
	if err != nil || snap.Commit != old {
		t.Fatalf("offline: %v, commit %v, want the older %s", err, snap, old)
	}
	if p := snap.NewerPartial; p == nil || p.Commit != newer || snap.OlderNotice() != want {
		t.Fatalf("offline: NewerPartial %+v, notice\n%q\nwant\n%q", p, snap.OlderNotice(), want)
	}
	if p, ok := c.Cache().Unfinished(repo); !ok || p.String() != progress {
		t.Errorf("Unfinished: %v %v, want %q", p, ok, progress)
	}

	dead := hubtest.New()
	dead.Close()
	unreachable := hub.NewClient(hub.Settings{Endpoint: dead.URL(), CacheDir: c.CacheDir, TokenPath: filepath.Join(c.CacheDir, "token")})
	_, err = pull(t, unreachable, repo)
	var he *hub.Error
	if !errors.As(err, &he) || he.Kind != hub.ErrNetwork || he.Cached == nil || he.Cached.Commit != old ||
		he.Cached.OlderNotice() != want || !strings.Contains(err.Error(), "the cache has an older complete snapshot (commit "+old) ||
		!strings.Contains(err.Error(), "a newer pull ("+newer[:12]+") is partial: "+progress) {
		t.Fatalf("unreachable: %v", err)
	}

	// The pull finished: the newer snapshot, nothing partial.
	c.Offline = false
	if _, err := pull(t, c, repo); err != nil {
		t.Fatal(err)
	}
	c.Offline = true
	if snap, err := pull(t, c, repo); err != nil || snap.Commit != newer || snap.NewerPartial != nil {
		t.Fatalf("after the pull finished: %v %+v", err, snap)
	}
}
