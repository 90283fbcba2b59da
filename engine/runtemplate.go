package engine

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"

	"whet/datasets"
	"whet/engine/atomicfile"
)

// RunTemplateFile is the name of the run folder's copy of a data.template
// file (RunDir.ChatTemplate), and the value the folder's run.yaml gives
// data.template for it: a .jinja file relative to the run file, read
// against the run folder as any run file's template file is, so the run
// folder still works when moved.
const RunTemplateFile = "chat_template.jinja"

// runTemplate is a run's data.template when it names a Jinja file: the
// file and its text, read once when the run is prepared. The run folder
// keeps that text (RunDir.ChatTemplate) and its run.yaml names the copy,
// so that chat, export, the studio and a resume read the template the run
// trained with even after the file is moved, deleted or edited.
type runTemplate struct {
	Source string // the file data.template named, absolute; "" for a built-in name, Jinja text or none
	Text   string
}

// readRunTemplate reads cfg's data.template file (paths resolved), or
// returns the zero runTemplate when the setting is no file.
func readRunTemplate(cfg RunConfig) (runTemplate, error) {
	if !datasets.IsTemplateFile(cfg.Data.Template) {
		return runTemplate{}, nil
	}
	text, _, err := datasets.TemplateSettingJinja(cfg.Data.Template, "data.template")
	if err != nil {
		return runTemplate{}, err
	}
	return runTemplate{Source: strings.TrimSpace(cfg.Data.Template), Text: text}, nil
}

// runTemplateNotePrefix starts run.yaml's first line when data.template is
// the run's copy: the comment says which file it was copied from, for the
// user's information only (nothing reads it back but the next resume).
const runTemplateNotePrefix = "# data.template: "

// runTemplateNote is that comment line. A run resumed from its own
// run.yaml names the copy itself as its template: the comment it had
// before is kept, since it still tells where the text came from.
func runTemplateNote(rd RunDir, source string) []byte {
	if samePath(source, rd.ChatTemplate()) {
		if raw, err := atomicfile.ReadFile(rd.Config()); err == nil {
			if line, _, _ := bytes.Cut(raw, []byte("\n")); bytes.HasPrefix(line, []byte(runTemplateNotePrefix)) {
				return append(line, '\n')
			}
		}
		return nil
	}
	// Quoted: a file name may hold a newline, which would end the comment.
	return []byte(runTemplateNotePrefix + RunTemplateFile + " is this run's copy of " + strconv.Quote(source) + ", taken when the run started (or was last resumed)\n")
}

func samePath(a, b string) bool {
	aa, err1 := filepath.Abs(a)
	bb, err2 := filepath.Abs(b)
	return err1 == nil && err2 == nil && aa == bb
}

// templateChange compares the template a resume would train with (the
// run file's data.template setting, and the file's text in now) with the
// run folder's copy its checkpoints were trained with. It returns the
// change, as checkResume lists them, or "" when the text is the same:
// a template file moved or renamed with the same text is no change, as
// for the data and the model.
func templateChange(rd RunDir, setting string, now runTemplate) string {
	stored := rd.ChatTemplate()
	trained, err := atomicfile.ReadFile(stored)
	if err != nil {
		return fmt.Sprintf("data.template: the run's copy of the template its checkpoints were trained with cannot be read: %v", err)
	}
	switch {
	case now.Source != "":
		if now.Text == string(trained) {
			return ""
		}
		return fmt.Sprintf("data.template: the content of %s differs from %s, the template the checkpoints were trained with", now.Source, stored)
	case datasets.IsTemplateText(setting):
		if setting == string(trained) {
			return ""
		}
		return fmt.Sprintf("data.template: the Jinja text in the run file differs from %s, the template the checkpoints were trained with", stored)
	}
	return fmt.Sprintf("data.template: %s → %s", stored, orNone(setting))
}

// key is what a data.template file counts as in a fingerprint
// (refInputsKey): its text, not where it lies.
func (t runTemplate) key() string {
	sum := sha256.Sum256([]byte(t.Text))
	return "jinja sha256:" + hex.EncodeToString(sum[:])
}
