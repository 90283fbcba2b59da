package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"sync"

	"whet/engine/spell"
)

// hideFlags keeps the named flags out of fs's help (whet CMD --help and
// the usage printed on a flag error) while fs still accepts them: flags
// that whet passes to itself, such as train's --worker, are no user's
// business. It replaces fs.Usage with the flag package's default layout
// minus those flags.
func hideFlags(fs *flag.FlagSet, names ...string) {
	hidden := make(map[string]bool, len(names))
	for _, n := range names {
		hidden[n] = true
	}
	hiddenFlags.Store(fs.Name(), hidden)
	fs.Usage = func() {
		visible := flag.NewFlagSet(fs.Name(), flag.ContinueOnError)
		visible.SetOutput(fs.Output())
		fs.VisitAll(func(f *flag.Flag) {
			if hidden[f.Name] {
				return
			}
			visible.Var(f.Value, f.Name, f.Usage)
			// Var takes the default from the value as it is now, which
			// flags parsed before -h have already changed.
			visible.Lookup(f.Name).DefValue = f.DefValue
		})
		fmt.Fprintf(fs.Output(), "Usage of %s:\n", fs.Name())
		visible.PrintDefaults()
	}
}

// hiddenFlags holds, per command name, the flags hideFlags keeps out of
// its help, which a misspelt flag is never told to be.
var hiddenFlags sync.Map // string → map[string]bool

// flagError is a command-line flag that did not parse: an unknown flag,
// one without its value, a value of the wrong kind. main prints it on one
// line with the command's name and where its flags are listed, instead of
// the flag package's message and the whole list.
type flagError struct {
	cmd string // the command whose flags these are
	msg string // what is wrong, naming the flag as --name
}

func (e *flagError) Error() string { return e.msg }

// parseFlags parses a command's flags. Asked for help (-h, --help), it
// prints the flags as the flag package does; a flag that does not parse is
// returned as a *flagError that names it (and the nearest flag the command
// has, for a misspelt one) without printing the flag list.
func parseFlags(fs *flag.FlagSet, args []string) error {
	if asksForHelp(args) {
		return fs.Parse(args)
	}
	usage, out := fs.Usage, fs.Output()
	fs.Usage = func() {}
	fs.SetOutput(io.Discard)
	err := fs.Parse(args)
	fs.Usage = usage
	fs.SetOutput(out)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, flag.ErrHelp):
		// A help flag asksForHelp does not know (--h): the list as asked.
		if fs.Usage != nil {
			fs.Usage()
		}
		return err
	}
	return &flagError{cmd: fs.Name(), msg: flagErrorText(fs, err.Error())}
}

// flagErrorText rewords the flag package's messages, which write flags
// with one dash and say "flag provided but not defined".
func flagErrorText(fs *flag.FlagSet, msg string) string {
	if name, ok := strings.CutPrefix(msg, "flag provided but not defined: "); ok {
		name = strings.TrimLeft(name, "-")
		text := "unknown flag " + dashed(name)
		if near := nearestFlag(fs, name); near != "" {
			text += "; did you mean " + dashed(near) + "?"
		}
		return text
	}
	if name, ok := strings.CutPrefix(msg, "flag needs an argument: "); ok {
		name = strings.TrimLeft(name, "-")
		return fmt.Sprintf("flag %s needs a value: %s VALUE", dashed(name), dashed(name))
	}
	// invalid value "x" for flag -batch: parse error
	if i := strings.Index(msg, " for flag -"); i >= 0 && strings.HasPrefix(msg, "invalid value ") {
		value := strings.TrimPrefix(msg[:i], "invalid value ")
		name, why, _ := strings.Cut(msg[i+len(" for flag -"):], ": ")
		if f := fs.Lookup(name); f != nil && why == "parse error" {
			kind, _ := flag.UnquoteUsage(f)
			if want := flagKinds[kind]; want != "" {
				why = "want " + want
			}
		}
		return fmt.Sprintf("%s %s: %s", dashed(name), value, why)
	}
	// invalid boolean value "x" for -json: parse error
	if i := strings.Index(msg, " for -"); i >= 0 && strings.HasPrefix(msg, "invalid boolean value ") {
		value := strings.TrimPrefix(msg[:i], "invalid boolean value ")
		name, _, _ := strings.Cut(msg[i+len(" for -"):], ": ")
		n := dashed(name)
		return fmt.Sprintf("%s=%s: want %s, %s=true or %s=false", n, strings.Trim(value, `"`), n, n, n)
	}
	return msg
}

// dashed writes a flag as whet's help does: -c, --model.
func dashed(name string) string {
	if len(name) == 1 {
		return "-" + name
	}
	return "--" + name
}

// flagKinds says what a value of each kind flag.UnquoteUsage names looks
// like.
var flagKinds = map[string]string{
	"int":      "a whole number",
	"uint":     "a whole number, 0 or more",
	"float":    "a number",
	"duration": "a duration such as 90s, 30m or 1h",
}

// nearestFlag is the command's flag closest to a misspelt name, one near
// it by spell.Near (--model-dir for --models-dir); "" when none is that
// close.
func nearestFlag(fs *flag.FlagSet, name string) string {
	best, bestD := "", 0
	hidden, _ := hiddenFlags.Load(fs.Name())
	fs.VisitAll(func(f *flag.Flag) {
		if h, _ := hidden.(map[string]bool); h[f.Name] {
			return
		}
		d, near := spell.Near(name, f.Name)
		if near && (best == "" || d < bestD || (d == bestD && f.Name < best)) {
			best, bestD = f.Name, d
		}
	})
	return best
}
