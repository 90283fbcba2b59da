package export

import (
	"path/filepath"
	"strings"
	"testing"

	"whet/engine"
	"whet/engine/cpu"
)

// A QLoRA run merged into the NF4 weights it was trained on computes what
// the training model (NF4 base + adapter) computes, on the CPU: in float32
// straight from the merge, and through an exported merged model in f16.
// Merged into the full-precision base (the option, and merged
// safetensors' default), it does not: NF4 moved every base weight.
func TestQLoRAMergesIntoNF4Base(t *testing.T) {
	tmp := t.TempDir()
	base := testdata("tiny-llama")
	run := makeQLoRARun(t, filepath.Join(tmp, "qlora"), base, 7)
	ids := transformersInputs[0]

	trained, err := engine.LoadModelWith(base, cpu.New(), engine.ModelOptions{NF4Linears: true})
	if err != nil {
		t.Fatal(err)
	}
	defer trained.Free()
	if _, err := engine.LoadAdapter(filepath.Join(run, "adapter"), trained); err != nil {
		t.Fatal(err)
	}
	want := whetLogits(t, trained, ids)

	// mergedLogits uploads the merged weights of a source into a plain
	// float32 copy of the base and runs it.
	mergedLogits := func(src *Source) []float32 {
		plain, err := engine.LoadModel(base, cpu.New())
		if err != nil {
			t.Fatal(err)
		}
		defer plain.Free()
		params := map[string]*engine.Param{}
		for _, p := range plain.Params() {
			params[p.Name] = p
		}
		for _, w := range Weights(src.Model) {
			v, err := w.Values(src.Model)
			if err != nil {
				t.Fatal(err)
			}
			if err := plain.B.Upload(params[w.Name].W, v); err != nil {
				t.Fatal(err)
			}
		}
		return whetLogits(t, plain, ids)
	}
	r, err := OpenRun(run)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		nf4  bool
		same bool
	}{{true, true}, {false, false}} {
		src, err := r.load(c.nf4)
		if err != nil {
			t.Fatal(err)
		}
		diff, scale := maxDiff(mergedLogits(src), want)
		src.Close()
		t.Logf("nf4 base %v: merged logits within %.2g of the training model's (largest %.3f)", c.nf4, diff, scale)
		if c.same && diff > 1e-5*scale {
			t.Errorf("merged into the NF4 base, the logits differ from the training model's by %g (largest %g)", diff, scale)
		}
		if !c.same && diff < 0.01*scale {
			t.Errorf("merged into the full-precision base, the logits are within %g of the NF4 training model's: the option changes nothing", diff)
		}
	}

	// Through the files: merged f16 with --qlora-base nf4 and with the
	// merged format's default (full).
	exported := func(base string) ([]float32, []string) {
		out := filepath.Join(tmp, "merged-"+base)
		var notices []string
		err := Run(Options{RunDir: run, Format: "merged", Quant: "f16", OutDir: out, QLoRABase: base}, func(_, total int, what string) {
			if total == 0 {
				notices = append(notices, what)
			}
		})
		if err != nil {
			t.Fatal(err)
		}
		m, err := engine.LoadModel(out, cpu.New())
		if err != nil {
			t.Fatal(err)
		}
		defer m.Free()
		return whetLogits(t, m, ids), notices
	}
	nf4, notices := exported("nf4")
	if diff, scale := maxDiff(nf4, want); diff > 0.005*scale {
		t.Errorf("merged f16 export on the NF4 base: logits differ from the training model's by %g (largest %g, f16 allows %g)", diff, scale, 0.005*scale)
	}
	if len(notices) != 1 || !strings.Contains(notices[0], "NF4 weights it was trained on") {
		t.Errorf("the export should say which base it merged into, notices %q", notices)
	}
	full, notices := exported("")
	if diff, scale := maxDiff(full, want); diff < 0.02*scale {
		t.Errorf("merged export's default (full precision) is within %g of the NF4 training model: was it merged into NF4?", diff)
	}
	if len(notices) != 1 || !strings.Contains(notices[0], "full-precision base") {
		t.Errorf("the export should say it merged into the full-precision base, notices %q", notices)
	}
}

// GGUF's default for a QLoRA run is the NF4 base; --qlora-base is refused
// where it means nothing.
func TestQLoRABaseChoices(t *testing.T) {
	if DefaultQLoRABase("gguf") != QLoRABaseNF4 || DefaultQLoRABase("merged") != QLoRABaseFull {
		t.Errorf("defaults: gguf %s, merged %s; want nf4 and full", DefaultQLoRABase("gguf"), DefaultQLoRABase("merged"))
	}
	tmp := t.TempDir()
	lora := makeLoRARun(t, filepath.Join(tmp, "lora"), testdata("tiny-llama"), 2)
	qlora := makeQLoRARun(t, filepath.Join(tmp, "qlora"), testdata("tiny-llama"), 2)
	for _, c := range []struct {
		o    Options
		want string
	}{
		{Options{RunDir: qlora, Format: "gguf", QLoRABase: "nf8"}, "not a merge base"},
		{Options{RunDir: qlora, Format: "peft", QLoRABase: "full"}, "keeps the adapter unmerged"},
		{Options{RunDir: lora, Format: "merged", QLoRABase: "nf4"}, "not a QLoRA one"},
	} {
		if err := Run(c.o, nil); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: %v, want an error saying %q", c.o, err, c.want)
		}
	}
	var notices []string
	err := Run(Options{RunDir: qlora, Format: "gguf", Quant: "f16", OutDir: filepath.Join(tmp, "gguf")}, func(_, total int, what string) {
		if total == 0 {
			notices = append(notices, what)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(notices) == 0 || !strings.Contains(notices[0], "NF4 weights it was trained on") {
		t.Errorf("a QLoRA GGUF export should merge into the NF4 base by default and say so, notices %q", notices)
	}
}
