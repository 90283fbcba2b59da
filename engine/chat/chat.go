// Package chat talks to a model: it renders a conversation with the
// model's chat template, generates a reply with the engine's KV-cache
// generator, streams the text and stops on the template's end tokens and
// stop strings. One Session serves both the base and the tuned model: the
// LoRA adapter is switched on and off over one copy of the base weights.
package chat

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
	"unicode/utf8"

	"whet/datasets"
	"whet/datasets/tokenizer"
	"whet/engine"
	"whet/engine/envswitch"
)

// Session is a loaded model ready to chat.
type Session struct {
	Model      *engine.Model
	Tok        *tokenizer.Tokenizer
	Template   *datasets.Template
	HasAdapter bool
	MaxLen     int

	gen      *engine.Generator
	both     *engine.GroupGenerator // GenerateBoth's two lanes, made on first use
	stopIDs  []int32
	thinking *bool // Options.Thinking
}

// Options says what to load.
type Options struct {
	ModelDir   string
	AdapterDir string // PEFT adapter folder; "" for none
	Template   string // template name; "" = detect from tokenizer_config.json
	MaxLen     int    // prompt + reply tokens; 0 = defaultMaxLen or the model's limit
	// NF4Base holds the decoder's linear weights in NF4, as a QLoRA run
	// trained its adapter over them, so the tuned model answers as it did
	// in training (NF4Base is set for QLoRA runs: QLoRABase).
	NF4Base bool
	// Gemma3Vision loads a Gemma 3 model's vision tower, so that
	// GenerateWithImages can look at images.
	Gemma3Vision bool
	// Thinking sets the template's enable_thinking (Qwen 3's switch for
	// reasoning before the answer); nil leaves the template's default.
	Thinking *bool
}

// QLoRABase reports whether a run's chat loads its base in NF4: a QLoRA
// run whose adapter is used (the export's GGUF default is the same base).
func QLoRABase(method, adapterDir string) bool { return method == "qlora" && adapterDir != "" }

// Open loads the model (and adapter) on b with its tokenizer and template.
func Open(b engine.Backend, o Options) (*Session, error) {
	tok, tpl, err := loadTokenizer(o)
	if err != nil {
		return nil, err
	}
	m, err := engine.LoadModelWith(o.ModelDir, b, engine.ModelOptions{NF4Linears: o.NF4Base, Gemma3Vision: o.Gemma3Vision})
	if err != nil {
		return nil, err
	}
	s := &Session{Model: m, Tok: tok, Template: tpl, thinking: o.Thinking}
	if o.AdapterDir != "" {
		if _, err := engine.LoadAdapter(o.AdapterDir, m); err != nil {
			m.Free()
			return nil, err
		}
		s.HasAdapter = true
	}
	s.MaxLen = sessionLen(o.MaxLen, m.Cfg.MaxPositions)
	if s.gen, err = m.NewGenerator(s.MaxLen); err != nil {
		m.Free()
		return nil, err
	}
	s.stopIDs = engine.StopIDs(tok, tpl)
	return s, nil
}

// defaultMaxLen is a session's length in tokens (prompt and reply) when
// Options.MaxLen leaves it open.
const defaultMaxLen = 2048

// sessionLen is a session's length: maxLen when set, else defaultMaxLen
// within the model's maxPositions (0: no limit known).
func sessionLen(maxLen, maxPositions int) int {
	if maxLen > 0 {
		return maxLen
	}
	if maxPositions > 0 && maxPositions < defaultMaxLen {
		return maxPositions
	}
	return defaultMaxLen
}

// loadTokenizer loads the model folder's tokenizer and the chat template
// the session uses (pickTemplate).
func loadTokenizer(o Options) (*tokenizer.Tokenizer, *datasets.Template, error) {
	tok, err := tokenizer.Load(o.ModelDir)
	if err != nil {
		return nil, nil, err
	}
	tpl, err := pickTemplate(tok, o.Template, o.ModelDir)
	if err != nil {
		return nil, nil, err
	}
	return tok, tpl, nil
}

