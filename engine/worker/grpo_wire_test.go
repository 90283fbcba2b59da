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
