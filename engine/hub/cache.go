package hub

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"whet/engine/spell"
)

// Modes of what the cache writes: the user's umask applies on top, and
// neither ever grants write access to others.
const (
	dirMode  fs.FileMode = 0o775
	fileMode fs.FileMode = 0o664
)

// Cache is a huggingface_hub cache folder, read and written without the
// network.
type Cache struct {
	Dir string // the folder holding models--ORG--NAME
}

// Snapshot is one commit of a repository in the cache: a folder whose
// files link to the blobs.
type Snapshot struct {
	Ref    Ref      // what was asked for
	Commit string   // the commit the revision resolved to
	Dir    string   // .../models--ORG--NAME/snapshots/COMMIT
	Files  []string // the files present, relative to Dir, sorted
	// NewerPartial is, for a snapshot taken from the cache without the Hub
	// (HF_HUB_OFFLINE, or a Hub that cannot be reached), an unfinished
	// pull of the same revision at another commit: the pull that would
	// have replaced this snapshot stopped part way. nil otherwise.
	NewerPartial *PartialPull
}

// Has reports whether the snapshot holds a file.
func (s *Snapshot) Has(name string) bool {
	i := sort.SearchStrings(s.Files, name)
	return i < len(s.Files) && s.Files[i] == name
}

// repoFolder is huggingface_hub's folder name for a model repo.
func repoFolder(repo string) string {
	return "models--" + strings.ReplaceAll(repo, "/", "--")
}

// RepoDir is the folder of one repository.
func (c Cache) RepoDir(repo string) string { return filepath.Join(c.Dir, repoFolder(repo)) }

func (c Cache) blobPath(repo, etag string) string {
	return filepath.Join(c.RepoDir(repo), "blobs", etag)
}

func (c Cache) lockPath(repo, etag string) string {
	return filepath.Join(c.Dir, ".locks", repoFolder(repo), etag+".lock")
}

func (c Cache) snapshotDir(repo, commit string) string {
	return filepath.Join(c.RepoDir(repo), "snapshots", commit)
}

// readRef returns the commit a branch or tag pointed at when it was last
// pulled, or "" if it never was.
func (c Cache) readRef(repo, revision string) (string, error) {
	b, err := os.ReadFile(filepath.Join(c.RepoDir(repo), "refs", filepath.FromSlash(revision)))
	if errors.Is(err, os.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("read the cached ref %s of %s: %w", revision, repo, err)
	}
	commit := strings.TrimSpace(string(b))
	if !IsCommit(commit) {
		return "", fmt.Errorf("cached ref %s of %s holds %q, not a commit hash", revision, repo, commit)
	}
	return commit, nil
}

// writeRef records which commit a branch or tag resolved to, atomically,
// without a trailing newline (huggingface_hub compares the text as is).
func (c Cache) writeRef(repo, revision, commit string) error {
	if revision == commit {
		return nil
	}
	path := filepath.Join(c.RepoDir(repo), "refs", filepath.FromSlash(revision))
	if old, err := os.ReadFile(path); err == nil && string(old) == commit {
		return nil // unchanged: a read-only cache stays usable
	}
	if err := os.MkdirAll(filepath.Dir(path), dirMode); err != nil {
		return fmt.Errorf("record ref %s of %s: %w", revision, repo, err)
	}
	tmp, err := createUnique(filepath.Dir(path), ".ref")
	if err != nil {
		return fmt.Errorf("record ref %s of %s: %w", revision, repo, err)
	}
	_, werr := tmp.WriteString(commit)
	cerr := tmp.Close()
	if err := errors.Join(werr, cerr, os.Rename(tmp.Name(), path)); err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("record ref %s of %s: %w", revision, repo, err)
	}
	return nil
}

// link makes snapshots/COMMIT/NAME a relative link to blobs/ETAG, the way
// huggingface_hub does, replacing whatever was there atomically.
func (c Cache) link(repo, commit, name, etag string) error {
	if err := CheckFileName(name); err != nil {
		return &Error{Kind: ErrUnsafeName, Msg: fmt.Sprintf("%s: %v; refusing to write it", repo, err), Err: err}
	}
	dst := filepath.Join(c.snapshotDir(repo, commit), filepath.FromSlash(name))
	if err := os.MkdirAll(filepath.Dir(dst), dirMode); err != nil {
		return fmt.Errorf("link %s into the snapshot: %w", name, err)
	}
	target, err := filepath.Rel(filepath.Dir(dst), c.blobPath(repo, etag))
	if err != nil {
		return fmt.Errorf("link %s into the snapshot: %w", name, err)
	}
	if old, err := os.Readlink(dst); err == nil && old == target {
		return nil
	}
	tmp := fmt.Sprintf("%s.%d.%d.tmp", dst, os.Getpid(), time.Now().UnixNano())
	if err := os.Symlink(target, tmp); err != nil {
		return fmt.Errorf("link %s into the snapshot: %w", name, err)
	}
	if err := os.Rename(tmp, dst); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("link %s into the snapshot: %w", name, err)
	}
	return nil
}

