// Package envswitch is the one list of whet's WHET_* environment switches:
// each one's name, the values it accepts, what unset means and a line on
// what it does. Every switch is read through it, so that a value whet does
// not know (WHET_DECODE_ATTN=v4, WHET_GEMM_TUNE=yes) is refused with an
// error naming the variable, the value and the accepted values, instead of
// quietly taking some default. Check is called where a run starts (the CLI
// before a command, engine.OpenBackend, the CUDA backend's New); the
// readers (On, Choice, Int) then take a value Check has passed.
//
// docs/environment.md is generated from this list (Markdown) and a test
// keeps the two equal.
package envswitch

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"

	"whet/engine/spell"
	"whet/engine/units"
)

// Switch is one WHET_* environment variable.
type Switch struct {
	Name string
	// Values are the accepted values of a switch with a fixed set
	// ("0", "1"; "v1", "v2", "v3"); nil for a free-form one (Want, parse).
	Values []string
	// Fold compares a value after trimming spaces and lowering its case.
	Fold bool
	// Default is the value unset (or empty) stands for, one of Values;
	// "" where unset is a state of its own, said by Unset.
	Default string
	// Unset says in words what unset means where Default is "".
	Unset string
	// Want says in words what a free-form switch accepts.
	Want string
	// Doc is one line on what the switch does.
	Doc string
	// Reader is the package that reads it.
	Reader string
	// parse checks a free-form value (not empty, already folded).
	parse func(string) error
}

// Accepts says what the switch accepts: "one of 0, 1", or Want.
func (s Switch) Accepts() string {
	if s.Values != nil {
		return "one of " + strings.Join(s.Values, ", ")
	}
	return s.Want
}

// UnsetMeans is what unset stands for: the default value, or Unset.
func (s Switch) UnsetMeans() string {
	if s.Default != "" {
		return s.Default
	}
	return s.Unset
}

// Error is the error for a value a switch does not accept.
type Error struct {
	Name, Value string
	Accepts     string // Switch.Accepts
	UnsetMeans  string // Switch.UnsetMeans
	Err         error  // the free-form parser's reason, if any
}

func (e *Error) Error() string {
	msg := fmt.Sprintf("%s=%q is not %s (unset: %s)", e.Name, e.Value, e.Accepts, e.UnsetMeans)
	if e.Err != nil {
		msg += ": " + e.Err.Error()
	}
	return msg
}

func (e *Error) Unwrap() error { return e.Err }

// Parse checks value v of the switch: it returns the value as the readers
// compare it ("" for unset or empty, folded where Fold), or an *Error.
func (s Switch) Parse(v string) (string, error) {
	if s.Fold {
		v = strings.ToLower(strings.TrimSpace(v))
	}
	if v == "" {
		return "", nil
	}
	if s.Values != nil {
		if slices.Contains(s.Values, v) {
			return v, nil
		}
		return "", &Error{Name: s.Name, Value: v, Accepts: s.Accepts(), UnsetMeans: s.UnsetMeans()}
	}
	if err := s.parse(v); err != nil {
		if err == errNotAccepted {
			err = nil // Accepts says it all
		}
		return "", &Error{Name: s.Name, Value: v, Accepts: s.Accepts(), UnsetMeans: s.UnsetMeans(), Err: err}
	}
	return v, nil
}

// All returns every switch, sorted by name.
func All() []Switch { return slices.Clone(switches) }

// Lookup returns the switch named name.
func Lookup(name string) (Switch, bool) {
	i, ok := slices.BinarySearchFunc(switches, name, func(s Switch, n string) int { return strings.Compare(s.Name, n) })
	if !ok {
		return Switch{}, false
	}
	return switches[i], true
}

// Parse checks value v of the switch named name (Switch.Parse); a name
// that is not a switch is an error too.
func Parse(name, v string) (string, error) {
	s, ok := Lookup(name)
	if !ok {
		return "", fmt.Errorf("envswitch: %s is not a registered switch", name)
	}
	return s.Parse(v)
}

// Get reads the switch named name from the environment: its value ("" when
// unset or empty), or the error for a value it does not accept.
func Get(name string) (string, error) { return Parse(name, os.Getenv(name)) }

// Choice is the switch's value in the environment, or its Default when it
// is unset, empty or not accepted (Check refuses that before a run).
func Choice(name string) string {
	v, err := Get(name)
	if v == "" || err != nil {
		s, _ := Lookup(name)
		return s.Default
	}
	return v
}

// On reports whether an on/off switch (values 0 and 1) is on: its value,
// else its default.
func On(name string) bool { return Choice(name) == "1" }

// Int is a whole-number switch's value, ok false when it is unset (or not
// accepted, which Check refuses before a run).
func Int(name string) (n int, ok bool) {
	v, err := Get(name)
	if v == "" || err != nil {
		return 0, false
	}
	n, err = strconv.Atoi(v)
	return n, err == nil
}

// Check reads every switch from the environment and returns one error
// naming each value that is not accepted (nil when all are).
func Check() error { return CheckEnv(os.Getenv) }

// CheckEnv is Check with the environment read through getenv.
func CheckEnv(getenv func(string) string) error {
	var errs []string
	for _, s := range switches {
		if _, err := s.Parse(getenv(s.Name)); err != nil {
			errs = append(errs, err.Error())
		}
	}
	if errs == nil {
		return nil
	}
	return errors.New(strings.Join(errs, "; "))
}

// Setting is a WHET_* variable of the environment.
type Setting struct {
	Name, Value string
	Known       bool  // a switch of the registry
	Err         error // the value is not accepted
}

