package export

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"

	"whet/datasets"
	"whet/datasets/tokenizer"
)

// ChatTemplate is the chat template a run's exports carry. A run may train
// with a template other than its base model's own (data.template: a
// built-in family, a .jinja file or Jinja text); the exported model must be
// prompted as it was trained, so that template's Jinja goes where
// transformers (tokenizer_config.json, chat_template.jinja), llama.cpp (the
// GGUF's tokenizer.chat_template) and Ollama (the Modelfile) read one, as
// Unsloth's exports carry the template used for training.
type ChatTemplate struct {
	// Template renders it (nil when the base has none and the run named
	// none).
	Template *datasets.Template
	// Jinja is the text the exports write: the base tokenizer's own, or
	// the run's when it differs (Setting set).
	Jinja string
	// Setting is the value that chose a template other than the base's
	// (data.template, or whet export's --template), "" when the exports
	// keep the base's own template byte for byte.
	Setting string
	// Field names where Setting came from ("data.template", "--template").
	Field string
}

// Custom reports whether the exports carry a template other than the
// base's own.
func (c *ChatTemplate) Custom() bool { return c != nil && c.Setting != "" }

// resolveChatTemplate picks the template for a base tokenizer and a run's
// setting (field names it: data.template or --template; an empty setting
// means the base's own). The base's own template is kept, byte for byte,
// when the setting renders the same text: its very Jinja, or the built-in
// family the base's template is recognised as.
func resolveChatTemplate(tok *tokenizer.Tokenizer, modelDir, setting, field string) (*ChatTemplate, error) {
	base := tok.ChatTemplate()
	c := &ChatTemplate{Jinja: base}
	if setting == "" {
		// A built-in family when one renders it, else the Jinja
		// interpreter (the exports keep the Jinja text itself either way);
		// none when the base has no template.
		t, err := datasets.ModelTemplate(tok, modelDir)
		if err != nil {
			return nil, fmt.Errorf("export: %w", err)
		}
		c.Template = t
		return c, nil
	}
	t, err := datasets.TemplateSetting(setting, field)
	if err != nil {
		return nil, fmt.Errorf("export: %w", err)
	}
	c.Template = t
	// The setting's own Jinja (a file or the text) is written as the user
	// wrote it, even when a built-in family renders it; a family's name
	// gets the family's Jinja.
	jinja, ok, err := datasets.TemplateSettingJinja(setting, field)
	if err != nil {
		return nil, fmt.Errorf("export: %w", err)
	}
	if !ok {
		jinja = t.Jinja()
	}
	if jinja == base {
		return c, nil
	}
	if !t.Interpreted() && base != "" {
		if name, ok := datasets.DetectTemplate(base); ok && name == t.Name {
			return c, nil // renders as the base's own: keep its bytes
		}
	}
	if jinja == "" {
		return nil, fmt.Errorf("export: %s %s: chat template %s has no Jinja to write", field, setting, t.Name)
	}
	c.Jinja, c.Setting, c.Field = jinja, setting, field
	return c, nil
}

// templateSetting is the template value an export uses and where it came
// from: --template when given, else the run's data.template.
func templateSetting(run *RunFiles, override string) (setting, field string) {
	if override != "" {
		return override, "--template"
	}
	return run.Cfg.Data.Template, "data.template"
}

// runChatTemplate resolves a run's template from its base tokenizer
// without loading the model (the adapter-only exports).
func runChatTemplate(run *RunFiles, override string) (*ChatTemplate, error) {
	tok, err := tokenizer.Load(run.ModelDir)
	if err != nil {
		return nil, fmt.Errorf("export: %w", err)
	}
	setting, field := templateSetting(run, override)
	return resolveChatTemplate(tok, run.ModelDir, setting, field)
}

// chatTemplateNotice tells, at export time, that the files carry the run's
// training template rather than the base's.
func chatTemplateNotice(c *ChatTemplate, where string) string {
	return fmt.Sprintf("chat template: the run's %s, which it was trained with, not the base model's own, goes into %s", settingLabel(c), where)
}

// copyTokenizerFiles copies the base's tokenizer files into dir. With a
// custom template (c.Custom) every place the base kept its template holds
// the run's instead: chat_template.jinja when the base has one (newer
// transformers read it first), tokenizer_config.json's chat_template when
// it has that key or no chat_template.jinja; a base with neither file gets
// chat_template.jinja. Otherwise the files are copied byte for byte.
func copyTokenizerFiles(srcDir, dir string, c *ChatTemplate) error {
	for _, name := range tokenizerFiles {
		data, err := os.ReadFile(filepath.Join(srcDir, name))
		if os.IsNotExist(err) {
			continue
		}
		if err != nil {
			return fmt.Errorf("export: %w", err)
		}
		if c.Custom() {
			switch name {
			case tokenizerConfigFile:
				if data, err = withChatTemplate(filepath.Join(srcDir, name), data, c.Jinja, hasFile(srcDir, chatTemplateFile)); err != nil {
					return err
				}
			case chatTemplateFile:
				data = []byte(c.Jinja)
			}
		}
		if err := writeFile(filepath.Join(dir, name), data); err != nil {
			return err
		}
	}
	if c.Custom() && !hasFile(srcDir, chatTemplateFile) && !hasFile(srcDir, tokenizerConfigFile) {
		return writeFile(filepath.Join(dir, chatTemplateFile), []byte(c.Jinja))
	}
	return nil
}

const (
	tokenizerConfigFile = "tokenizer_config.json"
	chatTemplateFile    = "chat_template.jinja"
)

func hasFile(dir, name string) bool {
	_, err := os.Stat(filepath.Join(dir, name))
	return err == nil
}

// withChatTemplate returns tokenizer_config.json (data, read from path)
// with its chat_template set to jinja. When the base keeps its template in
// chat_template.jinja (jinjaFile) and this file has no chat_template key,
// the file is left as it is. Written as transformers writes it: keys
// sorted, two-space indent, no ASCII or HTML escaping, a final newline;
// numbers as they were.
func withChatTemplate(path string, data []byte, jinja string, jinjaFile bool) ([]byte, error) {
	cfg, err := decodeJSONMap(path, data)
	if err != nil {
		return nil, fmt.Errorf("export: %w", err)
	}
	if _, has := cfg["chat_template"]; jinjaFile && !has {
		return data, nil
	}
	// A list of named templates (default, tool_use, …) becomes the one the
	// run trained with: the others were the base's.
	cfg["chat_template"] = jinja
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(cfg); err != nil {
		return nil, fmt.Errorf("export: %s: %w", path, err)
	}
	return b.Bytes(), nil
}
