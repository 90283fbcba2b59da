package main

import (
	"bytes"
	"encoding/json"
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
			map[string]any{"type": "image", "path": image},
			map[string]any{"type": "text", "text": "What is it?"}}},
		map[string]any{"role": "assistant", "content": caption},
	}}
	js, _ := json.Marshal(row)
	return string(js)
}

// gemma3ShapeScore counts the held-out pictures whose right shape word
// gives the lowest caption loss of the three (the colour given), for the
// model in modelDir with, when ckpt is set, that checkpoint's adapters.
func gemma3ShapeScore(t *testing.T, modelDir, dataDir, ckpt string, rows []shapeRow) int {
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
		for _, s := range visionShapes {
			b.WriteString(shapeMessages(r.image, visionColours[r.colour]+" "+s) + "\n")
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
	if len(p.Train) != 3*len(rows) {
		t.Fatalf("%d candidate sequences, want %d", len(p.Train), 3*len(rows))
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
	correct := 0
	// Each picture's three candidates (found by their words: the
	// split and batches may reorder rows).
	for _, r := range rows {
		best, bestShape := math.Inf(1), -1
		for s := range visionShapes {
			seq := findCandidate(t, p.Train, tok, r.image, visionShapes[s])
			if l := loss(seq); l < best {
				best, bestShape = l, s
			}
		}
		if bestShape == r.shape {
			correct++
		}
	}
	return correct
}

// findCandidate is the prepared sequence of image's caption with shape.
func findCandidate(t *testing.T, seqs []datasets.Sequence, tok *tokenizer.Tokenizer, image, shape string) datasets.Sequence {
	t.Helper()
	for _, s := range seqs {
		if s.Images[0].Ref.Path != image {
			continue
		}
		ids := make([]int, len(s.Tokens))
		for i, id := range s.Tokens {
			ids[i] = int(id)
		}
		if strings.Contains(tok.Decode(ids, true), " "+shape) {
			return s
		}
	}
	t.Fatalf("no candidate %s for %s", shape, image)
	return datasets.Sequence{}
}

// whet train on a tiny Gemma 3 vision model and a generated image
// dataset: the loss falls, the held-out pictures' shapes are named better
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
train: {max_steps: %d, micro_batch: 6, lr: 0.01, schedule: constant, warmup_steps: 0, seed: 1, save_every: 20, log_every: 10, sample_every: 0}
`, modelDir, dir, filepath.Join(dir, "train.jsonl"), steps)
		p := filepath.Join(dir, "run.yaml")
		if err := os.WriteFile(p, []byte(run), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	var out bytes.Buffer
	if err := runTrain([]string{"-c", runFile(60), "--json"}, nil, &out, &out); err != nil {
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
	if err != nil || len(ckpts) == 0 || ckpts[len(ckpts)-1].Step != 60 {
		t.Fatalf("checkpoints %v, %v", ckpts, err)
	}
	// Resume: the run file with more steps goes on from step 60.
	out.Reset()
	if err := runTrain([]string{"-c", runFile(120), "--resume-anyway"}, nil, &out, &out); err != nil {
		t.Fatalf("resumed run: %v\n%s", err, out.String())
	}
	if !strings.Contains(out.String(), "resumed") || !strings.Contains(out.String(), "at step 60") || strings.Contains(out.String(), "step 10/") {
		t.Errorf("the second run did not resume at step 60:\n%s", out.String())
	}
	for _, line := range strings.Split(out.String(), "\n") {
		var step, total int
		var loss float64
		if n, _ := fmt.Sscanf(line, "step %d/%d  epoch %f  loss %f", &step, &total, new(float64), &loss); n == 4 {
			losses = append(losses, loss)
		}
	}
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
	if last.Step != 120 {
		t.Fatalf("last checkpoint at step %d, want 120", last.Step)
	}
	before := gemma3ShapeScore(t, modelDir, dir, "", heldOut)
	after := gemma3ShapeScore(t, modelDir, dir, last.Path, heldOut)
	t.Logf("held-out shapes named right: %d -> %d of %d", before, after, len(heldOut))
	if after <= before || after < len(heldOut)*2/3 {
		t.Errorf("held-out shapes named right %d -> %d of %d: want more than before and at least 2/3", before, after, len(heldOut))
	}
}
