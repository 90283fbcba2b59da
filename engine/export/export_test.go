package export

import (
	"context"
	"encoding/json"
	"errors"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"text/template"

	parser "github.com/gpustack/gguf-parser-go"

	"whet/datasets"
	"whet/engine"
	"whet/engine/cpu"
	"whet/engine/gguf"
	"whet/engine/safetensors"
)

func loadRun(t *testing.T, run string) *Source {
	t.Helper()
	r, err := OpenRun(run)
	if err != nil {
		t.Fatal(err)
	}
	src, err := r.Load()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(src.Close)
	return src
}

func TestMergeLoRAMatchesAdapterForward(t *testing.T) {
	// The merged weights must compute what the base + adapter computes.
	run := makeLoRARun(t, filepath.Join(t.TempDir(), "run"), testdata("tiny-llama"), 3)
	src := loadRun(t, run)
	ids := transformersInputs[0]
	want := whetLogits(t, src.Model, ids)
	base, err := engine.LoadModel(src.ModelDir, cpu.New())
	if err != nil {
		t.Fatal(err)
	}
	defer base.Free()
	before := whetLogits(t, base, ids)
	for _, w := range Weights(src.Model) {
		v, err := w.Values(src.Model)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range base.Params() {
			if p.Name == w.Name {
				if err := base.B.Upload(p.W, v); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	got := whetLogits(t, base, ids)
	diff, _ := maxDiff(got, want)
	moved, _ := maxDiff(before, want)
	if diff > 1e-4 {
		t.Errorf("merged model's logits differ from base+adapter by %g", diff)
	}
	if moved < 0.05 {
		t.Errorf("the adapter moves the logits by only %g: the test adapter is too weak to tell a merge from none", moved)
	}
}

func TestMergedExport(t *testing.T) {
	tmp := t.TempDir()
	run := makeLoRARun(t, filepath.Join(tmp, "run"), testdata("tiny-qwen2"), 5)
	src := loadRun(t, run)
	want := whetLogits(t, src.Model, transformersInputs[1])
	old := ShardBytes
	ShardBytes = 200_000 // force shards and an index
	defer func() { ShardBytes = old }()
	for _, q := range []struct {
		quant, torch, st string
		tol              float64
	}{{"bf16", "bfloat16", "BF16", 0.02}, {"f16", "float16", "F16", 0.005}} {
		out := filepath.Join(tmp, "merged-"+q.quant)
		var steps []string
		if err := Run(Options{RunDir: run, Format: "merged", Quant: q.quant, OutDir: out}, func(d, n int, what string) { steps = append(steps, what) }); err != nil {
			t.Fatal(err)
		}
		if len(steps) == 0 {
			t.Error("no progress reported")
		}
		if _, err := os.Stat(filepath.Join(out, "model.safetensors.index.json")); err != nil {
			t.Errorf("%s: no shard index: %v", q.quant, err)
		}
		set, err := safetensors.OpenDir(out)
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range set.Names() {
			if info, _ := set.Info(n); info.DType != q.st {
				t.Errorf("%s: tensor %s stored as %s", q.quant, n, info.DType)
			}
		}
		set.Close()
		cfg, err := readJSONMap(filepath.Join(out, "config.json"))
		if err != nil {
			t.Fatal(err)
		}
		if cfg["dtype"] != q.torch {
			t.Errorf("%s: config.json dtype %v, want %s", q.quant, cfg["dtype"], q.torch)
		}
		gen, err := readJSONMap(filepath.Join(out, "generation_config.json"))
		if err != nil {
			t.Fatal(err)
		}
		var eos []int
		js, _ := json.Marshal(gen["eos_token_id"])
		if err := json.Unmarshal(js, &eos); err != nil || !slices.Contains(eos, 2) || !slices.Contains(eos, 0) {
			t.Errorf("%s: generation_config eos_token_id %v, want <|im_end|> (2) and <|endoftext|> (0)", q.quant, gen["eos_token_id"])
		}
		for _, f := range []string{"tokenizer.json", "tokenizer_config.json"} {
			if _, err := os.Stat(filepath.Join(out, f)); err != nil {
				t.Errorf("%s: %v", q.quant, err)
			}
		}
		m, err := engine.LoadModel(out, cpu.New())
		if err != nil {
			t.Fatal(err)
		}
		got := whetLogits(t, m, transformersInputs[1])
		m.Free()
		diff, top := maxDiff(got, want)
		if diff > q.tol*top {
			t.Errorf("%s: reloaded merged model's logits differ by %g (largest %g)", q.quant, diff, top)
		}
	}
}

func TestPEFTExport(t *testing.T) {
	tmp := t.TempDir()
	run := makeLoRARun(t, filepath.Join(tmp, "run"), testdata("tiny-llama"), 9)
	out := filepath.Join(tmp, "peft")
	if err := Run(Options{RunDir: run, Format: "peft", OutDir: out}, nil); err != nil {
		t.Fatal(err)
	}
	cfg, err := readJSONMap(filepath.Join(out, "adapter_config.json"))
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := cfg["base_model_name_or_path"].(string); !filepath.IsAbs(b) {
		t.Errorf("base_model_name_or_path %q is not an absolute folder", b)
	}
	// The export loads back onto the base as the run's adapter does.
	m, err := engine.LoadModel(testdata("tiny-llama"), cpu.New())
	if err != nil {
		t.Fatal(err)
	}
	defer m.Free()
	if _, err := engine.LoadAdapter(out, m); err != nil {
		t.Fatal(err)
	}
	src := loadRun(t, run)
	a, b := whetLogits(t, m, transformersInputs[0]), whetLogits(t, src.Model, transformersInputs[0])
	if !slices.Equal(a, b) {
		t.Error("the exported adapter computes different logits from the run's")
	}

	if err := Run(Options{RunDir: makeFullRun(t, filepath.Join(tmp, "full"), testdata("tiny-llama")), Format: "peft"}, nil); err == nil || !strings.Contains(err.Error(), "full fine-tuning") {
		t.Errorf("peft export of a full run: %v", err)
	}
}

// breakAdapter rewrites a run's adapter_model.safetensors through edit.
func breakAdapter(t *testing.T, run string, edit func([]safetensors.Tensor) []safetensors.Tensor) {
	t.Helper()
	path := filepath.Join(run, "adapter", "adapter_model.safetensors")
	f, err := safetensors.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	var ts []safetensors.Tensor
	for _, n := range f.Names() {
		info, _ := f.Info(n)
		v, err := f.Float32(n)
		if err != nil {
			t.Fatal(err)
		}
		ts = append(ts, safetensors.F32Tensor(n, info.Shape, v))
	}
	f.Close()
	if err := safetensors.Write(path, edit(ts), nil); err != nil {
		t.Fatal(err)
	}
}

func TestPEFTExportRejectsBrokenAdapters(t *testing.T) {
	cases := []struct {
		name string
		edit func([]safetensors.Tensor) []safetensors.Tensor
		cfg  func(map[string]any)
		want string
	}{
		{name: "renamed key", want: "does not follow PEFT's naming", edit: func(ts []safetensors.Tensor) []safetensors.Tensor {
			ts[0].Name = strings.Replace(ts[0].Name, "base_model.model.", "", 1)
			return ts
		}},
		{name: "missing tensor", want: "adapter tensors missing", edit: func(ts []safetensors.Tensor) []safetensors.Tensor { return ts[1:] }},
		{name: "wrong shape", want: "has shape", edit: func(ts []safetensors.Tensor) []safetensors.Tensor {
			ts[0].Shape = []int{ts[0].Shape[1], ts[0].Shape[0]}
			return ts
		}},
		{name: "untargeted module", want: "not in adapter_config.json's target_modules", cfg: func(c map[string]any) {
			c["target_modules"] = []any{"q_proj"}
		}},
		{name: "no r", want: "r: missing", cfg: func(c map[string]any) { delete(c, "r") }},
		{name: "no base", want: "base_model_name_or_path", cfg: func(c map[string]any) { c["base_model_name_or_path"] = "" }},
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			run := makeLoRARun(t, filepath.Join(t.TempDir(), "run"), testdata("tiny-llama"), uint64(30+i))
			if c.edit != nil {
				breakAdapter(t, run, c.edit)
			}
			if c.cfg != nil {
				p := filepath.Join(run, "adapter", "adapter_config.json")
				cfg, err := readJSONMap(p)
				if err != nil {
					t.Fatal(err)
				}
				c.cfg(cfg)
				if err := writeJSON(p, cfg); err != nil {
					t.Fatal(err)
				}
			}
			err := Run(Options{RunDir: run, Format: "peft", OutDir: filepath.Join(t.TempDir(), "out")}, nil)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("got %v, want an error containing %q", err, c.want)
			}
		})
	}
}

