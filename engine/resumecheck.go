package engine

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"go.yaml.in/yaml/v3"

	"whet/engine/atomicfile"
)

// RunInputs is inputs.json: fingerprints of what a run trains on, taken
// when it starts, so that a resume can tell the data or the model changed
// even where their paths did not.
type RunInputs struct {
	// Model is the SHA-256 of the model folder's config.json and the names
	// and sizes of its weight files (reading every weight would take
	// minutes on a large model), or of the Hub id when it is not a folder.
	Model string `json:"model"`
	// Data and EvalData are the SHA-256 of the data files' bytes (of every
	// file, by name, for a folder).
	Data     string `json:"data"`
	EvalData string `json:"eval_data,omitempty"`
}

// fingerprintInputs reads cfg's data and the model folder (cfg.Model's
// files: the folder itself, or a Hub id's snapshot).
func fingerprintInputs(cfg RunConfig, modelDir string) (RunInputs, error) {
	var in RunInputs
	var err error
	if in.Model, err = fingerprintModel(modelDir); err != nil {
		return in, fmt.Errorf("model %s: %w", cfg.Model, err)
	}
	if in.Data, err = fingerprintData(cfg.Data.Path); err != nil {
		return in, fmt.Errorf("data.path %s: %w", cfg.Data.Path, err)
	}
	if cfg.Data.EvalPath != "" {
		if in.EvalData, err = fingerprintData(cfg.Data.EvalPath); err != nil {
			return in, fmt.Errorf("data.eval_path %s: %w", cfg.Data.EvalPath, err)
		}
	}
	return in, nil
}

