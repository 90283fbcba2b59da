package export

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"whet/engine"
	"whet/engine/atomicfile"
	"whet/engine/gguf"
	"whet/engine/safetensors"
)

// ShardBytes is the largest safetensors shard the merged export writes,
// transformers' default max_shard_size (5 GB).
var ShardBytes int64 = 5_000_000_000

// tokenizerFiles are copied next to the weights when present.
var tokenizerFiles = []string{"tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
	"tokenizer.model", "vocab.json", "merges.txt", "added_tokens.json", chatTemplateFile}

// writeMerged writes the merged model as HF safetensors in dtype (bf16 or
// f16) with config.json, generation_config.json and the tokenizer files.
func writeMerged(ctx context.Context, src *Source, dir, dtype string, progress Progress) error {
	weights := Weights(src.Model)
	total := len(weights) + 3
	names, carried, err := checkpointNames(src, weights)
	if err != nil {
		return err
	}
	var tensors []safetensors.Tensor
	for i, w := range weights {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("export cancelled: %w", err)
		}
		v, err := w.Values(src.Model)
		if err != nil {
			return fmt.Errorf("export: %w", err)
		}
		tensors = append(tensors, halfTensor(names[i], w.Shape, v, dtype))
		progress(i+1, total, w.Name)
	}
	tensors = append(tensors, carried...)
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("export cancelled: %w", err)
	}
	if err := safetensors.WriteSharded(dir, mergedBaseName, tensors, ShardBytes, map[string]string{"format": "pt"}); err != nil {
		return fmt.Errorf("export: %w", err)
	}
	progress(len(weights)+1, total, "model.safetensors")
	if err := writeConfig(src.ModelDir, dir, dtype); err != nil {
		return err
	}
	progress(len(weights)+2, total, "config.json")
	if err := writeGenerationConfig(src, dir); err != nil {
		return err
	}
	if err := copyTokenizerFiles(src.ModelDir, dir, src.chat()); err != nil {
		return err
	}
	if err := copyPreprocessorConfig(src.ModelDir, dir); err != nil {
		return err
	}
	progress(total, total, "generation_config.json, tokenizer files")
	return nil
}

// checkpointNames returns, for each weight, its name in the source
// checkpoint, and for a multimodal checkpoint (a family whose settings sit
// in text_config) the source's other tensors (the vision tower and
// projector) as stored, so the merged folder is the same model with its
// text part merged: transformers loads it with the source's config.json.
func checkpointNames(src *Source, weights []Weight) ([]string, []safetensors.Tensor, error) {
	names := make([]string, len(weights))
	for i, w := range weights {
		names[i] = w.Name
	}
	fam := src.Model.Family()
	if fam == nil || !fam.TextConfig {
		return names, nil, nil
	}
	set, err := safetensors.OpenDir(src.ModelDir)
	if err != nil {
		return nil, nil, fmt.Errorf("export: %w", err)
	}
	defer set.Close()
	used := map[string]bool{}
	has := func(n string) bool { _, ok := set.Info(n); return ok }
	layout, _, tower := engine.Gemma3VisionLayout(has)
	for i, w := range weights {
		if _, ok := set.Info(w.Name); !ok {
			// The vision tower and projector (vision_tower.vision_model.…,
			// multi_modal_projector.…) as the source file names them.
			if n := engine.Gemma3VisionFileName(layout, w.Name); tower && n != w.Name && has(n) {
				names[i] = n
				used[n] = true
				continue
			}
			rest, _ := strings.CutPrefix(w.Name, "model.")
			for _, a := range fam.WeightAliases {
				if _, ok := set.Info(a + rest); ok {
					names[i] = a + rest
					break
				}
			}
		}
		used[names[i]] = true
	}
	var carried []safetensors.Tensor
	for _, name := range set.Names() {
		if used[name] {
			continue
		}
		info, _ := set.Info(name)
		raw, err := set.Raw(name)
		if err != nil {
			return nil, nil, fmt.Errorf("export: %w", err)
		}
		carried = append(carried, safetensors.Tensor{Name: name, DType: info.DType, Shape: info.Shape, Data: append([]byte(nil), raw...)})
	}
	return names, carried, nil
}

// halfTensor rounds values to bf16 or f16 (nearest, ties to even).
func halfTensor(name string, shape []int, v []float32, dtype string) safetensors.Tensor {
	if dtype == "bf16" {
		return safetensors.BF16Tensor(name, shape, v)
	}
	data := make([]byte, 2*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint16(data[2*i:], gguf.Float32ToF16(x))
	}
	return safetensors.Tensor{Name: name, DType: "F16", Shape: append([]int(nil), shape...), Data: data}
}

// torchDTypes maps the export dtype to transformers' names.
var torchDTypes = map[string]string{"bf16": "bfloat16", "f16": "float16"}

// readJSONMap reads a JSON object keeping numbers as written.
func readJSONMap(path string) (map[string]any, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return decodeJSONMap(path, data)
}

// decodeJSONMap decodes data, the JSON object of the file at path, with
// its numbers as they were written (json.Number); errors name path.
func decodeJSONMap(path string, data []byte) (map[string]any, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if m == nil {
		return nil, fmt.Errorf("%s: not a JSON object", path)
	}
	return m, nil
}

func writeJSON(path string, v any) error {
	js, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Errorf("export: %s: %w", path, err)
	}
	return writeFile(path, append(js, '\n'))
}

// writeConfig copies config.json with the dtype field set to the stored
// precision (transformers 4 reads torch_dtype, 5 reads dtype: both are
// written when the source had either).
func writeConfig(srcDir, dir, dtype string) error {
	cfg, err := readJSONMap(filepath.Join(srcDir, "config.json"))
	if err != nil {
		return fmt.Errorf("export: %w", err)
	}
	name := torchDTypes[dtype]
	_, hasOld := cfg["torch_dtype"]
	_, hasNew := cfg["dtype"]
	if hasNew || !hasOld {
		cfg["dtype"] = name
	}
	if hasOld || !hasNew {
		cfg["torch_dtype"] = name
	}
	return writeJSON(filepath.Join(dir, configFile), cfg)
}

// writeGenerationConfig keeps the source's generation_config.json and sets
// eos_token_id to every id that ends a reply, so transformers' generate
// stops at the template's end-of-turn token as well as at EOS.
func writeGenerationConfig(src *Source, dir string) error {
	gen := map[string]any{}
	path := filepath.Join(src.ModelDir, "generation_config.json")
	if _, err := os.Stat(path); err == nil {
		if gen, err = readJSONMap(path); err != nil {
			return fmt.Errorf("export: %w", err)
		}
	}
	ids := src.StopIDs()
	switch len(ids) {
	case 0:
	case 1:
		gen["eos_token_id"] = ids[0]
	default:
		gen["eos_token_id"] = ids
	}
	if _, ok := gen["bos_token_id"]; !ok {
		if bos, ok := src.Tok.BOS(); ok {
			gen["bos_token_id"] = bos
		}
	}
	return writeJSON(filepath.Join(dir, generationFile), gen)
}

// writeFile writes through a temporary file renamed into place.
func writeFile(path string, data []byte) error {
	tmp, err := atomicfile.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp")
	if err != nil {
		return fmt.Errorf("export: %w", err)
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		os.Remove(tmp.Name())
		return fmt.Errorf("export: %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("export: %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("export: %w", err)
	}
	return nil
}
