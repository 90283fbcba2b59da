package hub

import (
	"sync"
	"testing"
	"time"
)

// A byte report held back by progressEvery is sent once the gap has passed,
// so a download that stalls right after shows the bytes that did arrive;
// after the pull's end (stop) no report comes.
func TestTrackerReportsHeldBackBytes(t *testing.T) {
	var mu sync.Mutex
	var got []Progress
	tr := newTracker(func(p Progress) {
		mu.Lock()
		got = append(got, p)
		mu.Unlock()
	}, "o/n", "abc", map[string]int64{"model.safetensors": 1000, "config.json": 10}, nil)
	tr.start()
	tr.set("model.safetensors", 100, false)
	tr.set("model.safetensors", 600, false) // within progressEvery: held back
	last := func() Progress {
		mu.Lock()
		defer mu.Unlock()
		return got[len(got)-1]
	}
	deadline := time.Now().Add(stallEvery / 2) // before the stall report
	for last().FileDone != 600 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if p := last(); p.Phase != PhaseBytes || p.File != "model.safetensors" || p.FileDone != 600 || p.Done != 600 {
		t.Fatalf("last report %+v, want model.safetensors at 600 bytes (the stalled download's last bytes)", p)
	}
	tr.set("config.json", 10, true)
	tr.stop()
	mu.Lock()
	n := len(got)
	mu.Unlock()
	time.Sleep(stallEvery + 200*time.Millisecond)
	mu.Lock()
	defer mu.Unlock()
	if len(got) != n {
		t.Fatalf("%d reports after stop: %+v", len(got)-n, got[n:])
	}
}
