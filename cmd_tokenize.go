package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"

	"whet/datasets/tokenizer"
)

func init() {
	register("tokenize", "print the token ids of stdin as a JSON array", runTokenize)
}

// runTokenize is `whet tokenize --tokenizer DIR [--special]`: it reads all
// of stdin as one text, so that users can see exactly what a template or a
// dataset row turns into.
func runTokenize(args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("tokenize", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dir := fs.String("tokenizer", "", "directory with tokenizer.json (and tokenizer_config.json)")
	special := fs.Bool("special", false, "add the special tokens the tokenizer adds by default (BOS for Llama and Gemma)")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: whet tokenize --tokenizer DIR [--special] < text")
		fmt.Fprintln(stderr, "The text is all of stdin, a final newline included (use echo -n to leave it out).")
		fs.PrintDefaults()
	}
	if err := parseFlags(fs, args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil // usage was printed
		}
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q (the text is read from stdin)", fs.Arg(0))
	}
	if *dir == "" {
		return errors.New("--tokenizer DIR is required")
	}
	tok, err := tokenizer.Load(*dir)
	if err != nil {
		return err
	}
	text, err := io.ReadAll(stdin)
	if err != nil {
		return fmt.Errorf("read stdin: %w", err)
	}
	ids := tok.Encode(string(text), *special)
	if err := tok.Err(); err != nil {
		return err
	}
	out, err := json.Marshal(ids)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(stdout, "%s\n", out)
	return err
}
