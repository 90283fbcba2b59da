// Package hubtest is a fake Hugging Face Hub for tests: an API host that
// answers the model-info, tree and resolve endpoints with the headers
// huggingface_hub reads (ETag, X-Linked-Etag, X-Linked-Size,
// X-Repo-Commit, X-Error-Code, X-Error-Message), and a storage host that
// the resolve URLs of LFS files redirect to and that serves byte ranges.
// It can gate or hide repos, check tokens, and inject the faults a real
// network has: rate limits, server errors, dropped connections, corrupted
// bytes, hostile file names.
//
// It serves Go tests (engine/hub, the studio) and, through
// tools/hub/fakehub, huggingface_hub itself in the interoperability check.
package hubtest

import (
	"bytes"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// File is one file of a commit.
type File struct {
	Name string
	Data []byte
	LFS  bool // kept in LFS: its resolve URL redirects to the storage host
}

func (f File) gitOID() string {
	return gitBlob(f.Data)
}

func (f File) sha256() string {
	s := sha256.Sum256(f.Data)
	return hex.EncodeToString(s[:])
}

// pointer is the small text git keeps for an LFS file; only its hash and
// size matter here (they are the non-linked ETag and the tree's oid).
func (f File) pointer() []byte {
	return []byte(fmt.Sprintf("version lfs-pointer-v1\noid sha256:%s\nsize %d\n", f.sha256(), len(f.Data)))
}

func gitBlob(data []byte) string {
	h := sha1.New()
	fmt.Fprintf(h, "blob %d\x00", len(data))
	h.Write(data)
	return hex.EncodeToString(h.Sum(nil))
}

// IsLFSName is the rule AddFiles uses: weights go to LFS, as on the Hub.
func IsLFSName(name string) bool {
	for _, ext := range []string{".safetensors", ".bin", ".pth", ".pt", ".gguf", ".onnx", ".model"} {
		if strings.HasSuffix(name, ext) {
			return true
		}
	}
	return false
}

// Repo is a model repository of the fake Hub.
type Repo struct {
	ID      string
	Private bool // invisible without the server's token
	Gated   bool // files need the server's token and Granted
	Granted bool // the token's account accepted the licence
	commits map[string][]File
	refs    map[string]string // branch or tag -> commit
	order   []string          // commits, oldest first
}

// Server is the fake Hub. Its fields may be set before the first request;
// use the methods afterwards.
type Server struct {
	API     *httptest.Server // the Hub: /api/... and /ORG/NAME/resolve/...
	Storage *httptest.Server // where LFS downloads are redirected
	// Token is the one valid token; a request carrying another gets 401
	// "Invalid credentials in Authorization header".
	Token string
	// BeforeStorage, if set, runs before the storage host answers a GET
	// of a file's bytes (tests use it to hold a download open).
	BeforeStorage func(name string)
	// StorageURL is the base of the storage host's address in redirects;
	// "" means Storage.URL. Clients that tell the Hub from the storage
	// host by host name (huggingface_hub does) need another name than
	// the API's, such as http://localhost:PORT beside http://127.0.0.1:PORT.
	StorageURL string
	// AfterResolve, if set, runs after the API host answered the resolve
	// URL of a file (HEAD or GET), outside the server's lock.
	AfterResolve func(method, name string)

	mu       sync.Mutex
	repos    map[string]*Repo
	fails    []fault
	drops    map[string]int64 // file name -> bytes to send before dropping, once
	stalls   map[string]bool  // a drop that waits for the client to give up instead
	corrupt  map[string]bool
	renames  map[string]string // file name -> name announced in listings
	requests map[string]int    // "METHOD host name" -> count
	ranges   map[string][]string
}

type fault struct {
	match  string // substring of the request path
	status int
	times  int
}

// New starts a fake Hub on two loopback ports.
func New() *Server {
	s := newServer()
	s.API = httptest.NewServer(http.HandlerFunc(s.serveAPI))
	s.Storage = httptest.NewServer(http.HandlerFunc(s.serveStorage))
	return s
}

// NewOn starts a fake Hub on the given listeners (the interoperability
// tool picks fixed addresses).
func NewOn(api, storage net.Listener) *Server {
	s := newServer()
	s.API = &httptest.Server{Listener: api, Config: &http.Server{Handler: http.HandlerFunc(s.serveAPI)}}
	s.Storage = &httptest.Server{Listener: storage, Config: &http.Server{Handler: http.HandlerFunc(s.serveStorage)}}
	s.API.Start()
	s.Storage.Start()
	return s
}

func newServer() *Server {
	return &Server{
		repos:    map[string]*Repo{},
		drops:    map[string]int64{},
		stalls:   map[string]bool{},
		corrupt:  map[string]bool{},
		renames:  map[string]string{},
		requests: map[string]int{},
		ranges:   map[string][]string{},
	}
}

// URL is the endpoint to give a client (HF_ENDPOINT).
func (s *Server) URL() string { return s.API.URL }

// Close stops both hosts.
func (s *Server) Close() {
	s.API.Close()
	s.Storage.Close()
}

// Repo returns the repository with this id, creating it empty.
func (s *Server) Repo(id string) *Repo {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.repoLocked(id)
}

func (s *Server) repoLocked(id string) *Repo {
	r := s.repos[id]
	if r == nil {
		r = &Repo{ID: id, commits: map[string][]File{}, refs: map[string]string{}}
		s.repos[id] = r
	}
	return r
}

// AddFiles makes a new commit of repo holding files (name -> bytes; LFS by
// IsLFSName), points the given branches and tags at it ("main" when none)
// and returns its hash.
func (s *Server) AddFiles(repo string, files map[string][]byte, refs ...string) string {
	var fs []File
	for name, data := range files {
		fs = append(fs, File{Name: name, Data: data, LFS: IsLFSName(name)})
	}
	return s.AddCommit(repo, fs, refs...)
}

// AddDir commits the files of a folder (not its subfolders) to repo.
func (s *Server) AddDir(repo, dir string, refs ...string) (string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return "", err
	}
	files := map[string][]byte{}
	for _, e := range entries {
		if !e.Type().IsRegular() {
			continue
		}
		data, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			return "", err
		}
		files[e.Name()] = data
	}
	return s.AddFiles(repo, files, refs...), nil
}

