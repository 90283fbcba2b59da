package hub

import (
	"errors"
	"fmt"
)

// The kinds of failure a pull reports. Every error a Client returns
// for one of them wraps the kind, so callers test with errors.Is and show
// Error(), which already says what to do.
var (
	ErrGated            = errors.New("gated repository")
	ErrBadToken         = errors.New("token refused")
	ErrRepoNotFound     = errors.New("repository not found")
	ErrRevisionNotFound = errors.New("revision not found")
	ErrNetwork          = errors.New("hub unreachable")
	ErrNotCached        = errors.New("not in the cache")
	ErrNoSpace          = errors.New("not enough disk space")
	ErrCacheNotWritable = errors.New("cache not writable")
	ErrChecksum         = errors.New("checksum mismatch")
	ErrUnsafeName       = errors.New("unsafe file name from the server")
	ErrProtocol         = errors.New("unexpected answer from the hub")
)

// Error is a failed pull: Kind is one of the Err values above, Msg the
// whole sentence for the user.
type Error struct {
	Kind error
	Msg  string
	// Cached is the snapshot already in the cache for the same repo and
	// revision, when the Hub could not be reached but an earlier pull (by
	// whet or by huggingface_hub) left one; nil otherwise.
	Cached *Snapshot
	// Partial is what an unfinished earlier pull of the revision left in
	// the cache, when the Hub could not be reached (or HF_HUB_OFFLINE is
	// set) and the revision is not there whole; nil otherwise.
	Partial *PartialPull
	Err     error // the underlying cause, if any
}

func (e *Error) Error() string { return e.Msg }

// Unwrap lets errors.Is match both the kind and the cause.
func (e *Error) Unwrap() []error {
	if e.Err == nil {
		return []error{e.Kind}
	}
	return []error{e.Kind, e.Err}
}

func newError(kind error, cause error, format string, args ...any) *Error {
	return &Error{Kind: kind, Msg: fmt.Sprintf(format, args...), Err: cause}
}
