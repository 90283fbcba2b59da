// Command bpe trains the demo model's byte-level BPE tokenizer on a text
// corpus and writes it in the Hugging Face format (tokenizer.json,
// tokenizer_config.json with the plain ChatML template, and
// generation_config.json), so that whet and transformers both load it.
//
//	go run ./tools/demo/bpe -corpus .cache/demo/corpus.txt -vocab 4096 -out presets/demo/tokenizer
package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"
)

// specials get the first ids. <|endoftext|> separates pretraining
// documents and pads; <|im_start|> and <|im_end|> frame ChatML turns.
var specials = []string{"<|endoftext|>", "<|im_start|>", "<|im_end|>"}

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "bpe:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	fs := flag.NewFlagSet("bpe", flag.ContinueOnError)
	corpus := fs.String("corpus", "", "UTF-8 text file to train on")
	vocab := fs.Int("vocab", 4096, "vocabulary size, special tokens included")
	out := fs.String("out", "", "directory to write the tokenizer files into")
	minCount := fs.Int64("min-count", 2, "stop early when the best pair occurs fewer times than this")
	maxLength := fs.Int("max-length", 2048, "model_max_length written into tokenizer_config.json")
	workers := fs.Int("workers", 0, "goroutines splitting the corpus (0: one per CPU)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *corpus == "" || *out == "" {
		return errors.New("-corpus FILE and -out DIR are required")
	}
	data, err := os.ReadFile(*corpus)
	if err != nil {
		return err
	}
	text := strings.ToValidUTF8(string(data), "\uFFFD")

	start := time.Now()
	counts, err := countWords(text, *workers)
	if err != nil {
		return fmt.Errorf("%s: %w", *corpus, err)
	}
	fmt.Fprintf(os.Stderr, "bpe: %d bytes, %d distinct pre-tokens (%.1fs)\n", len(data), len(counts), time.Since(start).Seconds())

	start = time.Now()
	merges, err := train(counts, len(specials), *vocab, *minCount)
	if err != nil {
		return err
	}
	v := vocabulary{specials: specials, merges: merges}
	fmt.Fprintf(os.Stderr, "bpe: %d merges, vocabulary %d (%.1fs)\n", len(merges), len(specials)+256+len(merges), time.Since(start).Seconds())
	if err := writeFiles(*out, v, "<|im_end|>", "<|endoftext|>", *maxLength); err != nil {
		return fmt.Errorf("write %s: %w", *out, err)
	}
	return nil
}
