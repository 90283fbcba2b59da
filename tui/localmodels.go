package tui

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"

	"whet/engine/memplan"
)

// hfConfig is the part of a Hugging Face config.json the studio reads to
// describe a local model.
type hfConfig struct {
	ModelType string `json:"model_type"`
}

// folderParams is the parameter count of a model folder, the one whet fit
// plans with (memplan.FolderParams); 0 if the folder's config cannot be
// read or describes no model whet knows.
func folderParams(dir string) int64 {
	n, err := memplan.FolderParams(dir)
	if err != nil {
		return 0
	}
	return n
}

// folderModelType is the model_type of a model folder's config.json (""
// if it cannot be read).
func folderModelType(dir string) string {
	raw, err := os.ReadFile(filepath.Join(dir, "config.json"))
	if err != nil {
		return ""
	}
	var cfg hfConfig
	if json.Unmarshal(raw, &cfg) != nil {
		return ""
	}
	return cfg.ModelType
}

// FindLocalModels lists Hugging Face model folders (holding config.json)
// directly under dir or one level deeper (the "org/name" layout). A
// missing dir is not an error: it simply has no models.
func FindLocalModels(dir string) ([]ModelInfo, error) {
	if dir == "" {
		return nil, nil
	}
	var out []ModelInfo
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			if path == dir && errors.Is(err, fs.ErrNotExist) {
				return fs.SkipAll
			}
			if path != dir {
				return nil // an unreadable subfolder does not hide the rest
			}
			return err
		}
		if !d.IsDir() {
			return nil
		}
		rel, _ := filepath.Rel(dir, path)
		depth := 0
		if rel != "." {
			depth = countSep(rel) + 1
		}
		raw, rerr := os.ReadFile(filepath.Join(path, "config.json"))
		if rerr == nil && path != dir {
			info := ModelInfo{Name: filepath.ToSlash(rel), Path: path}
			var cfg hfConfig
			if jerr := json.Unmarshal(raw, &cfg); jerr != nil {
				info.Note = fmt.Sprintf("config.json unreadable: %v", jerr)
			} else {
				info.Params = folderParams(path)
				info.Note = cfg.ModelType + " · local folder"
			}
			out = append(out, info)
			return fs.SkipDir
		}
		if depth >= 2 {
			return fs.SkipDir
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("scanning models directory %s: %w", dir, err)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

func countSep(rel string) int {
	n := 0
	for _, r := range filepath.ToSlash(rel) {
		if r == '/' {
			n++
		}
	}
	return n
}