// AddCommit makes a new commit of repo and points refs at it.
func (s *Server) AddCommit(repo string, files []File, refs ...string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.repoLocked(repo)
	sort.Slice(files, func(i, j int) bool { return files[i].Name < files[j].Name })
	h := sha1.New()
	fmt.Fprintf(h, "%s\x00%d\x00", repo, len(r.order))
	for _, f := range files {
		fmt.Fprintf(h, "%s\x00%s\x00", f.Name, f.gitOID())
	}
	commit := hex.EncodeToString(h.Sum(nil))
	r.commits[commit] = files
	r.order = append(r.order, commit)
	if len(refs) == 0 {
		refs = []string{"main"}
	}
	for _, ref := range refs {
		r.refs[ref] = commit
	}
	return commit
}

// SetRef points a branch or tag at a commit.
func (s *Server) SetRef(repo, ref, commit string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.repoLocked(repo).refs[ref] = commit
}

// SetAccess makes a repo private or gated (and whether the token's
// account was granted access).
func (s *Server) SetAccess(repo string, private, gated, granted bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.repoLocked(repo)
	r.Private, r.Gated, r.Granted = private, gated, granted
}

// Fail answers the next times requests whose path contains match with
// status (429 comes with Retry-After: 0).
func (s *Server) Fail(match string, status, times int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.fails = append(s.fails, fault{match: match, status: status, times: times})
}

// DropAfter makes the next storage download of a file send n bytes and
// then close the connection.
func (s *Server) DropAfter(name string, n int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.drops[name] = n
}