func TestGGUFMetadataReadsBack(t *testing.T) {
	tmp := t.TempDir()
	run := makeLoRARun(t, filepath.Join(tmp, "run"), testdata("tiny-llama"), 4)
	src := loadRun(t, run)
	for _, q := range []struct {
		quant string
		ftype uint32
		types map[string]gguf.TensorType
	}{
		{"f16", 1, map[string]gguf.TensorType{"blk.0.attn_q.weight": gguf.F16, "blk.0.attn_norm.weight": gguf.F32}},
		{"bf16", 32, map[string]gguf.TensorType{"blk.0.attn_q.weight": gguf.BF16}},
		{"q8_0", 7, map[string]gguf.TensorType{"blk.0.attn_q.weight": gguf.Q8_0, "output.weight": gguf.Q8_0}},
		// 64-wide rows cannot hold 256-value K-quant blocks: llama.cpp's
		// fallbacks, Q5_0 for Q4_K (the untied embedding too) and Q8_0
		// for the head's Q6_K.
		{"q4_k_m", 15, map[string]gguf.TensorType{"blk.0.attn_q.weight": gguf.Q5_0, "token_embd.weight": gguf.Q5_0, "output.weight": gguf.Q8_0}},
	} {
		out := filepath.Join(tmp, q.quant)
		if err := Run(Options{RunDir: run, Format: "gguf", Quant: q.quant, OutDir: out}, nil); err != nil {
			t.Fatal(err)
		}
		gf, err := parser.ParseGGUFFile(filepath.Join(out, "model.gguf"))
		if err != nil {
			t.Fatalf("%s: gguf-parser-go: %v", q.quant, err)
		}
		kv := gf.Header.MetadataKV
		str := func(k string) string { v, _ := kv.Get(k); return v.ValueString() }
		u32 := func(k string) uint32 { v, _ := kv.Get(k); return v.ValueUint32() }
		c := src.Model.Cfg
		for k, want := range map[string]any{
			"general.architecture":            "llama",
			"tokenizer.ggml.model":            "gpt2",
			"tokenizer.ggml.pre":              "qwen2",
			"llama.block_count":               uint32(c.NumLayers),
			"llama.embedding_length":          uint32(c.HiddenSize),
			"llama.feed_forward_length":       uint32(c.IntermediateSize),
			"llama.attention.head_count":      uint32(c.NumHeads),
			"llama.attention.head_count_kv":   uint32(c.NumKVHeads),
			"llama.context_length":            uint32(c.MaxPositions),
			"general.file_type":               q.ftype,
			"tokenizer.ggml.eos_token_id":     uint32(2),
			"tokenizer.ggml.eot_token_id":     uint32(2),
			"tokenizer.ggml.padding_token_id": uint32(0),
		} {
			var got any
			if _, ok := want.(string); ok {
				got = str(k)
			} else {
				got = u32(k)
			}
			if got != want {
				t.Errorf("%s: %s = %v, want %v", q.quant, k, got, want)
			}
		}
		if v, _ := kv.Get("llama.rope.freq_base"); v.ValueFloat32() != float32(c.RopeTheta) {
			t.Errorf("%s: rope.freq_base %v", q.quant, v.ValueFloat32())
		}
		if v, _ := kv.Get("tokenizer.chat_template"); v.ValueString() != src.Tok.ChatTemplate() {
			t.Errorf("%s: chat template not carried", q.quant)
		}
		toks, _ := kv.Get("tokenizer.ggml.tokens")
		if n := toks.ValueArray().Len; int(n) != c.VocabSize {
			t.Errorf("%s: %d tokens, want %d", q.quant, n, c.VocabSize)
		}
		merges, _ := kv.Get("tokenizer.ggml.merges")
		if merges.ValueArray().Len == 0 {
			t.Errorf("%s: no merges", q.quant)
		}
		types := ggufTypes(gf)
		var names []string
		for _, ti := range gf.TensorInfos {
			names = append(names, ti.Name)
		}
		checkGGUFTypes(t, q.quant, types, q.types)
		if types["rope_freqs.weight"] != gguf.F32 || !slices.Contains(names, "output.weight") {
			t.Errorf("%s: tensors %v lack rope_freqs (llama3 scaling) or output", q.quant, names)
		}
		if len(names) != 2+9*c.NumLayers+2 {
			t.Errorf("%s: %d tensors: %v", q.quant, len(names), names)
		}
		mf, err := os.ReadFile(filepath.Join(out, "Modelfile"))
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range []string{"FROM ./model.gguf", `PARAMETER stop "<|im_end|>"`, `PARAMETER stop "<|endoftext|>"`, "TEMPLATE \"\"\"{{- range .Messages }}<|im_start|>"} {
			if !strings.Contains(string(mf), line) {
				t.Errorf("%s: Modelfile lacks %q:\n%s", q.quant, line, mf)
			}
		}
	}
}

