package cuda

import (
	"bufio"
	"bytes"
	"fmt"
	"go/ast"
	"go/constant"
	"go/importer"
	"go/parser"
	"go/token"
	"go/types"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"whet/kernels"
)

// The kernels are launched by name with an argument list that the driver
// copies as raw bytes: a count or width that disagrees with the .cu
// signature is not caught by any compiler, and shows up as garbage or an
// illegal address on the GPU only. These tests hold every launch site in
// this package to the signature of the kernel it names, on the CPU.

// kernelParam is one parameter of a kernel as the .cu source declares it.
type kernelParam struct {
	cType, name string
}

// goArg is the Go type the backend's launch must pass for a C parameter
// type (launch accepts int32, int64, uint64 and float32).
func goArg(cType string) (string, error) {
	t := strings.Join(strings.Fields(strings.ReplaceAll(cType, "const ", "")), " ")
	switch {
	case strings.HasSuffix(t, "*"):
		return "uint64", nil // a device address
	case t == "int" || t == "unsigned int" || t == "unsigned":
		return "int32", nil
	case t == "i64" || t == "long long" || t == "int64_t":
		return "int64", nil
	case t == "unsigned long long" || t == "uint64_t" || t == "unsigned long":
		return "uint64", nil
	case t == "float":
		return "float32", nil
	}
	return "", fmt.Errorf("C parameter type %q has no launch argument type", cType)
}

var (
	// kernelSignature matches a kernel declaration through its parameter
	// list; a name pasted inside a macro ends in ##PARAM.
	kernelSignature = regexp.MustCompile(`extern "C" __global__ void(?:\s+__launch_bounds__\([^)]*\))?\s+(\w+?)(##\w+)?\s*\(([^)]*)\)`)
	paramName       = regexp.MustCompile(`^(.*?[\s*])(\w+)$`)
)

// kernelSignatures reads every kernel's parameters from kernels/*.cu, keyed
// by name; a kernel declared in a macro (attention_forward_tc_d##D) is keyed
// with a # for the pasted part, as the launch site's "%d" is.
func kernelSignatures(t *testing.T) map[string]struct {
	file   string
	params []kernelParam
} {
	t.Helper()
	out := map[string]struct {
		file   string
		params []kernelParam
	}{}
	for _, file := range kernels.Names() {
		src, err := kernels.Source(file)
		if err != nil {
			t.Fatal(err)
		}
		src = strings.ReplaceAll(src, "\\\n", " ") // macro continuation lines
		for _, m := range kernelSignature.FindAllStringSubmatch(src, -1) {
			name := m[1]
			if m[2] != "" {
				name += "#"
			}
			var params []kernelParam
			for _, p := range strings.Split(m[3], ",") {
				p = strings.Join(strings.Fields(p), " ")
				if p == "" || p == "void" {
					continue
				}
				pm := paramName.FindStringSubmatch(p)
				if pm == nil {
					t.Fatalf("kernels/%s: kernel %s: cannot read parameter %q", file, name, p)
				}
				params = append(params, kernelParam{cType: strings.TrimSpace(pm[1]), name: pm[2]})
			}
			if _, dup := out[name]; dup {
				t.Errorf("kernel %s is declared twice", name)
			}
			out[name] = struct {
				file   string
				params []kernelParam
			}{file, params}
		}
		// Every kernel the package's own lister finds has a signature here.
		for _, name := range kernels.Declared(src) {
			key := name
			if _, ok := out[key]; !ok {
				key = strings.TrimRightFunc(name, func(r rune) bool { return r >= '0' && r <= '9' }) + "#"
			}
			if _, ok := out[key]; !ok {
				t.Errorf("kernels/%s declares %s, but its parameter list was not read", file, name)
			}
		}
	}
	if len(out) < 20 {
		t.Fatalf("read only %d kernel signatures", len(out))
	}
	return out
}

func TestKernelSignaturesParse(t *testing.T) {
	sigs := kernelSignatures(t)
	fill := sigs["fill"]
	got := fmt.Sprint(fill.params)
	if fill.file != "elementwise.cu" || got != "[{void* t} {int dt} {i64 n} {float v}]" {
		t.Errorf("fill: %s %s", fill.file, got)
	}
	if d := sigs["attention_forward_tc_d#"]; len(d.params) != 16 || d.params[14] != (kernelParam{"int", "window"}) || d.params[15] != (kernelParam{"float", "softcap"}) {
		t.Errorf("attention_forward_tc_d##D: %v", d.params)
	}
	for name, s := range sigs {
		for _, p := range s.params {
			if _, err := goArg(p.cType); err != nil {
				t.Errorf("kernels/%s: %s: %v", s.file, name, err)
			}
		}
	}
}

