// Command whet fine-tunes small language models on your own GPU, from a
// terminal. With no arguments it opens the wizard; subcommands run the same
// engine headless.
package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime"
	"runtime/debug"
	"sort"
	"strings"
)

// command is one subcommand. Each lives in its own cmd_*.go file and
// registers itself in init, so adding one never touches this file.
type command struct {
	summary string
	run     func(args []string, stdin io.Reader, stdout, stderr io.Writer) error
}

var commands = map[string]command{}

func register(name, summary string, run func(args []string, stdin io.Reader, stdout, stderr io.Writer) error) {
	commands[name] = command{summary: summary, run: run}
}

// version is set at link time by release builds
// (go build -ldflags "-X main.version=v0.3.0"); otherwise the module
// version and VCS stamp that the go command records are shown.
var version = ""

// exitStatus is returned by a command that has already said everything
// on stdout or stderr (whet fit's "does not fit" verdict): main only sets
// the exit status, printing nothing more.
type exitStatus int

func (e exitStatus) Error() string { return fmt.Sprintf("exit status %d", int(e)) }

func main() {
	os.Exit(runMain(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

// runMain is main without the exit, so tests can drive the CLI.
func runMain(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) > 0 {
		switch args[0] {
		case "help", "-h", "-help", "--help":
			if len(args) > 1 {
				if _, ok := commands[args[1]]; ok {
					return commandHelp(args[1], stdout)
				}
			}
			usage(stdout)
			return 0
		case "version", "-version", "--version":
			fmt.Fprintln(stdout, versionLine())
			return 0
		}
	}
	// Flags without a command are the studio's: `whet --runs DIR`.
	name, implied := "studio", true
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		name, args, implied = args[0], args[1:], false
	}
	cmd, ok := commands[name]
	if !ok {
		fmt.Fprintf(stderr, "whet: unknown command %q\n\n", name)
		usage(stderr)
		return 2
	}
	if asksForHelp(args) {
		return commandHelp(name, stdout)
	}
	if err := envSwitchesErr(name); err != nil {
		fmt.Fprintf(stderr, "whet %s: %v\n", name, err)
		return 2
	}
	said := &echoRecorder{w: stderr}
	err := cmd.run(args, stdin, stdout, said)
	if err == nil {
		return 0
	}
	var status exitStatus
	if errors.As(err, &status) {
		return int(status)
	}
	var intr *interruptedError
	if errors.As(err, &intr) {
		// Stopped by a signal in good order: say what was kept, and exit
		// as a shell expects of a process that signal ended.
		fmt.Fprintf(stderr, "whet %s: %s\n", name, intr.msg)
		return intr.exitCode()
	}
	var ferr *flagError
	if errors.As(err, &ferr) {
		if implied {
			// whet --bogus: the user named no command.
			fmt.Fprintf(stderr, "whet: %s (whet --help lists the commands, whet studio --help the studio's flags)\n", ferr.msg)
		} else {
			fmt.Fprintf(stderr, "whet %s: %s (whet %s --help lists its flags)\n", name, ferr.msg, name)
		}
		return 2
	}
	msg := err.Error()
	if said.saidLine(msg) {
		// The flag package prints its own errors (with the usage) before
		// returning them; saying it twice would bury the flags list.
		return 2
	}
	// Errors wrapped by a package named like the command ("export: ...")
	// would otherwise read "whet export: export: ...".
	msg = strings.TrimPrefix(msg, name+": ")
	fmt.Fprintf(stderr, "whet %s: %s\n", name, msg)
	return 1
}

// asksForHelp reports whether the flags (before a "--") ask for help.
func asksForHelp(args []string) bool {
	for _, a := range args {
		switch a {
		case "--":
			return false
		case "-h", "-help", "--help":
			return true
		}
	}
	return false
}

// commandHelp prints what a command does, then its flags as the command's
// own flag set describes them (it is run with -h, which every command
// handles by parsing its flags and nothing else).
func commandHelp(name string, w io.Writer) int {
	cmd := commands[name]
	fmt.Fprintf(w, "whet %s: %s\n\n", name, cmd.summary)
	var flags bytes.Buffer
	err := cmd.run([]string{"-h"}, strings.NewReader(""), io.Discard, &flags)
	text := flags.String()
	// The flag package's default heading; ours is the line above.
	if rest, ok := strings.CutPrefix(text, "Usage of "+name+":\n"); ok {
		text = "usage: whet " + name + " [flags]\n" + rest
	}
	io.WriteString(w, text)
	if err != nil && !errors.Is(err, flag.ErrHelp) {
		fmt.Fprintf(w, "whet %s: %v\n", name, err)
		return 1
	}
	return 0
}

// echoRecorder passes writes through and remembers the first few KiB, so
// that main can tell whether a command already printed its error (the
// flag package does, first thing).
type echoRecorder struct {
	w    io.Writer
	head []byte
}

const echoRecorderBytes = 16 << 10

func (r *echoRecorder) Write(p []byte) (int, error) {
	if room := echoRecorderBytes - len(r.head); room > 0 {
		r.head = append(r.head, p[:min(room, len(p))]...)
	}
	return r.w.Write(p)
}

// Unwrap is the writer underneath, so that a command can tell it is
// writing to a terminal (the live progress of a pull).
func (r *echoRecorder) Unwrap() io.Writer { return r.w }

func (r *echoRecorder) saidLine(msg string) bool {
	for _, line := range strings.Split(string(r.head), "\n") {
		if line == msg {
			return true
		}
	}
	return false
}

// versionLine is what whet --version prints: the release version (or the
// VCS revision of a development build), the Go toolchain and the platform.
func versionLine() string {
	v := version
	var rev, when string
	modified := false
	if info, ok := debug.ReadBuildInfo(); ok {
		if v == "" && info.Main.Version != "" && info.Main.Version != "(devel)" {
			v = info.Main.Version
		}
		for _, s := range info.Settings {
			switch s.Key {
			case "vcs.revision":
				rev = s.Value
			case "vcs.time":
				when = s.Value
			case "vcs.modified":
				modified = s.Value == "true"
			}
		}
	}
	if v == "" {
		v = "devel"
	}
	line := "whet " + v
	if rev != "" {
		line += " " + rev[:min(12, len(rev))]
		if when != "" {
			line += " " + when
		}
		if modified {
			line += " (modified)"
		}
	}
	return fmt.Sprintf("%s, %s %s/%s", line, runtime.Version(), runtime.GOOS, runtime.GOARCH)
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: whet [command] [flags]")
	fmt.Fprintln(w, "\nWith no command, whet opens the studio (the wizard).")
	fmt.Fprintln(w, "\ncommands:")
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "  %-10s %s\n", n, commands[n].summary)
	}
	fmt.Fprintln(w, "\nwhet COMMAND --help shows a command's flags; whet --version the build.")
}