// Q4_K_M stores each tensor as llama-quantize would for the same model.
// The configs are those of real models, whose llama.cpp Q4_K_M files show
// these types: Qwen2.5-0.5B (tied embedding, rows of 896: Q5_0 and Q8_0
// fallbacks), Llama 3.2 1B (tied embedding in Q6_K), Llama 3.1 8B
// (untied: embedding Q4_K, head Q6_K), Llama 3.1 70B (attn_v in Q5_K) and
// Qwen2.5-72B (ffn_down rows of 29568: Q5_0 and Q8_0).
func TestQ4KMTypesFollowLlamaCpp(t *testing.T) {
	plan := ggufQuants["q4_k_m"]
	type want struct {
		role  string
		layer int
		typ   gguf.TensorType
	}
	for _, m := range []struct {
		name, arch string
		cfg        engine.ModelConfig
		want       []want
	}{
		{"qwen2.5-0.5b", "qwen2", engine.ModelConfig{HiddenSize: 896, IntermediateSize: 4864, NumLayers: 24, NumHeads: 14, NumKVHeads: 2, HeadDim: 64, VocabSize: 151936, TieWordEmbeddings: true},
			[]want{{"token_embd", -1, gguf.Q8_0}, {"attn_q", 0, gguf.Q5_0}, {"attn_k", 7, gguf.Q5_0}, {"attn_output", 3, gguf.Q5_0},
				{"attn_v", 0, gguf.Q8_0}, {"attn_v", 3, gguf.Q5_0}, {"attn_v", 5, gguf.Q8_0}, {"attn_v", 21, gguf.Q8_0},
				{"ffn_gate", 4, gguf.Q5_0}, {"ffn_up", 4, gguf.Q5_0}, {"ffn_down", 2, gguf.Q6_K}, {"ffn_down", 3, gguf.Q4_K}, {"ffn_down", 8, gguf.Q6_K},
				{"attn_norm", 0, gguf.F32}, {"output_norm", -1, gguf.F32}}},
		{"llama-3.2-1b", "llama", engine.ModelConfig{HiddenSize: 2048, IntermediateSize: 8192, NumLayers: 16, NumHeads: 32, NumKVHeads: 8, HeadDim: 64, VocabSize: 128256, TieWordEmbeddings: true},
			[]want{{"token_embd", -1, gguf.Q6_K}, {"attn_q", 0, gguf.Q4_K}, {"attn_v", 1, gguf.Q6_K}, {"attn_v", 2, gguf.Q4_K}, {"attn_v", 4, gguf.Q6_K},
				{"attn_v", 13, gguf.Q6_K}, {"attn_v", 14, gguf.Q6_K}, {"ffn_down", 3, gguf.Q4_K}, {"ffn_down", 7, gguf.Q6_K}, {"ffn_up", 7, gguf.Q4_K}}},
		{"llama-3.1-8b", "llama", engine.ModelConfig{HiddenSize: 4096, IntermediateSize: 14336, NumLayers: 32, NumHeads: 32, NumKVHeads: 8, HeadDim: 128, VocabSize: 128256},
			[]want{{"token_embd", -1, gguf.Q4_K}, {"output", -1, gguf.Q6_K}, {"attn_v", 3, gguf.Q6_K}, {"attn_v", 4, gguf.Q4_K}, {"attn_v", 6, gguf.Q6_K},
				{"ffn_down", 28, gguf.Q6_K}, {"ffn_down", 27, gguf.Q6_K}, {"ffn_down", 26, gguf.Q4_K}, {"attn_k", 0, gguf.Q4_K}}},
		{"llama-3.1-70b", "llama", engine.ModelConfig{HiddenSize: 8192, IntermediateSize: 28672, NumLayers: 80, NumHeads: 64, NumKVHeads: 8, HeadDim: 128, VocabSize: 128256},
			[]want{{"attn_v", 0, gguf.Q6_K}, {"attn_v", 10, gguf.Q5_K}, {"attn_v", 12, gguf.Q6_K}, {"attn_q", 10, gguf.Q4_K}, {"ffn_down", 10, gguf.Q4_K}, {"output", -1, gguf.Q6_K}}},
		{"qwen2.5-72b", "qwen2", engine.ModelConfig{HiddenSize: 8192, IntermediateSize: 29568, NumLayers: 80, NumHeads: 64, NumKVHeads: 8, HeadDim: 128, VocabSize: 152064},
			[]want{{"attn_v", 10, gguf.Q5_K}, {"ffn_down", 10, gguf.Q5_0}, {"ffn_down", 0, gguf.Q8_0}, {"ffn_up", 10, gguf.Q4_K}, {"token_embd", -1, gguf.Q4_K}}},
		// Phi-4-mini: llama-quantize counts a fused attn_qkv as attn_v
		// (llama-quant.cpp's category_is_attn_v), so it takes Q6_K in the
		// same layers; the stacked gate/up stays Q4_K.
		{"phi-4-mini", "phi3", engine.ModelConfig{HiddenSize: 3072, IntermediateSize: 8192, NumLayers: 32, NumHeads: 24, NumKVHeads: 8, HeadDim: 128, VocabSize: 200064, TieWordEmbeddings: true},
			[]want{{"attn_qkv", 0, gguf.Q6_K}, {"attn_qkv", 4, gguf.Q4_K}, {"attn_qkv", 6, gguf.Q6_K}, {"attn_qkv", 28, gguf.Q6_K},
				{"ffn_up", 6, gguf.Q4_K}, {"ffn_down", 6, gguf.Q6_K}, {"token_embd", -1, gguf.Q6_K}}},
	} {
		c := m.cfg
		shapes := map[string][]int{
			"token_embd": {c.VocabSize, c.HiddenSize}, "output": {c.VocabSize, c.HiddenSize},
			"attn_q": {c.QDim(), c.HiddenSize}, "attn_k": {c.KVDim(), c.HiddenSize}, "attn_v": {c.KVDim(), c.HiddenSize},
			"attn_output": {c.HiddenSize, c.QDim()}, "ffn_gate": {c.IntermediateSize, c.HiddenSize},
			"ffn_up": {c.IntermediateSize, c.HiddenSize}, "ffn_down": {c.HiddenSize, c.IntermediateSize},
			"attn_norm": {c.HiddenSize}, "output_norm": {c.HiddenSize},
			"attn_qkv": {c.QDim() + 2*c.KVDim(), c.HiddenSize},
		}
		if m.arch == "phi3" {
			shapes["ffn_up"] = []int{2 * c.IntermediateSize, c.HiddenSize}
		}
		for _, w := range m.want {
			if got := plan.tensorType(m.arch, &c, w.role, w.layer, shapes[w.role]); got.Type != w.typ {
				t.Errorf("%s: %s of layer %d stored as %s, llama.cpp uses %s", m.name, w.role, w.layer, got.Type, w.typ)
			}
		}
	}
}

