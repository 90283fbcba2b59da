package engine

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"slices"
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
// the old set plus the new one; a stale .tmp folder (of any step) is
// ignored and removed by the next checkpoint written. A checkpoint of a step that already has one replaces
// it by renames only: the old folder moves to step-NNNNNNNN.old, the new
// one into place, and only then is the old one deleted; a crash between
// the renames leaves the .old folder, which counts as that step's
// checkpoint.
//
// trainer_state.json holds the SHA-256 of trainable.safetensors, checked
// before anything is loaded: a damaged newest checkpoint is reported and
// the resume falls back to the one before it.

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
	// TensorsSHA256 is the hex SHA-256 of trainable.safetensors as written
	// ("" in checkpoints made before it existed: not checked).
	TensorsSHA256 string `json:"tensors_sha256,omitempty"`
	// Unwritten holds lines of metrics.jsonl and samples.jsonl (by file
	// name) that a failed write could not store before this checkpoint;
	// a resume writes them.
	Unwritten map[string][]string `json:"unwritten,omitempty"`
}

// MarshalJSON writes a NaN or infinite epoch or last loss as null (as
// status.json and metrics.jsonl do): encoding/json refuses them, which
// would fail the checkpoint of a run whose last loss was not finite.
func (s TrainerState) MarshalJSON() ([]byte, error) {
	type plain TrainerState // without these methods
	return json.Marshal(struct {
		plain
		Epoch    json.RawMessage `json:"epoch"`
		LastLoss json.RawMessage `json:"last_loss"`
	}{plain(s), jsonNumber(s.Epoch), jsonNumber(s.LastLoss)})
}

// UnmarshalJSON reads a null epoch or last loss as NaN.
func (s *TrainerState) UnmarshalJSON(b []byte) error {
	type plain TrainerState
	var raw struct {
		*plain
		Epoch    json.RawMessage `json:"epoch"`
		LastLoss json.RawMessage `json:"last_loss"`
	}
	raw.plain = (*plain)(s)
	if err := json.Unmarshal(b, &raw); err != nil {
		return err
	}
	for _, f := range []struct {
		name string
		raw  json.RawMessage
		dst  *float64
	}{{"epoch", raw.Epoch, &s.Epoch}, {"last_loss", raw.LastLoss, &s.LastLoss}} {
		switch {
		case len(f.raw) == 0:
		case string(f.raw) == "null":
			*f.dst = math.NaN()
		default:
			if err := json.Unmarshal(f.raw, f.dst); err != nil {
				return fmt.Errorf("%s: %w", f.name, err)
			}
		}
	}
	return nil
}

// readTrainerState reads a checkpoint's trainer_state.json
// (parseTrainerState).
func readTrainerState(path string) (TrainerState, error) {
	js, err := atomicfile.ReadFile(path)
	if err != nil {
		return TrainerState{}, err // it names the file
	}
	return parseTrainerState(path, js)
}

// ReadCheckpointState reads the trainer state of the checkpoint folder
// path without its tensors: whether a resume could start from it, as far
// as a listing can tell cheaply (Resume also checks the tensors' SHA-256).
// Errors name the file.
func ReadCheckpointState(path string) (TrainerState, error) {
	return readTrainerState(filepath.Join(path, stateFile))
}

