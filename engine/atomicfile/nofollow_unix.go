//go:build unix

package atomicfile

import "syscall"

// NoFollow makes an open fail on a symlink instead of following it.
const NoFollow = syscall.O_NOFOLLOW
