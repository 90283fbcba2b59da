package engine

import (
	"errors"
	"fmt"
	"math"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"

	"whet/engine/spell"
)

// The yaml package names a bad key or value by its line and Go type
// ("line 5: field learning_rate not found in type engine.TrainConfig",
// "line 6: cannot unmarshal !!str `fast` into float64"). explainYAMLError
// rewrites those messages with the run-file key they are about
// (train.learning_rate, train.lr), what the key wants, and for an unknown
// key the one it probably meant.
var (
	yamlUnknownKey = regexp.MustCompile("^line (\\d+): field (.*) not found in type \\S+$")
	yamlBadValue   = regexp.MustCompile("^line (\\d+): cannot unmarshal !!(\\w+)(?: `(.*)`)? into (.+)$")
)

// keyAliases are the names other trainers (transformers' TrainingArguments,
// PEFT, TRL, Unsloth) give run-file keys, for "did you mean".
var keyAliases = map[string]string{
	"learning_rate":               "lr",
	"num_train_epochs":            "epochs",
	"num_epochs":                  "epochs",
	"batch_size":                  "micro_batch",
	"per_device_train_batch_size": "micro_batch",
	"gradient_accumulation_steps": "grad_accum",
	"gradient_accumulation":       "grad_accum",
	"lr_scheduler_type":           "schedule",
	"scheduler":                   "schedule",
	"warmup":                      "warmup_steps",
	"adam_beta1":                  "beta1",
	"adam_beta2":                  "beta2",
	"adam_epsilon":                "eps",
	"logging_steps":               "log_every",
	"save_steps":                  "save_every",
	"eval_steps":                  "eval_every",
	"save_total_limit":            "keep_checkpoints",
	"gradient_checkpointing":      "activation_checkpointing",
	"rank":                        "r",
	"lora_r":                      "r",
	"lora_alpha":                  "alpha",
	"lora_dropout":                "dropout",
	"max_seq_length":              "max_length",
	"max_seq_len":                 "max_length",
	"dataset":                     "path",
	"output_dir":                  "runs_dir",
	"model_name_or_path":          "model",
	"base_model":                  "model",
}

// explainYAMLError returns err with each of the yaml package's type errors
// said by run-file key; other errors come back as they are.
func explainYAMLError(data []byte, err error) error {
	var te *yaml.TypeError
	if !errors.As(err, &te) {
		return err
	}
	var root yaml.Node
	if yaml.Unmarshal(data, &root) != nil {
		return err
	}
	msgs := make([]string, 0, len(te.Errors))
	for _, m := range te.Errors {
		msgs = append(msgs, explainYAMLMessage(&root, m))
	}
	return errors.New(strings.Join(msgs, "; "))
}

func explainYAMLMessage(root *yaml.Node, msg string) string {
	if m := yamlUnknownKey.FindStringSubmatch(msg); m != nil {
		line, _ := strconv.Atoi(m[1])
		path, ok := findYAMLKey(root, nil, line, m[2])
		if !ok {
			return msg
		}
		parent := path[:len(path)-1]
		keys := runFileKeysUnder(parent)
		out := fmt.Sprintf("line %d: %s: unknown key", line, strings.Join(path, "."))
		if s := suggestKey(m[2], keys); s != "" {
			out += "; did you mean " + strings.Join(append(slices.Clone(parent), s), ".") + "?"
		}
		if len(keys) > 0 {
			where := "a run file"
			if len(parent) > 0 {
				where = strings.Join(parent, ".")
			}
			out += fmt.Sprintf(" (%s takes %s; docs/run-file.md has them all)", where, strings.Join(keys, ", "))
		}
		return out
	}
	if m := yamlBadValue.FindStringSubmatch(msg); m != nil {
		line, _ := strconv.Atoi(m[1])
		path, ok := findYAMLValue(root, nil, line, "!!"+m[2], m[3], m[3] != "")
		if !ok {
			return msg
		}
		got := "a " + yamlKindName(m[2])
		if m[3] != "" {
			got = strconv.Quote(m[3])
		}
		want := goTypeWanted(m[4])
		if t, ok := runFileFieldType(path); ok {
			want = kindWanted(t)
		}
		return fmt.Sprintf("line %d: %s: %s is not %s", line, strings.Join(path, "."), got, want)
	}
	return msg
}

