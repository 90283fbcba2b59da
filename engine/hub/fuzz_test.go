package hub

import (
	"path/filepath"
	"strings"
	"testing"
)

// FuzzParseRef: whatever ParseRef accepts stays inside refs/ when the
// revision becomes a file name there, and inside the cache as a folder.
func FuzzParseRef(f *testing.F) {
	for _, s := range []string{"org/name", "org/name@main", "org/name@refs/pr/1", "a/b@../c", "a/b@x/./y", "org--x/y", "a/b@"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		ref, err := ParseRef(s)
		if err != nil {
			return
		}
		if strings.Count(ref.Repo, "/") != 1 || ref.Revision == "" {
			t.Fatalf("accepted %q as %+v", s, ref)
		}
		root := "/cache/" + repoFolder(ref.Repo)
		for _, p := range []string{filepath.Join(root, "refs", ref.Revision), root} {
			if !strings.HasPrefix(filepath.Clean(p), "/cache/models--") || strings.Contains(filepath.Base(root), "/") {
				t.Fatalf("%q escapes the cache: %s", s, p)
			}
		}
		if rel, _ := filepath.Rel(filepath.Join(root, "refs"), filepath.Join(root, "refs", ref.Revision)); rel == ".." || strings.HasPrefix(rel, "../") || rel == "." {
			t.Fatalf("revision %q leaves refs/", ref.Revision)
		}
	})
}

// FuzzParseRepoInfo: a model-info answer either fails with an error or
// names only files that stay inside the snapshot folder.
func FuzzParseRepoInfo(f *testing.F) {
	f.Add([]byte(`{"id":"a/b","sha":"0123456789012345678901234567890123456789","siblings":[{"rfilename":"config.json","size":3,"blobId":"x"},{"rfilename":"model.safetensors","lfs":{"sha256":"ab","size":5}}]}`))
	f.Add([]byte(`{"sha":"0123456789012345678901234567890123456789","siblings":[{"rfilename":"../../x"}]}`))
	f.Add([]byte(`{"sha":"0123456789012345678901234567890123456789","siblings":[{"rfilename":"a/./b","size":-1}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		info, err := parseRepoInfo(data)
		if err != nil {
			return
		}
		snap := "/cache/models--a--b/snapshots/" + info.SHA
		for _, s := range info.Siblings {
			p := filepath.Join(snap, s.Name)
			if !strings.HasPrefix(p, snap+"/") {
				t.Fatalf("file %q lands at %s, outside the snapshot", s.Name, p)
			}
			if s.size() < 0 {
				t.Fatalf("file %q has size %d", s.Name, s.size())
			}
		}
	})
}

// FuzzParsePlan: a pull plan read back from the cache (anyone with the
// cache can write it) either fails or names only files inside the
// snapshot folder and blobs inside blobs/, with sizes of at least 0.
func FuzzParsePlan(f *testing.F) {
	f.Add([]byte(`{"revision":"main","commit":"0123456789012345678901234567890123456789","files":[{"name":"config.json","size":3,"blob":"ab"},{"name":"model.safetensors","size":5}]}`))
	f.Add([]byte(`{"revision":"main","commit":"0123456789012345678901234567890123456789","files":[{"name":"../x","size":1,"blob":"../../y"}]}`))
	f.Add([]byte(`{"commit":"x","files":[{"name":"a","size":-1}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := parsePlan(data)
		if err != nil {
			return
		}
		c := Cache{Dir: "/cache"}
		snap := c.snapshotDir("a/b", p.Commit)
		blobs := filepath.Join(c.RepoDir("a/b"), "blobs")
		for _, fl := range p.Files {
			if q := filepath.Join(snap, filepath.FromSlash(fl.Name)); !strings.HasPrefix(q, snap+"/") {
				t.Fatalf("file %q lands at %s, outside the snapshot", fl.Name, q)
			}
			if q := c.blobPath("a/b", fl.Blob); fl.Blob != "" && filepath.Dir(q) != blobs {
				t.Fatalf("blob %q lands at %s, outside blobs/", fl.Blob, q)
			}
			if fl.Size < 0 {
				t.Fatalf("file %q has size %d", fl.Name, fl.Size)
			}
		}
	})
}
