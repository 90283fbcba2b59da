//go:build !unix

package hub

import (
	"context"
	"errors"
	"sync"
)

// Without flock the lock holds within this process only.
var locks sync.Map

func fileLock(ctx context.Context, path string) (func(), error) {
	v, _ := locks.LoadOrStore(path, make(chan struct{}, 1))
	ch := v.(chan struct{})
	select {
	case ch <- struct{}{}:
		return func() { <-ch }, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func freeBytes(string) (int64, error) {
	return 0, errors.New("free space is not known on this system")
}
