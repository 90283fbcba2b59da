// Command fakehub serves model folders as a fake Hugging Face Hub on the
// loopback interface (engine/hub/hubtest), so that huggingface_hub,
// transformers and whet can be pointed at it with HF_ENDPOINT. It is the
// server of tools/hub/interop.sh; build it with
//
//	CGO_ENABLED=0 go build -o .dev/fakehub ./tools/hub/fakehub
//
// and run, for example,
//
//	.dev/fakehub -repo whet-test/demo=presets/demo/model -tag v1.0 -url-file /tmp/hub-url
//
// It prints the endpoint, then serves until interrupted.
package main

import (
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"whet/engine/hub/hubtest"
)

type repoFlags []string

func (r *repoFlags) String() string     { return strings.Join(*r, ",") }
func (r *repoFlags) Set(v string) error { *r = append(*r, v); return nil }

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "fakehub:", err)
		os.Exit(1)
	}
}

func run() error {
	var repos repoFlags
	flag.Var(&repos, "repo", "ORG/NAME=DIR: serve the files of DIR as that repo's main branch (repeatable)")
	tag := flag.String("tag", "", "also point this tag at every repo's commit")
	extras := flag.Bool("extras", true, "add a README.md, a pickled-weights stand-in and original/params.json to each repo, which whet must skip")
	apiAddr := flag.String("api", "127.0.0.1:0", "address of the Hub's API host")
	storageAddr := flag.String("storage", "127.0.0.1:0", "address of the storage host LFS downloads are redirected to")
	urlFile := flag.String("url-file", "", "write the endpoint URL to this file once serving")
	storageName := flag.String("storage-name", "localhost", "host name of the storage host in redirects (must differ from the API's and reach the storage address)")
	flag.Parse()
	if len(repos) == 0 {
		return fmt.Errorf("give at least one -repo ORG/NAME=DIR")
	}
	for _, a := range []string{*apiAddr, *storageAddr} {
		if host, _, err := net.SplitHostPort(a); err != nil || !net.ParseIP(host).IsLoopback() {
			return fmt.Errorf("address %q: only loopback addresses are served", a)
		}
	}
	apiLn, err := net.Listen("tcp", *apiAddr)
	if err != nil {
		return err
	}
	storageLn, err := net.Listen("tcp", *storageAddr)
	if err != nil {
		return err
	}
	srv := hubtest.NewOn(apiLn, storageLn)
	defer srv.Close()
	// The storage host goes by another name than the API host, as on the
	// Hub: huggingface_hub follows a redirect to the Hub's own host name and
	// would then miss the Hub's headers on the storage host's answer.
	_, port, _ := net.SplitHostPort(storageLn.Addr().String())
	srv.StorageURL = "http://" + net.JoinHostPort(*storageName, port)
	for _, spec := range repos {
		id, dir, ok := strings.Cut(spec, "=")
		if !ok {
			return fmt.Errorf("-repo %q: want ORG/NAME=DIR", spec)
		}
		refs := []string{"main"}
		if *tag != "" {
			refs = append(refs, *tag)
		}
		files, err := readDir(dir)
		if err != nil {
			return err
		}
		if *extras {
			files = append(files,
				hubtest.File{Name: "README.md", Data: []byte("# " + id + "\nServed by whet's fake Hub.\n")},
				hubtest.File{Name: "pytorch_model.bin", Data: []byte("not a real pickle: whet never fetches .bin files\n"), LFS: true},
				hubtest.File{Name: "original/params.json", Data: []byte("{}\n")},
			)
		}
		commit := srv.AddCommit(id, files, refs...)
		fmt.Printf("%s %s (%d files) from %s\n", id, commit, len(files), dir)
	}
	fmt.Println(srv.URL())
	if *urlFile != "" {
		if err := os.WriteFile(*urlFile, []byte(srv.URL()+"\n"), 0o644); err != nil {
			return err
		}
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	<-sig
	return nil
}

func readDir(dir string) ([]hubtest.File, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var files []hubtest.File
	for _, e := range entries {
		if !e.Type().IsRegular() {
			continue
		}
		data, err := os.ReadFile(dir + "/" + e.Name())
		if err != nil {
			return nil, err
		}
		files = append(files, hubtest.File{Name: e.Name(), Data: data, LFS: hubtest.IsLFSName(e.Name())})
	}
	return files, nil
}
