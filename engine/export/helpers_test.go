package export

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"testing"

	parser "github.com/gpustack/gguf-parser-go"
	"go.yaml.in/yaml/v3"

	"whet/datasets"
	"whet/engine"
	"whet/engine/cpu"
	"whet/engine/gguf"
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
	if err := cfg.FillDefaults(); err != nil {
		t.Fatal(err)
	}
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

// everyLlamaLinear is the adapter targets makeLoRARun and makeQLoRARun use:
// all seven linears of a Llama-style layer.
var everyLlamaLinear = []string{"q", "k", "v", "o", "gate", "up", "down"}

// makeLoRARun makes a finished LoRA run on base whose adapter has random,
// clearly non-zero A and B (a freshly initialised adapter has B = 0 and
// would merge to the base model unchanged).
func makeLoRARun(t *testing.T, dir, base string, seed uint64) string {
	t.Helper()
	return makeAdapterRun(t, dir, base, "lora", seed, everyLlamaLinear)
}

// makeQLoRARun makes a finished QLoRA run on base: the adapter was
// trained over the base's linears in NF4, as whet train holds them, and
// has random, clearly non-zero A and B.
func makeQLoRARun(t *testing.T, dir, base string, seed uint64) string {
	t.Helper()
	return makeAdapterRun(t, dir, base, "qlora", seed, everyLlamaLinear)
}

// ggufTypes maps each tensor of a GGUF file parsed by gguf-parser-go to
// its stored type.
func ggufTypes(gf *parser.GGUFFile) map[string]gguf.TensorType {
	types := map[string]gguf.TensorType{}
	for _, ti := range gf.TensorInfos {
		types[ti.Name] = gguf.TensorType(ti.Type)
	}
	return types
}

// checkGGUFTypes checks the stored type of each tensor named in want;
// what prefixes each error.
func checkGGUFTypes(t *testing.T, what string, types, want map[string]gguf.TensorType) {
	t.Helper()
	for name, w := range want {
		if types[name] != w {
			t.Errorf("%s: %s stored as %s, want %s", what, name, types[name], w)
		}
	}
}

// maxDiff is the largest |a-b| and the largest |b| (b is the reference,
// so diff/scale is the error relative to its largest value); an infinite
// diff when the lengths differ, so no tolerance passes.
func maxDiff(a, b []float32) (diff, scale float64) {
	if len(a) != len(b) {
		return math.Inf(1), 0
	}
	for i := range a {
		diff = math.Max(diff, math.Abs(float64(a[i]-b[i])))
		scale = math.Max(scale, math.Abs(float64(b[i])))
	}
	return diff, scale
}

