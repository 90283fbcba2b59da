package export

import (
	"bytes"
	"context"
	"encoding/json"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"whet/datasets"
	"whet/engine"
	"whet/engine/cpu"
	"whet/engine/safetensors"
)

const repoRoot = "../.."

func testdata(p string) string { return filepath.Join(repoRoot, "testdata", p) }

// copyDir copies the regular files of src into dst (not recursive).
func copyDir(t *testing.T, src, dst string) {
	t.Helper()
	if err := os.MkdirAll(dst, 0o755); err != nil {
		t.Fatal(err)
	}
	entries, err := os.ReadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if !e.Type().IsRegular() {
			continue
		}
		data, err := os.ReadFile(filepath.Join(src, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dst, e.Name()), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// writeRunYAML writes a run.yaml for a finished run of method on model.
func writeRunYAML(t *testing.T, dir, name, model, method string, lora engine.LoRAConfig) {
	t.Helper()
	cfg := engine.RunConfig{Name: name, Model: model, Method: method, Backend: "cpu", LoRA: lora,
		Data: engine.DataConfig{Path: "data.jsonl", MaxLength: 256}}
	js, err := yaml.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "run.yaml"), js, 0o644); err != nil {
		t.Fatal(err)
	}
}

// makeLoRARun makes a finished LoRA run on base whose adapter has random,
// clearly non-zero A and B (a freshly initialised adapter has B = 0 and
// would merge to the base model unchanged).
func makeLoRARun(t *testing.T, dir, base string, seed uint64) string {
	t.Helper()
	m, err := engine.LoadModel(base, cpu.New())
	if err != nil {
		t.Fatal(err)
	}
	defer m.Free()
	opts := engine.LoRAOptions{Rank: 4, Alpha: 8, Targets: []string{"q", "k", "v", "o", "gate", "up", "down"}, Seed: seed}
	if err := m.AddLoRA(opts); err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(seed, 2))
	for _, lin := range m.Linears() {
		v := make([]float32, lin.Out*opts.Rank)
		for i := range v {
			v[i] = float32(rng.NormFloat64() * 0.05)
		}
		if err := m.B.Upload(lin.LoRA.B.Master, v); err != nil {
			t.Fatal(err)
		}
	}
	if err := m.SyncFromMasters(); err != nil {
		t.Fatal(err)
	}
	abs, _ := filepath.Abs(base)
	if err := engine.SaveAdapter(filepath.Join(dir, "adapter"), m, opts, abs); err != nil {
		t.Fatal(err)
	}
	writeRunYAML(t, dir, filepath.Base(dir), abs, "lora", engine.LoRAConfig{Rank: opts.Rank, Alpha: opts.Alpha, TargetModules: opts.Targets})
	return dir
}

// makeFullRun makes a finished full fine-tuning run whose model/ is a copy
// of the model folder src.
func makeFullRun(t *testing.T, dir, src string) string {
	t.Helper()
	copyDir(t, src, filepath.Join(dir, "model"))
	abs, _ := filepath.Abs(src)
	writeRunYAML(t, dir, filepath.Base(dir), abs, "full", engine.LoRAConfig{})
	return dir
}

// chatPrompt renders one user turn with the template's generation prompt
// and tokenizes it as chat does.
func chatPrompt(t *testing.T, src *Source, user string) []int32 {
	t.Helper()
	r, err := src.Template.Render([]datasets.Message{{Role: "user", Content: user}}, datasets.RenderOptions{AddGenerationPrompt: true})
	if err != nil {
		t.Fatal(err)
	}
	return toInt32(src.Tok.Encode(r.Text, src.Template.AddSpecialTokens))
}

func toInt32(ids []int) []int32 {
	out := make([]int32, len(ids))
	for i, id := range ids {
		out[i] = int32(id)
	}
	return out
}

