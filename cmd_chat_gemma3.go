package main

import (
	"fmt"

	"whet/datasets/vision"
	"whet/engine/chat"
)

// gemma3ChatImage reads an image for whet chat and runs the model's Gemma 3
// image processor on it.
func gemma3ChatImage(s *chat.Session, modelDir, path string) (*vision.Gemma3Output, error) {
	proc, err := s.Gemma3Processor(modelDir)
	if err != nil {
		return nil, err
	}
	d, err := vision.DecodeFile(path)
	if err != nil {
		return nil, err
	}
	im, err := proc.Process(d)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return im, nil
}
