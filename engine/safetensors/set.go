package safetensors

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
)

// Names of a Hugging Face model folder's weight files.
const (
	SingleFileName = "model.safetensors"
	IndexFileName  = "model.safetensors.index.json"
)

// Set is the weights of a model folder: one file or several shards, seen as
// one collection of named tensors.
type Set struct {
	files  []*File
	owner  map[string]*File // tensor name -> the file that holds it
	names  []string
	source string // the file or index the set was opened from, for errors
}

// OpenDir opens the weights of a Hugging Face model folder: model.safetensors
// if present (as transformers prefers it), else the shards listed by
// model.safetensors.index.json.
func OpenDir(dir string) (*Set, error) {
	if st, err := os.Stat(dir); err != nil {
		return nil, fmt.Errorf("safetensors: model folder: %w", err)
	} else if !st.IsDir() {
		return nil, fmt.Errorf("safetensors: %s is not a folder (want a model folder holding %s)", dir, SingleFileName)
	}
	single := filepath.Join(dir, SingleFileName)
	if _, err := os.Stat(single); err == nil {
		f, err := Open(single)
		if err != nil {
			return nil, err
		}
		return newSet(single, []*File{f}, nil), nil
	}
	index := filepath.Join(dir, IndexFileName)
	if _, err := os.Stat(index); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("safetensors: %s: neither %s nor %s found", dir, SingleFileName, IndexFileName)
		}
		return nil, fmt.Errorf("safetensors: %w", err)
	}
	return OpenIndex(index)
}

// OpenIndex opens the shards listed by a sharded checkpoint's index file
// (a JSON object whose "weight_map" maps tensor names to shard file names in
// the index's folder). Every listed tensor must be in its shard.
func OpenIndex(index string) (*Set, error) {
	raw, err := os.ReadFile(index)
	if err != nil {
		return nil, fmt.Errorf("safetensors: %w", err)
	}
	var doc struct {
		WeightMap map[string]string `json:"weight_map"`
	}
	if err := json.Unmarshal(raw, &doc); err != nil {
		return nil, fmt.Errorf("safetensors: %s: not a valid index: %v", index, err)
	}
	if len(doc.WeightMap) == 0 {
		return nil, fmt.Errorf("safetensors: %s: weight_map is missing or empty", index)
	}
	dir := filepath.Dir(index)
	byShard := map[string][]string{}
	for name, shard := range doc.WeightMap {
		// Shards live beside the index; a path that climbs out of the
		// folder is a broken (or hostile) index, not a file to open.
		if shard == "" || !filepath.IsLocal(shard) {
			return nil, fmt.Errorf("safetensors: %s: tensor %q maps to shard %q, which is not a file in %s", index, name, shard, dir)
		}
		byShard[shard] = append(byShard[shard], name)
	}
	shards := make([]string, 0, len(byShard))
	for s := range byShard {
		shards = append(shards, s)
	}
	sort.Strings(shards)
	files := make([]*File, 0, len(shards))
	closeAll := func() {
		for _, f := range files {
			f.Close()
		}
	}
	owner := map[string]*File{}
	for _, shard := range shards {
		path := filepath.Join(dir, shard)
		f, err := Open(path)
		if err != nil {
			closeAll()
			if errors.Is(err, os.ErrNotExist) {
				return nil, fmt.Errorf("safetensors: %s: shard %s is missing (listed for tensor %q)", index, path, firstSorted(byShard[shard]))
			}
			return nil, fmt.Errorf("%w (shard listed in %s)", err, index)
		}
		files = append(files, f)
		names := byShard[shard]
		sort.Strings(names)
		for _, name := range names {
			if _, ok := f.tensors[name]; !ok {
				closeAll()
				return nil, fmt.Errorf("safetensors: %s: tensor %q is listed in shard %s but absent from it", index, name, path)
			}
			owner[name] = f
		}
	}
	return newSet(index, files, owner), nil
}

func firstSorted(names []string) string {
	sort.Strings(names)
	return names[0]
}

// newSet builds a set; a nil owner map means every tensor of every file.
func newSet(source string, files []*File, owner map[string]*File) *Set {
	if owner == nil {
		owner = map[string]*File{}
		for _, f := range files {
			for _, name := range f.names {
				owner[name] = f
			}
		}
	}
	names := make([]string, 0, len(owner))
	for name := range owner {
		names = append(names, name)
	}
	sort.Strings(names)
	return &Set{files: files, owner: owner, names: names, source: source}
}

// Source is the file the set was opened from: the single weights file or the
// index of a sharded checkpoint.
func (s *Set) Source() string { return s.source }

// Names lists every tensor of the set, sorted.
func (s *Set) Names() []string { return append([]string(nil), s.names...) }

// Info describes a tensor, including the shard that holds it.
func (s *Set) Info(name string) (TensorInfo, bool) {
	f, ok := s.owner[name]
	if !ok {
		return TensorInfo{}, false
	}
	return f.Info(name)
}

// Metadata merges the "__metadata__" maps of every file (shards normally
// carry the same one).
func (s *Set) Metadata() map[string]string {
	m := map[string]string{}
	for _, f := range s.files {
		for k, v := range f.metadata {
			m[k] = v
		}
	}
	return m
}

func (s *Set) file(name string) (*File, error) {
	f, ok := s.owner[name]
	if !ok {
		return nil, fmt.Errorf("safetensors: %s: no tensor %q", s.source, name)
	}
	return f, nil
}

// Raw returns a tensor's stored bytes; see File.Raw.
func (s *Set) Raw(name string) ([]byte, error) {
	f, err := s.file(name)
	if err != nil {
		return nil, err
	}
	return f.Raw(name)
}

// Float32 returns a tensor converted to float32; see File.Float32.
func (s *Set) Float32(name string) ([]float32, error) {
	f, err := s.file(name)
	if err != nil {
		return nil, err
	}
	return f.Float32(name)
}

// Int32 returns a tensor as int32; see File.Int32.
func (s *Set) Int32(name string) ([]int32, error) {
	f, err := s.file(name)
	if err != nil {
		return nil, err
	}
	return f.Int32(name)
}

// Close closes every file of the set, returning the first error.
func (s *Set) Close() error {
	var first error
	for _, f := range s.files {
		if err := f.Close(); err != nil && first == nil {
			first = err
		}
	}
	return first
}
