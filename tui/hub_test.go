package tui_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"whet/engine"
	"whet/engine/hub"
	"whet/engine/hub/hubtest"
	"whet/tui"
	"whet/tui/fake"
)

// fakeHubSettings are fixed so the goldens do not depend on the machine.
var fakeHubSettings = hub.Settings{Endpoint: "https://hub.invalid", CacheDir: "/cache/huggingface/hub"}

// goldenHub has one catalog model in its cache, one other model, and the
// remains of an interrupted download.
func goldenHub() *fake.Hub {
	snap := func(repo, commit, dir string, files ...string) hub.CachedSnapshot {
		return hub.CachedSnapshot{Commit: commit, Dir: dir, Files: files}
	}
	return &fake.Hub{Setting: fakeHubSettings, Models: []hub.CachedModel{
		{Repo: "acme/tiny-chat", Size: 8 << 20, Refs: map[string]string{"v1": "1111111111111111111111111111111111111111"},
			Snapshots: []hub.CachedSnapshot{snap("acme/tiny-chat", "1111111111111111111111111111111111111111", "testdata/models/acme/tiny-llama", "config.json", "model.safetensors")}},
		{Repo: "acme/unfinished", Partial: 300 << 20},
		{Repo: "Qwen/Qwen2.5-0.5B-Instruct", Size: 988 << 20, Refs: map[string]string{"main": "2222222222222222222222222222222222222222"},
			Snapshots: []hub.CachedSnapshot{snap("Qwen/Qwen2.5-0.5B-Instruct", "2222222222222222222222222222222222222222", "/cache/huggingface/hub/models--Qwen--Qwen2.5-0.5B-Instruct/snapshots/2222222222222222222222222222222222222222", "config.json", "model.safetensors")}},
	}}
}

// twoFilesInFlight is a download held with two files arriving at once.
func twoFilesInFlight(ref hub.Ref) []hub.Progress {
	const mb = 1 << 20
	base := hub.Progress{Repo: ref.Repo, Commit: "5ca1ab1e0ddba11c0ffee0000000000000c0ffee", Total: 1004 * mb, Files: 5}
	start := base
	start.Phase = hub.PhaseStart
	cfg := base
	cfg.Phase, cfg.File, cfg.FileDone, cfg.FileSize, cfg.Done, cfg.FilesDone = hub.PhaseFileDone, "config.json", 660, 660, 660, 1
	tok := base
	tok.Phase, tok.File, tok.FileDone, tok.FileSize, tok.FileRate, tok.FileETA = hub.PhaseBytes, "tokenizer.json", 5*mb, 16*mb, 2*mb, 5500e6
	tok.Done, tok.FilesDone, tok.Rate, tok.ETA = 660+5*mb+412*mb, 1, 24*mb, 24e9
	w := tok
	w.File, w.FileDone, w.FileSize, w.FileRate, w.FileETA = "model.safetensors", 412*mb, 988*mb, 22*mb, 26e9
	return []hub.Progress{start, cfg, tok, w}
}

// TestGoldenModelPageHub draws the model page with the Hub: the cache
// listed with sizes, a download in progress, and a failed one.
func TestGoldenModelPageHub(t *testing.T) {
	for _, sz := range sizes {
		t.Run(fmt.Sprintf("%dx%d", sz.w, sz.h), func(t *testing.T) {
			shot := func(d *driver, name string) {
				t.Helper()
				checkSize(t, d.view(), sz.w, sz.h)
				golden(t, fmt.Sprintf("wizard_1model_%s_%dx%d", name, sz.w, sz.h), d.view())
			}
			o := testOptions(&fake.Engine{})
			o.Hub = goldenHub()
			d := newDriver(t, o, sz.w, sz.h)
			shot(d, "hub")
			d.keys("down", "down") // the Qwen catalog entry, found in the cache
			shot(d, "hub_cached")
			d.keys("down", "down", "down", "down", "down") // llama-3.2-1b: catalog only
			shot(d, "hub_catalog")

			h := goldenHub()
			h.Script, h.HoldAfter = twoFilesInFlight, 4
			o.Hub = h
			d = newDriver(t, o, sz.w, sz.h)
			d.keys("end", "enter")
			d.typeText("Qwen/Qwen2.5-1.5B-Instruct")
			d.keys("enter")
			d.waitScreen("model.safetensors")
			shot(d, "pull")
			d.keys("esc")
			d.waitScreen("cancelled")

			h = goldenHub()
			h.Script = func(hub.Ref) []hub.Progress { return nil }
			h.Err = &hub.Error{Kind: hub.ErrGated, Msg: "meta-llama/Llama-3.2-1B-Instruct is gated: accept its licence at https://hub.invalid/meta-llama/Llama-3.2-1B-Instruct (logged in), then give whet a token with read access: export HF_TOKEN=hf_..., or save it in /home/user/.cache/huggingface/token ('hf auth login' does)"}
			o.Hub = h
			d = newDriver(t, o, sz.w, sz.h)
			d.keys("down", "down", "down", "down", "down", "down", "enter") // llama-3.2-1b-instruct
			d.waitScreen("is gated")
			shot(d, "gated")
		})
	}
}