// pickTemplate honours an explicit name, else recognises the tokenizer's
// own Jinja template among the built-in ones.
func pickTemplate(tok *tokenizer.Tokenizer, name, dir string) (*datasets.Template, error) {
	if name != "" {
		// --template, or the run's data.template: a name, a file or Jinja.
		return datasets.TemplateSetting(name, "template")
	}
	// A built-in family when one renders it, else the Jinja interpreter.
	t, err := datasets.ModelTemplate(tok, dir)
	if err == nil && t == nil {
		return nil, fmt.Errorf("%s: tokenizer_config.json has no chat_template; name one (e.g. --template chatml)", filepath.Join(dir, "tokenizer_config.json"))
	}
	return t, err
}

// Close frees the model.
func (s *Session) Close() {
	if s.gen != nil {
		s.gen.Free()
	}
	if s.both != nil {
		s.both.Free()
	}
	s.Model.Free()
}

// Reply is one finished answer.
type Reply struct {
	Text         string
	Tokens       int
	TokensPerSec float64
	// Stop says why it ended: "eos", "stop string", "length" or "cancelled".
	Stop string
}

// Encode renders msgs with the generation prompt and tokenizes them the
// way transformers' apply_chat_template(tokenize=True) does.
func (s *Session) Encode(msgs []datasets.Message) ([]int32, error) {
	return engine.EncodeChatThinking(s.Tok, s.Template, msgs, s.thinking)
}

// Generate answers msgs. tuned selects the adapter (ignored without one).
// onText receives the reply's text as it grows, in pieces.
func (s *Session) Generate(ctx context.Context, msgs []datasets.Message, o engine.SampleOptions, tuned bool, onText func(string)) (Reply, error) {
	prompt, err := s.Encode(msgs)
	if err != nil {
		return Reply{}, err
	}
	return s.Continue(ctx, prompt, o, tuned, onText)
}

// Continue generates after prompt ids.
func (s *Session) Continue(ctx context.Context, prompt []int32, o engine.SampleOptions, tuned bool, onText func(string)) (Reply, error) {
	return s.answer(ctx, prompt, o, s.Model, tuned && s.HasAdapter, onText, func(o engine.SampleOptions, onToken func(int32) bool) ([]int32, error) {
		return s.gen.Generate(ctx, prompt, o, onToken)
	})
}

// loraSwitch is a model whose adapter can be switched off for an answer
// of the base model.
type loraSwitch interface {
	SetLoRAEnabled(bool)
}

// answer is one reply after prompt, shared by the text and the Mllama
// sessions: the options fitted to the session (replyOptions), the adapter
// of m on only when tuned (and on again after), the tokens of generate
// streamed as text, and a cancelled ctx reported as stop "cancelled".
func (s *Session) answer(ctx context.Context, prompt []int32, o engine.SampleOptions, m loraSwitch, tuned bool, onText func(string),
	generate func(o engine.SampleOptions, onToken func(int32) bool) ([]int32, error)) (Reply, error) {
	o, err := s.replyOptions(prompt, o)
	if err != nil {
		return Reply{}, err
	}
	m.SetLoRAEnabled(tuned)
	defer m.SetLoRAEnabled(true)

	r := s.newReply(o.StopIDs, onText)
	start := time.Now()
	out, err := generate(o, r.token)
	if err != nil {
		if ctx.Err() != nil {
			r.stop = "cancelled"
		} else {
			return Reply{}, err
		}
	}
	return r.finish(len(out), time.Since(start).Seconds()), nil
}