// typeCheckPackage type-checks the non-test sources of the package in dir
// (import path path), importing its dependencies from the export data the
// go command builds.
func typeCheckPackage(t *testing.T, dir, path string) (*token.FileSet, []*ast.File, *types.Package, *types.Info) {
	t.Helper()
	if c, ok := typeChecked[dir]; ok {
		return c.fset, c.files, c.pkg, c.info
	}
	goCmd, err := exec.LookPath("go")
	if err != nil {
		t.Skip("the go command is not on PATH; it locates the dependencies' export data")
	}
	out, err := exec.Command(goCmd, "list", "-export", "-deps", "-f", "{{.ImportPath}} {{.Export}}", dir).Output()
	if err != nil {
		t.Fatalf("go list -export: %v", err)
	}
	exports := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		if path, file, ok := strings.Cut(sc.Text(), " "); ok && file != "" {
			exports[path] = file
		}
	}
	fset := token.NewFileSet()
	imp := importer.ForCompiler(fset, "gc", func(path string) (io.ReadCloser, error) {
		f, ok := exports[path]
		if !ok {
			return nil, fmt.Errorf("no export data for %s", path)
		}
		return os.Open(f)
	})
	paths, err := filepath.Glob(filepath.Join(dir, "*.go"))
	if err != nil {
		t.Fatal(err)
	}
	var files []*ast.File
	for _, p := range paths {
		if strings.HasSuffix(p, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, p, nil, parser.SkipObjectResolution)
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, f)
	}
	info := &types.Info{Types: map[ast.Expr]types.TypeAndValue{}, Uses: map[*ast.Ident]types.Object{}}
	conf := types.Config{Importer: imp}
	pkg, err := conf.Check(path, fset, files, info)
	if err != nil {
		t.Fatalf("type-checking %s: %v", path, err)
	}
	typeChecked[dir] = typeCheckedPackage{fset, files, pkg, info}
	return fset, files, pkg, info
}

// typeChecked keeps each package checked once per test binary (the tests
// run one at a time).
var typeChecked = map[string]typeCheckedPackage{}

type typeCheckedPackage struct {
	fset  *token.FileSet
	files []*ast.File
	pkg   *types.Package
	info  *types.Info
}

// launchSite is one call of launch (or launchTable, whose first kernel
// argument is the chunk table's device address).
type launchSite struct {
	pos        string
	file, name string   // name with # for a "%d"
	args       []string // Go types of the kernel arguments
}

func launchSites(t *testing.T) []launchSite {
	fset, files, _, info := typeCheckPackage(t, ".", "whet/engine/cuda")
	var str func(e ast.Expr) (string, bool)
	str = func(e ast.Expr) (string, bool) {
		tv := info.Types[e]
		if tv.Value != nil && tv.Value.Kind() == constant.String {
			return constant.StringVal(tv.Value), true
		}
		// fmt.Sprintf("attention_forward_tc_d%d", D): the format names the kernel.
		if call, ok := e.(*ast.CallExpr); ok && len(call.Args) > 0 {
			if sel, ok := call.Fun.(*ast.SelectorExpr); ok && sel.Sel.Name == "Sprintf" {
				if f, ok := str(call.Args[0]); ok {
					return strings.ReplaceAll(f, "%d", "#"), true
				}
			}
		}
		return "", false
	}
	var sites []launchSite
	for _, f := range files {
		ast.Inspect(f, func(n ast.Node) bool {
			fn, ok := n.(*ast.FuncDecl)
			if !ok {
				return true
			}
			ast.Inspect(fn, func(n ast.Node) bool {
				call, ok := n.(*ast.CallExpr)
				if !ok {
					return true
				}
				sel, ok := call.Fun.(*ast.SelectorExpr)
				if !ok {
					return true
				}
				m, ok := info.Uses[sel.Sel].(*types.Func)
				if !ok || m.Pkg() == nil || m.Pkg().Path() != "whet/engine/cuda" {
					return true
				}
				var first int
				var implicit []string
				switch m.Name() {
				case "launch":
					first = 6
				case "launchTable":
					first, implicit = 5, []string{"uint64"}
				default:
					return true
				}
				pos := fset.Position(call.Pos()).String()
				if call.Ellipsis.IsValid() {
					// Only launchTable forwards a list; its callers are checked.
					if fn.Name.Name != "launchTable" {
						t.Errorf("%s: %s(...) with a spread list cannot be checked against the kernel", pos, m.Name())
					}
					return true
				}
				file, ok1 := str(call.Args[1])
				name, ok2 := str(call.Args[2])
				if !ok1 || !ok2 {
					t.Errorf("%s: kernel file and name must be constants (or fmt.Sprintf of a constant format)", pos)
					return true
				}
				s := launchSite{pos: pos, file: file, name: name, args: implicit}
				for _, a := range call.Args[first:] {
					s.args = append(s.args, types.Default(info.Types[a].Type).String())
				}
				sites = append(sites, s)
				return true
			})
			return false
		})
	}
	return sites
}

