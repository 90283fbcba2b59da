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

// IsTemplateText reports whether a data.template value is the Jinja text
// itself rather than a name or a file.
func IsTemplateText(value string) bool { return isJinjaText(value) }

// isJinjaText: a value holding a Jinja tag or expression is the template
// itself (a YAML block in the run file), no name has either.
func isJinjaText(value string) bool {
	return strings.Contains(value, "{{") || strings.Contains(value, "{%")
}

// TemplateSettingJinja is the Jinja a data.template value carries itself:
// the text, or the file's content (ok false for a built-in family's name,
// whose Jinja is Template.Jinja). An export writes it as the user wrote
// it, even when a built-in family renders it.
func TemplateSettingJinja(value, field string) (jinja string, ok bool, err error) {
	switch {
	case isJinjaText(value):
		return value, true, nil
	case IsTemplateFile(value):
		b, err := os.ReadFile(strings.TrimSpace(value))
		if err != nil {
			return "", false, fmt.Errorf("%s: chat template file: %w", field, err)
		}
		return string(b), true, nil
	}
	return "", false, nil
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
	source, ok, err := TemplateSettingJinja(value, field)
	if err != nil {
		return nil, err
	}
	if !ok {
		t, ok := LookupTemplate(value)
		if !ok {
			return nil, fmt.Errorf("%s: unknown chat template %q (known: %s; or a .jinja file, or the Jinja text itself)", field, value, strings.Join(TemplateNames(), ", "))
		}
		return t, nil
	}
	origin := field
	if IsTemplateFile(value) {
		origin = strings.TrimSpace(value) + " (" + field + ")"
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