// The export says how it stored the tensors, naming llama.cpp's
// fallbacks and the row widths that caused them.
func TestGGUFTypeSummary(t *testing.T) {
	plan := ggufQuants["q4_k_m"]
	c := engine.ModelConfig{HiddenSize: 896, IntermediateSize: 4864, NumLayers: 24, NumHeads: 14, NumKVHeads: 2, HeadDim: 64, VocabSize: 151936, TieWordEmbeddings: true}
	var choices []tensorChoice
	var widths []int
	add := func(role string, layer int, shape ...int) {
		choices = append(choices, plan.tensorType("qwen2", &c, role, layer, shape))
		widths = append(widths, shape[len(shape)-1])
	}
	add("token_embd", -1, 151936, 896)
	for l := 0; l < 24; l++ {
		add("attn_v", l, 128, 896)
		add("ffn_down", l, 896, 4864)
		add("attn_norm", l, 896)
	}
	// 12 of the 24 layers get more bits (useMoreBits): their attn_v
	// would be Q6_K and falls back to Q8_0, the others' Q4_K to Q5_0;
	// ffn_down's rows of 4864 are whole super-blocks.
	want := "Q4_K_M: 12 Q4_K, 12 Q5_0, 12 Q6_K, 13 Q8_0, 24 F32; llama.cpp's fallbacks for rows that are not whole blocks: 12 Q8_0 instead of Q6_K (rows of 896), 12 Q5_0 instead of Q4_K (rows of 896)"
	if got := typeSummary("q4_k_m", choices, widths); got != want {
		t.Errorf("summary\n%s\nwant\n%s", got, want)
	}
}