// Lookup finds a revision in the cache without the network: a commit hash
// names its snapshot folder, a branch or tag is read from refs/. It
// returns an *Error of kind ErrNotCached when there is none.
func (c Cache) Lookup(ref Ref) (*Snapshot, error) {
	commit := ref.Revision
	if !IsCommit(commit) {
		var err error
		if commit, err = c.readRef(ref.Repo, ref.Revision); err != nil {
			return nil, err
		}
		if commit == "" {
			return nil, newError(ErrNotCached, nil, "%s is not in the cache %s (no refs/%s)", ref, c.Dir, ref.Revision)
		}
	}
	dir := c.snapshotDir(ref.Repo, commit)
	files, err := c.snapshotFiles(ref.Repo, dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, newError(ErrNotCached, nil, "%s is not in the cache %s (no snapshot %s)", ref, c.Dir, commit)
	}
	if err != nil {
		return nil, err
	}
	return &Snapshot{Ref: ref, Commit: commit, Dir: dir, Files: files}, nil
}

// snapshotFiles lists a snapshot's files whose link resolves to a file
// inside the repository's folder; a link that points elsewhere is an
// error (the cache may have been written by another program).
func (c Cache) snapshotFiles(repo, dir string) ([]string, error) {
	repoDir, err := filepath.EvalSymlinks(c.RepoDir(repo))
	if err != nil {
		return nil, err
	}
	var files []string
	err = filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() || strings.HasSuffix(path, ".tmp") {
			return nil
		}
		real, err := filepath.EvalSymlinks(path)
		if errors.Is(err, os.ErrNotExist) {
			return nil // a dangling link: the blob was deleted, so the file is not there
		}
		if err != nil {
			return err
		}
		if rel, err := filepath.Rel(repoDir, real); err != nil || rel == ".." || strings.HasPrefix(rel, ".."+string(filepath.Separator)) {
			return fmt.Errorf("%s links outside the cached repository (to %s)", path, real)
		}
		rel, err := filepath.Rel(dir, path)
		if err != nil {
			return err
		}
		files = append(files, filepath.ToSlash(rel))
		return nil
	})
	if err != nil {
		return nil, err
	}
	sort.Strings(files)
	return files, nil
}

// CachedModel is one repository in the cache, for listings such as the
// studio's model page.
type CachedModel struct {
	Repo      string
	Dir       string            // the repository's folder
	Refs      map[string]string // branch or tag -> commit, as last pulled
	Snapshots []CachedSnapshot  // newest first
	Size      int64             // bytes of complete blobs (what deleting the repo frees)
	Partial   int64             // bytes of interrupted downloads, resumed by the next pull
	Modified  time.Time         // newest blob or snapshot
}

// CachedSnapshot is one commit folder of a cached repository.
type CachedSnapshot struct {
	Commit   string
	Dir      string
	Files    []string
	Size     int64 // bytes its files take (blobs shared with other snapshots count in each)
	Modified time.Time
}

// HasWeights reports whether the snapshot holds safetensors weights a run
// can load, every shard of them (an interrupted pull of a sharded model
// leaves some), so a listing can tell a model pulled for `whet fit`
// (config only) or half pulled from one a run can load.
func (s CachedSnapshot) HasWeights() bool {
	snap := &Snapshot{Dir: s.Dir, Files: append([]string(nil), s.Files...)}
	sort.Strings(snap.Files)
	return len(missingFiles(snap, func(name string) bool { return name == "model.safetensors" })) == 0
}

// Latest is the snapshot the main branch points at, or else the newest.
func (m CachedModel) Latest() (CachedSnapshot, bool) {
	if c, ok := m.Refs[DefaultRevision]; ok {
		for _, s := range m.Snapshots {
			if s.Commit == c {
				return s, true
			}
		}
	}
	if len(m.Snapshots) == 0 {
		return CachedSnapshot{}, false
	}
	return m.Snapshots[0], true
}