func fingerprintModel(model string) (string, error) {
	h := sha256.New()
	st, err := os.Stat(model)
	if err != nil || !st.IsDir() {
		io.WriteString(h, "id:"+model) // a Hub id
		return hex.EncodeToString(h.Sum(nil)), nil
	}
	cfg, err := os.ReadFile(filepath.Join(model, "config.json"))
	if err != nil {
		return "", err
	}
	h.Write(cfg)
	entries, err := os.ReadDir(model)
	if err != nil {
		return "", err
	}
	for _, e := range entries { // ReadDir sorts by name
		if !strings.HasSuffix(e.Name(), ".safetensors") {
			continue
		}
		info, err := e.Info()
		if err != nil {
			return "", err
		}
		fmt.Fprintf(h, "\x00%s\x00%d", e.Name(), info.Size())
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

func fingerprintData(path string) (string, error) {
	h := sha256.New()
	st, err := os.Stat(path)
	if errors.Is(err, fs.ErrNotExist) {
		// A glob pattern (data.path may be one): every file it matches.
		matches, gerr := filepath.Glob(path)
		if gerr != nil || len(matches) == 0 {
			io.WriteString(h, "id:"+path) // not on disk here: a dataset id
			return hex.EncodeToString(h.Sum(nil)), nil
		}
		sort.Strings(matches)
		for _, m := range matches {
			if st, err := os.Stat(m); err != nil || !st.Mode().IsRegular() {
				continue
			}
			fmt.Fprintf(h, "\x00%s\x00", filepath.ToSlash(m))
			if err := hashFile(h, m); err != nil {
				return "", err
			}
		}
		return hex.EncodeToString(h.Sum(nil)), nil
	}
	if err != nil {
		return "", err
	}
	if !st.IsDir() {
		if err := hashFile(h, path); err != nil {
			return "", err
		}
		return hex.EncodeToString(h.Sum(nil)), nil
	}
	var files []string
	err = filepath.WalkDir(path, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type().IsRegular() {
			files = append(files, p)
		}
		return nil
	})
	if err != nil {
		return "", err
	}
	sort.Strings(files)
	for _, f := range files {
		rel, _ := filepath.Rel(path, f)
		fmt.Fprintf(h, "\x00%s\x00", filepath.ToSlash(rel))
		if err := hashFile(h, f); err != nil {
			return "", err
		}
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

func hashFile(h hash.Hash, path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	if _, err := io.Copy(h, f); err != nil {
		return fmt.Errorf("read %s: %w", path, err)
	}
	return nil
}

// ResumeChangedError refuses to resume a run whose checkpoints were made
// with other data, another model or other settings: the result would be
// neither run. RunConfig.ResumeAnyway (whet train --resume-anyway) goes
// on regardless.
type ResumeChangedError struct {
	Dir     string
	Changes []string // one line each: "train.lr: 0.0002 → 0.0001"
}

func (e *ResumeChangedError) Error() string {
	return fmt.Sprintf("run folder %s has checkpoints made with other inputs, so resuming would mix two runs:\n  %s\nput them back, give this run another name to start afresh, or resume anyway (whet train --resume-anyway)",
		e.Dir, strings.Join(e.Changes, "\n  "))
}

// resumeIgnored are the settings a resume may change freely: where the
// run lives, how often it reports, saves and samples, and how memory is
// spent. The rest changes what is trained.
func resumeIgnored(c *RunConfig) {
	c.Name, c.RunsDir, c.Backend = "", "", ""
	c.Model, c.Data.Path, c.Data.EvalPath = "", "", "" // compared by content, in RunInputs
	c.ResumeAnyway = false
	// The ranks share the same global batches whatever their number, so
	// a checkpoint resumes on any.
	c.Parallel = ParallelConfig{}
	t := &c.Train
	t.LogEvery, t.EvalEvery, t.SaveEvery, t.KeepCheckpoints = 0, 0, 0, 0
	t.SampleEvery, t.SamplePrompts, t.SampleTokens = 0, nil, 0
	t.Checkpointing, t.OffloadCheckpoints = false, "" // offloaded checkpoints are bit-equal to kept ones
	// Which kernels sum the same values, not what is trained.
	t.Deterministic = false
}

// checkResume compares a run folder that holds checkpoints with the run
// about to resume it: the saved run.yaml with cfg, inputs.json with now,
// the folder's copy of a data.template file with tpl (templateChange).
// A folder without checkpoints has nothing to mix and passes.
func checkResume(rd RunDir, cfg RunConfig, now RunInputs, tpl runTemplate) error {
	if cps, err := ListCheckpoints(rd.Checkpoints()); err != nil || len(cps) == 0 {
		return err
	}
	var changes []string
	var saved *RunConfig
	if raw, err := atomicfile.ReadFile(rd.Config()); err == nil {
		// Read as a run file is read (its method's defaults, then every
		// key it sets, zeros included): FillDefaults would turn the
		// epochs: 0 of a max_steps run into 1 and refuse every resume.
		was, err := DecodeRunConfig(raw)
		if err != nil {
			return fmt.Errorf("%s: %w", rd.Config(), err)
		}
		saved = &was
		before, after := was, cfg
		if before.Data.Template == RunTemplateFile {
			// The run trained with the folder's copy: compared by text,
			// so a template file moved elsewhere is no change. A folder
			// from before the copy names the file, compared by path below.
			if c := templateChange(rd, after.Data.Template, tpl); c != "" {
				changes = append(changes, c)
			}
			before.Data.Template, after.Data.Template = "", ""
		}
		changes = append(changes, configChanges(before, after)...)
	} else if !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	// The model and the data are compared by content, so a folder moved
	// elsewhere is no change; the paths are named when they differ.
	moved := func(field, before, now string) string {
		if saved == nil || before == now {
			return fmt.Sprintf("%s: the content of %s changed", field, now)
		}
		return fmt.Sprintf("%s: %s → %s, with other content", field, orNone(before), orNone(now))
	}
	raw, err := atomicfile.ReadFile(rd.Inputs())
	switch {
	case err == nil:
		var before RunInputs
		if err := json.Unmarshal(raw, &before); err != nil {
			return fmt.Errorf("%s: %w", rd.Inputs(), err)
		}
		var was RunConfig
		if saved != nil {
			was = *saved
		}
		if before.Model != now.Model {
			changes = append(changes, moved("model", was.Model, cfg.Model))
		}
		if before.Data != now.Data {
			changes = append(changes, moved("data.path", was.Data.Path, cfg.Data.Path))
		}
		if before.EvalData != now.EvalData {
			changes = append(changes, moved("data.eval_path", was.Data.EvalPath, cfg.Data.EvalPath))
		}
	case errors.Is(err, fs.ErrNotExist):
		// A run from before inputs.json: the paths are all there is.
		if saved != nil {
			for _, f := range [][3]string{{"model", saved.Model, cfg.Model}, {"data.path", saved.Data.Path, cfg.Data.Path},
				{"data.eval_path", saved.Data.EvalPath, cfg.Data.EvalPath}} {
				if f[1] != f[2] {
					changes = append(changes, fmt.Sprintf("%s: %s → %s", f[0], orNone(f[1]), orNone(f[2])))
				}
			}
		}
	default:
		return err
	}
	if len(changes) == 0 {
		return nil
	}
	return &ResumeChangedError{Dir: rd.Path(), Changes: changes}
}

// configChanges lists, by YAML field path, the settings that differ
// between two run configs, leaving out those resumeIgnored clears.
func configChanges(before, after RunConfig) []string {
	resumeIgnored(&before)
	resumeIgnored(&after)
	a, b := flatConfig(before), flatConfig(after)
	keys := map[string]bool{}
	for k := range a {
		keys[k] = true
	}
	for k := range b {
		keys[k] = true
	}
	var names []string
	for k := range keys {
		if a[k] != b[k] {
			names = append(names, k)
		}
	}
	sort.Strings(names)
	var out []string
	for _, k := range names {
		out = append(out, fmt.Sprintf("%s: %s → %s", k, orNone(a[k]), orNone(b[k])))
	}
	return out
}

func orNone(v string) string {
	if v == "" {
		return "(unset)"
	}
	return v
}

// flatConfig is c as YAML field paths and values ("train.lr" → "0.0002").
func flatConfig(c RunConfig) map[string]string {
	out := map[string]string{}
	js, err := yaml.Marshal(c)
	if err != nil {
		return out
	}
	var tree map[string]any
	if yaml.Unmarshal(js, &tree) != nil {
		return out
	}
	var walk func(prefix string, v any)
	walk = func(prefix string, v any) {
		switch x := v.(type) {
		case map[string]any:
			for k, e := range x {
				walk(prefix+k+".", e)
			}
		default:
			out[strings.TrimSuffix(prefix, ".")] = fmt.Sprint(x)
		}
	}
	walk("", tree)
	return out
}
