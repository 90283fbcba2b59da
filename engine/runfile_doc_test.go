package engine

import (
	"flag"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

var updateRunFileDoc = flag.Bool("update-run-file-doc", false, "rewrite the generated reference in docs/run-file.md")

const (
	runFileDocPath  = "../docs/run-file.md"
	runFileDocBegin = "<!-- run-file-keys:begin (generated from engine.RunConfig by TestRunFileReference; go test ./engine -run TestRunFileReference -update-run-file-doc rewrites it) -->"
	runFileDocEnd   = "<!-- run-file-keys:end -->"
)

// runFileKey is one key of a run file as the reference lists it.
type runFileKey struct {
	path  string   // YAML path, e.g. "train.lr"
	field []string // Go field path, for reflection
	kind  string   // the YAML value it takes
	doc   string   // the field's doc and line comments
}

// structDecls reads the struct types of one of this module's packages
// from its sources, for the fields' comments (reflection has the tags but
// not the comments). RunConfig's parts live in engine and in datasets
// (DataConfig is datasets.Options).
func structDecls(t *testing.T, pkgPath string) map[string]*ast.StructType {
	t.Helper()
	rel, ok := strings.CutPrefix(pkgPath, "whet/")
	if !ok {
		t.Fatalf("%s is not a package of this module", pkgPath)
	}
	dir := filepath.Join("..", filepath.FromSlash(rel))
	fset := token.NewFileSet()
	paths, err := filepath.Glob(filepath.Join(dir, "*.go"))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]*ast.StructType{}
	for _, p := range paths {
		if strings.HasSuffix(p, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, p, nil, parser.ParseComments|parser.SkipObjectResolution)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range f.Decls {
			gd, ok := d.(*ast.GenDecl)
			if !ok || gd.Tok != token.TYPE {
				continue
			}
			for _, s := range gd.Specs {
				ts := s.(*ast.TypeSpec)
				if st, ok := ts.Type.(*ast.StructType); ok {
					out[ts.Name.Name] = st
				}
			}
		}
	}
	return out
}

// fieldDoc joins a field's doc comment and line comment into one sentence
// run, without comment markers or line breaks.
func fieldDoc(f *ast.Field) string {
	var parts []string
	for _, cg := range []*ast.CommentGroup{f.Doc, f.Comment} {
		if cg != nil {
			parts = append(parts, strings.Join(strings.Fields(cg.Text()), " "))
		}
	}
	return strings.Join(parts, " ")
}

// yamlKind names the YAML value a Go field type takes.
func yamlKind(t reflect.Type) string {
	switch t.Kind() {
	case reflect.String:
		return "string"
	case reflect.Bool:
		return "true/false"
	case reflect.Int, reflect.Int32, reflect.Int64:
		return "integer"
	case reflect.Float32, reflect.Float64:
		return "number"
	case reflect.Slice:
		return "list of " + yamlKind(t.Elem()) + "s"
	case reflect.Map:
		return "map of " + yamlKind(t.Key()) + " to " + yamlKind(t.Elem())
	}
	return t.String()
}

// runFileKeys walks RunConfig by reflection (tags, types) and by source
// (comments), depth first in field order.
func runFileKeys(t *testing.T) []runFileKey {
	t.Helper()
	var keys []runFileKey
	var walk func(rt reflect.Type, prefix string, field []string)
	walk = func(rt reflect.Type, prefix string, field []string) {
		st, ok := structDecls(t, rt.PkgPath())[rt.Name()]
		if !ok {
			t.Fatalf("no source for struct %s.%s", rt.PkgPath(), rt.Name())
		}
		docs := map[string]string{}
		for _, f := range st.Fields.List {
			for _, n := range f.Names {
				docs[n.Name] = fieldDoc(f)
			}
		}
		for i := 0; i < rt.NumField(); i++ {
			f := rt.Field(i)
			if !f.IsExported() {
				continue
			}
			tag, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
			if tag == "-" {
				continue
			}
			if tag == "" {
				t.Errorf("%s.%s has no yaml tag: its key in a run file would be %q", rt.Name(), f.Name, strings.ToLower(f.Name))
				tag = strings.ToLower(f.Name)
			}
			path := prefix + tag
			fpath := append(append([]string(nil), field...), f.Name)
			if f.Type.Kind() == reflect.Struct && strings.HasPrefix(f.Type.PkgPath(), "whet/") {
				walk(f.Type, path+".", fpath)
				continue
			}
			// "FullWeights trains every weight" reads "Trains every weight".
			doc := docs[f.Name]
			if rest, ok := strings.CutPrefix(doc, f.Name+" "); ok && rest != "" {
				doc = strings.ToUpper(rest[:1]) + rest[1:]
			}
			if doc == "" {
				t.Errorf("%s.%s (run-file key %s) has no comment; the run-file reference is made from it: add one saying what the key does", rt.Name(), f.Name, path)
			}
			keys = append(keys, runFileKey{path: path, field: fpath, kind: yamlKind(f.Type), doc: doc})
		}
	}
	walk(reflect.TypeOf(RunConfig{}), "", nil)
	return keys
}

