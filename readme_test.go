package main

import (
	"os"
	"strings"
	"testing"
)

// shellWords splits a command line as sh would for the simple lines in the
// README: words, "quoted words", and nothing from a # comment or a
// redirection on.
func shellWords(line string) []string {
	var words []string
	var cur strings.Builder
	inWord, quote := false, rune(0)
	for _, r := range line {
		switch {
		case quote != 0:
			if r == quote {
				quote = 0
			} else {
				cur.WriteRune(r)
			}
		case r == '"' || r == '\'':
			quote, inWord = r, true
		case r == ' ' || r == '\t':
			if inWord {
				words = append(words, cur.String())
				cur.Reset()
				inWord = false
			}
		case (r == '#' || r == '<' || r == '>' || r == '|') && !inWord:
			return words
		default:
			cur.WriteRune(r)
			inWord = true
		}
	}
	if inWord {
		words = append(words, cur.String())
	}
	return words
}

// TestReadmeCommandsExist: every whet command line in the README's shell
// blocks names a command that exists and only flags that command has, and
// the README says how to install the binary and what the tests need.
func TestReadmeCommandsExist(t *testing.T) {
	doc, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	readme := string(doc)
	for _, want := range []string{"go install .", "npm", "whet --help", "whet --version", "docs/run-file.md"} {
		if !strings.Contains(readme, want) {
			t.Errorf("README.md does not mention %q", want)
		}
	}
	checked := 0
	inShell := false
	for i, line := range strings.Split(readme, "\n") {
		if strings.HasPrefix(line, "```") {
			inShell = line == "```sh"
			continue
		}
		if !inShell {
			continue
		}
		words := shellWords(line)
		for len(words) > 0 && strings.Contains(words[0], "=") { // VAR=value prefixes
			words = words[1:]
		}
		switch {
		case len(words) >= 2 && words[0] == "go" && words[1] == "run":
			words = words[3:] // go run .
		case len(words) >= 1 && words[0] == "whet":
			words = words[1:]
		default:
			continue
		}
		checked++
		if len(words) == 0 || strings.HasPrefix(words[0], "-") {
			// The studio, or --help / --version.
			if code, _, errs := runCLI(t, append(words, "--help")...); code != 0 {
				t.Errorf("README.md:%d: %q: exit %d %s", i+1, line, code, errs)
			}
			continue
		}
		name := words[0]
		if _, ok := commands[name]; !ok {
			t.Errorf("README.md:%d: %q: no command %q", i+1, line, name)
			continue
		}
		var help strings.Builder
		commandHelp(name, &help)
		for _, w := range words[1:] {
			if !strings.HasPrefix(w, "-") {
				continue
			}
			flagName, _, _ := strings.Cut(strings.TrimLeft(w, "-"), "=")
			if !strings.Contains(help.String(), "\n  -"+flagName+" ") && !strings.Contains(help.String(), "\n  -"+flagName+"\n") {
				t.Errorf("README.md:%d: whet %s has no flag %s", i+1, name, w)
			}
		}
	}
	if checked < 8 {
		t.Errorf("checked only %d command lines in README.md", checked)
	}
}
