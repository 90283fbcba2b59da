package engine

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"whet/engine/atomicfile"
	"whet/engine/safetensors"
)

// A checkpoint is a folder checkpoints/step-NNNNNNNN holding
//
//	trainable.safetensors  every trainable parameter's F32 master, with
//	                       NAME.exp_avg and NAME.exp_avg_sq (AdamW moments)
//	trainer_state.json     step, data cursor, seeds, optimizer step
//
// It is written into step-NNNNNNNN.tmp, each file atomically (temp file,
// fsync, rename), then the folder is renamed into place and its parent
// fsynced. A crash at any point leaves either the old set of checkpoints or
// the old set plus the new one; a stale .tmp folder is ignored and removed
// by the next write.

// TrainerState is the part of a checkpoint that is not tensors.
type TrainerState struct {
	Step      int     `json:"step"`       // optimizer steps done
	Cursor    int     `json:"cursor"`     // micro-batches consumed
	Seed      int64   `json:"seed"`       // run seed (data order, dropout)
	OptStep   int     `json:"opt_step"`   // AdamW step counter
	Epoch     float64 `json:"epoch"`      // for display
	LastLoss  float64 `json:"last_loss"`  // for display
	ModelType string  `json:"model_type"` // to refuse a checkpoint of another model
	Params    int     `json:"params"`     // number of trainable tensors
	// Unwritten holds lines of metrics.jsonl and samples.jsonl (by file
	// name) that a failed write could not store before this checkpoint;
	// a resume writes them.
	Unwritten map[string][]string `json:"unwritten,omitempty"`
}

// checkpointHook, when set (tests), is called between the stages of a
// checkpoint write; an error aborts the write there.
var checkpointHook func(stage string) error

func hook(stage string) error {
	if checkpointHook != nil {
		return checkpointHook(stage)
	}
	return nil
}

func checkpointName(step int) string { return fmt.Sprintf("step-%08d", step) }

// SaveCheckpoint writes a checkpoint of m's trainable state into dir
// (the run's checkpoints folder) and keeps only the newest keep (0 = all).
func SaveCheckpoint(dir string, m *Model, st TrainerState, keep int) (string, error) {
	if err := atomicfile.RealDir(dir); err != nil {
		return "", fmt.Errorf("checkpoint: %w", err)
	}
	final := filepath.Join(dir, checkpointName(st.Step))
	tmp := final + ".tmp"
	if err := os.RemoveAll(tmp); err != nil {
		return "", fmt.Errorf("checkpoint: remove stale %s: %w", tmp, err)
	}
	if err := os.Mkdir(tmp, atomicfile.DirPerm); err != nil {
		return "", fmt.Errorf("checkpoint: %w", err)
	}
	var tensors []safetensors.Tensor
	params := m.TrainableParams()
	for _, p := range params {
		for _, part := range []struct {
			suffix string
			t      Tensor
		}{{"", p.Master}, {".exp_avg", p.M}, {".exp_avg_sq", p.V}} {
			v := make([]float32, numel(p.Shape))
			if err := m.B.Download(part.t, v); err != nil {
				return "", fmt.Errorf("checkpoint: download %s%s: %w", p.Name, part.suffix, err)
			}
			tensors = append(tensors, safetensors.F32Tensor(p.Name+part.suffix, p.Shape, v))
		}
	}
	st.ModelType = m.Cfg.ModelType
	st.Params = len(params)
	if err := safetensors.Write(filepath.Join(tmp, "trainable.safetensors"), tensors, map[string]string{"format": "whet-checkpoint"}); err != nil {
		return "", fmt.Errorf("checkpoint: %w", err)
	}
	if err := hook("tensors-written"); err != nil {
		return "", err
	}
	js, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return "", err
	}
	if err := writeFileAtomic(filepath.Join(tmp, "trainer_state.json"), js); err != nil {
		return "", fmt.Errorf("checkpoint: %w", err)
	}
	if err := hook("state-written"); err != nil {
		return "", err
	}
	if err := os.RemoveAll(final); err != nil {
		return "", fmt.Errorf("checkpoint: replace %s: %w", final, err)
	}
	if err := os.Rename(tmp, final); err != nil {
		return "", fmt.Errorf("checkpoint: %w", err)
	}
	syncDir(dir)
	if keep > 0 {
		all, _ := ListCheckpoints(dir)
		for i := 0; i+keep < len(all); i++ {
			os.RemoveAll(all[i].Path)
		}
	}
	return final, nil
}

