package main

import (
	"flag"
	"fmt"
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
