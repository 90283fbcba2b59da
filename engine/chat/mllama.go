package chat

import (
	"context"
	"fmt"

	"whet/datasets"
	"whet/datasets/tokenizer"
	"whet/datasets/vision"
	"whet/engine"
)

// Chatting with Llama 3.2 Vision (Mllama): the chat template writes
// <|image|> where each image part is, the images go through the model's
// Mllama processor (tiles, aspect-ratio ids and masks), the processor's
// cross-attention mask says which tokens see which tiles, and
// engine.MllamaGenerator answers (the vision tower once per image set,
// the cross-attention keys and values once per reply, a KV cache for the
// self-attention layers). One MllamaSession serves the base and the tuned
// model: the adapter is switched on and off over one copy of the weights.

// MllamaSession is a loaded Llama 3.2 Vision model ready to chat.
type MllamaSession struct {
	Model      *engine.MllamaModel
	Tok        *tokenizer.Tokenizer
	Template   *datasets.Template
	Processor  vision.Mllama
	HasAdapter bool
	MaxLen     int

	gen  *engine.MllamaGenerator
	text *Session // the template, tokenizer and stop rules (no text model)
}

// IsMllama reports whether a model folder is Llama 3.2 Vision (config.json
// model_type mllama), which OpenMllama opens instead of Open.
func IsMllama(modelDir string) bool {
	return engine.VisionModelKind(modelDir) == engine.VisionMllama
}

// OpenMllama loads a Llama 3.2 Vision folder (and a PEFT adapter as whet
// train writes it) with its tokenizer, template and image processor.
// Options.NF4Base holds the language model's linears in NF4 (a QLoRA
// run's base); Gemma3Vision is ignored. WHET_CUDA_VISION=0 refuses a GPU
// backend (engine.MllamaGenerationAllowed).
func OpenMllama(b engine.Backend, o Options) (*MllamaSession, error) {
	if err := engine.MllamaGenerationAllowed(b); err != nil {
		return nil, err
	}
	tok, tpl, err := loadTokenizer(o)
	if err != nil {
		return nil, err
	}
	m, err := engine.LoadMllamaWith(o.ModelDir, b, engine.MllamaOptions{NF4Linears: o.NF4Base, Compute: engine.MllamaComputeDType(b)})
	if err != nil {
		return nil, err
	}
	s := &MllamaSession{Model: m, Tok: tok, Template: tpl}
	fail := func(err error) (*MllamaSession, error) {
		s.Close()
		return nil, err
	}
	if s.Processor, err = engine.MllamaImageProcessor(o.ModelDir, &m.Cfg.Vision); err != nil {
		return fail(err)
	}
	if o.AdapterDir != "" {
		if _, err := engine.LoadMllamaAdapter(o.AdapterDir, m); err != nil {
			return fail(fmt.Errorf("adapter %s: %w", o.AdapterDir, err))
		}
		s.HasAdapter = true
	}
	s.MaxLen = sessionLen(o.MaxLen, m.Cfg.Text.MaxPositions)
	if s.gen, err = m.NewGenerator(s.MaxLen); err != nil {
		return fail(err)
	}
	s.text = &Session{Tok: tok, Template: tpl, MaxLen: s.MaxLen, thinking: o.Thinking, stopIDs: engine.StopIDs(tok, tpl)}
	return s, nil
}

// Close frees the model.
func (s *MllamaSession) Close() {
	if s.gen != nil {
		s.gen.Free()
		s.gen = nil
	}
	s.Model.Free()
}

// ProcessImage reads an image file and runs the model's processor on it.
func (s *MllamaSession) ProcessImage(path string) (*vision.MllamaOutput, error) {
	d, err := vision.DecodeFile(path)
	if err != nil {
		return nil, err
	}
	im, err := s.Processor.Process(d)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return im, nil
}

// Encode renders msgs with the generation prompt (images[i] is the i-th
// image part), tokenizes them and lays out the sample the generator takes:
// the pixels, aspect-ratio ids and masks, and the cross-attention mask of
// the image tokens' spans.
func (s *MllamaSession) Encode(msgs []datasets.Message, images []*vision.MllamaOutput) (engine.MllamaSample, error) {
	var smp engine.MllamaSample
	ids, err := engine.EncodeChatThinking(s.Tok, s.Template, msgs, s.text.thinking)
	if err != nil {
		return smp, err
	}
	parts := 0
	for _, m := range msgs {
		for _, p := range m.Parts {
			if p.Type == "image" {
				parts++
			}
		}
	}
	if parts != len(images) {
		return smp, fmt.Errorf("the conversation has %d image parts but %d images", parts, len(images))
	}
	imageID := int32(s.Model.Cfg.ImageToken)
	ints := make([]int, len(ids))
	count := 0
	for i, id := range ids {
		ints[i] = int(id)
		if id == imageID {
			count++
		}
	}
	if count != len(images) {
		return smp, fmt.Errorf("the prompt tokenizes to %d image tokens (id %d) for %d images: does template %s write <|image|> for image parts, and does the tokenizer know it as one token?",
			count, imageID, len(images), s.Template.Name)
	}
	v := &s.Model.Cfg.Vision
	smp.IDs, smp.Images = ids, len(images)
	var tiles []int
	for i, im := range images {
		if len(im.PixelValues) != v.MaxTiles*v.Channels*v.ImageSize*v.ImageSize || len(im.AspectRatioMask) != v.MaxTiles {
			return smp, fmt.Errorf("image %d was processed for other tiles than the model's (%d of %d pixels)", i, v.MaxTiles, v.ImageSize)
		}
		smp.Pixels = append(smp.Pixels, im.PixelValues...)
		smp.AspectRatioIDs = append(smp.AspectRatioIDs, int32(im.AspectRatioID))
		for _, k := range im.AspectRatioMask {
			smp.AspectRatioMask = append(smp.AspectRatioMask, int32(k))
		}
		tiles = append(tiles, im.NumTiles)
	}
	if len(images) > 0 {
		for _, k := range vision.CrossAttentionMask(vision.CrossAttentionSpans(ints, int(imageID)), tiles, v.MaxTiles, len(ints)) {
			smp.CrossMask = append(smp.CrossMask, int32(k))
		}
	}
	return smp, nil
}

// Generate answers msgs whose image parts are images (ProcessImage's
// outputs, in order; none for a text-only conversation). tuned selects
// the adapter (ignored without one). onText receives the reply's text as
// it grows.
func (s *MllamaSession) Generate(ctx context.Context, msgs []datasets.Message, images []*vision.MllamaOutput, o engine.SampleOptions, tuned bool, onText func(string)) (Reply, error) {
	smp, err := s.Encode(msgs, images)
	if err != nil {
		return Reply{}, err
	}
	return s.Continue(ctx, smp, o, tuned, onText)
}

// Continue generates after a prepared sample (Encode's).
func (s *MllamaSession) Continue(ctx context.Context, smp engine.MllamaSample, o engine.SampleOptions, tuned bool, onText func(string)) (Reply, error) {
	return s.text.answer(ctx, smp.IDs, o, s.Model, tuned && s.HasAdapter, onText, func(o engine.SampleOptions, onToken func(int32) bool) ([]int32, error) {
		return s.gen.Generate(ctx, smp, o, onToken)
	})
}