// CheckpointInfo names one complete checkpoint.
type CheckpointInfo struct {
	Step int
	Path string
}

// ListCheckpoints returns the complete checkpoints in dir, oldest first.
func ListCheckpoints(dir string) ([]CheckpointInfo, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		if os.IsNotExist(err) {
			return nil, nil
		}
		return nil, err
	}
	var out []CheckpointInfo
	for _, e := range entries {
		name := e.Name()
		if !e.IsDir() || !strings.HasPrefix(name, "step-") || strings.HasSuffix(name, ".tmp") {
			continue
		}
		n, err := strconv.Atoi(strings.TrimPrefix(name, "step-"))
		if err != nil {
			continue
		}
		p := filepath.Join(dir, name)
		if _, err := os.Stat(filepath.Join(p, "trainer_state.json")); err != nil {
			continue
		}
		out = append(out, CheckpointInfo{Step: n, Path: p})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Step < out[j].Step })
	return out, nil
}

// LoadCheckpoint restores m's trainable parameters and moments from the
// checkpoint folder path and returns its trainer state.
func LoadCheckpoint(path string, m *Model) (TrainerState, error) {
	var st TrainerState
	js, err := os.ReadFile(filepath.Join(path, "trainer_state.json"))
	if err != nil {
		return st, fmt.Errorf("checkpoint: %w", err)
	}
	if err := json.Unmarshal(js, &st); err != nil {
		return st, fmt.Errorf("checkpoint %s: trainer_state.json: %w", path, err)
	}
	if st.ModelType != "" && st.ModelType != m.Cfg.ModelType {
		return st, fmt.Errorf("checkpoint %s is for a %s model, not %s", path, st.ModelType, m.Cfg.ModelType)
	}
	file := filepath.Join(path, "trainable.safetensors")
	f, err := safetensors.Open(file)
	if err != nil {
		return st, fmt.Errorf("checkpoint: %w", err)
	}
	defer f.Close()
	params := m.TrainableParams()
	if st.Params != 0 && st.Params != len(params) {
		return st, fmt.Errorf("checkpoint %s holds %d trainable tensors, this run has %d (different method or LoRA targets?)", path, st.Params, len(params))
	}
	for _, p := range params {
		for _, part := range []struct {
			suffix string
			t      Tensor
		}{{"", p.Master}, {".exp_avg", p.M}, {".exp_avg_sq", p.V}} {
			name := p.Name + part.suffix
			info, ok := f.Info(name)
			if !ok {
				return st, fmt.Errorf("%s: missing tensor %s", file, name)
			}
			if !sameShape(info.Shape, p.Shape) {
				return st, fmt.Errorf("%s: tensor %s has shape %v, the model needs %v", file, name, info.Shape, p.Shape)
			}
			v, err := f.Float32(name)
			if err != nil {
				return st, err
			}
			if err := m.B.Upload(part.t, v); err != nil {
				return st, fmt.Errorf("checkpoint: upload %s: %w", name, err)
			}
		}
	}
	return st, m.SyncFromMasters()
}

// writeFileAtomic writes data to path through a synced temp file and rename.
func writeFileAtomic(path string, data []byte) error {
	f, err := atomicfile.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".")
	if err != nil {
		return err
	}
	tmp := f.Name()
	if _, err := f.Write(data); err != nil {
		f.Close()
		os.Remove(tmp)
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		os.Remove(tmp)
		return fmt.Errorf("sync %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		os.Remove(tmp)
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return err
	}
	syncDir(filepath.Dir(path))
	return nil
}

func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
}
