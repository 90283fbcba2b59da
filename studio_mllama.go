package main

import (
	"context"
	"sync"

	"whet/datasets/vision"
	"whet/engine"
	"whet/engine/chat"
	"whet/tui"
)

// studioMllamaChat is the studio's side-by-side chat over a Llama 3.2
// Vision run (chat.MllamaSession): /image attaches a picture, and the base
// and the tuned side answer one after the other (it has no GenerateBoth:
// the batched generator is the text model's).
type studioMllamaChat struct {
	s *chat.MllamaSession
	b engine.Backend

	mu     sync.Mutex
	images map[string]*vision.MllamaOutput // processed, by path
}

var _ tui.ImageChat = (*studioMllamaChat)(nil)

func (c *studioMllamaChat) HasTuned() bool { return c.s.HasAdapter }

// CheckImage runs the model's Mllama processor on the file (/image).
func (c *studioMllamaChat) CheckImage(path string) error {
	_, err := c.image(path)
	return err
}

func (c *studioMllamaChat) image(path string) (*vision.MllamaOutput, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if im, ok := c.images[path]; ok {
		return im, nil
	}
	im, err := c.s.ProcessImage(path)
	if err != nil {
		return nil, err
	}
	if c.images == nil {
		c.images = map[string]*vision.MllamaOutput{}
	}
	c.images[path] = im
	return im, nil
}

// Generate answers the turns; a user turn's images come before its text,
// as for Gemma 3 (studioChat.Generate).
func (c *studioMllamaChat) Generate(ctx context.Context, turns []tui.ChatTurn, o engine.SampleOptions, tuned bool, onText func(string)) (tui.ChatReply, error) {
	msgs, images, err := chatMessages(turns, c.image)
	if err != nil {
		return tui.ChatReply{}, err
	}
	r, err := c.s.Generate(ctx, msgs, images, o, tuned, onText)
	return tui.ChatReply{Text: r.Text, Tokens: r.Tokens, TokensPerSec: r.TokensPerSec, Stop: r.Stop}, err
}

func (c *studioMllamaChat) Close() {
	c.s.Close()
	if cl, ok := c.b.(engine.Closer); ok {
		cl.Close()
	}
}