// replyOptions checks that prompt leaves room in the session and fits the
// options to it: the reply's limit within MaxLen, the template's stop ids
// added.
func (s *Session) replyOptions(prompt []int32, o engine.SampleOptions) (engine.SampleOptions, error) {
	if len(prompt) >= s.MaxLen {
		return o, fmt.Errorf("the conversation is %d tokens; this session holds %d (start a new chat or raise the limit)", len(prompt), s.MaxLen)
	}
	if o.MaxNewTokens <= 0 || len(prompt)+o.MaxNewTokens > s.MaxLen {
		o.MaxNewTokens = s.MaxLen - len(prompt)
	}
	o.StopIDs = append(append([]int32(nil), o.StopIDs...), s.stopIDs...)
	return o, nil
}

// reply follows one answer as its tokens come: the text streamed, and why
// it ended.
type reply struct {
	s     *Session
	stops []int32
	ids   []int
	stop  string
	ts    *textStream
}

func (s *Session) newReply(stops []int32, onText func(string)) *reply {
	return &reply{s: s, stops: stops, stop: "length", ts: &textStream{stops: s.Template.StopStrings, emit: onText}}
}

// token takes the next token and says whether the answer goes on.
func (r *reply) token(id int32) bool {
	for _, sid := range r.stops {
		if id == sid {
			r.stop = "eos"
			return false
		}
	}
	r.ids = append(r.ids, int(id))
	if r.ts.push(r.s.Tok.Decode(r.ids, true)) {
		r.stop = "stop string"
		return false
	}
	return true
}

// finish flushes the text and makes the Reply of tokens generated in dt
// seconds.
func (r *reply) finish(tokens int, dt float64) Reply {
	r.ts.flush()
	return Reply{Text: r.ts.text, Tokens: tokens, TokensPerSec: float64(tokens) / dt, Stop: r.stop}
}

// GenerateBoth answers the base model's conversation and the tuned
// model's (each side keeps its own history) together: one batched
// generation (engine.GroupGenerator.GenerateMany) whose first lane runs
// without the adapter and second with it (TunedFrom), so each token reads
// the weights once for both answers. Each reply is, token for token, what
// Generate gives its side alone with the same options. onText receives
// each side's text as it grows; onDone, when set, receives each side's
// reply as soon as that side has ended (a stop id, a stop string or its
// length), while the other may go on: each reply's TokensPerSec counts
// its own tokens over the time until it ended. A side still going when
// ctx is cancelled ends with Stop "cancelled" and no error, as Generate
// does; onDone is not called for it. Without an adapter it is an error.
// The two lanes' KV cache (a pool of blocks for MaxLen tokens each) is
// allocated on the first call and kept.
func (s *Session) GenerateBoth(ctx context.Context, baseMsgs, tunedMsgs []datasets.Message, o engine.SampleOptions, onText func(tuned bool, piece string), onDone func(tuned bool, r Reply)) (base, tuned Reply, err error) {
	if !s.HasAdapter {
		return Reply{}, Reply{}, fmt.Errorf("no adapter loaded: there is no tuned model to answer beside the base")
	}
	var prompts [][]int32
	var opts []engine.SampleOptions
	replies := make([]*reply, 2)
	for i, msgs := range [][]datasets.Message{baseMsgs, tunedMsgs} {
		p, err := s.Encode(msgs)
		if err != nil {
			return Reply{}, Reply{}, err
		}
		lo, err := s.replyOptions(p, o)
		if err != nil {
			return Reply{}, Reply{}, err
		}
		prompts, opts = append(prompts, p), append(opts, lo)
		side := i == 1
		emit := func(piece string) {
			if onText != nil {
				onText(side, piece)
			}
		}
		replies[i] = s.newReply(lo.StopIDs, emit)
	}
	if s.both == nil {
		blocks := 2 * ((s.MaxLen + engine.DefaultKVBlockTokens - 1) / engine.DefaultKVBlockTokens)
		if s.both, err = s.Model.NewPagedGroupGenerator(2, s.MaxLen, engine.DefaultKVBlockTokens, blocks); err != nil {
			return Reply{}, Reply{}, err
		}
	}
	s.both.TunedFrom = 1
	start := time.Now()
	// A lane ends where GenerateMany ends it: its reply refuses the token
	// (a stop id or a stop string) or it reaches its limit.
	ended := make([]*Reply, 2)
	counts := make([]int, 2)
	s.both.LaneToken = func(lane int, id int32) bool {
		keep := replies[lane].token(id)
		counts[lane]++
		if !keep || counts[lane] == opts[lane].MaxNewTokens {
			r := replies[lane].finish(counts[lane], time.Since(start).Seconds())
			ended[lane] = &r
			if onDone != nil {
				onDone(lane == 1, r)
			}
		}
		return keep
	}
	out, err := s.both.GenerateMany(ctx, prompts, opts, nil)
	s.both.LaneToken = nil
	if err != nil {
		if ctx.Err() == nil {
			return Reply{}, Reply{}, err
		}
		for _, r := range replies {
			if r.stop == "length" { // still going when cancelled
				r.stop = "cancelled"
			}
		}
	}
	dt := time.Since(start).Seconds()
	result := func(i int) Reply {
		if ended[i] != nil {
			return *ended[i]
		}
		n := 0
		if i < len(out) {
			n = len(out[i])
		}
		return replies[i].finish(n, dt)
	}
	return result(0), result(1), nil
}

