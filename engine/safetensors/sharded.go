package safetensors

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// WriteSharded writes tensors into dir as baseName.safetensors when their
// data fits in maxShardBytes, else as baseName-0000N-of-0000M.safetensors
// shards plus baseName.safetensors.index.json, the layout transformers
// writes and OpenDir reads (with baseName "model"). Tensors are packed in
// name order; a tensor larger than the limit gets a shard of its own. Every
// file is written atomically and the index last, so a reader never sees an
// index that points at shards not yet written. Files of an earlier save under
// the same base name that the new one does not use (a single file, an index,
// shards of another count) are removed afterwards, as transformers'
// save_pretrained does, so that OpenDir cannot pick up stale weights.
func WriteSharded(dir, baseName string, tensors []Tensor, maxShardBytes int64, metadata map[string]string) error {
	if maxShardBytes <= 0 {
		return fmt.Errorf("safetensors: %s: shard size limit must be positive, got %d", dir, maxShardBytes)
	}
	ordered, err := layout(tensors) // validates every tensor up front
	if err != nil {
		return fmt.Errorf("safetensors: %s: %w", dir, err)
	}
	byName := append([]Tensor(nil), ordered...)
	sortByName(byName)

	var total int64
	for _, t := range byName {
		total += int64(len(t.Data))
	}
	single := baseName + ".safetensors"
	indexName := baseName + ".safetensors.index.json"
	if total <= maxShardBytes {
		if err := Write(filepath.Join(dir, single), byName, metadata); err != nil {
			return err
		}
		return removeStale(dir, baseName, map[string]bool{single: true})
	}

	var shards [][]Tensor
	var current []Tensor
	var size int64
	for _, t := range byName {
		n := int64(len(t.Data))
		if len(current) > 0 && size+n > maxShardBytes {
			shards = append(shards, current)
			current, size = nil, 0
		}
		current = append(current, t)
		size += n
	}
	shards = append(shards, current)

	weightMap := map[string]string{}
	keep := map[string]bool{indexName: true}
	for i, shard := range shards {
		name := fmt.Sprintf("%s-%05d-of-%05d.safetensors", baseName, i+1, len(shards))
		keep[name] = true
		if err := Write(filepath.Join(dir, name), shard, metadata); err != nil {
			return err
		}
		for _, t := range shard {
			weightMap[t.Name] = name
		}
	}
	index := struct {
		Metadata  map[string]int64  `json:"metadata"`
		WeightMap map[string]string `json:"weight_map"`
	}{map[string]int64{"total_size": total}, weightMap}
	doc, err := json.MarshalIndent(index, "", "  ")
	if err != nil {
		return fmt.Errorf("safetensors: %s: index: %w", dir, err)
	}
	doc = append(doc, '\n')
	err = writeAtomic(filepath.Join(dir, indexName), func(w io.Writer) error {
		_, err := w.Write(doc)
		return err
	})
	if err != nil {
		return err
	}
	return removeStale(dir, baseName, keep)
}

// removeStale deletes the weight files of an earlier save under baseName
// that are not in keep: the single file, the index, and shards named
// baseName-NNNNN-of-NNNNN.safetensors. Nothing else in dir is touched.
func removeStale(dir, baseName string, keep map[string]bool) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("safetensors: %s: %w", dir, err)
	}
	for _, e := range entries {
		name := e.Name()
		if keep[name] || e.IsDir() {
			continue
		}
		ours := name == baseName+".safetensors" || name == baseName+".safetensors.index.json" || IsShardName(name, baseName)
		if !ours {
			continue
		}
		if err := os.Remove(filepath.Join(dir, name)); err != nil {
			return fmt.Errorf("safetensors: removing stale %s: %w", filepath.Join(dir, name), err)
		}
	}
	return nil
}

// IsShardName matches baseName-NNNNN-of-NNNNN.safetensors, transformers'
// (and WriteSharded's) shard names.
func IsShardName(name, baseName string) bool {
	rest, ok := strings.CutPrefix(name, baseName+"-")
	if !ok {
		return false
	}
	rest, ok = strings.CutSuffix(rest, ".safetensors")
	if !ok {
		return false
	}
	i, n, ok := strings.Cut(rest, "-of-")
	return ok && len(i) == 5 && len(n) == 5 && allDigits(i) && allDigits(n)
}

func allDigits(s string) bool {
	for _, r := range s {
		if r < '0' || r > '9' {
			return false
		}
	}
	return true
}

func sortByName(ts []Tensor) {
	sort.Slice(ts, func(i, j int) bool { return ts[i].Name < ts[j].Name })
}