// TestGoldenModelPagePullNote: a download note (a resumed file whose kept
// bytes were corrupt starts again from zero) is shown under the progress,
// wrapped to the width, and the file bars follow it.
func TestGoldenModelPagePullNote(t *testing.T) {
	const note = "model.safetensors: the resumed bytes have SHA-256 " +
		"9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08, not " +
		"60303ae22b998861bce3b28f33eec1be758a213c86c93c076dbe9f558c11c752; discarded them, downloading it again from the start"
	for _, sz := range sizes {
		t.Run(fmt.Sprintf("%dx%d", sz.w, sz.h), func(t *testing.T) {
			h := goldenHub()
			h.Script = func(ref hub.Ref) []hub.Progress {
				ps := twoFilesInFlight(ref)
				n := ps[len(ps)-1]
				n.Phase, n.Note = hub.PhaseNote, note
				return append(ps, n)
			}
			h.HoldAfter = 5
			o := testOptions(&fake.Engine{})
			o.Hub = h
			d := newDriver(t, o, sz.w, sz.h)
			typeRepo(d, "Qwen/Qwen2.5-1.5B-Instruct")
			d.waitScreen("again from the start")
			d.waitScreen("model.safetensors ")
			checkSize(t, d.view(), sz.w, sz.h)
			golden(t, fmt.Sprintf("wizard_1model_pull_note_%dx%d", sz.w, sz.h), d.view())
			d.keys("esc")
			d.waitScreen("cancelled")
		})
	}
}

// hubFixture is a fake Hub over HTTP (engine/hub/hubtest) with one tiny
// model, and a client whose cache is a temporary folder.
type hubFixture struct {
	srv    *hubtest.Server
	client *hub.Client
	weight []byte
}

func newHubFixture(t *testing.T) *hubFixture {
	t.Helper()
	srv := hubtest.New()
	t.Cleanup(srv.Close)
	cfg, err := os.ReadFile("testdata/models/acme/tiny-llama/config.json")
	if err != nil {
		t.Fatal(err)
	}
	weight := bytes.Repeat([]byte("whet"), 16<<10) // 64 KiB
	srv.AddFiles("whet-test/tiny", map[string][]byte{"config.json": cfg, "tokenizer.json": []byte(`{"model":{}}`), "model.safetensors": weight, "README.md": []byte("# tiny\n")})
	c := hub.NewClient(hub.Settings{Endpoint: srv.URL(), CacheDir: filepath.Join(t.TempDir(), "hub"), TokenPath: "/nonexistent/token"})
	c.Backoff, c.MaxBackoff = 1, 1 // nanoseconds: retries come at once
	c.FreeSpace = func(string) (int64, error) { return 1 << 40, nil }
	return &hubFixture{srv: srv, client: c, weight: weight}
}

func (f *hubFixture) options() tui.Options {
	o := testOptions(&fake.Engine{})
	o.Hub = tui.HubClient{Client: f.client}
	return o
}

// typeRepo opens the path field (the last row) and types a repo id.
func typeRepo(d *driver, id string) {
	d.keys("end", "enter")
	d.typeText(id)
	d.keys("enter")
}

