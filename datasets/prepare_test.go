package datasets

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"
)

func qwen3Template(t *testing.T) string {
	t.Helper()
	data, err := os.ReadFile("templates/qwen-3.jinja")
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

func TestPrepareTinyChat(t *testing.T) {
	tok := chatmlTok(qwen3Template(t))
	opts := Options{Path: fixtures + "tiny-chat.jsonl", MaxLength: 256, Packing: true, EvalSplit: 0.1, Seed: 3}
	p, err := Prepare(opts, tok)
	if err != nil {
		t.Fatal(err)
	}
	st := p.Stats
	if st.Format != FormatMessages || st.Template != "qwen-3" || !st.TemplateDetected {
		t.Errorf("format %s template %s detected %v", st.Format, st.Template, st.TemplateDetected)
	}
	if st.Rows != 40 || st.Examples != 40 || st.BadRows != 0 || st.Dropped != 0 {
		t.Errorf("rows %d examples %d bad %d dropped %d", st.Rows, st.Examples, st.BadRows, st.Dropped)
	}
	if len(p.Eval) != 4 || len(p.Train) != 36 || st.Train.Sequences != 36 || st.Eval.Sequences != 4 {
		t.Errorf("split: %d train, %d eval", len(p.Train), len(p.Eval))
	}
	if st.Train.TrainableTokens == 0 || st.Train.TrainableTokens >= st.Train.Tokens {
		t.Errorf("trainable %d of %d tokens: responses-only masking expected", st.Train.TrainableTokens, st.Train.Tokens)
	}
	// Every trained token is inside an assistant reply: decode the runs.
	for _, s := range p.Train {
		var run []int
		for i, l := range s.Labels {
			if l != IgnoreIndex {
				run = append(run, int(s.Tokens[i]))
			}
		}
		text := tok.Decode(run, false)
		if strings.Contains(text, "<|im_start|>") || !strings.HasSuffix(text, "<|im_end|>") {
			t.Errorf("%s: trained text %q", s.Source, text)
		}
	}
	// Batches hold every training token once, within budget.
	total, targets := 0, 0
	for _, b := range p.TrainBatches {
		if b.NumTokens() > 256 {
			t.Errorf("batch of %d tokens", b.NumTokens())
		}
		total += b.NumTokens()
		targets += b.NumTargets()
	}
	if total != st.Train.Tokens || st.Train.PaddingTokens != 0 {
		t.Errorf("batches hold %d tokens, sequences %d, padding %d", total, st.Train.Tokens, st.Train.PaddingTokens)
	}
	// Shifting loses nothing: each trained token is some token's target
	// (a reply never starts a sequence).
	if targets != st.Train.TrainableTokens {
		t.Errorf("%d targets for %d trainable tokens", targets, st.Train.TrainableTokens)
	}
	h := st.Train.Lengths
	sum := 0
	for _, c := range h.Counts {
		sum += c
	}
	if sum != 36 || h.Max > 256 || h.Min <= 0 || h.P50 > h.P95 || h.Edges[len(h.Edges)-1] != 256 {
		t.Errorf("histogram %+v", h)
	}
	if len(p.StopTokenIDs) == 0 || p.StopTokenIDs[0] != tok.vocab["<|im_end|>"] {
		t.Errorf("stop ids %v", p.StopTokenIDs)
	}

	// Same seed, same split and order; another seed, another order.
	again, err := Prepare(opts, tok)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(again.TrainBatches, p.TrainBatches) || !reflect.DeepEqual(again.Eval, p.Eval) {
		t.Error("Prepare is not deterministic for a seed")
	}
	opts.Seed = 4
	other, err := Prepare(opts, tok)
	if err != nil {
		t.Fatal(err)
	}
	if reflect.DeepEqual(other.Eval, p.Eval) {
		t.Error("a different seed held out the same rows")
	}
}

func TestPrepareTrainOnAllAndPadding(t *testing.T) {
	tok := llamaTok("")
	p, err := Prepare(Options{Path: fixtures + "messages.jsonl", Template: "llama-3.2", TrainOn: "all", MaxLength: 512,
		MicroBatch: 2, Now: func() time.Time { return time.Date(2026, 1, 5, 0, 0, 0, 0, time.UTC) }}, tok)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range p.Train {
		if s.NumTrainable() != s.Len() {
			t.Errorf("train_on all left %d of %d tokens unlabelled", s.Len()-s.NumTrainable(), s.Len())
		}
		// The template renders the BOS; the encoder must not add another.
		if s.Tokens[0] != int32(tok.vocab["<|begin_of_text|>"]) || s.Tokens[1] == s.Tokens[0] {
			t.Errorf("BOS handling: %v", s.Tokens[:2])
		}
	}
	if len(p.TrainBatches) != 2 || p.Stats.Train.PaddingTokens == 0 {
		t.Errorf("padding mode: %d batches, %d padding", len(p.TrainBatches), p.Stats.Train.PaddingTokens)
	}
}

func TestPrepareTextAppendsEOS(t *testing.T) {
	tok := llamaTok("")
	tok.cfg["eos_token"] = "<|end_of_text|>"
	p, err := Prepare(Options{Path: fixtures + "text.jsonl", MaxLength: 64, Packing: true}, tok)
	if err != nil {
		t.Fatal(err)
	}
	if p.Template != nil || p.Stats.Format != FormatText {
		t.Errorf("text data got template %v format %s", p.Template, p.Stats.Format)
	}
	eos := int32(tok.vocab["<|end_of_text|>"])
	bos := int32(tok.vocab["<|begin_of_text|>"])
	for _, s := range p.Train {
		if s.Tokens[0] != bos || s.Tokens[s.Len()-1] != eos || s.NumTrainable() != s.Len() {
			t.Errorf("text sequence %v", s.Tokens)
		}
	}
}

func TestPrepareAlpacaWithoutChatTemplate(t *testing.T) {
	tok := llamaTok("") // a base model: no chat template
	tok.cfg["eos_token"] = "<|end_of_text|>"
	p, err := Prepare(Options{Path: fixtures + "alpaca.csv", MaxLength: 128, Packing: true}, tok)
	if err != nil {
		t.Fatal(err)
	}
	if p.Stats.Template != "alpaca" || p.Stats.TemplateDetected {
		t.Errorf("template %s", p.Stats.Template)
	}
	s := p.Train[0]
	if s.Tokens[0] != int32(tok.vocab["<|begin_of_text|>"]) {
		t.Error("alpaca text should get the tokenizer's BOS")
	}
	var run []int
	for i, l := range s.Labels {
		if l != IgnoreIndex {
			run = append(run, int(s.Tokens[i]))
		}
	}
	if got := tok.Decode(run, false); !strings.HasSuffix(got, "<|end_of_text|>") || strings.Contains(got, "###") {
		t.Errorf("alpaca trained text %q", got)
	}
	// Chat data with no template anywhere is an error that says what to set.
	_, err = Prepare(Options{Path: fixtures + "messages.jsonl", MaxLength: 128}, tok)
	if err == nil || !strings.Contains(err.Error(), "data.template") {
		t.Errorf("chat data without a template: %v", err)
	}
}

func TestPreparePreferencePairs(t *testing.T) {
	tok := chatmlTok(qwen3Template(t))
	for _, packing := range []bool{true, false} {
		p, err := Prepare(Options{Path: fixtures + "preference-messages.jsonl", MaxLength: 128, Packing: packing}, tok)
		if err != nil {
			t.Fatal(err)
		}
		if len(p.TrainPairs) != 2 || len(p.Train) != 0 || p.Stats.Train.Sequences != 4 {
			t.Fatalf("pairs %d, sequences %d", len(p.TrainPairs), len(p.Train))
		}
		for _, pr := range p.TrainPairs {
			c, r := pr.Chosen, pr.Rejected
			// Same prompt tokens up to the response.
			first := 0
			for first < c.Len() && c.Labels[first] == IgnoreIndex {
				first++
			}
			if !reflect.DeepEqual(c.Tokens[:first], r.Tokens[:first]) {
				t.Error("chosen and rejected prompts differ")
			}
		}
		for _, b := range p.TrainBatches {
			if (len(b.SeqStarts)-1)%2 != 0 {
				t.Errorf("packing=%v: a batch holds %d sequences, pairs need an even count", packing, len(b.SeqStarts)-1)
			}
		}
	}
}

func TestPrepareSkipBadRows(t *testing.T) {
	tok := chatmlTok("")
	opts := Options{Path: fixtures + "bad-rows.jsonl", Template: "chatml", MaxLength: 64, Packing: true}
	if _, err := Prepare(opts, tok); err == nil || !strings.Contains(err.Error(), "bad-rows.jsonl:2") {
		t.Errorf("without skipping, the first bad row should fail: %v", err)
	}
	opts.SkipBadRows = true
	p, err := Prepare(opts, tok)
	if err != nil {
		t.Fatal(err)
	}
	st := p.Stats
	if st.Rows != 9 || st.BadRows != 7 || len(p.Train) != 2 {
		t.Errorf("rows %d bad %d train %d", st.Rows, st.BadRows, len(p.Train))
	}
	want := map[string]int{ReasonInvalidJSON: 1, ReasonNotObject: 1, ReasonBadRole: 1, ReasonWrongType: 1, ReasonMissingField: 2, ReasonEmpty: 1}
	if !reflect.DeepEqual(st.BadRowReasons, want) {
		t.Errorf("reasons %v, want %v", st.BadRowReasons, want)
	}
	if len(st.BadRowSamples) != maxSamples || !strings.Contains(st.BadRowSamples[0], "bad-rows.jsonl:2") {
		t.Errorf("samples %q", st.BadRowSamples)
	}
}

func TestPrepareExplainsWhenNothingIsTrainable(t *testing.T) {
	tok := chatmlTok("")
	// Responses fall beyond a tiny max_length.
	_, err := Prepare(Options{Path: fixtures + "tiny-chat.jsonl", Template: "qwen-2.5", MaxLength: 8, Packing: true}, tok)
	if err == nil || !strings.Contains(err.Error(), "raise data.max_length above 8") || !strings.Contains(err.Error(), "40 rows: "+DropCutOff) {
		t.Errorf("cut-off: %v", err)
	}
	// Rows without an assistant turn.
	dir := t.TempDir()
	path := filepath.Join(dir, "prompts.jsonl")
	if err := os.WriteFile(path, []byte(`{"messages":[{"role":"user","content":"a"}]}`+"\n"+`{"messages":[{"role":"user","content":"b"}]}`+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = Prepare(Options{Path: path, Template: "chatml", MaxLength: 64}, tok)
	if err == nil || !strings.Contains(err.Error(), "train_on: all") || !strings.Contains(err.Error(), "prompts.jsonl:1") {
		t.Errorf("no assistant: %v", err)
	}
	// Some rows dropped, others kept: no error, counted.
	p, err := Prepare(Options{Path: fixtures + "tiny-chat.jsonl", Template: "chatml", MaxLength: 14, Packing: true}, tok)
	if err != nil {
		t.Fatal(err)
	}
	if p.Stats.Truncated == 0 || p.Stats.Dropped == 0 || p.Stats.Dropped >= 40 || p.Stats.LongestTokens <= 14 {
		t.Errorf("truncated %d dropped %d longest %d", p.Stats.Truncated, p.Stats.Dropped, p.Stats.LongestTokens)
	}
}

func TestPrepareEvalFileAndOptionErrors(t *testing.T) {
	tok := chatmlTok("")
	p, err := Prepare(Options{Path: fixtures + "tiny-chat.jsonl", EvalPath: fixtures + "messages.jsonl", Template: "chatml", MaxLength: 128}, tok)
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Train) != 40 || len(p.Eval) != 3 || len(p.EvalBatches) != 3 {
		t.Errorf("eval file: %d train %d eval %d eval batches", len(p.Train), len(p.Eval), len(p.EvalBatches))
	}
	for name, o := range map[string]Options{
		"no path":       {MaxLength: 8},
		"max_length":    {Path: fixtures + "tiny-chat.jsonl"},
		"eval_split":    {Path: fixtures + "tiny-chat.jsonl", MaxLength: 8, EvalSplit: 1},
		"format":        {Path: fixtures + "tiny-chat.jsonl", MaxLength: 8, Format: "yaml"},
		"train_on":      {Path: fixtures + "tiny-chat.jsonl", MaxLength: 8, TrainOn: "prompt"},
		"columns":       {Path: fixtures + "tiny-chat.jsonl", MaxLength: 8, Columns: map[string]string{"msgs": "x"}},
		"template":      {Path: fixtures + "tiny-chat.jsonl", MaxLength: 8, Template: "vicuna"},
		"unknown shape": {Path: fixtures + "unknown-columns.jsonl", MaxLength: 8},
	} {
		if _, err := Prepare(o, tok); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

func TestPrepareTemplateRefusalsAreBadRows(t *testing.T) {
	tok := newFakeTok("<bos>", "<start_of_turn>", "<end_of_turn>")
	tok.cfg["bos_token"] = "<bos>"
	dir := t.TempDir()
	path := filepath.Join(dir, "users.jsonl")
	row := `{"messages":[{"role":"user","content":"a"},{"role":"user","content":"b"},{"role":"assistant","content":"c"}]}` + "\n"
	good := `{"messages":[{"role":"user","content":"a"},{"role":"assistant","content":"c"}]}` + "\n"
	if err := os.WriteFile(path, []byte(row+good), 0o644); err != nil {
		t.Fatal(err)
	}
	opts := Options{Path: path, Template: "gemma-3", MaxLength: 64}
	if _, err := Prepare(opts, tok); err == nil || !strings.Contains(err.Error(), "users.jsonl:1") || !strings.Contains(err.Error(), "alternate") {
		t.Errorf("template refusal: %v", err)
	}
	opts.SkipBadRows = true
	p, err := Prepare(opts, tok)
	if err != nil {
		t.Fatal(err)
	}
	if p.Stats.BadRowReasons[ReasonTemplate] != 1 || len(p.Train) != 1 {
		t.Errorf("reasons %v, %d train", p.Stats.BadRowReasons, len(p.Train))
	}
	// Only refused rows: the error lists them.
	if err := os.WriteFile(path, []byte(row+row), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Prepare(opts, tok); err == nil || !strings.Contains(err.Error(), "skipped: "+path+":1") {
		t.Errorf("all refused: %v", err)
	}
}

func TestPrepareCompletionOnABaseModel(t *testing.T) {
	tok := llamaTok("") // no chat template
	tok.cfg["eos_token"] = "<|end_of_text|>"
	p, err := Prepare(Options{Path: fixtures + "completion.jsonl", MaxLength: 64, SkipBadRows: true}, tok)
	if err != nil {
		t.Fatal(err)
	}
	if p.Stats.Template != "plain" || len(p.Train) != 2 || p.Stats.BadRows != 1 {
		t.Fatalf("template %s, %d train, %d bad", p.Stats.Template, len(p.Train), p.Stats.BadRows)
	}
	for _, s := range p.Train {
		var run []int
		for i, l := range s.Labels {
			if l != IgnoreIndex {
				run = append(run, int(s.Tokens[i]))
			}
		}
		if s.Tokens[0] != int32(tok.vocab["<|begin_of_text|>"]) || !strings.HasSuffix(tok.Decode(run, false), "<|end_of_text|>") {
			t.Errorf("%s: tokens %v trained %q", s.Source, s.Tokens, tok.Decode(run, false))
		}
	}
}

func TestPrepareReadsShards(t *testing.T) {
	dir := t.TempDir()
	data, err := os.ReadFile(fixtures + "tiny-chat.jsonl")
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.SplitAfter(string(data), "\n")
	if err := os.MkdirAll(filepath.Join(dir, "data"), 0o755); err != nil {
		t.Fatal(err)
	}
	for i, part := range []string{strings.Join(lines[:25], ""), strings.Join(lines[25:], "")} {
		name := filepath.Join(dir, "data", []string{"train-00000-of-00002.jsonl", "train-00001-of-00002.jsonl"}[i])
		if err := os.WriteFile(name, []byte(part), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "README.md"), []byte("not data"), 0o644); err != nil {
		t.Fatal(err)
	}
	tok := chatmlTok("")
	for _, path := range []string{dir, filepath.Join(dir, "data", "train-*.jsonl")} {
		p, err := Prepare(Options{Path: path, Template: "chatml", MaxLength: 256}, tok)
		if err != nil {
			t.Fatal(err)
		}
		if len(p.Stats.Files) != 2 || p.Stats.Rows != 40 || len(p.Train) != 40 {
			t.Errorf("%s: files %v rows %d train %d", path, p.Stats.Files, p.Stats.Rows, len(p.Train))
		}
	}
	for _, path := range []string{filepath.Join(dir, "none-*.jsonl"), t.TempDir()} {
		if _, err := Prepare(Options{Path: path, Template: "chatml", MaxLength: 256}, tok); err == nil {
			t.Errorf("%s: no error", path)
		}
	}
}

// failingTok is a tokenizer that disowns its encodings after the first
// text containing trigger, as *tokenizer.Tokenizer does when a regex
// times out.
type failingTok struct {
	*fakeTok
	trigger string
	mu      sync.Mutex
	err     error
}

var _ FallibleEncoder = (*failingTok)(nil)

func (t *failingTok) Encode(text string, addSpecial bool) []int {
	if strings.Contains(text, t.trigger) {
		t.mu.Lock()
		t.err = errors.New(`tokenizer.json pre_tokenizer.pattern.Regex: regex "(x+x+)+y" gave up`)
		t.mu.Unlock()
		return nil
	}
	return t.fakeTok.Encode(text, addSpecial)
}

func (t *failingTok) Err() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.err
}

// TestPrepareFailsWhenTheTokenizerGivesUp: a tokenizer that reports its
// encodings as broken fails the preparation with its reason, instead of
// training on what it returned.
func TestPrepareFailsWhenTheTokenizerGivesUp(t *testing.T) {
	tok := &failingTok{fakeTok: chatmlTok(""), trigger: "7 times 6"}
	_, err := Prepare(Options{Path: fixtures + "tiny-chat.jsonl", Template: "chatml", MaxLength: 256}, tok)
	if err == nil || !strings.Contains(err.Error(), `regex "(x+x+)+y" gave up`) {
		t.Fatalf("Prepare with a failed tokenizer: %v", err)
	}
}

// TestPrepareChecksTheObjective: preference pairs only for a preference
// objective, single answers only for supervised training, anything when
// the caller names no objective.
func TestPrepareChecksTheObjective(t *testing.T) {
	cases := []struct {
		file string
		obj  Objective
		want string // "" = accepted
	}{
		{"tiny-chat.jsonl", ObjectivePreference, "DPO needs preference data (prompt, chosen, rejected); " + fixtures + "tiny-chat.jsonl is messages"},
		{"preference.jsonl", ObjectiveSFT, fixtures + "preference.jsonl holds preference pairs"},
		{"tiny-chat.jsonl", ObjectiveSFT, ""},
		{"preference.jsonl", ObjectivePreference, ""},
		{"preference.jsonl", ObjectiveAny, ""},
		{"tiny-chat.jsonl", ObjectiveAny, ""},
	}
	for _, c := range cases {
		_, err := Prepare(Options{Path: fixtures + c.file, Template: "chatml", MaxLength: 256, Objective: c.obj}, chatmlTok(""))
		switch {
		case c.want == "" && err != nil:
			t.Errorf("%s for %q: %v", c.file, c.obj, err)
		case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
			t.Errorf("%s for %q: error %v, want %q", c.file, c.obj, err, c.want)
		}
	}
}

// TestPrepareWarnsOfAnUnreadImageColumn: plain-text messages beside an
// image or images column train on the text, and the stats say so once,
// naming the file and line of the first row and the column; a column that names no
// image (null, empty) or that the run maps to a role says nothing.
func TestPrepareWarnsOfAnUnreadImageColumn(t *testing.T) {
	dir := t.TempDir()
	row := func(images string) string {
		return `{"messages": [{"role": "user", "content": "What is shown?"}, {"role": "assistant", "content": "A cat."}]` + images + "}\n"
	}
	write := func(name string, rows ...string) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte(strings.Join(rows, "")), 0o644); err != nil {
			t.Fatal(err)
		}
		return path
	}
	tok := chatmlTok("")
	for _, tc := range []struct {
		path, want string
		cols       Columns
	}{
		{write("images.jsonl", row(""), row(`, "images": ["a.png", "b.png"]`), row(`, "images": ["c.png"]`)), filepath.Join(dir, "images.jsonl") + `:2: column "images" is not read`, nil},
		{write("image.jsonl", row(`, "image": "a.png"`)), filepath.Join(dir, "image.jsonl") + `:1: column "image" is not read`, nil},
		{write("none.jsonl", row(`, "images": []`), row(`, "image": null`), row(`, "image": ""`)), "", nil},
		{write("mapped.jsonl", `{"prompt": "Describe", "image": "a cat on a mat"}`+"\n"), "", Columns{"completion": "image"}},
	} {
		p, err := Prepare(Options{Path: tc.path, Template: "chatml", MaxLength: 64, Columns: tc.cols}, tok)
		if err != nil {
			t.Fatal(err)
		}
		w := p.Stats.Warnings
		if tc.want == "" && len(w) != 0 {
			t.Errorf("%s: warnings %q, want none", tc.path, w)
		}
		if tc.want != "" && (len(w) != 1 || !strings.Contains(w[0], tc.want) || !strings.Contains(w[0], "images are read only when training a vision model")) {
			t.Errorf("%s: warnings %q, want one with …%s…", tc.path, w, tc.want)
		}
		if len(p.Train) == 0 {
			t.Errorf("%s: nothing trained", tc.path)
		}
	}
}

// When the template refuses every row, the error names the first refused
// row of the file, not the first after shuffling; with skip_bad_rows the
// skipped samples are in file order too.
func TestPrepareTemplateRefusalNamesFirstRowInFile(t *testing.T) {
	tok := newFakeTok("<bos>", "<start_of_turn>", "<end_of_turn>")
	tok.cfg["bos_token"] = "<bos>"
	path := filepath.Join(t.TempDir(), "mentor.jsonl")
	row := `{"messages":[{"role":"user","content":"a"},{"role":"user","content":"b"},{"role":"assistant","content":"c"}]}` + "\n"
	if err := os.WriteFile(path, []byte(strings.Repeat(row, 100)), 0o644); err != nil {
		t.Fatal(err)
	}
	opts := Options{Path: path, Template: "gemma-3", MaxLength: 64}
	for _, seed := range []int64{0, 1, 42} {
		opts.Seed = seed
		if _, err := Prepare(opts, tok); err == nil || !strings.Contains(err.Error(), path+":1: ") {
			t.Errorf("seed %d: %v, want the error to name %s:1", seed, err, path)
		}
	}
	opts.SkipBadRows = true
	_, err := Prepare(opts, tok)
	if err == nil || !strings.Contains(err.Error(), "skipped: "+path+":1: ") || !strings.Contains(err.Error(), "skipped: "+path+":5: ") {
		t.Errorf("all refused, skipping: %v, want samples of lines 1 to 5", err)
	}
}

// When no row has a token to train on, the "e.g." examples of the error
// are the first dropped rows of the file in order, not the first after
// shuffling (as the template-refused rows above).
func TestPrepareDroppedSamplesInFileOrder(t *testing.T) {
	tok := newFakeTok("<bos>", "<start_of_turn>", "<end_of_turn>")
	tok.cfg["bos_token"] = "<bos>"
	path := filepath.Join(t.TempDir(), "mentor.jsonl")
	row := `{"messages":[{"role":"user","content":"a"}]}` + "\n"
	if err := os.WriteFile(path, []byte(strings.Repeat(row, 100)), 0o644); err != nil {
		t.Fatal(err)
	}
	opts := Options{Path: path, Template: "gemma-3", MaxLength: 64}
	for _, seed := range []int64{0, 1, 42} {
		opts.Seed = seed
		_, err := Prepare(opts, tok)
		if err == nil {
			t.Fatalf("seed %d: no error, want none of the rows to have a token to train on", seed)
		}
		at := -1
		for line := 1; line <= maxSamples; line++ {
			want := fmt.Sprintf("e.g. %s:%d: %s", path, line, DropNoAssistant)
			i := strings.Index(err.Error(), want)
			if i <= at {
				t.Errorf("seed %d: %q missing or out of order in:\n%v", seed, want, err)
				break
			}
			at = i
		}
	}
}

// A row that cannot be read stops the read with its file and line and says
// how to go on: fix it, or skip such rows. A row that does not convert
// after others did says so too; a first row that does not convert (more
// likely the wrong format) and an error that already names
// skip_bad_rows (invalid UTF-8) do not get the advice.
func TestPrepareBadRowSaysHowToGoOn(t *testing.T) {
	tok := chatmlTok("")
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := `{"instruction": "a", "output": "b"}` + "\n"
	for _, c := range []struct {
		name, body, want string
		advice           bool
	}{
		{"json.jsonl", good + `{"instruction": "broken", "output": ` + "\n" + good, "json.jsonl:2: invalid JSON: unexpected end of input; " + SkipBadRowsAdvice, true},
		{"field.jsonl", good + `{"instruction": "a"}` + "\n", `field.jsonl:2: field "output": missing`, true},
		{"first.jsonl", `{"instruction": "a"}` + "\n" + good, `first.jsonl:1: field "output": missing`, false},
		{"utf8.jsonl", good + "{\"instruction\": \"\xff\", \"output\": \"b\"}\n", "utf8.jsonl:2: invalid UTF-8", false},
	} {
		opts := Options{Path: write(c.name, c.body), Format: "alpaca", Template: "chatml", MaxLength: 64}
		_, err := Prepare(opts, tok)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want it to hold %q", c.name, err, c.want)
			continue
		}
		if got := strings.Count(err.Error(), "skip_bad_rows"); c.advice != strings.Contains(err.Error(), SkipBadRowsAdvice) || got > 1 {
			t.Errorf("%s: %v: advice %v, want %v, once", c.name, err, !c.advice, c.advice)
		}
		opts.SkipBadRows = true
		if p, err := Prepare(opts, tok); err != nil || p.Stats.BadRows != 1 {
			t.Errorf("%s with skip_bad_rows: %v", c.name, err)
		}
	}
}
