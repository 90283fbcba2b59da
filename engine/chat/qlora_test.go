package chat

import (
	"path/filepath"
	"slices"
	"testing"

	"whet/engine"
	"whet/engine/cpu"
)

// A QLoRA run's chat holds the base in NF4, the weights its adapter was
// trained over: the session's linears are those of the training model,
// not the full-precision ones.
func TestQLoRAChatUsesNF4Base(t *testing.T) {
	base := filepath.Join("..", "..", "testdata", "tiny-llama")
	trained, err := engine.LoadModelWith(base, cpu.New(), engine.ModelOptions{NF4Linears: true})
	if err != nil {
		t.Fatal(err)
	}
	defer trained.Free()
	opts := engine.LoRAOptions{Rank: 4, Alpha: 8, Targets: []string{"q", "v"}, Seed: 1}
	if err := trained.AddLoRA(opts); err != nil {
		t.Fatal(err)
	}
	adapter := filepath.Join(t.TempDir(), "adapter")
	if err := engine.SaveAdapter(adapter, trained, opts, base); err != nil {
		t.Fatal(err)
	}
	if !QLoRABase("qlora", adapter) || QLoRABase("lora", adapter) || QLoRABase("qlora", "") {
		t.Fatal("QLoRABase: only a QLoRA run's adapter chat loads the base in NF4")
	}
	for _, nf4 := range []bool{true, false} {
		s, err := Open(cpu.New(), Options{ModelDir: base, AdapterDir: adapter, Template: "chatml", NF4Base: nf4})
		if err != nil {
			t.Fatal(err)
		}
		same := true
		for i, lin := range s.Model.Linears() {
			got, err := s.Model.WeightValues(lin.W)
			if err != nil {
				t.Fatal(err)
			}
			want, err := trained.WeightValues(trained.Linears()[i].W)
			if err != nil {
				t.Fatal(err)
			}
			same = same && slices.Equal(got, want)
		}
		s.Close()
		if same != nf4 {
			t.Errorf("NF4Base %v: the session's linears equal the NF4 training model's: %v", nf4, same)
		}
	}
}
