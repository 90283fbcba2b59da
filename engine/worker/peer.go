package worker

import "fmt"

// PeerCred is who is on the other end of a control connection, as the
// kernel reports it (SO_PEERCRED).
type PeerCred struct {
	PID, UID, GID int
}

// CheckPeer refuses a peer that is not the worker's own user: the socket
// steers the run, and its mode (0600) is the first guard, this the second
// (a mode can be loosened by hand; the kernel's word on the peer cannot).
func CheckPeer(peer PeerCred, ownUID int) error {
	if peer.UID != ownUID {
		return fmt.Errorf("control socket: connection from uid %d (pid %d) refused: only uid %d may steer this run", peer.UID, peer.PID, ownUID)
	}
	return nil
}
