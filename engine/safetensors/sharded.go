package safetensors

import (
	"encoding/json"
	"fmt"
	"io"
	"path/filepath"
	"sort"
)

// WriteSharded writes tensors into dir as baseName.safetensors when their
// data fits in maxShardBytes, else as baseName-0000N-of-0000M.safetensors
// shards plus baseName.safetensors.index.json, the layout transformers
// writes and OpenDir reads (with baseName "model"). Tensors are packed in
// name order; a tensor larger than the limit gets a shard of its own. Every
// file is written atomically and the index last, so a reader never sees an
// index that points at shards not yet written.
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
	if total <= maxShardBytes {
		return Write(filepath.Join(dir, baseName+".safetensors"), byName, metadata)
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
	for i, shard := range shards {
		name := fmt.Sprintf("%s-%05d-of-%05d.safetensors", baseName, i+1, len(shards))
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
	return writeAtomic(filepath.Join(dir, baseName+".safetensors.index.json"), func(w io.Writer) error {
		_, err := w.Write(doc)
		return err
	})
}

func sortByName(ts []Tensor) {
	sort.Slice(ts, func(i, j int) bool { return ts[i].Name < ts[j].Name })
}