// An error from a refused path goes once the user acts again: typed anew
// as a repo id, the download's screen showed the old "model folder a/b/c
// does not exist" under its progress bar for the whole download.
func TestModelPageErrorClearedByNextAttempt(t *testing.T) {
	f := newHubFixture(t)
	release := make(chan struct{})
	f.srv.BeforeStorage = func(string) { <-release }
	d := newDriver(t, f.options(), 80, 24)
	typeRepo(d, "a/b/c")
	const stale = "model folder a/b/c does not exist"
	if s := strings.Join(strings.Fields(d.screen()), " "); !strings.Contains(s, stale) {
		t.Fatalf("a/b/c should be refused:\n%s", d.screen())
	}
	for range len("a/b/c") {
		d.keys("backspace")
	}
	d.typeText("whet-test/tiny")
	d.keys("enter")
	d.waitScreen(" of 3 files")
	if s := strings.Join(strings.Fields(d.screen()), " "); strings.Contains(s, stale) {
		t.Errorf("the download of whet-test/tiny still shows the error of a/b/c:\n%s", d.screen())
	}
	close(release)
	d.waitScreen("How should it learn?")
}

// A typed repo id is downloaded with a progress bar and the wizard goes
// on to the method page with the repo id in the config; the cache then
// lists the model with its size.
func TestModelPagePullsTypedRepoID(t *testing.T) {
	f := newHubFixture(t)
	release := make(chan struct{})
	f.srv.BeforeStorage = func(string) { <-release }
	d := newDriver(t, f.options(), 80, 24)
	typeRepo(d, "whet-test/tiny")
	d.waitScreen(" of 3 files") // the weights wait for release; the small files may be done
	s := d.screen()
	for _, want := range []string{"Downloading whet-test/tiny at commit", "from " + f.srv.URL(), "into " + f.client.CacheDir, "esc cancels"} {
		if !strings.Contains(s, want) {
			t.Errorf("the download's screen lacks %q:\n%s", want, s)
		}
	}
	close(release)
	d.waitScreen("How should it learn?")
	if got := d.m.Config().Model; got != "whet-test/tiny" {
		t.Errorf("Model = %q, want the repo id", got)
	}
	snap, err := f.client.Cache().Lookup(hub.Ref{Repo: "whet-test/tiny", Revision: "main"})
	if err != nil || !snap.Has("model.safetensors") || snap.Has("README.md") {
		t.Fatalf("the cache should hold the run's files only: %+v, %v", snap, err)
	}
	d.keys("esc") // back to the model page: the model is listed as cached, with its size, under the cursor
	s = d.screen()
	if !strings.Contains(s, "› whet-test/tiny") || !strings.Contains(s, "cached") || !strings.Contains(s, "64.") {
		t.Errorf("the model page should list the pulled model with its size under the cursor:\n%s", s)
	}
	d.keys("enter") // ready: no second download
	if !strings.Contains(d.screen(), "How should it learn?") || f.srv.Requests("GET", "api", "") != 1 {
		t.Errorf("a cached model should be chosen without asking the Hub again (%d info requests):\n%s", f.srv.Requests("GET", "api", ""), d.screen())
	}
}

// bodyWatch is an HTTP transport that tells when the client comes back
// for more of a file's bytes after at least `at` of them: the ones before
// are on disk then, since the download writes each read before the next.
type bodyWatch struct {
	name    string
	at      int64
	reached chan struct{}
	once    sync.Once
}

func (w *bodyWatch) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := http.DefaultTransport.RoundTrip(r)
	if err == nil && r.Method == http.MethodGet && r.URL.Query().Get("name") == w.name {
		resp.Body = &watchedBody{ReadCloser: resp.Body, w: w}
	}
	return resp, err
}

type watchedBody struct {
	io.ReadCloser
	w *bodyWatch
	n int64
}

func (b *watchedBody) Read(p []byte) (int, error) {
	if b.n >= b.w.at {
		b.w.once.Do(func() { close(b.w.reached) })
	}
	k, err := b.ReadCloser.Read(p)
	b.n += int64(k)
	return k, err
}

