package hub

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"whet/engine/units"
)

// pullPlan is what a pull set out to fetch: written before its first byte
// and removed when it succeeds, so that an unfinished pull can later be
// described without the Hub ("3 of 5 files downloaded (1.2 GiB of
// 2.4 GiB)"); the cache layout alone knows neither the files a pull has
// not started nor their sizes. It lives in the cache's .locks folder,
// which huggingface_hub never reads as a repository, so the cache stays
// the one huggingface_hub knows.
type pullPlan struct {
	Revision string     `json:"revision"`
	Commit   string     `json:"commit"`
	Files    []planFile `json:"files"`
}

type planFile struct {
	Name string `json:"name"`
	Size int64  `json:"size"`
	Blob string `json:"blob,omitempty"` // the blob's name from the model info ("" when it gave none)
}

// planPath is the plan of the repo's unfinished pull (one per repo: a
// later pull of another revision replaces it).
func (c Cache) planPath(repo string) string {
	return filepath.Join(c.Dir, ".locks", repoFolder(repo), "whet-pull.json")
}

// writePlan records a pull's selection. A plan that cannot be written
// only makes a later message vaguer, so the pull goes on without it.
func (c Cache) writePlan(ref Ref, commit string, files []sibling) {
	p := pullPlan{Revision: ref.Revision, Commit: commit}
	for _, s := range files {
		blob := s.etag()
		if CheckFileName(blob) != nil || strings.Contains(blob, "/") {
			blob = ""
		}
		p.Files = append(p.Files, planFile{Name: s.Name, Size: s.size(), Blob: blob})
	}
	js, err := json.Marshal(p)
	if err != nil {
		return
	}
	path := c.planPath(ref.Repo)
	if err := os.MkdirAll(filepath.Dir(path), dirMode); err != nil {
		return
	}
	tmp, err := createUnique(filepath.Dir(path), ".whet-pull")
	if err != nil {
		return
	}
	_, werr := tmp.Write(js)
	if err := errors.Join(werr, tmp.Close(), os.Rename(tmp.Name(), path)); err != nil {
		os.Remove(tmp.Name())
	}
}

// removePlan forgets the plan once the pull it describes has finished.
func (c Cache) removePlan(ref Ref, commit string) {
	if p, err := c.readPlan(ref.Repo); err == nil && p.Commit == commit {
		os.Remove(c.planPath(ref.Repo))
	}
}

func (c Cache) readPlan(repo string) (*pullPlan, error) {
	js, err := os.ReadFile(c.planPath(repo))
	if err != nil {
		return nil, err
	}
	return parsePlan(js)
}

// parsePlan reads a plan. The file sits in a folder anyone with the cache
// can write, so its names are checked as a server's are: a blob or file
// name must not lead out of the repository's folder.
func parsePlan(js []byte) (*pullPlan, error) {
	var p pullPlan
	if err := json.Unmarshal(js, &p); err != nil {
		return nil, fmt.Errorf("pull plan: %w", err)
	}
	if !IsCommit(p.Commit) {
		return nil, fmt.Errorf("pull plan: commit %q is not a commit hash", p.Commit)
	}
	for _, f := range p.Files {
		if err := CheckFileName(f.Name); err != nil {
			return nil, fmt.Errorf("pull plan: %w", err)
		}
		if f.Blob != "" && (CheckFileName(f.Blob) != nil || strings.Contains(f.Blob, "/")) {
			return nil, fmt.Errorf("pull plan: blob name %q", f.Blob)
		}
		if f.Size < 0 {
			return nil, fmt.Errorf("pull plan: %s has size %d", f.Name, f.Size)
		}
	}
	return &p, nil
}

// PartialPull is what an unfinished pull of a revision left in the cache.
type PartialPull struct {
	Ref    Ref
	Commit string // the commit being pulled; "" when no plan says
	// Files and Total are the pull's selection, 0 when unknown (a pull by
	// an older whet, or by huggingface_hub, left no plan).
	Files     int
	Total     int64
	FilesDone int   // files complete
	Done      int64 // bytes of complete files and kept bytes of unfinished ones
	Kept      int64 // of Done, the bytes of unfinished files
}