func TestPermuteRoPEPairsHalves(t *testing.T) {
	// 2 heads of dim 4, 1 input: rows h0:[0 1 2 3] h1:[4 5 6 7] become
	// [0 2 1 3] [4 6 5 7] (row i of a head pairs with row i+hd/2).
	w := []float32{0, 1, 2, 3, 4, 5, 6, 7}
	got := permuteRoPE(w, 2, 1)
	if want := []float32{0, 2, 1, 3, 4, 6, 5, 7}; !slices.Equal(got, want) {
		t.Errorf("permuteRoPE = %v, want %v", got, want)
	}
}

// ollamaData is what Ollama passes a TEMPLATE.
// ollamaData is what Ollama gives a TEMPLATE: the messages (reasoning
// apart in .Thinking) and whether the request set thinking on or off.
type ollamaData struct {
	System            string
	Messages          []ollamaMessage
	Think, IsThinkSet bool
}

type ollamaMessage struct{ Role, Content, Thinking string }

func toOllama(msgs []datasets.Message, think *bool) ollamaData {
	d := ollamaData{IsThinkSet: think != nil, Think: think != nil && *think}
	for _, m := range msgs {
		om := ollamaMessage{Role: m.Role, Content: m.Content}
		if m.Reasoning != nil {
			om.Thinking = *m.Reasoning
		}
		d.Messages = append(d.Messages, om)
	}
	return d
}

