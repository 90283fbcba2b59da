package main

import (
	"context"
	"fmt"
	"io"

	"whet/datasets"
	"whet/datasets/vision"
	"whet/engine"
	"whet/engine/chat"
)

// mllamaChat is whet chat on a Llama 3.2 Vision folder (chat.IsMllama):
// the model is opened with its vision tower (chat.OpenMllama), --image and
// /image PATH attach images to the next message, and every turn re-reads
// the history's images. --compare answers with the base and then the
// tuned model (no batched generation for Mllama).
type mllamaChat struct {
	model, adapter string
	system, prompt string
	image          string
	compare        bool
	opts           engine.SampleOptions
}

func (c mllamaChat) run(b engine.Backend, o chat.Options, stdin io.Reader, stdout io.Writer) error {
	s, err := chat.OpenMllama(b, o)
	if err != nil {
		return err
	}
	defer s.Close()
	var history []datasets.Message
	if c.system != "" {
		history = append(history, datasets.Message{Role: "system", Content: c.system})
	}
	var images, pending []*vision.MllamaOutput
	attach := func(path string) error {
		im, err := s.ProcessImage(path)
		if err != nil {
			return err
		}
		pending = append(pending, im)
		return nil
	}
	if c.image != "" {
		if err := attach(c.image); err != nil {
			return err
		}
	}
	answer := func(line string) error {
		msgs := append(append([]datasets.Message(nil), history...), userTurn(line, len(pending)))
		all := append(append([]*vision.MllamaOutput(nil), images...), pending...)
		var last chat.Reply
		err := interruptible(func(ctx context.Context) (err error) {
			last, err = printAnswers(stdout, c.compare, s.HasAdapter, func(tuned bool, onText func(string)) (chat.Reply, error) {
				return s.Generate(ctx, msgs, all, c.opts, tuned, onText)
			})
			return err
		})
		if err != nil {
			return err
		}
		history = append(msgs, datasets.Message{Role: "assistant", Content: last.Text})
		images, pending = all, nil
		return nil
	}
	if c.prompt != "" {
		return answer(c.prompt)
	}
	fmt.Fprintf(stdout, "chatting with %s (Llama 3.2 Vision, template %s%s); /image PATH attaches an image; empty line or ctrl+d ends\n", c.model, s.Template.Name,
		map[bool]string{true: ", adapter " + c.adapter, false: ""}[s.HasAdapter])
	return readPrompts(stdin, stdout, attach, answer)
}