// StallAfter makes the next storage download of a file send n bytes and
// then send nothing more until the client gives up on the connection.
func (s *Server) StallAfter(name string, n int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.drops[name] = n
	s.stalls[name] = true
}

// Corrupt makes the storage host serve a file with one byte changed
// (same size), as a broken disk or proxy would.
func (s *Server) Corrupt(name string, on bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.corrupt[name] = on
}

// Rename announces a file under another name in the model-info and tree
// listings (a hostile server: "../../x").
func (s *Server) Rename(name, announced string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.renames[name] = announced
}

// Requests counts the requests of a method to one host ("api" or
// "storage") for a file name ("" counts model-info calls).
func (s *Server) Requests(method, host, name string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.requests[method+" "+host+" "+name]
}

// Ranges lists the Range headers of the storage downloads of a file, in
// order ("" for a request of the whole file).
func (s *Server) Ranges(name string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.ranges[name]...)
}

func (s *Server) count(r *http.Request, host, name string) {
	s.requests[r.Method+" "+host+" "+name]++
}

// injected answers a pending fault for this request, if any.
func (s *Server) injected(w http.ResponseWriter, r *http.Request) bool {
	for i := range s.fails {
		f := &s.fails[i]
		if f.times > 0 && strings.Contains(r.URL.Path, f.match) {
			f.times--
			if f.status == http.StatusTooManyRequests {
				w.Header().Set("Retry-After", "0")
			}
			http.Error(w, http.StatusText(f.status), f.status)
			return true
		}
	}
	return false
}

