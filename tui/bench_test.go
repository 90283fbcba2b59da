package tui_test

import (
	"testing"

	"whet/engine"
	"whet/tui"
)

// BenchmarkDashboardView is the cost of one dashboard frame after 400
// steps; the view is redrawn for every engine event.
func BenchmarkDashboardView(b *testing.B) {
	var evs []engine.Event
	for i := 0; i < 7; i++ {
		evs = append(evs, goldenEvents(false)...)
	}
	gpu := &tui.GPUStats{Name: "GPU", Util: 50, MemTotal: 1 << 30}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		tui.RenderDashboard(goldenRun(), 120, 40, evs, gpu, nil)
	}
}