// parseTrainerState reads the bytes of trainer_state.json, at path.
// Errors name the file; counts below zero (a resume would index its data
// order with them) and unwritten lines that are not one line each (a
// resume appends them to the run's JSON-lines files) are refused.
func parseTrainerState(path string, js []byte) (TrainerState, error) {
	var st TrainerState
	if len(strings.TrimSpace(string(js))) == 0 {
		return st, fmt.Errorf("%s is empty", path)
	}
	if err := json.Unmarshal(js, &st); err != nil {
		return st, fmt.Errorf("%s: %w", path, err)
	}
	for _, f := range []struct {
		name string
		v    int
	}{{"step", st.Step}, {"cursor", st.Cursor}, {"opt_step", st.OptStep}, {"params", st.Params}} {
		if f.v < 0 {
			return st, fmt.Errorf("%s: %s is %d, below 0", path, f.name, f.v)
		}
	}
	for file, lines := range st.Unwritten {
		for i, l := range lines {
			if strings.ContainsAny(l, "\r\n") {
				return st, fmt.Errorf("%s: unwritten[%q][%d] holds a line break", path, file, i)
			}
		}
	}
	return st, nil
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

// stateFile is the checkpoint's trainer state; oldSuffix marks a
// checkpoint moved aside while a new one of its step takes its place.
const (
	stateFile = "trainer_state.json"
	oldSuffix = ".old"
)

// fileSHA256 is the hex SHA-256 of a file's bytes.
func fileSHA256(path string) (string, error) {
	f, err := atomicfile.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("read %s: %w", path, err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// SaveCheckpoint writes a checkpoint of m's trainable state into dir
// (the run's checkpoints folder) and keeps only the newest keep (0 = all).
func SaveCheckpoint(dir string, m *Model, st TrainerState, keep int) (string, error) {
	parts := func(p *Param) [3]Tensor { return [3]Tensor{p.Master, p.M, p.V} }
	return saveCheckpoint(dir, m, st, keep, func(p *Param, part int) ([]float32, error) {
		v := make([]float32, numel(p.Shape))
		return v, m.B.Download(parts(p)[part], v)
	})
}

// checkpointSuffixes name a trainable parameter's three tensors in a
// checkpoint (part 0, 1, 2): the master, then AdamW's moments.
var checkpointSuffixes = [3]string{"", ".exp_avg", ".exp_avg_sq"}

// saveCheckpoint is SaveCheckpoint with the values of each parameter's
// parts read by values (from the device, or gathered from the ranks of a
// data-parallel run).
func saveCheckpoint(dir string, m *Model, st TrainerState, keep int, values func(p *Param, part int) ([]float32, error)) (string, error) {
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
		for part, suffix := range checkpointSuffixes {
			v, err := values(p, part)
			if err != nil {
				return "", fmt.Errorf("checkpoint: download %s%s: %w", p.Name, suffix, err)
			}
			tensors = append(tensors, safetensors.F32Tensor(p.Name+suffix, p.Shape, v))
		}
	}
	st.ModelType = m.Cfg.ModelType
	st.Params = len(params)
	tensorsFile := filepath.Join(tmp, "trainable.safetensors")
	if err := safetensors.Write(tensorsFile, tensors, map[string]string{"format": "whet-checkpoint"}); err != nil {
		return "", fmt.Errorf("checkpoint: %w", err)
	}
	if err := hook("tensors-written"); err != nil {
		return "", err
	}
	// The sum of what is on disk, read back, not of what was meant to be.
	sum, err := fileSHA256(tensorsFile)
	if err != nil {
		return "", fmt.Errorf("checkpoint: %w", err)
	}
	st.TensorsSHA256 = sum
	js, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return "", err
	}
	if err := writeFileAtomic(filepath.Join(tmp, stateFile), js); err != nil {
		return "", fmt.Errorf("checkpoint: %w", err)
	}
	if err := hook("state-written"); err != nil {
		return "", err
	}
	old := final + oldSuffix
	if _, err := os.Lstat(final); err == nil {
		// Replacing this step's checkpoint: move it aside, never delete it
		// before the new one is in place.
		if err := os.RemoveAll(old); err != nil {
			return "", fmt.Errorf("checkpoint: remove stale %s: %w", old, err)
		}
		if err := os.Rename(final, old); err != nil {
			return "", fmt.Errorf("checkpoint: move %s aside: %w", final, err)
		}
		syncDir(dir)
		if err := hook("old-moved-aside"); err != nil {
			return "", err
		}
	}
	if err := os.Rename(tmp, final); err != nil {
		return "", fmt.Errorf("checkpoint: %w", err)
	}
	syncDir(dir)
	if err := os.RemoveAll(old); err != nil {
		return "", fmt.Errorf("checkpoint: remove the replaced %s: %w", old, err)
	}
	// The .tmp folders of other steps are stale too (a write cut short,
	// then a resume from an older checkpoint that never reaches that step
	// again): only the process holding the run's lock writes here.
	stale, err := filepath.Glob(filepath.Join(dir, "step-*.tmp"))
	if err != nil {
		return "", fmt.Errorf("checkpoint: %w", err)
	}
	for _, s := range stale {
		if err := os.RemoveAll(s); err != nil {
			return "", fmt.Errorf("checkpoint: remove stale %s: %w", s, err)
		}
	}
	if keep > 0 {
		all, err := ListCheckpoints(dir)
		if err != nil {
			return "", fmt.Errorf("checkpoint: %w", err)
		}
		for i := 0; i+keep < len(all); i++ {
			if err := os.RemoveAll(all[i].Path); err != nil {
				return "", fmt.Errorf("checkpoint: remove old %s: %w", all[i].Path, err)
			}
		}
	}
	return final, nil
}

// CheckpointInfo names one complete checkpoint.
type CheckpointInfo struct {
	Step int
	Path string
}

// HasCheckpoint reports whether the run folder holds a complete
// checkpoint: whet train -c resumes such a run, and starts one without
// over from step 0. A folder that cannot be listed reads as having none.
func (d RunDir) HasCheckpoint() bool {
	cps, err := ListCheckpoints(d.Checkpoints())
	return err == nil && len(cps) > 0
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
	byStep := map[int]CheckpointInfo{}
	for _, e := range entries {
		name := e.Name()
		base, moved := strings.CutSuffix(name, oldSuffix)
		if !e.IsDir() || !strings.HasPrefix(base, "step-") {
			continue
		}
		n, err := strconv.Atoi(strings.TrimPrefix(base, "step-"))
		if err != nil {
			continue // a .tmp folder, or not ours
		}
		p := filepath.Join(dir, name)
		if _, err := os.Stat(filepath.Join(p, stateFile)); err != nil {
			continue
		}
		// A folder moved aside counts only while its replacement is not
		// in place (a crash between the two renames).
		if _, seen := byStep[n]; seen && moved {
			continue
		}
		byStep[n] = CheckpointInfo{Step: n, Path: p}
	}
	out := make([]CheckpointInfo, 0, len(byStep))
	for _, c := range byStep {
		out = append(out, c)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Step < out[j].Step })
	return out, nil
}