// TestLaunchArgumentsMatchKernelSignatures: every launch names a kernel
// declared in the file it loads, with one argument per parameter, each of
// the Go type that has the parameter's width and kind.
func TestLaunchArgumentsMatchKernelSignatures(t *testing.T) {
	sigs := kernelSignatures(t)
	sites := launchSites(t)
	if len(sites) < 25 {
		t.Fatalf("found only %d launch sites", len(sites))
	}
	launched := map[string]bool{}
	var expanded []launchSite
	for _, s := range sites {
		if _, ok := sigs[s.name]; ok || !strings.Contains(s.name, "#") {
			expanded = append(expanded, s)
			continue
		}
		// fmt.Sprintf("attention_forward_hopper_d%d", D) launches each kernel
		// declared by hand whose name the format makes (…_d64, …_d128).
		re := regexp.MustCompile("^" + strings.ReplaceAll(regexp.QuoteMeta(s.name), "#", "[0-9]+") + "$")
		n := len(expanded)
		for name := range sigs {
			if re.MatchString(name) {
				e := s
				e.name = name
				expanded = append(expanded, e)
			}
		}
		if len(expanded) == n {
			expanded = append(expanded, s) // reported below as declared nowhere
		}
	}
	for _, s := range expanded {
		sig, ok := sigs[s.name]
		if !ok {
			t.Errorf("%s: launches %s, which no kernels/*.cu declares", s.pos, s.name)
			continue
		}
		launched[s.name] = true
		if sig.file != s.file {
			t.Errorf("%s: launches %s from kernels/%s, but it is declared in kernels/%s", s.pos, s.name, s.file, sig.file)
		}
		if len(s.args) != len(sig.params) {
			t.Errorf("%s: %s gets %d arguments, kernels/%s declares %d parameters %v", s.pos, s.name, len(s.args), sig.file, len(sig.params), sig.params)
			continue
		}
		for i, p := range sig.params {
			want, _ := goArg(p.cType)
			if s.args[i] != want {
				t.Errorf("%s: %s argument %d (%s %s) is a Go %s, want %s", s.pos, s.name, i, p.cType, p.name, s.args[i], want)
			}
		}
	}
	for name, sig := range sigs {
		if !launched[name] {
			t.Errorf("kernels/%s: kernel %s is never launched", sig.file, name)
		}
	}
}

// TestBackendsAssertTheirOptionalInterfaces: the engine finds a backend's
// fast paths (the multi-tensor AdamW, norm, fill and scale; the KV-cache
// attention; ...) by type assertion, so a renamed or re-typed method would
// silently fall back to the slow path. Each backend states every engine
// interface it implements as a compile-time assertion,
// var _ engine.I = (*Backend)(nil), so such a change fails to build.
func TestBackendsAssertTheirOptionalInterfaces(t *testing.T) {
	for _, pkg := range []struct{ dir, path string }{{".", "whet/engine/cuda"}, {"../cpu", "whet/engine/cpu"}} {
		_, files, p, info := typeCheckPackage(t, pkg.dir, pkg.path)
		backend := p.Scope().Lookup("Backend")
		if backend == nil {
			t.Fatalf("%s has no Backend type", pkg.path)
		}
		ptr := types.NewPointer(backend.Type())
		asserted := map[string]bool{}
		for _, f := range files {
			for _, d := range f.Decls {
				gd, ok := d.(*ast.GenDecl)
				if !ok || gd.Tok != token.VAR {
					continue
				}
				for _, spec := range gd.Specs {
					vs := spec.(*ast.ValueSpec)
					if len(vs.Names) != 1 || vs.Names[0].Name != "_" || vs.Type == nil || len(vs.Values) != 1 {
						continue
					}
					if types.Identical(info.Types[vs.Values[0]].Type, ptr) {
						asserted[info.Types[vs.Type].Type.String()] = true
					}
				}
			}
		}
		var engine *types.Package
		for _, imp := range p.Imports() {
			if imp.Path() == "whet/engine" {
				engine = imp
			}
		}
		if engine == nil {
			t.Fatalf("%s does not import whet/engine", pkg.path)
		}
		implemented := 0
		for _, name := range engine.Scope().Names() {
			obj, ok := engine.Scope().Lookup(name).(*types.TypeName)
			if !ok || !obj.Exported() {
				continue
			}
			iface, ok := obj.Type().Underlying().(*types.Interface)
			if !ok || iface.NumMethods() == 0 || !types.Implements(ptr, iface) {
				continue
			}
			implemented++
			if !asserted[obj.Type().String()] {
				t.Errorf("%s.Backend implements engine.%s but does not assert it: add var _ engine.%s = (*Backend)(nil)", pkg.path, name, name)
			}
		}
		if implemented < 2 {
			t.Errorf("%s.Backend implements only %d engine interfaces", pkg.path, implemented)
		}
	}
}
