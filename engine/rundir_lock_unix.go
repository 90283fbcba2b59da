//go:build unix

package engine

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"whet/engine/atomicfile"
)

// RunLock is the hold a training process has on its run folder. The lock
// is flock(2) on the folder's lock file: the kernel drops it when the
// process exits, however it exits, so a killed run never leaves a lock
// that blocks the next one. The file only tells others whose lock it is.
type RunLock struct {
	f *os.File
}

// Acquire takes the run folder's lock, or says which process holds it.
func (d RunDir) Acquire() (*RunLock, error) {
	path := d.LockFile()
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|atomicfile.NoFollow, atomicfile.Perm)
	if err != nil {
		return nil, fmt.Errorf("lock run folder %s: %w", d.Path(), err)
	}
	err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
	// A Holder probe (whet runs) holds a shared lock for an instant; a
	// few short retries keep it from refusing a run that starts then.
	for try := 0; errors.Is(err, syscall.EWOULDBLOCK) && try < probeRetries; try++ {
		time.Sleep(probeRetryWait)
		err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
	}
	if err != nil {
		holder := make([]byte, 32)
		n, _ := f.ReadAt(holder, 0)
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			who := "another process"
			if pid, perr := strconv.Atoi(strings.TrimSpace(string(holder[:n]))); perr == nil {
				who = "process " + strconv.Itoa(pid)
			}
			return nil, fmt.Errorf("run folder %s is in use by %s (a run is training there); stop it first, or give this run another name", d.Path(), who)
		}
		return nil, fmt.Errorf("lock run folder %s: %w", d.Path(), err)
	}
	// Ours now: whatever pid a dead holder left is replaced.
	if err := f.Truncate(0); err == nil {
		_, err = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("lock run folder %s: write %s: %w", d.Path(), path, err)
	}
	return &RunLock{f: f}, nil
}

// probeRetries × probeRetryWait is how long Acquire waits out a Holder
// probe: far longer than a probe holds its lock, far shorter than a
// start.
const (
	probeRetries   = 5
	probeRetryWait = 10 * time.Millisecond
)

// Holder says whether a process trains in the folder now, and its pid
// (0 if unknown). A folder without a lock file has never been locked:
// known is false. It takes a shared lock for an instant to find out.
func (d RunDir) Holder() (pid int, held, known bool, err error) {
	f, err := os.OpenFile(d.LockFile(), os.O_RDONLY|atomicfile.NoFollow, 0)
	if errors.Is(err, os.ErrNotExist) {
		return 0, false, false, nil
	}
	if err != nil {
		return 0, false, false, atomicfile.RefusedLink(d.LockFile(), err)
	}
	defer f.Close()
	err = syscall.Flock(int(f.Fd()), syscall.LOCK_SH|syscall.LOCK_NB)
	if err == nil {
		return 0, false, true, nil // closing drops the shared lock
	}
	if !errors.Is(err, syscall.EWOULDBLOCK) {
		return 0, false, false, fmt.Errorf("probe %s: %w", d.LockFile(), err)
	}
	b := make([]byte, 32)
	n, _ := f.ReadAt(b, 0)
	pid, _ = strconv.Atoi(strings.TrimSpace(string(b[:n])))
	return pid, true, true, nil
}

// Release lets another process train in the folder. The lock file stays:
// removing it would let a process that had just opened it lock a file
// no one else can see.
func (l *RunLock) Release() error {
	if l == nil || l.f == nil {
		return nil
	}
	err := l.f.Close() // closing the last descriptor drops the flock
	l.f = nil
	return err
}
