package datasets

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// IsTemplateFile reports whether a data.template value names a file of
// Jinja (its name ends in .jinja or .j2) rather than a built-in family.
// The run-file loader resolves such a path against the run file's folder,
// as it does data.path.
func IsTemplateFile(value string) bool {
	if isJinjaText(value) {
		return false
	}
	ext := strings.ToLower(filepath.Ext(strings.TrimSpace(value)))
	return ext == ".jinja" || ext == ".j2"
}

// isJinjaText: a value holding a Jinja tag or expression is the template
// itself (a YAML block in the run file), no name has either.
func isJinjaText(value string) bool {
	return strings.Contains(value, "{{") || strings.Contains(value, "{%")
}

// TemplateSetting is the chat template a data.template value names: a
// built-in family's name, a Jinja file (IsTemplateFile), or Jinja text.
// It is the one rule for that value: Prepare uses it, and so do whet
// chat's --template and the export's. field is how messages name the
// setting ("data.template"); a Jinja template's errors, at parse or when a
// conversation fails to render, name the field or the file with the
// template's line, as a model's own template names its
// tokenizer_config.json.
func TemplateSetting(value, field string) (*Template, error) {
	var origin, source string
	switch {
	case isJinjaText(value):
		origin, source = field, value
	case IsTemplateFile(value):
		path := strings.TrimSpace(value)
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("%s: chat template file: %w", field, err)
		}
		origin, source = path+" ("+field+")", string(b)
	default:
		t, ok := LookupTemplate(value)
		if !ok {
			return nil, fmt.Errorf("%s: unknown chat template %q (known: %s; or a .jinja file, or the Jinja text itself)", field, value, strings.Join(TemplateNames(), ", "))
		}
		return t, nil
	}
	t, _, err := TemplateForJinja(source)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", origin, err)
	}
	if t.Interpreted() {
		t.Origin = origin // a row's render error names it too
	}
	return t, nil
}