// findYAMLKey is the key path of the mapping key named key on line.
func findYAMLKey(n *yaml.Node, path []string, line int, key string) ([]string, bool) {
	switch n.Kind {
	case yaml.DocumentNode, yaml.SequenceNode:
		for i, c := range n.Content {
			p := path
			if n.Kind == yaml.SequenceNode {
				p = indexed(path, i)
			}
			if got, ok := findYAMLKey(c, p, line, key); ok {
				return got, true
			}
		}
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			p := append(slices.Clone(path), k.Value)
			if k.Line == line && k.Value == key {
				return p, true
			}
			if got, ok := findYAMLKey(v, p, line, key); ok {
				return got, true
			}
		}
	}
	return nil, false
}

// findYAMLValue is the key path of the value node on line with the tag
// (and, when hasValue, the text) the yaml package could not read.
// The innermost such node is the one: in [a, [b]] a list item is the
// list that cannot be text, not the outer list.
func findYAMLValue(n *yaml.Node, path []string, line int, tag, value string, hasValue bool) ([]string, bool) {
	switch n.Kind {
	case yaml.DocumentNode, yaml.SequenceNode:
		for i, c := range n.Content {
			p := path
			if n.Kind == yaml.SequenceNode {
				p = indexed(path, i)
			}
			if got, ok := findYAMLValue(c, p, line, tag, value, hasValue); ok {
				return got, true
			}
		}
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			p := append(slices.Clone(path), n.Content[i].Value)
			if got, ok := findYAMLValue(n.Content[i+1], p, line, tag, value, hasValue); ok {
				return got, true
			}
		}
	}
	if len(path) > 0 && n.Line == line && n.ShortTag() == tag && (!hasValue || n.Value == value) {
		return path, true
	}
	return nil, false
}

// indexed names item i of the list at path: train.sample_prompts[2].
func indexed(path []string, i int) []string {
	p := slices.Clone(path)
	if len(p) == 0 {
		return []string{fmt.Sprintf("[%d]", i)}
	}
	p[len(p)-1] += fmt.Sprintf("[%d]", i)
	return p
}

