package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"whet/datasets"
	"whet/datasets/tokenizer"
	"whet/datasets/vision"
	"whet/engine"
	"whet/engine/cpu"
	"whet/engine/safetensors"
	"whet/engine/testmodels"
)

// The shapes task through whet train: 32×32 PNGs of a circle, a square or
// a triangle in one of four colours, on a noisy grey background, each
// captioned "<colour> <shape>" by the assistant.
var (
	visionShapes  = []string{"circle", "square", "triangle"}
	visionColours = []string{"red", "green", "blue", "yellow"}
	visionRGB     = [][3]float64{{0.9, 0.1, 0.1}, {0.1, 0.8, 0.2}, {0.15, 0.25, 0.95}, {0.95, 0.85, 0.1}}
)

// drawShapePNG writes one picture and returns its file name.
func drawShapePNG(t *testing.T, dir string, rng *rand.Rand, n, shape, colour int) string {
	t.Helper()
	const S = 32
	img := image.NewRGBA(image.Rect(0, 0, S, S))
	cx, cy, r := 16+rng.Float64()-0.5, 16+rng.Float64()-0.5, 10+rng.Float64()-0.5
	for y := 0; y < S; y++ {
		for x := 0; x < S; x++ {
			dx, dy := float64(x)+0.5-cx, float64(y)+0.5-cy
			var in bool
			switch shape {
			case 0:
				in = dx*dx+dy*dy <= r*r
			case 1:
				in = math.Abs(dx) <= r*0.85 && math.Abs(dy) <= r*0.85
			default:
				in = dy <= r*0.8 && dy >= -r && math.Abs(dx) <= (dy+r)*0.6
			}
			var c [3]uint8
			for ch := range c {
				v := 0.2 + rng.Float64()*0.04
				if in {
					v = visionRGB[colour][ch] + rng.Float64()*0.04
				}
				c[ch] = uint8(min(v, 1) * 255)
			}
			img.Set(x, y, color.RGBA{c[0], c[1], c[2], 255})
		}
	}
	name := fmt.Sprintf("img/%03d.png", n)
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(dir, "img"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, name), buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return name
}

// shapeRow is one captioned picture.
type shapeRow struct {
	image         string
	shape, colour int
}