// makeAdapterRun makes a finished run of method (lora, or qlora: trained
// over the base's linears in NF4, as whet train holds them) on base, with
// an adapter on targets (nil: every linear of the model's family, Phi-3's
// qkv_proj and gate_up_proj included) whose A and B are random and clearly
// non-zero.
func makeAdapterRun(t *testing.T, dir, base, method string, seed uint64, targets []string) string {
	t.Helper()
	m, err := engine.LoadModelWith(base, cpu.New(), engine.ModelOptions{NF4Linears: method == "qlora"})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Free()
	if targets == nil {
		targets = m.Family().LoRATargets()
	}
	opts := engine.LoRAOptions{Rank: 4, Alpha: 8, Targets: targets, Seed: seed}
	if err := m.AddLoRA(opts); err != nil {
		t.Fatal(err)
	}
	stream := map[string]uint64{"lora": 2, "qlora": 3}[method]
	rng := rand.New(rand.NewPCG(seed, stream))
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
	writeRunYAML(t, dir, filepath.Base(dir), abs, method, engine.LoRAConfig{Rank: opts.Rank, Alpha: opts.Alpha, TargetModules: opts.Targets})
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

// requireLlama checks that llama.cpp can run: the node-llama-cpp prebuilt
// that tools/setup/llamacpp.sh installs for this machine, and node. On
// linux/amd64 it fails (never skips) when they are missing: CI runs the
// setup script before the tests. On arm64 it skips when the arm64 prebuilt
// is missing: the arm64 tests also run under emulation (tools/arm64) on
// x86-64 machines, whose setup installed the x86-64 build only.
func requireLlama(t *testing.T) {
	t.Helper()
	platform := map[string]string{"amd64": "linux-x64", "arm64": "linux-arm64"}[runtime.GOARCH]
	if platform == "" || runtime.GOOS != "linux" {
		t.Skipf("no pinned llama.cpp prebuilt for %s/%s (tools/setup/llamacpp.sh installs linux x64 and arm64)", runtime.GOOS, runtime.GOARCH)
	}
	addon := filepath.Join(repoRoot, ".cache/npm-llama/node_modules/@node-llama-cpp", platform, "bins", platform, "llama-addon.node")
	if _, err := os.Stat(addon); err != nil {
		if runtime.GOARCH != "amd64" {
			t.Skipf("llama.cpp for %s is not installed (%v): tools/setup/llamacpp.sh installs it on an arm64 machine; an x86-64 one emulating arm64 has only the x86-64 build", platform, err)
		}
		t.Fatalf("llama.cpp is not installed (%v): run tools/setup/llamacpp.sh first", err)
	}
	if _, err := exec.LookPath("node"); err != nil {
		t.Fatalf("node is required to run llama.cpp through node-llama-cpp: %v", err)
	}
}

// runLlama runs the jobs in llama.cpp (see requireLlama for when it fails
// and when it skips).
func runLlama(t *testing.T, jobs []llamaJob) []llamaReply {
	t.Helper()
	requireLlama(t)
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
// which computes the same function, with dense weights like a real model's:
//   - the residual stream is rotated into 256 dimensions, x' = x·R with R
//     [64, 256] of orthonormal rows; |x'| = |x|, so RMSNorm over 256 dims
//     sees mean x'² = mean x²/4, undone by dividing rms_norm_eps by 4 and
//     scaling the matrices that read a norm's output by 1/2;
//   - each norm weight is folded into the matrices that read it (norm
//     weights become 1): W' = W·diag(w)·R/2 for q, k, v, gate, up and the
//     head; matrices that write the stream become Rᵀ·W (o, down); the
//     embedding becomes E·R;
//   - 4 -> 16 heads and 2 -> 8 KV heads (whole zero rows), intermediate
//     176 -> 256 (zero gate/up rows, zero down columns at the end).
func widenModel(t *testing.T, src, dst string) {
	t.Helper()
	cfg, err := engine.LoadModelConfig(src)
	if err != nil {
		t.Fatal(err)
	}
	const D2, I2 = 256, 256
	D, I, hd := cfg.HiddenSize, cfg.IntermediateSize, cfg.HeadDim
	if D > D2 || I > I2 || cfg.ModelType != "llama" || cfg.TieWordEmbeddings {
		t.Fatalf("widenModel: %s is not a small untied llama model", src)
	}
	heads2 := D2 / hd
	kv2 := heads2 / (cfg.NumHeads / cfg.NumKVHeads)
	R := orthonormalRows(D, D2, 77)
	scale := math.Sqrt(float64(D2) / float64(D)) // RMSNorm's gain over 256 dims
	m, err := engine.LoadModel(src, cpu.New())
	if err != nil {
		t.Fatal(err)
	}
	defer m.Free()
	values := map[string][]float64{}
	for _, w := range Weights(m) {
		v, err := w.Values(m)
		if err != nil {
			t.Fatal(err)
		}
		f := make([]float64, len(v))
		for i, x := range v {
			f[i] = float64(x)
		}
		values[w.Name] = f
	}
	// reads: W [rows, D] after a norm with weight nw -> [rows2, D2].
	reads := func(w, nw []float64, rows, rows2 int) []float32 {
		out := make([]float32, rows2*D2)
		for r := 0; r < rows; r++ {
			for c := 0; c < D2; c++ {
				var acc float64
				for k := 0; k < D; k++ {
					acc += w[r*D+k] * nw[k] * R[k*D2+c]
				}
				out[r*D2+c] = float32(acc / scale)
			}
		}
		return out
	}
	// writes: W [D, cols] -> Rᵀ·W [D2, cols2].
	writes := func(w []float64, cols, cols2 int) []float32 {
		out := make([]float32, D2*cols2)
		for r := 0; r < D2; r++ {
			for c := 0; c < cols; c++ {
				var acc float64
				for k := 0; k < D; k++ {
					acc += R[k*D2+r] * w[k*cols+c]
				}
				out[r*cols2+c] = float32(acc)
			}
		}
		return out
	}
	ones := make([]float64, D)
	for i := range ones {
		ones[i] = 1
	}
	var tensors []safetensors.Tensor
	add := func(name string, shape []int, v []float32) {
		tensors = append(tensors, safetensors.F32Tensor(name, shape, v))
	}
	V := cfg.VocabSize
	emb := values["model.embed_tokens.weight"]
	embOut := make([]float32, V*D2)
	for r := 0; r < V; r++ {
		for c := 0; c < D2; c++ {
			var acc float64
			for k := 0; k < D; k++ {
				acc += emb[r*D+k] * R[k*D2+c]
			}
			embOut[r*D2+c] = float32(acc)
		}
	}
	add("model.embed_tokens.weight", []int{V, D2}, embOut)
	unit := make([]float32, D2)
	for i := range unit {
		unit[i] = 1
	}
	for l := 0; l < cfg.NumLayers; l++ {
		pre := fmt.Sprintf("model.layers.%d.", l)
		in, post := values[pre+"input_layernorm.weight"], values[pre+"post_attention_layernorm.weight"]
		add(pre+"input_layernorm.weight", []int{D2}, unit)
		add(pre+"post_attention_layernorm.weight", []int{D2}, unit)
		add(pre+"self_attn.q_proj.weight", []int{heads2 * hd, D2}, reads(values[pre+"self_attn.q_proj.weight"], in, cfg.QDim(), heads2*hd))
		add(pre+"self_attn.k_proj.weight", []int{kv2 * hd, D2}, reads(values[pre+"self_attn.k_proj.weight"], in, cfg.KVDim(), kv2*hd))
		add(pre+"self_attn.v_proj.weight", []int{kv2 * hd, D2}, reads(values[pre+"self_attn.v_proj.weight"], in, cfg.KVDim(), kv2*hd))
		add(pre+"self_attn.o_proj.weight", []int{D2, heads2 * hd}, writes(values[pre+"self_attn.o_proj.weight"], cfg.QDim(), heads2*hd))
		add(pre+"mlp.gate_proj.weight", []int{I2, D2}, reads(values[pre+"mlp.gate_proj.weight"], post, I, I2))
		add(pre+"mlp.up_proj.weight", []int{I2, D2}, reads(values[pre+"mlp.up_proj.weight"], post, I, I2))
		add(pre+"mlp.down_proj.weight", []int{D2, I2}, writes(values[pre+"mlp.down_proj.weight"], I, I2))
	}
	add("model.norm.weight", []int{D2}, unit)
	add("lm_head.weight", []int{V, D2}, reads(values["lm_head.weight"], values["model.norm.weight"], V, V))
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
	raw["rms_norm_eps"] = cfg.RMSNormEps * float64(D) / float64(D2)
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

// orthonormalRows returns an [n, d] matrix (n <= d) with orthonormal rows,
// from seeded Gaussian rows by Gram-Schmidt.
func orthonormalRows(n, d int, seed uint64) []float64 {
	rng := rand.New(rand.NewPCG(seed, 3))
	R := make([]float64, n*d)
	for i := 0; i < n; i++ {
		row := R[i*d : (i+1)*d]
		for j := range row {
			row[j] = rng.NormFloat64()
		}
		for pass := 0; pass < 2; pass++ { // twice, for float64 accuracy
			for k := 0; k < i; k++ {
				prev := R[k*d : (k+1)*d]
				var dot float64
				for j := range row {
					dot += row[j] * prev[j]
				}
				for j := range row {
					row[j] -= dot * prev[j]
				}
			}
		}
		var norm float64
		for _, x := range row {
			norm += x * x
		}
		norm = math.Sqrt(norm)
		for j := range row {
			row[j] /= norm
		}
	}
	return R
}

// checkTargetPattern checks which modules adapter_config.json's
// target_modules pattern takes, matched whole as PEFT does (re.fullmatch).
func checkTargetPattern(t *testing.T, pattern string, want map[string]bool) {
	t.Helper()
	re := regexp.MustCompile("^(?:" + pattern + ")$")
	for mod, w := range want {
		if re.MatchString(mod) != w {
			t.Errorf("target_modules %q matches %s: %v, want %v", pattern, mod, !w, w)
		}
	}
}