// whetGreedy is whet's own greedy continuation (the KV-cache generator on
// the CPU backend, adapters applied unmerged).
func whetGreedy(t *testing.T, m *engine.Model, prompt []int32, n int, stop []int32) []int32 {
	t.Helper()
	g, err := m.NewGenerator(len(prompt) + n + 1)
	if err != nil {
		t.Fatal(err)
	}
	defer g.Free()
	out, err := g.Generate(context.Background(), prompt, engine.Greedy(n, stop), nil)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// sequenceBatch is one sequence with next-token targets.
func sequenceBatch(ids []int32) *datasets.Batch {
	b := &datasets.Batch{Tokens: ids, SeqStarts: []int32{0, int32(len(ids))}}
	for i := range ids {
		b.Positions = append(b.Positions, int32(i))
		if i+1 < len(ids) {
			b.Targets = append(b.Targets, ids[i+1])
		} else {
			b.Targets = append(b.Targets, datasets.IgnoreIndex)
		}
	}
	return b
}

// whetLogits is the model's [T, V] logits for one sequence.
func whetLogits(t *testing.T, m *engine.Model, ids []int32) []float32 {
	t.Helper()
	a, err := m.NewActivations(len(ids), false)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Free()
	out, err := a.Logits(sequenceBatch(ids))
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// whetPerplexity is exp(mean next-token loss) over the predictions of
// seqs[k][i+1] for i in scored[k].
func whetPerplexity(t *testing.T, m *engine.Model, seqs [][]int32, scored [][]int) float64 {
	t.Helper()
	var sum float64
	var count int
	for k, ids := range seqs {
		s, n := sequenceLoss(t, m, ids, scored[k])
		sum += s
		count += n
	}
	return math.Exp(sum / float64(count))
}

func sequenceLoss(t *testing.T, m *engine.Model, ids []int32, scored []int) (float64, int) {
	t.Helper()
	a, err := m.NewActivations(len(ids), false)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Free()
	b := sequenceBatch(ids)
	keep := map[int]bool{}
	for _, i := range scored {
		keep[i] = true
	}
	for i := range b.Targets {
		if !keep[i] {
			b.Targets[i] = datasets.IgnoreIndex
		}
	}
	r, err := a.ForwardBackward(b, 1, false, 0)
	if err != nil {
		t.Fatal(err)
	}
	return r.LossSum, r.Count
}

// llamaJob and llamaReply are tools/export/llama.mjs's request and reply.
type llamaJob struct {
	Model      string    `json:"model"`
	Greedy     [][]int32 `json:"greedy,omitempty"`
	MaxTokens  int       `json:"maxTokens,omitempty"`
	StopAtEog  bool      `json:"stopAtEog,omitempty"`
	Perplexity [][]int32 `json:"perplexity,omitempty"`
	Scored     [][]int   `json:"scored,omitempty"`
	Tokenize   []string  `json:"tokenize,omitempty"`
}

type llamaReply struct {
	Vocab     int     `json:"vocab"`
	EogTokens []int32 `json:"eogTokens"`
	Greedy    []struct {
		Tokens      []int32    `json:"tokens"`
		FirstLogits []*float64 `json:"firstLogits"`
		Eog         bool       `json:"eog"`
	} `json:"greedy"`
	Perplexity float64   `json:"perplexity"`
	Tokenize   [][]int32 `json:"tokenize"`
}

// runLlama runs the jobs in llama.cpp. It fails (never skips) when the
// setup script has not installed llama.cpp: CI runs it before the tests.
func runLlama(t *testing.T, jobs []llamaJob) []llamaReply {
	t.Helper()
	addon := filepath.Join(repoRoot, ".cache/npm-llama/node_modules/@node-llama-cpp/linux-x64/bins/linux-x64/llama-addon.node")
	if _, err := os.Stat(addon); err != nil {
		t.Fatalf("llama.cpp is not installed (%v): run tools/setup/llamacpp.sh first", err)
	}
	if _, err := exec.LookPath("node"); err != nil {
		t.Fatalf("node is required to run llama.cpp through node-llama-cpp: %v", err)
	}
	req, err := json.Marshal(jobs)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("node", filepath.Join(repoRoot, "tools/export/llama.mjs"))
	cmd.Stdin = bytes.NewReader(req)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("llama.mjs: %v\n%s", err, stderr.String())
	}
	var replies []llamaReply
	if err := json.Unmarshal(stdout.Bytes(), &replies); err != nil {
		t.Fatalf("llama.mjs reply: %v\n%s\n%s", err, stdout.String(), stderr.String())
	}
	if len(replies) != len(jobs) {
		t.Fatalf("llama.mjs answered %d jobs of %d", len(replies), len(jobs))
	}
	return replies
}

// widenModel writes to dst a copy of the llama model folder src whose
// widths are multiples of 256 (so K-quants apply to every matrix) and
// which computes exactly the same function: hidden 64 -> 256 with the real
// dimensions spread over every 4th slot, 4 -> 16 heads and 2 -> 8 KV heads
// (the new heads have zero weights and add nothing), intermediate 176 ->
// 256 (zero gate/up rows), norm weights halved and rms_norm_eps divided by
// 4 to undo RMSNorm's mean over 4x as many (zero) dimensions.
func widenModel(t *testing.T, src, dst string) {
	t.Helper()
	cfg, err := engine.LoadModelConfig(src)
	if err != nil {
		t.Fatal(err)
	}
	const D2, I2 = 256, 256
	D, I, hd := cfg.HiddenSize, cfg.IntermediateSize, cfg.HeadDim
	if D2%D != 0 || I > I2 || cfg.ModelType != "llama" {
		t.Fatalf("widenModel: %s is not a small llama model", src)
	}
	spread := D2 / D
	hpos := func(i int) int { return spread * i }
	upos := func(i int) int { return i * I2 / I }
	heads2 := D2 / hd
	kv2 := heads2 / (cfg.NumHeads / cfg.NumKVHeads)
	m, err := engine.LoadModel(src, cpu.New())
	if err != nil {
		t.Fatal(err)
	}
	defer m.Free()
	var tensors []safetensors.Tensor
	for _, w := range Weights(m) {
		v, err := w.Values(m)
		if err != nil {
			t.Fatal(err)
		}
		var rows, cols int
		rowMap, colMap := func(i int) int { return i }, func(i int) int { return i }
		name := w.Name
		switch {
		case strings.HasSuffix(name, "norm.weight"):
			out := make([]float32, D2)
			for i, x := range v {
				out[hpos(i)] = x / float32(math.Sqrt(float64(spread)))
			}
			tensors = append(tensors, safetensors.F32Tensor(name, []int{D2}, out))
			continue
		case name == "model.embed_tokens.weight" || name == "lm_head.weight":
			rows, cols, colMap = w.Shape[0], D2, hpos
		case strings.Contains(name, "q_proj"):
			rows, cols, colMap = heads2*hd, D2, hpos
		case strings.Contains(name, "k_proj"), strings.Contains(name, "v_proj"):
			rows, cols, colMap = kv2*hd, D2, hpos
		case strings.Contains(name, "o_proj"):
			rows, cols, rowMap = D2, heads2*hd, hpos
		case strings.Contains(name, "gate_proj"), strings.Contains(name, "up_proj"):
			rows, cols, rowMap, colMap = I2, D2, upos, hpos
		case strings.Contains(name, "down_proj"):
			rows, cols, rowMap, colMap = D2, I2, hpos, upos
		default:
			t.Fatalf("widenModel: unexpected tensor %s", name)
		}
		out := make([]float32, rows*cols)
		in := w.Shape[1]
		for r := 0; r < w.Shape[0]; r++ {
			for c := 0; c < in; c++ {
				out[rowMap(r)*cols+colMap(c)] = v[r*in+c]
			}
		}
		tensors = append(tensors, safetensors.F32Tensor(name, []int{rows, cols}, out))
	}
	if err := os.MkdirAll(dst, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := safetensors.Write(filepath.Join(dst, "model.safetensors"), tensors, map[string]string{"format": "pt"}); err != nil {
		t.Fatal(err)
	}
	raw, err := readJSONMap(filepath.Join(src, "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	raw["hidden_size"], raw["intermediate_size"] = D2, I2
	raw["num_attention_heads"], raw["num_key_value_heads"], raw["head_dim"] = heads2, kv2, hd
	raw["rms_norm_eps"] = cfg.RMSNormEps / float64(spread)
	raw["dtype"] = "float32"
	js, _ := json.MarshalIndent(raw, "", "  ")
	if err := os.WriteFile(filepath.Join(dst, "config.json"), js, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"generation_config.json", "tokenizer.json", "tokenizer_config.json"} {
		data, err := os.ReadFile(filepath.Join(src, f))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dst, f), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}
