// Package demo holds the data of whet's built-in demo: the mentor persona
// dataset (every answer explains with an everyday analogy and ends with a
// question), a held-out set of prompts for measuring how far a tuned model
// moved toward that persona, and the demo model's small byte-level BPE
// tokenizer. Everything is embedded so that the demo runs on a fresh
// machine with no network. docs/demo.md says how each file was made.
package demo

import (
	"bytes"
	"embed"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"whet/datasets"
)

// File names inside Files.
const (
	TrainFile    = "mentor.jsonl"
	HeldoutFile  = "heldout.jsonl"
	TokenizerDir = "tokenizer" // tokenizer.json, tokenizer_config.json, generation_config.json
)

//go:embed mentor.jsonl heldout.jsonl tokenizer
var files embed.FS

// Files is the embedded demo data, laid out as in this folder.
func Files() fs.FS { return files }

// Conversations reads one of the embedded JSONL files (TrainFile or
// HeldoutFile) through whet's own loader, as messages-format rows, so the
// demo is read exactly as a user's file would be.
func Conversations(name string) ([]datasets.Example, error) {
	data, err := files.ReadFile(name)
	if err != nil {
		return nil, fmt.Errorf("demo: %w", err)
	}
	res, err := datasets.ReadJSONL(bytes.NewReader(data), name, false)
	if err != nil {
		return nil, fmt.Errorf("demo: %w", err)
	}
	out := make([]datasets.Example, 0, len(res.Records))
	for _, rec := range res.Records {
		ex, rowErr := datasets.ToExample(rec, datasets.FormatMessages, nil)
		if rowErr != nil {
			return nil, fmt.Errorf("demo: %w", rowErr)
		}
		out = append(out, ex)
	}
	return out, nil
}

// Extract writes the embedded files under dir (created if missing), for the
// code paths that take file and folder names: the trainer reads
// dir/mentor.jsonl and the tokenizer loads dir/tokenizer.
func Extract(dir string) error {
	return fs.WalkDir(files, ".", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		dst := filepath.Join(dir, filepath.FromSlash(path))
		if d.IsDir() {
			if err := os.MkdirAll(dst, 0o755); err != nil {
				return fmt.Errorf("demo: extract: %w", err)
			}
			return nil
		}
		data, err := files.ReadFile(path)
		if err != nil {
			return fmt.Errorf("demo: extract %s: %w", path, err)
		}
		if err := os.WriteFile(dst, data, 0o644); err != nil {
			return fmt.Errorf("demo: extract: %w", err)
		}
		return nil
	})
}
