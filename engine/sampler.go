package engine

import (
	"context"
	"fmt"
	"strings"

	"whet/datasets"
	"whet/datasets/tokenizer"
	"whet/engine/envswitch"
)

// StopIDs are the ids that end a reply: the template's stop tokens found
// in the vocabulary, then the tokenizer's EOS ids.
func StopIDs(tok *tokenizer.Tokenizer, tpl *datasets.Template) []int32 {
	seen := map[int]bool{}
	var out []int32
	add := func(id int) {
		if !seen[id] {
			seen[id] = true
			out = append(out, int32(id))
		}
	}
	if tpl != nil {
		for _, s := range tpl.StopTokens {
			if id, ok := tok.TokenID(s); ok {
				add(id)
			}
		}
	}
	for _, id := range tok.EOSIDs() {
		add(id)
	}
	return out
}

// Sampler makes the greedy sample generations shown while training: the
// same prompts every time, so the answers can be compared step to step.
type Sampler struct {
	Model     *Model
	Tok       *tokenizer.Tokenizer
	Template  *datasets.Template // nil: prompts are raw text
	Prompts   []string
	MaxTokens int
	// Extra, when set, adds events after the greedy samples (GRPO: some of
	// the step's sampled completions with their rewards).
	Extra func(step int) []SampleEvent
	gen   *GroupGenerator
	one   *Generator // one prompt, or SamplesBatchEnv=0
	stop  []int32
	// ranBatched says whether the last Run was batched (tests).
	ranBatched bool
}

// SamplesBatchEnv set to 0 makes the samples during training one prompt
// after another on the one-sequence generator (its decoding path, graph
// on a GPU by default) instead of all prompts in one batched generation
// (plain passes, one row per prompt); a single prompt always goes that
// way. Which is faster depends on the number of prompts and the card
// (whet bench --decode-batch measures both).
const SamplesBatchEnv = "WHET_SAMPLES_BATCH"

// encode renders one prompt as a user turn with the generation prompt.
func (s *Sampler) encode(prompt string) ([]int32, error) {
	if s.Template == nil {
		return encodeChecked(s.Tok, prompt, true)
	}
	return EncodeChat(s.Tok, s.Template, []datasets.Message{{Role: "user", Content: prompt}})
}

// EncodeChat renders msgs with the template and its generation prompt
// (the tokenizer's own BOS/EOS text in place) and tokenizes the result the
// way transformers' apply_chat_template(tokenize=True) does.
func EncodeChat(tok *tokenizer.Tokenizer, tpl *datasets.Template, msgs []datasets.Message) ([]int32, error) {
	return EncodeChatThinking(tok, tpl, msgs, nil)
}

// EncodeChatThinking is EncodeChat with the template variable
// enable_thinking set (Qwen 3: false closes an empty <think> block in the
// generation prompt, so the model answers without reasoning); nil leaves
// it undefined, the template's default. Templates without the variable
// ignore it.
func EncodeChatThinking(tok *tokenizer.Tokenizer, tpl *datasets.Template, msgs []datasets.Message, thinking *bool) ([]int32, error) {
	ro := datasets.RenderOptionsFor(tok.Config())
	ro.AddGenerationPrompt = true
	ro.EnableThinking = thinking
	r, err := tpl.Render(msgs, ro)
	if err != nil {
		return nil, err
	}
	return encodeChecked(tok, r.Text, tpl.AddSpecialTokens)
}

// encodeChecked encodes text and fails when a tokenizer.json regex gave up
// on it (the ids would be incomplete).
func encodeChecked(tok *tokenizer.Tokenizer, text string, addSpecial bool) ([]int32, error) {
	ids := tok.Encode(text, addSpecial)
	if err := tok.Err(); err != nil {
		return nil, err
	}
	return toInt32(ids), nil
}

func toInt32(ids []int) []int32 {
	out := make([]int32, len(ids))
	for i, id := range ids {
		out[i] = int32(id)
	}
	return out
}

