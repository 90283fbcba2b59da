package main

import (
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestAuthorizedKeysParseOptions(t *testing.T) {
	for _, c := range []struct {
		in   string
		want []keyOption
	}{
		{`no-pty`, []keyOption{{Name: "no-pty"}}},
		{`RESTRICT,Pty`, []keyOption{{Name: "restrict"}, {Name: "pty"}}},
		{`from="10.0.0.0/8,!10.1.2.3",no-pty`, []keyOption{{Name: "from", Value: "10.0.0.0/8,!10.1.2.3", HasValue: true}, {Name: "no-pty"}}},
		{`command="echo \"a, b\" c",restrict`, []keyOption{{Name: "command", Value: `echo "a, b" c`, HasValue: true}, {Name: "restrict"}}},
		{`command="a\b\\ x"`, []keyOption{{Name: "command", Value: `a\b\\ x`, HasValue: true}}},
		{`environment=""`, []keyOption{{Name: "environment", Value: "", HasValue: true}}},
		{`expiry-time="20261231"`, []keyOption{{Name: "expiry-time", Value: "20261231", HasValue: true}}},
	} {
		got, err := parseKeyOptions(c.in)
		if err != nil || !reflect.DeepEqual(got, c.want) {
			t.Errorf("parseKeyOptions(%s) = %+v, %v; want %+v", c.in, got, err, c.want)
		}
	}
	for _, in := range []string{``, `,`, `no-pty,`, `,no-pty`, `a,,b`, `from=10.0.0.1`, `from="10.0.0.1`, `from="a"b`, `from="a" ,b`, `no pty`, `no"pty"`, `=x`, `command="\"`, `command="a\b\\"`} {
		if got, err := parseKeyOptions(in); err == nil {
			t.Errorf("parseKeyOptions(%s) = %+v, want an error", in, got)
		}
	}
	field, rest, err := optionsField(`command="echo \"x y\"",no-pty ssh-ed25519 AAAA c`)
	if err != nil || field != `command="echo \"x y\"",no-pty` || rest != "ssh-ed25519 AAAA c" {
		t.Errorf("optionsField = %q, %q, %v", field, rest, err)
	}
	if _, _, err := optionsField(`command="x ssh-ed25519 AAAA`); err == nil {
		t.Errorf("optionsField with an open quote: no error")
	}
}

func TestAuthorizedKeysFromMatch(t *testing.T) {
	for _, c := range []struct {
		list, ip string
		want     bool
	}{
		{"127.0.0.1", "127.0.0.1", true},
		{"127.0.0.2", "127.0.0.1", false},
		{"127.0.0.0/8", "127.0.0.1", true},
		{"10.0.0.0/8", "127.0.0.1", false},
		{"10.0.0.0/8", "10.200.3.4", true},
		{"10.0.0.0/8,192.168.1.0/24", "192.168.1.77", true},
		{"192.168.1.0/24", "192.168.2.1", false},
		{"0.0.0.0/0", "203.0.113.9", true},
		{"127.0.0.*", "127.0.0.1", true},
		{"127.0.0.?", "127.0.0.1", true},
		{"127.0.0.?", "127.0.0.10", false},
		{"10.*", "127.0.0.1", false},
		{"*", "127.0.0.1", true},
		{"*.example.com", "127.0.0.1", false},
		{"*,!127.0.0.1", "127.0.0.1", false},
		{"!127.0.0.1,*", "127.0.0.1", false},
		{"!127.0.0.0/8,*", "127.0.0.1", false},
		{"!10.0.0.0/8,127.0.0.0/8", "127.0.0.1", true},
		{"!10.0.0.0/8", "127.0.0.1", false}, // no positive match
		{"!127.0.0.*", "127.0.0.1", false},
		{"::1", "::1", true},
		{"::1", "127.0.0.1", false},
		{"2001:db8::/32", "2001:db8:1::5", true},
		{"2001:DB8::/32", "2001:db9::5", false},
		{"2001:db8:*", "2001:db8:0:1::5", true},
		{"2001:DB8:*", "2001:db8:0:1::5", true},
		{"*,!2001:db8::/48", "2001:db8::1", false},
		{"fe80::/10", "fe80::1", true},
		{"127.0.0.0/8", "::ffff:127.0.0.1", true}, // IPv4-mapped: seen as IPv4
		{"0.0.0.0/0", "::1", false},
		{"::/0", "127.0.0.1", false},
	} {
		got, err := matchFrom(c.list, netip.MustParseAddr(c.ip))
		if err != nil || got != c.want {
			t.Errorf("matchFrom(%q, %s) = %v, %v; want %v", c.list, c.ip, got, err, c.want)
		}
	}
	for _, list := range []string{"", ",", "127.0.0.1,", "!", "10.0.0.1/8", "2001:db8::1/32"} {
		if got, err := matchFrom(list, netip.MustParseAddr("127.0.0.1")); err == nil || got {
			t.Errorf("matchFrom(%q) = %v, %v; want an error", list, got, err)
		}
	}
	// A bad mask length is not an address/masklen: a wildcard pattern that
	// matches no address.
	if got, err := matchFrom("127.0.0.1/33", netip.MustParseAddr("127.0.0.1")); err != nil || got {
		t.Errorf("matchFrom(127.0.0.1/33) = %v, %v; want false", got, err)
	}
}

func TestAuthorizedKeysExpiryTime(t *testing.T) {
	for in, want := range map[string]time.Time{
		"20261207":        time.Date(2026, 12, 7, 0, 0, 0, 0, time.UTC),
		"202612071530":    time.Date(2026, 12, 7, 15, 30, 0, 0, time.UTC),
		"20261207153045":  time.Date(2026, 12, 7, 15, 30, 45, 0, time.UTC),
		"20261207153045Z": time.Date(2026, 12, 7, 15, 30, 45, 0, time.UTC),
	} {
		got, err := parseExpiryTime(in, time.UTC)
		if err != nil || !got.Equal(want) {
			t.Errorf("parseExpiryTime(%s) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "2026120", "202612071", "2026-12-07", "20261332", "+0261207", "20261207153060"} {
		if got, err := parseExpiryTime(in, time.UTC); err == nil {
			t.Errorf("parseExpiryTime(%q) = %v, want an error", in, got)
		}
	}
	a := authorizedKey{expiry: time.Date(2026, 12, 7, 15, 30, 0, 0, time.UTC)}
	addr := &net.TCPAddr{IP: net.ParseIP("127.0.0.1"), Port: 5}
	if !a.permits(addr, a.expiry) || a.permits(addr, a.expiry.Add(time.Second)) {
		t.Errorf("expiry-time: want allowed at the time, denied a second after")
	}
}

// Each line with an option whet serve cannot enforce is named with its
// file, line and option and not accepted; from= and expiry-time= lines
// are kept with their limits; the no-* restrictions of features whet
// serve never offers are accepted, no-pty (and restrict without a pty
// after it) is not.
func TestAuthorizedKeysOptions(t *testing.T) {
	const pub = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIIxGTsgbnP/DMQWZvNwJDCPcfk1KETr9MqFT2215Ob7B you@host"
	lines := []string{
		`from="127.0.0.0/8,!127.0.0.2" ` + pub,
		`command="echo \"hi, there\"" ` + pub,
		`no-pty ` + pub,
		`restrict,pty ` + pub,
		`expiry-time="20991231",FROM="::1" ` + pub,
		`from="10.0.0.1/8" ` + pub,
		`expiry-time="tomorrow" ` + pub,
		`Cert-Authority ` + pub,
		`permitopen="host:22" ` + pub,
		`from=10.0.0.1 ` + pub,
		pub,
		`no-port-forwarding,No-Agent-Forwarding,no-X11-forwarding,no-user-rc ` + pub,
		`restrict ` + pub,
		`pty,restrict ` + pub,
		`restrict,pty,port-forwarding ` + pub,
		`no-pty,pty,no-X11-forwarding ` + pub,
	}
	path := filepath.Join(t.TempDir(), "authorized_keys")
	if err := os.WriteFile(path, []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	keys, skipped, err := readAuthorizedKeys(path)
	if err != nil {
		t.Fatal(err)
	}
	var got []int
	for _, k := range keys {
		got = append(got, k.line)
	}
	if !reflect.DeepEqual(got, []int{1, 4, 5, 11, 12, 16}) {
		t.Errorf("accepted lines %v, want [1 4 5 11 12 16]", got)
	}
	want := []string{
		path + " line 2: whet serve cannot enforce command=; this key is not accepted",
		path + " line 3: no-pty takes away the pty the studio (a terminal program) needs; this key is not accepted",
		path + ` line 6: from="10.0.0.1/8": 10.0.0.1/8: address has bits set past the mask length; this key is not accepted`,
		path + ` line 7: expiry-time="tomorrow": want YYYYMMDD, YYYYMMDDHHMM or YYYYMMDDHHMMSS (digits only); this key is not accepted`,
		path + " line 8: whet serve cannot enforce cert-authority; this key is not accepted",
		path + " line 9: whet serve cannot enforce permitopen=; this key is not accepted",
		path + " line 10: options: the value of from= must be in double quotes (column 6); this key is not accepted",
		path + " line 13: restrict without a pty option after it takes away the pty the studio (a terminal program) needs (restrict,pty is accepted); this key is not accepted",
		path + " line 14: restrict without a pty option after it takes away the pty the studio (a terminal program) needs (restrict,pty is accepted); this key is not accepted",
		path + " line 15: whet serve cannot enforce port-forwarding; this key is not accepted",
	}
	if !reflect.DeepEqual(skipped, want) {
		t.Errorf("skipped:\n%s\nwant:\n%s", strings.Join(skipped, "\n"), strings.Join(want, "\n"))
	}
	at := func(ip string) net.Addr { return &net.TCPAddr{IP: net.ParseIP(ip), Port: 40000} }
	now := time.Now()
	if len(keys) == 6 {
		if !keys[0].permits(at("127.0.0.1"), now) || keys[0].permits(at("127.0.0.2"), now) || keys[0].permits(at("10.0.0.1"), now) {
			t.Errorf("line 1's from= not applied: %+v", keys[0])
		}
		if !keys[2].permits(at("::1"), now) || keys[2].permits(at("127.0.0.1"), now) || keys[2].permits(at("::1"), time.Date(2100, 1, 1, 0, 0, 0, 0, time.UTC)) {
			t.Errorf("line 5's from= and expiry-time= not applied: %+v", keys[2])
		}
		if !keys[3].permits(at("203.0.113.1"), now) || !keys[4].permits(at("203.0.113.1"), now) || keys[0].permits(nil, now) {
			t.Errorf("a line with no options: from anywhere; a from= line with no client address: denied")
		}
	}
}

// FuzzParseKeyOptions: no input panics; what parses writes back out and
// reads again the same, and names hold no separator.
func FuzzParseKeyOptions(f *testing.F) {
	for _, s := range []string{`no-pty`, `from="10.0.0.0/8,!10.1.2.3",no-pty`, `command="echo \"a, b\" c",restrict`, `command="a\b\\"`, `x=""`, `a,,b`, `from="x`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		opts, err := parseKeyOptions(s)
		if field, _, ferr := optionsField(s + " ssh-ed25519 AAAA"); err == nil && (ferr != nil || field != s) {
			t.Fatalf("optionsField(%q) = %q, %v; but the whole parsed as options", s, field, ferr)
		}
		if err != nil {
			return
		}
		var parts []string
		for _, o := range opts {
			if o.Name == "" || strings.ContainsAny(o.Name, "=,\" \t\\") || o.Name != asciiLower(o.Name) {
				t.Fatalf("option name %q from %q", o.Name, s)
			}
			if o.HasValue {
				if strings.HasSuffix(o.Value, `\`) {
					continue // a value ending in \ cannot be written back before its quote
				}
				parts = append(parts, o.Name+`="`+strings.ReplaceAll(o.Value, `"`, `\"`)+`"`)
			} else {
				parts = append(parts, o.Name)
			}
		}
		if len(parts) != len(opts) {
			return
		}
		again, err := parseKeyOptions(strings.Join(parts, ","))
		if err != nil || !reflect.DeepEqual(again, opts) {
			t.Fatalf("%q -> %+v; written back %q -> %+v, %v", s, opts, strings.Join(parts, ","), again, err)
		}
	})
}

// FuzzMatchFrom: no pattern list panics, and an error never allows.
func FuzzMatchFrom(f *testing.F) {
	for _, s := range []string{"127.0.0.0/8", "!10.0.0.0/8,*", "2001:db8::/32", "10.0.0.1/8", "", "*.?", "::ffff:1.2.3.4/128"} {
		f.Add(s, "127.0.0.1")
		f.Add(s, "2001:db8::1")
	}
	f.Fuzz(func(t *testing.T, list, ip string) {
		a, err := netip.ParseAddr(ip)
		if err != nil {
			return
		}
		ok, err := matchFrom(list, a)
		if err != nil && ok {
			t.Fatalf("matchFrom(%q, %s): allowed with an error %v", list, ip, err)
		}
		if ok && strings.HasPrefix(list, "!") && !strings.Contains(list, ",") {
			t.Fatalf("matchFrom(%q, %s): a single negated pattern allowed", list, ip)
		}
	})
}
