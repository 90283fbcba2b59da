package hub

import (
	"path"
	"strings"
)

// runFiles are the files, besides the weights, that training, chat and
// export read from a model folder: the model and generation configs, the
// tokenizer in each of the formats a repo may ship it in, and the chat
// template when it lives outside tokenizer_config.json; for vision models
// the image processor's settings (read by datasets/vision).
var runFiles = map[string]bool{
	"preprocessor_config.json": true,
	"processor_config.json":    true,
	"config.json":              true,
	"generation_config.json":   true,
	"tokenizer.json":           true,
	"tokenizer_config.json":    true,
	"special_tokens_map.json":  true,
	"added_tokens.json":        true,
	"tokenizer.model":          true,
	"vocab.json":               true,
	"merges.txt":               true,
	"chat_template.json":       true,
	"chat_template.jinja":      true,
}

// Wanted is the one rule for which files of a repository a pull fetches:
// the run files above and the safetensors weights with their index, all at
// the top level. Everything else is left on the server: pickled weights
// (.bin, .pth, .pt), the original/ checkpoints some repos carry, GGUF and
// ONNX exports, READMEs and images.
func Wanted(name string) bool {
	if strings.Contains(name, "/") {
		return false
	}
	if runFiles[name] {
		return true
	}
	return path.Ext(name) == ".safetensors" || strings.HasSuffix(name, ".safetensors.index.json")
}

// ConfigOnly selects config.json alone: what `whet fit` reads to plan a
// run's memory.
func ConfigOnly(name string) bool { return name == "config.json" }