// A cancelled download keeps its bytes; the page lists the partial model
// and enter on it resumes with a range request.
func TestModelPageCancelKeepsAndResumes(t *testing.T) {
	f := newHubFixture(t)
	f.srv.StallAfter("model.safetensors", 20000)
	watch := &bodyWatch{name: "model.safetensors", at: 20000, reached: make(chan struct{})}
	f.client.HTTP = &http.Client{Transport: watch}
	d := newDriver(t, f.options(), 80, 24)
	typeRepo(d, "whet-test/tiny")
	select {
	case <-watch.reached: // 20000 bytes are on disk and the server sends no more
	case <-time.After(5 * time.Second):
		t.Fatalf("the download did not get its first 20000 bytes; screen:\n%s", d.screen())
	}
	d.keys("esc")
	d.waitScreen("cancelled")
	s := strings.Join(strings.Fields(d.screen()), " ")
	if !strings.Contains(s, "kept in the cache; enter on it resumes") || !strings.Contains(s, "› whet-test/tiny") || !strings.Contains(s, "partial") {
		t.Fatalf("a cancelled download should say what was kept and list the partial model:\n%s", s)
	}
	if d.m.Config().Model == "whet-test/tiny" {
		t.Error("a cancelled download must not choose the model")
	}
	d.keys("esc") // dismiss the message
	if !strings.Contains(d.screen(), "An interrupted download left") {
		t.Errorf("the partial model's details should offer to resume:\n%s", d.screen())
	}
	d.keys("enter")
	d.waitScreen("How should it learn?")
	if got := d.m.Config().Model; got != "whet-test/tiny" {
		t.Errorf("Model = %q", got)
	}
	ranges := f.srv.Ranges("model.safetensors")
	if len(ranges) != 2 || ranges[1] != "bytes=20000-" {
		t.Errorf("the second download should resume from the kept bytes; ranges %q", ranges)
	}
}

// Choosing a catalog model that is not on disk downloads its repo; the
// run config records the repo id and the catalog's chat template.
func TestModelPagePullsCatalogEntry(t *testing.T) {
	f := newHubFixture(t)
	o := f.options()
	o.Catalog = fake.Catalog{{Name: "tiny-chat", Repo: "whet-test/tiny", Params: 4_000_000, Template: "chatml"}}
	d := newDriver(t, o, 80, 24)
	d.keys("down", "down") // past the two local folders
	if s := d.screen(); !strings.Contains(s, "› tiny-chat") || !strings.Contains(s, "Not on this machine: enter downloads it from "+f.srv.URL()) {
		t.Fatalf("a catalog model not on disk should offer the download:\n%s", s)
	}
	d.keys("enter")
	d.waitScreen("How should it learn?")
	if c := d.m.Config(); c.Model != "whet-test/tiny" || c.Data.Template != "chatml" {
		t.Errorf("Model %q template %q: want the repo id and the catalog's template", c.Model, c.Data.Template)
	}
	d.keys("esc")
	if s := d.screen(); !strings.Contains(s, "› tiny-chat") || !strings.Contains(s, "cached") || strings.Count(s, "tiny-chat") != 1 {
		t.Errorf("the catalog model should now be listed once, as cached:\n%s", s)
	}
}

// Failures are explained on the page: a gated repo says where to accept
// the licence and how to give a token; a missing repo or revision and a
// full disk say so.
func TestModelPageShowsPullErrors(t *testing.T) {
	for _, tc := range []struct {
		name, id string
		setup    func(f *hubFixture)
		want     []string
	}{
		{"gated", "whet-test/tiny", func(f *hubFixture) { f.srv.SetAccess("whet-test/tiny", false, true, false) },
			[]string{"is gated: accept its licence at", "/whet-test/tiny", "HF_TOKEN"}},
		{"missing repo", "whet-test/nothing", func(*hubFixture) {}, []string{"no model repository whet-test/nothing"}},
		{"missing revision", "whet-test/tiny@v9", func(*hubFixture) {}, []string{`no branch, tag or commit "v9"`}},
		{"bad token", "whet-test/tiny", func(f *hubFixture) {
			f.srv.Token = "hf_good"
			f.client.Token, f.client.TokenSource = "hf_bad", "HF_TOKEN"
		},
			[]string{"refused the token from HF_TOKEN", "settings/tokens"}},
		{"no disk", "whet-test/tiny", func(f *hubFixture) { f.client.FreeSpace = func(string) (int64, error) { return 1000, nil } },
			[]string{"only 1000 B is free", "HF_HUB_CACHE"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newHubFixture(t)
			tc.setup(f)
			d := newDriver(t, f.options(), 120, 40)
			typeRepo(d, tc.id)
			d.waitScreen("✗")
			s := strings.Join(strings.Fields(d.screen()), " ")
			for _, w := range tc.want {
				if !strings.Contains(s, w) {
					t.Errorf("the page should say %q:\n%s", w, d.screen())
				}
			}
			if !strings.Contains(s, "Choose the base model") || d.m.Config().Model == tc.id {
				t.Errorf("a failed download must stay on the model page without choosing it:\n%s", d.screen())
			}
		})
	}
}

