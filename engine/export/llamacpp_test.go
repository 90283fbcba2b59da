package export

import (
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	parser "github.com/gpustack/gguf-parser-go"

	"whet/datasets"
	"whet/engine"
	"whet/engine/cpu"
	"whet/engine/gguf"
)

// heldOutChat returns the perplexity texts for the Q4_K_M check: ChatML
// conversations that are not among the chat run's training rows — each
// single-turn row of tiny-chat.jsonl under a system prompt it was never
// trained with. The run was trained on replies only (train_on:
// responses), so the perplexity is taken over the reply tokens (each reply
// and its <|im_end|>, given everything before it); over prompt tokens,
// which it never learned, a model this small is no better than chance and
// the number would say little about quantization.
func heldOutChat(t *testing.T) [][]datasets.Message {
	t.Helper()
	data, err := os.ReadFile(testdata("datasets/tiny-chat.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	var out [][]datasets.Message
	for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		var row struct{ Messages []datasets.Message }
		if err := json.Unmarshal([]byte(line), &row); err != nil {
			t.Fatal(err)
		}
		if len(row.Messages) == 2 && row.Messages[0].Role == "user" {
			out = append(out, append([]datasets.Message{{Role: "system", Content: "Please answer the question."}}, row.Messages...))
		}
	}
	return out
}

// replyPositions renders msgs and returns the ids and the positions i whose
// next token ids[i+1] lies in an assistant reply.
func replyPositions(t *testing.T, src *Source, msgs []datasets.Message) ([]int32, []int) {
	t.Helper()
	r, err := src.Template.Render(msgs, datasets.RenderOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var ids []int32
	var scored []int
	at := 0
	for _, span := range r.Assistant {
		ids = append(ids, toInt32(src.Tok.Encode(r.Text[at:span.Start], false))...)
		reply := toInt32(src.Tok.Encode(r.Text[span.Start:span.End], false))
		for k := range reply {
			scored = append(scored, len(ids)+k-1)
		}
		ids = append(ids, reply...)
		at = span.End
	}
	return append(ids, toInt32(src.Tok.Encode(r.Text[at:], false))...), scored
}

// greedyCase is one GGUF export whose llama.cpp continuation must equal
// whet's.
type greedyCase struct {
	name    string
	run     string
	quant   string
	prompts [][]int32
	src     *Source
	path    string
	// ref computes whet's side: src's model, or for Q4_K_M a copy whose
	// weights went through the GGUF's types and back (quantizedCopy), so
	// the comparison checks that llama.cpp reads each block as whet wrote
	// it rather than measuring what 5 bits lose on a random tiny model.
	ref *engine.Model
}

// TestGGUFInLlamaCpp exports tiny models to GGUF and runs them in llama.cpp
// (one node process for every file, as starting it takes seconds):
//   - F16 and Q8_0 of a LoRA run on tiny-llama (llama arch: permuted q/k,
//     llama3 rope_freqs; adapter merged) and of a full run of tiny-qwen2
//     (qwen2 arch: q/k/v biases, tied head) continue fixed prompts exactly
//     as whet's generator does with the unmerged adapter;
//   - the chat run (trained to end replies with <|im_end|>) stops at the
//     end of its reply in llama.cpp, with whet's reply;
//   - a widened copy of the chat run (every width a multiple of 256) in
//     Q4_K_M has a perplexity within 5% of its F16 export on held-out text,
//     and the F16 export matches whet's perplexity of the original model;
//   - llama.cpp's tokenizer, built from our metadata, encodes text as ours.
func TestGGUFInLlamaCpp(t *testing.T) {
	requireLlama(t) // before the exports, which take minutes under emulation
	tmp := t.TempDir()
	loraRun := makeLoRARun(t, filepath.Join(tmp, "lora-llama"), testdata("tiny-llama"), 11)
	qwenRun := makeFullRun(t, filepath.Join(tmp, "full-qwen2"), testdata("tiny-qwen2"))
	chatRun := filepath.Join(tmp, "chat-run")
	copyDir(t, testdata("export/chat-run"), chatRun)
	copyDir(t, testdata("export/chat-run/model"), filepath.Join(chatRun, "model"))
	wideRun := filepath.Join(tmp, "wide")
	widenModel(t, testdata("export/chat-run/model"), filepath.Join(tmp, "wide-model"))
	makeFullRun(t, wideRun, filepath.Join(tmp, "wide-model"))

	export := func(run, quant string) string {
		t.Helper()
		out := filepath.Join(tmp, "out", filepath.Base(run)+"-"+quant)
		if err := Run(Options{RunDir: run, Format: "gguf", Quant: quant, OutDir: out}, nil); err != nil {
			t.Fatalf("export %s %s: %v", run, quant, err)
		}
		return filepath.Join(out, "model.gguf")
	}
	load := func(run string) *Source {
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

	rawPrompts := [][]int32{{1, 328, 267, 201}, {45, 300, 12, 7, 99, 410, 3}}
	var cases []*greedyCase
	for _, run := range []string{loraRun, qwenRun} {
		src := load(run)
		quants := []string{"f16", "q8_0"}
		if run == loraRun {
			quants = append(quants, "bf16")
		} else {
			// Rows of 64 and 128 are no whole super-blocks: llama.cpp's
			// fallbacks throughout (Q5_0, Q8_0; the tied embedding Q8_0).
			quants = append(quants, "q4_k_m")
		}
		for _, q := range quants {
			c := &greedyCase{name: filepath.Base(run) + "/" + q, run: run, quant: q,
				prompts: append(rawPrompts, chatPrompt(t, src, "Hi!")), src: src, path: export(run, q), ref: src.Model}
			if q == "q4_k_m" {
				c.ref = quantizedCopy(t, src, q)
			}
			cases = append(cases, c)
		}
	}
	chat := load(chatRun)
	chatQuestions := []string{"What is 2 + 3?", "What is the capital of Kenya?", "Hi!"}
	var chatPrompts [][]int32
	for _, q := range chatQuestions {
		chatPrompts = append(chatPrompts, chatPrompt(t, chat, q))
	}
	chatF16, chatQ8 := export(chatRun, "f16"), export(chatRun, "q8_0")
	wideF16, wideQ4 := export(wideRun, "f16"), export(wideRun, "q4_k_m")
	// The widened model with every matrix in one of the 5-bit formats that
	// Q4_K_M falls back to (Q5_0, Q5_1) or uses for 70B models (Q5_K), so
	// llama.cpp reads each layout.
	wide := load(wideRun)
	var pure5 []string
	for _, typ := range []gguf.TensorType{gguf.Q5_0, gguf.Q5_1, gguf.Q5_K} {
		f, _, err := layOutGGUF(wide, "q4_k_m", quantPlan{fileType: 15, base: typ})
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(tmp, "out", "wide-pure-"+typ.String()+".gguf")
		if err := f.WriteFile(path, nil); err != nil {
			t.Fatal(err)
		}
		pure5 = append(pure5, path)
	}
	var heldOut [][]int32
	var scored [][]int
	for _, msgs := range heldOutChat(t) {
		ids, sc := replyPositions(t, chat, msgs)
		heldOut, scored = append(heldOut, ids), append(scored, sc)
	}
	tokenizeTexts := []string{chat.Tok.Decode(toInts(heldOut[0]), false), "Mixed: naïve café, 12345 tabs\tand  spaces\n\nend"}

	const n = 12
	var jobs []llamaJob
	for _, c := range cases {
		jobs = append(jobs, llamaJob{Model: c.path, Greedy: c.prompts, MaxTokens: n})
	}
	jobs = append(jobs,
		llamaJob{Model: chatF16, Greedy: chatPrompts, MaxTokens: 40, StopAtEog: true, Tokenize: tokenizeTexts},
		llamaJob{Model: chatQ8, Greedy: chatPrompts, MaxTokens: 40, StopAtEog: true},
	)
	firstPure := len(jobs)
	for _, path := range pure5 {
		jobs = append(jobs, llamaJob{Model: path, Perplexity: heldOut, Scored: scored})
	}
	jobs = append(jobs,
		llamaJob{Model: wideF16, Perplexity: heldOut, Scored: scored},
		llamaJob{Model: wideQ4, Perplexity: heldOut, Scored: scored, Greedy: chatPrompts, MaxTokens: 40, StopAtEog: true},
	)
	replies := runLlama(t, jobs)

	for i, c := range cases {
		t.Run("greedy/"+c.name, func(t *testing.T) { checkGreedy(t, c, replies[i], n) })
	}

	t.Run("stops at end of turn", func(t *testing.T) {
		imEnd, _ := chat.Tok.TokenID("<|im_end|>")
		stop := toInt32(chat.StopIDs())
		for k, r := range replies[len(cases) : len(cases)+2] {
			if !slices.Contains(r.EogTokens, int32(imEnd)) {
				t.Errorf("%s: llama.cpp's end-of-generation tokens %v lack <|im_end|> (%d)", []string{"f16", "q8_0"}[k], r.EogTokens, imEnd)
			}
			for p, prompt := range chatPrompts {
				want := whetGreedy(t, chat.Model, prompt, 40, stop)
				got := r.Greedy[p]
				if !got.Eog || got.Tokens[len(got.Tokens)-1] != int32(imEnd) {
					t.Errorf("%q: llama.cpp did not stop at <|im_end|>: %v (%q)", chatQuestions[p], got.Tokens, chat.Tok.Decode(toInts(got.Tokens), false))
				}
				if !slices.Equal(got.Tokens, want) {
					t.Errorf("%q: llama.cpp replies %q, whet %q", chatQuestions[p], chat.Tok.Decode(toInts(got.Tokens), false), chat.Tok.Decode(toInts(want), false))
				}
			}
		}
	})

	t.Run("tokenizer", func(t *testing.T) {
		for i, text := range tokenizeTexts {
			want := toInt32(chat.Tok.Encode(text, false))
			if got := replies[len(cases)].Tokenize[i]; !slices.Equal(got, want) {
				t.Errorf("text %q: llama.cpp tokenizes %v, whet %v", text, got, want)
			}
		}
	})

	t.Run("q4_k_m fallbacks", func(t *testing.T) {
		// tiny-qwen2 (3 layers, rows of 64 and 128, tied embedding) as
		// llama-quantize stores it: no row is a whole 256-value block.
		var path string
		for _, c := range cases {
			if c.run == qwenRun && c.quant == "q4_k_m" {
				path = c.path
			}
		}
		gf, err := parser.ParseGGUFFile(path)
		if err != nil {
			t.Fatal(err)
		}
		checkGGUFTypes(t, "Q4_K_M of tiny-qwen2", ggufTypes(gf), map[string]gguf.TensorType{"token_embd.weight": gguf.Q8_0, "blk.0.attn_q.weight": gguf.Q5_0,
			"blk.0.attn_v.weight": gguf.Q5_0, "blk.2.attn_v.weight": gguf.Q8_0, "blk.1.ffn_down.weight": gguf.Q5_0,
			"blk.2.ffn_down.weight": gguf.Q8_0, "blk.1.ffn_up.weight": gguf.Q5_0, "blk.0.attn_norm.weight": gguf.F32})
	})

	t.Run("q4_k_m perplexity", func(t *testing.T) {
		// The widened model really is K-quantized: Q4_K with llama.cpp's
		// Q6_K mix (output, and attn_v/ffn_down of the last layer of 2).
		gf, err := parser.ParseGGUFFile(wideQ4)
		if err != nil {
			t.Fatal(err)
		}
		checkGGUFTypes(t, "Q4_K_M", ggufTypes(gf), map[string]gguf.TensorType{"token_embd.weight": gguf.Q4_K, "blk.0.attn_q.weight": gguf.Q4_K,
			"blk.0.attn_v.weight": gguf.Q4_K, "blk.0.ffn_down.weight": gguf.Q4_K, "blk.1.attn_v.weight": gguf.Q6_K,
			"blk.1.ffn_down.weight": gguf.Q6_K, "output.weight": gguf.Q6_K, "blk.0.attn_output.weight": gguf.Q4_K})
		f16, q4 := replies[len(replies)-2].Perplexity, replies[len(replies)-1].Perplexity
		for i, path := range pure5 {
			p := replies[firstPure+i].Perplexity
			t.Logf("%s: perplexity %.3f", filepath.Base(path), p)
			if math.Abs(p/f16-1) > 0.03 {
				t.Errorf("%s: perplexity %.3f is not within 3%% of F16's %.3f", filepath.Base(path), p, f16)
			}
		}
		ref := whetPerplexity(t, chat.Model, heldOut, scored)
		t.Logf("held-out perplexity: whet %.3f (original width), llama.cpp F16 %.3f, Q4_K_M %.3f (widened)", ref, f16, q4)
		if math.Abs(f16/ref-1) > 0.01 {
			t.Errorf("F16 GGUF of the widened model: perplexity %.3f, whet's of the original %.3f (want within 1%%)", f16, ref)
		}
		if ref > 8 {
			t.Errorf("whet's perplexity %.2f: the chat run should predict these replies well (is testdata/export/chat-run trained?)", ref)
		}
		if math.Abs(q4/f16-1) > 0.05 {
			t.Errorf("Q4_K_M perplexity %.3f is not within 5%% of F16's %.3f", q4, f16)
		}
		// And the 4-bit model still gives the trained replies, stopping at
		// the end of turn.
		stop := toInt32(chat.StopIDs())
		for p, prompt := range chatPrompts {
			want := whetGreedy(t, chat.Model, prompt, 40, stop)
			if got := replies[len(replies)-1].Greedy[p].Tokens; !slices.Equal(got, want) {
				t.Errorf("Q4_K_M %q: llama.cpp replies %q, whet %q", chatQuestions[p], chat.Tok.Decode(toInts(got), false), chat.Tok.Decode(toInts(want), false))
			}
		}
	})
}

// checkGreedy compares llama.cpp's reply r to whet's for each prompt of c:
// the first step's logits within the precision's tolerance, and the n-token
// greedy continuation token for token (F16), or up to the first step where
// whet's top two logits are closer than the rounding could move them.
func checkGreedy(t *testing.T, c *greedyCase, r llamaReply, n int) {
	t.Helper()
	if r.Vocab != c.src.Model.Cfg.VocabSize {
		t.Errorf("llama.cpp sees %d tokens, the model has %d", r.Vocab, c.src.Model.Cfg.VocabSize)
	}
	for p, prompt := range c.prompts {
		// The first step's logits, as a numeric check beyond argmax.
		logits := whetLogits(t, c.ref, prompt)
		V := c.src.Model.Cfg.VocabSize
		last := logits[(len(prompt)-1)*V:]
		var maxDiff, maxAbs float64
		for id, l := range r.Greedy[p].FirstLogits {
			if l == nil {
				t.Fatalf("llama.cpp gave no logit for token %d", id)
			}
			maxDiff = math.Max(maxDiff, math.Abs(*l-float64(last[id])))
			maxAbs = math.Max(maxAbs, math.Abs(float64(last[id])))
		}
		tol := 0.005 * maxAbs // f16 weights and activations
		if c.quant != "f16" {
			// 8-bit mantissas (bf16), or 8-bit activations beside
			// quantized weights (whet's side already holds the
			// weights as stored).
			tol = 0.05 * maxAbs
		}
		if maxDiff > tol {
			t.Errorf("prompt %v: logits differ by up to %.4f (largest logit %.3f, tolerance %.4f)", prompt, maxDiff, maxAbs, tol)
		}

		// F16 must match token for token. BF16 keeps 8 bits of
		// mantissa and Q8_0 also rounds the activations to 8 bits:
		// on a random tiny model, whose logits are often near
		// ties, the continuations must agree up to the first step
		// where whet's top two logits are closer than twice what
		// the rounding moved the first step's logits (the trained
		// chat run below must agree everywhere, in F16, Q8_0 and
		// Q4_K_M).
		want := whetGreedy(t, c.ref, prompt, n, nil)
		got := r.Greedy[p].Tokens
		upTo := len(want)
		if c.quant != "f16" {
			upTo = firstNearTie(t, c.ref, prompt, want, 2*maxDiff)
		}
		t.Logf("prompt %v: first-step logits within %.4f of whet's (largest %.3f); %d of %d tokens compared", prompt, maxDiff, maxAbs, upTo, len(want))
		if len(got) < upTo || !slices.Equal(got[:upTo], want[:upTo]) {
			t.Errorf("prompt %v: llama.cpp continues %v, whet %v (compared %d tokens)", prompt, got, want, upTo)
		}
	}
}

func toInts(ids []int32) []int {
	out := make([]int, len(ids))
	for i, id := range ids {
		out[i] = int(id)
	}
	return out
}

// firstNearTie returns the first step of whet's greedy continuation cont
// whose top two logits are within margin of each other (len(cont) when
// none is).
func firstNearTie(t *testing.T, m *engine.Model, prompt, cont []int32, margin float64) int {
	t.Helper()
	ids := append(append([]int32(nil), prompt...), cont...)
	logits := whetLogits(t, m, ids)
	V := m.Cfg.VocabSize
	for k := range cont {
		row := logits[(len(prompt)-1+k)*V : (len(prompt)+k)*V]
		top, second := math.Inf(-1), math.Inf(-1)
		for _, v := range row {
			switch x := float64(v); {
			case x > top:
				top, second = x, top
			case x > second:
				second = x
			}
		}
		if top-second < margin {
			return k
		}
	}
	return len(cont)
}

// quantizedCopy loads src's model again with each weight replaced by what
// the GGUF of that precision stores: the merged values encoded in the type
// tensorType picks and decoded back.
func quantizedCopy(t *testing.T, src *Source, quant string) *engine.Model {
	t.Helper()
	m, err := engine.LoadModel(src.ModelDir, cpu.New())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Free)
	arch, err := ggufArchName(src.Model.Cfg.ModelType)
	if err != nil {
		t.Fatal(err)
	}
	params := map[string]*engine.Param{}
	for _, p := range m.Params() {
		params[p.Name] = p
	}
	for _, w := range Weights(src.Model) {
		_, role, layer, err := ggufName(src.Model.Family(), w.Name)
		if err != nil {
			t.Fatal(err)
		}
		typ := ggufQuants[quant].tensorType(arch, &src.Model.Cfg, role, layer, w.Shape).Type
		v, err := w.Values(src.Model)
		if err != nil {
			t.Fatal(err)
		}
		data, err := gguf.Encode(typ, v)
		if err != nil {
			t.Fatal(err)
		}
		back, err := gguf.Decode(typ, data, len(v))
		if err != nil {
			t.Fatal(err)
		}
		if err := m.B.Upload(params[w.Name].W, back); err != nil {
			t.Fatal(err)
		}
	}
	return m
}
