package tui_test

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"whet/engine"
	"whet/tui"
	"whet/tui/fake"
)

// claimingEngine is the fake engine with the studio engines' real claim
// of a run folder (engine.ClaimRunName), counting what it was asked.
type claimingEngine struct {
	*fake.Engine
	mu     sync.Mutex
	claims []string
}

var _ tui.NameClaimer = (*claimingEngine)(nil)

func (e *claimingEngine) ClaimRunName(runsDir, base string) (string, error) {
	e.mu.Lock()
	e.claims = append(e.claims, base)
	e.mu.Unlock()
	return engine.ClaimRunName(runsDir, base)
}

func (e *claimingEngine) claimed() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]string(nil), e.claims...)
}

// toReview walks the wizard to the review page with the defaults; name,
// when not "", is typed over the proposed run name.
func toReview(t *testing.T, d *driver, name string) {
	t.Helper()
	d.keys("enter", "enter", "enter") // model, method, data: preview
	d.waitScreen("format messages")
	d.keys("enter") // data: next
	if name != "" {
		d.keys("ctrl+u")
		d.typeText(name)
	}
	d.keys("enter") // settings
	d.waitScreen("Fits:")
	d.keys("enter") // review
	d.waitScreen("Review")
}

// Two sessions (two whet serve viewers, two terminals) opened in the same
// second propose the same run name. Started together, each run gets a
// folder of its own: before, both started under one name and the run
// folder's lock refused the second.
func TestTwoSessionsStartingTogetherGetTwoRuns(t *testing.T) {
	eng := &claimingEngine{Engine: &fake.Engine{Script: scriptSteps(2)}}
	o := testOptions(eng)
	o.RunsDir = t.TempDir()
	base := engine.RunNameAt(fixedNow())
	a, b := newDriver(t, o, 80, 24), newDriver(t, o, 80, 24)
	toReview(t, a, "")
	toReview(t, b, "")
	a.keys("enter")
	b.keys("enter") // both starts in flight at once
	var names []string
	for _, d := range []*driver{a, b} {
		d.waitScreen("lora on") // the dashboard's header
		names = append(names, d.m.Config().Name)
	}
	slices.Sort(names)
	if want := []string{base, base + "-2"}; !slices.Equal(names, want) {
		t.Errorf("the sessions' runs are named %v, want %v", names, want)
	}
	var started []string
	for _, c := range eng.Started() {
		started = append(started, c.Name)
	}
	slices.Sort(started)
	if !slices.Equal(started, names) {
		t.Errorf("the engine started %v, the sessions show %v", started, names)
	}
	for _, n := range names {
		if st, err := os.Stat(filepath.Join(o.RunsDir, n)); err != nil || !st.IsDir() {
			t.Errorf("no folder claimed for %s: %v", n, err)
		}
	}
}

// The proposed name never resumes a run that has it (one another session
// started this second): the review says the next free name is taken, and
// the run gets it.
func TestProposedNameTakesTheNextFreeFolder(t *testing.T) {
	eng := &claimingEngine{Engine: &fake.Engine{Script: scriptSteps(2)}}
	o := testOptions(eng)
	o.RunsDir = t.TempDir()
	base := engine.RunNameAt(fixedNow())
	if err := os.MkdirAll(filepath.Join(o.RunsDir, base), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(o.RunsDir, base, "run.yaml"), []byte("name: "+base+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	d := newDriver(t, o, 80, 24)
	toReview(t, d, "")
	if s := d.screen(); !strings.Contains(s, "a run named "+base+" exists: this one takes the next free name") || strings.Contains(s, "resumes it") {
		t.Errorf("the review should say the proposed name's next free folder is taken:\n%s", s)
	}
	d.keys("enter")
	d.waitScreen("lora on")
	if got := eng.Started()[0].Name; got != base+"-2" || d.m.Config().Name != got {
		t.Errorf("started %q (the session shows %q), want %s-2", got, d.m.Config().Name, base)
	}
}

// A name the user typed is never changed: the run under it resumes (or
// the run's lock refuses it), as the review says; nothing is claimed.
func TestTypedRunNameIsKept(t *testing.T) {
	eng := &claimingEngine{Engine: &fake.Engine{Script: scriptSteps(2)}}
	o := testOptions(eng)
	o.RunsDir = t.TempDir()
	if err := os.MkdirAll(filepath.Join(o.RunsDir, "mine"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(o.RunsDir, "mine", "run.yaml"), []byte("name: mine\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	d := newDriver(t, o, 80, 24)
	toReview(t, d, "mine")
	if s := d.screen(); !strings.Contains(s, "! a run named mine exists: starting resumes it") {
		t.Errorf("the review should warn that the typed name resumes its run:\n%s", s)
	}
	d.keys("enter")
	d.waitScreen("lora on")
	if got := eng.Started()[0].Name; got != "mine" {
		t.Errorf("started %q, want the typed name mine", got)
	}
	if c := eng.claimed(); len(c) > 0 {
		t.Errorf("a typed name was claimed: %v", c)
	}
}
