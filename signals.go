package main

import (
	"os"
	"syscall"
)

// stopSignals are the signals that stop a command the way Ctrl-C does: a
// run stops with a checkpoint, a download keeps its bytes and says how to
// resume. SIGTERM is what kill, systemd, docker stop and a job scheduler
// send; it deserves the same orderly end as Ctrl-C.
var stopSignals = []os.Signal{os.Interrupt, syscall.SIGTERM}