// DamagedCheckpointError says a checkpoint's files are unreadable or not
// what was written (a checksum that does not match): an older checkpoint
// may still be good, unlike when the checkpoint is of another model.
type DamagedCheckpointError struct {
	Path string
	Err  error
}

func (e *DamagedCheckpointError) Error() string {
	return fmt.Sprintf("checkpoint %s is damaged: %v", e.Path, e.Err)
}

func (e *DamagedCheckpointError) Unwrap() error { return e.Err }

// LoadCheckpoint restores m's trainable parameters and moments from the
// checkpoint folder path and returns its trainer state. The tensors'
// checksum is verified before anything is loaded.
func LoadCheckpoint(path string, m *Model) (TrainerState, error) {
	return loadCheckpoint(path, m, func(p *Param, part int, v []float32) error {
		return m.B.Upload([3]Tensor{p.Master, p.M, p.V}[part], v)
	})
}

// loadCheckpoint is LoadCheckpoint with each parameter's part handed to
// set (the parameter's tensors, or a data-parallel rank's shards).
func loadCheckpoint(path string, m *Model, set func(p *Param, part int, v []float32) error) (TrainerState, error) {
	var st TrainerState
	damaged := func(err error) (TrainerState, error) { return st, &DamagedCheckpointError{Path: path, Err: err} }
	st, err := readTrainerState(filepath.Join(path, stateFile))
	if err != nil {
		return damaged(err)
	}
	if st.ModelType != "" && st.ModelType != m.Cfg.ModelType {
		return st, fmt.Errorf("checkpoint %s is for a %s model, not %s", path, st.ModelType, m.Cfg.ModelType)
	}
	file := filepath.Join(path, "trainable.safetensors")
	if st.TensorsSHA256 != "" {
		sum, err := fileSHA256(file)
		if err != nil {
			return damaged(err)
		}
		if sum != st.TensorsSHA256 {
			return damaged(fmt.Errorf("trainable.safetensors has SHA-256 %s, %s says %s", sum[:12], stateFile, st.TensorsSHA256[:min(12, len(st.TensorsSHA256))]))
		}
	}
	f, err := safetensors.Open(file)
	if err != nil {
		return damaged(err)
	}
	defer f.Close()
	params := m.TrainableParams()
	if st.Params != 0 && st.Params != len(params) {
		return st, fmt.Errorf("checkpoint %s holds %d trainable tensors, this run has %d (different method or LoRA targets?)", path, st.Params, len(params))
	}
	for _, p := range params {
		for part, suffix := range checkpointSuffixes {
			name := p.Name + suffix
			info, ok := f.Info(name)
			if !ok {
				return st, fmt.Errorf("%s: missing tensor %s", file, name)
			}
			if !slices.Equal(info.Shape, p.Shape) {
				return st, fmt.Errorf("%s: tensor %s has shape %v, the model needs %v", file, name, info.Shape, p.Shape)
			}
			v, err := f.Float32(name)
			if err != nil {
				return damaged(err)
			}
			if err := set(p, part, v); err != nil {
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
		return fileErr("write", path, err)
	}
	tmp := f.Name()
	write := atomicWrite
	if write == nil {
		write = func(_ string, f *os.File, b []byte) (int, error) { return f.Write(b) }
	}
	if _, err := write(path, f, data); err != nil {
		f.Close()
		os.Remove(tmp)
		return fileErr("write", path, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		os.Remove(tmp)
		return fileErr("sync", path, err)
	}
	if err := f.Close(); err != nil {
		os.Remove(tmp)
		return fileErr("write", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return fileErr("write", path, err)
	}
	syncDir(filepath.Dir(path))
	return nil
}

// atomicWrite, when set (tests), stands in for writeFileAtomic's Write
// of the temporary file, so a test can fail it the way a full disk does.
var atomicWrite func(path string, f *os.File, b []byte) (int, error)

// fileErr names path once: the temporary file's own *PathError (or the
// rename's *LinkError) would name it again, or the temporary name
// ("write X: write X.tmp: no space left on device"). The cause stays
// wrapped (errors.Is(err, syscall.ENOSPC) holds).
func fileErr(op, path string, err error) error {
	var pe *fs.PathError
	var le *os.LinkError
	switch {
	case errors.As(err, &pe):
		err = pe.Err
	case errors.As(err, &le):
		err = le.Err
	}
	return fmt.Errorf("%s %s: %w", op, path, err)
}

func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
}
