//go:build linux

package worker

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"whet/engine"
)

// dialAsEnv makes the test binary a peer that dials the socket it names,
// sends a stop and prints what it was answered (TestHelperPeer).
const dialAsEnv = "WHET_WORKER_TEST_DIAL"

// TestHelperPeer is the other user's side of TestOtherUserIsRefused; it
// does nothing in a normal run.
func TestHelperPeer(t *testing.T) {
	path := os.Getenv(dialAsEnv)
	if path == "" {
		t.Skip("helper process for TestOtherUserIsRefused")
	}
	c, err := net.Dial("unix", path)
	if err != nil {
		fmt.Println("dial:", err)
		return
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	io.WriteString(c, `{"cmd":"stop"}`+"\n")
	line, err := bufio.NewReader(c).ReadString('\n')
	fmt.Printf("reply: %q %v\n", line, err)
}

// Another user cannot steer the run: the socket's mode (0600) keeps them
// from connecting, and with the mode loosened by hand the kernel's word
// on the peer (SO_PEERCRED) refuses them; the run never gets their stop.
// It runs the peer as uid 65534, which needs root.
func TestOtherUserIsRefused(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("running a peer as another user needs root")
	}
	// Folders the other user may walk, so only the socket's own mode and
	// the peer check stand in the way.
	dir, err := os.MkdirTemp("", "wp")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	rd := engine.RunDir(filepath.Join(dir, "run"))
	os.Mkdir(rd.Path(), 0o755)
	os.Chmod(dir, 0o755)
	exe := filepath.Join(dir, "peer.test")
	self, err := os.ReadFile(os.Args[0])
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(exe, self, 0o755); err != nil {
		t.Fatal(err)
	}
	ctl := &fakeControl{}
	s, err := Listen(rd, ctl)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	peer := func() string {
		cmd := exec.Command(exe, "-test.run=^TestHelperPeer$", "-test.v")
		cmd.Env = append(os.Environ(), dialAsEnv+"="+Socket(rd))
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("peer as uid 65534: %v\n%s", err, out)
		}
		return string(out)
	}
	if out := peer(); !strings.Contains(out, "dial:") || !strings.Contains(out, "permission denied") {
		t.Errorf("another user connected to the 0600 socket:\n%s", out)
	}
	if err := os.Chmod(Socket(rd), 0o666); err != nil {
		t.Fatal(err)
	}
	out := peer()
	if !strings.Contains(out, "reply:") || !strings.Contains(out, "uid 65534") || !strings.Contains(out, "refused") {
		t.Errorf("another user through a loosened socket was not refused by uid:\n%s", out)
	}
	s.mu.Lock()
	refused := s.refused
	s.mu.Unlock()
	if refused != 1 {
		t.Errorf("%d connections refused, want 1", refused)
	}
	if ctl.got() != "" {
		t.Errorf("the other user's %q reached the run", ctl.got())
	}
}
