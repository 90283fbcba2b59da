package export

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"whet/engine"
	"whet/engine/atomicfile"
	"whet/engine/safetensors"
)

// The files an export writes, by format. ownFile recognises them (and the
// writers' temporary files beside them), so that a forced export into a
// used folder removes an earlier export's files and nothing else.
const (
	ggufFile          = "model.gguf"
	modelfileFile     = "Modelfile"
	configFile        = "config.json"
	generationFile    = "generation_config.json"
	mergedBaseName    = "model" // model.safetensors or model-NNNNN-of-NNNNN.safetensors + index
	adapterWeights    = "adapter_model.safetensors"
	adapterConfigFile = "adapter_config.json"
)

// ownFile reports whether name is a file some export writes: a GGUF and its
// Modelfile, merged weights (one file, shards, the index), config.json,
// generation_config.json, an adapter, the tokenizer files, or the hidden
// temporary file (".NAME.tmp…") a writer leaves if it is killed.
func ownFile(name string) bool {
	if rest, ok := strings.CutPrefix(name, "."); ok {
		if i := strings.Index(rest, ".tmp"); i > 0 {
			return ownFile(rest[:i])
		}
		return false
	}
	switch name {
	case ggufFile, modelfileFile, configFile, generationFile, adapterWeights, adapterConfigFile, mmprojFile, preprocessFile,
		mergedBaseName + ".safetensors", mergedBaseName + ".safetensors.index.json":
		return true
	}
	for _, t := range tokenizerFiles {
		if name == t {
			return true
		}
	}
	return safetensors.IsShardName(name, mergedBaseName)
}

// resolvePath makes p absolute and resolves the symbolic links of its
// longest existing prefix, so that two spellings of one folder compare
// equal even when the folder does not exist yet.
func resolvePath(p string) (string, error) {
	abs, err := filepath.Abs(p)
	if err != nil {
		return "", err
	}
	rest := ""
	for cur := abs; ; {
		if r, err := filepath.EvalSymlinks(cur); err == nil {
			return filepath.Join(r, rest), nil
		}
		parent := filepath.Dir(cur)
		if parent == cur {
			return abs, nil
		}
		rest = filepath.Join(filepath.Base(cur), rest)
		cur = parent
	}
}

// within reports whether p is root or lies inside it (both resolved).
func within(p, root string) bool {
	rel, err := filepath.Rel(root, p)
	return err == nil && rel != ".." && !strings.HasPrefix(rel, ".."+string(filepath.Separator))
}

// checkOutDir refuses an output folder that is, or lies inside, a folder
// the export reads or the run keeps: the base model's folder, the run's
// trained model/ or adapter/, its checkpoints/, and the run directory
// itself (its own folders, such as export/, are fine). Writing there could
// overwrite the very files the export, a resume or a later run reads.
func checkOutDir(run *RunFiles, out string) error {
	o, err := resolvePath(out)
	if err != nil {
		return fmt.Errorf("export: output folder %s: %w", out, err)
	}
	type guarded struct {
		dir, what string
		inside    bool // also refuse folders inside it
	}
	var guards []guarded
	if st, err := os.Stat(run.Cfg.Model); err == nil && st.IsDir() {
		guards = append(guards, guarded{run.Cfg.Model, "the base model's folder", true})
	}
	if run.AdapterDir != "" {
		// ModelDir is the base: Cfg.Model's folder, or a Hub id's snapshot.
		guards = append(guards, guarded{run.ModelDir, "the base model's folder", true},
			guarded{run.AdapterDir, "the run's adapter", true})
	} else {
		guards = append(guards, guarded{run.ModelDir, "the run's trained model", true})
	}
	guards = append(guards,
		guarded{engine.RunDir(run.Dir).Checkpoints(), "the run's checkpoints", true},
		guarded{run.Dir, "the run directory", false})
	for _, g := range guards {
		r, err := resolvePath(g.dir)
		if err != nil {
			return fmt.Errorf("export: %s: %w", g.dir, err)
		}
		if o == r || (g.inside && within(o, r)) {
			where := "is"
			if o != r {
				where = "is inside"
			}
			return fmt.Errorf("export: output folder %s %s %s (%s): an export there could overwrite files whet reads; choose another --out", out, where, g.what, g.dir)
		}
	}
	return nil
}

// replacedDir holds an earlier export's files, inside the output folder,
// while a new export into that folder runs.
const replacedDir = ".whet-replaced"

