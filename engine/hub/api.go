package hub

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// repoInfo is the part of the model-info answer
// (GET /api/models/ORG/NAME/revision/REV?blobs=true) a pull reads.
type repoInfo struct {
	ID       string    `json:"id"`
	SHA      string    `json:"sha"`
	Siblings []sibling `json:"siblings"`
}

type sibling struct {
	Name   string `json:"rfilename"`
	Size   *int64 `json:"size"`
	BlobID string `json:"blobId"` // git blob hash: the ETag of a file kept in git
	LFS    *struct {
		SHA256 string `json:"sha256"` // the ETag of a file kept in LFS
		Size   int64  `json:"size"`
	} `json:"lfs"`
}

// etag is the blob name the file will have in the cache, as far as the
// model-info answer tells (the HEAD of the file has the last word).
func (s sibling) etag() string {
	if s.LFS != nil && s.LFS.SHA256 != "" {
		return s.LFS.SHA256
	}
	return s.BlobID
}

func (s sibling) size() int64 {
	if s.LFS != nil && s.LFS.Size > 0 {
		return s.LFS.Size
	}
	if s.Size != nil {
		return *s.Size
	}
	return 0
}

// parseRepoInfo reads a model-info answer; every file name in it must pass
// CheckFileName, whether the pull wants that file or not: a server that
// sends "../x" is not one to take weights from.
func parseRepoInfo(data []byte) (repoInfo, error) {
	var info repoInfo
	if err := json.Unmarshal(data, &info); err != nil {
		return repoInfo{}, fmt.Errorf("model info: %w", err)
	}
	if !IsCommit(info.SHA) {
		return repoInfo{}, fmt.Errorf("model info: sha %q is not a commit hash", info.SHA)
	}
	for i, s := range info.Siblings {
		if err := CheckFileName(s.Name); err != nil {
			return repoInfo{}, &Error{Kind: ErrUnsafeName, Msg: fmt.Sprintf("model info: siblings[%d]: %v; refusing the whole answer", i, err), Err: err}
		}
		if s.Size != nil && *s.Size < 0 || s.LFS != nil && s.LFS.Size < 0 {
			return repoInfo{}, fmt.Errorf("model info: siblings[%d] (%s): negative size", i, s.Name)
		}
	}
	return info, nil
}

func (c *Client) repoInfo(ctx context.Context, ref Ref) (repoInfo, error) {
	u := fmt.Sprintf("%s/api/models/%s/revision/%s?blobs=true", c.Endpoint, ref.Repo, url.PathEscape(ref.Revision))
	resp, err := c.send(ctx, c.follow(), func() (*http.Request, error) {
		return c.request(ctx, http.MethodGet, u)
	})
	if err != nil {
		return repoInfo{}, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return repoInfo{}, c.statusError(resp, ref, "")
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return repoInfo{}, err
	}
	info, err := parseRepoInfo(data)
	if err != nil {
		var he *Error
		if errors.As(err, &he) {
			he.Msg = ref.String() + ": " + he.Msg
			return repoInfo{}, he
		}
		return repoInfo{}, newError(ErrProtocol, err, "%s: %s sent an unreadable answer: %v", ref, c.Endpoint, err)
	}
	return info, nil
}

// fileMeta is what the HEAD of a resolve URL says about one file.
type fileMeta struct {
	etag     string // the blob's name in the cache
	size     int64
	commit   string
	location string // where to GET the bytes: the storage host for LFS files
}