// runFileFieldType is the Go type of the run-file key at path (a list
// item's type for train.sample_prompts[2]).
func runFileFieldType(path []string) (reflect.Type, bool) {
	t := reflect.TypeOf(RunConfig{})
	for _, name := range path {
		for t.Kind() == reflect.Pointer {
			t = t.Elem()
		}
		if t.Kind() != reflect.Struct {
			return nil, false
		}
		name, index, _ := strings.Cut(name, "[")
		f, ok := yamlField(t, name)
		if !ok {
			return nil, false
		}
		t = f.Type
		for ; index != ""; _, index, _ = strings.Cut(index, "[") {
			for t.Kind() == reflect.Pointer {
				t = t.Elem()
			}
			if t.Kind() != reflect.Slice {
				return nil, false
			}
			t = t.Elem()
		}
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	return t, true
}

// kindWanted says what a value of type t is, in run-file words.
func kindWanted(t reflect.Type) string {
	switch t.Kind() {
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "a whole number"
	case reflect.Bool:
		return "true or false"
	case reflect.String:
		return "a single value (text)"
	case reflect.Slice, reflect.Array:
		return "a list"
	case reflect.Map, reflect.Struct:
		return "a mapping of keys"
	}
	return "a " + t.String()
}

// runFileKeysUnder lists the keys a run file takes in the section at path
// (none: the top level), from RunConfig's yaml tags; nil when path is not
// a section of RunConfig.
func runFileKeysUnder(path []string) []string {
	t, ok := runFileFieldType(path)
	if !ok || t.Kind() != reflect.Struct {
		return nil
	}
	var keys []string
	for i := 0; i < t.NumField(); i++ {
		if name := yamlName(t.Field(i)); name != "" {
			keys = append(keys, name)
		}
	}
	return keys
}

func yamlField(t reflect.Type, name string) (reflect.StructField, bool) {
	for i := 0; i < t.NumField(); i++ {
		if yamlName(t.Field(i)) == name {
			return t.Field(i), true
		}
	}
	return reflect.StructField{}, false
}

// yamlName is a field's run-file key ("" for a field the file cannot set).
func yamlName(f reflect.StructField) string {
	if !f.IsExported() {
		return ""
	}
	tag, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
	switch tag {
	case "-":
		return ""
	case "":
		return strings.ToLower(f.Name)
	}
	return tag
}

// suggestKey is the key among keys that the unknown key most likely meant:
// another trainer's name for it, a key that differs by a typo or two, or
// one that contains it or is contained in it.
func suggestKey(unknown string, keys []string) string {
	u := strings.ToLower(unknown)
	if a, ok := keyAliases[u]; ok && slices.Contains(keys, a) {
		return a
	}
	for alias, a := range keyAliases { // a typo in another trainer's name
		if _, near := spell.Near(u, alias); near && slices.Contains(keys, a) {
			return a
		}
	}
	best, bestD := "", 0
	for _, k := range keys {
		if d, near := spell.Near(u, k); near && (best == "" || d < bestD) {
			best, bestD = k, d
		}
	}
	if best != "" {
		return best
	}
	for _, k := range keys {
		if len(u) >= 3 && len(k) >= 3 && (strings.Contains(k, u) || strings.Contains(u, k)) {
			return k
		}
	}
	return ""
}

// yamlKindName says what a YAML tag is, for "… is not a number".
func yamlKindName(tag string) string {
	switch tag {
	case "seq":
		return "list"
	case "map":
		return "mapping"
	case "str":
		return "string"
	case "bool":
		return "true/false"
	case "int", "float":
		return "number"
	case "null":
		return "null"
	}
	return tag
}

// goTypeWanted says what a Go type wants, in run-file words.
func goTypeWanted(t string) string {
	switch {
	case strings.HasPrefix(t, "float"):
		return "a number"
	case strings.HasPrefix(t, "int"), strings.HasPrefix(t, "uint"):
		return "a whole number"
	case t == "bool":
		return "true or false"
	case t == "string":
		return "a single value (text)"
	case strings.HasPrefix(t, "[]"):
		return "a list"
	case strings.HasPrefix(t, "map["), strings.Contains(t, "."):
		return "a mapping of keys"
	}
	return "a " + t
}

// checkWholeNumbers refuses a fraction where the run file wants a whole
// number: the yaml package would cut micro_batch: 1.5 to 1 without a word.
func checkWholeNumbers(data []byte) error {
	var root yaml.Node
	if yaml.Unmarshal(data, &root) != nil {
		return nil // the decoder has said what is wrong
	}
	var bad error
	var walk func(n *yaml.Node, path []string)
	walk = func(n *yaml.Node, path []string) {
		if bad != nil {
			return
		}
		switch n.Kind {
		case yaml.DocumentNode:
			for _, c := range n.Content {
				walk(c, path)
			}
		case yaml.SequenceNode:
			for i, c := range n.Content {
				walk(c, indexed(path, i))
			}
		case yaml.MappingNode:
			for i := 0; i+1 < len(n.Content); i += 2 {
				walk(n.Content[i+1], append(slices.Clone(path), n.Content[i].Value))
			}
		case yaml.ScalarNode:
			if n.ShortTag() != "!!float" || len(path) == 0 {
				return
			}
			t, ok := runFileFieldType(path)
			if !ok || kindWanted(t) != "a whole number" {
				return
			}
			var f float64
			if n.Decode(&f) == nil && f == math.Trunc(f) && !math.IsInf(f, 0) {
				return // 4.0, 1e3: whole
			}
			bad = fmt.Errorf("line %d: %s: %q is not a whole number", n.Line, strings.Join(path, "."), n.Value)
		}
	}
	walk(&root, nil)
	return bad
}