// BothTogetherEnv chooses whether the side-by-side chats (the studio's
// and whet chat --compare) answer the base and the tuned side together
// (GenerateBoth) or one after the other: 0 one after the other; anything
// else, or unset, together on every backend. The CPU's tests prove each
// side equal to its model alone; on an H100 tools/gpu/chat-both did too
// (TestChatBothMatchesAlone: in float32 together equals alone and the
// CPU for both sides over two rounds; in bf16 the batched and the lone
// answers part after some tokens, as bf16 products of other GEMM shapes
// round otherwise).
const BothTogetherEnv = "WHET_CHAT_BATCH"

// BothTogether applies BothTogetherEnv: true unless it is 0.
func (s *Session) BothTogether() bool {
	return envswitch.On(BothTogetherEnv)
}

// textStream turns the growing decoded text of a reply into pieces for
// the screen. It cuts the reply before a stop string, and holds back an
// incomplete UTF-8 sequence (decoded as U+FFFD) and any tail that could
// still grow into a stop string, so nothing shown is ever taken back.
type textStream struct {
	stops   []string
	emit    func(string)
	text    string // the reply so far (cut at a stop string)
	emitted int    // bytes of text already emitted
}

// push takes the whole decoded reply so far; it reports a stop string.
func (t *textStream) push(full string) bool {
	for _, ss := range t.stops {
		if i := strings.Index(full, ss); i >= 0 {
			t.text = full[:i]
			t.flush()
			return true
		}
	}
	t.text = full
	safe := len(full)
	if strings.HasSuffix(full, string(utf8.RuneError)) {
		safe -= len(string(utf8.RuneError))
	}
	safe = holdBackStopPrefix(full, safe, t.stops)
	if t.emit != nil && safe > t.emitted {
		t.emit(full[t.emitted:safe])
		t.emitted = safe
	}
	return false
}

// flush emits whatever is held back (at the end of a reply).
func (t *textStream) flush() {
	if t.emit != nil && len(t.text) > t.emitted {
		t.emit(t.text[t.emitted:])
	}
	t.emitted = len(t.text)
}

// holdBackStopPrefix moves safe back so that no suffix of full[:safe]
// could still grow into a stop string.
func holdBackStopPrefix(full string, safe int, stops []string) int {
	for _, ss := range stops {
		for k := min(len(ss)-1, safe); k > 0; k-- {
			if strings.HasSuffix(full[:safe], ss[:k]) {
				safe -= k
				break
			}
		}
	}
	return safe
}

// FindAdapter returns the adapter folder of a run directory, if any.
func FindAdapter(runDir string) (string, bool) {
	p := engine.RunDir(runDir).Adapter()
	if _, err := os.Stat(filepath.Join(p, "adapter_config.json")); err == nil {
		return p, true
	}
	return "", false
}
