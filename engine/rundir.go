package engine

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"time"

	"whet/engine/atomicfile"
)

// DefaultRunsDir is the folder that holds run directories when a run file
// names none.
const DefaultRunsDir = "runs"

// RunDir is one run's folder. Its methods are the only place that knows
// what the folder holds and what each file is called: the trainer writes
// through them, and `whet runs`, `whet chat --run`, `whet export --run`
// and the studio read through them.
//
//	run.yaml        the RunConfig the run was started (or last resumed) with
//	inputs.json     fingerprints of the data and model it was started with
//	chat_template.jinja  the text of a data.template file, as the run trained
//	                with (run.yaml's data.template then names this copy)
//	metrics.jsonl   one line per optimizer step and per evaluation
//	samples.jsonl   greedy generations made while training
//	status.json     running | paused | done | stopped | failed, step, loss
//	checkpoints/    step-NNNNNNNN folders (see checkpoint.go)
//	adapter/        the PEFT adapter of a LoRA run, at its end or stop
//	model/          the whole model of a full fine-tuning run
//	ref_logps.json  DPO reference log-probs, computed once
//	export/         exports, one folder per format
//	lock            held (flock) by the process that trains the run
type RunDir string

// Path is the folder itself.
func (d RunDir) Path() string { return string(d) }

func (d RunDir) join(name string) string { return filepath.Join(string(d), name) }

// Config is run.yaml.
func (d RunDir) Config() string { return d.join("run.yaml") }

// Inputs is inputs.json, the fingerprints a resume is checked against.
func (d RunDir) Inputs() string { return d.join("inputs.json") }

// ChatTemplate is the run's copy of its data.template file
// (RunTemplateFile): export, chat, the studio and a resume read the
// template the run trained with from here, not from the user's file.
func (d RunDir) ChatTemplate() string { return d.join(RunTemplateFile) }

// Metrics is metrics.jsonl.
func (d RunDir) Metrics() string { return d.join("metrics.jsonl") }

// Samples is samples.jsonl.
func (d RunDir) Samples() string { return d.join("samples.jsonl") }

// Status is status.json.
func (d RunDir) Status() string { return d.join("status.json") }

// Checkpoints is the folder of checkpoints.
func (d RunDir) Checkpoints() string { return d.join("checkpoints") }

// Adapter is the PEFT adapter folder of a LoRA run.
func (d RunDir) Adapter() string { return d.join("adapter") }

// Model is the saved model folder of a full fine-tuning run.
func (d RunDir) Model() string { return d.join("model") }

// RefLogps is the DPO reference log-probs cache.
func (d RunDir) RefLogps() string { return d.join("ref_logps.json") }

// LockFile is the file the training process holds locked (see Acquire).
func (d RunDir) LockFile() string { return d.join("lock") }

// Export is where an export goes unless told otherwise: export/FORMAT, or
// export/FORMAT-QUANT when there is a precision.
func (d RunDir) Export(format, quant string) string {
	name := format
	if quant != "" {
		name += "-" + quant
	}
	return filepath.Join(string(d), "export", name)
}

// RunsDirAdvice follows an error making a run's folder: where the runs
// folder is set.
const RunsDirAdvice = "the runs folder is runs_dir in the run file, --runs for the studio and whet serve"

// runNamePattern is what a run may be called: the name is a folder under
// the runs folder, so it holds no separator and cannot be "." or "..".
var runNamePattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]*$`)

// ValidRunName says why name cannot name a run folder, or nil.
func ValidRunName(name string) error {
	if !runNamePattern.MatchString(name) || len(name) > 200 {
		return fmt.Errorf("name: %q cannot be a run name: use letters, digits, '.', '_' and '-', starting with a letter or digit (it names a folder in the runs folder)", name)
	}
	return nil
}

// NewRunDir is the folder of the run called name inside runsDir ("" =
// DefaultRunsDir). A name that would leave runsDir is refused.
func NewRunDir(runsDir, name string) (RunDir, error) {
	if err := ValidRunName(name); err != nil {
		return "", err
	}
	if runsDir == "" {
		runsDir = DefaultRunsDir
	}
	return RunDir(filepath.Join(runsDir, name)), nil
}

// RunNameAt is the name a run gets when none is given: run-YYYYMMDD-hhmmss
// of the moment it is set up (whet train, --detach and the studio). Two
// sessions that start in the same second get the same one, so the folder
// is made with ClaimRunName, which takes the next free name.
func RunNameAt(t time.Time) string { return "run-" + t.Format("20060102-150405") }

// maxRunNameClaims bounds ClaimRunName's tries: far more runs than start
// in one second.
const maxRunNameClaims = 1000

// ClaimRunName makes the folder of a run whose name is a default
// (RunNameAt), never one the user gave (that one resumes its run, or the
// run's lock refuses it): in runsDir ("" = DefaultRunsDir) it makes base,
// or base-2, base-3… when that folder exists (an earlier run, or a session
// that started in the same second and claimed it first), and returns the
// name it made. The run's own folder is made by os.Mkdir, which fails when
// it exists, so two processes that claim at once never get the same
// folder and neither is refused.
func ClaimRunName(runsDir, base string) (string, error) {
	if runsDir == "" {
		runsDir = DefaultRunsDir
	}
	if err := ValidRunName(base); err != nil {
		return "", err
	}
	if err := os.MkdirAll(runsDir, atomicfile.DirPerm); err != nil {
		return "", fmt.Errorf("runs folder: %w (%s)", err, RunsDirAdvice)
	}
	for i := 1; i <= maxRunNameClaims; i++ {
		name := base
		if i > 1 {
			name = fmt.Sprintf("%s-%d", base, i)
		}
		rd, err := NewRunDir(runsDir, name)
		if err != nil {
			return "", err
		}
		err = os.Mkdir(rd.Path(), atomicfile.DirPerm)
		if err == nil {
			return name, nil
		}
		if !errors.Is(err, fs.ErrExist) {
			return "", fmt.Errorf("run folder: %w (%s)", err, RunsDirAdvice)
		}
	}
	return "", fmt.Errorf("run folder: %s and %s-2 to %s-%d all exist in %s; give the run a name", base, base, base, maxRunNameClaims, runsDir)
}

// RunDirOf is the folder of the run cfg describes.
func RunDirOf(cfg RunConfig) (RunDir, error) { return NewRunDir(cfg.RunsDir, cfg.Name) }