// TestOllamaTemplatesMatchBuiltIns renders each TEMPLATE with Go's
// text/template, as Ollama does, and compares it with whet's renderer of
// the same chat template (with the generation prompt).
func TestOllamaTemplatesMatchBuiltIns(t *testing.T) {
	convs := [][]datasets.Message{
		{{Role: "user", Content: "Hi!"}},
		{{Role: "system", Content: "Be brief."}, {Role: "user", Content: "What is 2 + 3?"}},
		{{Role: "user", Content: "Hello"}, {Role: "assistant", Content: "Hi there."}, {Role: "user", Content: "Name a colour."}},
		{{Role: "system", Content: "You are a pirate."}, {Role: "user", Content: "Good morning."}, {Role: "assistant", Content: "Arr."}, {Role: "user", Content: "Bye."}},
	}
	for _, name := range datasets.TemplateNames() {
		tpl, _ := datasets.LookupTemplate(name)
		text, ok := OllamaTemplate(name, tpl.EOS)
		if !ok {
			t.Errorf("no Ollama TEMPLATE for built-in template %s", name)
			continue
		}
		parsed, err := template.New(name).Parse(text)
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		type conv struct {
			msgs  []datasets.Message
			think *bool
		}
		var cs []conv
		for _, msgs := range convs {
			cs = append(cs, conv{msgs: msgs})
		}
		if name == "qwen-3" {
			// Reasoning after the last user turn is printed, earlier
			// turns' is dropped; thinking off gives the empty block.
			off, on := false, true
			why, more := "The user greets me.", "Adding."
			cs = append(cs,
				conv{msgs: []datasets.Message{{Role: "user", Content: "Hi"}, {Role: "assistant", Content: "Hello!", Reasoning: &why}, {Role: "user", Content: "2+2?"}}},
				conv{msgs: []datasets.Message{{Role: "user", Content: "2+2?"}, {Role: "assistant", Content: "4", Reasoning: &more}}},
				conv{msgs: []datasets.Message{{Role: "user", Content: "2+2?"}}, think: &off},
				conv{msgs: []datasets.Message{{Role: "system", Content: "Be brief."}, {Role: "user", Content: "2+2?"}}, think: &on})
		}
		for _, c := range cs {
			msgs := c.msgs
			want, err := tpl.Render(msgs, datasets.RenderOptions{AddGenerationPrompt: true, DateString: "26 Jul 2024", EnableThinking: c.think})
			if err != nil {
				continue // the family refuses this conversation (e.g. Gemma 2 and system)
			}
			var b strings.Builder
			if err := parsed.Execute(&b, toOllama(msgs, c.think)); err != nil {
				t.Errorf("%s: %v", name, err)
				continue
			}
			got := b.String()
			if tpl.RendersBOS {
				got = tpl.BOS + got // llama.cpp adds BOS itself
			}
			if got != want.Text {
				t.Errorf("%s, %d messages:\n got %q\nwant %q", name, len(msgs), got, want.Text)
			}
		}
	}
}

