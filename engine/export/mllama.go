package export

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"whet/engine"
	"whet/engine/cpu"
	"whet/engine/hub"
	"whet/engine/safetensors"
)

// Llama 3.2 Vision (MllamaForConditionalGeneration, model_type mllama):
// PEFT adapters (engine.SaveMllamaAdapter's names, transformers 5's module
// paths) and merged safetensors. GGUF is refused: llama.cpp has no Mllama
// support (no mllama architecture in libllama, no Mllama projector in
// clip.cpp; its vision work moved to tools/mtmd without it, and the
// release node-llama-cpp bundles has no "mllama" anywhere in its
// libraries), and a language-model-only GGUF would drop the gated
// cross-attention layers through which the images (and what the adapter
// learned from them) reach the text.

// errMllamaGGUF is the refusal of --format gguf for an Mllama run.
var errMllamaGGUF = errors.New("export: Llama 3.2 Vision (model_type mllama) cannot be exported to GGUF: llama.cpp has no Mllama support " +
	"(neither the language model's gated cross-attention layers nor an mmproj for its tiled vision encoder), and a text-only GGUF " +
	"would drop the cross-attention layers that carry the images; export --format peft or merged (transformers, vLLM)")

// isMllamaFolder reports whether a model folder's config.json is an
// Mllama one.
func isMllamaFolder(dir string) bool {
	data, err := os.ReadFile(filepath.Join(dir, "config.json"))
	return err == nil && engine.IsMllamaConfig(data)
}

// checkMllamaRun refuses what whet cannot export of an Mllama run, before
// anything is written.
func checkMllamaRun(run *RunFiles, o Options) error {
	switch {
	case o.Format == "gguf":
		return errMllamaGGUF
	case run.Cfg.Method == "qlora":
		return fmt.Errorf("export: %s: a QLoRA run of Llama 3.2 Vision (mllama): its export is not written yet (the run's adapter/ folder holds its PEFT adapter)", run.Dir)
	case run.Cfg.Method == "full":
		return fmt.Errorf("export: %s: full fine-tuning of Llama 3.2 Vision (mllama) is not something whet trains; only LoRA runs export", run.Dir)
	}
	return nil
}

// exportMllama writes the PEFT or merged export of an Mllama LoRA run.
func exportMllama(ctx context.Context, run *RunFiles, o Options, progress Progress) error {
	cfg, err := engine.LoadMllamaConfig(run.ModelDir)
	if err != nil {
		return fmt.Errorf("export: %w", err)
	}
	chat, err := runChatTemplate(run, o.Template)
	if err != nil {
		return err
	}
	if chat.Custom() {
		progress(0, 0, chatTemplateNotice(chat, "the tokenizer files"))
	}
	if o.Format == "peft" {
		progress(0, 2, "converting the adapter")
		base, revision := peftBaseModel(run)
		if _, err := engine.ConvertMllamaAdapter(run.AdapterDir, o.OutDir, cfg, base); err != nil {
			return fmt.Errorf("export: %w", err)
		}
		if revision != "" {
			path := filepath.Join(o.OutDir, adapterConfigFile)
			c, err := readJSONMap(path)
			if err != nil {
				return fmt.Errorf("export: %w", err)
			}
			c["revision"] = revision
			if err := writeJSON(path, c); err != nil {
				return err
			}
		}
		progress(1, 2, adapterWeights+", "+adapterConfigFile)
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("export cancelled: %w", err)
		}
		if err := copyTokenizerFiles(run.ModelDir, o.OutDir, chat); err != nil {
			return err
		}
		if err := copyPreprocessorConfig(run.ModelDir, o.OutDir); err != nil {
			return err
		}
		progress(2, 2, "tokenizer files")
		return nil
	}
	m, err := engine.LoadMllama(run.ModelDir, cpu.New())
	if err != nil {
		return fmt.Errorf("export: %w", err)
	}
	defer m.Free()
	if _, err := engine.LoadMllamaAdapter(run.AdapterDir, m); err != nil {
		return fmt.Errorf("export: %w", err)
	}
	return writeMllamaMerged(ctx, m, run.ModelDir, o.OutDir, o.quant(), chat, progress)
}