// writeShapeData writes n captioned pictures as a JSONL of conversations
// (inline image parts) into dir and returns the rows.
func writeShapeData(t *testing.T, dir, file string, seed uint64, first, n int) []shapeRow {
	t.Helper()
	rng := rand.New(rand.NewPCG(seed, 24))
	var rows []shapeRow
	var b strings.Builder
	for i := 0; i < n; i++ {
		r := shapeRow{shape: i % 3, colour: (i / 3) % 4}
		r.image = drawShapePNG(t, dir, rng, first+i, r.shape, r.colour)
		rows = append(rows, r)
		b.WriteString(shapeMessages(r.image, visionColours[r.colour]+" "+visionShapes[r.shape]) + "\n")
	}
	if err := os.WriteFile(filepath.Join(dir, file), []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	return rows
}

func shapeMessages(image, caption string) string {
	row := map[string]any{"messages": []any{
		map[string]any{"role": "user", "content": []any{
			map[string]any{"type": "image", "path": image}}},
		map[string]any{"role": "assistant", "content": caption},
	}}
	js, _ := json.Marshal(row)
	return string(js)
}

// gemma3ColourScore counts the held-out pictures whose right colour word
// gives the lowest caption loss of the four (the shape given), for the
// model in modelDir with, when ckpt is set, that checkpoint's adapters.
// (The tiny model learns colours from its random tower far sooner than
// shapes, which TestGemma3VisionLearnsShapes trains for longer.)
func gemma3ColourScore(t *testing.T, modelDir, dataDir, ckpt string, rows []shapeRow) (correct int) {
	t.Helper()
	m, err := engine.LoadGemma3Vision(modelDir, cpu.New(), engine.ModelOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Free()
	lora := engine.LoRAOptions{Rank: 8, Alpha: 16, Seed: 1}
	if err := m.AddLoRA(lora); err != nil {
		t.Fatal(err)
	}
	if err := m.AddGemma3ProjectorLoRA(lora); err != nil {
		t.Fatal(err)
	}
	if ckpt != "" {
		if _, err := engine.LoadCheckpoint(ckpt, m); err != nil {
			t.Fatal(err)
		}
	}
	proc, err := engine.Gemma3ImageProcessor(modelDir, &m.Gemma3Vision.Cfg)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := tokenizer.Load(modelDir)
	if err != nil {
		t.Fatal(err)
	}
	// Every candidate caption of every picture, one row each.
	var b strings.Builder
	for _, r := range rows {
		for _, c := range visionColours {
			b.WriteString(shapeMessages(r.image, c+" "+visionShapes[r.shape]) + "\n")
		}
	}
	cands := filepath.Join(dataDir, "candidates.jsonl")
	if err := os.WriteFile(cands, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	tokens := vision.DefaultGemma3Tokens()
	tokens.SeqLen = m.Gemma3Vision.Cfg.TokensPerImage
	p, err := datasets.Prepare(datasets.Options{Path: cands, Template: "gemma-3", MaxLength: 128, MicroBatch: 1,
		Vision: &datasets.VisionOptions{Model: "Gemma 3", Gemma3: &tokens, ImageToken: tokens.Image, NoLabel: []string{tokens.BOI, tokens.EOI}}}, tok)
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Train) != 4*len(rows) {
		t.Fatalf("%d candidate sequences, want %d", len(p.Train), 4*len(rows))
	}
	acts, err := m.NewActivations(128, false)
	if err != nil {
		t.Fatal(err)
	}
	defer acts.Free()
	loss := func(seq datasets.Sequence) float64 {
		batch, err := datasets.PadBatches([]datasets.Sequence{seq}, 1, 0, rand.New(rand.NewPCG(1, 1)))
		if err != nil {
			t.Fatal(err)
		}
		d, err := batch[0].Images[0].Load()
		if err != nil {
			t.Fatal(err)
		}
		out, err := proc.Process(d)
		if err != nil {
			t.Fatal(err)
		}
		if err := acts.SetImages(out.PixelValues[0], 1); err != nil {
			t.Fatal(err)
		}
		r, err := acts.ForwardBackward(&batch[0], 0, false, 0)
		if err != nil {
			t.Fatal(err)
		}
		return r.LossSum
	}
	// Each picture's candidates, found by their words (the split and
	// batches may reorder rows): the colour named with the right shape.
	for _, r := range rows {
		best, bestLoss := -1, math.Inf(1)
		for c, colour := range visionColours {
			if l := loss(findCandidate(t, p.Train, tok, r.image, colour+" "+visionShapes[r.shape])); l < bestLoss {
				best, bestLoss = c, l
			}
		}
		if best == r.colour {
			correct++
		}
	}
	return correct
}

// findCandidate is the prepared sequence of image's caption.
func findCandidate(t *testing.T, seqs []datasets.Sequence, tok *tokenizer.Tokenizer, image, caption string) datasets.Sequence {
	t.Helper()
	for _, s := range seqs {
		if s.Images[0].Ref.Path != image {
			continue
		}
		ids := make([]int, len(s.Tokens))
		for i, id := range s.Tokens {
			ids[i] = int(id)
		}
		if strings.Contains(tok.Decode(ids, true), "model\n"+caption) {
			return s
		}
	}
	t.Fatalf("no candidate %q for %s", caption, image)
	return datasets.Sequence{}
}

// whet train on a tiny Gemma 3 vision model and a generated image
// dataset: the loss falls, the held-out pictures' colours are named better
// than before, a stop leaves a checkpoint (adapters and optimizer state)
// that the next run resumes from, and the adapter folder holds the
// language model's and the projector's adapters.
func TestTrainGemma3VisionEndToEnd(t *testing.T) {
	modelDir := gemma3TinyVisionModel(t, 1)
	dir := t.TempDir()
	writeShapeData(t, dir, "train.jsonl", 7, 0, 72)
	heldOut := writeShapeData(t, dir, "heldout.jsonl", 8, 100, 12)
	runFile := func(steps int) string {
		run := fmt.Sprintf(`name: shapes
model: %s
backend: cpu
runs_dir: %s
method: lora
lora: {r: 8, alpha: 16, dropout: 0, projector: true}
data: {path: %s, template: gemma-3, max_length: 96, packing: false, seed: 1}
train: {max_steps: %d, micro_batch: 6, lr: 0.02, schedule: constant, warmup_steps: 0, seed: 1, save_every: 20, log_every: 10, sample_every: 0}
`, modelDir, dir, filepath.Join(dir, "train.jsonl"), steps)
		return writeRunYAML(t, dir, run)
	}
	var out bytes.Buffer
	if err := runTrain([]string{"-c", runFile(40), "--json"}, nil, &out, &out); err != nil {
		t.Fatalf("first run: %v\n%s", err, out.String())
	}
	var losses []float64
	for _, line := range strings.Split(out.String(), "\n") {
		var ev map[string]any
		if json.Unmarshal([]byte(line), &ev) == nil && ev["event"] == "step" {
			losses = append(losses, ev["loss"].(float64))
		}
	}
	if !strings.Contains(out.String(), "vision: Gemma 3 trains on 72 images") {
		t.Errorf("the log does not say the run trains on images:\n%s", out.String())
	}
	t.Logf("losses %v", losses)
	runDir := filepath.Join(dir, "shapes")
	ckpts, err := engine.ListCheckpoints(engine.RunDir(runDir).Checkpoints())
	if err != nil || len(ckpts) == 0 || ckpts[len(ckpts)-1].Step != 40 {
		t.Fatalf("checkpoints %v, %v", ckpts, err)
	}
	// Resume: the run file with more steps goes on from step 40.
	out.Reset()
	if err := runTrain([]string{"-c", runFile(80), "--resume-anyway"}, nil, &out, &out); err != nil {
		t.Fatalf("resumed run: %v\n%s", err, out.String())
	}
	if !strings.Contains(out.String(), "resumed") || !strings.Contains(out.String(), "at step 40") || strings.Contains(out.String(), "step 10/") {
		t.Errorf("the second run did not resume at step 40:\n%s", out.String())
	}
	losses = append(losses, textStepLosses(out.String())...)
	if len(losses) < 6 || !(losses[len(losses)-1] < losses[0]/2) {
		t.Errorf("training loss did not halve: %v", losses)
	}
	adapter := engine.RunDir(runDir).Adapter()
	for _, f := range []string{"adapter_model.safetensors", "adapter_config.json", engine.ProjectorLoRAFile} {
		if _, err := os.Stat(filepath.Join(adapter, f)); err != nil {
			t.Errorf("adapter folder: %v", err)
		}
	}
	ckpts, _ = engine.ListCheckpoints(engine.RunDir(runDir).Checkpoints())
	last := ckpts[len(ckpts)-1]
	if last.Step != 80 {
		t.Fatalf("last checkpoint at step %d, want 80", last.Step)
	}
	before := gemma3ColourScore(t, modelDir, dir, "", heldOut)
	after := gemma3ColourScore(t, modelDir, dir, last.Path, heldOut)
	t.Logf("held-out pictures' colours named right: %d -> %d of %d", before, after, len(heldOut))
	if after <= before || after < len(heldOut)*2/3 {
		t.Errorf("held-out colours named right %d -> %d of %d: want more than before and at least 2/3", before, after, len(heldOut))
	}
}

// writeRunYAML writes run as dir/run.yaml and returns its path.
func writeRunYAML(t *testing.T, dir, run string) string {
	t.Helper()
	p := filepath.Join(dir, "run.yaml")
	if err := os.WriteFile(p, []byte(run), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// copyModelFiles copies a tiny model folder's config.json,
// model.safetensors and tokenizer files from src into dst (made if
// missing): how the -write-*-testdata flags commit a generated model.
func copyModelFiles(t *testing.T, src, dst string) {
	t.Helper()
	if err := os.MkdirAll(dst, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"} {
		b, err := os.ReadFile(filepath.Join(src, f))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dst, f), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// mllamaTinyModel writes a tiny random Llama 3.2 Vision folder that chats
// (testmodels.MllamaChat: 16-pixel tiles, up to 4; text hidden 64 with a
// cross-attention layer at 1; tiny-llama's tokenizer plus Llama 3's
// header tokens and <|image|>; Llama 3.2 Vision's chat template).
func mllamaTinyModel(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	if err := (testmodels.MllamaChat{TestdataDir: "testdata", Seed: [2]uint64{9, 24}}).Write(dir); err != nil {
		t.Fatal(err)
	}
	return dir
}

// whet train on a tiny Llama 3.2 Vision model: the images reach the
// language model through its cross-attention layer, the loss falls, a run
// resumes from its checkpoint, and the adapter folder holds PEFT tensors
// under the released checkpoint's module names (projector included).
func TestTrainMllamaVisionEndToEnd(t *testing.T) {
	modelDir := mllamaTinyModel(t)
	dir := t.TempDir()
	writeShapeData(t, dir, "train.jsonl", 7, 0, 24)
	runFile := func(steps int, extra string) string {
		run := fmt.Sprintf(`name: mllama
model: %s
backend: cpu
runs_dir: %s
method: lora
lora: {r: 4, alpha: 8, dropout: 0, projector: true%s}
data: {path: %s, max_length: 128, packing: false, seed: 1, eval_split: 0.25}
train: {max_steps: %d, micro_batch: 3, lr: 0.01, schedule: constant, warmup_steps: 0, seed: 1, save_every: 3, log_every: 1, eval_every: 6, sample_every: 0}
`, modelDir, dir, extra, filepath.Join(dir, "train.jsonl"), steps)
		return writeRunYAML(t, dir, run)
	}
	var out bytes.Buffer
	if err := runTrain([]string{"-c", runFile(6, "")}, nil, &out, &out); err != nil {
		t.Fatalf("first run: %v\n%s", err, out.String())
	}
	first := out.String()
	if !strings.Contains(first, "vision: Llama 3.2 Vision trains on 24 images") || !strings.Contains(first, "template jinja") || !strings.Contains(first, "eval 6 sequences") {
		t.Errorf("the log does not say the run trains on images:\n%s", first)
	}
	out.Reset()
	if err := runTrain([]string{"-c", runFile(12, ""), "--resume-anyway"}, nil, &out, &out); err != nil {
		t.Fatalf("resumed run: %v\n%s", err, out.String())
	}
	if !strings.Contains(out.String(), "at step 6") || strings.Contains(out.String(), "step 1/") {
		t.Errorf("the second run did not resume at step 6:\n%s", out.String())
	}
	// The held-out quarter is scored with its images at steps 6 and 12.
	var evals []float64
	for _, line := range strings.Split(first+out.String(), "\n") {
		var step int
		var loss float64
		if n, _ := fmt.Sscanf(line, "eval  step %d  loss %f", &step, &loss); n == 2 {
			evals = append(evals, loss)
		}
	}
	if len(evals) != 2 || !(evals[1] < evals[0]) {
		t.Errorf("eval losses %v: want two, falling", evals)
	}
	losses := textStepLosses(first + out.String())
	t.Logf("losses %v", losses)
	if len(losses) != 12 || !(losses[11] < losses[0]*0.7) {
		t.Errorf("losses %v: want 12 steps with the last below 0.7 × the first", losses)
	}
	checkMllamaAdapterNames(t, filepath.Join(dir, "mllama"))
	// What Mllama cannot do is refused by name before any step.
	out.Reset()
	p := runFile(2, "")
	data, _ := os.ReadFile(p)
	if err := os.WriteFile(p, []byte(strings.Replace(strings.Replace(string(data), "method: lora", "method: full", 1), "name: mllama", "name: f", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := runTrain([]string{"-c", p}, nil, &out, &out); err == nil || !strings.Contains(err.Error(), "method full: Llama 3.2 Vision (Mllama) trains with method lora or qlora only") {
		t.Errorf("full on Mllama: %v", err)
	}
}

// whet train with method qlora on the tiny Llama 3.2 Vision model: the
// language model's linears in NF4, a few steps whose loss falls, a resume
// from the checkpoint, and the adapter under PEFT's names.
func TestTrainMllamaVisionQLoRA(t *testing.T) {
	modelDir := mllamaTinyModel(t)
	dir := t.TempDir()
	writeShapeData(t, dir, "train.jsonl", 7, 0, 12)
	runFile := func(steps int) string {
		run := fmt.Sprintf(`name: mq
model: %s
backend: cpu
runs_dir: %s
method: qlora
lora: {r: 4, alpha: 8, dropout: 0, projector: true}
data: {path: %s, max_length: 128, packing: false, seed: 1}
train: {max_steps: %d, micro_batch: 3, lr: 0.01, schedule: constant, warmup_steps: 0, seed: 1, save_every: 2, log_every: 1, sample_every: 0}
`, modelDir, dir, filepath.Join(dir, "train.jsonl"), steps)
		return writeRunYAML(t, dir, run)
	}
	var out bytes.Buffer
	if err := runTrain([]string{"-c", runFile(2)}, nil, &out, &out); err != nil {
		t.Fatalf("first run: %v\n%s", err, out.String())
	}
	first := out.String()
	for _, want := range []string{"vision: Llama 3.2 Vision trains on 12 images", "qlora: decoder weights quantized", "language-model linears in NF4", "step 2/2"} {
		if !strings.Contains(first, want) {
			t.Errorf("the log lacks %q:\n%s", want, first)
		}
	}
	out.Reset()
	if err := runTrain([]string{"-c", runFile(4), "--resume-anyway"}, nil, &out, &out); err != nil {
		t.Fatalf("resumed run: %v\n%s", err, out.String())
	}
	if !strings.Contains(out.String(), "at step 2") || strings.Contains(out.String(), "step 1/") || !strings.Contains(out.String(), "step 4/4") {
		t.Errorf("the second run did not resume at step 2:\n%s", out.String())
	}
	losses := textStepLosses(first + out.String())
	t.Logf("losses %v", losses)
	if len(losses) != 4 || !(losses[3] < losses[0]) {
		t.Errorf("losses %v: want 4 steps with the last below the first", losses)
	}
	checkMllamaAdapterNames(t, filepath.Join(dir, "mq"))
}

// textStepLosses reads the step losses from whet train's text output
// ("step N/M  epoch E  loss L ..." lines).
func textStepLosses(out string) []float64 {
	var losses []float64
	for _, line := range strings.Split(out, "\n") {
		var step, total int
		var loss float64
		if n, _ := fmt.Sscanf(line, "step %d/%d  epoch %f  loss %f", &step, &total, new(float64), &loss); n == 4 {
			losses = append(losses, loss)
		}
	}
	return losses
}

// checkMllamaAdapterNames checks that the tiny Mllama run in runDir wrote
// its adapter under PEFT's names: a cross-attention and an MLP adapter of
// the language model and the projector's.
func checkMllamaAdapterNames(t *testing.T, runDir string) {
	t.Helper()
	f, err := safetensors.Open(filepath.Join(engine.RunDir(runDir).Adapter(), "adapter_model.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, name := range []string{"base_model.model.language_model.model.layers.1.cross_attn.q_proj.lora_A.weight",
		"base_model.model.language_model.model.layers.0.mlp.down_proj.lora_B.weight", "base_model.model.multi_modal_projector.lora_A.weight"} {
		if _, ok := f.Info(name); !ok {
			t.Errorf("the adapter lacks %s", name)
		}
	}
}

// Image data that a run cannot use is refused before any step, by name:
// images for a text model, a picture that does not decode (row, field and
// file), packing with images.
func TestTrainVisionRefusals(t *testing.T) {
	gemma := gemma3ChatModel(t)
	dir := t.TempDir()
	writeShapeData(t, dir, "train.jsonl", 7, 0, 3)
	data, err := os.ReadFile(filepath.Join(dir, "train.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(data)), "\n")
	lines[1] = strings.Replace(lines[1], "img/001.png", "img/missing.png", 1)
	if err := os.WriteFile(filepath.Join(dir, "bad.jsonl"), []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	abs := func(p string) string { a, _ := filepath.Abs(p); return a }
	for _, tc := range []struct {
		name, model, data, extra string
		want                     []string
	}{
		{"text model", abs("testdata/tiny-gemma3"), "train.jsonl", "", []string{"train.jsonl:1", "holds an image", "is a text model"}},
		{"bad image", gemma, "bad.jsonl", "", []string{"1 image(s) cannot be read", "bad.jsonl:2: field \"messages[0].content[0]\"", "img/missing.png"}},
		{"packing", gemma, "train.jsonl", "packing: true, ", []string{"data.packing: sequences with images are not packed"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			run := fmt.Sprintf(`name: %s
model: %s
backend: cpu
runs_dir: %s
method: lora
data: {path: %s, template: gemma-3, %smax_length: 96}
train: {max_steps: 1, seed: 1}
`, strings.ReplaceAll(tc.name, " ", "-"), tc.model, dir, filepath.Join(dir, tc.data), tc.extra)
			p := writeRunYAML(t, dir, run)
			var out bytes.Buffer
			err := runTrain([]string{"-c", p}, nil, &out, &out)
			if err == nil {
				t.Fatalf("trained:\n%s", out.String())
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error lacks %q: %v", w, err)
				}
			}
			t.Logf("%v", err)
			if strings.Contains(out.String(), "step 1/") {
				t.Errorf("a step ran before the refusal:\n%s", out.String())
			}
		})
	}
}

// Text data on a Gemma 3 vision model trains the text model, as before.
func TestTrainGemma3VisionModelOnText(t *testing.T) {
	dir := t.TempDir()
	row := `{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}` + "\n"
	if err := os.WriteFile(filepath.Join(dir, "text.jsonl"), []byte(row+row), 0o644); err != nil {
		t.Fatal(err)
	}
	run := fmt.Sprintf("name: text\nmodel: %s\nbackend: cpu\nruns_dir: %s\nmethod: lora\ndata: {path: %s, template: gemma-3, max_length: 96}\ntrain: {max_steps: 1, seed: 1}\n",
		gemma3ChatModel(t), dir, filepath.Join(dir, "text.jsonl"))
	p := writeRunYAML(t, dir, run)
	var out bytes.Buffer
	if err := runTrain([]string{"-c", p}, nil, &out, &out); err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	if strings.Contains(out.String(), "vision:") || !strings.Contains(out.String(), "step 1/1") {
		t.Errorf("text data on a vision model:\n%s", out.String())
	}
	// lora.vision_layers with no images to train the tower on is refused by name.
	run = strings.Replace(run, "method: lora\n", "method: lora\nlora: {r: 4, alpha: 8, vision_layers: true}\n", 1)
	run = strings.Replace(run, "name: text\n", "name: text-vl\n", 1)
	p = writeRunYAML(t, dir, run)
	out.Reset()
	err := runTrain([]string{"-c", p}, nil, &out, &out)
	if err == nil || !strings.Contains(err.Error(), "lora.vision_layers: the run has no images") {
		t.Errorf("lora.vision_layers on text data: %v, want a refusal naming it\n%s", err, out.String())
	}
}

// QLoRA on a Gemma 3 vision model with images: the language model's
// linears in NF4, the tower and projector as loaded, two steps.
func TestTrainGemma3VisionQLoRA(t *testing.T) {
	dir := t.TempDir()
	writeShapeData(t, dir, "train.jsonl", 7, 0, 4)
	run := fmt.Sprintf("name: q\nmodel: %s\nbackend: cpu\nruns_dir: %s\nmethod: qlora\nlora: {r: 4, alpha: 8, projector: true}\ndata: {path: %s, template: gemma-3, max_length: 96}\ntrain: {max_steps: 2, micro_batch: 2, lr: 0.01, seed: 1, sample_every: 0}\n",
		gemma3ChatModel(t), dir, filepath.Join(dir, "train.jsonl"))
	p := writeRunYAML(t, dir, run)
	var out bytes.Buffer
	if err := runTrain([]string{"-c", p}, nil, &out, &out); err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	for _, want := range []string{"vision: Gemma 3 trains on 4 images", "qlora: decoder weights quantized", "step 2/2"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
}

var writeVisionTestdata = flag.Bool("write-vision-testdata", false,
	"write testdata/tiny-gemma3-vision-shapes and testdata/datasets/shapes, which the GPU batch tools/gpu/vtrain trains on")

// The committed tiny Gemma 3 vision model and shapes dataset (made by
// this test with -write-vision-testdata: gemma3TinyVisionModel(t, 1) and
// writeShapeData's 72 training pictures) train through whet train; the GPU
// batch tools/gpu/vtrain runs the same run on the CPU and on CUDA.
func TestVisionTestdata(t *testing.T) {
	model, data := filepath.Join("testdata", "tiny-gemma3-vision-shapes"), filepath.Join("testdata", "datasets", "shapes")
	if *writeVisionTestdata {
		src := gemma3TinyVisionModel(t, 1)
		copyModelFiles(t, src, model)
		if err := os.MkdirAll(data, 0o755); err != nil {
			t.Fatal(err)
		}
		writeShapeData(t, data, "train.jsonl", 7, 0, 72)
	}
	trainTestdata(t, "name: shapes\nmodel: %s\nbackend: cpu\nruns_dir: %s\nmethod: lora\nlora: {r: 8, alpha: 16, dropout: 0, projector: true}\n"+
		"data: {path: %s, template: gemma-3, max_length: 96, packing: false, seed: 1}\ntrain: {max_steps: 2, micro_batch: 6, lr: 0.02, seed: 1, sample_every: 0}\n",
		model, filepath.Join(data, "train.jsonl"), "vision: Gemma 3 trains on 72 images", "go test . -run TestVisionTestdata -write-vision-testdata")
}

// trainTestdata trains two steps through whet train on committed testdata:
// run is the run file's format, given the model folder, a temporary runs
// folder and the data file (both made absolute); the log must say want.
// write says how to write the files when they are missing.
func trainTestdata(t *testing.T, run, model, data, want, write string) {
	t.Helper()
	dir := t.TempDir()
	abs := func(p string) string { a, _ := filepath.Abs(p); return a }
	p := writeRunYAML(t, dir, fmt.Sprintf(run, abs(model), dir, abs(data)))
	var out bytes.Buffer
	if err := runTrain([]string{"-c", p}, nil, &out, &out); err != nil {
		t.Fatalf("%v (write the files with %s)\n%s", err, write, out.String())
	}
	if !strings.Contains(out.String(), want) || !strings.Contains(out.String(), "step 2/2") {
		t.Errorf("output:\n%s", out.String())
	}
}

// lora.vision_layers on a Gemma 3 vision model: whet train puts adapters
// on the tower's linear layers (6 per layer), trains them (their B leave zero), keeps
// them in the checkpoint with their AdamW moments, resumes from it, writes
// them to the adapter folder (VisionLayersLoRAFile, which LoadAdapter
// attaches again), and the exporters refuse the run by name until they
// export them.
func TestTrainGemma3VisionLayersLoRA(t *testing.T) {
	modelDir := gemma3ChatModel(t)
	dir := t.TempDir()
	writeShapeData(t, dir, "train.jsonl", 7, 0, 8)
	runFile := func(steps int) string {
		run := fmt.Sprintf("name: vl\nmodel: %s\nbackend: cpu\nruns_dir: %s\nmethod: lora\nlora: {r: 4, alpha: 8, dropout: 0, vision_layers: true}\ndata: {path: %s, template: gemma-3, max_length: 96, packing: false, seed: 1}\ntrain: {max_steps: %d, micro_batch: 2, lr: 0.01, schedule: constant, warmup_steps: 0, seed: 1, save_every: 2, log_every: 1, sample_every: 0}\n",
			modelDir, dir, filepath.Join(dir, "train.jsonl"), steps)
		p := filepath.Join(dir, "run.yaml")
		if err := os.WriteFile(p, []byte(run), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	var out bytes.Buffer
	if err := runTrain([]string{"-c", runFile(2)}, nil, &out, &out); err != nil {
		t.Fatalf("first run: %v\n%s", err, out.String())
	}
	if !strings.Contains(out.String(), "on the vision tower's linear layers (lora.vision_layers") {
		t.Errorf("the log does not say the tower has adapters:\n%s", out.String())
	}
	runDir := filepath.Join(dir, "vl")
	ckpts, err := engine.ListCheckpoints(engine.RunDir(runDir).Checkpoints())
	if err != nil || len(ckpts) == 0 || ckpts[len(ckpts)-1].Step != 2 {
		t.Fatalf("checkpoints %v, %v", ckpts, err)
	}
	// The checkpoint holds every tower adapter, B trained away from zero.
	f, err := safetensors.Open(filepath.Join(ckpts[len(ckpts)-1].Path, "trainable.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	tower, weights := 0, 0
	for _, n := range f.Names() {
		if !strings.HasPrefix(n, engine.Gemma3VisionLayersModule) {
			continue
		}
		tower++
		if strings.HasSuffix(n, ".lora_A.weight") {
			weights++
		}
		if strings.HasSuffix(n, ".lora_B.weight") {
			weights++
			v, err := f.Float32(n)
			if err != nil {
				t.Fatal(err)
			}
			if sumAbs(v) == 0 {
				t.Errorf("checkpoint: %s is still zero after 2 steps", n)
			}
		}
	}
	f.Close()
	// The tiny model's tower has one layer: 6 linears × A, B, each with
	// its two AdamW moments.
	if weights != 12 || tower != 36 {
		t.Errorf("checkpoint holds %d tower adapter weights and %d tower tensors in all, want 1 layer × 6 linears × A, B = 12 and 36 with the moments", weights, tower)
	}
	out.Reset()
	if err := runTrain([]string{"-c", runFile(4), "--resume-anyway"}, nil, &out, &out); err != nil {
		t.Fatalf("resumed run: %v\n%s", err, out.String())
	}
	if !strings.Contains(out.String(), "resumed") || !strings.Contains(out.String(), "at step 2") || strings.Contains(out.String(), "step 1/") {
		t.Errorf("the second run did not resume at step 2:\n%s", out.String())
	}
	adapter := engine.RunDir(runDir).Adapter()
	m, err := engine.LoadGemma3Vision(modelDir, cpu.New(), engine.ModelOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Free()
	if _, err := engine.LoadAdapter(adapter, m); err != nil {
		t.Fatalf("LoadAdapter: %v", err)
	}
	if !m.Gemma3Vision.HasTowerLoRA() {
		t.Fatal("LoadAdapter did not attach the tower adapters")
	}
	b := m.Gemma3Vision.Layers[0].FC2.LoRA.B
	v := make([]float32, b.W.Len())
	if err := m.B.Download(b.W, v); err != nil || sumAbs(v) == 0 {
		t.Errorf("the loaded fc2 adapter of layer 0 has B of |·| sum %v (err %v), want the trained one", sumAbs(v), err)
	}
	out.Reset()
	err = runExport([]string{"--run", runDir, "--format", "peft", "--out", filepath.Join(dir, "peft")}, nil, &out, &out)
	if err == nil || !strings.Contains(err.Error(), "lora.vision_layers") {
		t.Errorf("export of a run with lora.vision_layers: %v, want a refusal naming lora.vision_layers", err)
	}
}

func sumAbs(v []float32) float64 {
	var s float64
	for _, x := range v {
		s += math.Abs(float64(x))
	}
	return s
}

// lora.vision_layers on Llama 3.2 Vision is refused by name before any
// step (the tower adapters are Gemma 3's only for now).
func TestTrainMllamaVisionLayersRefused(t *testing.T) {
	dir := t.TempDir()
	writeShapeData(t, dir, "train.jsonl", 7, 0, 3)
	run := fmt.Sprintf("name: mvl\nmodel: %s\nbackend: cpu\nruns_dir: %s\nmethod: lora\nlora: {r: 4, alpha: 8, vision_layers: true}\ndata: {path: %s, max_length: 128, packing: false}\ntrain: {max_steps: 1, micro_batch: 3, seed: 1, sample_every: 0}\n",
		mllamaTinyModel(t), dir, filepath.Join(dir, "train.jsonl"))
	var out bytes.Buffer
	err := runTrain([]string{"-c", writeRunYAML(t, dir, run)}, nil, &out, &out)
	if err == nil || !strings.Contains(err.Error(), "lora.vision_layers: adapters on the vision tower are implemented for Gemma 3 only") {
		t.Errorf("lora.vision_layers on Mllama: %v, want a refusal naming it\n%s", err, out.String())
	}
	if strings.Contains(out.String(), "step 1/") {
		t.Errorf("a step ran before the refusal:\n%s", out.String())
	}
}

// A Llama 3.2 Vision run with train.sample_every set makes no samples and
// says so with engine.NoSamplesNote (the studio's dashboard shows that
// line where the samples would be).
func TestTrainMllamaSaysNoSamples(t *testing.T) {
	modelDir := mllamaTinyModel(t)
	dir := t.TempDir()
	writeShapeData(t, dir, "train.jsonl", 7, 0, 6)
	run := fmt.Sprintf(`name: mllama
model: %s
backend: cpu
runs_dir: %s
method: lora
lora: {r: 4, alpha: 8, dropout: 0}
data: {path: %s, max_length: 128, packing: false, seed: 1}
train: {max_steps: 1, micro_batch: 3, lr: 0.01, schedule: constant, warmup_steps: 0, seed: 1, log_every: 1, sample_every: 1, sample_prompts: ["What shape is this?"]}
`, modelDir, dir, filepath.Join(dir, "train.jsonl"))
	var out bytes.Buffer
	if err := runTrain([]string{"-c", writeRunYAML(t, dir, run)}, nil, &out, &out); err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	if !strings.Contains(out.String(), engine.NoSamplesNote+"Llama 3.2 Vision runs generate none while they train") {
		t.Errorf("the log does not say the run makes no samples:\n%s", out.String())
	}
	if _, err := os.Stat(filepath.Join(dir, "mllama", "samples.jsonl")); err == nil {
		t.Errorf("the run wrote samples.jsonl, yet says it makes none")
	}
}
