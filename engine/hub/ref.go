package hub

import (
	"fmt"
	"os"
	"regexp"
	"strings"
)

// DefaultRevision is the branch a repo id without "@REVISION" means.
const DefaultRevision = "main"

// Ref names a model on the Hub: a repository and a revision (a branch, a
// tag or a commit hash).
type Ref struct {
	Repo     string // "ORG/NAME"
	Revision string // "main" when not given
}

func (r Ref) String() string {
	if r.Revision == "" || r.Revision == DefaultRevision {
		return r.Repo
	}
	return r.Repo + "@" + r.Revision
}

// repoPart is one half of a repo id as the Hub accepts it: letters,
// digits, '-', '_' and '.', at most 96 characters, not starting or ending
// with '-' or '.', and without "--" or ".." (the cache uses "--" as its
// separator, so a name holding it could not be read back).
var repoPart = regexp.MustCompile(`^[A-Za-z0-9_]([A-Za-z0-9_.-]{0,94}[A-Za-z0-9_])?$`)

var commitHash = regexp.MustCompile(`^[0-9a-f]{40}$`)

// IsCommit reports whether a revision is a full commit hash (40 hex
// digits), which the cache stores as a snapshot folder without a ref.
func IsCommit(revision string) bool { return commitHash.MatchString(revision) }

// ParseRef reads "ORG/NAME" or "ORG/NAME@REVISION".
func ParseRef(s string) (Ref, error) {
	repo, rev, hasRev := strings.Cut(s, "@")
	if hasRev && rev == "" {
		return Ref{}, fmt.Errorf("repo id %q: empty revision after '@'", s)
	}
	if !hasRev {
		rev = DefaultRevision
	}
	if err := checkRepoID(repo); err != nil {
		return Ref{}, err
	}
	if err := checkRevision(rev); err != nil {
		return Ref{}, err
	}
	return Ref{Repo: repo, Revision: rev}, nil
}

func checkRepoID(repo string) error {
	org, name, ok := strings.Cut(repo, "/")
	if !ok || strings.Contains(name, "/") {
		return fmt.Errorf("repo id %q: want ORG/NAME", repo)
	}
	for _, part := range []string{org, name} {
		if !repoPart.MatchString(part) || strings.Contains(part, "--") || strings.Contains(part, "..") {
			return fmt.Errorf("repo id %q: %q may hold only letters, digits, '-', '_' and '.' (not \"--\" or \"..\", at most 96)", repo, part)
		}
	}
	return nil
}

// checkRevision accepts branch and tag names as git does (they may hold
// '/', as "refs/pr/1" does) but nothing that could leave refs/ when the
// revision becomes a file name there.
func checkRevision(rev string) error {
	if rev == "" || len(rev) > 255 {
		return fmt.Errorf("revision %q: want 1 to 255 characters", rev)
	}
	for _, seg := range strings.Split(rev, "/") {
		if seg == "" || seg == "." || seg == ".." || strings.HasSuffix(seg, ".lock") {
			return fmt.Errorf("revision %q: not a branch, tag or commit name", rev)
		}
	}
	for _, c := range rev {
		if c < 0x20 || c == 0x7f || strings.ContainsRune(`\:?*[~^ `, c) {
			return fmt.Errorf("revision %q: character %q is not allowed in a branch or tag name", rev, c)
		}
	}
	return nil
}

// LooksLikeRef reports whether a command-line argument names a Hub model
// rather than a local folder: it parses as ORG/NAME[@REV] and no file or
// folder of that name exists. Commands that take "a folder or a repo id"
// use it, so "./org/name" or an existing "models/llama" stays a path.
func LooksLikeRef(arg string) bool {
	if strings.HasPrefix(arg, ".") || strings.HasPrefix(arg, "/") || strings.HasPrefix(arg, "~") {
		return false
	}
	if _, err := ParseRef(arg); err != nil {
		return false
	}
	_, err := os.Stat(arg)
	return os.IsNotExist(err)
}

// CheckFileName refuses a file name from the server that could write
// outside the snapshot folder: absolute paths, "..", empty or "."
// segments, backslashes, control characters.
func CheckFileName(name string) error {
	if name == "" || len(name) > 1024 {
		return fmt.Errorf("file name %q: empty or too long", name)
	}
	if strings.HasPrefix(name, "/") || strings.ContainsAny(name, "\\\x00") {
		return fmt.Errorf("file name %q: absolute or with a backslash", name)
	}
	for _, seg := range strings.Split(name, "/") {
		if seg == "" || seg == "." || seg == ".." {
			return fmt.Errorf("file name %q: empty, \".\" or \"..\" path segment", name)
		}
	}
	for _, c := range name {
		if c < 0x20 || c == 0x7f {
			return fmt.Errorf("file name %q: control character", name)
		}
	}
	return nil
}