// Models lists the model repositories in the cache, sorted by repo id. A
// cache folder that does not exist yet is an empty list. Datasets and
// spaces (datasets--*, spaces--*) and unreadable entries are skipped.
func (c Cache) Models() ([]CachedModel, error) {
	entries, err := os.ReadDir(c.Dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list the model cache: %w", err)
	}
	var out []CachedModel
	for _, e := range entries {
		rest, ok := strings.CutPrefix(e.Name(), "models--")
		if !ok || !e.IsDir() {
			continue
		}
		org, name, ok := strings.Cut(rest, "--")
		if !ok || checkRepoID(org+"/"+name) != nil {
			continue
		}
		m, err := c.model(org + "/" + name)
		if err != nil {
			return nil, err
		}
		if m.Size == 0 && m.Partial == 0 && len(m.Snapshots) == 0 && len(m.Refs) == 0 {
			// A pull that failed before its first byte (a gated repo
			// without access) leaves the folders and nothing else: not a
			// model to offer ("0 B (config only)" in whet pull --list, a
			// cached entry in the studio).
			continue
		}
		out = append(out, m)
	}
	sort.Slice(out, func(i, j int) bool { return strings.ToLower(out[i].Repo) < strings.ToLower(out[j].Repo) })
	return out, nil
}

func (c Cache) model(repo string) (CachedModel, error) {
	m := CachedModel{Repo: repo, Dir: c.RepoDir(repo), Refs: map[string]string{}}
	blobs, err := os.ReadDir(filepath.Join(m.Dir, "blobs"))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return m, fmt.Errorf("list the cached blobs of %s: %w", repo, err)
	}
	for _, b := range blobs {
		info, err := b.Info()
		if err != nil || !info.Mode().IsRegular() {
			continue
		}
		if strings.HasSuffix(b.Name(), ".incomplete") {
			m.Partial += info.Size()
		} else {
			m.Size += info.Size()
		}
		if info.ModTime().After(m.Modified) {
			m.Modified = info.ModTime()
		}
	}
	refsDir := filepath.Join(m.Dir, "refs")
	_ = filepath.WalkDir(refsDir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return nil
		}
		rel, _ := filepath.Rel(refsDir, path)
		if commit, err := c.readRef(repo, filepath.ToSlash(rel)); err == nil && commit != "" {
			m.Refs[filepath.ToSlash(rel)] = commit
		}
		return nil
	})
	snaps, err := os.ReadDir(filepath.Join(m.Dir, "snapshots"))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return m, fmt.Errorf("list the cached snapshots of %s: %w", repo, err)
	}
	for _, s := range snaps {
		if !s.IsDir() {
			continue
		}
		dir := filepath.Join(m.Dir, "snapshots", s.Name())
		files, err := c.snapshotFiles(repo, dir)
		if err != nil {
			continue // listed by nothing rather than failing the whole listing
		}
		cs := CachedSnapshot{Commit: s.Name(), Dir: dir, Files: files}
		if info, err := s.Info(); err == nil {
			cs.Modified = info.ModTime()
		}
		for _, f := range files {
			if info, err := os.Stat(filepath.Join(dir, filepath.FromSlash(f))); err == nil {
				cs.Size += info.Size()
			}
		}
		if cs.Modified.After(m.Modified) {
			m.Modified = cs.Modified
		}
		m.Snapshots = append(m.Snapshots, cs)
	}
	sort.SliceStable(m.Snapshots, func(i, j int) bool { return m.Snapshots[i].Modified.After(m.Snapshots[j].Modified) })
	return m, nil
}

// createUnique creates a new file in dir with fileMode, so the user's
// umask decides its final mode (os.CreateTemp would make it 0600).
func createUnique(dir, prefix string) (*os.File, error) {
	for i := 0; ; i++ {
		name := filepath.Join(dir, fmt.Sprintf("%s.%d.%d.tmp", prefix, os.Getpid(), time.Now().UnixNano()+int64(i)))
		f, err := os.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, fileMode)
		if errors.Is(err, os.ErrExist) && i < 100 {
			continue
		}
		return f, err
	}
}

// similar names the cached repos whose id is near repo (spell.Near: the
// same but for case, or a typo or two away), the closest first, at most
// three, repo itself excluded. It reads folder names only.
func (c Cache) similar(repo string) []string {
	entries, err := os.ReadDir(c.Dir)
	if err != nil {
		return nil
	}
	type cand struct {
		id   string
		dist int
	}
	var out []cand
	for _, e := range entries {
		rest, ok := strings.CutPrefix(e.Name(), "models--")
		if !ok || !e.IsDir() {
			continue
		}
		org, name, ok := strings.Cut(rest, "--")
		id := org + "/" + name
		if !ok || id == repo || checkRepoID(id) != nil {
			continue
		}
		if d, near := spell.Near(repo, id); near {
			out = append(out, cand{id, d})
		}
	}
	sort.SliceStable(out, func(i, j int) bool {
		if out[i].dist != out[j].dist {
			return out[i].dist < out[j].dist
		}
		return out[i].id < out[j].id
	})
	var ids []string
	for i := 0; i < len(out) && i < 3; i++ {
		ids = append(ids, out[i].id)
	}
	return ids
}
