//go:build !linux

package worker

import (
	"errors"
	"net"
)

// peerCred is not implemented off Linux: every connection is refused
// rather than trusted on the socket's mode alone.
func peerCred(c *net.UnixConn) (PeerCred, error) {
	return PeerCred{}, errors.New("control socket: peer credentials are only checked on Linux; connection refused")
}