// peftBaseModel is base_model_name_or_path for a run's PEFT export: the Hub
// id (and its revision when pinned) for a Hub model, else the absolute
// folder.
func peftBaseModel(run *RunFiles) (base, revision string) {
	if ref, ok := hubModel(run.Cfg.Model); ok {
		if ref.Revision != hub.DefaultRevision {
			revision = ref.Revision
		}
		return ref.Repo, revision
	}
	if abs, err := filepath.Abs(run.ModelDir); err == nil {
		return abs, ""
	}
	return run.ModelDir, ""
}

// writeMllamaMerged writes m (adapters merged in float32, W' = W + s·B·A)
// as safetensors in dtype under the source checkpoint's own names and
// shapes, with its config.json (dtype set), generation_config.json,
// preprocessor_config.json and tokenizer files.
func writeMllamaMerged(ctx context.Context, m *engine.MllamaModel, srcDir, dir, dtype string, chat *ChatTemplate, progress Progress) error {
	set, err := safetensors.OpenDir(srcDir)
	if err != nil {
		return fmt.Errorf("export: %w", err)
	}
	defer set.Close()
	weights := m.MllamaWeights()
	total := len(weights) + 2
	var tensors []safetensors.Tensor
	for i, w := range weights {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("export cancelled: %w", err)
		}
		v := make([]float32, numelOf(w.Shape))
		if err := m.B.Download(w.Param.W, v); err != nil {
			return fmt.Errorf("export: read %s: %w", w.Name, err)
		}
		if lin := w.Lin; lin != nil && lin.LoRA != nil && lin.LoRA.Enabled {
			lo := lin.LoRA
			a := make([]float32, lo.Rank*lin.In)
			b := make([]float32, lin.Out*lo.Rank)
			if err := m.B.Download(lo.A.W, a); err != nil {
				return fmt.Errorf("export: read %s: %w", lo.A.Name, err)
			}
			if err := m.B.Download(lo.B.W, b); err != nil {
				return fmt.Errorf("export: read %s: %w", lo.B.Name, err)
			}
			mergeLoRA(v, a, b, lin.Out, lin.In, lo.Rank, lo.Scale)
		}
		if err := checkFinite(w.Name, v); err != nil {
			return fmt.Errorf("export: %w", err)
		}
		name, shape := w.Name, w.Shape
		for _, n := range engine.MllamaCheckpointNames(w.Name) {
			if info, ok := set.Info(n); ok {
				name = n
				if numelOf(info.Shape) == len(v) {
					shape = info.Shape // early conversions' unflattened tile embeddings
				}
				break
			}
		}
		tensors = append(tensors, halfTensor(name, shape, v, dtype))
		progress(i+1, total, name)
	}
	if err := safetensors.WriteSharded(dir, mergedBaseName, tensors, ShardBytes, map[string]string{"format": "pt"}); err != nil {
		return fmt.Errorf("export: %w", err)
	}
	progress(len(weights)+1, total, "model.safetensors")
	if err := writeConfig(srcDir, dir, dtype); err != nil {
		return err
	}
	if data, err := os.ReadFile(filepath.Join(srcDir, generationFile)); err == nil {
		if err := writeFile(filepath.Join(dir, generationFile), data); err != nil {
			return err
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("export: %w", err)
	}
	if err := copyTokenizerFiles(srcDir, dir, chat); err != nil {
		return err
	}
	if err := copyPreprocessorConfig(srcDir, dir); err != nil {
		return err
	}
	progress(total, total, "config.json, tokenizer files")
	return nil
}

func numelOf(shape []int) int {
	n := 1
	for _, d := range shape {
		n *= d
	}
	return n
}
