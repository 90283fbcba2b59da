package tui

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
)

// hfConfig is the part of a Hugging Face config.json the studio reads to
// describe a local model.
type hfConfig struct {
	ModelType         string `json:"model_type"`
	HiddenSize        int64  `json:"hidden_size"`
	Layers            int64  `json:"num_hidden_layers"`
	Intermediate      int64  `json:"intermediate_size"`
	Vocab             int64  `json:"vocab_size"`
	Heads             int64  `json:"num_attention_heads"`
	KVHeads           int64  `json:"num_key_value_heads"`
	TieWordEmbeddings bool   `json:"tie_word_embeddings"`
	// A vision model (Gemma 3, Llama 3.2 Vision) keeps its language model's
	// sizes in text_config and its tower's in vision_config.
	TextConfig   *hfConfig `json:"text_config"`
	VisionConfig *hfConfig `json:"vision_config"`
}

// estimateParams counts a Llama-family decoder's parameters from its
// config: attention (q and o full width, k and v at the KV width), the
// SwiGLU MLP's three matrices, norms, and embeddings (twice if untied).
func (c hfConfig) estimateParams() int64 {
	if c.HiddenSize == 0 && c.TextConfig != nil {
		// A vision model: its language model, plus the tower's layers
		// (attention and a two-matrix MLP each) and the projector.
		n := c.TextConfig.estimateParams()
		if v := c.VisionConfig; n > 0 && v != nil && v.HiddenSize > 0 {
			n += v.Layers*(4*v.HiddenSize*v.HiddenSize+2*v.HiddenSize*v.Intermediate) + v.HiddenSize*c.TextConfig.HiddenSize
		}
		return n
	}
	if c.HiddenSize == 0 || c.Layers == 0 {
		return 0
	}
	kv := c.HiddenSize
	if c.Heads > 0 && c.KVHeads > 0 {
		kv = c.HiddenSize / c.Heads * c.KVHeads
	}
	perLayer := 2*c.HiddenSize*c.HiddenSize + 2*c.HiddenSize*kv + 3*c.HiddenSize*c.Intermediate + 2*c.HiddenSize
	emb := c.Vocab * c.HiddenSize
	if !c.TieWordEmbeddings {
		emb *= 2
	}
	return c.Layers*perLayer + emb + c.HiddenSize
}

// folderParams estimates the parameter count of a model folder from its
// config.json (0 if it cannot be read).
func folderParams(dir string) int64 {
	raw, err := os.ReadFile(filepath.Join(dir, "config.json"))
	if err != nil {
		return 0
	}
	var cfg hfConfig
	if json.Unmarshal(raw, &cfg) != nil {
		return 0
	}
	return cfg.estimateParams()
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
				info.Params = cfg.estimateParams()
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