// prepareOutDir makes the output folder ready: created when missing;
// used as it is when empty; otherwise refused unless o.Force is set or it is
// the run's default export folder for this format (which whet made). Then
// the files an earlier export left there are set aside (the progress is
// told which; writers' temporary files are removed), so old shards or a
// stale Modelfile never mix with the new export. Other files are left
// alone. created says whether this call made the folder. finish must be
// called with whether the export completed: the set-aside files are then
// removed, or put back in place of what the failed or cancelled export
// wrote; files an interrupted export left set aside are put back before
// anything else. Before, they were removed up front, and an export cancelled in
// the studio (esc on a second export into the run's default folder) left
// an empty folder where the first, complete one had been.
func prepareOutDir(o Options, progress Progress) (created bool, finish func(ok bool) error, err error) {
	nothing := func(bool) error { return nil }
	st, err := os.Stat(o.OutDir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		if err := os.MkdirAll(o.OutDir, atomicfile.DirPerm); err != nil {
			return false, nil, fmt.Errorf("export: %w", err)
		}
		return true, nothing, nil
	case err != nil:
		return false, nil, fmt.Errorf("export: output folder: %w", err)
	case !st.IsDir():
		return false, nil, fmt.Errorf("export: output %s is a file, not a folder", o.OutDir)
	}
	aside := filepath.Join(o.OutDir, replacedDir)
	if left, err := os.ReadDir(aside); err == nil {
		// An export into this folder ended (killed, or the studio quit
		// while it was cancelled) after setting an earlier export aside:
		// that one is the folder's last complete export, so it comes back
		// first, in place of what the interrupted one wrote.
		names := make([]string, 0, len(left))
		for _, e := range left {
			names = append(names, e.Name())
		}
		if err := restoreAside(o.OutDir, aside, names); err != nil {
			return false, nil, err
		}
		progress(0, 0, fmt.Sprintf("put back the earlier export that an interrupted export had set aside in %s", aside))
	}
	entries, err := os.ReadDir(o.OutDir)
	if err != nil {
		return false, nil, fmt.Errorf("export: output folder: %w", err)
	}
	if len(entries) == 0 {
		return false, nothing, nil
	}
	isDefault := false
	if a, err := resolvePath(o.OutDir); err == nil {
		if b, err := resolvePath(DefaultOutDir(o)); err == nil && a == b {
			isDefault = true
		}
	}
	if !o.Force && !isDefault {
		names := make([]string, 0, len(entries))
		for _, e := range entries {
			names = append(names, e.Name())
		}
		sort.Strings(names)
		what := fmt.Sprintf("%d entries, first %s", len(names), names[0])
		if len(names) == 1 {
			what = "it holds " + names[0]
		}
		return false, nil, fmt.Errorf("export: output folder %s is not empty (%s): choose an empty or new folder, or pass --force to replace an earlier export's files there", o.OutDir, what)
	}
	var replaced, moved []string
	for _, e := range entries {
		name := e.Name()
		if e.IsDir() || !ownFile(name) {
			continue
		}
		path := filepath.Join(o.OutDir, name)
		replaced = append(replaced, name)
		if strings.HasPrefix(name, ".") { // a writer's temporary file
			if err := os.Remove(path); err != nil {
				return false, nil, fmt.Errorf("export: clearing %s: %w", o.OutDir, err)
			}
			continue
		}
		if len(moved) == 0 {
			if err := os.Mkdir(aside, atomicfile.DirPerm); err != nil {
				return false, nil, fmt.Errorf("export: %w", err)
			}
		}
		if err := os.Rename(path, filepath.Join(aside, name)); err != nil {
			err = fmt.Errorf("export: setting aside %s: %w", path, err)
			return false, nil, errors.Join(err, restoreAside(o.OutDir, aside, moved))
		}
		moved = append(moved, name)
	}
	if len(replaced) > 0 {
		sort.Strings(replaced)
		progress(0, 0, fmt.Sprintf("replacing an earlier export's files in %s: %s", o.OutDir, strings.Join(replaced, ", ")))
	}
	if len(moved) == 0 {
		return false, nothing, nil
	}
	return false, func(ok bool) error {
		if ok {
			if err := os.RemoveAll(aside); err != nil {
				return fmt.Errorf("export: removing the earlier export's files in %s: %w", aside, err)
			}
			return nil
		}
		return restoreAside(o.OutDir, aside, moved)
	}, nil
}

// restoreAside puts the set-aside files back into dir, after removing the
// files of whet's that the new export wrote there.
func restoreAside(dir, aside string, names []string) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("export: restoring the earlier export in %s: %w", dir, err)
	}
	for _, e := range entries {
		if !e.IsDir() && ownFile(e.Name()) {
			if err := os.Remove(filepath.Join(dir, e.Name())); err != nil {
				return fmt.Errorf("export: restoring the earlier export in %s: %w", dir, err)
			}
		}
	}
	for _, name := range names {
		if err := os.Rename(filepath.Join(aside, name), filepath.Join(dir, name)); err != nil {
			return fmt.Errorf("export: restoring the earlier export's %s (kept in %s): %w", name, aside, err)
		}
	}
	if err := os.Remove(aside); err != nil {
		return fmt.Errorf("export: restoring the earlier export in %s: %w", dir, err)
	}
	return nil
}
