package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"whet/engine/safetensors"
)

// TestTrainRanksFlag: whet train --ranks 2 trains on two CPU ranks (the
// data-parallel notice, every step, one run folder), and --gpus on the
// CPU backend is refused naming the setting.
func TestTrainRanksFlag(t *testing.T) {
	dir := t.TempDir()
	abs := func(p string) string { a, _ := filepath.Abs(p); return a }
	run := fmt.Sprintf(`name: ranks
model: %s
method: full
backend: cpu
runs_dir: %s
data: {path: %s, max_length: 64, packing: true, seed: 1}
train: {max_steps: 2, micro_batch: 1, grad_accum: 2, lr: 0.001, schedule: constant, seed: 1}
`, abs("testdata/tiny-qwen2"), dir, abs("testdata/datasets/tiny-chat.jsonl"))
	cfgPath := filepath.Join(dir, "run.yaml")
	if err := os.WriteFile(cfgPath, []byte(run), 0o644); err != nil {
		t.Fatal(err)
	}
	code, out, errs := runCLI(t, "train", "-c", cfgPath, "--ranks", "2")
	if code != 0 {
		t.Fatalf("exit %d: %s%s", code, out, errs)
	}
	for _, want := range []string{"data parallel: 2 ranks on cpu", "sharded", "step 2/2", "done: 2 steps"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	code, out, errs = runCLI(t, "train", "-c", cfgPath, "--nnodes", "2", "--node-rank", "1", "--master-addr", "127.0.0.1:1", "--detach")
	if code == 0 || !strings.Contains(out+errs, "--detach is for node 0") {
		t.Fatalf("--detach on node 1: exit %d: %s%s", code, out, errs)
	}
	code, out, errs = runCLI(t, "train", "-c", cfgPath, "--gpus", "2")
	if code == 0 || !strings.Contains(out+errs, "parallel.gpus: needs backend cuda or auto") {
		t.Fatalf("--gpus on the CPU backend: exit %d: %s%s", code, out, errs)
	}
}

// stepLosses reads the step losses from whet train --json output.
func stepLosses(t *testing.T, out string) []float64 {
	t.Helper()
	var losses []float64
	for _, line := range strings.Split(out, "\n") {
		var ev struct {
			Event string  `json:"event"`
			Loss  float64 `json:"loss"`
		}
		if json.Unmarshal([]byte(line), &ev) == nil && ev.Event == "step" {
			losses = append(losses, ev.Loss)
		}
	}
	return losses
}

// TestTrainAcrossNodes runs whet train as two nodes on this host, each a
// process with 2 CPU ranks (node 1 a child process, node 0 this one),
// joined through --master-addr on loopback: node 0 writes the run, node 1
// follows, and the losses and the first step's gradients (exp_avg of the
// step-1 checkpoint) equal a one-rank run's.
func TestTrainAcrossNodes(t *testing.T) {
	dir := t.TempDir()
	abs := func(p string) string { a, _ := filepath.Abs(p); return a }
	write := func(name string) string {
		run := fmt.Sprintf(`name: %s
model: %s
method: full
backend: cpu
runs_dir: %s
data: {path: %s, max_length: 64, packing: true, seed: 1}
train: {max_steps: 3, micro_batch: 1, grad_accum: 4, lr: 0.001, schedule: linear, warmup_steps: 0, seed: 1, max_grad_norm: 1, save_every: 1, keep_checkpoints: 0}
`, name, abs("testdata/tiny-qwen2"), dir, abs("testdata/datasets/tiny-chat.jsonl"))
		p := filepath.Join(dir, name+".yaml")
		if err := os.WriteFile(p, []byte(run), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	code, out, errs := runCLI(t, "train", "-c", write("one"), "--json")
	if code != 0 {
		t.Fatalf("one rank: exit %d: %s%s", code, out, errs)
	}
	want := stepLosses(t, out)

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Skipf("no loopback: %v", err)
	}
	master := ln.Addr().String()
	ln.Close()
	cfg := write("nodes")
	node1 := exec.Command(os.Args[0], "train", "-c", cfg, "--json", "--ranks", "2", "--nnodes", "2", "--node-rank", "1", "--master-addr", master)
	node1.Env = append(os.Environ(), asWhetEnv+"=1")
	var out1 bytes.Buffer
	node1.Stdout, node1.Stderr = &out1, &out1
	if err := node1.Start(); err != nil {
		t.Fatal(err)
	}
	code, out, errs = runCLI(t, "train", "-c", cfg, "--json", "--ranks", "2", "--nnodes", "2", "--node-rank", "0", "--master-addr", master)
	werr := node1.Wait()
	if code != 0 || werr != nil {
		t.Fatalf("node 0: exit %d: %s%s\nnode 1: %v: %s", code, out, errs, werr, out1.String())
	}
	if !strings.Contains(out, "node 0 of 2, ranks 0-1 of 4") || !strings.Contains(out1.String(), "node 1 of 2, ranks 2-3 of 4") {
		t.Errorf("node notices missing:\nnode 0: %s\nnode 1: %s", out, out1.String())
	}
	got := stepLosses(t, out)
	if len(got) != len(want) || len(want) != 3 {
		t.Fatalf("losses %v, one rank %v", got, want)
	}
	for i := range want {
		if math.Abs(got[i]-want[i]) > 1e-5 {
			t.Errorf("step %d: loss %.7f across nodes, %.7f on one rank", i+1, got[i], want[i])
		}
	}
	if len(stepLosses(t, out1.String())) != 0 {
		t.Errorf("node 1 reported steps of its own: %s", out1.String())
	}
	read := func(name string) map[string][]float32 {
		f, err := safetensors.Open(filepath.Join(dir, name, "checkpoints", "step-00000001", "trainable.safetensors"))
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		m := map[string][]float32{}
		for _, n := range f.Names() {
			if strings.HasSuffix(n, ".exp_avg") {
				m[n], _ = f.Float32(n)
			}
		}
		return m
	}
	a, b := read("nodes"), read("one")
	if len(a) == 0 || len(a) != len(b) {
		t.Fatalf("checkpoints hold %d and %d gradients", len(a), len(b))
	}
	for n, w := range b {
		var d, s float64
		for i := range w {
			d += math.Pow(float64(a[n][i]-w[i]), 2)
			s += math.Pow(float64(w[i]), 2)
		}
		if s > 0 && math.Sqrt(d/s) > 1e-5 {
			t.Errorf("%s: first-step gradient differs by %.2g relative", n, math.Sqrt(d/s))
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "nodes", "status.json")); err != nil {
		t.Errorf("node 0 wrote no run folder: %v", err)
	}
}