// With the Hub unreachable, a model in the cache is offered and enter
// takes it, keeping the repo id in the config.
func TestModelPageOffersCacheWhenOffline(t *testing.T) {
	f := newHubFixture(t)
	if _, err := f.client.Pull(context.Background(), hub.Ref{Repo: "whet-test/tiny", Revision: "main"}, hub.PullOptions{}); err != nil {
		t.Fatal(err)
	}
	f.srv.Close() // the Hub is gone
	d := newDriver(t, f.options(), 120, 40)
	typeRepo(d, "whet-test/tiny")
	d.waitScreen("✗")
	if s := d.screen(); !strings.Contains(s, "cannot reach") || !strings.Contains(s, "enter uses the cached snapshot of whet-test/tiny") {
		t.Fatalf("an unreachable Hub should offer the cached snapshot:\n%s", s)
	}
	d.keys("enter")
	if !strings.Contains(d.screen(), "How should it learn?") || d.m.Config().Model != "whet-test/tiny" {
		t.Errorf("enter should go on with the cached model (Model %q):\n%s", d.m.Config().Model, d.screen())
	}
}

// A model the cache holds is listed with its size before any download,
// and chosen by its repo id (with the tag that points at it).
func TestModelPageListsCache(t *testing.T) {
	f := newHubFixture(t)
	commit := f.srv.AddFiles("whet-test/tagged", map[string][]byte{"config.json": []byte(`{"model_type":"llama"}`), "model.safetensors": f.weight}, "v1")
	if _, err := f.client.Pull(context.Background(), hub.Ref{Repo: "whet-test/tagged", Revision: "v1"}, hub.PullOptions{}); err != nil {
		t.Fatal(err)
	}
	d := newDriver(t, f.options(), 80, 24)
	s := d.screen()
	if !strings.Contains(s, "whet-test/tagged") || !strings.Contains(s, "64.0 KiB") || !strings.Contains(s, "Hub cache: 1 model, 64.0 KiB in "+f.client.CacheDir) {
		t.Fatalf("the cache should be listed with sizes:\n%s", s)
	}
	d.keys("enter")
	if got := d.m.Config().Model; got != "whet-test/tagged@v1" {
		t.Errorf("Model = %q, want the repo id at the tag the snapshot came from (%s)", got, commit)
	}
	if n := f.srv.Requests("GET", "api", ""); n != 1 {
		t.Errorf("choosing a cached model should not ask the Hub (%d model-info requests)", n)
	}
}

// A typed text that is neither a folder nor a valid Hub id is refused
// with the reason the id is not one; nothing is downloaded.
func TestModelPageRefusesBadRepoID(t *testing.T) {
	h := goldenHub()
	o := testOptions(&fake.Engine{})
	o.Hub = h
	d := newDriver(t, o, 80, 24)
	typeRepo(d, "acme/two--dashes")
	s := strings.Join(strings.Fields(d.screen()), " ")
	if !strings.Contains(s, "model folder acme/two--dashes does not exist, nor is it a Hub repo id:") || !strings.Contains(s, "may hold only letters") {
		t.Errorf("a bad repo id should be refused with the reason:\n%s", d.screen())
	}
	if len(h.Pulls()) != 0 {
		t.Errorf("nothing should be downloaded: %v", h.Pulls())
	}
}

