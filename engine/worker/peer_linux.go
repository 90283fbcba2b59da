//go:build linux

package worker

import (
	"fmt"
	"net"
	"syscall"
)

// peerCred asks the kernel who connected.
func peerCred(c *net.UnixConn) (PeerCred, error) {
	raw, err := c.SyscallConn()
	if err != nil {
		return PeerCred{}, fmt.Errorf("control socket: peer credentials: %w", err)
	}
	var cred *syscall.Ucred
	var credErr error
	if err := raw.Control(func(fd uintptr) {
		cred, credErr = syscall.GetsockoptUcred(int(fd), syscall.SOL_SOCKET, syscall.SO_PEERCRED)
	}); err != nil {
		return PeerCred{}, fmt.Errorf("control socket: peer credentials: %w", err)
	}
	if credErr != nil {
		return PeerCred{}, fmt.Errorf("control socket: peer credentials: %w", credErr)
	}
	return PeerCred{PID: int(cred.Pid), UID: int(cred.Uid), GID: int(cred.Gid)}, nil
}
