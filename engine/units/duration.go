package units

import (
	"fmt"
	"time"
)

// Duration prints a span of time compactly, the one way the studio and the
// CLI show elapsed times, ETAs and silences: to the second under an hour
// ("0m05s", "3m05s", "59m59s") and to the minute from an hour on ("1h02m",
// "50h00m"), each shown digit rounded, never truncated. A negative span
// prints with a minus sign; callers that mean "unknown" say so themselves
// (the hub's "–"), since zero is a real answer ("0m00s" elapsed).
func Duration(d time.Duration) string {
	sign := ""
	if d < 0 {
		sign, d = "-", -d
	}
	if r := d.Round(time.Second); r < time.Hour {
		s := int64(r / time.Second)
		return fmt.Sprintf("%s%dm%02ds", sign, s/60, s%60)
	}
	m := int64(d.Round(time.Minute) / time.Minute)
	return fmt.Sprintf("%s%dh%02dm", sign, m/60, m%60)
}

// Approx prints a rough estimate in words, for messages that say how long
// something would take before it is run: "3.2 hours", "14 minutes",
// "5 days"; under a minute, to the second ("42s").
func Approx(d time.Duration) string {
	switch {
	case d >= 48*time.Hour:
		return fmt.Sprintf("%.0f days", d.Hours()/24)
	case d >= time.Hour:
		return fmt.Sprintf("%.1f hours", d.Hours())
	case d >= time.Minute:
		return fmt.Sprintf("%.0f minutes", d.Minutes())
	}
	return d.Round(time.Second).String()
}

// ETA prints a time left as Duration does, and "–" while it is unknown
// (zero or negative: nothing measured yet), the mark the studio uses for
// every quantity not yet measured.
func ETA(d time.Duration) string {
	if d <= 0 {
		return "–"
	}
	return Duration(d)
}