func hubError(w http.ResponseWriter, status int, code, msg string, commit string) {
	if code != "" {
		w.Header().Set("X-Error-Code", code)
	}
	w.Header().Set("X-Error-Message", msg)
	if commit != "" {
		w.Header().Set("X-Repo-Commit", commit)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(map[string]string{"error": msg})
}

// authorized checks the token: it returns whether a valid one came, and
// false with an answer sent when a wrong one did.
func (s *Server) authorized(w http.ResponseWriter, r *http.Request) (valid, answered bool) {
	h := r.Header.Get("Authorization")
	if h == "" {
		return false, false
	}
	if s.Token != "" && h == "Bearer "+s.Token {
		return true, false
	}
	hubError(w, http.StatusUnauthorized, "", "Invalid credentials in Authorization header", "")
	return false, true
}

// findRepo answers for a missing or hidden repo and returns nil then.
func (s *Server) findRepo(w http.ResponseWriter, id string, valid bool) *Repo {
	r := s.repos[id]
	if r == nil || r.Private && !valid {
		status := http.StatusUnauthorized
		if valid {
			status = http.StatusNotFound
		}
		hubError(w, status, "RepoNotFound", "Repository not found", "")
		return nil
	}
	return r
}

func (r *Repo) resolve(rev string) string {
	if c, ok := r.refs[rev]; ok {
		return c
	}
	if _, ok := r.commits[rev]; ok {
		return rev
	}
	return ""
}

// splitPath splits an escaped URL path into unescaped segments, keeping
// "%2F" inside a segment (a revision such as refs%2Fpr%2F1).
func splitPath(r *http.Request) []string {
	parts := strings.Split(strings.Trim(r.URL.EscapedPath(), "/"), "/")
	for i, p := range parts {
		if u, err := url.PathUnescape(p); err == nil {
			parts[i] = u
		}
	}
	return parts
}

func (s *Server) serveAPI(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	resolved := s.serveAPILocked(w, r)
	s.mu.Unlock()
	if resolved != "" && s.AfterResolve != nil {
		s.AfterResolve(r.Method, resolved)
	}
}

// serveAPILocked answers an API-host request and returns the file name
// when it was a resolve URL that found its file.
func (s *Server) serveAPILocked(w http.ResponseWriter, r *http.Request) string {
	if s.injected(w, r) {
		return ""
	}
	valid, answered := s.authorized(w, r)
	if answered {
		return ""
	}
	p := splitPath(r)
	switch {
	case len(p) >= 4 && p[0] == "api" && p[1] == "models":
		s.count(r, "api", "")
		s.serveInfo(w, r, p[2]+"/"+p[3], p[4:], valid)
	case len(p) >= 5 && p[2] == "resolve":
		name := strings.Join(p[4:], "/")
		if s.serveResolve(w, r, p[0]+"/"+p[1], p[3], name, valid) {
			return name
		}
	default:
		http.NotFound(w, r)
	}
	return ""
}

// serveInfo answers /api/models/ID[/revision/REV] and /api/models/ID/tree/REV.
func (s *Server) serveInfo(w http.ResponseWriter, r *http.Request, id string, rest []string, valid bool) {
	repo := s.findRepo(w, id, valid)
	if repo == nil {
		return
	}
	rev, tree := "main", false
	switch {
	case len(rest) == 0:
	case len(rest) == 2 && rest[0] == "revision":
		rev = rest[1]
	case len(rest) >= 2 && rest[0] == "tree":
		rev, tree = rest[1], true
	default:
		http.NotFound(w, r)
		return
	}
	commit := repo.resolve(rev)
	if commit == "" {
		hubError(w, http.StatusNotFound, "RevisionNotFound", "Invalid rev id: "+rev, "")
		return
	}
	files := repo.commits[commit]
	w.Header().Set("Content-Type", "application/json")
	if tree {
		var entries []map[string]any
		for _, f := range files {
			e := map[string]any{"type": "file", "path": s.announced(f.Name), "oid": f.gitOID(), "size": len(f.Data)}
			if f.LFS {
				e["oid"] = gitBlob(f.pointer())
				e["lfs"] = map[string]any{"oid": f.sha256(), "size": len(f.Data), "pointerSize": len(f.pointer())}
			}
			entries = append(entries, e)
		}
		json.NewEncoder(w).Encode(entries)
		return
	}
	blobs := r.URL.Query().Get("blobs") != ""
	var siblings []map[string]any
	for _, f := range files {
		sib := map[string]any{"rfilename": s.announced(f.Name)}
		if blobs {
			sib["size"] = len(f.Data)
			sib["blobId"] = f.gitOID()
			if f.LFS {
				sib["blobId"] = gitBlob(f.pointer())
				sib["lfs"] = map[string]any{"sha256": f.sha256(), "size": len(f.Data), "pointerSize": len(f.pointer())}
			}
		}
		siblings = append(siblings, sib)
	}
	gated := any(false)
	if repo.Gated {
		gated = "manual"
	}
	json.NewEncoder(w).Encode(map[string]any{
		"_id": "fake" + commit[:20], "id": id, "modelId": id, "author": strings.Split(id, "/")[0],
		"sha": commit, "private": repo.Private, "gated": gated, "disabled": false,
		"downloads": 0, "likes": 0, "tags": []string{}, "library_name": "transformers",
		"lastModified": "2026-01-01T00:00:00.000Z", "createdAt": "2026-01-01T00:00:00.000Z",
		"siblings": siblings,
	})
}

func (s *Server) announced(name string) string {
	if a, ok := s.renames[name]; ok {
		return a
	}
	return name
}

func (s *Server) serveResolve(w http.ResponseWriter, r *http.Request, id, rev, name string, valid bool) bool {
	repo := s.findRepo(w, id, valid)
	if repo == nil {
		return false
	}
	commit := repo.resolve(rev)
	if commit == "" {
		hubError(w, http.StatusNotFound, "RevisionNotFound", "Invalid rev id: "+rev, "")
		return false
	}
	if repo.Gated && !(valid && repo.Granted) {
		status, msg := http.StatusUnauthorized, "Access to model "+id+" is restricted. You must have access to it and be authenticated to access it. Please log in."
		if valid {
			status, msg = http.StatusForbidden, "Access to model "+id+" is restricted and you are not in the authorized list. Visit "+s.API.URL+"/"+id+" to ask for access."
		}
		hubError(w, status, "GatedRepo", msg, commit)
		return false
	}
	var file *File
	for i := range repo.commits[commit] {
		if f := &repo.commits[commit][i]; f.Name == name {
			file = f
		}
	}
	if file == nil {
		hubError(w, http.StatusNotFound, "EntryNotFound", name+" does not exist on \""+rev+"\"", commit)
		return false
	}
	s.count(r, "api", name)
	h := w.Header()
	h.Set("X-Repo-Commit", commit)
	h.Set("Accept-Ranges", "bytes")
	if file.LFS {
		h.Set("ETag", `"`+gitBlob(file.pointer())+`"`)
		h.Set("X-Linked-Etag", `"`+file.sha256()+`"`)
		h.Set("X-Linked-Size", strconv.Itoa(len(file.Data)))
		storage := s.StorageURL
		if storage == "" {
			storage = s.Storage.URL
		}
		h.Set("Location", fmt.Sprintf("%s/blobs/%s?name=%s&expires=%d", storage, file.sha256(), url.QueryEscape(name), time.Now().Add(time.Hour).Unix()))
		h.Set("Content-Length", "0")
		w.WriteHeader(http.StatusFound)
		return true
	}
	h.Set("ETag", `"`+file.gitOID()+`"`)
	http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(file.Data))
	return true
}

