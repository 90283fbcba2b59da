package main

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"
	"time"

	"charm.land/ssh"
)

// authorizedKey is one line of an authorized_keys file that whet serve
// accepts: the key and the options it can enforce or that already hold
// (take). A line with any other option is not accepted at all (readAuthorizedKeys), so that a key is
// never granted more than its line says.
type authorizedKey struct {
	key    ssh.PublicKey
	line   int
	from   []string  // from= pattern lists; the client's address must pass each
	expiry time.Time // expiry-time=; zero when the line has none
}

// permits reports whether the line lets a client at addr in at now.
func (a authorizedKey) permits(addr net.Addr, now time.Time) bool {
	if !a.expiry.IsZero() && now.After(a.expiry) {
		return false
	}
	if len(a.from) == 0 {
		return true
	}
	ip, ok := clientIP(addr)
	if !ok {
		return false
	}
	for _, list := range a.from {
		if ok, err := matchFrom(list, ip); err != nil || !ok {
			return false
		}
	}
	return true
}

// clientIP is the address of a TCP client, IPv4-mapped IPv6 addresses
// as IPv4 (as sshd sees them) and without a zone.
func clientIP(addr net.Addr) (netip.Addr, bool) {
	if addr == nil {
		return netip.Addr{}, false
	}
	ap, err := netip.ParseAddrPort(addr.String())
	if err != nil {
		return netip.Addr{}, false
	}
	return ap.Addr().Unmap().WithZone(""), true
}

// readAuthorizedKeys reads an OpenSSH authorized_keys file: the lines
// whet serve accepts, and for each line it does not accept a sentence
// naming the file, the line and why ("FILE line N (why) is not a public
// key and is ignored", "FILE line N: whet serve cannot enforce command=;
// this key is not accepted"). Blank lines and comments are skipped.
func readAuthorizedKeys(path string) (keys []authorizedKey, skipped []string, err error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, err
	}
	for i, line := range strings.Split(string(data), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		where := fmt.Sprintf("%s line %d", path, i+1)
		k, _, rawOpts, _, err := ssh.ParseAuthorizedKey([]byte(line))
		if err != nil {
			skipped = append(skipped, fmt.Sprintf("%s (%v) is not a public key and is ignored", where, err))
			continue
		}
		a := authorizedKey{key: k, line: i + 1}
		if len(rawOpts) > 0 {
			field, _, err := optionsField(line)
			if err != nil {
				skipped = append(skipped, fmt.Sprintf("%s: %v; this key is not accepted", where, err))
				continue
			}
			opts, err := parseKeyOptions(field)
			if err != nil {
				skipped = append(skipped, fmt.Sprintf("%s: %v; this key is not accepted", where, err))
				continue
			}
			if why := a.take(opts); why != "" {
				skipped = append(skipped, fmt.Sprintf("%s: %s; this key is not accepted", where, why))
				continue
			}
		}
		keys = append(keys, a)
	}
	return keys, skipped, nil
}

// take records the options whet serve enforces (from=, expiry-time=) and
// says why the line cannot be accepted when one is any other option.
//
// The no-* restrictions of features whet serve's server never offers
// already hold, so they are accepted (charm.land/ssh v0.4.3 as
// cmd_serve.go configures it, read in its source): no-port-forwarding,
// as the server has no direct-tcpip channel handler and no tcpip-forward
// request handler, and no Local/ReversePortForwardingCallback, so it
// refuses both -L/-W and -R; no-X11-forwarding, as an x11-req falls to
// the session's default case and is answered false; no-agent-forwarding,
// as the server only notes an auth-agent-req and nothing in whet (or
// wish's bubbletea middleware) calls NewAgentListener or
// ForwardAgentConnections, so no agent channel is ever opened to the
// client; no-user-rc, as whet serve runs no shell and no ~/.ssh/rc, only
// the studio in-process. no-pty is not: the studio is a TUI and needs the
// pty, so a key whose pty is taken away is refused. restrict is all of
// these together (port, agent and X11 forwarding, pty, user rc), so it is
// accepted when a pty option after it gives the pty back (restrict,pty),
// the order as sshd reads it. Options that grant or alter behaviour
// (command=, environment=, permitopen=, port-forwarding, ...) are still
// refused.
func (a *authorizedKey) take(opts []keyOption) string {
	noPty := "" // the option that took the pty away, when one did
	for _, o := range opts {
		switch {
		case !o.HasValue && (o.Name == "no-port-forwarding" || o.Name == "no-agent-forwarding" ||
			o.Name == "no-x11-forwarding" || o.Name == "no-user-rc"):
			// Already holds: whet serve offers none of these.
		case !o.HasValue && (o.Name == "no-pty" || o.Name == "restrict"):
			noPty = o.Name
		case !o.HasValue && o.Name == "pty":
			// Every whet serve session gets a pty: this grants nothing more.
			noPty = ""
		case o.Name == "from" && o.HasValue:
			if err := checkFrom(o.Value); err != nil {
				return fmt.Sprintf("from=%q: %v", o.Value, err)
			}
			a.from = append(a.from, o.Value)
		case o.Name == "expiry-time" && o.HasValue:
			t, err := parseExpiryTime(o.Value, time.Local)
			if err != nil {
				return fmt.Sprintf("expiry-time=%q: %v", o.Value, err)
			}
			// Several: the earliest holds, as in sshd.
			if a.expiry.IsZero() || t.Before(a.expiry) {
				a.expiry = t
			}
		default:
			name := o.Name
			if o.HasValue {
				name += "="
			}
			return fmt.Sprintf("whet serve cannot enforce %s", name)
		}
	}
	switch noPty {
	case "no-pty":
		return "no-pty takes away the pty the studio (a terminal program) needs"
	case "restrict":
		return "restrict without a pty option after it takes away the pty the studio (a terminal program) needs (restrict,pty is accepted)"
	}
	return ""
}

