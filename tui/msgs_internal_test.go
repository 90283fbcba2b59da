package tui

import (
	"testing"

	"whet/engine"
)

// waitEvent takes, with the event it waited for, the events already
// waiting in a buffered channel (a viewer's replayed history) up to a
// DoneEvent, in one message: drawn an event at a time, 2000 replayed steps
// took seconds, shown as "training" with the run's keys. From an
// unbuffered channel it takes one event a message, as before.
func TestWaitEventTakesTheBufferedEventsAtOnce(t *testing.T) {
	ch := make(chan engine.Event, 300)
	for i := 1; i <= 200; i++ {
		ch <- engine.StepEvent{Step: i, TotalSteps: 200}
	}
	ch <- engine.DoneEvent{Step: 200}
	ch <- engine.LogEvent{Text: "after the end"}
	msg, ok := waitEvent(ch)().(engineEventsMsg)
	if !ok || len(msg.evs) != 201 || msg.closed {
		t.Fatalf("got %T with %d events, want one engineEventsMsg with the 200 steps and the DoneEvent", msg, len(msg.evs))
	}
	if _, done := msg.evs[200].(engine.DoneEvent); !done {
		t.Errorf("the batch ends with %T, want the DoneEvent", msg.evs[200])
	}
	if len(ch) != 1 {
		t.Errorf("%d events left, want the one after the DoneEvent", len(ch))
	}

	// The dashboard applies the batch and ends on its DoneEvent.
	c := &common{width: 80, height: 24, styles: newStyles(0), keys: newKeyMap()}
	d := newDashboard(c, engine.RunConfig{Name: "r"}, ch, nopControl{}, nil, 0)
	if _, finished := d.update(msg); !finished || d.last == nil || d.last.Step != 200 || d.done == nil {
		t.Errorf("after the batch: finished %v, last %+v, done %+v", finished, d.last, d.done)
	}

	un := make(chan engine.Event)
	go func() { un <- engine.StepEvent{Step: 1}; un <- engine.StepEvent{Step: 2} }()
	if m, ok := waitEvent(un)().(engineEventMsg); !ok || m.ev.(engine.StepEvent).Step != 1 {
		t.Errorf("unbuffered: %#v, want step 1 alone", m)
	}
}
