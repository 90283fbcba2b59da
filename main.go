// Command whet fine-tunes small language models on your own GPU, from a
// terminal. With no arguments it opens the wizard; subcommands run the same
// engine headless.
package main

import (
	"fmt"
	"io"
	"os"
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

func main() {
	os.Exit(runMain(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

// runMain is main without the exit, so tests can drive the CLI.
func runMain(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) > 0 && (args[0] == "help" || args[0] == "-h" || args[0] == "--help") {
		usage(stdout)
		return 0
	}
	// Flags without a command are the studio's: `whet --runs DIR`.
	name := "studio"
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		name, args = args[0], args[1:]
	}
	cmd, ok := commands[name]
	if !ok {
		fmt.Fprintf(stderr, "whet: unknown command %q\n\n", name)
		usage(stderr)
		return 2
	}
	if err := cmd.run(args, stdin, stdout, stderr); err != nil {
		fmt.Fprintf(stderr, "whet %s: %v\n", name, err)
		return 1
	}
	return 0
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
}