// Set lists the WHET_* variables of environ (os.Environ's form, NAME=VALUE)
// that are set to something, sorted by name, each checked against the
// registry. A name the registry does not have is a typo or a variable
// whet's tests and tools read, never a switch of the program.
func Set(environ []string) []Setting {
	var out []Setting
	for _, kv := range environ {
		name, value, ok := strings.Cut(kv, "=")
		if !ok || !strings.HasPrefix(name, "WHET_") || value == "" {
			continue
		}
		st := Setting{Name: name, Value: value}
		if s, known := Lookup(name); known {
			st.Known = true
			_, st.Err = s.Parse(value)
		}
		out = append(out, st)
	}
	slices.SortFunc(out, func(a, b Setting) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// Nearest returns the switch whose name is closest to name (for "did you
// mean"), ok false when none is near it by spell.Near.
func Nearest(name string) (string, bool) {
	best, bestD := "", 0
	for _, s := range switches {
		if d, near := spell.Near(name, s.Name); near && (best == "" || d < bestD) {
			best, bestD = s.Name, d
		}
	}
	return best, best != ""
}

// ParseArch reads an architecture written as NVRTC names it, "sm_XY" (the
// last digit is the minor version: sm_90 is 9.0, sm_121 is 12.1).
func ParseArch(s string) (major, minor int, err error) {
	digits, ok := strings.CutPrefix(s, "sm_")
	if !ok || len(digits) < 2 || len(digits) > 3 || strings.Trim(digits, "0123456789") != "" {
		return 0, 0, fmt.Errorf("%q is not an architecture written as NVRTC names it (sm_75, sm_90, sm_121)", s)
	}
	major, _ = strconv.Atoi(digits[:len(digits)-1])
	minor = int(digits[len(digits)-1] - '0')
	return major, minor, nil
}

// errNotAccepted is a free-form parser's refusal that Switch.Want
// describes well enough.
var errNotAccepted = errors.New("not accepted")

// wholeNumber accepts a whole number from lo to hi.
func wholeNumber(lo, hi int) func(string) error {
	return func(v string) error {
		n, err := strconv.Atoi(v)
		if err != nil || n < lo || n > hi {
			return errNotAccepted
		}
		return nil
	}
}

// memoryLimit accepts a size above 0 (units.ParseBytes), spaces around it
// allowed as engine.MemoryLimit trims them.
func memoryLimit(v string) error {
	v = strings.TrimSpace(v)
	if v == "" {
		return nil
	}
	_, err := MemoryLimitBytes(v)
	return err
}

// ErrMemoryLimitNotPositive: a memory cap of 0 bytes or less.
var ErrMemoryLimitNotPositive = errors.New("the memory limit must be more than 0 bytes")

// MemoryLimitBytes reads a memory cap given as a size, which must be more
// than 0 bytes: the one rule of WHET_MEMORY_LIMIT's check here and of
// engine.ParseMemoryLimit (the --memory-limit flags).
func MemoryLimitBytes(v string) (int64, error) {
	n, err := units.ParseBytes(v)
	if err != nil {
		return 0, err
	}
	if n <= 0 {
		return 0, ErrMemoryLimitNotPositive
	}
	return n, nil
}

// nvrtcDefines accepts comma-separated NAME or NAME=VALUE items (NAME a C
// identifier); empty items between commas are skipped, as the backend
// does.
func nvrtcDefines(v string) error {
	for _, d := range strings.Split(v, ",") {
		d = strings.TrimSpace(d)
		if d == "" {
			continue
		}
		name, _, _ := strings.Cut(d, "=")
		if !identifier(name) {
			return fmt.Errorf("%q: a define is NAME or NAME=VALUE, NAME a C identifier", d)
		}
	}
	return nil
}

func identifier(s string) bool {
	if s == "" {
		return false
	}
	for i, r := range s {
		switch {
		case r == '_', 'a' <= r && r <= 'z', 'A' <= r && r <= 'Z':
		case i > 0 && '0' <= r && r <= '9':
		default:
			return false
		}
	}
	return true
}

func cudaArch(v string) error {
	if _, _, err := ParseArch(v); err != nil {
		return errNotAccepted
	}
	return nil
}

// Markdown is docs/environment.md: every switch in a table, from this
// registry (TestDocs keeps the file equal to it).
func Markdown() string {
	var b strings.Builder
	b.WriteString(`# Environment switches

<!-- Generated from engine/envswitch/switches.go by
     go test ./engine/envswitch -run TestDocs -update
     (TestDocs fails while this file and the registry differ). -->

whet reads the ` + "`WHET_*`" + ` variables below and no others. Unset or empty, a
switch takes its default; set to anything not listed, it is refused: every
whet command except ` + "`whet env`" + ` stops before it starts with one line naming
the variable, its value and the values it accepts, and a program that opens
a backend through the engine gets that line as an error. ` + "`whet env`" + ` lists the
switches that are set and checks them (exit status 1 when one is refused, with
a "did you mean" for a misspelt name); ` + "`whet env --all`" + ` lists every switch.

Most are for measuring and testing kernels on a GPU; the defaults are what
passed there (docs/performance.md).

| variable | accepts | unset | what it does |
| --- | --- | --- | --- |
`)
	for _, s := range switches {
		accepts := s.Want
		if s.Values != nil {
			quoted := make([]string, len(s.Values))
			for i, v := range s.Values {
				quoted[i] = "`" + v + "`"
			}
			accepts = strings.Join(quoted, ", ")
		}
		unset := s.Unset
		if s.Default != "" {
			unset = "`" + s.Default + "`"
		}
		fmt.Fprintf(&b, "| `%s` | %s | %s | %s (%s) |\n", s.Name, accepts, unset, s.Doc, s.Reader)
	}
	return b.String()
}