// head asks the resolve URL of one file for its metadata, following
// redirects on the same host (a renamed repo) but not to another (the
// storage host), whose address becomes the download's location.
func (c *Client) head(ctx context.Context, ref Ref, commit, name string) (fileMeta, error) {
	u := c.resolveURL(ref.Repo, commit, name)
	for hops := 0; ; hops++ {
		resp, err := c.send(ctx, c.noFollow(), func() (*http.Request, error) {
			req, err := c.request(ctx, http.MethodHead, u)
			if err == nil {
				// The size of the stored file, not of a compressed answer.
				req.Header.Set("Accept-Encoding", "identity")
			}
			return req, err
		})
		if err != nil {
			return fileMeta{}, err
		}
		resp.Body.Close()
		redirect := resp.StatusCode >= 300 && resp.StatusCode < 400
		if !redirect && resp.StatusCode >= 400 {
			return fileMeta{}, c.statusError(resp, ref, name)
		}
		loc := u
		if redirect {
			target, err := url.Parse(resp.Header.Get("Location"))
			if err != nil || resp.Header.Get("Location") == "" {
				return fileMeta{}, newError(ErrProtocol, err, "%s: %s redirected %s to an unreadable location", ref, c.Endpoint, name)
			}
			base, _ := url.Parse(u)
			next := base.ResolveReference(target)
			if target.Host == "" && hops < 5 {
				u = next.String()
				continue
			}
			loc = next.String()
		}
		m := fileMeta{location: loc, commit: resp.Header.Get("X-Repo-Commit")}
		m.etag = normalizeETag(resp.Header.Get("X-Linked-Etag"))
		if m.etag == "" {
			m.etag = normalizeETag(resp.Header.Get("ETag"))
		}
		sizeText := resp.Header.Get("X-Linked-Size")
		if sizeText == "" && !redirect {
			sizeText = resp.Header.Get("Content-Length")
		}
		size, serr := strconv.ParseInt(sizeText, 10, 64)
		switch {
		case m.etag == "" || CheckFileName(m.etag) != nil || strings.Contains(m.etag, "/"):
			return fileMeta{}, newError(ErrProtocol, nil, "%s: %s sent no usable ETag for %s (got %q)", ref, c.Endpoint, name, m.etag)
		case m.commit != commit:
			return fileMeta{}, newError(ErrProtocol, nil, "%s: %s answered for commit %q when asked for %s of commit %s", ref, c.Endpoint, m.commit, name, commit)
		case serr != nil || size < 0:
			return fileMeta{}, newError(ErrProtocol, serr, "%s: %s sent no size for %s", ref, c.Endpoint, name)
		}
		m.size = size
		return m, nil
	}
}

// normalizeETag strips the quotes (and a weak validator's W/) an ETag
// header carries, leaving the hash that names the blob.
func normalizeETag(h string) string {
	return strings.Trim(strings.TrimPrefix(strings.TrimSpace(h), "W/"), `"`)
}

func (c *Client) resolveURL(repo, commit, name string) string {
	segs := strings.Split(name, "/")
	for i, s := range segs {
		segs[i] = url.PathEscape(s)
	}
	return fmt.Sprintf("%s/%s/resolve/%s/%s", c.Endpoint, repo, url.PathEscape(commit), strings.Join(segs, "/"))
}

