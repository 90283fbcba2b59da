package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"

	"whet/engine/export"
)

func init() {
	register("export", "export a run as a PEFT adapter, merged safetensors or GGUF (+ Ollama Modelfile)", runExport)
}

// runExport is `whet export --run DIR --format peft|merged|gguf
// [--quant ...] [--out DIR] [--force] [--qlora-base nf4|full] [--template NAME]`. It prints one
// line per step so a long export shows where it is. Ctrl-C (SIGINT) or
// SIGTERM stops it at the next weight or write, removing the temporary
// file being written (and the output folder if it made it and nothing was
// finished), instead of killing the process mid-file.
func runExport(args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("export", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o export.Options
	fs.StringVar(&o.RunDir, "run", "", "run directory (made by whet train)")
	fs.StringVar(&o.Format, "format", "", "peft, merged or gguf")
	fs.StringVar(&o.Quant, "quant", "", "merged: bf16 (default) or f16; gguf: q8_0 (default), q4_k_m, f16 or bf16")
	fs.StringVar(&o.OutDir, "out", "", "output directory (default RUN/export/FORMAT-QUANT)")
	fs.BoolVar(&o.Force, "force", false, "write into a non-empty --out, removing an earlier export's files there first (other files stay)")
	fs.StringVar(&o.QLoRABase, "qlora-base", "", "QLoRA runs: merge into the NF4 weights the adapter was trained on (nf4, default for gguf) or the full-precision base (full, default for merged)")
	fs.StringVar(&o.Template, "template", "", "chat template the export carries: a built-in name, a .jinja file or Jinja text (default: the run's data.template, else the base model's own)")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: whet export --run DIR --format peft|merged|gguf [--quant q8_0|q4_k_m|f16|bf16] [--out DIR [--force]] [--qlora-base nf4|full]")
		fs.PrintDefaults()
	}
	if err := parseFlags(fs, args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	// What is missing, with a command that has it (not the whole list of
	// flags above one line of error).
	switch {
	case o.RunDir == "" && o.Format == "":
		return errors.New("--run and --format are required: whet export --run runs/NAME --format peft|merged|gguf (whet runs lists the runs)")
	case o.RunDir == "":
		return fmt.Errorf("--run is required: whet export --run runs/NAME --format %s (whet runs lists the runs)", o.Format)
	case o.Format == "":
		return fmt.Errorf("--format is required: whet export --run %s --format peft|merged|gguf", o.RunDir)
	}
	o.Format = strings.ToLower(o.Format)
	if err := o.Check(); err != nil {
		return err
	}
	if o.OutDir == "" {
		o.OutDir = export.DefaultOutDir(o)
	}
	// The export stops on a signal through its context; the watcher has
	// ended before this function returns, so it never writes to stderr
	// after the caller has moved on.
	ctx, stop := context.WithCancel(context.Background())
	interrupted := make(chan os.Signal, 1)
	signal.Notify(interrupted, stopSignals...)
	watcher := make(chan struct{})
	go func() {
		defer close(watcher)
		select {
		case s := <-interrupted:
			stop()
			// A second signal ends the process at once (loading the
			// model cannot be cut short).
			signal.Stop(interrupted)
			fmt.Fprintf(stderr, "whet export: %v: stopping at the next weight and removing temporary files (again to quit at once)\n", s)
		case <-ctx.Done():
		}
	}()
	defer func() {
		signal.Stop(interrupted)
		stop()
		<-watcher
	}()
	err := export.RunContext(ctx, o, func(done, total int, what string) {
		if total == 0 { // a notice, not a step
			fmt.Fprintln(stdout, what)
			return
		}
		fmt.Fprintf(stdout, "[%d/%d] %s\n", done, total, what)
	})
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "exported %s to %s\n", o.Format, o.OutDir)
	return nil
}
