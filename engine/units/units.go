// Package units formats byte sizes and counts for people, the one way the
// CLI, the studio and the engine's messages show them: binary units for
// bytes ("14.9 GiB", as nvidia-smi users read memory) and decimal suffixes
// for counts ("8.03B" parameters, "1.23M" tokens), both with three
// significant digits; and spans of time ("3m05s", "1h02m", duration.go).
package units

import (
	"fmt"
	"math"
)

// Bytes prints a byte count in binary units with three significant digits:
// "512 B", "1.50 KiB", "80.0 MiB", "14.9 GiB", "141 GiB".
func Bytes(n int64) string {
	v, unit := scaleBytes(n)
	if unit == "B" {
		return fmt.Sprintf("%d B", n)
	}
	return threeDigits(v) + " " + unit
}

// BytesOf prints used of total in the unit of the total, compactly for
// gauges: whole units when the total has two digits or more ("21/80 GiB",
// "96/141 GiB"), one decimal below that ("3.2/8.0 GiB").
func BytesOf(used, total int64) string {
	t, unit := scaleBytes(total)
	if unit == "B" {
		return fmt.Sprintf("%d/%d B", used, total)
	}
	u := float64(used) / (float64(total) / t)
	if math.Abs(t) >= 9.95 {
		return fmt.Sprintf("%.0f/%.0f %s", u, t, unit)
	}
	return fmt.Sprintf("%.1f/%.1f %s", u, t, unit)
}

var byteUnits = []string{"KiB", "MiB", "GiB", "TiB", "PiB", "EiB"}

// scaleBytes divides n by 1024 until it is under 1024 (by magnitude).
func scaleBytes(n int64) (float64, string) {
	if n < 1024 && n > -1024 {
		return float64(n), "B"
	}
	v := float64(n)
	i := -1
	for math.Abs(v) >= 1024 && i < len(byteUnits)-1 {
		v /= 1024
		i++
	}
	// 1023.9 KiB would print as "1024 KiB": carry into the next unit.
	if math.Abs(v) >= 999.5 && i < len(byteUnits)-1 {
		v /= 1024
		i++
	}
	return v, byteUnits[i]
}

// Count prints a count with three significant digits and a decimal
// suffix: "999", "14.2k", "41.9M", "8.03B", "1.20T".
func Count(n int64) string {
	if n < 1000 && n > -1000 {
		return fmt.Sprintf("%d", n)
	}
	v := float64(n)
	suffixes := "kMBT"
	i := -1
	for math.Abs(v) >= 1000 && i < len(suffixes)-1 {
		v /= 1000
		i++
	}
	if math.Abs(v) >= 999.5 && i < len(suffixes)-1 { // 999,999 is "1.00M", not "1000k"
		v /= 1000
		i++
	}
	return threeDigits(v) + suffixes[i:i+1]
}

// threeDigits prints v (under 1000 by magnitude) with three significant
// digits.
func threeDigits(v float64) string {
	a := math.Abs(v)
	switch {
	case a >= 99.95:
		return fmt.Sprintf("%.0f", v)
	case a >= 9.995:
		return fmt.Sprintf("%.1f", v)
	}
	return fmt.Sprintf("%.2f", v)
}