// String says what is there: "3 of 5 files downloaded (1.2 GiB of
// 2.4 GiB)", or without a plan "2 files downloaded (1.0 MiB) and 200 KiB
// of an unfinished one".
func (p *PartialPull) String() string {
	if p.Files > 0 {
		return fmt.Sprintf("%d of %d files downloaded (%s of %s)", p.FilesDone, p.Files, units.Bytes(p.Done), units.Bytes(p.Total))
	}
	s := fmt.Sprintf("%d %s downloaded (%s)", p.FilesDone, plural(p.FilesDone, "file", "files"), units.Bytes(p.Done-p.Kept))
	if p.Kept > 0 {
		s += fmt.Sprintf(" and %s of unfinished files", units.Bytes(p.Kept))
	}
	return s
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

// Partial reports whether an unfinished pull of ref left files in the
// cache, and what they are, for messages that would otherwise say the
// model is not there at all. It reads the cache only.
func (c Cache) Partial(ref Ref) (*PartialPull, bool) {
	if ref.Revision == "" {
		ref.Revision = DefaultRevision
	}
	if checkRepoID(ref.Repo) != nil {
		return nil, false
	}
	if p, err := c.readPlan(ref.Repo); err == nil && (p.Revision == ref.Revision || p.Commit == ref.Revision) {
		return c.planProgress(ref, p)
	}
	// No plan for this revision: what the cache shows of the repo.
	m, err := c.model(ref.Repo)
	if err != nil {
		return nil, false
	}
	snap, lerr := c.Lookup(ref)
	if m.Partial == 0 && (lerr == nil || len(m.Snapshots) == 0) {
		return nil, false
	}
	pp := &PartialPull{Ref: ref, Done: m.Partial, Kept: m.Partial}
	switch latest, ok := m.Latest(); {
	case lerr == nil: // the revision's snapshot, without some of its files
		pp.Commit = snap.Commit
		for _, f := range snap.Files {
			if st, err := os.Stat(filepath.Join(snap.Dir, filepath.FromSlash(f))); err == nil {
				pp.FilesDone++
				pp.Done += st.Size()
			}
		}
	case ok: // no ref yet: the snapshot the interrupted pull was filling
		pp.Commit, pp.FilesDone, pp.Done = latest.Commit, len(latest.Files), latest.Size+m.Partial
	}
	return pp, true
}

// planProgress counts a plan's files that are complete (linked into the
// snapshot, or their blob whole) and the kept bytes of the others. A plan
// whose files are all there is not a partial pull unless the ref was not
// yet written (the pull stopped just before its end).
func (c Cache) planProgress(ref Ref, p *pullPlan) (*PartialPull, bool) {
	pp := &PartialPull{Ref: ref, Commit: p.Commit, Files: len(p.Files)}
	snap := c.snapshotDir(ref.Repo, p.Commit)
	for _, f := range p.Files {
		pp.Total += f.Size
		if st, err := os.Stat(filepath.Join(snap, filepath.FromSlash(f.Name))); err == nil && st.Mode().IsRegular() {
			pp.FilesDone++
			pp.Done += st.Size()
			continue
		}
		if f.Blob == "" {
			continue
		}
		blob := c.blobPath(ref.Repo, f.Blob)
		if st, err := os.Stat(blob); err == nil && st.Size() == f.Size {
			pp.FilesDone++
			pp.Done += st.Size()
		} else if st, err := os.Stat(blob + ".incomplete"); err == nil && st.Size() <= f.Size {
			pp.Done += st.Size()
			pp.Kept += st.Size()
		}
	}
	if pp.FilesDone == pp.Files {
		if _, err := c.Lookup(ref); err == nil {
			return nil, false
		}
	}
	if pp.FilesDone == 0 && pp.Done == 0 {
		// Nothing arrived (or the repo was deleted since): not partial.
		return nil, false
	}
	return pp, true
}

// newerPartial is what an unfinished pull of ref's revision at another
// commit than snap's left (snap's NewerPartial), or nil: a pull that
// stopped part way leaves the revision's ref at the commit pulled before,
// whose complete snapshot a cache-only lookup then takes.
func (c Cache) newerPartial(ref Ref, snap *Snapshot) *PartialPull {
	p, ok := c.Partial(ref)
	if !ok || p.Commit == "" || p.Commit == snap.Commit {
		return nil
	}
	return p
}

// OlderNotice says which snapshot is used while a newer pull of its
// revision is unfinished (NewerPartial): "using the older complete
// snapshot 1a2b3c4d5e6f of ORG/NAME; a newer pull (9f8e7d6c5b4a) is
// partial: 4 of 5 files downloaded (100 KiB of 1.00 MiB), and whet pull
// resumes it"; "" without one. Every message about such a snapshot says
// it this way.
func (s *Snapshot) OlderNotice() string {
	if s == nil || s.NewerPartial == nil {
		return ""
	}
	return fmt.Sprintf("using the older complete snapshot %s of %s; a newer pull (%s) is partial: %s, and whet pull resumes it",
		ShortCommit(s.Commit), s.Ref, ShortCommit(s.NewerPartial.Commit), s.NewerPartial)
}

// ShortCommit is a commit hash as messages show it: its first 12 digits.
func ShortCommit(commit string) string { return commit[:min(12, len(commit))] }

// Unfinished is what an unfinished pull of repo left, for listings of the
// cache: the pull its record names (whatever its revision), or without a
// record, when interrupted downloads are kept, what Partial tells of the
// default revision. ok is false when no pull of repo is unfinished.
func (c Cache) Unfinished(repo string) (*PartialPull, bool) {
	if checkRepoID(repo) != nil {
		return nil, false
	}
	if p, err := c.readPlan(repo); err == nil {
		rev := p.Revision
		if rev == "" {
			rev = p.Commit
		}
		return c.planProgress(Ref{Repo: repo, Revision: rev}, p)
	}
	m, err := c.model(repo)
	if err != nil || m.Partial == 0 {
		return nil, false
	}
	return c.Partial(Ref{Repo: repo})
}
