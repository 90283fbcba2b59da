package main

import (
	"fmt"
	"strings"
)

// terminalErr is the error of a terminal program (the studio, whet attach)
// that ended in error. Run without a terminal (a pipe, a cron job, ssh
// without -t) bubbletea says "could not open TTY"; this says so in words
// and what to do instead.
func terminalErr(err error, instead string) error {
	if msg := err.Error(); strings.Contains(msg, "could not open TTY") || strings.Contains(msg, "error opening TTY") {
		return fmt.Errorf("needs a terminal, and none is attached here (/dev/tty cannot be opened); %s", instead)
	}
	return fmt.Errorf("terminal: %w", err)
}