// formatDefault writes a filled-in value as a run file would hold it.
func formatDefault(v reflect.Value) string {
	switch v.Kind() {
	case reflect.String:
		return v.String()
	case reflect.Float32, reflect.Float64:
		return strconv.FormatFloat(v.Float(), 'g', -1, 64)
	case reflect.Slice:
		var parts []string
		for i := 0; i < v.Len(); i++ {
			parts = append(parts, formatDefault(v.Index(i)))
		}
		return "[" + strings.Join(parts, ", ") + "]"
	}
	return fmt.Sprint(v.Interface())
}

// defaults says what FillDefaults puts in a key left out, per method when
// the methods differ: the reference states the engine's one rule.
func defaults(k runFileKey) string {
	methods := []string{"lora", "qlora", "full", "dpo", "grpo"}
	byValue := map[string][]string{}
	var order []string
	for _, m := range methods {
		c := RunConfig{Method: m}
		if k.path == "method" {
			c.Method = ""
		}
		c.FillDefaults()
		v := reflect.ValueOf(c)
		for _, f := range k.field {
			v = v.FieldByName(f)
		}
		s := ""
		if !v.IsZero() {
			s = "`" + formatDefault(v) + "`"
		}
		if _, seen := byValue[s]; !seen {
			order = append(order, s)
		}
		byValue[s] = append(byValue[s], m)
	}
	if len(order) == 1 {
		return order[0]
	}
	// A key that only some methods use (lora.r, dpo.beta) lists those.
	var parts []string
	for _, s := range order {
		if s != "" {
			parts = append(parts, strings.Join(byValue[s], ", ")+": "+s)
		}
	}
	return strings.Join(parts, "; ")
}

// runFileTable is the generated reference: one row per key.
func runFileTable(t *testing.T) string {
	var b strings.Builder
	b.WriteString("| key | value | default | what it does |\n|---|---|---|---|\n")
	for _, k := range runFileKeys(t) {
		doc := strings.ReplaceAll(k.doc, "|", `\|`)
		fmt.Fprintf(&b, "| `%s` | %s | %s | %s |\n", k.path, k.kind, defaults(k), doc)
	}
	return b.String()
}

// TestRunFileReference keeps docs/run-file.md listing every run-file key,
// with the type, the default FillDefaults gives and the field's comment,
// so that the reference cannot drift from RunConfig.
func TestRunFileReference(t *testing.T) {
	doc, err := os.ReadFile(runFileDocPath)
	if err != nil {
		t.Fatal(err)
	}
	s := string(doc)
	i, j := strings.Index(s, runFileDocBegin), strings.Index(s, runFileDocEnd)
	if i < 0 || j < i {
		t.Fatalf("%s: markers %q … %q not found", runFileDocPath, runFileDocBegin, runFileDocEnd)
	}
	table := runFileTable(t)
	if t.Failed() {
		return
	}
	if strings.TrimSpace(s[i+len(runFileDocBegin):j]) == strings.TrimSpace(table) {
		return
	}
	if !*updateRunFileDoc {
		t.Fatalf("%s is out of date with engine.RunConfig; run go test ./engine -run TestRunFileReference -update-run-file-doc to rewrite it.\nwant:\n%s", runFileDocPath, table)
	}
	s = s[:i+len(runFileDocBegin)] + "\n" + table + s[j:]
	if err := os.WriteFile(runFileDocPath, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
}

// Every key of a run file the wizard writes is in the reference: a key
// added to RunConfig without a comment, or renamed, shows up here.
func TestRunFileReferenceCoversSavedRunFiles(t *testing.T) {
	keys := map[string]bool{}
	for _, k := range runFileKeys(t) {
		keys[k.path] = true
	}
	for _, f := range []string{"../testdata/runs/tiny-lora.yaml", "../testdata/runs/tiny-qlora.yaml", "../presets/demo/run.yaml"} {
		var cfg map[string]any
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if err := yaml.Unmarshal(data, &cfg); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		var seen []string
		var walk func(prefix string, m map[string]any)
		walk = func(prefix string, m map[string]any) {
			for k, v := range m {
				if sub, ok := v.(map[string]any); ok && k != "columns" {
					walk(prefix+k+".", sub)
					continue
				}
				seen = append(seen, prefix+k)
			}
		}
		walk("", cfg)
		sort.Strings(seen)
		for _, k := range seen {
			if !keys[k] {
				t.Errorf("%s: key %s is not in the run-file reference", f, k)
			}
		}
	}
}