// request builds a request; the token goes only to the Hub's own host,
// never to the storage host a download is redirected to (its URL is
// already signed).
func (c *Client) request(ctx context.Context, method, u string) (*http.Request, error) {
	req, err := http.NewRequestWithContext(ctx, method, u, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("User-Agent", "whet")
	if c.Token != "" && sameHost(u, c.Endpoint) {
		req.Header.Set("Authorization", "Bearer "+c.Token)
	}
	return req, nil
}

func sameHost(a, b string) bool {
	ua, err1 := url.Parse(a)
	ub, err2 := url.Parse(b)
	return err1 == nil && err2 == nil && strings.EqualFold(ua.Host, ub.Host)
}

// statusError turns an error answer into an *Error that says what to do,
// reading the X-Error-Code and X-Error-Message headers the Hub sends.
func (c *Client) statusError(resp *http.Response, ref Ref, file string) error {
	code := resp.Header.Get("X-Error-Code")
	msg := resp.Header.Get("X-Error-Message")
	what := ref.String()
	if file != "" {
		what += " " + file
	}
	repoPage := c.Endpoint + "/" + ref.Repo
	switch {
	case code == "GatedRepo":
		if c.Token == "" {
			return newError(ErrGated, nil, "%s is gated: accept its licence at %s (logged in), then give whet a token with read access: export HF_TOKEN=hf_..., or save it in %s ('hf auth login' does)", ref.Repo, repoPage, c.TokenPath)
		}
		return newError(ErrGated, nil, "%s is gated and the token from %s has no access to it yet: accept its licence at %s with the account the token belongs to (some authors approve requests by hand)", ref.Repo, c.TokenSource, repoPage)
	case strings.Contains(msg, "Invalid credentials") || resp.StatusCode == http.StatusUnauthorized && c.Token != "" && code == "":
		return newError(ErrBadToken, nil, "%s refused the token from %s (invalid, expired or revoked): make a new one at %s/settings/tokens and set HF_TOKEN or update %s", c.Endpoint, c.TokenSource, c.Endpoint, c.TokenPath)
	case code == "RevisionNotFound":
		return newError(ErrRevisionNotFound, nil, "%s has no branch, tag or commit %q on %s", ref.Repo, ref.Revision, c.Endpoint)
	case code == "RepoNotFound" || resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusNotFound && file == "":
		hint := ""
		if c.Token == "" {
			hint = fmt.Sprintf(" (if it is private, give a token: export HF_TOKEN=hf_... or save it in %s)", c.TokenPath)
		}
		return newError(ErrRepoNotFound, nil, "no model repository %s on %s%s", ref.Repo, c.Endpoint, hint)
	case code == "EntryNotFound" || resp.StatusCode == http.StatusNotFound:
		return newError(ErrProtocol, nil, "%s: %s lists %s but does not serve it", ref, c.Endpoint, file)
	case resp.StatusCode == http.StatusForbidden:
		return newError(ErrBadToken, nil, "%s: %s denied access (%s): check that the token from %s has read access", what, c.Endpoint, orStatus(msg, resp), c.TokenSource)
	}
	return newError(ErrProtocol, nil, "%s: %s answered %s", what, c.Endpoint, orStatus(msg, resp))
}

func orStatus(msg string, resp *http.Response) string {
	if msg != "" {
		return resp.Status + ": " + msg
	}
	return resp.Status
}

// retryable answers are the ones huggingface_hub retries: rate limits and
// server errors.
func retryable(status int) bool {
	return status == http.StatusTooManyRequests || status == http.StatusRequestTimeout || status >= 500
}

// unreachable reports a failure to reach the host at all (no route, no
// DNS, connection refused), which retrying at once does not fix; the pull
// then offers the cache instead.
func unreachable(err error) bool {
	var dns *net.DNSError
	var op *net.OpError
	return errors.As(err, &dns) || errors.Is(err, syscall.ECONNREFUSED) ||
		errors.As(err, &op) && op.Op == "dial"
}

// send runs the request mk builds, again after a backoff when the answer
// is a rate limit or a server error or the connection dropped, at most
// Retries times. It returns the last answer, whatever its status.
func (c *Client) send(ctx context.Context, hc *http.Client, mk func() (*http.Request, error)) (*http.Response, error) {
	wait := c.backoff()
	for attempt := 0; ; attempt++ {
		req, err := mk()
		if err != nil {
			return nil, err
		}
		resp, err := hc.Do(req)
		if err == nil && (!retryable(resp.StatusCode) || attempt >= c.retries()) {
			return resp, nil
		}
		if err != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			if unreachable(err) || attempt >= c.retries() {
				return nil, err
			}
		} else {
			if ra, perr := strconv.Atoi(resp.Header.Get("Retry-After")); perr == nil && ra >= 0 {
				wait = max(wait, min(time.Duration(ra)*time.Second, c.maxBackoff()))
			}
			io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<16))
			resp.Body.Close()
		}
		if err := sleep(ctx, wait); err != nil {
			return nil, err
		}
		wait = min(2*wait, c.maxBackoff())
	}
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