// keyOption is one option of an authorized_keys line: a flag (no-pty,
// restrict) or a name with a quoted value (from="10.0.0.0/8").
type keyOption struct {
	Name     string // A-Z lowered, as sshd matches names without case
	Value    string // unquoted, \" read as "
	HasValue bool
}

// optionsField splits an authorized_keys line that starts with options
// into that field and the rest (the key), as sshd skips past it: up to
// the first space or tab outside double quotes, \" not ending a quote.
func optionsField(line string) (field, rest string, err error) {
	quoted := false
	for i := 0; i < len(line); i++ {
		switch c := line[i]; {
		case c == '\\' && i+1 < len(line) && line[i+1] == '"':
			i++
		case c == '"':
			quoted = !quoted
		case !quoted && (c == ' ' || c == '\t'):
			return line[:i], strings.TrimLeft(line[i:], " \t"), nil
		}
	}
	if quoted {
		return "", "", errors.New("options: a double quote is not closed")
	}
	return line, "", nil
}

// parseKeyOptions reads the options field of an authorized_keys line as
// OpenSSH's sshd does: options separated by commas, each a name or
// name="value"; a value may hold commas and spaces, and \" stands for a
// double quote in it.
func parseKeyOptions(field string) ([]keyOption, error) {
	var opts []keyOption
	i := 0
	for {
		start := i
		for i < len(field) && field[i] != '=' && field[i] != ',' {
			if c := field[i]; c == '"' || c == ' ' || c == '\t' || c == '\\' {
				return nil, fmt.Errorf("options: unexpected %q at column %d", c, i+1)
			}
			i++
		}
		if i == start {
			return nil, fmt.Errorf("options: an empty option at column %d", i+1)
		}
		o := keyOption{Name: asciiLower(field[start:i])}
		if i < len(field) && field[i] == '=' {
			i++
			if i == len(field) || field[i] != '"' {
				return nil, fmt.Errorf("options: the value of %s= must be in double quotes (column %d)", o.Name, i+1)
			}
			i++
			var v strings.Builder
			closed := false
			for i < len(field) {
				c := field[i]
				if c == '"' {
					closed = true
					i++
					break
				}
				if c == '\\' && i+1 < len(field) && field[i+1] == '"' {
					i++
					c = '"'
				}
				v.WriteByte(c)
				i++
			}
			if !closed {
				return nil, fmt.Errorf("options: the value of %s= has no closing double quote", o.Name)
			}
			o.Value, o.HasValue = v.String(), true
		}
		opts = append(opts, o)
		if i == len(field) {
			return opts, nil
		}
		if field[i] != ',' {
			return nil, fmt.Errorf("options: unexpected %q after %s at column %d", field[i], o.Name, i+1)
		}
		i++
	}
}

// asciiLower lowers A-Z only, as sshd matches option names.
func asciiLower(s string) string {
	b := []byte(s)
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}

