package chat

import (
	"context"
	"fmt"

	"whet/datasets"
	"whet/datasets/vision"
	"whet/engine"
)

// Chatting with images on a Gemma 3 vision model: the messages' image parts
// become <start_of_image> in the template's text, Gemma3Processor's full
// image sequence replaces each, and the images' pixel values go to the
// generator's prefill.

// Gemma3Processor is the image processor of the session's model: its
// preprocessor_config.json when the folder has one, else the released
// defaults at the tower's image size.
func (s *Session) Gemma3Processor(modelDir string) (vision.Gemma3, error) {
	v := s.Model.Gemma3Vision
	if v == nil {
		return vision.Gemma3{}, fmt.Errorf("model %s has no vision tower loaded: it cannot look at images (whet chat loads it with --vision or --image)", s.Model.Cfg.ModelType)
	}
	return engine.LoadGemma3ImageProcessor(modelDir, &v.Cfg)
}

// ImagePrompt is a prompt with its images ready for the model.
type ImagePrompt struct {
	IDs    []int32
	Pixels []float32 // [Images, 3, S, S]
	Images int       // images and crops
}

// EncodeWithImages renders msgs (image parts in order: images[i] is the
// i-th image part), expands each image into the processor's image
// sequence and tokenizes the result.
func (s *Session) EncodeWithImages(msgs []datasets.Message, images []*vision.Gemma3Output) (*ImagePrompt, error) {
	v := s.Model.Gemma3Vision
	if v == nil {
		return nil, fmt.Errorf("model %s has no vision tower loaded: it cannot look at images (whet chat loads it with --vision or --image)", s.Model.Cfg.ModelType)
	}
	ro := datasets.RenderOptionsFor(s.Tok.Config())
	ro.AddGenerationPrompt = true
	ro.EnableThinking = s.thinking
	r, err := s.Template.Render(msgs, ro)
	if err != nil {
		return nil, err
	}
	tokens := vision.DefaultGemma3Tokens()
	tokens.SeqLen = v.Cfg.TokensPerImage
	crops := make([]int, len(images))
	p := &ImagePrompt{}
	for i, im := range images {
		crops[i] = im.NumCrops
		for _, px := range im.PixelValues {
			p.Pixels = append(p.Pixels, px...)
			p.Images++
		}
	}
	text, err := vision.ExpandGemma3Images(r.Text, crops, tokens)
	if err != nil {
		return nil, err
	}
	ids := s.Tok.Encode(text, s.Template.AddSpecialTokens)
	if err := s.Tok.Err(); err != nil {
		return nil, err
	}
	p.IDs = make([]int32, len(ids))
	count := 0
	for i, id := range ids {
		p.IDs[i] = int32(id)
		if int32(id) == v.Cfg.ImageTokenID {
			count++
		}
	}
	if want := p.Images * v.Cfg.TokensPerImage; count != want {
		return nil, fmt.Errorf("the prompt tokenizes to %d image tokens (id %d), %d images need %d: does the tokenizer know %q as one token?",
			count, v.Cfg.ImageTokenID, p.Images, want, tokens.Image)
	}
	return p, nil
}

// GenerateWithImages answers msgs whose image parts are images (processed
// with Gemma3Processor), as Generate does for text.
func (s *Session) GenerateWithImages(ctx context.Context, msgs []datasets.Message, images []*vision.Gemma3Output, o engine.SampleOptions, tuned bool, onText func(string)) (Reply, error) {
	p, err := s.EncodeWithImages(msgs, images)
	if err != nil {
		return Reply{}, err
	}
	if err := s.gen.SetImages(p.Pixels, p.Images); err != nil {
		return Reply{}, err
	}
	defer s.gen.SetImages(nil, 0)
	return s.Continue(ctx, p.IDs, o, tuned, onText)
}