// Run generates an answer to every prompt.
func (s *Sampler) Run(ctx context.Context, step int) ([]SampleEvent, error) {
	if s.MaxTokens <= 0 {
		s.MaxTokens = 48
	}
	var encoded [][]int32
	longest, blocks := 0, 0
	for _, p := range s.Prompts {
		ids, err := s.encode(p)
		if err != nil {
			return nil, fmt.Errorf("sample prompt %q: %w", p, err)
		}
		encoded = append(encoded, ids)
		longest = max(longest, len(ids))
		blocks += (len(ids) + s.MaxTokens + DefaultKVBlockTokens - 1) / DefaultKVBlockTokens
	}
	if len(encoded) == 0 {
		if s.Extra != nil {
			return s.Extra(step), nil
		}
		return nil, nil
	}
	if s.stop == nil {
		s.stop = StopIDs(s.Tok, s.Template)
	}
	var gens [][]int32
	var err error
	s.ranBatched = len(encoded) > 1 && envswitch.On(SamplesBatchEnv)
	if !s.ranBatched {
		gens, err = s.oneByOne(ctx, encoded, longest)
	} else {
		gens, err = s.batched(ctx, encoded, longest, blocks)
	}
	if err != nil {
		return nil, err
	}
	var out []SampleEvent
	for i, gen := range gens {
		text := s.Tok.Decode(toInts(gen), true)
		if s.Template != nil {
			for _, ss := range s.Template.StopStrings {
				if k := strings.Index(text, ss); k >= 0 {
					text = text[:k]
				}
			}
		}
		out = append(out, SampleEvent{Step: step, Prompt: s.Prompts[i], Text: strings.TrimSpace(text)})
	}
	if s.Extra != nil {
		out = append(out, s.Extra(step)...)
	}
	return out, nil
}

// batched answers every prompt in one batched generation (GenerateMany:
// the weights are read once per token for all prompts), their keys and
// values in a paged cache holding each prompt's own length.
func (s *Sampler) batched(ctx context.Context, encoded [][]int32, longest, blocks int) ([][]int32, error) {
	if s.gen != nil {
		if have, _ := s.gen.KVBlocks(); len(s.gen.lanes) < len(encoded) || s.gen.MaxLen < longest+s.MaxTokens || have < blocks {
			s.gen.Free()
			s.gen = nil
		}
	}
	if s.gen == nil {
		g, err := s.Model.NewPagedGroupGenerator(len(encoded), longest+s.MaxTokens, DefaultKVBlockTokens, blocks)
		if err != nil {
			return nil, err
		}
		s.gen = g
	}
	opts := make([]SampleOptions, len(encoded))
	for i := range opts {
		opts[i] = Greedy(s.MaxTokens, s.stop)
	}
	gens, err := s.gen.GenerateMany(ctx, encoded, opts, nil)
	if err != nil {
		return nil, fmt.Errorf("samples: %w", err)
	}
	return gens, nil
}

// oneByOne answers the prompts one after another.
func (s *Sampler) oneByOne(ctx context.Context, encoded [][]int32, longest int) ([][]int32, error) {
	if s.one == nil || s.one.MaxLen < longest+s.MaxTokens {
		if s.one != nil {
			s.one.Free()
		}
		g, err := s.Model.NewGenerator(longest + s.MaxTokens)
		if err != nil {
			return nil, err
		}
		s.one = g
	}
	var out [][]int32
	for i, ids := range encoded {
		gen, err := s.one.Generate(ctx, ids, Greedy(s.MaxTokens, s.stop), nil)
		if err != nil {
			return nil, fmt.Errorf("sample %d: %w", i, err)
		}
		out = append(out, gen)
	}
	return out, nil
}

// Free releases the sampler's generators.
func (s *Sampler) Free() {
	if s.gen != nil {
		s.gen.Free()
		s.gen = nil
	}
	if s.one != nil {
		s.one.Free()
		s.one = nil
	}
}

func toInts(ids []int32) []int {
	out := make([]int, len(ids))
	for i, id := range ids {
		out[i] = int(id)
	}
	return out
}

// NoSamplesNote begins the notice a run with train.sample_every set gives
// when it will make no sample generations all the same, so that a viewer
// (the studio's dashboard) can say so where the samples would be.
const NoSamplesNote = "no samples: "

// noSamplesNotice says why a run with train.sample_every set makes no
// samples (the trainer has no Sampler); prompts is how many sample
// prompts the run has, its own or its eval rows'.
func noSamplesNotice(data *PreparedData, prompts int) string {
	why := "this run's model does not generate while it trains"
	switch {
	case data.Vision == VisionMllama:
		why = "Llama 3.2 Vision runs generate none while they train"
	case data.Tokenizer == nil:
		why = "the run has no tokenizer to write prompts with"
	case prompts == 0:
		why = "no sample prompts (train.sample_prompts) and no eval rows to take them from"
	}
	return NoSamplesNote + why + "; train.sample_every is not used"
}