func (s *Server) serveStorage(w http.ResponseWriter, r *http.Request) {
	name := r.URL.Query().Get("name")
	if hook := s.BeforeStorage; hook != nil && r.Method == http.MethodGet {
		hook(name)
	}
	s.mu.Lock()
	if s.injected(w, r) {
		s.mu.Unlock()
		return
	}
	s.count(r, "storage", name)
	if r.Method == http.MethodGet {
		s.ranges[name] = append(s.ranges[name], r.Header.Get("Range"))
	}
	if r.Header.Get("Authorization") != "" {
		// Signed URLs take no token; huggingface_hub strips it here.
		s.mu.Unlock()
		http.Error(w, "the storage host takes no Authorization header", http.StatusBadRequest)
		return
	}
	p := splitPath(r)
	var data []byte
	if len(p) == 2 && p[0] == "blobs" {
		for _, repo := range s.repos {
			for _, files := range repo.commits {
				for _, f := range files {
					if f.LFS && f.sha256() == p[1] {
						data = f.Data
					}
				}
			}
		}
	}
	corrupt := s.corrupt[name]
	drop, dropping := s.drops[name]
	stall := s.stalls[name]
	if dropping && r.Method == http.MethodGet {
		delete(s.drops, name)
		delete(s.stalls, name)
	}
	s.mu.Unlock()
	if data == nil {
		http.NotFound(w, r)
		return
	}
	if corrupt {
		data = bytes.Clone(data)
		data[len(data)/2] ^= 0xff
	}
	w.Header().Set("ETag", `"`+p[1]+`"`)
	if !dropping || r.Method != http.MethodGet {
		http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(data))
		return
	}
	// Announce the whole body, send part of it, then cut the connection.
	start := int64(0)
	if rg := r.Header.Get("Range"); strings.HasPrefix(rg, "bytes=") {
		start, _ = strconv.ParseInt(strings.TrimSuffix(strings.TrimPrefix(rg, "bytes="), "-"), 10, 64)
		w.Header().Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", start, len(data)-1, len(data)))
		w.Header().Set("Content-Length", strconv.Itoa(len(data)-int(start)))
		w.WriteHeader(http.StatusPartialContent)
	} else {
		w.Header().Set("Content-Length", strconv.Itoa(len(data)))
		w.WriteHeader(http.StatusOK)
	}
	w.Write(data[start:min(int64(len(data)), start+drop)])
	w.(http.Flusher).Flush()
	if stall {
		<-r.Context().Done()
		return
	}
	if conn, _, err := http.NewResponseController(w).Hijack(); err == nil {
		conn.Close()
	}
}
