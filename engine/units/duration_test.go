package units

import (
	"testing"
	"time"
)

func TestDuration(t *testing.T) {
	for _, c := range []struct {
		d    time.Duration
		want string
	}{
		{0, "0m00s"},
		{400 * time.Millisecond, "0m00s"},
		{500 * time.Millisecond, "0m01s"},
		{21 * time.Second, "0m21s"},
		{3*time.Minute + 5*time.Second, "3m05s"},
		{59*time.Minute + 59*time.Second, "59m59s"},
		// Under an hour only after rounding to the second does it keep seconds:
		// 59m59.6s is an hour, and "60m00s" would be a second way to write it.
		{time.Hour - 400*time.Millisecond, "1h00m"},
		{time.Hour, "1h00m"},
		{time.Hour + 2*time.Minute + 29*time.Second, "1h02m"},
		{time.Hour + 2*time.Minute + 30*time.Second, "1h03m"}, // rounded, not truncated
		{50 * time.Hour, "50h00m"},
		{-(3*time.Minute + 5*time.Second), "-3m05s"},
		{-2 * time.Hour, "-2h00m"},
	} {
		if got := Duration(c.d); got != c.want {
			t.Errorf("Duration(%v) = %q, want %q", c.d, got, c.want)
		}
	}
}

func TestETA(t *testing.T) {
	for d, want := range map[time.Duration]string{0: "–", -time.Second: "–", 24 * time.Second: "0m24s", 2 * time.Hour: "2h00m"} {
		if got := ETA(d); got != want {
			t.Errorf("ETA(%v) = %q, want %q", d, got, want)
		}
	}
}

func TestApprox(t *testing.T) {
	for d, want := range map[time.Duration]string{
		42 * time.Second: "42s", 1500 * time.Millisecond: "2s", 14 * time.Minute: "14 minutes",
		3*time.Hour + 12*time.Minute: "3.2 hours", 47 * time.Hour: "47.0 hours", 120 * time.Hour: "5 days",
	} {
		if got := Approx(d); got != want {
			t.Errorf("Approx(%v) = %q, want %q", d, got, want)
		}
	}
}

// TestHandDuration: the formats TestOneFormatter flags are the ones the
// tree had before units.Duration (the hub's and whet pull's clocks, the
// dashboard's and whet runs' h/m spans, bench's estimate in words), and
// nothing it must leave alone (ANSI colours, decimal seconds, "%d steps").
func TestHandDuration(t *testing.T) {
	for _, s := range []string{"%d:%02d:%02d", "ETA %d:%02d", "%dh%02dm", "%dm%02ds", "no step for %dh%02dm)", "%.1f hours", "%.0f minutes", "%.0f days", "%d min"} {
		if !handDuration.MatchString(s) {
			t.Errorf("%q is not flagged", s)
		}
	}
	for _, s := range []string{"\x1b[38;2;%d;%d;%dm", "%.1f s, loss %.3f", "%.3f s/step", "%d steps", "%d of %d files", "%dx%d", "%d:%d"} {
		if handDuration.MatchString(s) {
			t.Errorf("%q is flagged", s)
		}
	}
}