func TestExportRefusesNonFiniteWeights(t *testing.T) {
	tmp := t.TempDir()
	model := filepath.Join(tmp, "model")
	copyDir(t, testdata("tiny-qwen2"), model)
	f, err := safetensors.Open(filepath.Join(model, "model.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	var ts []safetensors.Tensor
	for _, n := range f.Names() {
		info, _ := f.Info(n)
		v, err := f.Float32(n)
		if err != nil {
			t.Fatal(err)
		}
		if n == "model.layers.1.mlp.up_proj.weight" {
			v[17] = float32(math.NaN())
		}
		ts = append(ts, safetensors.F32Tensor(n, info.Shape, v))
	}
	f.Close()
	if err := safetensors.Write(filepath.Join(model, "model.safetensors"), ts, nil); err != nil {
		t.Fatal(err)
	}
	run := makeFullRun(t, filepath.Join(tmp, "run"), model)
	for _, format := range []string{"merged", "gguf"} {
		err := Run(Options{RunDir: run, Format: format, OutDir: filepath.Join(tmp, format)}, nil)
		if err == nil || !strings.Contains(err.Error(), "model.layers.1.mlp.up_proj.weight: element 17 is NaN") {
			t.Errorf("%s: %v", format, err)
		}
		if _, statErr := os.Stat(filepath.Join(tmp, format, "model.gguf")); statErr == nil {
			t.Errorf("%s: a GGUF was left behind", format)
		}
	}
}

// TestExportStopsWhenCancelled: a context cancelled while an export runs
// stops it with an error wrapping context.Canceled, leaving no model file
// (complete or temporary) behind; one cancelled before it starts writes
// nothing at all.
func TestExportStopsWhenCancelled(t *testing.T) {
	tmp := t.TempDir()
	run := makeLoRARun(t, filepath.Join(tmp, "run"), testdata("tiny-qwen2"), 5)
	for _, c := range []struct{ format, quant, model string }{
		{"gguf", "q8_0", "model.gguf"},
		{"merged", "bf16", "model.safetensors"},
		{"peft", "", "adapter_model.safetensors"},
	} {
		t.Run(c.format, func(t *testing.T) {
			out := filepath.Join(tmp, "out-"+c.format)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			steps := 0
			err := RunContext(ctx, Options{RunDir: run, Format: c.format, Quant: c.quant, OutDir: out}, func(done, total int, what string) {
				steps++
				cancel() // at the first progress report
			})
			if !errors.Is(err, context.Canceled) {
				t.Fatalf("err = %v after %d progress reports; want one wrapping context.Canceled", err, steps)
			}
			entries, _ := os.ReadDir(out)
			for _, e := range entries {
				if e.Name() == c.model || strings.Contains(e.Name(), ".tmp") {
					t.Errorf("cancelled export left %s", e.Name())
				}
			}

			before, cancelBefore := context.WithCancel(context.Background())
			cancelBefore()
			out2 := filepath.Join(tmp, "never-"+c.format)
			if err := RunContext(before, Options{RunDir: run, Format: c.format, Quant: c.quant, OutDir: out2}, nil); !errors.Is(err, context.Canceled) {
				t.Errorf("pre-cancelled export: err = %v, want context.Canceled", err)
			}
			if _, err := os.Stat(out2); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("pre-cancelled export created %s (%v)", out2, err)
			}
		})
	}
}

// TestExportStepLabels: every numbered step of an export names what that
// step did, once, so no two lines of whet export's "[N/M] what" repeat
// (the PEFT export printed adapter_config.json for both its first and its
// third step), the count only goes up and the last step is M of M.
func TestExportStepLabels(t *testing.T) {
	tmp := t.TempDir()
	run := makeLoRARun(t, filepath.Join(tmp, "run"), testdata("tiny-llama"), 3)
	for _, c := range []struct{ format, last string }{
		{"peft", "tokenizer files"},
		{"merged", "generation_config.json, tokenizer files"},
		{"gguf", modelfileFile},
	} {
		type step struct {
			done, total int
			what        string
		}
		var steps []step
		err := Run(Options{RunDir: run, Format: c.format, OutDir: filepath.Join(tmp, c.format)}, func(done, total int, what string) {
			if total > 0 {
				steps = append(steps, step{done, total, what})
			}
		})
		if err != nil {
			t.Fatalf("%s: %v", c.format, err)
		}
		if len(steps) == 0 {
			t.Fatalf("%s: no steps reported", c.format)
		}
		seen := map[string]int{}
		for i, s := range steps {
			if j, ok := seen[s.what]; ok {
				t.Errorf("%s: [%d/%d] %q repeats step %d's label", c.format, s.done, s.total, s.what, j)
			}
			seen[s.what] = i
			if i > 0 && s.done < steps[i-1].done {
				t.Errorf("%s: [%d/%d] %q after [%d/%d]", c.format, s.done, s.total, s.what, steps[i-1].done, steps[i-1].total)
			}
		}
		if l := steps[len(steps)-1]; l.done != l.total || l.what != c.last {
			t.Errorf("%s: last step [%d/%d] %q, want [%d/%d] %q", c.format, l.done, l.total, l.what, l.total, l.total, c.last)
		}
	}
}