// The scripted downloads of --fake add up: every byte and file is
// reported once, and the times left follow the rate.
func TestFakePullScriptAddsUp(t *testing.T) {
	files := []fake.PullFile{{Name: "config.json", Size: 600}, {Name: "model.safetensors", Size: 10 << 20}}
	ps := fake.PullScript("acme/x", files, 1<<20, time.Second) // 1 MiB a report
	first, last := ps[0], ps[len(ps)-1]
	if first.Phase != hub.PhaseStart || last.Phase != hub.PhaseDone || last.Done != last.Total || last.Total != 600+10<<20 || last.FilesDone != 2 {
		t.Fatalf("first %+v, last %+v", first, last)
	}
	if n := len(ps); n != 1+1+10+1 {
		t.Errorf("%d reports, want start, config, ten of the weights, done", n)
	}
	for _, p := range ps[1 : len(ps)-1] {
		if want := time.Duration(float64(p.Total-p.Done) / (1 << 20) * float64(time.Second)); p.ETA != want {
			t.Errorf("%s at %d: ETA %v, want %v", p.File, p.Done, p.ETA, want)
		}
	}
}

// A model pulled for a fit check alone (config.json) is listed as such,
// and choosing it downloads the rest before going on.
func TestModelPageCompletesConfigOnlyModel(t *testing.T) {
	f := newHubFixture(t)
	if _, err := f.client.Pull(context.Background(), hub.Ref{Repo: "whet-test/tiny", Revision: "main"}, hub.PullOptions{Files: hub.ConfigOnly}); err != nil {
		t.Fatal(err)
	}
	d := newDriver(t, f.options(), 80, 24)
	s := strings.Join(strings.Fields(d.screen()), " ")
	if !strings.Contains(s, "› whet-test/tiny 3.95M config") || !strings.Contains(s, "Only config.json is cached (pulled for a fit check): enter downloads the weights.") {
		t.Fatalf("a config-only snapshot should be marked and offer the weights:\n%s", d.screen())
	}
	d.keys("enter")
	d.waitScreen("How should it learn?")
	if got := d.m.Config().Model; got != "whet-test/tiny" {
		t.Errorf("Model = %q", got)
	}
	if n := f.srv.Requests("GET", "storage", "model.safetensors"); n != 1 {
		t.Errorf("the weights were downloaded %d times, want once", n)
	}
}

// A second id or path typed at "/" is what the path field gets, not the
// first one the field kept: after a failed download of one id, the user
// clears the filter and types another, and enter twice must use it.
func TestModelFilterSecondPathReplacesFirst(t *testing.T) {
	d := newDriver(t, testOptions(&fake.Engine{}), 80, 24)
	d.keys("/")
	d.typeText("testdata/models/acme/no-such-model")
	d.keys("enter")
	if s := d.screen(); !strings.Contains(s, "no-such-model▏") {
		t.Fatalf("the first path should be in the field:\n%s", s)
	}
	d.keys("esc", "esc", "/")
	d.typeText("testdata/models/acme/tiny-llama")
	d.keys("enter")
	if s := d.screen(); !strings.Contains(s, "testdata/models/acme/tiny-llama▏") {
		t.Fatalf("enter on the second filter should open the field with it, not the first path:\n%s", s)
	}
	d.keys("enter")
	if got := d.m.Config().Model; got != "testdata/models/acme/tiny-llama" {
		t.Errorf("Model = %q, want the second path", got)
	}
}

// A typed path like a/b/c that is no folder here is refused saying both
// readings fail: no such folder, and not a Hub repo id (ORG/NAME), with
// the words whet's commands use (engine.NoModelFolder). It said only
// "model folder a/b/c: stat a/b/c: no such file or directory".
func TestModelPageMissingPathSaysNotAHubIDEither(t *testing.T) {
	for _, withHub := range []bool{true, false} {
		o := testOptions(&fake.Engine{})
		if withHub {
			o.Hub = goldenHub()
		}
		d := newDriver(t, o, 80, 24)
		typeRepo(d, "a/b/c")
		s := strings.Join(strings.Fields(d.screen()), " ")
		want := engine.NoModelFolder("a/b/c").Error()
		if want != "model folder a/b/c does not exist, nor is it a Hub repo id (ORG/NAME)" || !strings.Contains(s, want) || strings.Contains(s, "stat ") {
			t.Errorf("hub %v: a/b/c should be refused as neither a folder nor a Hub id (%q):\n%s", withHub, want, d.screen())
		}
		if d.m.Config().Model == "a/b/c" {
			t.Errorf("hub %v: a/b/c was taken as the model", withHub)
		}
	}
}
