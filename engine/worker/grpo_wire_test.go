package worker

import (
	"reflect"
	"testing"

	"whet/engine"
)

// A GRPO sample's rewards cross the control socket (in the message's
// metrics) and come back as the sample's rewards; a greedy sample has none.
func TestSampleRewardsOnTheWire(t *testing.T) {
	for _, ev := range []engine.SampleEvent{
		{Step: 3, Prompt: "p", Text: "why?", Rewards: map[string]float64{"regex": 1, "reward": 1}},
		{Step: 4, Prompt: "p", Text: "greedy"},
	} {
		js, ok := EncodeEvent(ev)
		if !ok {
			t.Fatal("not encoded")
		}
		got, err := DecodeEvent(js)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, ev) {
			t.Errorf("%s decoded as %+v, sent %+v", js, got, ev)
		}
	}
}

// The step a resumed session began at crosses the wire with its end, and
// so does whether the run folder holds a checkpoint (a viewer's summary
// offers "resume it" only then); the runs list says plainly when a run
// stopped past its total.
func TestDoneFromStepOnTheWire(t *testing.T) {
	ev := engine.DoneEvent{Step: 60, Elapsed: 41e9, FinalDir: "runs/x", FromStep: 40, Checkpointed: true}
	js, ok := EncodeEvent(ev)
	if !ok {
		t.Fatal("not encoded")
	}
	got, err := DecodeEvent(js)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, ev) {
		t.Errorf("%s decoded as %+v, sent %+v", js, got, ev)
	}
}

func TestRunStepsPastTheTotal(t *testing.T) {
	for _, c := range []struct {
		r    Run
		want string
	}{
		{Run{Step: 40, Total: 500}, "40/500"},
		{Run{Step: 5, Total: 5}, "5/5"},
		{Run{Step: 40}, "40"},
		{Run{Step: 335, Total: 5}, "335 past 5"},
	} {
		if got := c.r.Steps(); got != c.want {
			t.Errorf("Steps() of step %d of %d = %q, want %q", c.r.Step, c.r.Total, got, c.want)
		}
	}
}
