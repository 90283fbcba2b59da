//go:build !unix

package engine

import "fmt"

// RunLock is the hold a training process has on its run folder.
type RunLock struct{}

// Acquire refuses: run folders are locked with flock(2), which only Unix
// systems have, and training unlocked could let two runs write one folder.
func (d RunDir) Acquire() (*RunLock, error) {
	return nil, fmt.Errorf("lock run folder %s: run folder locks need a Unix system", d.Path())
}

// Release does nothing: no lock is ever held here.
func (l *RunLock) Release() error { return nil }

// Holder cannot tell here: known is false.
func (d RunDir) Holder() (pid int, held, known bool, err error) { return 0, false, false, nil }
