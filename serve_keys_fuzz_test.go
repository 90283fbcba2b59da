package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"charm.land/ssh"
)

// FuzzReadAuthorizedKeys reads arbitrary authorized_keys files (whet serve
// --authorized-keys). No input panics; every line that is neither blank
// nor a comment is either accepted or named in exactly one sentence that
// starts with the file and its line number; and an accepted line carries
// no option beyond those whet serve enforces or that already hold, as the
// ssh package's own parser splits the options (so a key is never granted
// more than its line says, whichever parser reads the line).
func FuzzReadAuthorizedKeys(f *testing.F) {
	const pub = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIIxGTsgbnP/DMQWZvNwJDCPcfk1KETr9MqFT2215Ob7B you@host"
	for _, s := range []string{
		pub + "\n",
		"# comment\n\n" + `from="127.0.0.0/8,!127.0.0.2" ` + pub + "\n" + `command="echo \"hi, there\"" ` + pub,
		`restrict,pty ` + pub + "\r\n" + `expiry-time="20991231",FROM="::1" ` + pub + "\n",
		`from="10.0.0.1/8" ` + pub + "\n" + `expiry-time="tomorrow" ` + pub + "\n" + `Cert-Authority ` + pub,
		`no-port-forwarding,No-Agent-Forwarding,no-X11-forwarding,no-user-rc ` + pub + "\nnot a key\n",
		`no-pty,pty,expiry-time="202612312359Z" ` + pub + "\n" + `from=10.0.0.1 ` + pub,
	} {
		f.Add(s)
	}
	allowed := map[string]bool{"no-port-forwarding": true, "no-agent-forwarding": true, "no-x11-forwarding": true,
		"no-user-rc": true, "restrict": true, "pty": true, "no-pty": true, "from": true, "expiry-time": true}
	dir := f.TempDir()
	n := 0
	f.Fuzz(func(t *testing.T, content string) {
		n++
		path := filepath.Join(dir, fmt.Sprintf("authorized_keys%d", n))
		if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		defer os.Remove(path)
		keys, skipped, err := readAuthorizedKeys(path)
		if err != nil {
			t.Fatalf("readAuthorizedKeys: %v", err)
		}
		lines := strings.Split(content, "\n")
		var want []int
		for i, l := range lines {
			if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "#") {
				want = append(want, i+1)
			}
		}
		if len(keys)+len(skipped) != len(want) {
			t.Fatalf("%d lines with content, %d accepted and %d skipped", len(want), len(keys), len(skipped))
		}
		seen := map[int]bool{}
		for _, k := range keys {
			if k.line < 1 || k.line > len(lines) || seen[k.line] {
				t.Fatalf("accepted line %d twice or out of the file's %d", k.line, len(lines))
			}
			seen[k.line] = true
			_, _, opts, _, err := ssh.ParseAuthorizedKey([]byte(strings.TrimSpace(lines[k.line-1])))
			if err != nil {
				t.Fatalf("line %d accepted, but the ssh package reads no key there: %v", k.line, err)
			}
			for _, o := range opts {
				name, _, _ := strings.Cut(o, "=")
				if !allowed[strings.ToLower(name)] {
					t.Fatalf("line %d accepted with option %q, which whet serve does not enforce", k.line, o)
				}
			}
		}
		for _, s := range skipped {
			var line int
			if _, err := fmt.Sscanf(strings.TrimPrefix(s, path), " line %d", &line); err != nil || !strings.HasPrefix(s, path+" line ") {
				t.Fatalf("skipped line not named by file and line: %q", s)
			}
			if seen[line] {
				t.Fatalf("line %d both accepted and skipped (or skipped twice): %q", line, s)
			}
			seen[line] = true
		}
		for _, l := range want {
			if !seen[l] {
				t.Fatalf("line %d neither accepted nor skipped", l)
			}
		}
	})
}
