package units

import (
	"fmt"
	"math"
	"strconv"
	"strings"
)

// byteSuffixes are the units ParseBytes accepts, lower-cased: decimal
// (GB = 10^9, as card vendors count) and binary (GiB = 2^30, as Bytes
// prints and nvidia-smi counts). A bare letter ("80G") is refused: it is
// read both ways by different tools, and a cap off by 7 % defeats the
// point of emulating a card.
var byteSuffixes = map[string]float64{
	"b":  1,
	"kb": 1e3, "mb": 1e6, "gb": 1e9, "tb": 1e12,
	"kib": 1 << 10, "mib": 1 << 20, "gib": 1 << 30, "tib": 1 << 40,
}

// ParseBytes reads a byte size: a whole number of bytes ("85899345920"),
// or a number with a unit ("80GB", "79.6 GiB", "81559MiB"), units without
// case. The result is rounded down to a whole byte.
func ParseBytes(s string) (int64, error) {
	t := strings.TrimSpace(s)
	if t == "" {
		return 0, fmt.Errorf("empty size (want e.g. 80GB or 24GiB)")
	}
	if strings.HasPrefix(t, "-") {
		return 0, fmt.Errorf("size %q is negative", s)
	}
	i := strings.IndexFunc(t, func(r rune) bool { return (r < '0' || r > '9') && r != '.' })
	num, unit := t, ""
	if i >= 0 {
		num, unit = t[:i], strings.ToLower(strings.TrimSpace(t[i:]))
	}
	if num == "" {
		return 0, fmt.Errorf("size %q does not start with a number (want e.g. 80GB or 24GiB)", s)
	}
	mult := 1.0
	if unit != "" {
		m, ok := byteSuffixes[unit]
		if !ok {
			return 0, fmt.Errorf("size %q: unknown unit %q (use B, KB, MB, GB, TB for powers of 1000 or KiB, MiB, GiB, TiB for powers of 1024)", s, t[i:])
		}
		mult = m
	}
	if unit == "" || unit == "b" {
		// Bytes are whole: ParseInt refuses "1.5".
		n, err := strconv.ParseInt(num, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("size %q: want a whole number of bytes or a number with a unit such as GB or GiB", s)
		}
		return n, nil
	}
	v, err := strconv.ParseFloat(num, 64)
	if err != nil {
		return 0, fmt.Errorf("size %q: %q is not a number", s, num)
	}
	b := math.Floor(v * mult)
	if b >= math.MaxInt64 {
		return 0, fmt.Errorf("size %q is too large", s)
	}
	return int64(b), nil
}
