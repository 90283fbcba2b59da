package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"text/tabwriter"

	"whet/engine/envswitch"
)

func init() {
	register("env", "the WHET_* environment switches that are set, checked against the values whet accepts (--all lists every switch)", runEnv)
}

// envSwitchesErr is the check every command but env makes before it runs
// (runMain): a WHET_* switch set to a value whet does not accept stops it
// with the one line naming the variable, its value and the accepted values,
// before any run starts with a default the user did not ask for.
func envSwitchesErr(name string) error {
	if name == "env" {
		return nil // it reports them
	}
	if err := envswitch.Check(); err != nil {
		return fmt.Errorf("%w (whet env lists the switches)", err)
	}
	return nil
}

func runEnv(args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("env", flag.ContinueOnError)
	fs.SetOutput(stderr)
	all := fs.Bool("all", false, "list every switch: its value (or unset), the values it accepts, what unset means and what it does")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	return writeEnv(stdout, os.Environ(), *all)
}

// writeEnv reports the WHET_* variables of environ (os.Environ's form);
// it returns exitStatus(1) when one holds a value whet refuses.
func writeEnv(w io.Writer, environ []string, all bool) error {
	set := envswitch.Set(environ)
	bad := 0
	if len(set) == 0 {
		fmt.Fprintln(w, "no WHET_* switch is set: every one takes its default (whet env --all lists them)")
	}
	if len(set) > 0 {
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		for _, st := range set {
			var verdict string
			switch {
			case st.Err != nil:
				bad++
				verdict = "refused: " + st.Err.Error()
			case st.Known:
				s, _ := envswitch.Lookup(st.Name)
				verdict = fmt.Sprintf("ok (%s; unset: %s)", s.Accepts(), s.UnsetMeans())
			default:
				verdict = "not a switch of whet, which ignores it"
				if near, ok := envswitch.Nearest(st.Name); ok {
					verdict += fmt.Sprintf(" (did you mean %s?)", near)
				}
			}
			fmt.Fprintf(tw, "%s=%s\t%s\n", st.Name, st.Value, verdict)
		}
		tw.Flush()
	}
	if all {
		values := map[string]string{}
		for _, st := range set {
			values[st.Name] = st.Value
		}
		fmt.Fprintln(w)
		for _, s := range envswitch.All() {
			v, ok := values[s.Name]
			if !ok {
				v = "unset"
			} else {
				v = "=" + v
			}
			fmt.Fprintf(w, "%s %s\n  %s\n  accepts %s; unset: %s (read by %s)\n", s.Name, v, s.Doc, s.Accepts(), s.UnsetMeans(), s.Reader)
		}
	}
	if bad > 0 {
		fmt.Fprintf(w, "%d %s not accepted: every other whet command refuses to start until %s fixed or unset\n",
			bad, plural(bad, "value is", "values are"), plural(bad, "it is", "they are"))
		return exitStatus(1)
	}
	return nil
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}