// parseExpiryTime reads expiry-time's YYYYMMDD[HHMM[SS]], in loc (sshd
// reads it in the server's time zone) or UTC with a trailing Z. The key
// is valid up to and including that second.
func parseExpiryTime(s string, loc *time.Location) (time.Time, error) {
	v := s
	if strings.HasSuffix(v, "Z") || strings.HasSuffix(v, "z") {
		v, loc = v[:len(v)-1], time.UTC
	}
	var layout string
	switch len(v) {
	case 8:
		layout = "20060102"
	case 12:
		layout = "200601021504"
	case 14:
		layout = "20060102150405"
	default:
		return time.Time{}, errors.New("want YYYYMMDD, YYYYMMDDHHMM or YYYYMMDDHHMMSS")
	}
	for _, c := range v {
		if c < '0' || c > '9' {
			return time.Time{}, errors.New("want YYYYMMDD, YYYYMMDDHHMM or YYYYMMDDHHMMSS (digits only)")
		}
	}
	t, err := time.ParseInLocation(layout, v, loc)
	if err != nil {
		return time.Time{}, fmt.Errorf("not a date: %w", err)
	}
	return t, nil
}

// checkFrom reports an error in a from= pattern list: an empty pattern,
// or an address/masklen with bits set past the mask (sshd refuses the
// key on either).
func checkFrom(list string) error {
	for _, p := range strings.Split(list, ",") {
		p = strings.TrimPrefix(p, "!")
		if p == "" {
			return errors.New("an empty pattern")
		}
		if _, err := parseCIDR(p); errors.Is(err, errHostBits) {
			return fmt.Errorf("%s: %w", p, err)
		}
	}
	return nil
}

var errHostBits = errors.New("address has bits set past the mask length")

// parseCIDR reads an address or address/masklen pattern; errHostBits
// when the address has bits set past the mask, another error when it is
// not an address (then it is a wildcard pattern).
func parseCIDR(p string) (netip.Prefix, error) {
	addrPart, maskPart, hasMask := strings.Cut(p, "/")
	a, err := netip.ParseAddr(addrPart)
	if err != nil || a.Zone() != "" {
		return netip.Prefix{}, errors.New("not an address")
	}
	bits := a.BitLen()
	if hasMask {
		if maskPart == "" || len(maskPart) > 3 {
			return netip.Prefix{}, errors.New("not a mask length")
		}
		n := 0
		for _, c := range maskPart {
			if c < '0' || c > '9' {
				return netip.Prefix{}, errors.New("not a mask length")
			}
			n = n*10 + int(c-'0')
		}
		if n > a.BitLen() {
			return netip.Prefix{}, errors.New("mask length too long")
		}
		bits = n
	}
	pf := netip.PrefixFrom(a, bits)
	if pf.Masked().Addr() != a {
		return netip.Prefix{}, errHostBits
	}
	return pf, nil
}

// matchFrom matches a client address against a from= pattern list as
// sshd does (UseDNS no, so the host name is the address): patterns are
// separated by commas; each is an address, address/masklen, or a
// wildcard pattern (* any run of characters, ? one) matched against the
// address written out, without case; ! in front negates it. A negated
// pattern that matches denies whatever else matches; otherwise one
// matching pattern allows. An error in the list denies.
func matchFrom(list string, ip netip.Addr) (bool, error) {
	if err := checkFrom(list); err != nil {
		return false, err
	}
	ip = ip.Unmap().WithZone("")
	s := strings.ToLower(ip.String())
	allowed := false
	for _, p := range strings.Split(list, ",") {
		neg := strings.HasPrefix(p, "!")
		if neg {
			p = p[1:]
		}
		var hit bool
		if pf, err := parseCIDR(p); err == nil {
			hit = pf.Contains(ip) || globMatch(strings.ToLower(p), s)
		} else {
			hit = globMatch(strings.ToLower(p), s)
		}
		if hit && neg {
			return false, nil
		}
		allowed = allowed || hit
	}
	return allowed, nil
}

// globMatch matches s against pattern, * matching any run of bytes and
// ? one byte.
func globMatch(pattern, s string) bool {
	p, i := 0, 0
	star, mark := -1, 0
	for i < len(s) {
		switch {
		case p < len(pattern) && (pattern[p] == '?' || pattern[p] == s[i]):
			p++
			i++
		case p < len(pattern) && pattern[p] == '*':
			star, mark = p, i
			p++
		case star >= 0:
			p = star + 1
			mark++
			i = mark
		default:
			return false
		}
	}
	for p < len(pattern) && pattern[p] == '*' {
		p++
	}
	return p == len(pattern)
}
