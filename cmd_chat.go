package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"

	"whet/datasets"
	"whet/datasets/vision"
	"whet/engine"
	"whet/engine/chat"
)

func init() {
	register("chat", "chat with a model in the terminal: whet chat --model DIR [--adapter DIR | --run DIR]", runChat)
}

func runChat(args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("chat", flag.ContinueOnError)
	fs.SetOutput(stderr)
	model := fs.String("model", "", "model folder (config.json, safetensors, tokenizer) or Hugging Face repo id ORG/NAME[@REVISION]")
	adapter := fs.String("adapter", "", "PEFT adapter folder to apply")
	run := fs.String("run", "", "run directory: uses its model and adapter")
	template := fs.String("template", "", "chat template name (default: the run's data.template with --run, else detected from the tokenizer)")
	system := fs.String("system", "", "system prompt")
	backend := fs.String("backend", "auto", "auto, cpu or cuda")
	compare := fs.Bool("compare", false, "answer each prompt with the base model and with the tuned one (generated together where "+chat.BothTogetherEnv+" allows, printed base first)")
	maxNew := fs.Int("max-new-tokens", 256, "most tokens per reply")
	temp := fs.Float64("temperature", 0.7, "sampling temperature; 0 is greedy")
	topK := fs.Int("top-k", 0, "keep the k most likely tokens (0 = off)")
	topP := fs.Float64("top-p", 0.9, "nucleus sampling mass (1 = off)")
	minP := fs.Float64("min-p", 0, "drop tokens below this fraction of the best one's probability")
	rep := fs.Float64("repetition-penalty", 1.0, "penalise tokens already present (1 = off)")
	seed := fs.Uint64("seed", 0, "sampling seed")
	prompt := fs.String("prompt", "", "answer this one prompt and exit (otherwise read prompts from stdin)")
	imageFlag := fs.String("image", "", "image file (PNG or JPEG) for the first message (Gemma 3 vision models, implies --vision; Llama 3.2 Vision)")
	visionFlag := fs.Bool("vision", false, "load a Gemma 3 model's vision tower, so that /image PATH in the chat attaches an image to the next message (Llama 3.2 Vision always loads its own)")
	thinkingFlag := fs.String("thinking", "", "on or off: the template's enable_thinking (Qwen 3 reasons in a <think> block unless off); default: the template's own")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q (prompts are read from stdin, or give one with --prompt TEXT)", fs.Arg(0))
	}
	var thinking *bool
	switch *thinkingFlag {
	case "":
	case "on", "off":
		v := *thinkingFlag == "on"
		thinking = &v
	default:
		return fmt.Errorf("--thinking %q: want on or off", *thinkingFlag)
	}
	nf4Base := false
	if *run != "" {
		if _, err := os.Stat(engine.RunDir(*run).Config()); err != nil {
			return fmt.Errorf("--run %s is not a run directory (no run.yaml; whet runs lists the runs in runs/): %w", *run, err)
		}
		cfg, err := engine.LoadRunConfig(engine.RunDir(*run).Config())
		if err != nil {
			return err
		}
		if *model == "" {
			*model = cfg.Model
		}
		if *template == "" {
			// The run's data.template is what it trained with (the studio's
			// chat and whet export use it too).
			*template = cfg.Data.Template
		}
		if *adapter == "" {
			if a, ok := chat.FindAdapter(*run); ok {
				*adapter = a
			} else if _, err := os.Stat(filepath.Join(engine.RunDir(*run).Model(), "config.json")); err == nil {
				*model = engine.RunDir(*run).Model()
				if *compare {
					return fmt.Errorf("--compare: run %s is a full fine-tune (its model folder holds the tuned weights; there is no adapter to switch off for the base's answer); chat with --model %s for the base", *run, cfg.Model)
				}
			} else if *compare {
				return fmt.Errorf("--compare: run %s has no saved adapter yet (a run saves %s when it ends; has it finished? whet runs shows its status)", *run, engine.RunDir(*run).Adapter())
			} else {
				fmt.Fprintf(stderr, "whet chat: run %s has no saved adapter or model yet (has it finished? whet runs shows its status); chatting with its base model %s\n", *run, *model)
			}
		}
		nf4Base = chat.QLoRABase(cfg.Method, *adapter)
	}
	if *model == "" {
		return errors.New("--model DIR (or --run DIR) is required")
	}
	if *compare && *adapter == "" {
		return errors.New("--compare answers with the base and the tuned model: it needs an adapter (--adapter DIR, or --run DIR of a LoRA or QLoRA run)")
	}
	modelDir, err := pullModelArg(context.Background(), *model, nil, stderr)
	if err != nil {
		return err
	}
	b, notices, err := engine.OpenBackend(*backend)
	if err != nil {
		return err
	}
	for _, n := range notices {
		fmt.Fprintln(stderr, n)
	}
	// A cold kernel cache compiling in the background says so.
	engine.ReportKernelCompiles(b, func(line string) { fmt.Fprintln(stderr, line) })
	opts := engine.SampleOptions{MaxNewTokens: *maxNew, Temperature: *temp, TopK: *topK, TopP: *topP,
		MinP: *minP, RepetitionPenalty: *rep, Seed: *seed}
	if chat.IsMllama(modelDir) {
		// Llama 3.2 Vision always loads its vision tower.
		c := mllamaChat{model: *model, adapter: *adapter, system: *system, prompt: *prompt, image: *imageFlag, compare: *compare, opts: opts}
		return c.run(b, chat.Options{ModelDir: modelDir, AdapterDir: *adapter, Template: *template, NF4Base: nf4Base, Thinking: thinking}, stdin, stdout)
	}
	if (*visionFlag || *imageFlag != "") && engine.VisionModelKind(modelDir) == "" {
		flagName := "--vision"
		if *imageFlag != "" {
			flagName = "--image"
		}
		return fmt.Errorf("%s: %s is not a vision model (no vision tower: its config.json has no vision_config); images need a Gemma 3 vision model or Llama 3.2 Vision", flagName, *model)
	}
	s, err := chat.Open(b, chat.Options{ModelDir: modelDir, AdapterDir: *adapter, Template: *template, NF4Base: nf4Base, Thinking: thinking,
		Gemma3Vision: *visionFlag || *imageFlag != ""})
	if err != nil {
		return err
	}
	defer s.Close()

	var history []datasets.Message
	if *system != "" {
		history = append(history, datasets.Message{Role: "system", Content: *system})
	}
	// Images of the conversation (every turn re-reads the whole history)
	// and those waiting for the next message.
	var images, pending []*vision.Gemma3Output
	attach := func(path string) error {
		im, err := gemma3ChatImage(s, modelDir, path)
		if err != nil {
			return err
		}
		pending = append(pending, im)
		return nil
	}
	if *imageFlag != "" {
		if err := attach(*imageFlag); err != nil {
			return err
		}
	}
	answer := func(line string) error {
		msgs := append(append([]datasets.Message(nil), history...), userTurn(line, len(pending)))
		all := append(append([]*vision.Gemma3Output(nil), images...), pending...)
		if *compare && s.HasAdapter && len(all) == 0 && s.BothTogether() {
			var r chat.Reply
			err := interruptible(func(ctx context.Context) (err error) {
				r, err = compareBoth(ctx, s, msgs, opts, stdout)
				return err
			})
			if err != nil {
				return err
			}
			history = append(msgs, datasets.Message{Role: "assistant", Content: r.Text})
			pending = nil
			return nil
		}
		var last chat.Reply
		err := interruptible(func(ctx context.Context) (err error) {
			last, err = printAnswers(stdout, *compare, s.HasAdapter, func(tuned bool, onText func(string)) (chat.Reply, error) {
				if len(all) > 0 {
					return s.GenerateWithImages(ctx, msgs, all, opts, tuned, onText)
				}
				return s.Generate(ctx, msgs, opts, tuned, onText)
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
	if *prompt != "" {
		return answer(*prompt)
	}
	fmt.Fprintf(stdout, "chatting with %s (template %s%s); empty line or ctrl+d ends\n", *model, s.Template.Name,
		map[bool]string{true: ", adapter " + *adapter, false: ""}[s.HasAdapter])
	return readPrompts(stdin, stdout, attach, answer)
}

// interruptible runs f (one answer) with a context that Ctrl-C cancels
// while f runs: the answer stops there and the chat goes on. Between
// answers Ctrl-C has its usual meaning and ends whet chat. (One context
// for the whole chat stayed cancelled after the first Ctrl-C: every later
// answer ended at once with 0 tokens, and Ctrl-C no longer quit.)
func interruptible(f func(ctx context.Context) error) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	return f(ctx)
}

// readPrompts is the terminal side of whet chat: it prompts with "> ",
// ends on an empty line or the end of stdin, hands /image PATH to attach
// (an error is printed and the chat goes on) and every other line to
// answer.
func readPrompts(stdin io.Reader, stdout io.Writer, attach, answer func(string) error) error {
	sc := bufio.NewScanner(stdin)
	for {
		fmt.Fprint(stdout, "> ")
		if !sc.Scan() {
			fmt.Fprintln(stdout)
			return sc.Err()
		}
		line := strings.TrimSpace(sc.Text())
		if line == "" {
			return nil
		}
		if path, ok := strings.CutPrefix(line, "/image "); ok {
			if err := attach(strings.TrimSpace(path)); err != nil {
				fmt.Fprintln(stdout, "image:", err)
			} else {
				fmt.Fprintf(stdout, "image %s attached to your next message\n", strings.TrimSpace(path))
			}
			continue
		}
		if err := answer(line); err != nil {
			return err
		}
	}
}

// userTurn is the user's message: with images waiting, one image part
// for each, then the text.
func userTurn(line string, images int) datasets.Message {
	user := datasets.Message{Role: "user", Content: line}
	if images > 0 {
		for range images {
			user.Parts = append(user.Parts, datasets.ContentPart{Type: "image"})
		}
		user.Parts = append(user.Parts, datasets.ContentPart{Type: "text", Text: line})
	}
	return user
}

// printAnswers answers a turn with each model that replies: the adapter's
// (or the base alone), or with --compare and an adapter the base and then
// the tuned model, each labelled. generate streams one model's answer to
// onText; each answer is followed by its stats line. It returns the last
// reply (the history goes on with it).
func printAnswers(w io.Writer, compare, hasAdapter bool, generate func(tuned bool, onText func(string)) (chat.Reply, error)) (chat.Reply, error) {
	variants := []bool{hasAdapter}
	if compare && hasAdapter {
		variants = []bool{false, true}
	}
	var last chat.Reply
	for _, tuned := range variants {
		if len(variants) > 1 {
			label := "base"
			if tuned {
				label = "tuned"
			}
			fmt.Fprintf(w, "[%s] ", label)
		}
		r, err := generate(tuned, func(piece string) { fmt.Fprint(w, piece) })
		if err != nil {
			return chat.Reply{}, err
		}
		fmt.Fprint(w, replyStats(r))
		last = r
	}
	return last, nil
}

// replyStats is the line printed after each answer.
func replyStats(r chat.Reply) string {
	return fmt.Sprintf("\n  (%d tokens, %.1f tok/s, %s)\n", r.Tokens, r.TokensPerSec, r.Stop)
}

// compareBoth answers msgs with the base and the tuned model in one
// batched generation (chat.Session.GenerateBoth) and prints what the
// one-after-the-other --compare printed: the base's answer streamed as it
// comes, its numbers, then the tuned one's. The tuned answer's pieces wait
// while the base still answers, and stream live once it has ended. It
// returns the tuned reply (the history goes on with it).
func compareBoth(ctx context.Context, s *chat.Session, msgs []datasets.Message, opts engine.SampleOptions, w io.Writer) (chat.Reply, error) {
	var held strings.Builder // the tuned side's output while the base answers
	baseEnded, tunedEnded := false, false
	fmt.Fprint(w, "[base] ")
	held.WriteString("[tuned] ")
	endBase := func(r chat.Reply) {
		baseEnded = true
		fmt.Fprint(w, replyStats(r))
		fmt.Fprint(w, held.String())
		held.Reset()
	}
	b, t, err := s.GenerateBoth(ctx, msgs, msgs, opts, func(tuned bool, piece string) {
		switch {
		case !tuned:
			fmt.Fprint(w, piece)
		case baseEnded:
			fmt.Fprint(w, piece)
		default:
			held.WriteString(piece)
		}
	}, func(tuned bool, r chat.Reply) {
		if tuned {
			tunedEnded = true
			if baseEnded {
				fmt.Fprint(w, replyStats(r))
			} else {
				held.WriteString(replyStats(r))
			}
			return
		}
		endBase(r)
	})
	if err != nil {
		return chat.Reply{}, err
	}
	// Sides still going when ctx was cancelled were not reported.
	if !baseEnded {
		endBase(b)
	}
	if !tunedEnded {
		fmt.Fprint(w, replyStats(t))
	}
	return t, nil
}
